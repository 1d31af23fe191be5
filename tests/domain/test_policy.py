"""A region's policy: the shipped files reproduce the documents' figures; bad files are refused whole.

Seeds: 000_a883bdda05437b65.txt (乌兰察布 2017) and 003_269d93830099df47.txt (鄂尔多斯 2021).
"""

from __future__ import annotations

import copy
import tomllib
from datetime import date
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from domain.periods import Month
from domain.policy import (
    HouseholdFacts,
    NoStandardInForce,
    Policy,
    PolicyRejected,
    UnknownProgramme,
    month_amount_fen,
    parse_policy,
    repriced_periods,
)

DATA = Path(__file__).resolve().parents[2] / "ledger" / "data"
JAN_2017 = date(2017, 1, 1)


def _document(name: str) -> dict[str, Any]:
    with (DATA / name).open("rb") as f:
        return tomllib.load(f)


@pytest.fixture
def ulanqab_doc() -> dict[str, Any]:
    return _document("ulanqab-2017.toml")


@pytest.fixture
def ulanqab(ulanqab_doc: dict[str, Any]) -> Policy:
    return parse_policy(ulanqab_doc, "ulanqab-2017.toml")


@pytest.fixture
def ordos() -> Policy:
    return parse_policy(_document("ordos-2021.toml"), "ordos-2021.toml")


def _rejected(doc: dict[str, Any]) -> PolicyRejected:
    with pytest.raises(PolicyRejected) as caught:
        parse_policy(doc, "bad.toml")
    return caught.value


# --- the shipped ulanqab policy reproduces each stated figure -------------------------------------


def test_the_shipped_ulanqab_policy_loads_for_region_150900(ulanqab: Policy) -> None:
    assert ulanqab.region_code == "150900"
    assert ulanqab.region_name == "乌兰察布市"
    assert ulanqab.special_member_uplift == Fraction(5, 100)


@pytest.mark.parametrize(
    ("programme", "per", "amount_fen"),
    [
        ("urban_dibao", "month", 55500),  # 一.1 每人每月555元
        ("rural_dibao", "year", 390600),  # 一.2 每人每年3906元
        ("tekun_rural_dispersed", "year", 507800),  # 一.3 1.3 × 3906 = 5077.8 → 5078
        ("tekun_care_partial", "month", 37300),  # 一.3 25 % × 1490 = 372.5 → 373
        ("tekun_care_full", "month", 96900),  # 一.3 65 % × 1490 = 968.5 → 969
        ("orphan_centralised", "month", 150000),  # 一.4
        ("orphan_dispersed", "month", 120000),  # 一.4
        ("de_facto_orphan", "month", 120000),  # 一.4 = orphan_dispersed
        ("children_in_difficulty", "month", 60000),  # 一.4 50 % × 1200 = 600
        ("sanmin", "month", 77500),  # 一.7 555 + 220 = 775
        ("youfu_topup", "month", 12000),  # 一.9
        ("jingjian_tuizhi", "year", 390600),  # 一.8 at the rural dibao standard
    ],
)
def test_the_ulanqab_policy_reproduces_each_figure_the_document_states(
    ulanqab: Policy, programme: str, per: str, amount_fen: int
) -> None:
    standard = ulanqab.standard_on(programme, JAN_2017)
    assert (standard.per, standard.amount_fen) == (per, amount_fen)


def test_tekun_standard_follows_rural_dibao_times_1_3_rounded_to_the_yuan(ulanqab: Policy) -> None:
    assert ulanqab.standard_on("tekun_rural_dispersed", JAN_2017).amount_fen == 507800


def test_the_annual_rural_dibao_standard_is_325_50_a_month(ulanqab: Policy) -> None:
    assert ulanqab.monthly_standard_fen("rural_dibao", JAN_2017) == Fraction(32550)


def test_a_programme_without_a_stated_figure_has_no_standard_in_force(ulanqab: Policy) -> None:
    with pytest.raises(NoStandardInForce, match="disability_living"):
        ulanqab.standard_on("disability_living", JAN_2017)


def test_no_standard_is_in_force_before_the_first_one_starts(ulanqab: Policy) -> None:
    with pytest.raises(NoStandardInForce):
        ulanqab.standard_on("urban_dibao", date(2016, 12, 31))


def test_an_unknown_programme_is_refused_by_name(ulanqab: Policy) -> None:
    with pytest.raises(UnknownProgramme, match="no_such_programme"):
        ulanqab.programme("no_such_programme")


# --- 联动: derived standards follow their base ----------------------------------------------------


def test_tekun_follows_a_later_rural_dibao_standard_from_the_same_day(ulanqab_doc: dict[str, Any]) -> None:
    # Given the ulanqab policy with a 2018 rural dibao standard of 4200 元/年
    ulanqab_doc["programmes"]["rural_dibao"]["standards"].append(
        {"from": "2018-01-01", "amount": "4200.00", "per": "year"}
    )
    # When it is loaded
    policy = parse_policy(ulanqab_doc)
    # Then 特困 is round(1.3 × 4200) = 5460 from 2018-01-01 and stays 5078 in 2017
    assert policy.standard_on("tekun_rural_dispersed", date(2018, 1, 1)).amount_fen == 546000
    assert policy.standard_on("tekun_rural_dispersed", date(2017, 12, 31)).amount_fen == 507800
    assert policy.standard_on("tekun_rural_dispersed", JAN_2017).amount_fen == 507800


def test_sanmin_and_child_standards_follow_their_bases_from_the_same_day(ulanqab_doc: dict[str, Any]) -> None:
    ulanqab_doc["programmes"]["urban_dibao"]["standards"].append(
        {"from": "2018-01-01", "amount": "600.00", "per": "month"}
    )
    ulanqab_doc["programmes"]["orphan_dispersed"]["standards"].append(
        {"from": "2018-07-01", "amount": "1300.00", "per": "month"}
    )
    policy = parse_policy(ulanqab_doc)
    assert policy.standard_on("sanmin", date(2017, 12, 31)).amount_fen == 77500
    assert policy.standard_on("sanmin", date(2018, 1, 1)).amount_fen == 82000
    assert policy.standard_on("children_in_difficulty", date(2018, 6, 30)).amount_fen == 60000
    assert policy.standard_on("children_in_difficulty", date(2018, 7, 1)).amount_fen == 65000


def test_a_monthly_standard_derived_from_an_annual_base_converts_before_it_rounds(
    ulanqab_doc: dict[str, Any],
) -> None:
    ulanqab_doc["programmes"]["youfu_topup"]["standards"] = [
        {"from": "2017-01-01", "base": "rural_dibao", "factor": "1.3", "round": "fen", "per": "month"}
    ]
    policy = parse_policy(ulanqab_doc)
    # 3906 / 12 × 1.3 = 423.15 元/月
    assert policy.standard_on("youfu_topup", JAN_2017).amount_fen == 42315


# --- bad policies are refused whole, naming the key path -----------------------------------------


def test_an_unknown_base_is_refused_with_its_key_path(ulanqab_doc: dict[str, Any]) -> None:
    ulanqab_doc["programmes"]["sanmin"]["standards"][0]["base"] = "city_dibao"
    error = _rejected(ulanqab_doc)
    assert "programmes.sanmin.standards[0].base" in str(error)
    assert "city_dibao" in str(error)
    assert str(error).startswith("bad.toml: ")


def test_a_cycle_of_bases_is_refused_with_its_key_path(ulanqab_doc: dict[str, Any]) -> None:
    programmes = ulanqab_doc["programmes"]
    programmes["urban_dibao"]["standards"] = [{"from": "2017-01-01", "base": "sanmin", "per": "month"}]
    # sanmin is based on urban_dibao: urban_dibao → sanmin → urban_dibao
    error = _rejected(ulanqab_doc)
    assert "cycle" in str(error)
    assert "programmes.urban_dibao.standards" in str(error) or "programmes.sanmin.standards" in str(error)
    assert "urban_dibao → sanmin → urban_dibao" in str(error) or "sanmin → urban_dibao → sanmin" in str(error)


def test_a_programme_based_on_itself_is_a_cycle(ulanqab_doc: dict[str, Any]) -> None:
    ulanqab_doc["programmes"]["youfu_topup"]["standards"] = [
        {"from": "2017-01-01", "base": "youfu_topup", "add": "10.00", "per": "month"}
    ]
    error = _rejected(ulanqab_doc)
    assert "programmes.youfu_topup.standards: bases form a cycle" in str(error)


def test_two_standards_from_the_same_day_overlap_and_are_refused(ulanqab_doc: dict[str, Any]) -> None:
    ulanqab_doc["programmes"]["urban_dibao"]["standards"].append(
        {"from": "2017-01-01", "amount": "600.00", "per": "month"}
    )
    error = _rejected(ulanqab_doc)
    assert "programmes.urban_dibao.standards[1].from" in str(error)
    assert "overlaps standards[0]" in str(error)


def test_an_overlap_after_a_bad_entry_names_the_entries_as_they_are_in_the_file(
    ulanqab_doc: dict[str, Any],
) -> None:
    ulanqab_doc["programmes"]["urban_dibao"]["standards"] = [
        {"amount": "555.00", "per": "month"},  # no `from`
        {"from": "2017-01-01", "amount": "555.00", "per": "month"},
        {"from": "2017-01-01", "amount": "600.00", "per": "month"},
    ]
    error = _rejected(ulanqab_doc)
    assert "programmes.urban_dibao.standards[0].from" in str(error)
    assert "programmes.urban_dibao.standards[2].from: 2017-01-01 overlaps standards[1]" in str(error)


def test_a_derivation_that_disagrees_with_the_stated_figure_is_refused_with_both_numbers(
    ulanqab_doc: dict[str, Any],
) -> None:
    ulanqab_doc["programmes"]["tekun_rural_dispersed"]["standards"][0]["expect"] = "5077.80"
    error = _rejected(ulanqab_doc)
    assert "programmes.tekun_rural_dispersed.standards[0].expect" in str(error)
    assert "5078.00" in str(error)
    assert "5077.80" in str(error)


def test_a_fixed_standard_that_disagrees_with_its_stated_figure_is_refused(
    ulanqab_doc: dict[str, Any],
) -> None:
    ulanqab_doc["programmes"]["urban_dibao"]["standards"][0]["expect"] = "550.00"
    error = _rejected(ulanqab_doc)
    assert "programmes.urban_dibao.standards[0].expect: derivation gives 555.00" in str(error)
    assert "550.00" in str(error)


def test_an_expect_error_in_an_unsorted_standards_list_names_the_entry_as_it_is_in_the_file(
    ulanqab_doc: dict[str, Any],
) -> None:
    ulanqab_doc["programmes"]["tekun_rural_dispersed"]["standards"] = [
        {"from": "2018-01-01", "amount": "6000.00", "per": "year"},
        {
            "from": "2017-01-01",
            "base": "rural_dibao",
            "factor": "1.3",
            "round": "yuan",
            "per": "year",
            "expect": "5000.00",
        },
    ]
    error = _rejected(ulanqab_doc)
    assert "programmes.tekun_rural_dispersed.standards[1].expect" in str(error)


def test_an_unknown_cadence_is_refused_with_its_key_path(ulanqab_doc: dict[str, Any]) -> None:
    ulanqab_doc["programmes"]["urban_dibao"]["cadence"] = "weekly"
    error = _rejected(ulanqab_doc)
    assert "programmes.urban_dibao.cadence: 'weekly'" in str(error)


def test_an_unknown_unit_is_refused_with_its_key_path(ulanqab_doc: dict[str, Any]) -> None:
    ulanqab_doc["programmes"]["rural_dibao"]["unit"] = "family"
    error = _rejected(ulanqab_doc)
    assert "programmes.rural_dibao.unit: 'family'" in str(error)


@pytest.mark.parametrize("due_day", [0, 29, 31, -1, "10", True, 1.5])
def test_a_due_day_that_is_not_a_day_1_to_28_is_refused_with_its_key_path(
    ulanqab_doc: dict[str, Any], due_day: Any
) -> None:
    ulanqab_doc["programmes"]["urban_dibao"]["due_day"] = due_day
    error = _rejected(ulanqab_doc)
    assert "programmes.urban_dibao.due_day" in str(error)


def test_an_unknown_exclusion_is_refused_with_its_key_path(ulanqab_doc: dict[str, Any]) -> None:
    ulanqab_doc["programmes"]["orphan_dispersed"]["excludes"].append("tekun")
    error = _rejected(ulanqab_doc)
    assert "programmes.orphan_dispersed.excludes: unknown programme 'tekun'" in str(error)


def test_several_errors_at_once_are_all_reported(ulanqab_doc: dict[str, Any]) -> None:
    programmes = ulanqab_doc["programmes"]
    programmes["urban_dibao"]["cadence"] = "weekly"
    programmes["rural_dibao"]["unit"] = "family"
    programmes["sanmin"]["due_day"] = 40
    programmes["youfu_topup"]["standards"][0]["amount"] = "120.001"
    error = _rejected(ulanqab_doc)
    assert len(error.errors) == 4
    for path in (
        "programmes.urban_dibao.cadence",
        "programmes.rural_dibao.unit",
        "programmes.sanmin.due_day",
        "programmes.youfu_topup.standards[0].amount",
    ):
        assert path in str(error)
    assert str(error).endswith("nothing loaded")


def test_an_unknown_base_is_reported_beside_an_unrelated_parse_error(ulanqab_doc: dict[str, Any]) -> None:
    ulanqab_doc["programmes"]["urban_dibao"]["cadence"] = "weekly"
    ulanqab_doc["programmes"]["sanmin"]["standards"][0]["base"] = "city_dibao"
    error = _rejected(ulanqab_doc)
    assert "programmes.urban_dibao.cadence" in str(error)
    assert "programmes.sanmin.standards[0].base" in str(error)


def test_add_or_factor_beside_a_fixed_amount_is_refused(ulanqab_doc: dict[str, Any]) -> None:
    ulanqab_doc["programmes"]["youfu_topup"]["standards"][0]["add"] = "10.00"
    error = _rejected(ulanqab_doc)
    assert "programmes.youfu_topup.standards[0]" in str(error)


def test_a_policy_without_programmes_is_refused(ulanqab_doc: dict[str, Any]) -> None:
    del ulanqab_doc["programmes"]
    assert "programmes: missing table" in str(_rejected(ulanqab_doc))


def test_a_refused_policy_lists_each_error_with_the_source_name(ulanqab_doc: dict[str, Any]) -> None:
    ulanqab_doc["programmes"]["urban_dibao"]["cadence"] = "weekly"
    error = _rejected(copy.deepcopy(ulanqab_doc))
    assert error.source == "bad.toml"
    assert error.errors == (
        "programmes.urban_dibao.cadence: 'weekly' is not one of monthly, quarterly, half-yearly, yearly",
    )


# --- exclusions ----------------------------------------------------------------------------------


def test_exclusions_are_symmetric_pairs_whichever_side_lists_them(ulanqab: Policy) -> None:
    pairs = ulanqab.excluded_pairs()
    # tekun_rural_dispersed lists rural_dibao; rural_dibao lists nothing.
    assert "tekun_rural_dispersed" not in ulanqab.programme("rural_dibao").excludes
    assert frozenset({"rural_dibao", "tekun_rural_dispersed"}) in pairs
    assert frozenset({"tekun_rural_dispersed", "orphan_dispersed"}) in pairs
    assert frozenset({"urban_dibao", "rural_dibao"}) not in pairs


# --- age tiers (鄂尔多斯 2021, 003_… 一(四)三) ------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "amount_fen"),
    [(0, 0), (74, 0), (75, 10000), (79, 10000), (80, 15000), (99, 15000), (100, 60000), (110, 60000)],
)
def test_high_age_allowance_follows_the_age_tiers(ordos: Policy, age: int, amount_fen: int) -> None:
    assert ordos.standard_on("high_age", date(2021, 1, 1)).for_age(age) == amount_fen


def test_high_age_month_amount_uses_the_tier_for_the_age_given(ordos: Policy) -> None:
    programme = ordos.programme("high_age")
    no_household = HouseholdFacts(1, 0, 0)
    amounts = [
        month_amount_fen(ordos, programme, Month(2021, 3), age=age, household=no_household, override_fen=None)
        for age in (74, 75, 80, 100)
    ]
    assert amounts == [0, 10000, 15000, 60000]


# --- what one month pays -------------------------------------------------------------------------


def _month(policy: Policy, programme: str, month: Month, **household: int) -> int:
    facts = HouseholdFacts(
        members=household.get("members", 1),
        monthly_income_fen=household.get("income_fen", 0),
        special_members=household.get("special", 0),
    )
    return month_amount_fen(
        policy,
        policy.programme(programme),
        month,
        age=40,
        household=facts,
        override_fen=household.get("override"),
    )


def test_urban_dibao_household_of_2_with_income_300_is_owed_810_a_month(ulanqab: Policy) -> None:
    # walkthrough.md row 2: 2 × 555 − 300 = 810.00
    assert _month(ulanqab, "urban_dibao", Month(2017, 1), members=2, income_fen=30000) == 81000


def test_rural_dibao_household_of_3_with_one_special_member_is_owed_792_78_a_month(ulanqab: Policy) -> None:
    # walkthrough.md row 3: 3 × 325.50 − 200 + 0.05 × 325.50 = 792.775 → 792.78 (half-up)
    assert _month(ulanqab, "rural_dibao", Month(2017, 1), members=3, income_fen=20000, special=1) == 79278


def test_an_income_above_the_line_is_owed_only_the_special_member_uplift(ulanqab: Policy) -> None:
    # 2 × 555 = 1110 < 1500: no 补差; 1 special member: 0.05 × 555 = 27.75
    assert _month(ulanqab, "urban_dibao", Month(2017, 1), members=2, income_fen=150000, special=1) == 2775


def test_an_income_above_the_line_without_special_members_is_owed_nothing(ulanqab: Policy) -> None:
    assert _month(ulanqab, "urban_dibao", Month(2017, 1), members=2, income_fen=150000) == 0
    assert _month(ulanqab, "urban_dibao", Month(2017, 1), members=2, income_fen=111000) == 0


def test_an_approved_amount_overrides_the_standard(ulanqab: Policy) -> None:
    assert _month(ulanqab, "urban_dibao", Month(2017, 1), members=2, income_fen=30000, override=50000) == 50000


def test_a_person_programme_pays_its_monthly_standard_whatever_the_household(ulanqab: Policy) -> None:
    assert _month(ulanqab, "orphan_dispersed", Month(2017, 5), members=4, income_fen=99999) == 120000


def test_an_annual_person_standard_split_over_12_months_sums_exactly_to_the_year(ulanqab: Policy) -> None:
    months = [_month(ulanqab, "tekun_rural_dispersed", Month(2017, m)) for m in range(1, 13)]
    assert sum(months) == 507800
    assert max(months) - min(months) <= 1
    # each quarter is the quarterly split of the year: 5078 / 4 = 1269.50
    assert [sum(months[q * 3 : q * 3 + 3]) for q in range(4)] == [126950] * 4


def test_an_annual_standard_that_does_not_divide_by_12_still_sums_to_the_year(
    ulanqab_doc: dict[str, Any],
) -> None:
    ulanqab_doc["programmes"]["youfu_topup"]["standards"] = [{"from": "2017-01-01", "amount": "1000.01", "per": "year"}]
    policy = parse_policy(ulanqab_doc)
    months = [_month(policy, "youfu_topup", Month(2017, m)) for m in range(1, 13)]
    assert sum(months) == 100001


# --- a later policy that changes standards of periods already accrued ------------------------------------


ACCRUED_2017_Q1 = [
    ("urban_dibao", "2017-01"),
    ("urban_dibao", "2017-02"),
    ("urban_dibao", "2017-03"),
    ("rural_dibao", "2017-Q1"),
    ("tekun_rural_dispersed", "2017-01"),
    ("sanmin", "2017-01"),
]


def test_a_policy_loaded_again_unchanged_reprices_nothing(ulanqab_doc: dict[str, Any]) -> None:
    before, after = parse_policy(ulanqab_doc), parse_policy(copy.deepcopy(ulanqab_doc))
    assert repriced_periods(before, after, ACCRUED_2017_Q1) == {}


def test_a_standard_raised_from_a_past_month_names_the_accrued_periods_it_covers(ulanqab_doc: dict[str, Any]) -> None:
    before = parse_policy(copy.deepcopy(ulanqab_doc))
    ulanqab_doc["programmes"]["urban_dibao"]["standards"].append(
        {"from": "2017-02-01", "amount": "580.00", "per": "month"}
    )
    ulanqab_doc["programmes"]["sanmin"]["standards"][0].pop("expect", None)
    after = parse_policy(ulanqab_doc)
    # urban dibao from February, and sanmin, derived from it (联动), only from February too: January keeps.
    assert repriced_periods(before, after, ACCRUED_2017_Q1) == {"urban_dibao": ["2017-02", "2017-03"]}
    assert repriced_periods(before, after, [("sanmin", "2017-02")]) == {"sanmin": ["2017-02"]}


def test_a_rural_dibao_change_in_march_reprices_the_first_quarter_and_tekun_which_follows_it(
    ulanqab_doc: dict[str, Any],
) -> None:
    before = parse_policy(copy.deepcopy(ulanqab_doc))
    ulanqab_doc["programmes"]["rural_dibao"]["standards"].append(
        {"from": "2017-03-01", "amount": "4200.00", "per": "year"}
    )
    for entry in ulanqab_doc["programmes"]["tekun_rural_dispersed"]["standards"]:
        entry.pop("expect", None)
    after = parse_policy(ulanqab_doc)
    accrued = [*ACCRUED_2017_Q1, ("tekun_rural_dispersed", "2017-03")]
    assert repriced_periods(before, after, accrued) == {
        "rural_dibao": ["2017-Q1"],  # one month of the quarter is enough
        "tekun_rural_dispersed": ["2017-03"],
    }


def test_the_household_uplift_and_a_dropped_programme_count_as_changes(ulanqab_doc: dict[str, Any]) -> None:
    before = parse_policy(copy.deepcopy(ulanqab_doc))
    ulanqab_doc["settings"]["special_member_uplift"] = "0.10"
    del ulanqab_doc["programmes"]["sanmin"]
    after = parse_policy(ulanqab_doc)
    assert repriced_periods(before, after, ACCRUED_2017_Q1) == {
        "rural_dibao": ["2017-Q1"],
        "sanmin": ["2017-01"],
        "urban_dibao": ["2017-01", "2017-02", "2017-03"],
    }
