"""Tamper suite, issue 13 item 1 (seals anchored outside the store), on SQLite and PostgreSQL.

Each attack is the one the issue's "Why" found, done as someone holding the database and the key beside
it: raw SQL on the event tables, events decrypted and re-encrypted with the key. Each test first shows the
attack succeeding with the protection off (no anchor given to verify, or sealing switched off), then
detected with it on, naming the position.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from domain.periods import Month
from ledger.cli import main
from ledger.keys import with_cipher
from ledger.service import LedgerService
from ledger.storage import Database
from projections.runner import rebuild
from tests.helpers.ledgers import LI
from tests.helpers.tamper import (
    chain_positions,
    close,
    delete_every_seal,
    delete_from,
    edit_payload,
    keys_in,
    payload,
    reseal_in_place,
    small_ledger,
    topic_positions,
)

ATTACKER_ACCOUNT = "6212260200000000001"
LI_ID = LI.split(",")[0]


@pytest.fixture
def anchored(db: Database, tmp_path: Path, policy_text: str) -> Iterator[tuple[LedgerService, Path]]:
    """A small encrypted ledger, every command sealed, and an anchor of where it ends."""
    with keys_in(tmp_path):
        service = small_ledger(with_cipher(db), tmp_path, policy_text)
        anchor = tmp_path / "anchor.json"
        service.anchor(anchor, actor="admin")
        yield service, anchor
        close(service)


def yikatong(db: Database, *args: str) -> Result:
    """The command line in this process (the keys are in the environment), as the auditor runs it."""
    return CliRunner().invoke(main, ["--db", db.url, "--as", "auditor", *args])


def _payment_position(service: LedgerService, programme: str) -> int:
    return next(
        p
        for p in topic_positions(service.disbursement, ".Accrued")
        if payload(service.disbursement, p)["programme"] == programme
    )


def test_deleting_every_seal_and_redirecting_a_payment_is_caught_by_the_anchor(
    db: Database, anchored: tuple[LedgerService, Path], tmp_path: Path
) -> None:
    service, anchor = anchored
    rural = next(b for b in service.batches() if b.programme == "rural_dibao")  # drafted: its file is not out yet
    payment_at = _payment_position(service, "rural_dibao")
    first_seal = chain_positions(service.registry)[0]
    for app in (service.registry, service.disbursement):
        delete_every_seal(app)
    edit_payload(service.disbursement, payment_at, account=ATTACKER_ACCOUNT)

    # With no seal left, verify fails even without an anchor (it used to say "N not yet sealed; intact").
    unsealed = yikatong(db, "audit", "verify")
    assert unsealed.exit_code == 1
    assert "FAILED: registry_events: unsealed:" in unsealed.output and "no seal" in unsealed.output

    # The attacker runs February's month-end, which seals the edited log afresh, and rebuilds the read models.
    service.month_end(Month(2017, 2), actor="clerk")
    rebuild(service.db)
    # Protection off (no anchor): the rewritten log verifies, and the bank file pays the attacker.
    off = yikatong(db, "audit", "verify")
    assert off.exit_code == 0, off.output
    assert off.output.rstrip().endswith("verified")
    _, files = service.export_batch(rural.id.hex, fmt="pain001", out=tmp_path / "paid", actor="clerk")
    assert ATTACKER_ACCOUNT.encode() in files[0].path.read_bytes()

    # Protection on: the anchor names the first position that is gone (the first deleted seal).
    on = yikatong(db, "audit", "verify", "--anchor", str(anchor))
    assert on.exit_code == 1
    assert f"FAILED: registry_events position {first_seal}: missing:" in on.output
    assert "NOT extended by the log" in on.output


def test_truncating_the_last_events_is_caught_by_the_anchor_at_the_first_missing_position(
    db: Database, anchored: tuple[LedgerService, Path]
) -> None:
    service, anchor = anchored
    disbursement = service.disbursement
    exported_at = topic_positions(disbursement, "Batch.Exported")[0]
    later = [p for p in topic_positions(disbursement, "") if p >= exported_at]
    assert len(later) >= 6  # the export, the approval, the submission and the seal after each
    delete_from(disbursement, exported_at)
    rebuild(service.db)

    off = yikatong(db, "audit", "verify")  # protection off: the shortened log verifies
    assert off.exit_code == 0, off.output

    on = yikatong(db, "audit", "verify", "--anchor", str(anchor), "--json")
    assert on.exit_code == 1
    assert f'"first_failure": "disbursement_events position {exported_at}: missing:' in on.output
    assert "the log now ends at" in on.output and "(truncated)" in on.output


def test_a_rewritten_and_resealed_prefix_is_caught_by_the_anchor(
    db: Database, tmp_path: Path, policy_text: str
) -> None:
    with keys_in(tmp_path):
        early = tmp_path / "early.json"
        service = small_ledger(with_cipher(db), tmp_path, policy_text, anchor_before_roster=early)
        service.month_end(Month(2017, 2), actor="clerk")
        anchor = tmp_path / "anchor.json"
        service.anchor(anchor, actor="admin")
        registry = service.registry
        li_registered = next(
            p for p in topic_positions(registry, "Person.Registered") if payload(registry, p)["id_number"] == LI_ID
        )
        edit_payload(registry, li_registered, account=ATTACKER_ACCOUNT)
        reseal_in_place(registry)  # every seal forged over the rewritten log, in place: no id goes missing

        # Protection off: the forged log verifies, and March pays LI's money to the attacker.
        assert yikatong(db, "audit", "verify").exit_code == 0
        service.month_end(Month(2017, 3), actor="clerk")
        march = next(b for b in service.batches() if b.run_month == "2017-03" and b.programme == "urban_dibao")
        views = service.disbursement.payment_views(march.payment_ids)
        assert [v.account for v in views.values() if v.id_number == LI_ID] == [ATTACKER_ACCOUNT]

        # Protection on: the chain at the anchor's sealed position is not the one it signed. The rewrite
        # cannot be located (every seal agrees with it), so the failure names the range instead.
        on = yikatong(db, "audit", "verify", "--anchor", str(anchor))
        assert on.exit_code == 1
        assert "FAILED: registry_events: anchor: the chain at position" in on.output
        assert "re-sealed to match" in on.output
        # The early anchor was taken before the roster was imported: it still holds, and it bounds the rewrite.
        both = yikatong(db, "audit", "verify", "--anchor", str(early), "--anchor", str(anchor), "--json")
        assert both.exit_code == 1
        assert "at or before it after position" in both.output
        early_anchor, late_anchor = json.loads(both.stdout)["anchors"]
        assert early_anchor["ok"] and not late_anchor["ok"]
        close(service)


def test_an_account_rewritten_in_the_table_right_after_account_set_is_caught_because_account_set_seals(
    db: Database, anchored: tuple[LedgerService, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    service, _ = anchored
    registry = service.registry
    wang_id = "152621197505052342"

    # Protection off: `account set` leaves its event unsealed until the next command, as it used to.
    with monkeypatch.context() as off:
        off.setattr(LedgerService, "seal", lambda self: None)
        service.set_account(
            id_number=LI_ID, bank_code="102191000031", account="6222020602012345678", reason="换卡", actor="clerk"
        )
    changed_at = topic_positions(registry, "Person.AccountChanged")[-1]
    edit_payload(registry, changed_at, account=ATTACKER_ACCOUNT)
    service.month_end(Month(2017, 2), actor="clerk")  # seals the rewritten event with everything else
    assert yikatong(db, "audit", "verify").exit_code == 0  # the attack succeeds
    february = [b for b in service.batches() if b.run_month == "2017-02" and b.programme == "urban_dibao"]
    views = service.disbursement.payment_views(february[0].payment_ids)
    assert [v.account for v in views.values() if v.id_number == LI_ID] == [ATTACKER_ACCOUNT]

    # Protection on: `account set` ends sealed, so the same edit is found at its position.
    service.set_account(
        id_number=wang_id, bank_code="102191000031", account="6222020602012349999", reason="换卡", actor="clerk"
    )
    changed_at = topic_positions(registry, "Person.AccountChanged")[-1]
    assert chain_positions(registry)[-1] > changed_at  # sealed before the command returned
    edit_payload(registry, changed_at, account=ATTACKER_ACCOUNT)
    service.month_end(Month(2017, 3), actor="clerk")
    on = yikatong(db, "audit", "verify")
    assert on.exit_code == 1
    assert f"FAILED: registry_events position {changed_at}: changed:" in on.output
