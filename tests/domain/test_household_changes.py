"""Household changes (`decide change`, docs/entitlement.md "Household changes"): `Enrolment.household_on`,
the change decision's payload and its fold, and the phase-out a change starts by itself (004_… 二.1)."""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from domain.disbursement import Accrual
from domain.eligibility import (
    DecisionBeforeEnrolment,
    DecisionNotAllowed,
    HouseholdInvalid,
    Person,
    PersonRecord,
    apply_person_event,
    decision_from_event,
)
from domain.periods import Month, Period
from domain.policy import HouseholdFacts, Policy, PolicyRejected, parse_policy

DATA = Path(__file__).resolve().parents[2] / "ledger" / "data"
LI = "152601198001011239"
JAN_2017 = date(2017, 1, 1)
LI_HOUSEHOLD = HouseholdFacts(2, 30_000, 0)  # 2 members, income 300.00 a month


@pytest.fixture
def policy() -> Policy:
    with (DATA / "ulanqab-2017.toml").open("rb") as f:
        return parse_policy(tomllib.load(f), "ulanqab-2017.toml")


def _person(programme: str = "urban_dibao", household: HouseholdFacts = LI_HOUSEHOLD) -> Person:
    return Person.register(
        id_number=LI,
        name="李建华",
        birth_date=date(1980, 1, 1),
        bank_code="103191000012",
        account="6228480045001122337",
        actor="clerk",
        programme=programme,
        region="150902",
        effective_from=JAN_2017,
        household=household,
        decision_ref="集民发〔2017〕2号",
    )


def _change(person: Person, policy: Policy, on: date, programme: str = "urban_dibao", **facts: Any) -> Any:
    return person.change_household(
        programme=programme,
        on=on,
        actor="clerk",
        reason="复核〔2017〕1号",
        members=facts.get("members"),
        monthly_income_fen=facts.get("income"),
        special_members=facts.get("special"),
        policy=policy,
    )


def _record(person: Person) -> PersonRecord:
    """The person as the month-end folds it from the stored payloads (apply_person_event)."""
    records: dict[Any, PersonRecord] = {}
    pid = uuid4()
    for position, event in enumerate(person.collect_events(), start=1):
        data = {k: v for k, v in event.__dict__.items() if k not in ("originator_id", "originator_version")}
        apply_person_event(records, pid, type(event).__name__, data, position)
    return records[pid]


def _months(policy: Policy, record: PersonRecord, programme: str, months: list[str]) -> list[int]:
    """What each monthly period pays (0 when not payable)."""
    accrual = Accrual(policy, Month(2017, 12))
    enrolment = record.enrolments[programme]
    paid = []
    for name in months:
        period = Period.parse(name)
        payable = enrolment.payable_in(period.start)
        paid.append(
            accrual.period_amount_fen(policy.programmes[programme], period, record, enrolment) if payable else 0
        )
    return paid


def test_household_on_is_the_enrolments_own_until_a_change_and_counts_from_the_first_day_of_its_month(
    policy: Policy,
) -> None:
    person = _person()
    outcome = _change(person, policy, date(2017, 2, 15), income=50_000)
    assert outcome.recorded and outcome.phase_out_ends_on is None
    assert outcome.household == HouseholdFacts(2, 50_000, 0)
    enrolment = person.enrolments["urban_dibao"]
    assert enrolment.household_on(date(2017, 1, 31)) == HouseholdFacts(2, 30_000, 0)
    # Effective 15 February, in force from 1 February: the month-end prices February with it.
    assert enrolment.household_on(date(2017, 2, 1)) == HouseholdFacts(2, 50_000, 0)
    assert enrolment.household_on(date(2017, 12, 1)) == HouseholdFacts(2, 50_000, 0)
    assert enrolment.household == HouseholdFacts(2, 30_000, 0)  # the enrolment's own facts are kept


def test_facts_not_given_keep_the_value_in_force_and_later_changes_win(policy: Policy) -> None:
    person = _person()
    _change(person, policy, date(2017, 3, 1), members=3)
    _change(person, policy, date(2017, 5, 1), special=1)
    enrolment = person.enrolments["urban_dibao"]
    assert enrolment.household_on(date(2017, 4, 1)) == HouseholdFacts(3, 30_000, 0)
    assert enrolment.household_on(date(2017, 5, 1)) == HouseholdFacts(3, 30_000, 1)
    assert enrolment.last_review() == date(2017, 5, 1)


def test_the_month_end_pays_the_changed_household_from_the_change_month(policy: Policy) -> None:
    # 2 members, income 300: 2 × 555 − 300 = 810.00; income 500 from February: 2 × 555 − 500 = 610.00.
    person = _person()
    _change(person, policy, date(2017, 2, 1), income=50_000)
    paid = _months(policy, _record(person), "urban_dibao", ["2017-01", "2017-02", "2017-03"])
    assert paid == [81_000, 61_000, 61_000]


def test_a_mid_quarter_change_prices_each_month_of_the_quarter(policy: Policy) -> None:
    # rural dibao 3906/year = 325.50 a month; 3 members, income 200, 1 special: 3 × 325.50 − 200 + 5 % ×
    # 325.50 = 792.775 → 792.78 (walkthrough). 2 members from 10 February: 651 − 200 + 16.275 → 467.28.
    person = _person("rural_dibao", HouseholdFacts(3, 20_000, 1))
    _change(person, policy, date(2017, 2, 10), programme="rural_dibao", members=2)
    record = _record(person)
    accrual = Accrual(policy, Month(2017, 12))
    q1 = accrual.period_amount_fen(
        policy.programmes["rural_dibao"], Period.parse("2017-Q1"), record, record.enrolments["rural_dibao"]
    )
    assert q1 == 79_278 + 2 * 46_728


def test_income_reaching_the_standard_starts_the_phase_out_paid_at_the_amount_before_the_change(
    policy: Policy,
) -> None:
    # 1200 ≥ 2 × 555: per-capita 600 is above the urban standard → phase-out from 1 February (004_… 二.1).
    person = _person()
    outcome = _change(person, policy, date(2017, 2, 1), income=120_000)
    assert outcome.phase_out_ends_on == date(2017, 8, 1)
    kinds = [(d.kind, d.effective_on, d.phase_out) for d in person.enrolments["urban_dibao"].decisions]
    assert kinds == [("change", date(2017, 2, 1), True), ("phase-out", date(2017, 2, 1), False)]
    months = [f"2017-{m:02d}" for m in range(1, 13)]
    paid = _months(policy, _record(person), "urban_dibao", months)
    # January and the 6 phase-out months February–July at 810.00 (before the change), nothing after.
    assert paid == [81_000] * 7 + [0] * 5
    assert sum(paid) == 567_000


def test_income_exactly_at_the_line_starts_the_phase_out_and_below_it_does_not(policy: Policy) -> None:
    at_line = _person()
    assert _change(at_line, policy, date(2017, 3, 1), income=111_000).phase_out_ends_on == date(2017, 9, 1)
    below = _person()
    assert _change(below, policy, date(2017, 3, 1), income=110_999).phase_out_ends_on is None


def test_no_second_phase_out_while_one_runs_and_none_for_a_programme_without_income_test(policy: Policy) -> None:
    person = _person()
    _change(person, policy, date(2017, 2, 1), income=120_000)
    again = _change(person, policy, date(2017, 4, 1), income=130_000)
    assert again.recorded and again.phase_out_ends_on is None
    assert [d.kind for d in person.enrolments["urban_dibao"].decisions].count("phase-out") == 1


def test_the_same_change_twice_records_nothing(policy: Policy) -> None:
    person = _person()
    _change(person, policy, date(2017, 2, 1), income=50_000)
    assert not _change(person, policy, date(2017, 2, 1), income=50_000).recorded
    assert len(person.enrolments["urban_dibao"].decisions) == 1


@pytest.mark.parametrize(
    ("facts", "error", "text"),
    [
        ({}, DecisionNotAllowed, "at least one of --members, --income, --special"),
        ({"members": 0}, HouseholdInvalid, "members 0 is not 1-20"),
        ({"members": 21}, HouseholdInvalid, "members 21 is not 1-20"),
        ({"members": 1, "special": 2}, HouseholdInvalid, "special members 2 is not 0-1 (the members)"),
        ({"income": 100_000_001}, HouseholdInvalid, "income 1000000.01 is not 0-1000000.00 a month"),
    ],
)
def test_a_change_outside_the_bounds_is_refused(
    policy: Policy, facts: dict[str, int], error: type[Exception], text: str
) -> None:
    person = _person()
    with pytest.raises(error, match=text.replace("(", r"\(").replace(")", r"\)")):
        _change(person, policy, date(2017, 2, 1), **facts)
    assert person.enrolments["urban_dibao"].decisions == ()


def test_a_change_is_refused_before_the_start_after_termination_and_for_a_person_programme(policy: Policy) -> None:
    person = _person()
    with pytest.raises(DecisionBeforeEnrolment):
        _change(person, policy, date(2016, 12, 1), income=0)
    person.decide(
        kind="terminate",
        programme="urban_dibao",
        on=date(2017, 3, 1),
        actor="clerk",
        reason="r",
        amount_fen=None,
        excluded_pairs=(),
    )
    with pytest.raises(DecisionNotAllowed, match="terminated"):
        _change(person, policy, date(2017, 4, 1), income=0)
    sanmin = _person("sanmin", HouseholdFacts(1, 0, 0))
    with pytest.raises(DecisionNotAllowed, match="paid per person"):
        _change(sanmin, policy, date(2017, 4, 1), programme="sanmin", members=2)


def test_a_decision_stored_before_changes_existed_folds_without_household() -> None:
    old = {"kind": "suspend", "effective_on": "2017-02-01", "actor": "c", "reason": "r", "amount_fen": None}
    decision = decision_from_event(old)
    assert decision.household is None and decision.phase_out is False


def test_the_shipped_policies_state_review_cycles_and_ordos_states_the_guards() -> None:
    with (DATA / "ulanqab-2017.toml").open("rb") as f:
        ulanqab = parse_policy(tomllib.load(f), "ulanqab-2017.toml", strict=True)
    with (DATA / "ordos-2021.toml").open("rb") as f:
        ordos = parse_policy(tomllib.load(f), "ordos-2021.toml", strict=True)
    reviews = {k: p.review_months for k, p in ulanqab.programmes.items() if p.review_months}
    assert reviews == {
        "urban_dibao": 6,
        "rural_dibao": 6,
        "tekun_urban": 12,
        "tekun_rural_centralised": 12,
        "tekun_rural_dispersed": 12,
    }
    guards = {k: (p.age_min, p.age_max, p.income_test, p.review_months) for k, p in ordos.programmes.items()}
    assert guards == {
        "urban_dibao": (None, None, True, 6),
        "rural_dibao": (None, None, True, 6),
        "tekun_urban": (16, None, False, 12),
        "tekun_rural": (16, None, False, 12),
        "orphan_centralised": (None, 17, False, None),
        "orphan_dispersed": (None, 17, False, None),
        "de_facto_orphan": (None, 17, False, None),
        "disability_living": (None, None, False, None),
        "disability_care": (None, None, False, None),
        "high_age": (75, None, False, None),
    }


def test_unknown_programme_keys_are_refused_only_when_loading() -> None:
    with (DATA / "ulanqab-2017.toml").open("rb") as f:
        doc = tomllib.load(f)
    doc["programmes"]["high_age"]["age_mni"] = 80
    # A stored policy (read without `strict`) still opens: an earlier release ignored unknown keys.
    assert "high_age" in parse_policy(doc, "stored").programmes
    with pytest.raises(PolicyRejected) as refused:
        parse_policy(doc, "typo.toml", strict=True)
    assert list(refused.value.errors) == [
        "programmes.high_age.age_mni: unknown key 'age_mni' in programme high_age (known: age_max, age_min, "
        "approval_above, cadence, due_day, due_days, excludes, income_test, max, min, name, requires, "
        "review_months, standards, starts, stops, unit)"
    ]


@pytest.mark.parametrize("months", [0, 61, "6", True])
def test_review_months_out_of_bounds_is_refused(months: object) -> None:
    with (DATA / "ulanqab-2017.toml").open("rb") as f:
        doc = tomllib.load(f)
    doc["programmes"]["urban_dibao"]["review_months"] = months
    with pytest.raises(
        PolicyRejected, match=r"programmes\.urban_dibao\.review_months: .* is not a whole number of months 1-60"
    ):
        parse_policy(doc, "p.toml")
