"""The SQL read models built from the disbursement log, and how to reach them.

Tables (SQLAlchemy 2 Core, own MetaData, names prefixed `rm_`) live in the same database as the
events: the same SQLite file, or on PostgreSQL the same schema (`?schema=` of the URL, else public).

- `rm_balances`: per region × programme × period, with the obligation semantics of
  `projections.balances` (the reference fold): one row counts obligations, not attempts; a re-issue
  (补发) is another attempt at the same obligation. `outstanding_fen = accrued_fen − paid_fen +
  recovered_fen + written_off_fen` is a generated column, so it cannot disagree with its parts.
- `rm_payments`: one row per payment attempt, its current state (accrued → exported → paid | returned),
  the obligation it belongs to (the first attempt's id) and what the bank said. Personal data (name,
  ID number, account) is deliberately absent: the event store encrypts it at rest when a key is
  configured, and a plain-text copy here would undo that.
- `rm_batches`: one row per batch with its counts, totals, status, who exported and approved it, and the
  latest settlement date the bank gave (what the deadline report needs).
- `rm_tracking`: the log position the read models reflect. It changes in the same transaction as the
  read models (projections.runner), so the tables always reflect exactly the events up to it.

Dates are SQL dates (ISO text on SQLite); money is integer fen; ids are 32-character lowercase hex, as
in the event payloads.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Computed,
    Connection,
    Date,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.schema import CreateTable

PROJECTION_NAME = "read_models"
APPLICATION_NAME = "Disbursement"
EVENTS_TABLE = "disbursement_events"
SQLITE_LOCK_TIMEOUT_S = 60  # as ledger.storage: wait this long for another writer before failing
SQLITE_CACHE_KIB = 256 * 1024  # page cache of the projection's connection (default is 2 MB)

ACCRUED, EXPORTED, PAID, RETURNED = "accrued", "exported", "paid", "returned"
PAYMENT_STATUSES = (ACCRUED, EXPORTED, PAID, RETURNED)

METADATA = MetaData()

balances = Table(
    "rm_balances",
    METADATA,
    Column("region", String(12), primary_key=True),  # the policy's region (the batch's)
    Column("programme", String(64), primary_key=True),
    Column("period", String(7), primary_key=True),
    Column("households", BigInteger, nullable=False),
    Column("persons", BigInteger, nullable=False),
    Column("accrued_fen", BigInteger, nullable=False),
    Column("exported_fen", BigInteger, nullable=False),
    Column("paid_fen", BigInteger, nullable=False),
    Column("returned_fen", BigInteger, nullable=False),
    # Adjustments and recoveries (issue 14, projections.balances): read models built before them lack
    # these columns and are rebuilt from the log (`read_models_current`).
    Column("adjusted_fen", BigInteger, nullable=False, server_default="0"),
    Column("recovery_due_fen", BigInteger, nullable=False, server_default="0"),
    Column("recovered_fen", BigInteger, nullable=False, server_default="0"),
    Column("written_off_fen", BigInteger, nullable=False, server_default="0"),
    Column(
        "outstanding_fen",
        BigInteger,
        Computed("accrued_fen - paid_fen + recovered_fen + written_off_fen", persisted=True),
    ),
)

payments = Table(
    "rm_payments",
    METADATA,
    # The primary key by role: a unique index (`rm_payments_id`), which a rebuild builds once after the
    # bulk load instead of re-sorting a million random keys into it page by page.
    Column("payment_id", String(32), nullable=False),
    Column("obligation_id", String(32), nullable=False),  # the first attempt's payment id
    Column("reissue_of", String(32), nullable=False),  # the attempt this one pays again, or ""
    Column("batch_id", String(32), nullable=False),
    Column("programme", String(64), nullable=False),
    Column("period", String(7), nullable=False),
    Column("region", String(12), nullable=False),  # the obligation's balance region (policy region)
    Column("county", String(12), nullable=False),  # the payee's enrolment region
    Column("amount_fen", BigInteger, nullable=False),
    Column("persons", Integer, nullable=False),
    Column("due_date", Date, nullable=False),
    Column("late", Boolean, nullable=False),
    Column("run_month", String(7), nullable=False),
    Column("status", String(10), nullable=False),
    Column("reason_code", String(35), nullable=False),
    # The bank's settlement date; when a result carries none, the date the result was recorded
    # (never earlier than the real one, so the on-time rate is never flattered).
    Column("settled_on", Date, nullable=True),
)
# Results and re-issues find attempts by id; exporting a batch updates its payments; results and
# re-issues find an obligation's other attempts. Only re-issues need the obligation index (a first
# attempt is found by its id), so it is partial and stays tiny while the table grows by a million rows
# a month-end. The literal condition lets both planners match queries that repeat it.
PAYMENT_INDEXES = (
    Index("rm_payments_id", payments.c.payment_id, unique=True),
    Index("rm_payments_batch", payments.c.batch_id),
    Index(
        "rm_payments_reissue",
        payments.c.obligation_id,
        sqlite_where=text("reissue_of <> ''"),
        postgresql_where=text("reissue_of <> ''"),
    ),
)

batches = Table(
    "rm_batches",
    METADATA,
    Column("batch_id", String(32), primary_key=True),
    Column("region", String(12), nullable=False),
    Column("programme", String(64), nullable=False),
    Column("period", String(7), nullable=False),
    Column("run_month", String(7), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("due_date", Date, nullable=False),
    Column("count", Integer, nullable=False),
    Column("total_fen", BigInteger, nullable=False),
    Column("status", String(10), nullable=False),
    Column("exported_by", String(400), nullable=False),  # actors, comma-separated, in order of first export
    Column("approved_by", String(100), nullable=False),
    Column("submitted_by", String(100), nullable=False),
    Column("results", Integer, nullable=False),  # payments with a bank result
    Column("paid", Integer, nullable=False),
    Column("returned", Integer, nullable=False),
    Column("settled_on", Date, nullable=True),  # as Batch.settled_on: the latest date the bank gave
)

# Recoveries (issue 14 item 3, projections.balances): each recovery's balance key, and each offset with
# the payment that carries it, so that a bank return of that payment undoes the offset.
recoveries = Table(
    "rm_recoveries",
    METADATA,
    Column("recovery_id", String(32), primary_key=True),
    Column("region", String(12), nullable=False),
    Column("programme", String(64), nullable=False),
    Column("period", String(7), nullable=False),  # the period the recovery comes from
    Column("amount_fen", BigInteger, nullable=False),
)

offsets = Table(
    "rm_offsets",
    METADATA,
    Column("offset_id", String(65), primary_key=True),  # recovery id "." payment id
    Column("recovery_id", String(32), nullable=False),
    Column("attempt_id", String(32), nullable=False, index=True),  # the payment that carries it
    Column("target_period", String(7), nullable=False),  # the period it was paid into
    Column("amount_fen", BigInteger, nullable=False),
    Column("undone", Boolean, nullable=False),  # the payment came back returned
)

tracking = Table(
    "rm_tracking",
    METADATA,
    Column("name", String(64), primary_key=True),
    Column("application_name", String(64), nullable=False),
    Column("position", BigInteger, nullable=False),
)

READ_MODEL_TABLES = (balances, payments, batches, recoveries, offsets, tracking)


# --- reaching the database -------------------------------------------------------------------------


def sqlalchemy_url(kind: str, env: Mapping[str, str]) -> str:
    """The SQLAlchemy URL of the store described by a `ledger.storage.Database`'s kind and env."""
    if kind == "sqlite":
        return f"sqlite:///{env['SQLITE_DBNAME']}"
    if kind == "postgres":
        user = quote(env["POSTGRES_USER"], safe="")
        password = env.get("POSTGRES_PASSWORD", "")
        credentials = f"{user}:{quote(password, safe='')}" if password else user
        host, port, name = env["POSTGRES_HOST"], env["POSTGRES_PORT"], env["POSTGRES_DBNAME"]
        return f"postgresql+psycopg://{credentials}@{host}:{port}/{quote(name, safe='')}"
    raise ValueError(f"unknown store kind {kind!r}")


def schema_of(db: Any) -> str | None:
    """The PostgreSQL schema holding the events (and so the read models); None on SQLite."""
    if db.kind != "postgres":
        return None
    return str(db.env.get("POSTGRES_SCHEMA") or "public")


@contextmanager
def open_engine(db: Any) -> Iterator[Engine]:
    """An engine on the event store's database, disposed of on exit.

    `db` is a `ledger.storage.Database` (anything with `kind` and `env`); projections do not import the
    ledger. On SQLite every transaction starts with `BEGIN IMMEDIATE` unless the connection's
    execution option `sqlite_begin` says `DEFERRED`: a projection page takes the write lock before it
    reads its tracking position, so two catch-ups serialise instead of colliding at commit.
    """
    url = sqlalchemy_url(db.kind, db.env)
    if db.kind == "sqlite":
        # One pooled connection for the whole run: closing SQLite's last connection checkpoints the WAL,
        # which a connection per page would pay for every page.
        timeout = int(db.env.get("SQLITE_LOCK_TIMEOUT") or SQLITE_LOCK_TIMEOUT_S)
        engine = create_engine(url, pool_size=1, connect_args={"timeout": timeout})
        _sqlite_transactions(engine)
    else:
        schema = schema_of(db)
        # The ledger's deadlines on every wait (docs/deployment-postgres.md), as ledger.storage.postgres sets them.
        statement_ms = int(db.env.get("YIKATONG_STATEMENT_TIMEOUT") or 600) * 1000
        lock_ms = int(db.env.get("YIKATONG_LOCK_TIMEOUT") or 60) * 1000
        options = (
            f"-c statement_timeout={statement_ms} -c lock_timeout={lock_ms} "
            f"-c idle_in_transaction_session_timeout={statement_ms}"
        )
        engine = create_engine(url, pool_size=2, connect_args={"options": options}).execution_options(
            schema_translate_map={None: schema}
        )
    try:
        yield engine
    finally:
        engine.dispose()


def _sqlite_transactions(engine: Engine) -> None:
    """SQLAlchemy's documented recipe: let SQLAlchemy, not pysqlite, emit BEGIN (and say which kind)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # The read models are derived data: after a power cut the last pages may be lost together with
        # their tracking position (one transaction), and the next catch-up writes them again.
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
        # Debian's SQLite zeroes every freed page by default; the read models hold no personal data,
        # and zeroing a dropped million-row table is seconds of writes a rebuild need not pay.
        cursor.execute("PRAGMA secure_delete = OFF")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")


def reading(conn: Connection) -> Connection:
    """Mark a connection as read-only: on SQLite its transactions do not take the write lock."""
    return conn.execution_options(sqlite_begin="DEFERRED")


# --- creating and dropping -------------------------------------------------------------------------


def create_read_models(conn: Connection, *, payment_indexes: bool = True) -> None:
    """Create the tables (when missing) and the tracking row at position 0, in the caller's transaction.

    `payment_indexes=False` (a rebuild) leaves rm_payments' indexes to `create_payment_indexes`.
    """
    _serialise_ddl(conn)
    METADATA.create_all(conn, tables=[balances, batches, recoveries, offsets, tracking], checkfirst=True)
    if not inspect(conn).has_table(payments.name, schema=_reflection_schema(conn)):
        conn.execute(CreateTable(payments))
    if payment_indexes:
        create_payment_indexes(conn)
    exists = conn.execute(select(tracking.c.position).where(tracking.c.name == PROJECTION_NAME)).first()
    if exists is None:
        conn.execute(insert(tracking).values(name=PROJECTION_NAME, application_name=APPLICATION_NAME, position=0))


def create_payment_indexes(conn: Connection) -> None:
    """Create whichever of rm_payments' indexes are missing (a unique index refuses a duplicate id)."""
    for index in PAYMENT_INDEXES:
        index.create(conn, checkfirst=True)


def drop_payment_indexes(conn: Connection) -> None:
    for index in PAYMENT_INDEXES:
        index.drop(conn, checkfirst=True)


def payment_indexes_exist(conn: Connection) -> bool:
    names = {i["name"] for i in inspect(conn).get_indexes(payments.name, schema=_reflection_schema(conn))}
    return all(index.name in names for index in PAYMENT_INDEXES)


def drop_read_models(conn: Connection) -> None:
    _serialise_ddl(conn)
    METADATA.drop_all(conn, checkfirst=True)


def _serialise_ddl(conn: Connection) -> None:
    """PostgreSQL's CREATE TABLE IF NOT EXISTS is not safe against a concurrent twin; take a lock."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('yikatong_read_models'))"))


def read_models_exist(conn: Connection) -> bool:
    return bool(inspect(conn).has_table(tracking.name, schema=_reflection_schema(conn)))


def read_models_current(conn: Connection) -> bool:
    """The read models have every column of this release (rm_balances gained the adjustment columns in
    issue 14); ones built by an earlier release are dropped and rebuilt from the log."""
    schema = _reflection_schema(conn)
    if not inspect(conn).has_table(balances.name, schema=schema):
        return True
    if not inspect(conn).has_table(offsets.name, schema=schema):
        return False  # built before recoveries were offset (issue 14 item 3)
    columns = {c["name"] for c in inspect(conn).get_columns(balances.name, schema=schema)}
    return all(column.name in columns for column in balances.columns)


def _reflection_schema(conn: Connection) -> str | None:
    """Inspection does not apply schema_translate_map; name the schema explicitly on PostgreSQL."""
    translate = conn.get_execution_options().get("schema_translate_map") or {}
    return translate.get(None)


def events_table_exists(conn: Connection) -> bool:
    return bool(inspect(conn).has_table(EVENTS_TABLE, schema=_reflection_schema(conn)))


def tracked_position(conn: Connection) -> int:
    found = conn.execute(select(tracking.c.position).where(tracking.c.name == PROJECTION_NAME)).scalar()
    return int(found or 0)


# --- reading, for tests and reports ----------------------------------------------------------------


def table_rows(conn: Connection, table: Table) -> list[dict[str, Any]]:
    """Every row of a read-model table, as dicts in key order (to compare two builds)."""
    order = [table.c.payment_id] if table is payments else list(table.primary_key.columns)
    return [dict(row._mapping) for row in conn.execute(select(table).order_by(*order))]


def all_read_model_rows(conn: Connection) -> dict[str, list[dict[str, Any]]]:
    return {table.name: table_rows(conn, table) for table in READ_MODEL_TABLES}
