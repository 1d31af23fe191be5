"""Where the event store lives: a database URL turned into eventsourcing persistence settings.

`sqlite:///PATH` (default `./yikatong.db`) uses eventsourcing.sqlite; `postgresql://USER@HOST:PORT/DB`
uses eventsourcing.postgres through psycopg 3. An optional `?schema=NAME` on a PostgreSQL URL puts the
tables in that schema (created if missing), which is how tests isolate themselves.

Each application gets its own events table (`registry_events`, `disbursement_events`), so the month-end
reads the registry without scanning millions of payments.

Every stored event is at most EVENT_BYTES_MAX (256 KiB) as stored: events that could grow with a
ledger (audit seals, a bank file's results, a batch's payment ids) are cut into several bounded events
by their aggregates, and a write of a larger event is refused before anything is sent. PostgreSQL
access lives in ledger.postgres; deadlines on waits: `?lock_timeout=S` (both stores, default 60 s) and
`?statement_timeout=S` (PostgreSQL, default 600 s) on the URL.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlparse
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

from domain.errors import RuleBroken
from ledger import postgres

DEFAULT_DB = "sqlite:///yikatong.db"
SQLITE_LOCK_TIMEOUT_S = 60
EVENT_BYTES_MAX = 256 * 1024  # one stored event's state, as stored (encrypted): see the module's docstring
SQLITE_CACHE_KIB = 256 * 1024  # page cache of the connection writing a month-end
IDS_PER_QUERY = 900  # below SQLite's bound-parameter limit
EVENT_TABLES = ("registry_events", "disbursement_events")  # one per application (eventsourcing: NAME_events)


class BadDatabaseUrl(RuleBroken):
    """The --db / YIKATONG_DB value is not a sqlite:/// or postgresql:// URL."""


class EventTooLarge(RuleBroken):
    """A stored event larger than EVENT_BYTES_MAX; nothing of the write was recorded."""


def check_event_sizes(stored_events: Iterable[StoredEvent]) -> None:
    """Refuse the whole write when one of its events is larger than EVENT_BYTES_MAX."""
    for e in stored_events:
        if len(e.state) > EVENT_BYTES_MAX:
            raise EventTooLarge(
                f"{e.topic} of {e.originator_id} version {e.originator_version} is {len(e.state)} bytes, "
                f"more than the {EVENT_BYTES_MAX} a stored event may hold; nothing was recorded"
            )


@dataclass(frozen=True, slots=True)
class Database:
    url: str
    kind: str  # "sqlite" | "postgres"
    env: dict[str, str] = field(repr=False)  # may hold the cipher key: never in a traceback

    def env_for(self, app_name: str) -> dict[str, str]:
        env = dict(self.env)
        if self.kind == "sqlite":
            env["APPLICATION_RECORDER_TOPIC"] = f"ledger.store:{app_name}SQLiteRecorder"
        else:
            env["APPLICATION_RECORDER_TOPIC"] = "ledger.postgres:LedgerPostgresRecorder"
        return env


def database_from_url(url: str | None) -> Database:
    url = url or os.environ.get("YIKATONG_DB") or DEFAULT_DB
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = unquote(parsed.path)
        if url.startswith("sqlite:///"):
            path = url[len("sqlite:///") :].split("?")[0]
        if not path:
            raise BadDatabaseUrl(f"{url}: no file path (use sqlite:///yikatong.db)")
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": path,
            "SQLITE_LOCK_TIMEOUT": str(_timeout(url, parse_qs(parsed.query), "lock_timeout", SQLITE_LOCK_TIMEOUT_S)),
        }
        return _with_key(Database(url=url, kind="sqlite", env=env))
    if parsed.scheme in ("postgresql", "postgres"):
        query = parse_qs(parsed.query)
        dbname = parsed.path.lstrip("/")
        if not dbname:
            raise BadDatabaseUrl(f"{url}: no database name (postgresql://USER@HOST:PORT/DB)")
        lock_timeout = _timeout(url, query, "lock_timeout", postgres.LOCK_TIMEOUT_S)
        statement_timeout = _timeout(url, query, "statement_timeout", postgres.STATEMENT_TIMEOUT_S)
        env = {
            "PERSISTENCE_MODULE": "ledger.postgres:Factory",
            "POSTGRES_DBNAME": dbname,
            "POSTGRES_HOST": parsed.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parsed.port or 5432),
            "POSTGRES_USER": unquote(parsed.username or os.environ.get("USER", "postgres")),
            "POSTGRES_PASSWORD": unquote(parsed.password or ""),
            "POSTGRES_LOCK_TIMEOUT": str(lock_timeout),
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": str(statement_timeout),
            "POSTGRES_POOL_SIZE": "4",
            postgres.LOCK_TIMEOUT_ENV: str(lock_timeout),
            postgres.STATEMENT_TIMEOUT_ENV: str(statement_timeout),
        }
        if "schema" in query:
            env["POSTGRES_SCHEMA"] = query["schema"][0]
        return _with_key(Database(url=url, kind="postgres", env=env))
    raise BadDatabaseUrl(f"{url}: use sqlite:///PATH or postgresql://USER@HOST:PORT/DB")


TIMEOUT_S_MAX = 7 * 24 * 3600


def _timeout(url: str, query: dict[str, list[str]], name: str, default: int) -> int:
    """A deadline in whole seconds from the URL's query (`?lock_timeout=60`), or the default."""
    if name not in query:
        return default
    text = query[name][0]
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= TIMEOUT_S_MAX):
        raise BadDatabaseUrl(f"{url}: {name}={text!r} is not a whole number of seconds from 1 to {TIMEOUT_S_MAX}")
    return int(text)


def _with_key(db: Database) -> Database:
    """The cipher settings go into `Database.env` itself, so the applications and everything else that
    reads the events table through these settings (projections.runner) use the same key (ledger.keys)."""
    from ledger.keys import with_cipher

    return with_cipher(db)


def ensure_postgres_schema(db: Database) -> None:
    """eventsourcing creates tables but not schemas; create the URL's schema when it is missing."""
    schema = db.env.get("POSTGRES_SCHEMA")
    if db.kind != "postgres" or not schema:
        return
    from psycopg import sql

    with connect_postgres(db) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


SCHEMA_LOCK_KEY = 0x59_4B_54_00  # pg_advisory_lock key for creating tables ("YKT")


@contextmanager
def schema_lock(db: Database) -> Iterator[None]:
    """Serialise table creation across processes on PostgreSQL.

    eventsourcing creates its tables, types and functions with CREATE … IF NOT EXISTS / OR REPLACE when an
    application starts; two processes doing it at the same moment fail with "tuple concurrently updated".
    An advisory lock held while the applications are constructed makes the second wait instead.
    """
    if db.kind != "postgres":
        yield
        return
    waits = postgres.deadlines("creating the tables", _statement_timeout(db), _lock_timeout(db))
    with connect_postgres(db) as conn, waits:
        conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_KEY,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK_KEY,))


def postgres_conninfo(db: Database) -> str:
    e = db.env
    parts = [
        f"dbname={e['POSTGRES_DBNAME']}",
        f"host={e['POSTGRES_HOST']}",
        f"port={e['POSTGRES_PORT']}",
        f"user={e['POSTGRES_USER']}",
    ]
    if e.get("POSTGRES_PASSWORD"):
        parts.append(f"password={e['POSTGRES_PASSWORD']}")
    return " ".join(parts)


def connect_postgres(db: Database, *, autocommit: bool = True) -> Any:
    """A direct psycopg connection to `db` with the ledger's deadlines (ledger.postgres)."""
    return postgres.connect(postgres_conninfo(db), autocommit=autocommit, env=db.env)


def _lock_timeout(db: Database) -> int:
    return int(db.env.get(postgres.LOCK_TIMEOUT_ENV) or postgres.LOCK_TIMEOUT_S)


def _statement_timeout(db: Database) -> int:
    return int(db.env.get(postgres.STATEMENT_TIMEOUT_ENV) or postgres.STATEMENT_TIMEOUT_S)


class _BoundedSQLiteRecorder(SQLiteApplicationRecorder):
    """The stock recorder, refusing events larger than EVENT_BYTES_MAX before anything is written."""

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        check_event_sizes(stored_events)
        return super().insert_events(stored_events, **kwargs)


class RegistrySQLiteRecorder(_BoundedSQLiteRecorder):
    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "registry_events") -> None:
        super().__init__(datastore, events_table_name)


class DisbursementSQLiteRecorder(_BoundedSQLiteRecorder):
    """The stock recorder plus `bulk_insert_events` for the month-end (see that function)."""

    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "disbursement_events") -> None:
        super().__init__(datastore, events_table_name)


def bulk_insert_events(recorder: object, stored_events: Sequence[StoredEvent]) -> None:
    """Insert a month-end chunk in one transaction, all rows or none, as fast as the store allows.

    Same table, same uniqueness, same all-or-nothing as the recorder's `insert_events`; what differs is
    that no notification ids are returned, which lets each backend use its bulk path:
    - SQLite: one `executemany` instead of one `execute` per row to collect `lastrowid`;
    - PostgreSQL: `COPY … FROM STDIN (FORMAT BINARY)` after the table lock and NOTIFY
      (ledger.postgres.LedgerPostgresRecorder.bulk_insert_events), so notification ids stay in commit
      order for followers.
    A duplicate (originator_id, originator_version) raises eventsourcing's IntegrityError and nothing
    of the chunk is kept.
    """
    if isinstance(recorder, postgres.LedgerPostgresRecorder):
        recorder.bulk_insert_events(stored_events)
        return
    check_event_sizes(stored_events)
    datastore = recorder.datastore  # type: ignore[attr-defined]
    params = [(e.originator_id.hex, e.originator_version, e.topic, e.state) for e in stored_events]
    with datastore.transaction(commit=True) as c:
        # Payment ids are uniformly random keys: a larger page cache keeps the primary-key index's
        # inner pages in memory as it grows past a million rows (the default is 2 MB).
        c.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
        c.executemany(recorder.insert_events_statement, params)  # type: ignore[attr-defined]


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
    id_list = list(ids)
    if isinstance(recorder, postgres.LedgerPostgresRecorder):
        return recorder.first_event_states(id_list, with_state)
    table = recorder.events_table_name  # type: ignore[attr-defined]
    datastore = recorder.datastore  # type: ignore[attr-defined]
    column = "state" if with_state else "NULL"
    found: dict[UUID, bytes] = {}
    for start in range(0, len(id_list), IDS_PER_QUERY):
        part = id_list[start : start + IDS_PER_QUERY]
        marks = ",".join("?" * len(part))
        statement = (
            f"SELECT originator_id, {column} FROM {table} WHERE originator_version=1 AND originator_id IN ({marks})"
        )
        with datastore.transaction(commit=False) as c:
            c.execute(statement, [i.hex for i in part])
            found.update((UUID(row[0]), row[1]) for row in c.fetchall())
    return found


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
    if isinstance(recorder, postgres.LedgerPostgresRecorder):
        return [LogRow(*row) for row in recorder.log_rows(start, upper, limit)]
    table = recorder.events_table_name  # type: ignore[attr-defined]
    datastore = recorder.datastore  # type: ignore[attr-defined]
    statement = (
        f"SELECT rowid, originator_id, originator_version, topic, state FROM {table} "
        "WHERE rowid>=? AND rowid<=? ORDER BY rowid LIMIT ?"
    )
    with datastore.transaction(commit=False) as c:
        c.execute(statement, (start, upper, limit))
        return [
            LogRow(row[0], bytes.fromhex(row[1].replace("-", "")), row[2], row[3], bytes(row[4]))
            for row in c.fetchall()
        ]


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
