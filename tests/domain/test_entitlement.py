"""Entitlement over time (issue 14): months, stops, phase-out and adjustments, to the fen.

The figures are ../shared/examples/entitlement.md's, on the shipped Ulanqab 2017 policy: urban dibao
555 元/月, rural dibao 3906 元/年 (325.50 a month per person), rural dispersed 特困 5078 元/年 (month shares
42 316 / 42 317 fen), 三民 = urban dibao + 220 = 775 元/月, half-yearly.
"""

from __future__ import annotations

import dataclasses
import tomllib
from datetime import date

import pytest

from domain.disbursement import Accrual, Accrued, PolicyChanges, adjustment_id, payment_id
from domain.periods import Month, Period
from domain.policy import HouseholdFacts, Policy, parse_policy
from tests.helpers.persons import LI, POLICY, SINGLE, WANG, Registry

ZHAO = "152601194501011234"  # a 三民 payee
URBAN = HouseholdFacts(members=2, monthly_income_fen=30000, special_members=0)
RURAL = HouseholdFacts(members=3, monthly_income_fen=20000, special_members=0)


def _policy(text: str | None = None) -> Policy:
    return parse_policy(tomllib.loads(text if text is not None else POLICY.read_text(encoding="utf-8")))


@pytest.fixture
def policy() -> Policy:
    return _policy()


@pytest.fixture
def registry(policy: Policy) -> Registry:
    return Registry(policy)


def with_rules(policy: Policy, programme: str, **rules: str) -> Policy:
    programmes = dict(policy.programmes)
    programmes[programme] = dataclasses.replace(programmes[programme], **rules)
    return dataclasses.replace(policy, programmes=programmes)


def owed(policy: Policy, registry: Registry, month: str, **kwargs: object) -> list[tuple[str, str, int, bool]]:
    accrual = Accrual(policy, Month.parse(month), **kwargs)  # type: ignore[arg-type]
    return [
        (e.programme.key, e.period.name, e.amount_fen, e.examine)
        for e in accrual.owed(registry.items(), "150900", None, 0)
    ]


def dues(policy: Policy, registry: Registry, month: str) -> list[tuple[str, str, int, bool]]:
    accrual = Accrual(policy, Month.parse(month))
    return [
        (d.programme, d.period.name, d.amount_fen, d.late) for d in accrual.due(registry.items(), "150900", None, 0)
    ]


# --- 1. a start in the middle of a period -----------------------------------------------------------


def test_a_tekun_start_in_february_is_paid_february_and_march_as_arrears_of_the_first_quarter(
    policy: Policy, registry: Registry
) -> None:
    registry.enrol(WANG, "tekun_rural_dispersed", "150921", date(2017, 2, 1))
    assert dues(policy, registry, "2017-02") == [("tekun_rural_dispersed", "2017-Q1", 84634, True)]
    year = dues(policy, registry, "2017-12")
    assert [d[2] for d in year] == [84634, 126950, 126950, 126950]
    assert sum(d[2] for d in year) == 465484 == 507800 - 42316  # 4654.84 = 5078.00 − January's 423.16


def test_a_sanmin_start_in_february_is_paid_five_months_of_the_first_half_and_the_second_half(
    policy: Policy, registry: Registry
) -> None:
    registry.enrol(ZHAO, "sanmin", "150902", date(2017, 2, 1))
    year = dues(policy, registry, "2017-12")
    assert [(d[1], d[2]) for d in year] == [("2017-H1", 5 * 77500), ("2017-H2", 6 * 77500)]
    assert sum(d[2] for d in year) == 852500


def test_a_start_next_month_programme_pays_from_the_month_after_the_start(policy: Policy, registry: Registry) -> None:
    registry.enrol(WANG, "tekun_rural_dispersed", "150921", date(2017, 2, 15))
    later = with_rules(policy, "tekun_rural_dispersed", starts="next_month")
    assert dues(later, registry, "2017-02") == [("tekun_rural_dispersed", "2017-Q1", 42317, True)]


# --- stops ------------------------------------------------------------------------------------------


def test_a_death_in_february_pays_february_and_nothing_after(policy: Policy, registry: Registry) -> None:
    registry.enrol(LI, "urban_dibao", "150902", date(2021, 1, 1), SINGLE)
    registry.decide(LI, "terminate", "urban_dibao", date(2021, 2, 10))
    assert [d[1] for d in dues(policy, registry, "2021-05")] == ["2021-01", "2021-02"]
    same = with_rules(policy, "urban_dibao", stops="same_month")
    assert [d[1] for d in dues(same, registry, "2021-05")] == ["2021-01"]


def test_a_tekun_termination_on_20_january_pays_january_only_of_the_first_quarter(
    policy: Policy, registry: Registry
) -> None:
    registry.enrol(WANG, "tekun_rural_dispersed", "150921", date(2017, 1, 1))
    registry.decide(WANG, "terminate", "tekun_rural_dispersed", date(2017, 1, 20))
    assert dues(policy, registry, "2017-06") == [("tekun_rural_dispersed", "2017-Q1", 42316, True)]


# --- 5. a phase-out on a quarterly programme ----------------------------------------------------------


def test_a_quarterly_phase_out_from_may_pays_exactly_may_to_october(policy: Policy, registry: Registry) -> None:
    registry.enrol(WANG, "rural_dibao", "150921", date(2017, 1, 1), RURAL)
    registry.decide(WANG, "phase-out", "rural_dibao", date(2017, 5, 1))
    assert 3 * 32550 - 20000 == 77650
    assert [(d[1], d[2]) for d in dues(policy, registry, "2017-12")] == [
        ("2017-Q1", 232950),
        ("2017-Q2", 232950),
        ("2017-Q3", 232950),
        ("2017-Q4", 77650),  # October only: the six months are May … October
    ]


def test_a_phase_out_keeps_the_approved_amount_in_force_before_it(policy: Policy, registry: Registry) -> None:
    registry.enrol(LI, "urban_dibao", "150902", date(2017, 1, 1), URBAN)
    registry.decide(LI, "adjust", "urban_dibao", date(2017, 2, 1), amount_fen=70000)
    registry.decide(LI, "phase-out", "urban_dibao", date(2017, 3, 15))
    assert [(d[1], d[2]) for d in dues(policy, registry, "2017-12")] == [
        ("2017-01", 81000),
        *[(f"2017-{m:02d}", 70000) for m in range(2, 9)],
    ]


# --- 2. and 4. adjustments --------------------------------------------------------------------------


def test_a_death_recorded_after_the_half_year_was_paid_is_an_adjustment_of_minus_2325(
    policy: Policy, registry: Registry
) -> None:
    registry.enrol(ZHAO, "sanmin", "150902", date(2017, 1, 1))
    (paid,) = Accrual(policy, Month(2017, 1)).due(registry.items(), "150900", None, 0)
    assert paid.amount_fen == 465000
    registry.decide(ZHAO, "terminate", "sanmin", date(2017, 3, 5))
    accrual = Accrual(policy, Month(2017, 3))
    (now,) = [e for e in accrual.owed(registry.items(), "150900", None, 0) if e.period.name == "2017-H1"]
    assert now.amount_fen == 3 * 77500 and now.examine
    adjustment = accrual.adjustment(now, Accrued(payment_fen=465000, monthly=True), cause="decision")
    assert adjustment is not None
    assert adjustment.amount_fen == -232500 and adjustment.is_recovery
    assert adjustment.adjusts == payment_id(ZHAO, "sanmin", "2017-H1").hex
    assert adjustment.payment_id == adjustment_id(adjustment.adjusts, 1)
    # Once recorded, the period holds what is due: nothing more.
    assert accrual.adjustment(now, Accrued(465000, True, -232500, 1), cause="decision") is None


def test_a_period_priced_by_an_earlier_release_is_never_re_priced(policy: Policy, registry: Registry) -> None:
    registry.enrol(ZHAO, "sanmin", "150902", date(2017, 1, 1))
    registry.decide(ZHAO, "terminate", "sanmin", date(2017, 3, 5))
    accrual = Accrual(policy, Month(2017, 3))
    (now,) = [e for e in accrual.owed(registry.items(), "150900", None, 0) if e.period.name == "2017-H1"]
    assert accrual.adjustment(now, Accrued(payment_fen=465000, monthly=False), cause="decision") is None


def _raised(text: str) -> str:
    """Urban dibao 555 → 580 from 2017-01-01, as a policy announced in April and back-dated."""
    raised = text.replace('amount = "555.00", per = "month"', 'amount = "580.00", per = "month"')
    raised = raised.replace(
        'add = "220.00", per = "month", expect = "775.00"', 'add = "220.00", per = "month", expect = "800.00"'
    )
    assert raised != text
    return raised


def test_a_retroactive_rise_is_one_adjustment_per_period_and_reaches_what_derives_from_it(registry: Registry) -> None:
    text = POLICY.read_text(encoding="utf-8")
    before, now = _policy(text), _policy(_raised(text))
    registry.enrol(LI, "urban_dibao", "150902", date(2017, 1, 1), SINGLE)
    registry.enrol(ZHAO, "sanmin", "150902", date(2017, 1, 1))
    changes = PolicyChanges(before, now)
    assert changes.month_changed("urban_dibao", Month(2017, 2))
    assert changes.month_changed("sanmin", Month(2017, 2))  # 三民 = urban dibao + 220
    assert not changes.month_changed("rural_dibao", Month(2017, 2))
    assert not changes.period_changed("tekun_rural_dispersed", Period.parse("2017-Q1"))
    # Everything was paid under the old standard up to March; April's run is under the new one.
    registry_position = registry.position
    from domain.disbursement import Watermark

    watermark = Watermark(Month(2017, 3), registry_position)
    accrual = Accrual(now, Month(2017, 4), changes=changes)
    found = list(accrual.owed(registry.items(), "150900", watermark, registry_position + 1))
    examined = [(e.programme.key, e.period.name, e.amount_fen) for e in found if e.examine]
    assert examined == [
        ("urban_dibao", "2017-01", 58000),
        ("urban_dibao", "2017-02", 58000),
        ("urban_dibao", "2017-03", 58000),
        ("sanmin", "2017-H1", 6 * 80000),
    ]
    paid = {"urban_dibao": 55500, "sanmin": 6 * 77500}
    adjustments = [
        accrual.adjustment(e, Accrued(paid[e.programme.key], True), cause="policy") for e in found if e.examine
    ]
    assert [(a.programme, a.period.name, a.amount_fen) for a in adjustments if a] == [
        ("urban_dibao", "2017-01", 2500),
        ("urban_dibao", "2017-02", 2500),
        ("urban_dibao", "2017-03", 2500),
        ("sanmin", "2017-H1", 15000),
    ]
    positive = [a for a in adjustments if a]
    assert all(a.due_date == date(2017, 5, 10) and not a.late for a in positive[:3])  # due the month after the run
    new = [(e.programme.key, e.period.name, e.amount_fen) for e in found if not e.examine]
    assert new == [("urban_dibao", "2017-04", 58000)]


def test_a_policy_loaded_again_unchanged_examines_nothing(policy: Policy, registry: Registry) -> None:
    from domain.disbursement import Watermark

    registry.enrol(LI, "urban_dibao", "150902", date(2017, 1, 1), SINGLE)
    watermark = Watermark(Month(2017, 3), registry.position)
    accrual = Accrual(policy, Month(2017, 4), changes=PolicyChanges(policy, _policy()))
    found = list(accrual.owed(registry.items(), "150900", watermark, registry.position + 1))
    assert [(e.period.name, e.examine) for e in found] == [("2017-04", False)]
