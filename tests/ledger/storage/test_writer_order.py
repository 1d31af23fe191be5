"""Notification ids commit in the order they are drawn, with writers serialised on an advisory lock
instead of `LOCK TABLE … IN EXCLUSIVE MODE` (issue 13: the application role holds no right that lock
needs; ledger.storage.postgres.LedgerPostgresRecorder says why the guarantee is the same).

The hazard, shown first with the lock switched off: a writer that draws higher ids and commits while a
writer holding lower ids is still open lets a follower read past the lower ids, which then appear
behind it and are never read. PostgreSQL only: SQLite serialises every write on the file.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent
from psycopg import errors, sql

from ledger.bootstrap import open_apps
from ledger.storage import Database, bulk_insert_events, connect_postgres
from ledger.storage.postgres import LedgerPostgresRecorder

WAIT_S = 1.0  # how long a writer that should be blocked is given to (wrongly) finish


@pytest.fixture
def recorder(db: Database) -> Iterator[LedgerPostgresRecorder]:
    if db.kind != "postgres":
        pytest.skip("PostgreSQL's writers; SQLite serialises every write on the file")
    registry, disbursement = open_apps(db)
    assert isinstance(disbursement.recorder, LedgerPostgresRecorder)
    yield disbursement.recorder
    registry.close()
    disbursement.close()


def event() -> StoredEvent:
    return StoredEvent(uuid.uuid4(), 1, "tests:Written", b"{}")


def open_writer(db: Database, recorder: LedgerPostgresRecorder) -> tuple[psycopg.Connection[Any], int]:
    """Another command in the middle of its write: our recorder's lock taken, one event inserted with its
    id drawn, not committed. Returns the connection (to commit) and the id."""
    conn = connect_postgres(db, autocommit=False)
    conn.execute(recorder.lock_statement)
    e = event()
    row = conn.execute(
        recorder.insert_statement, ([e.originator_id], [e.originator_version], [e.topic], [e.state]), binary=False
    ).fetchone()
    assert row is not None
    return conn, int(row[0])


class Writer(threading.Thread):
    """`insert_events` (or the month-end's COPY) in a thread, so the test can see whether it is blocked."""

    def __init__(self, recorder: LedgerPostgresRecorder, *, bulk: bool = False) -> None:
        super().__init__(daemon=True)
        self.recorder, self.bulk = recorder, bulk
        self.ids: list[int] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            if self.bulk:
                bulk_insert_events(self.recorder, [event()])
            else:
                self.ids = list(self.recorder.insert_events([event()]) or [])
        except BaseException as e:  # reported by the test
            self.error = e


def visible_ids(recorder: LedgerPostgresRecorder) -> list[int]:
    return [n.id for n in recorder.select_notifications(start=1, limit=1000)]


def test_sensitivity_without_the_lock_a_later_writer_commits_past_an_open_lower_id(
    db: Database, recorder: LedgerPostgresRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recorder, "lock_statement", sql.SQL("SELECT 1"))
    conn, open_id = open_writer(db, recorder)
    try:
        writer = Writer(recorder)
        writer.start()
        writer.join(WAIT_S * 10)
        assert not writer.is_alive() and writer.error is None  # it did not wait
        (later_id,) = writer.ids
        assert later_id > open_id
        seen = visible_ids(recorder)
        assert later_id in seen and open_id not in seen  # a follower now moves past open_id for good
    finally:
        conn.commit()
        conn.close()


@pytest.mark.parametrize("bulk", [False, True], ids=["insert", "copy"])
def test_a_writer_waits_for_the_one_holding_lower_ids_and_commits_after_it(
    db: Database, recorder: LedgerPostgresRecorder, bulk: bool
) -> None:
    conn, open_id = open_writer(db, recorder)
    writer = Writer(recorder, bulk=bulk)
    try:
        writer.start()
        writer.join(WAIT_S)
        assert writer.is_alive()  # blocked on the advisory lock, nothing drawn past open_id
        assert visible_ids(recorder) == sorted(visible_ids(recorder))
    finally:
        conn.commit()
        conn.close()
    writer.join(WAIT_S * 30)
    assert not writer.is_alive() and writer.error is None
    seen = visible_ids(recorder)
    assert open_id in seen and max(seen) > open_id
    assert writer.ids == [] if bulk else writer.ids[0] > open_id


def test_a_writer_of_an_earlier_release_and_ours_wait_for_each_other(
    db: Database, recorder: LedgerPostgresRecorder
) -> None:
    """Earlier releases (and eventsourcing's stock recorder) take LOCK TABLE … EXCLUSIVE; our INSERT's
    ROW EXCLUSIVE lock conflicts with it, so a mixed pair is serialised too, both ways."""
    table = recorder.table
    with connect_postgres(db, autocommit=False) as old:
        old.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(table))
        writer = Writer(recorder)
        writer.start()
        writer.join(WAIT_S)
        assert writer.is_alive()  # ours waits for the earlier release's writer
        old.commit()
    writer.join(WAIT_S * 30)
    assert not writer.is_alive() and writer.error is None
    conn, _ = open_writer(db, recorder)
    try:
        with connect_postgres(db, autocommit=False) as old:
            old.execute("SET lock_timeout = '1s'")
            with pytest.raises(errors.LockNotAvailable):
                old.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(table))  # and it waits for ours
    finally:
        conn.rollback()
        conn.close()
