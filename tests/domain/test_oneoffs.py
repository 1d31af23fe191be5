"""One-off payments in the domain (docs/entitlement.md, "One-off payments"): the policy sections, a grant's
bounds and maker-checker, and what the month-end owes for grants and holiday payments, to the fen."""

from __future__ import annotations

from datetime import date
from uuid import UUID

import pytest

from domain.disbursement import Watermark
from domain.eligibility import Decision, Enrolment, PersonRecord
from domain.ids import UUID5_IDS, KeyedIds
from domain.oneoffs import (
    AidAboveMaximum,
    AidAlreadyApproved,
    AidApproverMustDifferFromGranter,
    AidBelowMinimum,
    AidGrant,
    AidNeedsNoApproval,
    AidRegionOutsidePolicy,
    AidRegionUnclear,
    BadStage,
    GrantRecord,
    NoTemporaryAid,
    UnknownAidKind,
    aid_dues,
    aid_payment_id,
    apply_grant_event,
    check_grant,
    grant_id,
    grant_region,
    holiday_dues,
)
from domain.periods import Month
from domain.policy import TEMPORARY_AID, HouseholdFacts, Policy, PolicyRejected, TemporaryAid, parse_policy
from ledger.apps import parse_policy_text
from tests.conftest import POLICY

AID = TemporaryAid(name="临时救助", min_fen=20000, max_fen=3000000, approval_above_fen=100000, due_days=10)
HOLIDAY = """
[oneoffs.spring_2017]
name = "春节生活补贴"
month = "2017-02"
amount = "500.00"
per = "person"
programmes = ["tekun_urban", "tekun_care_partial", "urban_dibao"]
"""


def shipped(extra: str = "") -> Policy:
    return parse_policy_text(POLICY.read_text(encoding="utf-8") + extra, "ulanqab-2017.toml")


# --- the policy ---------------------------------------------------------------------------------------


def test_the_shipped_policy_states_temporary_aid_outside_the_cadence_programmes() -> None:
    policy = shipped()
    assert policy.temporary_aid == AID
    assert TEMPORARY_AID not in policy.programmes and len(policy.programmes) == 17
    assert policy.oneoffs == {}
    assert policy.payment_name(TEMPORARY_AID) == "临时救助"
    assert policy.oneoff_keys() == frozenset({TEMPORARY_AID})


def test_a_policy_without_the_sections_has_no_one_offs() -> None:
    text = POLICY.read_text(encoding="utf-8").split("[programmes.temporary_aid]")[0]
    policy = parse_policy_text(text, "old.toml")
    assert policy.temporary_aid is None and policy.oneoffs == {}
    assert policy.payment_name("urban_dibao") == "城镇低保" and policy.payment_name("spring") == "spring"


def test_holiday_sections_parse_to_exact_fen() -> None:
    (spring,) = shipped(HOLIDAY).oneoffs.values()
    assert (spring.key, spring.month, spring.amount_fen, spring.per, spring.due_day) == (
        "spring_2017",
        Month(2017, 2),
        50000,
        "person",
        10,
    )
    assert spring.programmes == ("tekun_urban", "tekun_care_partial", "urban_dibao")


def test_bad_one_off_sections_are_refused_naming_each_key() -> None:
    bad = (
        POLICY.read_text(encoding="utf-8")
        .replace('min = "200.00"', 'min = "300.00"\ncadence = "monthly"')
        .replace('max = "30000.00"', 'max = "250.00"')
        + HOLIDAY.replace('"2017-02"', '"2017-13"').replace('per = "person"', 'per = "family"')
        + '\n[oneoffs.urban_dibao]\nmonth = "2017-02"\namount = "1"\nprogrammes = ["urban_dibao"]\n'
        + '\n[oneoffs.zero]\nmonth = "2017-02"\namount = "0"\nprogrammes = ["nope"]\n'
    )
    with pytest.raises(PolicyRejected) as refused:
        parse_policy_text(bad, "p.toml")
    errors = refused.value.errors
    assert (
        "programmes.temporary_aid.cadence: unknown key (temporary aid is granted one by one, not a cadence programme)"
        in errors
    )
    assert "programmes.temporary_aid.min: '300.00' is above max '250.00'" in errors
    assert "oneoffs.spring_2017.month: '2017-13' is not a month (YYYY-MM)" in errors
    assert "oneoffs.spring_2017.per: 'family' is not one of person, household" in errors
    assert "oneoffs.urban_dibao: 'urban_dibao' is a programme's key; a one-off payment needs a key of its own" in errors
    assert "oneoffs.zero.amount: '0' must be above 0" in errors
    assert "oneoffs.zero.programmes: unknown programme 'nope'" in errors


def test_temporary_aid_needs_min_and_max_and_defaults_to_approval_of_every_grant() -> None:
    doc = {
        "region": {"code": "150900", "name": "乌兰察布市"},
        "settings": {},
        "programmes": {TEMPORARY_AID: {"min": "200.00", "max": "30000.00"}},
    }
    aid = parse_policy(doc).temporary_aid
    assert aid is not None and (aid.approval_above_fen, aid.due_days, aid.name) == (0, 10, "临时救助")
    assert aid.needs_approval(20000)
    with pytest.raises(PolicyRejected) as refused:
        parse_policy({**doc, "programmes": {TEMPORARY_AID: {"max": "30000.00", "due_days": 91}}})
    assert list(refused.value.errors) == [
        "programmes.temporary_aid.min: missing (yuan per grant)",
        "programmes.temporary_aid.due_days: 91 is not a whole number of days 0-90",
    ]


# --- a grant -------------------------------------------------------------------------------------------


def test_a_grant_within_the_bounds_and_each_bound_refused_by_its_rule() -> None:
    check_grant(AID, amount_fen=20000, kind="emergency", stage=1)
    check_grant(AID, amount_fen=3000000, kind="expense", stage=99)
    with pytest.raises(AidBelowMinimum, match=r"^199\.99 元 is below the policy's minimum 200\.00 元"):
        check_grant(AID, amount_fen=19999, kind="emergency", stage=1)
    with pytest.raises(AidAboveMaximum, match=r"^30000\.01 元 is above the policy's maximum 30000\.00 元"):
        check_grant(AID, amount_fen=3000001, kind="emergency", stage=1)
    with pytest.raises(UnknownAidKind):
        check_grant(AID, amount_fen=20000, kind="medical", stage=1)
    with pytest.raises(BadStage):
        check_grant(AID, amount_fen=20000, kind="emergency", stage=0)
    with pytest.raises(NoTemporaryAid):
        check_grant(None, amount_fen=20000, kind="emergency", stage=1)


def _grant(amount_fen: int, *, stage: int = 1, on: date = date(2017, 3, 25), actor: str = "wang") -> AidGrant:
    return AidGrant.record(
        grant=grant_id(UUID5_IDS, "152601198001011239", "集民救〔2017〕1号", stage),
        id_number="152601198001011239",
        region="150902",
        amount_fen=amount_fen,
        reason="住院",
        granted_on=on,
        kind="expense",
        decision_ref="集民救〔2017〕1号",
        stage=stage,
        aid=AID,
        actor=actor,
    )


def test_grant_ids_are_deterministic_per_decision_and_stage_and_keyed_ledgers_hide_the_id_number() -> None:
    one = grant_id(UUID5_IDS, "152601198001011239", "D1", 1)
    assert one == grant_id(UUID5_IDS, "152601198001011239", "D1", 1)
    assert (
        len(
            {
                one,
                grant_id(UUID5_IDS, "152601198001011239", "D1", 2),
                grant_id(UUID5_IDS, "152601198001011239", "D2", 1),
            }
        )
        == 3
    )
    keyed = KeyedIds(b"k" * 32)
    assert grant_id(keyed, "152601198001011239", "D1", 1) not in (
        one,
        grant_id(KeyedIds(b"j" * 32), "152601198001011239", "D1", 1),
    )
    assert aid_payment_id(one) != one and aid_payment_id(one) == aid_payment_id(UUID(one.hex))


def test_approval_above_the_threshold_by_another_account_only() -> None:
    at_threshold = _grant(100000)
    assert not at_threshold.needs_approval
    with pytest.raises(AidNeedsNoApproval):
        at_threshold.approve(actor="li")
    above = _grant(100001)
    assert above.needs_approval and above.due_date == "2017-04-04"
    with pytest.raises(AidApproverMustDifferFromGranter):
        above.approve(actor="wang")
    above.approve(actor="li")
    with pytest.raises(AidAlreadyApproved):
        above.approve(actor="zhao")
    assert above.approved_by == "li"


def test_a_grant_region_is_the_one_enrolment_region_or_named() -> None:
    assert grant_region(["150902", "150902"], None, "150900") == "150902"
    assert grant_region(["150902", "150921"], "150921", "150900") == "150921"
    with pytest.raises(AidRegionUnclear):
        grant_region(["150902", "150921"], None, "150900")
    with pytest.raises(AidRegionOutsidePolicy):
        grant_region(["150902"], "150602", "150900")


# --- what the month-end owes ----------------------------------------------------------------------------


def _enrolment(programme: str, members: int = 1, decisions: tuple[Decision, ...] = ()) -> Enrolment:
    return Enrolment(
        programme, "150902", date(2017, 1, 1), HouseholdFacts(members, 0, 0), "集民发〔2017〕9号", decisions
    )


def _person(id_number: str, *enrolments: Enrolment, position: int = 1) -> tuple[UUID, PersonRecord]:
    record = PersonRecord(
        id_number=id_number,
        name="张三",
        birth_date=date(1938, 1, 1),
        bank_code="103191000012",
        account="6228480045001122337",
        enrolments={e.programme: e for e in enrolments},
        last_position=position,
    )
    return UUID5_IDS.person_id(id_number), record


def _records(grants: list[AidGrant], folded: dict[UUID, GrantRecord] | None = None) -> dict[UUID, GrantRecord]:
    """The grants' pending events folded as the registry's read folds them, into `folded` when given."""
    folded = {} if folded is None else folded
    for position, grant in enumerate(grants, start=1):
        for event in grant.collect_events():
            data = {
                k: v
                for k, v in vars(event).items()
                if k not in ("originator_id", "originator_version", "timestamp", "originator_topic")
            }
            apply_grant_event(folded, grant.id, type(event).__name__, data, position)
    return folded


def test_aid_dues_pay_each_payable_grant_of_the_month_or_before_once_earliest_due_first() -> None:
    persons = dict([_person("152601198001011239", _enrolment("urban_dibao", members=3))])
    small = _grant(80000, stage=1, on=date(2017, 3, 25))
    large = _grant(500000, stage=2, on=date(2017, 3, 2))
    later = _grant(90000, stage=3, on=date(2017, 4, 1))
    grants = _records([small, large, later])
    march = list(aid_dues(grants.values(), persons, Month(2017, 3), "150900", UUID5_IDS))
    assert [(d.amount_fen, d.period.name, d.due_date.isoformat(), d.late, d.persons) for d in march] == [
        (80000, "2017-03", "2017-04-04", False, 3)
    ]
    assert march[0].payment_id == aid_payment_id(small.id) and march[0].programme == TEMPORARY_AID
    large.approve(actor="li")
    grants = _records([large], grants)
    may = list(aid_dues(grants.values(), persons, Month(2017, 5), "150900", UUID5_IDS))
    assert [(d.amount_fen, d.due_date.isoformat(), d.late) for d in may] == [
        (500000, "2017-03-12", True),
        (80000, "2017-04-04", True),
        (90000, "2017-04-11", True),
    ]
    assert list(aid_dues(grants.values(), persons, Month(2017, 5), "150921", UUID5_IDS)) == []
    # A completed run of May that saw these grants unchanged covers them.
    covered = Watermark(Month(2017, 5), registry_position=10)
    assert list(aid_dues(grants.values(), persons, Month(2017, 6), "150900", UUID5_IDS, covered, 1)) == []


def test_a_holiday_payment_once_per_payee_per_person_and_only_for_enrolments_payable_in_its_month() -> None:
    policy = shipped(HOLIDAY)
    two_programmes = _person("152601193801010039", _enrolment("tekun_urban"), _enrolment("tekun_care_partial"))
    household = _person("152601198001011239", _enrolment("urban_dibao", members=3))
    suspended = _person(
        "152621197505052342",
        _enrolment("urban_dibao", members=2, decisions=(Decision("suspend", date(2017, 2, 1), "wang", "x"),)),
    )
    not_listed = _person("152626198001011234", _enrolment("rural_dibao", members=4))
    persons = [two_programmes, household, suspended, not_listed]
    assert list(holiday_dues(policy, persons, Month(2017, 1), "150900", UUID5_IDS)) == []
    dues = list(holiday_dues(policy, persons, Month(2017, 2), "150900", UUID5_IDS))
    assert [(d.id_number, d.programme, d.period.name, d.amount_fen, d.persons, d.late) for d in dues] == [
        ("152601193801010039", "spring_2017", "2017-02", 50000, 1, False),
        ("152601198001011239", "spring_2017", "2017-02", 150000, 3, False),
    ]
    assert dues[0].payment_id == UUID5_IDS.payment_id("152601193801010039", "spring_2017", "2017-02")
    later = list(holiday_dues(policy, persons, Month(2017, 3), "150900", UUID5_IDS))
    assert [d.payment_id for d in later] == [d.payment_id for d in dues] and all(d.late for d in later)
    covered = Watermark(Month(2017, 2), registry_position=5)
    assert list(holiday_dues(policy, persons, Month(2017, 3), "150900", UUID5_IDS, covered, 1)) == []
    per_household = shipped(HOLIDAY.replace('per = "person"', 'per = "household"'))
    assert [d.amount_fen for d in holiday_dues(per_household, persons, Month(2017, 2), "150900", UUID5_IDS)] == [
        50000,
        50000,
    ]
