"""Eligibility guards (docs/entitlement.md, "Eligibility guards"): the policy keys, their bounds, and the
pure rule `check_guards` — each refusal named after its rule, each accepted when its key is absent."""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from domain.eligibility import (
    AgeAboveMaximum,
    AgeBelowMinimum,
    Decision,
    Enrolment,
    IncomeAtOrAboveStandard,
    RequiredProgrammeMissing,
    check_guards,
)
from domain.policy import HouseholdFacts, Policy, PolicyRejected, parse_policy

DATA = Path(__file__).resolve().parents[2] / "ledger" / "data"
JAN_2017 = date(2017, 1, 1)
CHILD_ID = "150902201003040012"


@pytest.fixture
def doc() -> dict[str, Any]:
    with (DATA / "ulanqab-2017.toml").open("rb") as f:
        return tomllib.load(f)


def _policy(doc: dict[str, Any]) -> Policy:
    return parse_policy(doc, "ulanqab-2017.toml")


def _enrolment(programme: str, *, start: date = JAN_2017, decisions: tuple[Decision, ...] = ()) -> Enrolment:
    return Enrolment(programme, "150902", start, HouseholdFacts(1, 0, 0), "集民发〔2017〕9号", decisions)


def _guard(
    policy: Policy,
    programme: str,
    birth: date,
    *,
    held: dict[str, Enrolment] | None = None,
    household: HouseholdFacts | None = None,
    on: date = JAN_2017,
) -> None:
    check_guards(policy, programme, id_number="X", birth_date=birth, on=on, held=held or {}, household=household)


def test_the_shipped_policy_states_the_guards_its_seed_states(doc: dict[str, Any]) -> None:
    policy = _policy(doc)
    assert [
        policy.programmes[k].age_min for k in ("tekun_urban", "tekun_rural_centralised", "tekun_rural_dispersed")
    ] == [
        16,
        16,
        16,
    ]
    assert {policy.programmes[k].age_max for k in ("orphan_centralised", "orphan_dispersed", "de_facto_orphan")} == {17}
    assert policy.programmes["high_age"].age_min == 80
    assert "tekun_rural_dispersed" in policy.programmes["tekun_care_partial"].requires
    assert policy.programmes["urban_dibao"].income_test and policy.programmes["rural_dibao"].income_test
    # Where the seed is silent the key is left out: no guard.
    assert (policy.programmes["sanmin"].age_min, policy.programmes["sanmin"].age_max) == (None, None)
    assert policy.programmes["sanmin"].requires == ()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"age_min": -1}, "programmes.sanmin.age_min: -1 is not a whole number of years 0-150"),
        ({"age_max": 151}, "programmes.sanmin.age_max: 151 is not a whole number of years 0-150"),
        ({"age_min": "16"}, "programmes.sanmin.age_min: '16' is not a whole number of years 0-150"),
        ({"age_min": True}, "programmes.sanmin.age_min: True is not a whole number of years 0-150"),
        ({"age_min": 60, "age_max": 17}, "programmes.sanmin.age_min: 60 is above age_max 17"),
        ({"requires": ["nothing_such"]}, "programmes.sanmin.requires: unknown programme 'nothing_such'"),
        ({"requires": ["sanmin"]}, "programmes.sanmin.requires: a programme cannot require itself"),
        ({"requires": "urban_dibao"}, "programmes.sanmin.requires: must be a list of programme keys"),
        ({"income_test": True}, "programmes.sanmin.income_test: only a household programme has an income test"),
        ({"income_test": "yes"}, "programmes.sanmin.income_test: 'yes' is not true or false"),
    ],
)
def test_a_guard_out_of_bounds_is_refused_naming_its_key(
    doc: dict[str, Any], settings: dict[str, Any], message: str
) -> None:
    doc["programmes"]["sanmin"].update(settings)
    with pytest.raises(PolicyRejected) as refused:
        _policy(doc)
    assert any(e.startswith(message) for e in refused.value.errors), refused.value.errors


def test_a_child_born_2010_is_refused_basic_tekun_and_accepted_without_age_min(doc: dict[str, Any]) -> None:
    # 000_… 一.3: "未满16周岁儿童暂不纳入特困人员".
    with pytest.raises(AgeBelowMinimum, match="aged 6 on 2017-01-01, tekun_rural_dispersed starts at 16"):
        _guard(_policy(doc), "tekun_rural_dispersed", date(2010, 3, 4))
    del doc["programmes"]["tekun_rural_dispersed"]["age_min"]
    _guard(_policy(doc), "tekun_rural_dispersed", date(2010, 3, 4))


def test_age_min_counts_whole_years_on_the_effective_date(doc: dict[str, Any]) -> None:
    policy = _policy(doc)
    _guard(policy, "tekun_rural_dispersed", date(2001, 1, 1))  # 16 on the day
    with pytest.raises(AgeBelowMinimum):
        _guard(policy, "tekun_rural_dispersed", date(2001, 1, 2))  # 16 the day after


def test_a_person_born_1940_is_refused_as_a_dispersed_orphan_and_accepted_without_age_max(doc: dict[str, Any]) -> None:
    with pytest.raises(AgeAboveMaximum, match="aged 76 on 2017-01-01, orphan_dispersed ends at 17"):
        _guard(_policy(doc), "orphan_dispersed", date(1940, 5, 6))
    del doc["programmes"]["orphan_dispersed"]["age_max"]
    _guard(_policy(doc), "orphan_dispersed", date(1940, 5, 6))


def test_high_age_starts_at_80(doc: dict[str, Any]) -> None:
    policy = _policy(doc)
    _guard(policy, "high_age", date(1937, 1, 1))
    with pytest.raises(AgeBelowMinimum):
        _guard(policy, "high_age", date(1937, 1, 2))


def test_a_care_subsidy_needs_a_basic_tekun_form_active_on_the_date(doc: dict[str, Any]) -> None:
    policy = _policy(doc)
    old = date(1940, 1, 1)
    with pytest.raises(RequiredProgrammeMissing, match="tekun_care_partial requires one of tekun_urban"):
        _guard(policy, "tekun_care_partial", old)
    _guard(policy, "tekun_care_partial", old, held={"tekun_rural_dispersed": _enrolment("tekun_rural_dispersed")})
    later = _enrolment("tekun_rural_dispersed", start=date(2017, 4, 1))
    with pytest.raises(RequiredProgrammeMissing):
        _guard(policy, "tekun_care_partial", old, held={"tekun_rural_dispersed": later})
    ended = _enrolment("tekun_rural_dispersed", decisions=(Decision("terminate", date(2017, 2, 1), "clerk", "死亡"),))
    with pytest.raises(RequiredProgrammeMissing):
        _guard(policy, "tekun_care_partial", old, held={"tekun_rural_dispersed": ended}, on=date(2017, 3, 1))
    del doc["programmes"]["tekun_care_partial"]["requires"]
    _guard(_policy(doc), "tekun_care_partial", old)


def test_a_household_at_or_above_the_line_is_refused_and_below_it_accepted(doc: dict[str, Any]) -> None:
    policy = _policy(doc)
    adult = date(1970, 1, 1)
    # Urban dibao 555 元 a person and month (000_… 一.1): 2 members at 1110.00 is exactly the line.
    with pytest.raises(IncomeAtOrAboveStandard, match=r"per-capita income 555\.00 元 .* standard 555\.00 元"):
        _guard(policy, "urban_dibao", adult, household=HouseholdFacts(2, 111_000, 0))
    _guard(policy, "urban_dibao", adult, household=HouseholdFacts(2, 110_999, 0))
    # Rural 3906 元 a year = 325.50 a month: 3 members at 976.50 is the line, 976.49 below it.
    with pytest.raises(IncomeAtOrAboveStandard):
        _guard(policy, "rural_dibao", adult, household=HouseholdFacts(3, 97_650, 0))
    _guard(policy, "rural_dibao", adult, household=HouseholdFacts(3, 97_649, 0))
    # A resumption decides no household facts: no income test.
    _guard(policy, "urban_dibao", adult, household=None)
    del doc["programmes"]["urban_dibao"]["income_test"]
    _guard(_policy(doc), "urban_dibao", adult, household=HouseholdFacts(2, 111_000, 0))


def test_a_programme_without_guards_accepts_anyone(doc: dict[str, Any]) -> None:
    _guard(_policy(doc), "sanmin", date(2016, 12, 31))
