"""Accrual: what each enrolment is owed by a month-end run (domain.disbursement.Accrual).

Given person records folded from events (as the month-end reads them), when a run for a month asks
what is due, then the payments due: their periods, amounts, due dates and lateness.
"""

from __future__ import annotations

import tomllib
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.disbursement import Accrual, PaymentDue, Watermark, payment_id
from domain.eligibility import Enrolment, Person, PersonRecord
from domain.periods import Month, Period, periods_starting_between
from domain.policy import HouseholdFacts, Policy, month_amount_fen, parse_policy
from tests.helpers.persons import LI, POLICY, RURAL, SINGLE, URBAN, WANG, Registry


def _document() -> dict[str, Any]:
    with POLICY.open("rb") as f:
        return tomllib.load(f)


@pytest.fixture
def policy() -> Policy:
    return parse_policy(_document())


@pytest.fixture
def registry(policy: Policy) -> Registry:
    return Registry(policy)


def run(
    policy: Policy,
    registry: Registry,
    month: str,
    *,
    scope: str = "150900",
    watermark: Watermark | None = None,
    policy_position: int = 0,
) -> list[PaymentDue]:
    return list(Accrual(policy, Month.parse(month)).due(registry.items(), scope, watermark, policy_position))


def owed(dues: list[PaymentDue]) -> list[tuple[str, str, int]]:
    return [(d.programme, d.period.name, d.amount_fen) for d in dues]


def the_walkthrough(registry: Registry) -> None:
    registry.enrol(LI, "urban_dibao", "150902", date(2017, 1, 1), URBAN)
    registry.enrol(WANG, "rural_dibao", "150921", date(2017, 1, 1), RURAL)


# --- the walkthrough -----------------------------------------------------------------------------


def test_the_walkthrough_january_run_accrues_810_urban_and_a_rural_quarter_of_3_times_792_78(
    policy: Policy, registry: Registry
) -> None:
    the_walkthrough(registry)
    dues = run(policy, registry, "2017-01")
    assert owed(dues) == [("urban_dibao", "2017-01", 81000), ("rural_dibao", "2017-Q1", 237834)]
    urban, rural = dues
    assert (urban.id_number, urban.region, urban.persons, urban.due_date, urban.late) == (
        LI,
        "150902",
        2,
        date(2017, 1, 10),
        False,
    )
    assert (rural.id_number, rural.region, rural.persons, rural.due_date, rural.late) == (
        WANG,
        "150921",
        3,
        date(2017, 1, 10),
        False,
    )


def test_a_march_run_without_a_watermark_accrues_every_month_since_the_start_with_past_months_late(
    policy: Policy, registry: Registry
) -> None:
    registry.enrol(LI, "urban_dibao", "150902", date(2017, 1, 1), URBAN)
    dues = run(policy, registry, "2017-03")
    assert [(d.period.name, d.amount_fen, d.due_date, d.late) for d in dues] == [
        ("2017-01", 81000, date(2017, 1, 10), True),
        ("2017-02", 81000, date(2017, 2, 10), True),
        ("2017-03", 81000, date(2017, 3, 10), False),
    ]


def test_an_enrolment_from_mid_january_is_owed_january_by_default(policy: Policy, registry: Registry) -> None:
    registry.enrol(LI, "urban_dibao", "150902", date(2017, 1, 15), URBAN)
    assert [d.period.name for d in run(policy, registry, "2017-02")] == ["2017-01", "2017-02"]


def test_a_run_before_the_enrolment_starts_owes_nothing(policy: Policy, registry: Registry) -> None:
    registry.enrol(LI, "urban_dibao", "150902", date(2017, 3, 1), URBAN)
    assert run(policy, registry, "2017-02") == []


# --- watermarks: what an earlier run covered stays covered ------------------------------------------


def test_an_unchanged_record_after_a_january_watermark_is_owed_only_february_and_march(
    policy: Policy, registry: Registry
) -> None:
    # Given a January run completed at a position at or after the record's last event
    registry.enrol(LI, "urban_dibao", "150902", date(2017, 1, 1), URBAN)
    record = registry.records[Person.create_id(LI)]
    watermark = Watermark(Month(2017, 1), registry_position=record.last_position)
    # When March runs
    dues = run(policy, registry, "2017-03", watermark=watermark, policy_position=0)
    # Then only February (late) and March are owed
    assert [(d.period.name, d.late) for d in dues] == [("2017-02", True), ("2017-03", False)]


def test_a_record_changed_after_the_watermark_is_looked_at_from_its_start(policy: Policy, registry: Registry) -> None:
    registry.enrol(LI, "urban_dibao", "150902", date(2017, 1, 1), URBAN)
    watermark = Watermark(Month(2017, 1), registry_position=registry.position)
    # A decision recorded after the January run (an adjustment with effect from January)
    registry.decide(LI, "adjust", "urban_dibao", date(2017, 1, 1), amount_fen=90000)
    assert registry.records[Person.create_id(LI)].last_position > watermark.registry_position
    dues = run(policy, registry, "2017-03", watermark=watermark)
    assert [d.period.name for d in dues] == ["2017-01", "2017-02", "2017-03"]


def test_a_policy_loaded_after_the_watermark_makes_every_record_be_looked_at_from_its_start(
    policy: Policy, registry: Registry
) -> None:
    the_walkthrough(registry)
    watermark = Watermark(Month(2017, 1), registry_position=registry.position)
    dues = run(policy, registry, "2017-03", watermark=watermark, policy_position=registry.position + 1)
    assert [(d.programme, d.period.name) for d in dues] == [
        ("urban_dibao", "2017-01"),
        ("urban_dibao", "2017-02"),
        ("urban_dibao", "2017-03"),
        ("rural_dibao", "2017-Q1"),
    ]


def test_a_policy_loaded_before_the_watermark_keeps_the_watermark(policy: Policy, registry: Registry) -> None:
    the_walkthrough(registry)
    watermark = Watermark(Month(2017, 1), registry_position=registry.position)
    dues = run(policy, registry, "2017-03", watermark=watermark, policy_position=registry.position)
    assert [(d.programme, d.period.name) for d in dues] == [
        ("urban_dibao", "2017-02"),
        ("urban_dibao", "2017-03"),
    ]


# --- decisions -----------------------------------------------------------------------------------


def test_no_payment_is_owed_for_the_months_of_a_suspension(policy: Policy, registry: Registry) -> None:
    registry.enrol(LI, "urban_dibao", "150902", date(2017, 1, 1), URBAN)
    registry.decide(LI, "suspend", "urban_dibao", date(2017, 2, 1))
    registry.decide(LI, "resume", "urban_dibao", date(2017, 4, 1))
    dues = run(policy, registry, "2017-05")
    assert [d.period.name for d in dues] == ["2017-01", "2017-04", "2017-05"]


def test_an_adjusted_amount_overrides_the_standard_from_its_month(policy: Policy, registry: Registry) -> None:
    registry.enrol(LI, "urban_dibao", "150902", date(2017, 1, 1), URBAN)
    registry.decide(LI, "adjust", "urban_dibao", date(2017, 3, 1), amount_fen=50000)
    assert owed(run(policy, registry, "2017-04")) == [
        ("urban_dibao", "2017-01", 81000),
        ("urban_dibao", "2017-02", 81000),
        ("urban_dibao", "2017-03", 50000),
        ("urban_dibao", "2017-04", 50000),
    ]


def test_an_adjusted_quarterly_amount_pays_three_months_of_the_approved_amount(
    policy: Policy, registry: Registry
) -> None:
    registry.enrol(WANG, "rural_dibao", "150921", date(2017, 1, 1), RURAL)
    registry.decide(WANG, "adjust", "rural_dibao", date(2017, 4, 1), amount_fen=70000)
    assert owed(run(policy, registry, "2017-04")) == [
        ("rural_dibao", "2017-Q1", 237834),
        ("rural_dibao", "2017-Q2", 210000),
    ]


def test_a_phase_out_is_paid_six_more_months_and_then_nothing(policy: Policy, registry: Registry) -> None:
    registry.enrol(LI, "urban_dibao", "150902", date(2017, 1, 1), URBAN)
    registry.decide(LI, "phase-out", "urban_dibao", date(2017, 3, 1))
    dues = run(policy, registry, "2017-12")
    assert [d.period.name for d in dues] == [f"2017-{m:02d}" for m in range(1, 9)]


# --- person programmes and annual standards ------------------------------------------------------


def test_quarterly_tekun_pays_a_quarter_of_5078_each_quarter_and_the_year_sums_exactly(
    policy: Policy, registry: Registry
) -> None:
    registry.enrol(WANG, "tekun_rural_dispersed", "150921", date(2017, 1, 1))
    dues = run(policy, registry, "2017-10")
    assert owed(dues) == [("tekun_rural_dispersed", f"2017-Q{q}", 126950) for q in (1, 2, 3, 4)]
    assert sum(d.amount_fen for d in dues) == 507800
    assert [d.persons for d in dues] == [1, 1, 1, 1]
    assert [d.late for d in dues] == [True, True, True, False]


def test_a_quarterly_enrolment_from_february_is_owed_february_and_march_of_the_first_quarter(
    policy: Policy, registry: Registry
) -> None:
    registry.enrol(WANG, "tekun_rural_dispersed", "150921", date(2017, 2, 1))
    assert owed(run(policy, registry, "2017-06")) == [
        ("tekun_rural_dispersed", "2017-Q1", 42317 + 42317),
        ("tekun_rural_dispersed", "2017-Q2", 126950),
    ]


def test_a_programme_without_a_standard_in_force_owes_nothing(policy: Policy, registry: Registry) -> None:
    registry.enrol(LI, "disability_living", "150902", date(2017, 1, 1))
    assert run(policy, registry, "2017-06") == []


def test_a_household_with_income_above_the_line_and_no_special_member_is_not_a_payment(
    policy: Policy, registry: Registry
) -> None:
    registry.enrol(LI, "urban_dibao", "150902", date(2017, 1, 1), HouseholdFacts(2, 120000, 0))
    assert run(policy, registry, "2017-01") == []


# --- standards change (联动 and new standards) -----------------------------------------------------


def test_a_new_urban_dibao_standard_from_july_is_paid_from_july(registry: Registry) -> None:
    # Given a urban dibao standard of 600.00 from 2017-07-01 beside the 2017 one
    document = _document()
    document["programmes"]["urban_dibao"]["standards"].append(
        {"from": "2017-07-01", "amount": "600.00", "per": "month"}
    )
    policy = parse_policy(document)
    registry.enrol(LI, "urban_dibao", "150902", date(2017, 1, 1), URBAN)
    # When July runs, then June pays 2 × 555 − 300 and July 2 × 600 − 300
    dues = {d.period.name: d.amount_fen for d in run(policy, registry, "2017-07")}
    assert dues["2017-06"] == 81000
    assert dues["2017-07"] == 90000


def test_tekun_follows_a_new_rural_dibao_standard_from_its_quarter(registry: Registry) -> None:
    document = _document()
    document["programmes"]["rural_dibao"]["standards"].append(
        {"from": "2017-07-01", "amount": "4200.00", "per": "year"}
    )
    policy = parse_policy(document)
    registry.enrol(WANG, "tekun_rural_dispersed", "150921", date(2017, 1, 1))
    dues = {d.period.name: d.amount_fen for d in run(policy, registry, "2017-10")}
    # 5460 元/年 from July: Q3 = ⌊546000·9/12⌋ − ⌊546000·6/12⌋ = 136500
    assert dues == {"2017-Q1": 126950, "2017-Q2": 126950, "2017-Q3": 136500, "2017-Q4": 136500}


# --- scope ---------------------------------------------------------------------------------------


def test_a_county_scope_excludes_an_enrolment_in_another_county(policy: Policy, registry: Registry) -> None:
    the_walkthrough(registry)
    assert [d.id_number for d in run(policy, registry, "2017-01", scope="150921")] == [WANG]
    assert [d.id_number for d in run(policy, registry, "2017-01", scope="150902")] == [LI]


def test_a_city_scope_includes_every_county_inside_it(policy: Policy, registry: Registry) -> None:
    the_walkthrough(registry)
    assert [d.id_number for d in run(policy, registry, "2017-01", scope="150900")] == [LI, WANG]


def test_a_scope_outside_the_region_accrues_nothing(policy: Policy, registry: Registry) -> None:
    the_walkthrough(registry)
    assert run(policy, registry, "2017-01", scope="151000") == []


# --- payment ids -------------------------------------------------------------------------------------


def test_payment_ids_are_the_same_for_the_same_enrolment_and_period(policy: Policy, registry: Registry) -> None:
    the_walkthrough(registry)
    first = [d.payment_id for d in run(policy, registry, "2017-01")]
    again = [d.payment_id for d in run(policy, registry, "2017-01")]
    later = {d.period.name: d.payment_id for d in run(policy, registry, "2017-03")}
    assert first == again
    assert first[0] == payment_id(LI, "urban_dibao", "2017-01") == later["2017-01"]
    assert first[1] == payment_id(WANG, "rural_dibao", "2017-Q1") == later["2017-Q1"]


def test_payment_ids_differ_by_period_programme_and_person() -> None:
    ids = {
        payment_id(LI, "urban_dibao", "2017-01"),
        payment_id(LI, "urban_dibao", "2017-02"),
        payment_id(LI, "sanmin", "2017-01"),
        payment_id(WANG, "urban_dibao", "2017-01"),
    }
    assert len(ids) == 4


def test_a_second_run_for_the_same_month_after_its_watermark_owes_nothing_new(
    policy: Policy, registry: Registry
) -> None:
    the_walkthrough(registry)
    watermark = Watermark(Month(2017, 1), registry_position=registry.position)
    assert run(policy, registry, "2017-01", watermark=watermark) == []


def test_an_enrolment_starting_before_the_payees_birth_does_not_stop_the_run_for_others(
    policy: Policy, registry: Registry
) -> None:
    the_walkthrough(registry)
    child = "150902201703050012"  # born 2017-03-05
    registry.enrol(child, "orphan_dispersed", "150902", date(2017, 1, 1))
    dues = run(policy, registry, "2017-01")
    assert (LI, "2017-01") in [(d.id_number, d.period.name) for d in dues]


@settings(max_examples=200, deadline=None)
@given(
    members=st.integers(min_value=1, max_value=12),
    income_fen=st.integers(min_value=0, max_value=2_000_000),
    special=st.integers(min_value=0, max_value=12),
    month=st.integers(min_value=1, max_value=12),
    programme=st.sampled_from(["urban_dibao", "rural_dibao"]),
)
def test_a_household_period_pays_the_sum_of_its_months_as_month_amount_fen_states(
    members: int, income_fen: int, special: int, month: int, programme: str
) -> None:
    policy = parse_policy(_document())
    household = HouseholdFacts(members, income_fen, min(special, members))
    record = PersonRecord(WANG, "王桂英", date(1975, 5, 5), "b", "a", {})
    enrolment = Enrolment(programme, "150921", date(2017, 1, 1), household, "ref")
    program = policy.programme(programme)
    period = Period.containing(Month(2017, month), program.cadence)
    expected = sum(
        month_amount_fen(policy, program, m, age=41, household=household, override_fen=None)
        for m in period.month_list()
    )
    assert Accrual(policy, Month(2017, 12)).period_amount_fen(program, period, record, enrolment) == expected


@pytest.mark.parametrize("programme", ["tekun_rural_dispersed", "tekun_care_full", "sanmin", "orphan_dispersed"])
def test_a_person_programme_period_pays_the_sum_of_its_months_as_month_amount_fen_states(
    policy: Policy, programme: str
) -> None:
    record = PersonRecord(WANG, "王桂英", date(1975, 5, 5), "b", "a", {})
    enrolment = Enrolment(programme, "150921", date(2017, 1, 1), SINGLE, "ref")
    program = policy.programme(programme)
    accrual = Accrual(policy, Month(2017, 12))
    for period in periods_starting_between(program.cadence, Month(2017, 1), Month(2017, 12)):
        expected = sum(
            month_amount_fen(policy, program, m, age=41, household=SINGLE, override_fen=None)
            for m in period.month_list()
        )
        assert accrual.period_amount_fen(program, period, record, enrolment) == expected
