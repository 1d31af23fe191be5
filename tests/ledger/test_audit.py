"""`audit verify` on both stores: an intact ledger verifies; a changed byte, a deleted event, a swapped
pair, an edited checkpoint and an edited export file are each found and named at the right place."""

from __future__ import annotations

import base64
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.sqlite import SQLiteDatastore

import ledger.audit as audit
from domain.periods import Month
from ledger.audit import AuditFailed, audit_verify, record_checkpoint, verify_exports, verify_log, verify_read_models
from ledger.exports import export_batch
from ledger.storage import Database
from ledger.synthetic import synthetic_rows
from tests.helpers.ledgers import ledger

FLIPS = 200


def _month_end(db: Database, policy_text: str, persons: int = 500) -> tuple[Any, Any]:
    """About `persons` payments in January, then a checkpoint of each log."""
    registry, disbursement = ledger(db, policy_text)
    registry.import_roster(tuple(synthetic_rows(persons)), "synthetic", "clerk")
    disbursement.run_month_end(registry.read_registry(), Month(2017, 1), scope="150900", actor="clerk")
    for app in (registry, disbursement):
        record_checkpoint(app)
    return registry, disbursement


def _sealed_twice(db: Database, policy_text: str, tmp_path: Path) -> tuple[Any, Any]:
    """A month-end and a checkpoint, then an export and a second checkpoint that covers the first."""
    registry, disbursement = _month_end(db, policy_text)
    urban = next(b for b in disbursement.batches() if b.programme == "urban_dibao")
    export_batch(disbursement, registry.policy(), urban.id.hex, fmt="pain001", out=tmp_path / "out", actor="maker")
    for app in (registry, disbursement):
        record_checkpoint(app)
    return registry, disbursement


# --- raw access to the events table, as someone editing the database by hand would ----------------


def _sql(app: Any, sqlite: str, postgres: str, params: tuple[Any, ...]) -> list[Any]:
    datastore = app.recorder.datastore
    table = app.recorder.events_table_name
    if isinstance(datastore, SQLiteDatastore):
        with datastore.transaction(commit=True) as c:
            c.execute(sqlite.format(table=table), params)
            return list(c.fetchall())
    with datastore.transaction(commit=True) as curs:
        curs.execute(postgres.format(table=f'"{datastore.schema}"."{table}"'), params)
        return list(curs.fetchall()) if curs.description else []


def _state(app: Any, position: int) -> bytes:
    (row,) = _sql(
        app,
        "SELECT state FROM {table} WHERE rowid = ?",
        "SELECT state FROM {table} WHERE notification_id = %s",
        (position,),
    )
    return bytes(row[0] if not isinstance(row, dict) else row["state"])


def _set_state(app: Any, position: int, state: bytes) -> None:
    _sql(
        app,
        "UPDATE {table} SET state = ? WHERE rowid = ?",
        "UPDATE {table} SET state = %s WHERE notification_id = %s",
        (state, position),
    )


def _delete(app: Any, position: int) -> None:
    _sql(
        app,
        "DELETE FROM {table} WHERE rowid = ?",
        "DELETE FROM {table} WHERE notification_id = %s",
        (position,),
    )


def _flipped(state: bytes, rng: random.Random) -> bytes:
    index = rng.randrange(len(state))
    return state[:index] + bytes([state[index] ^ rng.randrange(1, 256)]) + state[index + 1 :]


def _payment_positions(app: Any) -> list[int]:
    return [n.id for n in app.recorder.select_notifications(start=1, limit=10_000) if n.topic.endswith(".Accrued")]


# --- the log -----------------------------------------------------------------------------------------


def test_an_intact_log_verifies_and_names_what_it_checked(db: Database, policy_text: str) -> None:
    registry, disbursement = _month_end(db, policy_text)
    for app in (registry, disbursement):
        result = verify_log(app)
        assert result.ok, result.failures
        assert result.events == app.recorder.max_notification_id()
        assert result.sealed_position == result.events - 2  # the checkpoint's own two events come after it
        assert result.unsealed == 2
        assert result.chain_sha256 == audit.last_checkpoint(app).chain_sha256
    assert verify_log(disbursement).events > 500


def test_a_checkpoint_hashes_only_the_events_recorded_since_the_last_one(db: Database, policy_text: str) -> None:
    _, disbursement = _month_end(db, policy_text)
    before = disbursement.recorder.max_notification_id()
    again = record_checkpoint(disbursement)
    assert (again.position, again.events_sealed) == (before, 2)  # just the first checkpoint's Started + Sealed
    assert verify_log(disbursement).ok


def test_a_checkpoint_of_an_empty_log_records_nothing(db: Database) -> None:
    from ledger.bootstrap import open_apps

    _, disbursement = open_apps(db)
    checkpoint = record_checkpoint(disbursement)
    assert (checkpoint.position, checkpoint.version, checkpoint.events_sealed) == (0, 0, 0)
    assert not disbursement.recorder.max_notification_id()


def test_a_second_checkpoint_at_the_same_moment_is_retried_from_the_winners_seal(
    db: Database, policy_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, disbursement = _month_end(db, policy_text)
    original = audit.last_checkpoint
    raced = {"done": False}

    def another_checkpoint_lands_first(app: Any) -> Any:
        stale = original(app)
        if not raced["done"]:
            raced["done"] = True
            stored, _ = audit._seal_new_events(app, stale)
            app.recorder.insert_events(stored)  # the other process's seal takes the next version
        return stale

    monkeypatch.setattr(audit, "last_checkpoint", another_checkpoint_lands_first)
    checkpoint = record_checkpoint(disbursement)
    assert checkpoint.events_sealed == 1  # only the winner's seal was left to cover
    winner_seal = audit._chain_rows(disbursement)[-2][0]
    assert checkpoint.position == winner_seal
    # On PostgreSQL the refused insert used up a sequence number: a gap that is not evidence.
    record_checkpoint(disbursement)
    assert verify_log(disbursement).ok


def test_a_flipped_byte_in_any_of_200_sealed_events_is_named_at_its_position(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, disbursement = _sealed_twice(db, policy_text, tmp_path)
    candidates = [
        (app, position)
        for app in (registry, disbursement)
        for position in range(1, verify_log(app).sealed_position + 1)
    ]
    rng = random.Random(6)
    found = []
    for app, position in rng.sample(candidates, FLIPS):
        original = _state(app, position)
        _set_state(app, position, _flipped(original, rng))
        failure = verify_log(app).failure
        _set_state(app, position, original)
        found.append(failure.position if failure else None)
        # A seal whose flipped byte no longer decodes is named as a checkpoint, at the same position.
        assert failure is not None and failure.kind in ("changed", "checkpoint"), (app.name, position, failure)
        assert failure.position == position, (app.name, position, failure)
    assert len(found) == FLIPS
    assert verify_log(registry).ok and verify_log(disbursement).ok


def test_the_full_chain_still_detects_a_change_that_its_digest_would_miss(
    db: Database, policy_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Zero-byte digests stand for a forged digest collision: only the 256-bit chain is left to notice.
    monkeypatch.setattr(audit, "DIGEST_BYTES", 0)
    _, disbursement = _month_end(db, policy_text, persons=100)
    position = _payment_positions(disbursement)[30]
    _set_state(disbursement, position, _flipped(_state(disbursement, position), random.Random(2)))
    failure = verify_log(disbursement).failure
    assert failure is not None and (failure.kind, failure.position) == ("chain", 1)


def test_a_deleted_event_is_named_at_its_position(db: Database, policy_text: str) -> None:
    _, disbursement = _month_end(db, policy_text)
    payments = _payment_positions(disbursement)
    middle, last = payments[len(payments) // 2], payments[-1]
    _delete(disbursement, middle)
    failure = verify_log(disbursement).failure
    assert failure is not None and (failure.kind, failure.position) == ("missing", middle)
    _delete(disbursement, last)
    assert verify_log(disbursement).failure.position == middle  # still the first


def test_swapping_the_states_of_two_events_names_the_first(db: Database, policy_text: str) -> None:
    _, disbursement = _month_end(db, policy_text)
    payments = _payment_positions(disbursement)
    first, second = payments[10], payments[200]
    a, b = _state(disbursement, first), _state(disbursement, second)
    _set_state(disbursement, first, b)
    _set_state(disbursement, second, a)
    result = verify_log(disbursement)
    assert [(f.kind, f.position) for f in result.failures][:1] == [("changed", first)]


def test_an_edited_checkpoint_is_named_at_its_own_position_not_at_the_event_it_describes(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    _, disbursement = _sealed_twice(db, policy_text, tmp_path)
    seal_position = audit._chain_rows(disbursement)[1][0]  # version 2: the first Sealed event
    cipher = disbursement.mapper.cipher  # with a key configured, the editor re-encrypts too
    original = _state(disbursement, seal_position)
    payload = json.loads(cipher.decrypt(original) if cipher else original)
    digests = bytearray(base64.b64decode(payload["digests"]))
    digests[8 * 5] ^= 0xFF  # now it claims the sixth event changed
    payload["digests"] = base64.b64encode(bytes(digests)).decode()
    edited = json.dumps(payload, ensure_ascii=False).encode()
    _set_state(disbursement, seal_position, cipher.encrypt(edited) if cipher else edited)
    failure = verify_log(disbursement).failure
    assert failure is not None and (failure.kind, failure.position) == ("changed", seal_position)


def test_a_gap_is_not_evidence_but_an_event_slipped_into_a_sealed_gap_is_named_as_inserted(
    db: Database, policy_text: str
) -> None:
    registry, disbursement = ledger(db, policy_text)
    registry.import_roster(tuple(synthetic_rows(300)), "synthetic", "clerk")
    disbursement.run_month_end(registry.read_registry(), Month(2017, 1), scope="150900", actor="clerk")
    payments = _payment_positions(disbursement)
    gap, donor = payments[100], payments[101]
    _delete(disbursement, gap)  # as a rolled-back PostgreSQL transaction leaves an unused id
    record_checkpoint(disbursement)
    assert verify_log(disbursement).ok
    _sql(
        disbursement,
        "INSERT INTO {table} (rowid, originator_id, originator_version, topic, state) "
        "SELECT ?, 'ff' || substr(originator_id, 3), originator_version, topic, state FROM {table} WHERE rowid = ?",
        "INSERT INTO {table} (notification_id, originator_id, originator_version, topic, state) "
        "SELECT %s, ('ff' || substr(originator_id::text, 3))::uuid, originator_version, topic, state "
        "FROM {table} WHERE notification_id = %s",
        (gap, donor),
    )
    failure = verify_log(disbursement).failure
    assert failure is not None and (failure.kind, failure.position) == ("inserted", gap)


# --- exports and read models ----------------------------------------------------------------------


def _export_everything(registry: Any, disbursement: Any, out: Path) -> None:
    for batch in disbursement.batches()[:3]:
        for fmt in ("pain001", "onecard", "xlsx", "notice"):
            export_batch(disbursement, registry.policy(), batch.id.hex, fmt=fmt, out=out, actor="maker")


def test_every_export_regenerates_byte_for_byte_and_an_edited_file_is_named(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, disbursement = _month_end(db, policy_text, persons=200)
    out = tmp_path / "out"
    _export_everything(registry, disbursement, out)
    clean = verify_exports(disbursement, registry.policy(), out)
    assert clean.ok, clean.failures
    assert (clean.batches, clean.exports) == (3, 12)
    assert clean.files_regenerated == clean.files_on_disk == len(list(out.iterdir()))
    edited = sorted(out.glob("*.xml"))[0]
    data = bytearray(edited.read_bytes())
    data[len(data) // 2] ^= 0x01
    edited.write_bytes(bytes(data))
    result = verify_exports(disbursement, registry.policy(), out)
    assert len(result.failures) == 1
    assert str(edited) in result.failures[0]
    assert hashlib.sha256(bytes(data)).hexdigest() in result.failures[0]


def test_an_export_is_regenerated_with_the_policy_in_force_when_it_was_made(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, disbursement = _month_end(db, policy_text, persons=50)
    batch = disbursement.batches()[0]
    export_batch(disbursement, registry.policy(), batch.id.hex, fmt="pain001", out=tmp_path, actor="maker")
    renamed = policy_text.replace('payer_name = "乌兰察布市财政局"', 'payer_name = "乌兰察布市民政局"')
    registry.load_policy(renamed, "renamed.toml", "clerk")
    assert audit_verify(db, registry, disbursement).exports.ok
    changed = verify_exports(disbursement, registry.policy())
    assert "regenerates with SHA-256" in changed.failures[0]


def test_read_models_not_built_yet_are_reported_as_not_checked_never_as_passed(db: Database) -> None:
    from ledger.bootstrap import open_apps

    open_apps(db)
    result = verify_read_models(db)
    assert not result.checked and "not built yet" in result.note


# --- the whole report ---------------------------------------------------------------------------------


def test_audit_verify_prints_what_it_checked_and_names_the_first_failure(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, disbursement = _month_end(db, policy_text, persons=100)
    _export_everything(registry, disbursement, tmp_path / "out")
    for app in (registry, disbursement):
        record_checkpoint(app)
    report = audit_verify(db, registry, disbursement, tmp_path / "out")
    assert report.ok, report.failures
    assert report.lines()[-1] == "verified"
    assert report.as_json()["logs"][1]["table"] == "disbursement_events"
    report.raise_for_failure()

    position = _payment_positions(disbursement)[7]
    _set_state(disbursement, position, _flipped(_state(disbursement, position), random.Random(1)))
    report = audit_verify(db, registry, disbursement, tmp_path / "out")
    assert report.first_failure.startswith(f"disbursement_events position {position}: changed")
    assert report.lines()[-1] == f"FAILED: {report.first_failure}"
    with pytest.raises(AuditFailed):
        report.raise_for_failure()
