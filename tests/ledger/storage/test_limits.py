"""Writes never hang, no stored event grows without bound, and every wait on the database has a deadline
(issue 11). Each test runs on SQLite and on PostgreSQL.

The hang: psycopg's pipeline mode stopped sending a large statement half-way (ledger.storage.postgres explains
it), so a seal of ten 1.1 MB segments in one INSERT waited for ever at a 10⁶ month-end. The regression
test below writes 40 MB in one `insert_events` call in a child process with its own deadline: the
stock recorder hangs on it, the ledger's finishes in about a second.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest
from eventsourcing.persistence import StoredEvent

import domain.disbursement
import ledger.audit
from domain.disbursement import PAYMENT_IDS_PER_EVENT, RESULTS_PER_EVENT, Batch
from domain.periods import Month
from exporters.pain002 import render_pain002
from ledger.audit import SEGMENT_EVENTS_MAX, SEGMENT_SKIPPED_RUNS_MAX, AuditChain, record_checkpoint, verify_log
from ledger.bootstrap import database_from_url, init_key, open_apps
from ledger.exports import approve_batch, export_batch, import_bank_file, message_id, submit_batch
from ledger.storage import EVENT_BYTES_MAX, Database, EventTooLarge, connect_postgres
from ledger.synthetic import synthetic_rows
from tests.conftest import POLICY
from tests.helpers.ledgers import with_accounts, yikatong

HANG_DEADLINE_S = 120  # the write below takes ~1 s; a hang is caught here instead of blocking CI

_LARGE_WRITE = textwrap.dedent(
    """
    import os, sys, uuid
    from eventsourcing.persistence import StoredEvent
    from ledger.bootstrap import open_apps
    from ledger.storage import EVENT_BYTES_MAX
    from ledger.bootstrap import database_from_url

    _, disbursement = open_apps(database_from_url(sys.argv[1]))
    events = [StoredEvent(uuid.uuid4(), 1, "test:Large", os.urandom(EVENT_BYTES_MAX)) for _ in range(160)]
    ids = disbursement.recorder.insert_events(events)
    assert list(ids) == sorted(ids) and len(ids) == 160, ids
    print(len(ids))
    """
)


def test_a_40_mb_write_in_one_call_finishes(db: Database, tmp_path: Path) -> None:
    """160 events of the largest allowed size (40 MB) in one transaction: the hang's reproduction."""
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-c", _LARGE_WRITE, db.url],
            capture_output=True,
            text=True,
            timeout=HANG_DEADLINE_S,
            cwd=tmp_path,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"a 40 MB write did not finish in {HANG_DEADLINE_S} s: the recorder hangs")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "160"
    assert time.monotonic() - started < HANG_DEADLINE_S


def test_an_event_over_the_bound_is_refused_and_nothing_is_written(db: Database) -> None:
    _, disbursement = open_apps(db)
    small, large = uuid4(), uuid4()
    with pytest.raises(EventTooLarge, match=f"more than the {EVENT_BYTES_MAX}"):
        disbursement.recorder.insert_events(
            [
                StoredEvent(small, 1, "test:Small", b"{}"),
                StoredEvent(large, 1, "test:Large", b"x" * (EVENT_BYTES_MAX + 1)),
            ]
        )
    assert disbursement.recorder.select_events(small) == []
    assert disbursement.recorder.select_events(large) == []


# --- the bounded events, at their largest --------------------------------------------------------------


def test_each_growing_event_at_its_bound_fits_in_a_stored_event(db: Database) -> None:
    """The largest PaymentsAdded, ResultsRecorded and Sealed the ledger can write, through the real
    mapper (JSON, then AES-GCM when the ledger is encrypted), each under EVENT_BYTES_MAX."""
    init_key(db)
    _, disbursement = open_apps(database_from_url(db.url))
    batch = Batch(region="150900", programme="urban_dibao", period="2017-01", run_month="2017-01", seq=1,
                  due_date="2017-01-10")  # fmt: skip
    ids = [uuid4().hex for _ in range(PAYMENT_IDS_PER_EVENT + 1)]
    batch.add_payments([(p, 99_999_999) for p in ids])
    batch._approved(actor="checker")  # results need an approved batch
    worst = [(p, "returned", "AC04", "2017-01-08") for p in ids]
    batch.record_results(bank_file="f" * 64, results=tuple(worst), actor="clerk")
    events = list(batch.collect_events())
    names = [type(e).__name__ for e in events]
    assert names.count("PaymentsAdded") == 2 and names.count("ResultsRecorded") == -(-len(ids) // RESULTS_PER_EVENT)
    sealed = AuditChain.Sealed(  # type: ignore[call-arg]
        originator_id=uuid4(),
        originator_version=2,
        timestamp=datetime.now(UTC),
        after_position=10**12,
        position=10**12 + 2**31,
        events=SEGMENT_EVENTS_MAX,
        skipped=tuple((10**12 + 2 * i + 1, 2**20) for i in range(SEGMENT_SKIPPED_RUNS_MAX)),
        digests=base64.b64encode(b"\xff" * 8 * SEGMENT_EVENTS_MAX).decode(),
        chain_sha256="f" * 64,
        events_max=SEGMENT_EVENTS_MAX,
    )
    for e in [*events, sealed]:
        size = len(disbursement.mapper.to_stored_event(e).state)
        assert size <= EVENT_BYTES_MAX, (type(e).__name__, size)


# --- a 10⁴-payment ledger with small bounds ------------------------------------------------------------


@pytest.fixture
def small_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounds small enough that a 10⁴-payment ledger crosses each of them many times."""
    monkeypatch.setattr(domain.disbursement, "PAYMENT_IDS_PER_EVENT", 700)
    monkeypatch.setattr(domain.disbursement, "RESULTS_PER_EVENT", 300)
    monkeypatch.setattr(ledger.audit, "SEGMENT_EVENTS_MAX", 1_000)


def _stored_sizes(db: Database) -> dict[str, int]:
    """Largest stored state per event topic in the disbursement log."""
    if db.kind == "sqlite":
        with sqlite3.connect(db.env["SQLITE_DBNAME"]) as conn:
            rows = conn.execute("SELECT topic, max(length(state)) FROM disbursement_events GROUP BY topic")
            return dict(rows.fetchall())
    with connect_postgres(db) as conn:
        rows = conn.execute(
            f'SELECT topic, max(octet_length(state)) FROM "{db.env["POSTGRES_SCHEMA"]}".disbursement_events '
            "GROUP BY topic"
        )
        return {topic: size for topic, size in rows.fetchall()}


def _tamper(db: Database, position: int) -> None:
    """Flip the last byte of the stored state at `position`, as someone with write access could."""
    if db.kind == "sqlite":
        with sqlite3.connect(db.env["SQLITE_DBNAME"]) as conn:
            (state,) = conn.execute("SELECT state FROM disbursement_events WHERE rowid=?", (position,)).fetchone()
            changed = bytes(state[:-1]) + bytes([state[-1] ^ 1])
            conn.execute("UPDATE disbursement_events SET state=? WHERE rowid=?", (changed, position))
        return
    with connect_postgres(db) as conn:
        conn.execute(
            f'UPDATE "{db.env["POSTGRES_SCHEMA"]}".disbursement_events '
            "SET state = overlay(state placing decode(to_hex(get_byte(state, length(state) - 1) # 1), 'hex') "
            "from length(state) for 1) WHERE notification_id = %s",
            (position,),
        )


def test_a_large_month_end_and_bank_file_are_stored_as_bounded_events(
    db: Database, policy_text: str, tmp_path: Path, small_bounds: None
) -> None:
    registry, disbursement = open_apps(db)
    registry.load_policy(policy_text, "ulanqab-2017.toml", "clerk")
    registry.import_roster(tuple(synthetic_rows(10_000)), "synthetic", "clerk")
    result = disbursement.run_month_end(registry.read_registry(), Month(2017, 1), scope="150900", actor="clerk")
    assert result.payments > 9_000

    largest = max(disbursement.batches(), key=lambda b: b.count)
    assert largest.count > 3 * 700
    export_batch(disbursement, registry.policy(), largest.id.hex, fmt="pain001", out=tmp_path, actor="clerk")
    approve_batch(disbursement, largest.id.hex, "checker")
    submit_batch(disbursement, largest.id.hex, "clerk")
    views = disbursement.payment_views(largest.payment_ids)
    outcomes = [(p, "ACSC", "", views[p].amount_fen) for p in largest.payment_ids]
    answer = tmp_path / "answer.pain002.xml"
    credited = datetime.combine(largest.due_date - timedelta(days=2), datetime.min.time(), tzinfo=UTC)
    answer.write_bytes(render_pain002(message_id(largest), message_id(largest), outcomes, created_at=credited))
    assert import_bank_file(disbursement, answer, actor="clerk").paid == largest.count

    settled = disbursement.batch_by_id(largest.id.hex)
    assert settled.status == "settled" and settled.paid_count() == largest.count
    assert settled.total_fen == sum(views[p].amount_fen for p in largest.payment_ids)
    checkpoint = record_checkpoint(disbursement)
    chain = disbursement.recorder.select_events(ledger.audit.audit_chain_id("Disbursement"))
    assert len(chain) - 1 == -(-checkpoint.position // 1_000)  # Started, then one seal per 1 000 events

    sizes = _stored_sizes(db)
    # 700 ids, 300 results, 1 000 digests per event: a few tens of KB each, far under the bound.
    assert sizes["domain.disbursement:Batch.PaymentsAdded"] < 40_000
    assert sizes["domain.disbursement:Batch.ResultsRecorded"] < 40_000
    assert sizes["ledger.audit:AuditChain.Sealed"] < 20_000

    report = verify_log(disbursement)
    assert report.ok and report.checkpoints == len(chain) - 1
    _tamper(db, 7_777)
    report = verify_log(disbursement)
    assert not report.ok
    assert report.failure is not None and report.failure.position == 7_777


# --- deadlines on waits --------------------------------------------------------------------------------


@contextmanager
def _writer_holding_the_lock(db: Database) -> Iterator[None]:
    """Another session in the middle of a write to the registry's log, holding its lock."""
    if db.kind == "sqlite":
        conn = sqlite3.connect(db.env["SQLITE_DBNAME"], isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    with connect_postgres(db, autocommit=False) as conn:
        conn.execute(f'LOCK TABLE "{db.env["POSTGRES_SCHEMA"]}".registry_events IN EXCLUSIVE MODE')
        yield
        conn.rollback()


def _with_query(url: str, query: str) -> str:
    return url + ("&" if "?" in url else "?") + query


def _ledger_with_roster(db: Database, tmp_path: Path) -> Path:
    with_accounts(db.url, tmp_path)
    assert yikatong(db.url, "policy", "load", str(POLICY), as_="admin").returncode == 0
    roster = tmp_path / "r.csv"
    from tests.helpers.ledgers import HEADER, LI

    roster.write_text(HEADER + LI, encoding="utf-8")
    return roster


def test_a_lock_held_by_another_command_times_out_with_a_clear_error(db: Database, tmp_path: Path) -> None:
    roster = _ledger_with_roster(db, tmp_path)
    impatient = _with_query(db.url, "lock_timeout=1")
    with _writer_holding_the_lock(db):
        started = time.monotonic()
        refused = yikatong(impatient, "roster", "import", str(roster))
        waited = time.monotonic() - started
    assert refused.returncode == 1, refused.stderr
    assert "waited 1 s for" in refused.stderr and "(lock_timeout)" in refused.stderr
    assert "nothing was recorded" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert waited < 30
    # The ledger is usable at once, and the refused import left nothing behind.
    done = yikatong(impatient, "roster", "import", str(roster), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["enrolled"] == 1


def test_a_statement_past_its_deadline_fails_clearly(db: Database, tmp_path: Path) -> None:
    if db.kind == "sqlite":
        pytest.skip("SQLite runs in the process: no server-side statement to time out")
    roster = _ledger_with_roster(db, tmp_path)
    impatient = _with_query(db.url, "statement_timeout=1&lock_timeout=60")
    with _writer_holding_the_lock(db):
        refused = yikatong(impatient, "roster", "import", str(roster))
    assert refused.returncode == 1
    assert "did not finish within 1 s (statement_timeout)" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert yikatong(impatient, "roster", "import", str(roster)).returncode == 0


def test_a_deadline_on_the_url_must_be_whole_seconds(tmp_path: Path) -> None:
    bad = yikatong(f"sqlite:///{tmp_path / 'x.db'}?lock_timeout=soon", "init")
    assert bad.returncode == 1
    assert "lock_timeout='soon' is not a whole number of seconds" in bad.stderr


def test_every_connection_starts_with_the_deadlines(db: Database) -> None:
    if db.kind == "sqlite":
        pytest.skip("PostgreSQL session settings")
    from projections.read_models import open_engine

    patient = database_from_url(_with_query(db.url, "statement_timeout=7&lock_timeout=3"))
    _, disbursement = open_apps(patient)
    with disbursement.recorder.datastore.transaction(commit=False) as curs:
        curs.execute("SELECT current_setting('statement_timeout') AS s, current_setting('lock_timeout') AS l, "
                     "current_setting('idle_in_transaction_session_timeout') AS i")  # fmt: skip
        assert tuple(curs.fetchone().values()) == ("7s", "3s", "7s")
    with connect_postgres(patient) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("7s",)
    with open_engine(patient) as engine, engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "3s"
