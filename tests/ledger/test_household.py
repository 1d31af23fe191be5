"""Household changes and member lists at the registry, on both stores: a re-imported row may state the
facts the household was enrolled with or the ones last decided; a row with other member_ids is refused;
the member-lists marker is recorded once (docs/entitlement.md)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from domain.eligibility import MEMBER_LISTS_ID
from ledger.apps import Registry
from ledger.roster import RosterRejected, read_roster
from ledger.storage import Database, existing_originators
from tests.helpers.ledgers import HEADER, LI, WANG, import_rows, ledger, resident_id

LI_ID = LI.split(",")[0]
OLD = resident_id("152601", "19380101", 3)


def _change(registry: Registry, on: date, **facts: int) -> bool:
    return registry.change_household(
        id_number=LI_ID,
        programme="urban_dibao",
        on=on,
        actor="clerk",
        reason="集民复〔2017〕3号",
        members=facts.get("members"),
        monthly_income_fen=facts.get("income"),
        special_members=facts.get("special"),
    ).recorded


def _import_with_members(registry: Registry, tmp_path: Path, text: str, name: str = "m.csv") -> None:
    path = tmp_path / name
    path.write_text(HEADER.rstrip("\n") + ",member_ids\n" + text, encoding="utf-8")
    policy = registry.policy()
    registry.import_roster(read_roster(path, region=policy.region_code, programmes=policy.programmes), name, "clerk")


def test_a_row_may_resend_the_enrolled_or_the_changed_household_and_nothing_else(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, _ = ledger(db, policy_text)
    import_rows(registry, tmp_path, LI)
    assert _change(registry, date(2017, 2, 1), income=50_000)
    before = registry.recorder.max_notification_id()
    import_rows(registry, tmp_path, LI)  # as enrolled
    import_rows(registry, tmp_path, LI.replace(",2,300.00,", ",2,500.00,"))  # as changed
    assert registry.recorder.max_notification_id() == before
    with pytest.raises(RosterRejected) as refused:
        import_rows(registry, tmp_path, LI.replace(",2,300.00,", ",2,510.00,"))
    assert refused.value.errors == (
        f"r.csv line 2: RowDiffersFromLedger: {LI_ID} urban_dibao: monthly_income 510.00 differs from 500.00 in "
        "the ledger; use `decide change`",
    )


def test_other_member_ids_in_a_reimport_are_refused_and_the_marker_is_recorded_once(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, _ = ledger(db, policy_text)
    assert not existing_originators(registry.recorder, [MEMBER_LISTS_ID])
    _import_with_members(registry, tmp_path, WANG.rstrip("\n") + f",{OLD}\n")
    assert existing_originators(registry.recorder, [MEMBER_LISTS_ID]) == {MEMBER_LISTS_ID}
    before = registry.recorder.max_notification_id()
    _import_with_members(registry, tmp_path, WANG.rstrip("\n") + f",{OLD}\n")  # the same again: nothing
    assert registry.recorder.max_notification_id() == before
    with pytest.raises(RosterRejected) as refused:
        _import_with_members(registry, tmp_path, WANG.rstrip("\n") + ",\n")
    assert refused.value.errors[0].startswith(
        f"m.csv line 2: RowDiffersFromLedger: {WANG.split(',')[0]} rural_dibao: member_ids (none) differs from "
        f"{OLD} in the ledger"
    )
