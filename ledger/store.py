"""Where the event store lives: a database URL turned into eventsourcing persistence settings.

`sqlite:///PATH` (default `./yikatong.db`) uses eventsourcing.sqlite; `postgresql://USER@HOST:PORT/DB`
uses eventsourcing.postgres through psycopg 3. An optional `?schema=NAME` on a PostgreSQL URL puts the
tables in that schema (created if missing), which is how tests isolate themselves.

Each application gets its own events table (`registry_events`, `disbursement_events`), so the month-end
reads the registry without scanning millions of payments.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlparse
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

from domain.errors import RuleBroken

DEFAULT_DB = "sqlite:///yikatong.db"
SQLITE_LOCK_TIMEOUT_S = 60
SQLITE_CACHE_KIB = 256 * 1024  # page cache of the connection writing a month-end
IDS_PER_QUERY = 900  # below SQLite's bound-parameter limit
EVENT_TABLES = ("registry_events", "disbursement_events")  # one per application (eventsourcing: NAME_events)


class BadDatabaseUrl(RuleBroken):
    """The --db / YIKATONG_DB value is not a sqlite:/// or postgresql:// URL."""


@dataclass(frozen=True, slots=True)
class Database:
    url: str
    kind: str  # "sqlite" | "postgres"
    env: dict[str, str] = field(repr=False)  # may hold the cipher key: never in a traceback

    def env_for(self, app_name: str) -> dict[str, str]:
        env = dict(self.env)
        if self.kind == "sqlite":
            env["APPLICATION_RECORDER_TOPIC"] = f"ledger.store:{app_name}SQLiteRecorder"
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
            "SQLITE_LOCK_TIMEOUT": str(SQLITE_LOCK_TIMEOUT_S),
        }
        return _with_key(Database(url=url, kind="sqlite", env=env))
    if parsed.scheme in ("postgresql", "postgres"):
        query = parse_qs(parsed.query)
        dbname = parsed.path.lstrip("/")
        if not dbname:
            raise BadDatabaseUrl(f"{url}: no database name (postgresql://USER@HOST:PORT/DB)")
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": dbname,
            "POSTGRES_HOST": parsed.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parsed.port or 5432),
            "POSTGRES_USER": unquote(parsed.username or os.environ.get("USER", "postgres")),
            "POSTGRES_PASSWORD": unquote(parsed.password or ""),
            "POSTGRES_LOCK_TIMEOUT": "30",
            "POSTGRES_POOL_SIZE": "4",
        }
        if "schema" in query:
            env["POSTGRES_SCHEMA"] = query["schema"][0]
        return _with_key(Database(url=url, kind="postgres", env=env))
    raise BadDatabaseUrl(f"{url}: use sqlite:///PATH or postgresql://USER@HOST:PORT/DB")


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
    import psycopg
    from psycopg import sql

    with psycopg.connect(postgres_conninfo(db), autocommit=True) as conn:
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
    import psycopg

    with psycopg.connect(postgres_conninfo(db), autocommit=True) as conn:
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


class RegistrySQLiteRecorder(SQLiteApplicationRecorder):
    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "registry_events") -> None:
        super().__init__(datastore, events_table_name)


class DisbursementSQLiteRecorder(SQLiteApplicationRecorder):
    """The stock recorder plus `bulk_insert_events` for the month-end (see that function)."""

    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "disbursement_events") -> None:
        super().__init__(datastore, events_table_name)


def bulk_insert_events(recorder: object, stored_events: Sequence[StoredEvent]) -> None:
    """Insert a month-end chunk in one transaction, all rows or none, as fast as the store allows.

    Same table, same uniqueness, same all-or-nothing as the recorder's `insert_events`; what differs is
    that no notification ids are returned, which lets each backend use its bulk path:
    - SQLite: one `executemany` instead of one `execute` per row to collect `lastrowid`;
    - PostgreSQL: `COPY … FROM STDIN (FORMAT BINARY)` after the recorder's own table lock and NOTIFY,
      so notification ids stay in commit order for followers. psycopg's pipelined `executemany` with
      `RETURNING`, which the stock recorder uses, stalls on chunks of about 10⁴ rows here.
    A duplicate (originator_id, originator_version) raises eventsourcing's IntegrityError and nothing
    of the chunk is kept.
    """
    datastore = recorder.datastore  # type: ignore[attr-defined]
    table = recorder.events_table_name  # type: ignore[attr-defined]
    if isinstance(datastore, SQLiteDatastore):
        params = [(e.originator_id.hex, e.originator_version, e.topic, e.state) for e in stored_events]
        with datastore.transaction(commit=True) as c:
            # Payment ids are uniformly random keys: a larger page cache keeps the primary-key index's
            # inner pages in memory as it grows past a million rows (the default is 2 MB).
            c.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
            c.executemany(recorder.insert_events_statement, params)  # type: ignore[attr-defined]
        return
    from psycopg import sql

    copy_statement = sql.SQL(
        "COPY {schema}.{table} (originator_id, originator_version, topic, state) FROM STDIN (FORMAT BINARY)"
    ).format(schema=sql.Identifier(datastore.schema), table=sql.Identifier(table))
    with datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
        recorder._lock_table(curs)  # type: ignore[attr-defined]
        recorder._notify_channel(curs)  # type: ignore[attr-defined]
        with curs.copy(copy_statement) as copy:
            copy.set_types(["uuid", "int8", "text", "bytea"])
            for e in stored_events:
                copy.write_row((e.originator_id, e.originator_version, e.topic, e.state))


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
    table = recorder.events_table_name  # type: ignore[attr-defined]
    datastore = recorder.datastore  # type: ignore[attr-defined]
    column = "state" if with_state else "NULL"
    found: dict[UUID, bytes] = {}
    id_list = list(ids)
    for start in range(0, len(id_list), IDS_PER_QUERY):
        part = id_list[start : start + IDS_PER_QUERY]
        if isinstance(datastore, SQLiteDatastore):
            marks = ",".join("?" * len(part))
            statement = (
                f"SELECT originator_id, {column} FROM {table} WHERE originator_version=1 AND originator_id IN ({marks})"
            )
            with datastore.transaction(commit=False) as c:
                c.execute(statement, [i.hex for i in part])
                found.update((UUID(row[0]), row[1]) for row in c.fetchall())
        else:
            from psycopg import sql

            statement = sql.SQL(
                "SELECT originator_id, {column} AS state FROM {schema}.{table} "
                "WHERE originator_version=1 AND originator_id = ANY(%s)"
            ).format(column=sql.SQL(column), schema=sql.Identifier(datastore.schema), table=sql.Identifier(table))
            with datastore.transaction(commit=False) as curs:
                curs.execute(statement, (part,))
                found.update((_as_uuid(row["originator_id"]), row["state"]) for row in curs.fetchall())
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
    table = recorder.events_table_name  # type: ignore[attr-defined]
    datastore = recorder.datastore  # type: ignore[attr-defined]
    upper = stop if stop is not None else 2**63 - 1
    if isinstance(datastore, SQLiteDatastore):
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
    from psycopg import sql

    query = sql.SQL(
        "SELECT notification_id, uuid_send(originator_id) AS originator, originator_version, topic, state "
        "FROM {schema}.{table} WHERE notification_id>=%s AND notification_id<=%s ORDER BY notification_id LIMIT %s"
    ).format(schema=sql.Identifier(datastore.schema), table=sql.Identifier(table))
    with datastore.transaction(commit=False) as curs:
        curs.execute(query, (start, upper, limit))
        return [
            LogRow(r["notification_id"], bytes(r["originator"]), r["originator_version"], r["topic"], bytes(r["state"]))
            for r in curs.fetchall()
        ]


def _as_uuid(value: object) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


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
