"""All of the ledger's PostgreSQL access: the recorder the applications write through, the bulk writer of
the month-end, raw reads of the log, direct connections, schemas, auditor roles and grants, and the
deadlines on every wait.

Why the ledger has its own recorder (issue 11): eventsourcing's `PostgresApplicationRecorder.insert_events`
writes through psycopg's pipeline mode, and psycopg 3.3's pipeline (`generators._pipeline_communicate`,
the Python and the C version alike) stops sending once its queue of commands is empty without checking
that libpq's `PQflush` drained the output buffer. A statement larger than the socket takes in one go
(≈ 16 MB on a loopback connection here: ten 1.1 MB seals in one INSERT) is left half-sent: the server
waits for the rest of the message (`ClientRead`) and the client waits for a result that cannot come, for
ever, with the table lock held, so every later writer hangs behind it. The recorder here writes the same
rows, under the same table lock and NOTIFY, in an ordinary transaction (psycopg's non-pipeline send
flushes until libpq's buffer is empty), in statements of at most `STATEMENT_BYTES_MAX`, and every stored
event is bounded by `EVENT_BYTES_MAX` (ledger.storage.settings) before anything is sent.

Deadlines (docs/deployment-postgres.md): every connection, pooled or direct, starts with
`statement_timeout` (default 600 s) and `idle_in_transaction_session_timeout`; every lock wait of a
write has `lock_timeout` (default 60 s). Both can be set on the URL (`?statement_timeout=S&lock_timeout=S`).
A wait that runs out raises `DatabaseWaitTimedOut`, naming what was waited for; the transaction is rolled
back, so nothing is partly applied and the next command works.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import ApplicationRecorder, InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore, PostgresFactory
from eventsourcing.utils import Environment, retry
from psycopg import errors, sql

from domain.errors import RuleBroken
from ledger.storage.settings import (
    EVENT_TABLES,
    LOCK_TIMEOUT_ENV,
    LOCK_TIMEOUT_S,
    STATEMENT_TIMEOUT_ENV,
    STATEMENT_TIMEOUT_S,
    Database,
    check_event_sizes,
    lock_wait_message,
    postgres_conninfo,
    statement_wait_message,
)

STATEMENT_BYTES_MAX = 4 * 1024 * 1024  # parameters of one INSERT: far below any socket buffer trouble
IDS_PER_QUERY = 900  # originator ids per lookup query
SCRATCH_COPY_PAGE = 10_000  # rows per page when an audit copies the log out
SCHEMA_LOCK_KEY = 0x59_4B_54_00  # pg_advisory_lock key for creating tables ("YKT")


class DatabaseWaitTimedOut(RuleBroken):
    """A wait on the database ran past its deadline; the transaction was rolled back, nothing applied."""


def session_options(statement_timeout_s: int, lock_timeout_s: int) -> str:
    """libpq `options` that every connection of the ledger starts with."""
    return (
        f"-c statement_timeout={statement_timeout_s * 1000} "
        f"-c lock_timeout={lock_timeout_s * 1000} "
        f"-c idle_in_transaction_session_timeout={statement_timeout_s * 1000}"
    )


def _seconds(env: Environment | dict[str, str], name: str, default: int) -> int:
    value = env.get(name)
    return int(value) if value else default


class Factory(PostgresFactory):
    """eventsourcing's PostgreSQL factory, with the ledger's deadlines on every pooled connection."""

    def __init__(self, env: Environment) -> None:
        super().__init__(env)
        options = session_options(
            _seconds(env, STATEMENT_TIMEOUT_ENV, STATEMENT_TIMEOUT_S), _seconds(env, LOCK_TIMEOUT_ENV, LOCK_TIMEOUT_S)
        )
        # The pool is not open yet (eventsourcing opens it on first use): its connections get the options.
        self.datastore.pool.kwargs["options"] = options

    def application_recorder(self) -> ApplicationRecorder:
        recorder = super().application_recorder()
        if isinstance(recorder, LedgerPostgresRecorder):
            recorder.statement_timeout_s = _seconds(self.env, STATEMENT_TIMEOUT_ENV, STATEMENT_TIMEOUT_S)
            recorder.lock_timeout_s = _seconds(self.env, LOCK_TIMEOUT_ENV, LOCK_TIMEOUT_S)
        return recorder


@contextmanager
def deadlines(what: str, statement_timeout_s: int, lock_timeout_s: int) -> Iterator[None]:
    """Turn PostgreSQL's own deadline errors into `DatabaseWaitTimedOut` naming `what` was waited for."""
    try:
        yield
    except errors.LockNotAvailable:
        raise DatabaseWaitTimedOut(f"{what}: {lock_wait_message(lock_timeout_s)}") from None
    except errors.QueryCanceled:
        raise DatabaseWaitTimedOut(f"{what}: {statement_wait_message(statement_timeout_s)}") from None


class LedgerPostgresRecorder(PostgresApplicationRecorder):
    """The stock application recorder's table, order and uniqueness, written without psycopg's pipeline.

    - `insert_events`: LOCK TABLE … IN EXCLUSIVE MODE (notification ids in commit order, as eventsourcing
      requires for followers), NOTIFY, then INSERT … RETURNING notification_id in statements of at most
      STATEMENT_BYTES_MAX of parameters, all in one transaction: all events or none.
    - `bulk_insert_events`: the same lock and NOTIFY, then COPY … FROM STDIN (FORMAT BINARY); no ids
      returned. The month-end's writer.
    A duplicate (originator_id, originator_version) raises eventsourcing's IntegrityError; a deadline
    that runs out raises DatabaseWaitTimedOut; in both cases nothing was written.
    """

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.table = sql.Identifier(datastore.schema, events_table_name)
        self.lock_timeout_s = datastore.lock_timeout or LOCK_TIMEOUT_S
        self.statement_timeout_s = STATEMENT_TIMEOUT_S
        self.lock_statement = sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(self.table)
        self.notify_statement = sql.SQL("NOTIFY {}").format(sql.Identifier(self.channel_name))
        self.insert_statement = sql.SQL(
            "INSERT INTO {} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::uuid[], %b::int8[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id"
        ).format(self.table)
        self.copy_statement = sql.SQL(
            "COPY {} (originator_id, originator_version, topic, state) FROM STDIN (FORMAT BINARY)"
        ).format(self.table)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)  # a dropped connection, as stock
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        if not stored_events:
            return []
        check_event_sizes(stored_events)
        ids: list[int] = []
        with self._write_transaction("writing events") as curs:
            for part in statement_parts(stored_events):
                curs.execute(
                    self.insert_statement,
                    (
                        [_as_uuid(e.originator_id) for e in part],
                        [e.originator_version for e in part],
                        [e.topic for e in part],
                        [e.state for e in part],
                    ),
                )
                ids.extend(row["notification_id"] for row in curs.fetchall())
        return ids

    def bulk_insert_events(self, stored_events: Sequence[StoredEvent]) -> None:
        check_event_sizes(stored_events)
        with self._write_transaction("writing a month-end chunk") as curs, curs.copy(self.copy_statement) as copy:
            copy.set_types(["uuid", "int8", "text", "bytea"])
            for e in stored_events:
                copy.write_row((e.originator_id, e.originator_version, e.topic, e.state))

    @contextmanager
    def _write_transaction(self, what: str) -> Iterator[psycopg.Cursor[Any]]:
        # The deadlines inside get_connection, which turns psycopg's errors into eventsourcing's.
        with (
            self.datastore.get_connection() as conn,
            deadlines(f"{self.events_table_name}: {what}", self.statement_timeout_s, self.lock_timeout_s),
            conn.transaction(),
            conn.cursor() as curs,
        ):
            curs.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{self.lock_timeout_s}s")))
            curs.execute(self.lock_statement)
            curs.execute(self.notify_statement)
            yield curs

    # --- raw reads of the log (ledger.storage gives the store-independent signatures) -----------------

    def first_event_states(self, ids: Sequence[UUID], with_state: bool) -> dict[UUID, bytes]:
        column = sql.SQL("state" if with_state else "NULL")
        statement = sql.SQL(
            "SELECT originator_id, {} AS state FROM {} WHERE originator_version=1 AND originator_id = ANY(%s)"
        ).format(column, self.table)
        found: dict[UUID, bytes] = {}
        for start in range(0, len(ids), IDS_PER_QUERY):
            with self.datastore.transaction(commit=False) as curs:
                curs.execute(statement, (list(ids[start : start + IDS_PER_QUERY]),))
                found.update((_as_uuid(row["originator_id"]), row["state"]) for row in curs.fetchall())
        return found

    def log_rows(self, start: int, upper: int, limit: int) -> list[tuple[int, bytes, int, str, bytes]]:
        statement = sql.SQL(
            "SELECT notification_id, uuid_send(originator_id) AS originator, originator_version, topic, state "
            "FROM {} WHERE notification_id>=%s AND notification_id<=%s ORDER BY notification_id LIMIT %s"
        ).format(self.table)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(statement, (start, upper, limit))
            return [
                (r["notification_id"], bytes(r["originator"]), r["originator_version"], r["topic"], bytes(r["state"]))
                for r in curs.fetchall()
            ]

    def originator_rows(self, originator_id: UUID) -> list[tuple[int, int, str, bytes]]:
        """(notification id, version, topic, state) of one originator's events, in version order."""
        statement = sql.SQL(
            "SELECT notification_id, originator_version, topic, state FROM {} "
            "WHERE originator_id = %s ORDER BY originator_version"
        ).format(self.table)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(statement, (originator_id,))
            rows = curs.fetchall()
        return [(r["notification_id"], r["originator_version"], r["topic"], bytes(r["state"])) for r in rows]


def statement_parts(stored_events: Sequence[StoredEvent]) -> Iterator[Sequence[StoredEvent]]:
    """`stored_events` cut into runs whose states add up to at most STATEMENT_BYTES_MAX (at least one each)."""
    start = size = 0
    for index, e in enumerate(stored_events):
        if index > start and size + len(e.state) > STATEMENT_BYTES_MAX:
            yield stored_events[start:index]
            start, size = index, 0
        size += len(e.state)
    if start < len(stored_events):
        yield stored_events[start:]


def _as_uuid(value: object) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def connect(db: Database, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    """A direct connection to `db` (schemas, grants, roles, an audit's copy) with the pool's deadlines."""
    options = session_options(db.statement_timeout_s, db.lock_timeout_s)
    return psycopg.connect(postgres_conninfo(db), autocommit=autocommit, options=options, connect_timeout=10)


def _schema(db: Database) -> str:
    return db.env.get("POSTGRES_SCHEMA") or "public"


def ensure_schema(db: Database) -> None:
    """eventsourcing creates tables but not schemas; create the URL's schema when it is missing."""
    schema = db.env.get("POSTGRES_SCHEMA")
    if not schema:
        return
    with connect(db) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


@contextmanager
def schema_lock(db: Database) -> Iterator[None]:
    """Serialise table creation across processes.

    eventsourcing creates its tables, types and functions with CREATE … IF NOT EXISTS / OR REPLACE when an
    application starts; two processes doing it at the same moment fail with "tuple concurrently updated".
    An advisory lock held while the applications are constructed makes the second wait instead.
    """
    with connect(db) as conn, deadlines("creating the tables", db.statement_timeout_s, db.lock_timeout_s):
        conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_KEY,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK_KEY,))


def disbursement_log_pages(db: Database, position: int) -> Iterator[list[tuple[int, str, int, str, bytes]]]:
    """The disbursement log up to `position`, in pages of (notification id, originator id hex, version,
    topic, state), read with a server-side cursor: needs nothing but SELECT."""
    statement = sql.SQL(
        "SELECT notification_id, originator_id, originator_version, topic, state FROM {} "
        "WHERE notification_id <= %s ORDER BY notification_id"
    ).format(sql.Identifier(_schema(db), "disbursement_events"))
    with connect(db, autocommit=False) as conn, conn.cursor(name="audit_scratch_copy") as cursor:
        cursor.itersize = SCRATCH_COPY_PAGE
        cursor.execute(statement, (position,))
        page: list[tuple[int, str, int, str, bytes]] = []
        for notification_id, originator_id, version, topic, state in cursor:
            page.append((notification_id, originator_id.hex, version, topic, bytes(state)))
            if len(page) >= SCRATCH_COPY_PAGE:
                yield page
                page = []
        yield page


class RoleHasMorePrivileges(RuleBroken):
    """An existing role that is superuser or may create roles or databases cannot be an auditor role."""


def grant_auditor(db: Database, role: str) -> list[str]:
    """Create (or narrow) `role` so that it can log in and SELECT from the ledger's schema, nothing else
    (ledger.roles.grant_auditor says why each statement); returns the statements run."""
    ensure_schema(db)
    name, where = sql.Identifier(role), sql.Identifier(_schema(db))
    statements = []
    with connect(db, autocommit=False) as conn, conn.transaction():
        found = conn.execute(
            "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls "
            "FROM pg_roles WHERE rolname = %s",
            (role,),
        ).fetchone()
        if found is not None and found[0]:
            raise RoleHasMorePrivileges(f"role {role} exists and is superuser or may create roles or databases")
        if found is None:
            create = "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
            statements.append(sql.SQL(create).format(name))
        statements.extend(
            [
                sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(where, name),
                sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(where, name),
                sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(where, name),
                sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(where, name),
            ]
        )
        for statement in statements:
            conn.execute(statement)
        return [statement.as_string(conn) for statement in statements]


def tables_not_writable(db: Database) -> tuple[str, list[str]]:
    """The connecting role and the ledger's event tables it may not INSERT into."""
    with connect(db, autocommit=False) as conn:
        user_row = conn.execute("SELECT current_user").fetchone()
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = ANY(%s) AND NOT has_table_privilege(c.oid, 'INSERT') "
            "ORDER BY c.relname",
            (_schema(db), [*EVENT_TABLES]),
        ).fetchall()
    return (str(user_row[0]) if user_row else ""), [str(r[0]) for r in rows]
