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
rows, one writer at a time and with the same NOTIFY, in an ordinary transaction (psycopg's non-pipeline send
flushes until libpq's buffer is empty), in statements of at most `STATEMENT_BYTES_MAX`, and every stored
event is bounded by `EVENT_BYTES_MAX` (ledger.storage.settings) before anything is sent.

Why writers serialise on an advisory lock, not on the table (issue 13): the application role of
`yikatong db setup` (`setup_database` below) may SELECT and INSERT into the event tables and nothing
more, and PostgreSQL grants `LOCK TABLE … IN EXCLUSIVE MODE` only to a role holding UPDATE, DELETE or
TRUNCATE on the table. So every write transaction takes `pg_advisory_xact_lock(writer_lock_key(table))`
first; `LedgerPostgresRecorder` says why that keeps notification ids in commit order.

Deadlines (docs/deployment-postgres.md): every connection, pooled or direct, starts with
`statement_timeout` (default 600 s) and `idle_in_transaction_session_timeout`; every lock wait of a
write has `lock_timeout` (default 60 s). Both can be set on the URL (`?statement_timeout=S&lock_timeout=S`).
A wait that runs out raises `DatabaseWaitTimedOut`, naming what was waited for; the transaction is rolled
back, so nothing is partly applied and the next command works.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
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
APPEND_ONLY_FUNCTION = "yikatong_refuse_event_change"  # the trigger function `setup_database` creates
APPEND_ONLY_TRIGGER = "yikatong_events_append_only"  # its trigger, on every event table


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


def writer_lock_key(schema: str, table: str) -> int:
    """The pg_advisory_xact_lock key every writer of `schema`.`table` takes: a signed 64-bit number from
    the table's qualified name, the same in every process and release. Two tables whose keys collided
    would only wait for each other's writes, never write out of order."""
    digest = hashlib.sha256(f"yikatong event writers {schema}.{table}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class LedgerPostgresRecorder(PostgresApplicationRecorder):
    """The stock application recorder's table, order and uniqueness, written without psycopg's pipeline.

    - `insert_events`: the writers' advisory lock (notification ids in commit order, as eventsourcing
      requires for followers), NOTIFY, then INSERT … RETURNING notification_id in statements of at most
      STATEMENT_BYTES_MAX of parameters, all in one transaction: all events or none.
    - `bulk_insert_events`: the same lock and NOTIFY, then COPY … FROM STDIN (FORMAT BINARY); no ids
      returned. The month-end's writer.
    A duplicate (originator_id, originator_version) raises eventsourcing's IntegrityError; a deadline
    that runs out raises DatabaseWaitTimedOut; in both cases nothing was written.

    Why the advisory lock orders notification ids as eventsourcing's `LOCK TABLE … IN EXCLUSIVE MODE`
    does. A follower reads "ids after the last one I saw"; it would skip an event for good if a
    transaction holding a lower id committed after one holding a higher id. eventsourcing prevents that
    by making writers take a table lock that conflicts with itself before the INSERT draws ids from the
    sequence, and holding it until commit. `pg_advisory_xact_lock(writer_lock_key(table))` is the same
    kind of lock for our writers: a heavyweight lock on one key, taken before the first INSERT or COPY
    of the transaction (so before any id is drawn), released only at the end of the transaction, at the
    same point of commit as a table lock (after the commit is recorded and visible). Every path that
    writes an event table goes through `_write_transaction`, so while one writer holds ids that are not
    yet committed no other writer can draw any: ids commit in the order they are drawn. Readers do
    not take it and are never blocked by it, as EXCLUSIVE mode does not block them. A writer of an
    earlier release (eventsourcing's stock recorder or ours before issue 13) still takes `LOCK TABLE …
    EXCLUSIVE`; it conflicts with the ROW EXCLUSIVE lock our INSERT or COPY takes before drawing ids, so
    the two kinds of writer also wait for each other (tests/ledger/storage/test_writer_order.py shows
    both). The lock needs no privilege at all, which is the point: the application role keeps SELECT and
    INSERT only.
    """

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.table = sql.Identifier(datastore.schema, events_table_name)
        self.lock_timeout_s = datastore.lock_timeout or LOCK_TIMEOUT_S
        self.statement_timeout_s = STATEMENT_TIMEOUT_S
        self.lock_key = writer_lock_key(datastore.schema, events_table_name)
        self.lock_statement = sql.SQL("SELECT pg_advisory_xact_lock({})").format(sql.Literal(self.lock_key))
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
    """eventsourcing creates tables but not schemas; create the URL's schema when it is missing.

    Looks first: PostgreSQL checks CREATE on the database before it looks whether the schema exists, so
    `CREATE SCHEMA IF NOT EXISTS` fails for the application and auditor roles even when it exists."""
    schema = db.env.get("POSTGRES_SCHEMA")
    if not schema:
        return
    with connect(db) as conn:
        if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


def tables_exist(db: Database, tables: Sequence[str]) -> bool:
    """Whether every one of `tables` exists in the URL's schema (one catalog query, SELECT on nothing)."""
    with connect(db) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind IN ('r', 'p')",
            (_schema(db), list(tables)),
        ).fetchone()
    return row is not None and row[0] == len(set(tables))


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


def holds_events(db: Database) -> bool:
    """Whether the ledger's event tables hold a stored event, read without creating anything: a missing
    schema or table holds none."""
    schema = _schema(db)
    with connect(db) as conn:
        for table in EVENT_TABLES:
            found = conn.execute("SELECT to_regclass(%s)", (f'"{schema}"."{table}"',)).fetchone()
            if found is None or found[0] is None:
                continue
            query = sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(schema, table))
            if conn.execute(query).fetchone():
                return True
    return False


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
    """The connecting role and the ledger's event tables it may not INSERT into (the application role of
    `setup_database` holds INSERT on the event columns only, which has_table_privilege does not count)."""
    with connect(db, autocommit=False) as conn:
        user_row = conn.execute("SELECT current_user").fetchone()
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = ANY(%s) AND NOT has_any_column_privilege(c.oid, 'INSERT') "
            "ORDER BY c.relname",
            (_schema(db), [*EVENT_TABLES]),
        ).fetchall()
    return (str(user_row[0]) if user_row else ""), [str(r[0]) for r in rows]


# --- three roles: the owner, the application, the auditor (issue 13 item 2; docs/deploy.md) ------------

READ_MODEL_PREFIX = "rm_"  # projections.read_models names every read-model table so: derived data
ROLE_ATTRIBUTES = "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
EVENT_COLUMNS = ("originator_id", "originator_version", "topic", "state")  # what a writer supplies
# Objects eventsourcing creates beside each event table (a composite type and an insert function that
# the ledger does not use): handed to the owner with the tables, so the application role owns none.
EVENTSOURCING_TYPES = ("stored_event_uuid", "stored_event_text")
EVENTSOURCING_FUNCTIONS = ("es_insert_events_uuid", "es_insert_events_text")


class SetupRefused(RuleBroken):
    """`db setup` cannot give the three roles their separate rights as asked; nothing more was changed."""


@dataclass(frozen=True, slots=True)
class RoleNames:
    """The three roles of a ledger on PostgreSQL: `owner` owns the schema, the event tables and their
    trigger (setup and migrations only, NOLOGIN); `app` is what the ledger connects as (SELECT and INSERT
    on the events, owner of the read models); `auditor` may SELECT only."""

    owner: str
    app: str
    auditor: str


@dataclass(slots=True)
class DatabaseSetup:
    """What `setup_database` found and did, for the CLI to print."""

    schema: str
    roles: RoleNames
    created_roles: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    read_models: list[str] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)


def setup_database(db: Database, roles: RoleNames) -> DatabaseSetup:
    """Create the three roles, the schema and the event tables owned by the owner, the append-only
    trigger on every event table, and the narrowest grants; idempotent. `db` connects as a superuser.

    Three steps, each safe to repeat, so a run that stops half-way is finished by the next:
    1. roles and schema (one transaction);
    2. the event tables, created by eventsourcing exactly as an application creates them;
    3. ownership, trigger and grants (one transaction), then a check of what the application role
       ends up holding, through any role it is a member of.
    """
    schema = _schema(db)
    done = DatabaseSetup(schema=schema, roles=roles)
    with connect(db, autocommit=False) as conn, conn.transaction():
        _check_superuser(conn)
        _check_names(roles)
        _create_roles(conn, roles, done)
        _check_separate(conn, roles)
        _run(conn, done, _schema_statements(conn, schema, roles))
    _create_event_tables(db)
    with connect(db, autocommit=False) as conn, conn.transaction():
        _run(conn, done, _ownership_statements(conn, schema, roles, done))
        _run(conn, done, _append_only_statements(schema))
        _run(conn, done, _grant_statements(conn, schema, roles))
        _check_app_cannot_rewrite(conn, schema, roles.app)
    return done


def _run(conn: psycopg.Connection[Any], done: DatabaseSetup, statements: list[sql.Composable]) -> None:
    for statement in statements:
        conn.execute(statement)
        done.statements.append(statement.as_string(conn))


def _check_superuser(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    if row is None or not row[1]:
        user = row[0] if row else "?"
        raise SetupRefused(
            f"db setup connects as {user}, which is not a superuser: it creates roles and hands tables to the "
            "owner role, so run it with a superuser's URL (the application then connects as its own role)"
        )


def _check_names(roles: RoleNames) -> None:
    if len({roles.owner, roles.app, roles.auditor}) != 3:
        raise SetupRefused(
            f"owner {roles.owner}, application {roles.app} and auditor {roles.auditor} must be three different roles"
        )


def _create_roles(conn: psycopg.Connection[Any], roles: RoleNames, done: DatabaseSetup) -> None:
    """The owner NOLOGIN (nobody connects as it: a superuser does `SET ROLE` for a migration, so no
    password of it exists to leak); the application and the auditor LOGIN, authenticated by the server's
    pg_hba.conf (no password is set here). An existing application or auditor role that is a superuser or
    may create roles (and so could make itself a member of the owner) is refused."""
    for role, login in ((roles.owner, False), (roles.app, True), (roles.auditor, True)):
        found = conn.execute(
            "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls "
            "FROM pg_roles WHERE rolname = %s",
            (role,),
        ).fetchone()
        if found is None:
            create = sql.SQL("CREATE ROLE {} {} " + ROLE_ATTRIBUTES).format(
                sql.Identifier(role), sql.SQL("LOGIN" if login else "NOLOGIN")
            )
            _run(conn, done, [create])
            done.created_roles.append(role)
        elif found[0] and role != roles.owner:
            raise RoleHasMorePrivileges(
                f"role {role} exists and is superuser or may create roles or databases: it cannot be the "
                f"{'application' if role == roles.app else 'auditor'} role"
            )


def _check_separate(conn: psycopg.Connection[Any], roles: RoleNames) -> None:
    """Neither the application nor the auditor may act as the owner (or the auditor as the application)
    through role membership: that would hand them the owner's rights, trigger or no trigger."""
    pairs = ((roles.app, roles.owner), (roles.auditor, roles.owner), (roles.auditor, roles.app))
    for member, of in pairs:
        row = conn.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", (member, of)).fetchone()
        if row is not None and row[0]:
            raise SetupRefused(f"role {member} is a member of {of}: revoke that first (REVOKE {of} FROM {member})")


def _schema_statements(conn: psycopg.Connection[Any], schema: str, roles: RoleNames) -> list[sql.Composable]:
    """A named schema belongs to the owner (whoever owns a schema may drop it with everything in it,
    whoever owns the objects). `public` keeps its owner (the database's owner from PostgreSQL 15); the
    application role must not be that owner."""
    name, owner = sql.Identifier(schema), sql.Identifier(roles.owner)
    if schema != "public":
        return [
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(name, owner),
            sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(name, owner),
        ]
    row = conn.execute(
        "SELECT pg_has_role(%s, nspowner, 'MEMBER') OR pg_has_role(%s, nspowner, 'MEMBER') "
        "FROM pg_namespace WHERE nspname = 'public'",
        (roles.app, roles.auditor),
    ).fetchone()
    if row is not None and row[0]:
        raise SetupRefused(
            f"role {roles.app} or {roles.auditor} owns the schema public (as the database's owner) and could drop "
            "it with the events: put the ledger in its own schema (?schema=NAME on the URL) or give the "
            "database to another role"
        )
    return [sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(owner)]


def _create_event_tables(db: Database) -> None:
    """The event tables exactly as an application creates them (eventsourcing's DDL), as the superuser,
    under the schema lock; `_ownership_statements` then hands them to the owner."""
    with schema_lock(db):
        for table in EVENT_TABLES:
            factory = Factory(Environment(name=table.removesuffix("_events"), env=db.env))
            try:
                factory.application_recorder()
            finally:
                factory.close()


def _ownership_statements(
    conn: psycopg.Connection[Any], schema: str, roles: RoleNames, done: DatabaseSetup
) -> list[sql.Composable]:
    """The event tables (with their sequences and indexes) and eventsourcing's type and function to the
    owner; the read models, derived data the application drops and rebuilds, to the application."""
    owner, app = sql.Identifier(roles.owner), sql.Identifier(roles.app)
    statements: list[sql.Composable] = []
    for table in EVENT_TABLES:
        statements.append(sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.Identifier(schema, table), owner))
        done.tables.append(table)
    for (type_name,) in conn.execute(
        "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE n.nspname = %s AND t.typname = ANY(%s) ORDER BY t.typname",
        (schema, list(EVENTSOURCING_TYPES)),
    ).fetchall():
        statements.append(sql.SQL("ALTER TYPE {} OWNER TO {}").format(sql.Identifier(schema, type_name), owner))
    for (signature,) in conn.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = %s AND p.proname = ANY(%s) ORDER BY 1",
        (schema, list(EVENTSOURCING_FUNCTIONS)),
    ).fetchall():
        # regprocedure's text is the catalog's own quoting of the name and argument types.
        statements.append(sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(sql.SQL(signature), owner))
    for (table,) in conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = 'r' AND starts_with(c.relname, %s) ORDER BY c.relname",
        (schema, READ_MODEL_PREFIX),
    ).fetchall():
        statements.append(sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.Identifier(schema, table), app))
        done.read_models.append(table)
    return statements


def _append_only_statements(schema: str) -> list[sql.Composable]:
    """The trigger that refuses UPDATE, DELETE and TRUNCATE of a stored event to every role but the
    table's owner.

    - "The owner" is the role that owns the table (pg_class.relowner), compared with `current_user`, the
      role the statement runs as: a superuser is refused too unless it does `SET ROLE` to the owner first,
      so even a migration says who it is. The function is SECURITY INVOKER (the default): as SECURITY
      DEFINER, current_user inside it would always be its owner and nothing would be refused.
    - One statement-level trigger for all three operations (TRUNCATE has no rows; UPDATE and DELETE are
      refused before the first row, even when no row matches, at no cost per row).
    - ENABLE ALWAYS: it fires in `session_replication_role = replica` too, which otherwise skips triggers.
    - `search_path` is fixed on the function, so objects the application role creates in the schema
      (it may create its read models there) cannot stand in for the catalog functions it calls.
    What it does not stop: the owner, or a superuser (who can `SET ROLE` to it or disable the trigger),
    can still rewrite the log; the anchored seals (docs/audit.md) detect that.
    """
    function = sql.Identifier(schema, APPEND_ONLY_FUNCTION)
    statements: list[sql.Composable] = [
        sql.SQL(
            "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql "
            "SET search_path = pg_catalog, pg_temp AS $body$ "
            "BEGIN "
            "IF current_user IS DISTINCT FROM (SELECT pg_get_userbyid(c.relowner) FROM pg_class c "
            "WHERE c.oid = TG_RELID) THEN "
            "RAISE EXCEPTION 'yikatong: stored events are append-only: % on %.% refused for role %', "
            "TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME, current_user "
            "USING ERRCODE = 'insufficient_privilege', "
            "HINT = 'a correction is a new event; only the owner role (migrations) may change the table'; "
            "END IF; "
            "RETURN NULL; "
            "END $body$"
        ).format(function),
        sql.SQL("REVOKE ALL ON FUNCTION {}() FROM PUBLIC").format(function),
    ]
    for table in EVENT_TABLES:
        name, trigger = sql.Identifier(schema, table), sql.Identifier(APPEND_ONLY_TRIGGER)
        statements += [
            sql.SQL(
                "CREATE OR REPLACE TRIGGER {} BEFORE UPDATE OR DELETE OR TRUNCATE ON {} "
                "FOR EACH STATEMENT EXECUTE FUNCTION {}()"
            ).format(trigger, name, function),
            sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(name, trigger),
        ]
    return statements


def _grant_statements(conn: psycopg.Connection[Any], schema: str, roles: RoleNames) -> list[sql.Composable]:
    """The narrowest rights the ledger's work needs.

    - application: USAGE on the schema, and CREATE for its read models; on each event table SELECT, and
      INSERT of the four columns a writer supplies (not `notification_id`, so no event can be slotted
      into a gap of the log); USAGE on the id sequence (nextval, not setval). No UPDATE, DELETE,
      TRUNCATE, REFERENCES or TRIGGER: writers serialise on an advisory lock, not LOCK TABLE.
    - auditor: USAGE on the schema and SELECT on every table, now and (by default privileges) on the
      tables the owner or the application create later, the rebuilt read models included.
    - PUBLIC: nothing on the event tables.
    """
    where = sql.Identifier(schema)
    owner, app, auditor = (sql.Identifier(r) for r in (roles.owner, roles.app, roles.auditor))
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in EVENT_COLUMNS)
    statements: list[sql.Composable] = [
        sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(where, app),
        sql.SQL("REVOKE CREATE ON SCHEMA {} FROM {}").format(where, auditor),
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(where, auditor),
    ]
    for table in EVENT_TABLES:
        name = sql.Identifier(schema, table)
        qualified = sql.Identifier(schema, table).as_string(conn)
        row = conn.execute("SELECT pg_get_serial_sequence(%s, 'notification_id')", (qualified,)).fetchone()
        statements += [
            sql.SQL("REVOKE ALL ON TABLE {} FROM PUBLIC, {}, {}").format(name, app, auditor),
            sql.SQL("GRANT SELECT ON TABLE {} TO {}").format(name, app),
            sql.SQL("GRANT INSERT ({}) ON TABLE {} TO {}").format(columns, name, app),
        ]
        if row is not None and row[0]:
            sequence = sql.SQL(row[0])  # the catalog's own quoting of schema.name
            statements += [
                sql.SQL("REVOKE ALL ON SEQUENCE {} FROM PUBLIC, {}, {}").format(sequence, app, auditor),
                sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(sequence, app),
            ]
    statements += [
        sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(where, auditor),
        sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(where, auditor),
        sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(
            app, where, auditor
        ),
        sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(
            owner, where, auditor
        ),
    ]
    return statements


def _check_app_cannot_rewrite(conn: psycopg.Connection[Any], schema: str, app: str) -> None:
    """What the application role ends up holding, by any route (a role it belongs to, PUBLIC): neither
    a right to change a stored event nor ownership of its table or schema. Raised before commit, so a
    refused setup changes no grant."""
    for table in EVENT_TABLES:
        qualified = sql.Identifier(schema, table).as_string(conn)
        row = conn.execute(
            "SELECT has_table_privilege(%s, %s, 'UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES'), "
            "pg_has_role(%s, c.relowner, 'MEMBER') FROM pg_class c WHERE c.oid = %s::regclass",
            (app, qualified, app, qualified),
        ).fetchone()
        if row is not None and (row[0] or row[1]):
            raise SetupRefused(
                f"role {app} could still change {table} (through a role it belongs to, or PUBLIC): "
                "find that grant (\\dp in psql) and revoke it, then run db setup again"
            )
