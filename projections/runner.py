"""The projection runner: the disbursement log into the read models, in pages, exactly once.

Guarantees:
- Exactly once. Each page is one transaction that (1) moves `rm_tracking` from the position it read to
  the page's last position with `UPDATE … WHERE position = :previous`, refusing with
  `PositionAlreadyProcessed` when no row matched, and (2) applies the page's read-model changes. Both
  commit together or not at all, so after a crash the read models reflect exactly the events up to the
  tracked position and the next catch-up resumes after it.
- Two runners at once serialise: a page first takes the write lock (SQLite `BEGIN IMMEDIATE`,
  PostgreSQL `SELECT … FOR UPDATE` on the tracking row), then reads its position, then the events
  after it, all in the same transaction.
- Set-based. A page's accruals are inserted with one bulk statement (`executemany` on SQLite, `COPY`
  on PostgreSQL), balance changes are summed per key in memory and upserted once per page, and an
  export or a bank result changes its payments with one statement per event. A month-end of 10⁶
  payments is 50 pages, not 10⁶ transactions (eventsourcing's stock ProjectionRunner commits once
  per event, ≈ 1.4k events/s here).
- Same answers as the reference fold (`projections.balances`): obligations, not attempts, are counted;
  tests compare the two after runs, exports, results and re-issues.

The runner reads the events table directly, in its own transaction, so it needs no application
object; payloads go through the same cipher and compressor the application is configured with.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from domain.errors import RuleBroken
from projections.codec import PayloadCodec, datetime_text
from projections.read_models import (
    ACCRUED,
    APPLICATION_NAME,
    EVENTS_TABLE,
    EXPORTED,
    PAID,
    PROJECTION_NAME,
    RETURNED,
    balances,
    batches,
    create_payment_indexes,
    create_read_models,
    drop_payment_indexes,
    drop_read_models,
    events_table_exists,
    offsets,
    open_engine,
    payment_indexes_exist,
    payments,
    read_models_current,
    read_models_exist,
    reading,
    recoveries,
    schema_of,
    tracked_position,
    tracking,
)

# Notifications per transaction. Each commit rewrites every index page its page touched, and payment
# ids are uniformly random: with rm_payments' indexes in place, 10⁶ payments caught up ≈ 1.5× slower
# in pages of 5 000 than of 20 000 (24.8 s against 16.9 s on SQLite). A page holds a few MB of rows.
PAGE_SIZE = 20_000
BULK_BACKLOG_MIN = 100_000  # a backlog this large (and ≥ rm_payments' rows) loads before indexing
IDS_PER_QUERY = 900  # ids per IN (…) lookup, below SQLite's bound-parameter limit
FOLLOW_POLL_S = 1.0  # follow mode looks at the log at least this often

ACCRUED_TOPIC = "domain.disbursement:Payment.Accrued"
_BATCH_TOPIC = "domain.disbursement:Batch."
RECOVERY_DUE_TOPIC = "domain.disbursement:Recovery.Due"
_RECOVERY_TOPIC = "domain.disbursement:Recovery."
DRAFTED, APPROVED, SUBMITTED, SETTLED = "drafted", "approved", "submitted", "settled"

Plaintext = Callable[[bytes], bytes]
AfterPage = Callable[[int, int], None]  # (pages committed so far, position committed)


class PositionAlreadyProcessed(RuleBroken):
    """The tracking position is no longer the one this page started from: applying the page would
    process those events a second time, so nothing of it is kept."""


class ReadModelsOutOfStep(RuleBroken):
    """The log refers to a payment or batch the read models do not hold (a re-issue or a bank result
    for a payment never accrued, an export of a batch never drafted); the page is refused, not guessed."""


@dataclass(slots=True)
class RunStats:
    events: int = 0
    pages: int = 0
    seconds: float = 0.0
    position: int = 0
    behind: int = 0  # events left for their writer to catch up (`catch_up(backlog_max=…)`)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def add(self, other: RunStats) -> None:
        self.events += other.events
        self.pages += other.pages
        self.seconds += other.seconds
        self.position = max(self.position, other.position)


# --- the public entry points -----------------------------------------------------------------------


def catch_up(
    db: Any,
    *,
    page_size: int = PAGE_SIZE,
    plaintext: Plaintext | None = None,
    after_page: AfterPage | None = None,
    backlog_max: int | None = None,
) -> RunStats:
    """Bring the read models to the end of the log (creating them when missing). With `backlog_max`, a
    backlog larger than that is left to the writer that made it (a month-end catches its own up when it
    ends): nothing is applied, and `RunStats.behind` says by how many events the models lag."""
    with open_engine(db) as engine:
        runner = Runner(engine, schema_of(db), plaintext or plaintext_reader(db.env), page_size, after_page)
        return runner.catch_up(backlog_max)


def rebuild(
    db: Any,
    *,
    page_size: int = PAGE_SIZE,
    plaintext: Plaintext | None = None,
    after_page: AfterPage | None = None,
) -> RunStats:
    """Drop the read models, create them empty at position 0, and catch up from the first event.

    The drop and the re-creation are one transaction; from then on every page is tracked as usual, so
    a rebuild interrupted half-way is finished by the next catch-up, never restarted wrongly.
    rm_payments' indexes are built once, after the bulk load (or before the first page that looks
    payments up: an export, a bank result, a re-issue), which at 10⁶ payments halves the rebuild.
    """
    with open_engine(db) as engine:
        with engine.begin() as conn:
            drop_read_models(conn)
            create_read_models(conn, payment_indexes=False)
        runner = Runner(engine, schema_of(db), plaintext or plaintext_reader(db.env), page_size, after_page)
        runner.indexed = False
        return runner.catch_up()


def follow(
    db: Any,
    stop_after: float | None = None,
    *,
    poll_s: float = FOLLOW_POLL_S,
    page_size: int = PAGE_SIZE,
    plaintext: Plaintext | None = None,
) -> RunStats:
    """Keep the read models current until `stop_after` seconds have passed (forever when None).

    On PostgreSQL the runner LISTENs on the events table's channel, which every append NOTIFYs, and
    catches up as soon as one arrives; it also looks every `poll_s` seconds, so a missed notification
    delays it by at most that. On SQLite it looks every `poll_s` seconds.
    """
    deadline = None if stop_after is None else time.monotonic() + stop_after
    total = RunStats()
    with open_engine(db) as engine:
        runner = Runner(engine, schema_of(db), plaintext or plaintext_reader(db.env), page_size, None)
        with _wakeups(engine) as wait:
            while True:
                total.add(runner.catch_up())
                remaining = poll_s if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    return total
                wait(min(poll_s, remaining))


def plaintext_reader(env: Mapping[str, str]) -> Plaintext | None:
    """Undo the Disbursement application's cipher and compressor, configured as the application is
    (projections.codec); None when the log is stored as plain JSON."""
    codec = PayloadCodec.from_env(APPLICATION_NAME, env)
    return None if codec.is_plain else codec.plaintext


# --- the runner ------------------------------------------------------------------------------------


class Runner:
    """Catches the read models up page by page; holds only a cache of batch regions between pages."""

    def __init__(
        self,
        engine: Engine,
        schema: str | None,
        plaintext: Plaintext | None,
        page_size: int = PAGE_SIZE,
        after_page: AfterPage | None = None,
    ) -> None:
        if page_size <= 0:
            raise ValueError("page_size must be positive")
        self.engine = engine
        self.source = EventSource(engine.dialect.name, schema)
        self.plaintext = plaintext
        self.page_size = page_size
        self.after_page = after_page
        self.batch_regions: dict[str, str] = {}
        self.committed_position: int | None = None  # what this runner last committed, to trust its cache
        self.indexed = True  # rm_payments' indexes exist (a rebuild starts without them)

    def catch_up(self, backlog_max: int | None = None) -> RunStats:
        stats = RunStats()
        started = time.perf_counter()
        backlog, stats.position = self._prepare()
        if backlog_max is not None and backlog > backlog_max:
            stats.behind = backlog
            return stats
        while backlog > 0:
            applied = self.run_page()
            if applied is None:
                break
            count, position = applied
            stats.events += count
            stats.pages += 1
            stats.position = position
            if self.after_page is not None:
                self.after_page(stats.pages, position)
        if not self.indexed:
            with self.engine.begin() as conn:
                create_payment_indexes(conn)
            self.indexed = True
        stats.seconds = time.perf_counter() - started
        return stats

    def _prepare(self) -> tuple[int, int]:
        """Make the read models ready; how far they are behind the log, and from where.

        Read first without the write lock, so a report whose read models are current never waits for a
        writer. A backlog at least as large as rm_payments itself (a rebuild, the first month-end, an
        interrupted rebuild) is loaded without rm_payments' indexes, which are built once at the end:
        sorting 10⁶ keys once costs a fraction of inserting them one by one at random B-tree places.
        """
        with reading(self.engine.connect()) as conn, conn.begin():
            if not events_table_exists(conn):
                return 0, 0
            tables = read_models_exist(conn)
            stale = tables and not read_models_current(conn)
            indexes = tables and not stale and payment_indexes_exist(conn)
            position = tracked_position(conn) if tables else 0
            backlog = self.source.last_position(conn) - position
            if self.indexed and backlog >= BULK_BACKLOG_MIN:
                rows = conn.execute(select(func.count()).select_from(payments)).scalar_one() if tables else 0
                self.indexed = backlog < rows
        if stale:
            # Built by an earlier release without this one's columns: rebuilt from the log.
            with self.engine.begin() as conn:
                if not read_models_current(conn):
                    drop_read_models(conn)
            self.committed_position = None
            self.indexed = True
            return self._prepare()
        if tables and indexes == self.indexed:
            return backlog, position
        with self.engine.begin() as conn:
            create_read_models(conn, payment_indexes=self.indexed)
            if not self.indexed:
                drop_payment_indexes(conn)
            position = tracked_position(conn)
            return self.source.last_position(conn) - position, position

    def run_page(self) -> tuple[int, int] | None:
        """One transaction: lock, read position, read the events after it, apply, advance. None at the end."""
        with self.engine.begin() as conn:
            previous = self._locked_position(conn)
            entries = self.source.read(conn, previous, self.page_size)
            if not entries:
                return None
            if previous != self.committed_position:
                self.batch_regions = dict(conn.execute(select(batches.c.batch_id, batches.c.region)).all())
            page = apply_page(conn, entries, previous, self.batch_regions, self.plaintext, indexed=self.indexed)
        # Only after the commit: a failed page leaves the cache as it was.
        self.batch_regions.update(page.drafted_regions)
        self.indexed = self.indexed or page.indexed
        self.committed_position = entries[-1][0]
        return len(entries), entries[-1][0]

    @staticmethod
    def _locked_position(conn: Connection) -> int:
        query = select(tracking.c.position).where(tracking.c.name == PROJECTION_NAME)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        found = conn.execute(query).scalar()
        if found is None:
            create_read_models(conn)
            return 0
        return int(found)


def advance_tracking(conn: Connection, previous: int, new: int) -> None:
    """Move the tracking position from `previous` to `new`, or refuse: the exactly-once guard."""
    result = conn.execute(
        update(tracking).where(tracking.c.name == PROJECTION_NAME, tracking.c.position == previous).values(position=new)
    )
    if result.rowcount != 1:
        raise PositionAlreadyProcessed(
            f"read models are no longer at position {previous}; events up to {new} were not applied again"
        )


def apply_page(
    conn: Connection,
    entries: Sequence[Entry],
    previous: int,
    batch_regions: Mapping[str, str],
    plaintext: Plaintext | None,
    *,
    indexed: bool = True,
) -> Page:
    """Apply one page of events in the caller's transaction, guarded by the tracking position."""
    advance_tracking(conn, previous, entries[-1][0])
    page = Page(conn, batch_regions, indexed=indexed)
    for _position, originator, topic, state in entries:
        if plaintext is not None:
            state = plaintext(state)
        if topic == ACCRUED_TOPIC:
            page.accrued(originator, accrued_fields(state))
        elif topic.startswith(_BATCH_TOPIC):
            page.batch_event(topic[len(_BATCH_TOPIC) :], originator, json.loads(state))
        elif topic == RECOVERY_DUE_TOPIC:
            page.recovery_due(originator, json.loads(state))
        elif topic.startswith(_RECOVERY_TOPIC):
            page.recovery_event(topic[len(_RECOVERY_TOPIC) :], originator, json.loads(state))
    page.finish()
    return page


# --- reading the log -------------------------------------------------------------------------------

Entry = tuple[int, str, str, bytes]  # (position, originator id as hex, topic, stored state)


class EventSource:
    """Reads the disbursement events table directly, inside the page's own transaction."""

    def __init__(self, dialect: str, schema: str | None) -> None:
        if dialect == "sqlite":
            # eventsourcing's SQLite recorder numbers notifications by rowid.
            self.statement = (
                f"SELECT rowid, originator_id, topic, state FROM {EVENTS_TABLE} WHERE rowid > ? ORDER BY rowid LIMIT ?"
            )
            self.last_statement = f"SELECT MAX(rowid) FROM {EVENTS_TABLE}"
        else:
            table = f'"{schema}"."{EVENTS_TABLE}"'
            self.statement = (
                f"SELECT notification_id, replace(originator_id::text, '-', ''), topic, state FROM {table} "
                "WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
            )
            self.last_statement = f"SELECT MAX(notification_id) FROM {table}"

    def last_position(self, conn: Connection) -> int:
        return int(conn.exec_driver_sql(self.last_statement).scalar() or 0)

    def read(self, conn: Connection, after: int, limit: int) -> list[Entry]:
        # The driver's own cursor, in the page's transaction: plain tuples, BLOB / bytea as bytes.
        cursor = conn.connection.cursor()
        try:
            cursor.execute(self.statement, (after, limit))
            return cursor.fetchall()  # type: ignore[no-any-return]
        finally:
            cursor.close()


# `Payment.Accrued` is ≈ all of a month-end's events. Its payload is JSON written in a fixed field order
# (ledger.disbursement._ChunkWriter._accrued, identical to the mapper's); this pattern reads the fields
# the read models need from it in a third of json.loads's time. The payee's name is skipped as a JSON
# string (escapes included), and anything else that does not match — another field order, a field
# added later — is read with json.loads: the pattern is a shortcut, never the definition.
_ACCRUED = re.compile(
    r',"programme":"([^"\\]*)","period":"([^"\\]*)","name":"[^"\\]*(?:\\.[^"\\]*)*","region":"([^"\\]*)",'
    r'"amount_fen":(-?\d+),"persons":(\d+),"due_date":"([^"\\]*)","late":(true|false),'
    r'"batch_id":"([0-9a-f]*)","bank_code":"[^"\\]*","account":"[^"\\]*","run_month":"([^"\\]*)",'
    r'"reissue_of":"([0-9a-f]*)"'
    r'(?:,"monthly":(?:true|false),"adjusts":"([0-9a-f]*)","adjustment":\d+,"cause":"[^"\\]*(?:\\.[^"\\]*)*"'
    r'(?:,"offset_fen":(\d+),"balance_region":"([^"\\]*)")?)?\}$',
    re.S,
)

AccruedFields = tuple[str, str, str, int, int, str, bool, str, str, str, str, int, str]
# programme, period, county, amount_fen, persons, due_date, late, batch_id, run_month, reissue_of, adjusts,
# offset_fen, balance_region (a payment settled whole by offset, in no batch)


def accrued_fields(state: bytes) -> AccruedFields:
    payload = state.decode()
    m = _ACCRUED.search(payload)
    if m is not None:
        g = m.groups()
        return (
            g[0], g[1], g[2], int(g[3]), int(g[4]), g[5], g[6] == "true", g[7], g[8], g[9], g[10] or "",
            int(g[11] or 0), g[12] or "",
        )  # fmt: skip
    data = json.loads(payload)
    return (
        data["programme"],
        data["period"],
        data["region"],
        data["amount_fen"],
        data["persons"],
        data["due_date"],
        data["late"],
        data["batch_id"],
        data["run_month"],
        data.get("reissue_of", ""),
        data.get("adjusts", ""),
        data.get("offset_fen", 0),
        data.get("balance_region", ""),
    )


# --- one page --------------------------------------------------------------------------------------

_PAYMENT_COLUMNS = (
    "payment_id",
    "obligation_id",
    "reissue_of",
    "batch_id",
    "programme",
    "period",
    "region",
    "county",
    "amount_fen",
    "persons",
    "due_date",
    "late",
    "run_month",
    "status",
    "reason_code",
    "settled_on",
)
_DELTA_COLUMNS = (
    "households",
    "persons",
    "accrued_fen",
    "exported_fen",
    "paid_fen",
    "returned_fen",
    "adjusted_fen",
    "recovery_due_fen",
    "recovered_fen",
    "written_off_fen",
)
H, P, ACC, EXP, PAY, RET, ADJ, DUE, REC, OFF = range(10)

Key = tuple[str, str, str]  # region, programme, period
Known = tuple[str, str, str, str, int]  # obligation id, region, programme, period, obligation amount_fen


@dataclass(slots=True)
class _Obligation:
    key: Key
    amount_fen: int
    paid: bool
    returned: bool
    exported: bool


class Page:
    """The changes of one page, collected in memory and written with a few set-based statements.

    Accruals and batch creation only accumulate. An export, approval, submission or bank result reads
    what is already written, so it first flushes what has accumulated; balance changes are sums and are
    upserted once, when the page finishes.
    """

    def __init__(self, conn: Connection, batch_regions: Mapping[str, str], *, indexed: bool = True) -> None:
        self.conn = conn
        self.batch_regions = batch_regions
        self.indexed = indexed
        self.drafted_regions: dict[str, str] = {}
        self.rows: list[tuple[Any, ...]] = []
        self.known: dict[str, Known] = {}  # attempts accrued in this page
        self.reissues: list[tuple[str, AccruedFields]] = []
        self.new_batches: dict[str, dict[str, Any]] = {}
        self.batch_growth: dict[str, list[int]] = {}
        self.deltas: dict[Key, list[int]] = {}
        self.recovery_keys: dict[str, Key] = {}  # recoveries met or looked up in this page
        self.new_recoveries: list[dict[str, Any]] = []
        self.new_offsets: list[dict[str, Any]] = []

    # accruals ---------------------------------------------------------------------------------------

    def accrued(self, payment: str, f: AccruedFields) -> None:
        programme, period, county, amount_fen, persons, due_date, late, batch, run_month, reissue_of, adjusts = f[:11]
        if reissue_of:
            self.reissues.append((payment, f))  # its obligation is looked up in bulk at the flush
            return
        net = amount_fen - f[11]  # the bank line; the offset counts with its Recovery.Offset event
        region = self.drafted_regions.get(batch) or self.batch_regions.get(batch) or f[12] or county
        key = (region, programme, period)
        delta = self.deltas.get(key)
        if delta is None:
            delta = self.deltas[key] = [0] * len(_DELTA_COLUMNS)
        if adjusts:
            delta[ADJ] += amount_fen  # 补发差额: more due for a payee already counted (projections.balances)
        else:
            delta[H] += 1
            delta[P] += persons
        delta[ACC] += amount_fen
        self.known[payment] = (payment, region, programme, period, net)
        self.rows.append(
            (payment, payment, "", batch, programme, period, region, county, net, persons, due_date, late,
             run_month, ACCRUED, "", None)
        )  # fmt: skip

    def recovery_due(self, recovery: str, data: dict[str, Any]) -> None:
        """A negative adjustment (多发追回): less due for the period, and as much to recover."""
        key = (data["balance_region"], data["programme"], data["period"])
        self.recovery_keys[recovery] = key
        self.new_recoveries.append(
            {"recovery_id": recovery, "region": key[0], "programme": key[1], "period": key[2],
             "amount_fen": data["amount_fen"]}
        )  # fmt: skip
        delta = self._delta(key)
        delta[ACC] -= data["amount_fen"]
        delta[ADJ] -= data["amount_fen"]
        delta[DUE] += data["amount_fen"]

    def recovery_event(self, name: str, recovery: str, data: dict[str, Any]) -> None:
        """An offset, collection or write-off of a recovery (projections.balances, the same rules)."""
        source = self._recovery_key(recovery)
        fen = data["amount_fen"]
        delta = self._delta(source)
        delta[DUE] -= fen
        if name == "Offset":
            delta[REC] += fen
            self._delta((source[0], source[1], data["period"]))[PAY] += fen
            self.new_offsets.append(
                {"offset_id": f"{recovery}.{data['payment_id']}", "recovery_id": recovery,
                 "attempt_id": data["payment_id"], "target_period": data["period"], "amount_fen": fen,
                 "undone": False}
            )  # fmt: skip
        elif name == "Collected":
            delta[REC] += fen
        elif name == "WrittenOff":
            delta[OFF] += fen

    def _recovery_key(self, recovery: str) -> Key:
        key = self.recovery_keys.get(recovery)
        if key is None:
            query = select(recoveries.c.region, recoveries.c.programme, recoveries.c.period).where(
                recoveries.c.recovery_id == recovery
            )
            row = self.conn.execute(query).first()
            if row is None:
                raise ReadModelsOutOfStep(f"recovery {recovery} changes before it was ever due")
            key = self.recovery_keys[recovery] = (row[0], row[1], row[2])
        return key

    def _undo_offsets(self, returned: Sequence[str]) -> None:
        """Payments the bank returned: the offsets they carried no longer count (projections.balances)."""
        found = []
        for chunk in _chunks(sorted(set(returned))):
            query = select(offsets.c.offset_id, offsets.c.recovery_id, offsets.c.target_period, offsets.c.amount_fen)
            found.extend(self.conn.execute(query.where(offsets.c.attempt_id.in_(chunk), offsets.c.undone.is_(False))))
        for _offset_id, recovery, target_period, fen in found:
            source = self._recovery_key(recovery)
            self._delta((source[0], source[1], target_period))[PAY] -= fen
            delta = self._delta(source)
            delta[REC] -= fen
            delta[DUE] += fen
        if found:
            self.conn.execute(
                update(offsets).where(offsets.c.offset_id == bindparam("o")).values(undone=True),
                [{"o": row[0]} for row in found],
            )

    def _resolve_reissues(self) -> None:
        """A re-issue joins its original's obligation (and balance key); it adds nothing to the balances."""
        if not self.reissues:
            return
        wanted = {f[9] for _, f in self.reissues} - self.known.keys()
        if wanted:
            self._lookups_ready()
        found: dict[str, Known] = {}
        for chunk in _chunks(sorted(wanted)):
            query = select(
                payments.c.payment_id,
                payments.c.obligation_id,
                payments.c.region,
                payments.c.programme,
                payments.c.period,
                payments.c.amount_fen,
            ).where(payments.c.payment_id.in_(chunk))
            for pid, obligation, region, programme, period, amount in self.conn.execute(query):
                found[pid] = (obligation, region, programme, period, amount)
        for payment, f in self.reissues:
            programme, period, county, amount_fen, persons, due_date, late, batch, run_month, original, _ = f[:11]
            info = self.known.get(original) or found.get(original)
            if info is None:
                raise ReadModelsOutOfStep(f"payment {payment} re-issues {original}, which was never accrued")
            self.known[payment] = info
            self.rows.append(
                (payment, info[0], original, batch, programme, period, info[1], county, amount_fen - f[11], persons,
                 due_date, late, run_month, ACCRUED, "", None)
            )  # fmt: skip
        self.reissues = []

    # batches ----------------------------------------------------------------------------------------

    def batch_event(self, name: str, batch: str, data: dict[str, Any]) -> None:
        if name == "Drafted":
            self._drafted(batch, data)
        elif name == "PaymentsAdded":
            self._payments_added(batch, len(data["payment_ids"]), data["total_fen"])
        elif name == "Exported":
            self.flush()
            self._exported(batch, data["actor"])
        elif name == "Approved":
            self.flush()
            self._set_batch(batch, status=APPROVED, approved_by=data["actor"])
        elif name == "Submitted":
            self.flush()
            self._set_batch(batch, status=SUBMITTED, submitted_by=data["actor"])
        elif name == "ResultsRecorded":
            self.flush()
            self._results(batch, data["results"], datetime_text(data["timestamp"])[:10])

    def _drafted(self, batch: str, data: dict[str, Any]) -> None:
        self.drafted_regions[batch] = data["region"]
        self.new_batches[batch] = {
            "batch_id": batch,
            "region": data["region"],
            "programme": data["programme"],
            "period": data["period"],
            "run_month": data["run_month"],
            "seq": data["seq"],
            "due_date": date.fromisoformat(data["due_date"]),
            "count": 0,
            "total_fen": 0,
            "status": DRAFTED,
            "exported_by": "",
            "approved_by": "",
            "submitted_by": "",
            "results": 0,
            "paid": 0,
            "returned": 0,
            "settled_on": None,
        }

    def _payments_added(self, batch: str, count: int, total_fen: int) -> None:
        new = self.new_batches.get(batch)
        if new is not None:
            new["count"] += count
            new["total_fen"] += total_fen
            return
        growth = self.batch_growth.setdefault(batch, [0, 0])
        growth[0] += count
        growth[1] += total_fen

    def _exported(self, batch: str, actor: str) -> None:
        """Payments of the batch become exported; obligations exported for the first time count."""
        self._lookups_ready()
        query = select(payments.c.obligation_id).where(payments.c.batch_id == batch, payments.c.status == ACCRUED)
        obligations = self._obligations(set(self.conn.execute(query).scalars()))
        for obligation in obligations.values():
            if not obligation.exported:
                obligation.exported = True
                self._delta(obligation.key)[EXP] += obligation.amount_fen
        self.conn.execute(
            update(payments).where(payments.c.batch_id == batch, payments.c.status == ACCRUED).values(status=EXPORTED)
        )
        status, exported_by = self._batch_row(batch, batches.c.status, batches.c.exported_by)
        actors = exported_by.split(",") if exported_by else []
        if actor not in actors:
            actors.append(actor)
        self._set_batch(batch, status=EXPORTED if status == DRAFTED else status, exported_by=",".join(actors))

    def _results(self, batch: str, results: Sequence[Sequence[str]], recorded_on: str) -> None:
        """The bank's answer per payment, applied to attempts, obligations (balances) and the batch."""
        self._lookups_ready()
        owners: dict[str, tuple[str, str]] = {}  # payment → (obligation, status before)
        nets: dict[str, int] = {}  # payment → its bank line
        for chunk in _chunks(sorted({r[0] for r in results})):
            query = select(
                payments.c.payment_id, payments.c.obligation_id, payments.c.status, payments.c.amount_fen
            ).where(payments.c.payment_id.in_(chunk))
            for pid, obligation, status, net in self.conn.execute(query):
                owners[pid] = (obligation, status)
                nets[pid] = net
        obligations = self._obligations({o for o, _ in owners.values()})
        returned_now = [
            r[0] for r in results if r[1] == RETURNED and owners.get(r[0], ("", ""))[1] in (ACCRUED, EXPORTED)
        ]
        if returned_now:
            self._undo_offsets(returned_now)
        changes = []
        new_results = paid = returned = 0
        latest: date | None = None
        for payment, status, reason_code, settled_on in results:
            if payment not in owners:
                raise ReadModelsOutOfStep(f"batch {batch} has a bank result for payment {payment}, never accrued")
            obligation_id, before = owners[payment]
            self._result(obligations[obligation_id], status, nets[payment])
            if before in (ACCRUED, EXPORTED):
                new_results += 1
                paid += status == PAID
                returned += status == RETURNED
            owners[payment] = (obligation_id, status)
            if settled_on and (latest is None or date.fromisoformat(settled_on) > latest):
                latest = date.fromisoformat(settled_on)
            changes.append(
                {"p": payment, "s": status, "r": reason_code, "d": date.fromisoformat(settled_on or recorded_on)}
            )
        if changes:
            self.conn.execute(
                update(payments)
                .where(payments.c.payment_id == bindparam("p"))
                .values(status=bindparam("s"), reason_code=bindparam("r"), settled_on=bindparam("d")),
                changes,
            )
        self._settle_batch(batch, new_results, paid, returned, latest)

    def _result(self, obligation: _Obligation, status: str, net: int) -> None:
        """The reference fold's rule (projections.balances.BalanceFold._result), on one obligation: the
        attempt's bank line is paid; what is returned is the first attempt's (only a returned attempt is
        re-issued)."""
        delta = self._delta(obligation.key)
        if status == PAID and not obligation.paid:
            obligation.paid = True
            delta[PAY] += net
            if obligation.returned:
                obligation.returned = False
                delta[RET] -= obligation.amount_fen
        elif status == RETURNED and not obligation.paid and not obligation.returned:
            obligation.returned = True
            delta[RET] += obligation.amount_fen

    def _settle_batch(self, batch: str, new_results: int, paid: int, returned: int, latest: date | None) -> None:
        count, results, paid_before, returned_before, settled_on, status = self._batch_row(
            batch,
            batches.c.count,
            batches.c.results,
            batches.c.paid,
            batches.c.returned,
            batches.c.settled_on,
            batches.c.status,
        )
        results += new_results
        if latest is not None and (settled_on is None or latest > settled_on):
            settled_on = latest
        self._set_batch(
            batch,
            results=results,
            paid=paid_before + paid,
            returned=returned_before + returned,
            settled_on=settled_on,
            status=SETTLED if results >= count else status,
        )

    def _obligations(self, ids: Iterable[str]) -> dict[str, _Obligation]:
        """The state of each obligation from all its attempts: the first by primary key, re-issues by
        the partial index."""
        wanted = sorted(set(ids))
        attempts: dict[str, list[tuple[str, str, str, str, str, str, int]]] = {o: [] for o in wanted}
        columns = (
            payments.c.payment_id,
            payments.c.obligation_id,
            payments.c.status,
            payments.c.region,
            payments.c.programme,
            payments.c.period,
            payments.c.amount_fen,
        )
        for chunk in _chunks(wanted):
            firsts = select(*columns).where(payments.c.payment_id.in_(chunk))
            reissues = select(*columns).where(payments.c.obligation_id.in_(chunk), text("reissue_of <> ''"))
            for query in (firsts, reissues):
                for row in self.conn.execute(query):
                    attempts[row[1]].append(row)
        found = {}
        for obligation_id, rows in attempts.items():
            first = next((r for r in rows if r[0] == obligation_id), None)
            if first is None:
                raise ReadModelsOutOfStep(f"obligation {obligation_id} has no first payment in the read models")
            statuses = {r[2] for r in rows}
            found[obligation_id] = _Obligation(
                key=(first[3], first[4], first[5]),
                amount_fen=first[6],
                paid=PAID in statuses,
                returned=RETURNED in statuses and PAID not in statuses,
                exported=bool(statuses - {ACCRUED}),
            )
        return found

    def _lookups_ready(self) -> None:
        """A rebuild defers rm_payments' indexes until something looks payments up: build them now."""
        if not self.indexed:
            create_payment_indexes(self.conn)
            self.indexed = True

    def _batch_row(self, batch: str, *columns: Any) -> Any:
        row = self.conn.execute(select(*columns).where(batches.c.batch_id == batch)).first()
        if row is None:
            raise ReadModelsOutOfStep(f"batch {batch} was never drafted")
        return row[0] if len(columns) == 1 else tuple(row)

    def _set_batch(self, batch: str, **values: Any) -> None:
        self.conn.execute(update(batches).where(batches.c.batch_id == batch).values(**values))

    def _delta(self, key: Key) -> list[int]:
        delta = self.deltas.get(key)
        if delta is None:
            delta = self.deltas[key] = [0] * len(_DELTA_COLUMNS)
        return delta

    # writing ----------------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write the accumulated accruals and batch rows, so that what follows can read them."""
        self._resolve_reissues()
        if self.rows:
            if self.indexed:
                self.rows.sort()  # in key order, the id index is filled leaf after leaf, not at random
            _insert_payments(self.conn, self.rows)
            self.rows = []
        if self.new_batches:
            self.conn.execute(batches.insert(), list(self.new_batches.values()))
            self.new_batches = {}
        if self.new_recoveries:
            self.conn.execute(recoveries.insert(), self.new_recoveries)
            self.new_recoveries = []
        if self.new_offsets:
            self.conn.execute(offsets.insert(), self.new_offsets)
            self.new_offsets = []
        if self.batch_growth:
            self.conn.execute(
                update(batches)
                .where(batches.c.batch_id == bindparam("b"))
                .values(count=batches.c.count + bindparam("n"), total_fen=batches.c.total_fen + bindparam("t")),
                [{"b": b, "n": n, "t": t} for b, (n, t) in self.batch_growth.items()],
            )
            self.batch_growth = {}

    def finish(self) -> None:
        self.flush()
        changed = [(key, d) for key, d in self.deltas.items() if any(d)]
        if changed:
            _upsert_balances(self.conn, changed)
        self.deltas = {}


def _insert_payments(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """The page's new attempts in one statement: executemany on SQLite, COPY on PostgreSQL."""
    columns = ", ".join(_PAYMENT_COLUMNS)
    if conn.dialect.name == "sqlite":
        marks = ", ".join("?" * len(_PAYMENT_COLUMNS))
        conn.exec_driver_sql(f"INSERT INTO {payments.name} ({columns}) VALUES ({marks})", rows)
        return
    schema = (conn.get_execution_options().get("schema_translate_map") or {}).get(None) or "public"
    raw = conn.connection.dbapi_connection
    assert raw is not None
    with raw.cursor() as cursor, cursor.copy(f'COPY "{schema}".{payments.name} ({columns}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row(row)


def _upsert_balances(conn: Connection, changed: list[tuple[Key, list[int]]]) -> None:
    """Add each key's page total to its row, creating the row when it is the key's first event."""
    insert = sqlite.insert if conn.dialect.name == "sqlite" else postgresql.insert
    statement = insert(balances)
    statement = statement.on_conflict_do_update(
        index_elements=[balances.c.region, balances.c.programme, balances.c.period],
        set_={name: balances.c[name] + statement.excluded[name] for name in _DELTA_COLUMNS},
    )
    params = [
        {"region": k[0], "programme": k[1], "period": k[2], **dict(zip(_DELTA_COLUMNS, d, strict=True))}
        for k, d in changed
    ]
    conn.execute(statement, params)


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), IDS_PER_QUERY):
        yield items[start : start + IDS_PER_QUERY]


# --- waiting for new events --------------------------------------------------------------------------


class _Wakeups:
    """Waits up to a timeout for the next append: PostgreSQL LISTEN, SQLite a plain sleep."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.conn: Connection | None = None

    def __enter__(self) -> Callable[[float], None]:
        if self.engine.dialect.name != "postgresql":
            return time.sleep
        self.conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        raw = self.conn.connection.dbapi_connection
        assert raw is not None
        # eventsourcing NOTIFYs a channel named after the events table on every append.
        raw.execute(f'LISTEN "{EVENTS_TABLE}"')

        def wait(timeout: float) -> None:
            for _ in raw.notifies(timeout=timeout, stop_after=1):
                pass

        return wait

    def __exit__(self, *_: object) -> None:
        if self.conn is not None:
            self.conn.close()


def _wakeups(engine: Engine) -> _Wakeups:
    return _Wakeups(engine)
