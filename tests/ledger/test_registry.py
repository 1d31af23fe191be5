"""Registry on both stores: policy loading, roster import all-or-nothing, decisions and conflicts."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from domain.eligibility import ACTIVE, ENDED, SUSPENDED
from domain.policy import PolicyRejected
from domain.policy_log import RegionMismatch
from ledger.apps import ConcurrentChange, NoPolicy
from ledger.bootstrap import open_apps
from ledger.roster import RosterRejected
from ledger.storage import Database
from tests.helpers.ledgers import LI, WANG, import_rows, ledger, resident_id, row


def test_loading_the_shipped_policy_reproduces_the_seed_figures(db: Database, policy_text: str) -> None:
    registry, _ = ledger(db, policy_text)
    policy = registry.policy()
    day = date(2017, 1, 1)
    assert policy.standard_on("tekun_rural_dispersed", day).amount_fen == 507800
    assert policy.standard_on("tekun_care_partial", day).amount_fen == 37300
    assert policy.standard_on("tekun_care_full", day).amount_fen == 96900
    assert policy.standard_on("children_in_difficulty", day).amount_fen == 60000
    assert policy.standard_on("sanmin", day).amount_fen == 77500


def test_a_policy_that_disagrees_with_its_stated_figure_stores_nothing(db: Database, policy_text: str) -> None:
    registry, _ = open_apps(db)
    bad = policy_text.replace('expect = "5078.00"', 'expect = "5079.00"')
    with pytest.raises(PolicyRejected, match=r"tekun_rural_dispersed.standards\[0\].expect.*5078.00.*5079.00"):
        registry.load_policy(bad, "bad.toml", "clerk")
    with pytest.raises(NoPolicy):
        registry.policy()


def test_a_policy_for_another_region_is_refused(db: Database, policy_text: str) -> None:
    registry, _ = ledger(db, policy_text)
    other = policy_text.replace('code = "150900"', 'code = "150600"')
    with pytest.raises(RegionMismatch):
        registry.load_policy(other, "other.toml", "clerk")


def test_roster_import_enrols_and_reimport_changes_nothing(db: Database, policy_text: str, tmp_path: Path) -> None:
    registry, _ = ledger(db, policy_text)
    import_rows(registry, tmp_path, LI, WANG)
    before = registry.recorder.max_notification_id()
    import_rows(registry, tmp_path, LI, WANG)
    assert registry.recorder.max_notification_id() == before
    assert registry.person("152621197505052342").enrolments["rural_dibao"].household.members == 3


def test_a_roster_breaking_an_exclusion_imports_nothing_and_names_the_line(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, _ = ledger(db, policy_text)
    someone = resident_id("150902", "19500101", 11)
    other = resident_id("150902", "19600101", 12)
    with pytest.raises(RosterRejected) as refused:
        import_rows(
            registry,
            tmp_path,
            row(other, "urban_dibao"),
            row(someone, "rural_dibao", region="150921"),
            row(someone, "tekun_rural_dispersed", region="150921"),
        )
    assert any("r.csv line 4" in e and "tekun_rural_dispersed" in e for e in refused.value.errors)
    assert registry.recorder.max_notification_id() == 2  # the policy's two events only


def test_an_exclusion_against_what_the_registry_already_holds_is_refused(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, _ = ledger(db, policy_text)
    someone = resident_id("150921", "19500101", 21)
    import_rows(registry, tmp_path, row(someone, "rural_dibao", region="150921"))
    with pytest.raises(RosterRejected, match="rural_dibao"):
        import_rows(registry, tmp_path, row(someone, "tekun_rural_dispersed", region="150921"), name="later.csv")


def test_decisions_change_the_enrolment_timeline(db: Database, policy_text: str, tmp_path: Path) -> None:
    registry, _ = ledger(db, policy_text)
    import_rows(registry, tmp_path, LI)
    li = "152601198001011239"
    registry.decide(
        kind="suspend",
        id_number=li,
        programme="urban_dibao",
        on=date(2017, 3, 1),
        actor="a",
        reason="集民发〔2017〕20号",
        amount_fen=None,
    )
    registry.decide(
        kind="resume",
        id_number=li,
        programme="urban_dibao",
        on=date(2017, 5, 1),
        actor="a",
        reason="集民发〔2017〕30号",
        amount_fen=None,
    )
    registry.decide(
        kind="phase-out",
        id_number=li,
        programme="urban_dibao",
        on=date(2017, 6, 1),
        actor="a",
        reason="集民发〔2017〕40号",
        amount_fen=None,
    )
    enrolment = registry.person(li).enrolments["urban_dibao"]
    assert enrolment.status_on(date(2017, 4, 1)) == SUSPENDED
    assert enrolment.status_on(date(2017, 11, 1)) == ACTIVE
    assert enrolment.status_on(date(2017, 12, 1)) == ENDED


def test_a_suspended_enrolment_is_still_held_but_a_terminated_one_is_not(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, _ = ledger(db, policy_text)
    someone = resident_id("150921", "19500101", 31)
    import_rows(registry, tmp_path, row(someone, "rural_dibao", region="150921"))
    registry.decide(
        kind="suspend",
        id_number=someone,
        programme="rural_dibao",
        on=date(2017, 3, 1),
        actor="a",
        reason="r",
        amount_fen=None,
    )
    tekun = row(someone, "tekun_rural_dispersed", region="150921", start="2017-04-01")
    with pytest.raises(RosterRejected, match="tekun_rural_dispersed_excludes_rural_dibao"):
        import_rows(registry, tmp_path, tekun, name="tekun.csv")
    registry.decide(
        kind="terminate",
        id_number=someone,
        programme="rural_dibao",
        on=date(2017, 3, 15),
        actor="a",
        reason="r",
        amount_fen=None,
    )
    import_rows(registry, tmp_path, tekun, name="tekun.csv")
    assert set(registry.person(someone).enrolments) == {"rural_dibao", "tekun_rural_dispersed"}


def test_two_clerks_changing_one_enrolment_at_once_one_wins_and_the_other_is_told(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, _ = ledger(db, policy_text)
    import_rows(registry, tmp_path, LI)
    other_registry, _ = open_apps(db)
    li = "152601198001011239"
    # Both clerks load the same version, then both decide.
    first = registry.person(li)
    second = other_registry.person(li)
    pairs = registry.policy().excluded_pairs()
    first.decide(
        kind="suspend",
        programme="urban_dibao",
        on=date(2017, 3, 1),
        actor="clerk-a",
        reason="r1",
        amount_fen=None,
        excluded_pairs=pairs,
    )
    second.decide(
        kind="adjust",
        programme="urban_dibao",
        on=date(2017, 3, 1),
        actor="clerk-b",
        reason="r2",
        amount_fen=70000,
        excluded_pairs=pairs,
    )
    registry._save(first)
    with pytest.raises(ConcurrentChange):
        other_registry._save(second)
    final = registry.person(li).enrolments["urban_dibao"]
    assert [d.actor for d in final.decisions] == ["clerk-a"]


def test_bulk_read_of_the_registry_matches_the_aggregates(db: Database, policy_text: str, tmp_path: Path) -> None:
    registry, _ = ledger(db, policy_text)
    import_rows(registry, tmp_path, LI, WANG)
    registry.set_account(
        id_number="152601198001011239",
        bank_code="103191000099",
        account="6228480045001122345",
        reason="换卡",
        actor="a",
    )
    snapshot = registry.read_registry()
    for record in snapshot.persons.values():
        person = registry.person(record.id_number)
        assert record.enrolments == person.enrolments
        assert (record.bank_code, record.account) == (person.bank_code, person.account)
    assert snapshot.position == registry.recorder.max_notification_id()
