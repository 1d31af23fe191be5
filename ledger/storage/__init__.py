"""The one door to the event store: every SQL statement of `ledger/` is in this package.

- `settings`: a database URL → eventsourcing's persistence settings (`Database`), the deadlines on
  waits, and the bound on every stored event (EVENT_BYTES_MAX).
- `sqlite`, `postgres`: one module per backend, named as eventsourcing names its own: the recorders the
  applications write through, the month-end's bulk writer, raw reads of the log, an audit's scratch
  copy; PostgreSQL also its schemas, advisory locks, the three roles of `db setup` (owner, application,
  auditor) with the append-only trigger, auditor roles and grants.
- here: the same operations for either store, chosen by the recorder's or the database's kind, so no
  module outside this package branches on the backend or holds SQL text (tests/test_architecture.py).

The key that encrypts events is not a storage matter: ledger.bootstrap adds it to the settings.
"""

from __future__ import annotations

import gc
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple
from uuid import UUID

from eventsourcing.application import LocalNotificationLog
from eventsourcing.persistence import StoredEvent
from eventsourcing.system import NotificationLogReader

from domain.errors import RuleBroken
from ledger.storage import postgres, sqlite
from ledger.storage.postgres import (
    DatabaseSetup,
    DatabaseWaitTimedOut,
    RoleHasMorePrivileges,
    RoleNames,
    SetupRefused,
)
from ledger.storage.settings import (
    DEFAULT_DB,
    EVENT_BYTES_MAX,
    EVENT_TABLES,
    BadDatabaseUrl,
    Database,
    EventTooLarge,
    check_event_sizes,
    parse_database_url,
    postgres_conninfo,
    url_for_role,
    waited_too_long,
)

__all__ = [
    "DEFAULT_DB",
    "DRIVER_ERRORS",
    "EVENT_BYTES_MAX",
    "EVENT_TABLES",
    "BadDatabaseUrl",
    "Database",
    "DatabaseSetup",
    "DatabaseWaitTimedOut",
    "EventTooLarge",
    "GrantNeedsPostgres",
    "LogRow",
    "RoleHasMorePrivileges",
    "RoleNames",
    "SetupNeedsPostgres",
    "SetupRefused",
    "bulk_insert_events",
    "check_event_sizes",
    "chunked",
    "collector_paused",
    "connect_postgres",
    "ensure_schema",
    "existing_originators",
    "first_event_states",
    "grant_auditor",
    "holds_events",
    "log_row_pages",
    "log_rows",
    "notification_pages",
    "originator_rows",
    "parse_database_url",
    "postgres_conninfo",
    "schema_lock",
    "scratch_copy_of_disbursement_log",
    "setup_database",
    "tables_exist",
    "tables_not_writable",
    "url_for_role",
    "waited_too_long",
]

Recorder = sqlite.LedgerSQLiteRecorder | postgres.LedgerPostgresRecorder

# The database drivers' own errors, raised outside eventsourcing's wrappers (psycopg from direct
# connections: schemas, grants, a read-only role; sqlite3 from the connection pool: a read-only file
# system, a full disk). The CLI reports them as storage errors.
DRIVER_ERRORS: tuple[type[Exception], ...] = (postgres.psycopg.Error, sqlite.sqlite3.Error)


class GrantNeedsPostgres(RuleBroken):
    """Database roles exist only on PostgreSQL."""


class SetupNeedsPostgres(GrantNeedsPostgres):
    """The owner, application and auditor roles of `db setup` exist only on PostgreSQL."""


def _recorder(recorder: object) -> Recorder:
    if isinstance(recorder, sqlite.LedgerSQLiteRecorder | postgres.LedgerPostgresRecorder):
        return recorder
    raise TypeError(f"{type(recorder).__name__} is not one of the ledger's recorders (ledger.storage)")


# --- writing --------------------------------------------------------------------------------------------


def bulk_insert_events(recorder: object, stored_events: Sequence[StoredEvent]) -> None:
    """Insert a month-end chunk in one transaction, all rows or none, as fast as the store allows.

    Same table, same uniqueness, same all-or-nothing as the recorder's `insert_events`; what differs is
    that no notification ids are returned, which lets each backend use its bulk path: SQLite one
    `executemany`; PostgreSQL `COPY … FROM STDIN (FORMAT BINARY)` after the writers' lock and NOTIFY, so
    notification ids stay in commit order for followers. A duplicate (originator_id, originator_version)
    raises eventsourcing's IntegrityError and nothing of the chunk is kept.
    """
    _recorder(recorder).bulk_insert_events(stored_events)


# --- reading the log ------------------------------------------------------------------------------------


def existing_originators(recorder: object, ids: Iterable[UUID]) -> set[UUID]:
    """Which of `ids` already have a first event in the recorder's table (bulk primary-key lookups).

    Used only to move past a uniqueness conflict quickly; the conflict itself is the store's.
    """
    return set(first_event_states(recorder, ids, with_state=False))


def first_event_states(recorder: object, ids: Iterable[UUID], *, with_state: bool = True) -> dict[UUID, bytes]:
    """The stored state of version 1 of each of `ids` that exists, by primary-key lookups in pages.

    A payment is exactly one event at version 1, so this loads payments in bulk without building one
    aggregate per query.
    """
    return _recorder(recorder).first_event_states(list(ids), with_state)


class LogRow(NamedTuple):
    """One stored event with its notification id, as the table holds it (originator id as 16 bytes)."""

    id: int
    originator: bytes
    originator_version: int
    topic: str
    state: bytes


def log_rows(recorder: object, start: int, stop: int | None, limit: int) -> list[LogRow]:
    """Stored events with notification ids in [start, stop], at most `limit`, in id order.

    What `select_notifications` returns, without building a `Notification` and parsing a `UUID` per
    row: the audit seal and verification hash every event, and the objects cost more than the hashing
    (10⁵ events: 2.1 s of a 3.7 s seal).
    """
    upper = stop if stop is not None else 2**63 - 1
    return [LogRow(*row) for row in _recorder(recorder).log_rows(start, upper, limit)]


def originator_rows(recorder: object, originator_id: UUID) -> list[tuple[int, int, str, bytes]]:
    """(notification id, version, topic, state) of one originator's events in version order: what
    `select_events` returns, with the notification ids the recorder's API leaves out."""
    return _recorder(recorder).originator_rows(originator_id)


@contextmanager
def scratch_copy_of_disbursement_log(db: Database, position: int) -> Iterator[str]:
    """A scratch SQLite file holding `db`'s disbursement log up to `position` (rowid = notification id),
    deleted on exit; yields its path. Needs nothing but SELECT on `db`: an auditor's read-only role can
    make it, and the production database gets no DDL."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scratch.db"
        if db.kind == "sqlite":
            sqlite.copy_disbursement_log(db.env["SQLITE_DBNAME"], path, position)
        else:
            sqlite.write_scratch_log(path, postgres.disbursement_log_pages(db, position))
        yield str(path)


def notification_pages(app: Any, page_size: int, *, start: int = 1, topics: Sequence[str] = ()) -> Iterator[Any]:
    """The application's notification log from `start`, in pages of `page_size` notifications (only
    `topics` when given): eventsourcing's own pager (`NotificationLogReader.select` over a
    `LocalNotificationLog` whose sections are that size)."""
    log = LocalNotificationLog(app.recorder, section_size=page_size)
    return NotificationLogReader(log, section_size=page_size).select(start=start, topics=topics)


def log_row_pages(recorder: object, page_size: int, start: int, stop: int | None = None) -> Iterator[list[LogRow]]:
    """`log_rows` from `start` (to `stop`), `page_size` at a time: the raw-row pager of the audit."""
    while True:
        page = log_rows(recorder, start, stop, page_size)
        if not page:
            return
        yield page
        start = page[-1].id + 1


# --- administration -------------------------------------------------------------------------------------


def connect_postgres(db: Database, *, autocommit: bool = True) -> Any:
    """A direct psycopg connection to a PostgreSQL `db`, with the ledger's deadlines."""
    return postgres.connect(db, autocommit=autocommit)


def ensure_schema(db: Database) -> None:
    """PostgreSQL: create the URL's schema when it is missing (eventsourcing creates only tables).
    SQLite: create the database file with mode 0600 when it is missing (its -wal and -shm follow)."""
    if db.kind == "postgres":
        postgres.ensure_schema(db)
    else:
        sqlite.create_private_file(db.env["SQLITE_DBNAME"])


def holds_events(db: Database) -> bool:
    """Whether the store holds any stored event, asked without creating anything (no file, no schema,
    no table): how a command learns it is about to write to a store no `init` has made a ledger of."""
    if db.kind == "postgres":
        return postgres.holds_events(db)
    return sqlite.holds_events(db.env["SQLITE_DBNAME"])


def tables_exist(db: Database, tables: Sequence[str]) -> bool:
    """PostgreSQL: whether all of `tables` exist already, so the applications open without DDL (the
    application role of `db setup` may not run eventsourcing's CREATE … IF NOT EXISTS / OR REPLACE on
    objects the owner role owns). SQLite: False, its CREATE … IF NOT EXISTS costs nothing."""
    if db.kind != "postgres":
        return False
    return postgres.tables_exist(db, tables)


@contextmanager
def schema_lock(db: Database) -> Iterator[None]:
    """Serialise table creation across processes (PostgreSQL; SQLite's file lock does it already)."""
    if db.kind != "postgres":
        yield
        return
    with postgres.schema_lock(db):
        yield


def grant_auditor(db: Database, role: str) -> list[str]:
    if db.kind != "postgres":
        raise GrantNeedsPostgres(
            "SQLite has no database users: give an auditor a read-only copy of the file, or read-only file "
            "permissions (the operating system's job); `db grant-auditor` is for PostgreSQL"
        )
    return postgres.grant_auditor(db, role)


def setup_database(db: Database, roles: RoleNames) -> DatabaseSetup:
    """PostgreSQL, as a superuser: the owner, application and auditor roles, the event tables owned by the
    owner with the append-only trigger, and the narrowest grants (ledger.storage.postgres.setup_database)."""
    if db.kind != "postgres":
        raise SetupNeedsPostgres(
            "SQLite has no database roles: whoever can write the file can change it, and the anchored seals "
            "(audit anchor, audit verify --anchor) are what detects it; `db setup` is for PostgreSQL"
        )
    return postgres.setup_database(db, roles)


def tables_not_writable(db: Database) -> tuple[str, list[str]]:
    """PostgreSQL: the connecting role and the ledger's event tables it may not INSERT into."""
    if db.kind != "postgres":
        return "", []
    return postgres.tables_not_writable(db)


# --- bulk phases ------------------------------------------------------------------------------------------


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector during a bulk phase, restoring it after.

    Folding a million registry events or accruing a million payments allocates millions of small
    objects that live until the phase ends; the collector's repeated full passes over them cost as much
    as the work itself (read_registry at 10⁵ persons: 3.7 s collecting, 2.0 s paused). Reference
    counting still frees everything as usual; only cycle detection waits until the phase ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def chunked(items: Iterable[object], size: int) -> Iterable[Sequence[object]]:
    chunk: list[object] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
