"""All of the ledger's SQLite access: the recorders the applications write through, the month-end's bulk
writer, raw reads of the log, and the scratch copy an audit rebuilds from.

The recorders are eventsourcing's `SQLiteApplicationRecorder` (table `NAME_events`, notification id =
rowid, primary key (originator_id, originator_version)), refusing events over EVENT_BYTES_MAX.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import quote
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

from ledger.storage.settings import EVENT_TABLES, check_event_sizes

SQLITE_CACHE_KIB = 256 * 1024  # page cache of the connection writing a month-end
DATABASE_FILE_MODE = 0o600  # the owner only: the file holds the ledger (docs/personal-data.md)
IDS_PER_QUERY = 900  # below SQLite's bound-parameter limit


class LedgerSQLiteRecorder(SQLiteApplicationRecorder):
    """The stock recorder, refusing events larger than EVENT_BYTES_MAX before anything is written."""

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        check_event_sizes(stored_events)
        return super().insert_events(stored_events, **kwargs)

    def bulk_insert_events(self, stored_events: Sequence[StoredEvent]) -> None:
        """One `executemany` in one transaction instead of one `execute` per row to collect `lastrowid`."""
        check_event_sizes(stored_events)
        params = [(e.originator_id.hex, e.originator_version, e.topic, e.state) for e in stored_events]  # type: ignore[union-attr]
        with self.datastore.transaction(commit=True) as c:
            # Payment ids are uniformly random keys: a larger page cache keeps the primary-key index's
            # inner pages in memory as it grows past a million rows (the default is 2 MB).
            c.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
            c.executemany(self.insert_events_statement, params)

    def first_event_states(self, ids: Sequence[UUID], with_state: bool) -> dict[UUID, bytes]:
        column = "state" if with_state else "NULL"
        found: dict[UUID, bytes] = {}
        for start in range(0, len(ids), IDS_PER_QUERY):
            part = ids[start : start + IDS_PER_QUERY]
            marks = ",".join("?" * len(part))
            statement = (
                f"SELECT originator_id, {column} FROM {self.events_table_name} "
                f"WHERE originator_version=1 AND originator_id IN ({marks})"
            )
            with self.datastore.transaction(commit=False) as c:
                c.execute(statement, [i.hex for i in part])
                found.update((UUID(row[0]), row[1]) for row in c.fetchall())
        return found

    def log_rows(self, start: int, upper: int, limit: int) -> list[tuple[int, bytes, int, str, bytes]]:
        statement = (
            f"SELECT rowid, originator_id, originator_version, topic, state FROM {self.events_table_name} "
            "WHERE rowid>=? AND rowid<=? ORDER BY rowid LIMIT ?"
        )
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement, (start, upper, limit))
            return [
                (row[0], bytes.fromhex(row[1].replace("-", "")), row[2], row[3], bytes(row[4])) for row in c.fetchall()
            ]

    def originator_rows(self, originator_id: UUID) -> list[tuple[int, int, str, bytes]]:
        """(notification id, version, topic, state) of one originator's events, in version order."""
        statement = (
            f"SELECT rowid, originator_version, topic, state FROM {self.events_table_name} "
            "WHERE originator_id = ? ORDER BY originator_version"
        )
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement, [originator_id.hex])
            return [(row[0], row[1], row[2], bytes(row[3])) for row in c.fetchall()]


class RegistrySQLiteRecorder(LedgerSQLiteRecorder):
    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "registry_events") -> None:
        super().__init__(datastore, events_table_name)


class DisbursementSQLiteRecorder(LedgerSQLiteRecorder):
    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "disbursement_events") -> None:
        super().__init__(datastore, events_table_name)



# --- the database file ----------------------------------------------------------------------------------


def is_memory(path: str) -> bool:
    """eventsourcing's test for an in-memory database (eventsourcing.sqlite `detect_memory_mode`)."""
    return path == ":memory:" or "mode=memory" in path


def create_private_file(path: str) -> None:
    """Create the database file empty with mode 0600 when it does not exist, before SQLite opens it.

    SQLite creates its -wal, -shm and journal files with the database file's permissions, so they are
    0600 too. Created exclusively: an existing file (even one created a moment ago by another process)
    is left as it is.
    """
    if is_memory(path):
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DATABASE_FILE_MODE))
    except FileExistsError:
        return


def holds_events(path: str) -> bool:
    """Whether the database file at `path` holds a stored event, read without creating or changing
    anything: a missing file, or one without the event tables, holds none."""
    if is_memory(path) or not Path(path).is_file():
        return False
    with closing(sqlite3.connect(f"file:{quote(str(Path(path).resolve()))}?mode=ro", uri=True)) as lite:
        found = {row[0] for row in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table in EVENT_TABLES:
            if table in found and lite.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone():
                return True
    return False


def copy_disbursement_log(source: str, target: Path, position: int) -> None:
    """The SQLite ledger at `source`, with its disbursement log cut at `position`, as a new file `target`."""
    from_db = sqlite3.connect(source)
    to_db = sqlite3.connect(target)
    try:
        from_db.backup(to_db)
        to_db.execute("DELETE FROM disbursement_events WHERE rowid > ?", (position,))
        to_db.commit()
    finally:
        from_db.close()
        to_db.close()


SCRATCH_TABLE = (
    "CREATE TABLE disbursement_events (originator_id TEXT, originator_version INTEGER, topic TEXT, "
    "state BLOB, PRIMARY KEY (originator_id, originator_version))"
)
SCRATCH_INSERT = (
    "INSERT INTO disbursement_events (rowid, originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?, ?)"
)


def write_scratch_log(target: Path, pages: Any) -> None:
    """A new SQLite file at `target` holding a disbursement log given as pages of
    (notification id, originator id hex, version, topic, state) rows (rowid = notification id)."""
    to_db = sqlite3.connect(target)
    try:
        to_db.execute(SCRATCH_TABLE)
        for page in pages:
            to_db.executemany(SCRATCH_INSERT, page)
        to_db.commit()
    finally:
        to_db.close()
