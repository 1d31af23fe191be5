"""Bounds on every figure (issue 13, item 6; docs/policy.md, Bounds): pure rules, no store.

Given a policy document (the shipped Ulanqab file) with one figure out of bounds, when it is parsed, then
it is refused naming the key path and the bound, and nothing else is wrong. Each bound is shown to be
the thing that refuses: with its constant widened (monkeypatch), the same document loads.
"""

from __future__ import annotations

import tomllib
from datetime import date
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import domain.disbursement as disbursement
import domain.eligibility as eligibility
import domain.policy as policy_module
from domain.disbursement import Accrual, PaymentAboveMaximum
from domain.eligibility import (
    AmountAboveMaximum,
    Enrolment,
    NameInvalid,
    Person,
    PersonRecord,
    apply_person_event,
    person_id,
)
from domain.money import MONTH_AMOUNT_FEN_MAX, PAYMENT_FEN_MAX
from domain.periods import Month
from domain.policy import (
    HOUSEHOLD_MEMBERS_MAX,
    STANDARD_MONTH_FEN_MAX,
    STANDARD_YEAR_FEN_MAX,
    HouseholdFacts,
    Policy,
    PolicyRejected,
    parse_policy,
)

POLICY = Path(__file__).resolve().parents[2] / "ledger" / "data" / "ulanqab-2017.toml"
LI = "152601198001011239"


def _doc() -> dict[str, Any]:
    with POLICY.open("rb") as f:
        return tomllib.load(f)


def _errors(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(PolicyRejected) as caught:
        parse_policy(doc, "p.toml")
    return list(caught.value.errors)


def _standard(doc: dict[str, Any], programme: str) -> dict[str, Any]:
    entry: dict[str, Any] = doc["programmes"][programme]["standards"][0]
    return entry


def test_the_shipped_policies_lie_within_every_bound() -> None:
    for name in ("ulanqab-2017.toml", "ordos-2021.toml"):
        with (POLICY.parent / name).open("rb") as f:
            parse_policy(tomllib.load(f), name)


# --- the uplift (issue 13: `special_member_uplift = "50"` was accepted) ---------------------------------


@pytest.mark.parametrize("uplift", ["50", "5", "0.21", "1"])
def test_an_uplift_above_a_fifth_of_the_standard_is_refused_naming_the_key(uplift: str) -> None:
    doc = _doc()
    doc["settings"]["special_member_uplift"] = uplift
    (error,) = _errors(doc)
    assert error.startswith(f"settings.special_member_uplift: {uplift!r} is above 0.2")


@pytest.mark.parametrize("uplift", ["fifty", "-0.05", "5e-2", "0x1"])
def test_an_uplift_that_is_no_decimal_is_refused_naming_the_key(uplift: str) -> None:
    doc = _doc()
    doc["settings"]["special_member_uplift"] = uplift
    (error,) = _errors(doc)
    assert error.startswith("settings.special_member_uplift:")


@pytest.mark.parametrize("uplift", ["0", "0.05", "0.10", "0.2"])
def test_an_uplift_from_0_to_0_2_loads(uplift: str) -> None:
    doc = _doc()
    doc["settings"]["special_member_uplift"] = uplift
    assert parse_policy(doc).special_member_uplift == Fraction(uplift)


def test_sensitivity_without_the_bound_an_uplift_of_50_loads_and_pays_fifty_standards_per_special_member(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(policy_module, "SPECIAL_MEMBER_UPLIFT_MAX", Fraction(10**6))
    doc = _doc()
    doc["settings"]["special_member_uplift"] = "50"
    loaded = parse_policy(doc)
    facts = HouseholdFacts(members=1, monthly_income_fen=0, special_members=1)
    amount = policy_module.month_amount_fen(
        loaded, loaded.programme("urban_dibao"), Month(2017, 1), age=40, household=facts, override_fen=None
    )
    assert amount == 555_00 + 50 * 555_00  # 51 standards a month for one person


# --- standards (issue 13: a 15-digit standard overflowed the read models) ----------------------------------


def test_a_15_digit_standard_is_refused_naming_the_programme_and_the_bound() -> None:
    doc = _doc()
    _standard(doc, "urban_dibao")["amount"] = "999999999999999.00"
    errors = _errors(doc)
    assert errors[0] == (
        "programmes.urban_dibao.standards[0].amount: '999999999999999.00' is beyond 20000.00 元 a month, "
        "the highest standard a policy may state (docs/policy.md, Bounds)"
    )


def test_sensitivity_without_the_bound_a_15_digit_standard_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy_module, "STANDARD_MONTH_FEN_MAX", 10**18)
    monkeypatch.setattr(policy_module, "STANDARD_YEAR_FEN_MAX", 10**18)
    doc = _doc()
    _standard(doc, "urban_dibao")["amount"] = "999999999999999.00"
    _standard(doc, "sanmin").pop("expect")  # urban dibao + 220 is now 16 digits, beyond any yuan figure
    assert parse_policy(doc).standard_on("urban_dibao", date(2017, 1, 1)).amount_fen == 99999999999999900


def test_a_monthly_standard_at_the_bound_loads_and_one_fen_more_is_refused() -> None:
    doc = _doc()
    del doc["programmes"]["sanmin"]  # derives urban dibao + 220, which would pass the bound itself
    for key, programmes in doc["programmes"].items():
        if key != "temporary_aid":  # not a cadence programme: it has no `excludes` (docs/policy.md)
            programmes["excludes"] = [p for p in programmes.get("excludes", []) if p != "sanmin"]
    _standard(doc, "urban_dibao")["amount"] = "20000.00"
    assert parse_policy(doc).standard_on("urban_dibao", date(2017, 1, 1)).amount_fen == STANDARD_MONTH_FEN_MAX
    _standard(doc, "urban_dibao")["amount"] = "20000.01"
    assert _errors(doc)[0].startswith("programmes.urban_dibao.standards[0].amount: '20000.01' is beyond")


def test_an_annual_standard_may_be_twelve_times_the_monthly_bound() -> None:
    doc = _doc()
    tekun = doc["programmes"]["tekun_rural_dispersed"]
    tekun["standards"] = [{"from": "2017-01-01", "amount": "240000.00", "per": "year"}]
    assert parse_policy(doc).standard_on("tekun_rural_dispersed", date(2017, 1, 1)).amount_fen == (
        STANDARD_YEAR_FEN_MAX
    )
    tekun["standards"] = [{"from": "2017-01-01", "amount": "240000.01", "per": "year"}]
    assert "a year" in _errors(doc)[0]


def test_a_derived_standard_beyond_the_bound_is_refused_naming_the_date_its_base_pushes_it_over() -> None:
    doc = _doc()
    # tekun_rural_dispersed = round_yuan(1.3 × rural dibao per year); a later rural raise to 190 000 a year
    # gives 247 000, beyond 240 000 a year, from the raise's date on (联动).
    doc["programmes"]["rural_dibao"]["standards"].append({"from": "2018-01-01", "amount": "190000.00", "per": "year"})
    errors = _errors(doc)
    assert any(
        e.startswith("programmes.tekun_rural_dispersed.standards[0]: derivation gives 247000.00 on 2018-01-01")
        for e in errors
    ), errors


def test_a_derivation_below_zero_is_refused() -> None:
    doc = _doc()
    sanmin = _standard(doc, "sanmin")
    sanmin.update(add="-600.00", expect="-45.00")
    del sanmin["expect"]
    assert any("derivation gives -45.00" in e for e in _errors(doc))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("factor", "10.5", "programmes.tekun_care_full.standards[0].factor: '10.5' is above 10"),
        ("add", "-20000.01", "programmes.tekun_care_full.standards[0].add: '-20000.01' is beyond 20000.00 元"),
        ("expect", "20000.01", "programmes.tekun_care_full.standards[0].expect: '20000.01' is beyond 20000.00 元"),
    ],
)
def test_every_figure_of_a_derived_standard_has_a_bound(key: str, value: str, message: str) -> None:
    doc = _doc()
    _standard(doc, "tekun_care_full")[key] = value
    assert any(e.startswith(message) for e in _errors(doc)), _errors(doc)


def test_a_setting_a_standard_derives_from_has_a_bound() -> None:
    doc = _doc()
    doc["settings"]["min_wage_month"] = "1000000.01"
    assert _errors(doc)[0].startswith("settings.min_wage_month: '1000000.01' is beyond 1000000.00 元")


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        ([[75, "100.00"], [151, "150.00"]], "by_age[1]: minimum age 151 is outside 0-150"),
        ([[75, "20000.01"]], "by_age[0]: '20000.01' is beyond 20000.00 元 a month"),
        ([[age, "1.00"] for age in range(21)], "by_age: more than 20 tiers"),
    ],
)
def test_age_tiers_have_bounds(tiers: list[list[Any]], message: str) -> None:
    doc = _doc()
    doc["programmes"]["high_age"]["standards"] = [{"from": "2017-01-01", "per": "month", "by_age": tiers}]
    assert any(e == f"programmes.high_age.standards[0].{message}" or message in e for e in _errors(doc))


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("from", "programmes.urban_dibao.standards[0].from: 2200-01-01 is outside the years 1950-2199"),
        ("years", "calendar.years[0]: 2200 is outside the years 1950-2199"),
        ("lead", "settings.bank_lead_days: 31 is not a whole number of days 0-30"),
        ("due", "programmes.urban_dibao.due_day: 29 is not a day 1-28"),
    ],
)
def test_dates_days_and_years_have_bounds(where: str, message: str) -> None:
    doc = _doc()
    if where == "from":
        _standard(doc, "urban_dibao")["from"] = date(2200, 1, 1)
    elif where == "years":
        doc["calendar"] = {"years": [2200]}
    elif where == "lead":
        doc["settings"]["bank_lead_days"] = 31
    else:
        doc["programmes"]["urban_dibao"]["due_day"] = 29
    assert message in _errors(doc)


def test_every_out_of_bounds_figure_is_reported_at_once() -> None:
    doc = _doc()
    doc["settings"]["special_member_uplift"] = "50"
    _standard(doc, "orphan_centralised")["amount"] = "999999999999999.00"
    _standard(doc, "tekun_care_full")["factor"] = "65"
    errors = _errors(doc)
    assert [e.split(":")[0] for e in errors] == [
        "settings.special_member_uplift",
        "programmes.tekun_care_full.standards[0].factor",
        "programmes.orphan_centralised.standards[0].amount",
    ]


# --- the ledger-wide maximum per payment ------------------------------------------------------------------


def test_the_bounds_keep_every_payment_a_bounded_policy_can_produce_below_the_maximum() -> None:
    worst = HOUSEHOLD_MEMBERS_MAX * STANDARD_MONTH_FEN_MAX * (1 + policy_module.SPECIAL_MEMBER_UPLIFT_MAX) * 12
    assert worst <= PAYMENT_FEN_MAX
    assert MONTH_AMOUNT_FEN_MAX * 12 <= PAYMENT_FEN_MAX < 2**63 // 2_000_000  # a batch of 2·10⁶ fits int64


def _record(members: int, special: int) -> PersonRecord:
    household = HouseholdFacts(members=members, monthly_income_fen=0, special_members=special)
    enrolment = Enrolment("urban_dibao", "150902", date(2017, 1, 1), household, "集民发〔2017〕2号")
    return PersonRecord(
        LI, "李建华", date(1980, 1, 1), "103191000012", "6228480045001122337", {"urban_dibao": enrolment}
    )


def _unbounded_policy(monkeypatch: pytest.MonkeyPatch) -> Policy:
    monkeypatch.setattr(policy_module, "STANDARD_MONTH_FEN_MAX", 10**18)
    monkeypatch.setattr(policy_module, "STANDARD_YEAR_FEN_MAX", 10**18)
    doc = _doc()
    _standard(doc, "urban_dibao")["amount"] = "999999999999999.00"
    _standard(doc, "sanmin").pop("expect")
    return parse_policy(doc)


def test_a_payment_above_the_maximum_refuses_the_month_end_naming_the_enrolment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    accrual = Accrual(_unbounded_policy(monkeypatch), Month(2017, 1))
    records = [(person_id(LI), _record(99, 0))]
    with pytest.raises(PaymentAboveMaximum) as refused:
        accrual.check_amounts(records, "150900", None, 0)
    assert str(refused.value).startswith(
        f"{LI} urban_dibao 2017-01: the payment would be 98999999999999901.00 元, more than the ledger's "
        "maximum per payment 10000000.00 元"
    )


def test_sensitivity_without_the_maximum_the_absurd_payment_is_due(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(disbursement, "PAYMENT_FEN_MAX", 10**30)
    accrual = Accrual(_unbounded_policy(monkeypatch), Month(2017, 1))
    records = [(person_id(LI), _record(99, 0))]
    accrual.check_amounts(records, "150900", None, 0)
    (due,) = accrual.due(records, "150900", None, 0)
    assert due.amount_fen == 99 * 99999999999999900 > 2**63  # beyond every int64 column


def test_payments_within_the_maximum_pass_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    with POLICY.open("rb") as f:
        accrual = Accrual(parse_policy(tomllib.load(f)), Month(2017, 1))
    records = [(person_id(LI), _record(HOUSEHOLD_MEMBERS_MAX, HOUSEHOLD_MEMBERS_MAX))]
    accrual.check_amounts(records, "150900", None, 0)
    assert [d.amount_fen for d in accrual.due(records, "150900", None, 0)] == [20 * 555_00 + 20 * 2775]


# --- decisions: an approved amount, a corrected name -------------------------------------------------------


def _person() -> Person:
    person = Person(
        id_number=LI,
        name="李建华",
        birth_date="1980-01-01",
        bank_code="103191000012",
        account="6228480045001122337",
        actor="clerk",
    )
    person.enrol(
        programme="urban_dibao",
        region="150902",
        effective_from=date(2017, 1, 1),
        household=HouseholdFacts(2, 0, 0),
        decision_ref="集民发〔2017〕2号",
        actor="clerk",
        excluded_pairs=(),
    )
    return person


def _adjust(person: Person, amount_fen: int) -> None:
    person.decide(
        kind="adjust",
        programme="urban_dibao",
        on=date(2017, 2, 1),
        actor="clerk",
        reason="集民发〔2017〕9号",
        amount_fen=amount_fen,
        excluded_pairs=(),
    )


def test_an_approved_amount_above_the_monthly_maximum_is_refused_and_nothing_recorded() -> None:
    person = _person()
    version = person.version
    with pytest.raises(AmountAboveMaximum, match=r"833333\.33 元"):
        _adjust(person, MONTH_AMOUNT_FEN_MAX + 1)
    assert person.version == version
    _adjust(person, MONTH_AMOUNT_FEN_MAX)
    assert person.enrolments["urban_dibao"].override_fen_on(date(2017, 2, 1)) == MONTH_AMOUNT_FEN_MAX


def test_sensitivity_without_the_maximum_an_absurd_approved_amount_is_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(eligibility, "MONTH_AMOUNT_FEN_MAX", 10**30)
    person = _person()
    _adjust(person, 10**20)
    assert person.enrolments["urban_dibao"].override_fen_on(date(2017, 2, 1)) == 10**20


def test_a_rename_is_a_new_event_that_the_month_end_fold_follows() -> None:
    person = _person()
    assert person.rename(name="李建國", effective_on=date(2017, 2, 1), reason="户籍更正", actor="clerk")
    assert person.name == "李建國"
    events = person.collect_events()
    assert [type(e).__name__ for e in events] == ["Registered", "Enrolled", "Renamed"]
    renamed = events[-1]
    assert (renamed.previous_name, renamed.name, renamed.reason, renamed.actor) == (  # type: ignore[attr-defined]
        "李建华",
        "李建國",
        "户籍更正",
        "clerk",
    )
    records: dict[Any, PersonRecord] = {}
    for position, e in enumerate(events, start=1):
        data = {k: v for k, v in e.__dict__.items() if k not in ("originator_id", "originator_version")}
        apply_person_event(records, person.id, type(e).__name__, data, position)
    assert records[person.id].name == "李建國"


def test_renaming_to_the_same_name_records_nothing_and_a_bad_name_is_refused() -> None:
    person = _person()
    assert not person.rename(name="李建华", effective_on=date(2017, 2, 1), reason="x", actor="clerk")
    for bad in ("", " 李", "李\n建"):
        with pytest.raises(NameInvalid):
            person.rename(name=bad, effective_on=date(2017, 2, 1), reason="x", actor="clerk")
    with pytest.raises(NameInvalid, match="reason"):
        person.rename(name="李建國", effective_on=date(2017, 2, 1), reason=" ", actor="clerk")
    assert [type(e).__name__ for e in person.collect_events()] == ["Registered", "Enrolled"]


@settings(max_examples=120, deadline=None)
@given(
    households=st.lists(
        st.tuples(
            st.sampled_from(["urban_dibao", "rural_dibao", "tekun_rural_dispersed", "high_age", "sanmin"]),
            st.integers(1, 99),
            st.integers(0, 99),
            st.integers(0, 2_000_000),
            st.sampled_from([None, 0, 1, 777_77, MONTH_AMOUNT_FEN_MAX]),
            st.integers(1930, 2017),
        ),
        min_size=1,
        max_size=6,
    ),
    run=st.sampled_from([Month(2017, 1), Month(2017, 6), Month(2017, 12)]),
)
def test_the_quick_bound_is_never_below_a_payment_the_run_would_make(
    households: list[tuple[str, int, int, int, int | None, int]], run: Month
) -> None:
    """The month-end skips the exact pass when the quick bound fits: the bound must cover every amount."""
    with POLICY.open("rb") as f:
        accrual = Accrual(parse_policy(tomllib.load(f)), run)
    records = []
    for n, (programme, members, special, income, approved, born) in enumerate(households):
        facts = HouseholdFacts(members, income, min(special, members))
        enrolment = Enrolment(programme, "150902", date(2017, 1, 1), facts, "x")
        if approved is not None:
            adjust = eligibility.Decision("adjust", date(2017, 1, 1), "clerk", "r", approved)
            enrolment = enrolment.with_decision(adjust)
        id_number = f"1526011980010{n:05d}"
        record = PersonRecord(id_number, "李", date(born, 1, 1), "1", "2", {programme: enrolment})
        records.append((person_id(id_number), record))
    amounts = [due.amount_fen for due in accrual.due(records, "150900", None, 0)]
    assert max(amounts, default=0) <= accrual.largest_possible_fen(records, "150900")
