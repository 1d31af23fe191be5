"""The reliability harness (issue 7): kill -9 anywhere, then prove nothing was lost or paid twice.

What it does, per store (SQLite or PostgreSQL):
- Builds two identical ledgers from the same synthetic roster: the store under test and a clean
  reference. Every command is run on the reference once, uninterrupted, in a child process, while the
  harness watches the store's commits (the events tables and the read models' tracking position) and
  notes when each one lands: that timeline is where kills are aimed.
- Runs the same command on the store under test in a child process (`python -c` that shrinks
  `ledger.disbursement.PAYMENTS_PER_CHUNK`, so a month-end commits many times, then calls
  `ledger.cli.main`) and SIGKILLs it: near a commit of the reference timeline (a few ms before or
  after, so inside or just past the transaction), right after the store is seen to commit, or at a
  uniformly random moment. It restarts the same command, maybe kills it again, until it completes.
- After every completed recovery it checks the invariants (`check_store`): every enrolment-period
  paid exactly once (the same payment ids and amounts as the clean run), every batch's total equal to
  the sum of its payments, no payment in two batches, bank results recorded once, the read models equal
  to a rebuild from the log and to the clean run's, both logs intact, every export regenerating to its
  recorded SHA-256.
- Episodes repeat (month-end 2017-01, export, approve, bank import; then 2017-04…) until the kill
  budget is spent; every few run months it starts a fresh pair of stores so the logs stay small.

Duplicates are counted by natural key (id number, programme, period, re-issued payment), never by
payment id, so the harness still sees them when ids stop being deterministic (the sensitivity test).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from domain.disbursement import bank_file_id
from domain.errors import RuleBroken
from domain.periods import Month
from ledger.bootstrap import database_from_url
from ledger.storage import Database

PROJECT = Path(__file__).resolve().parents[2]
POLICY = PROJECT / "ledger" / "data" / "ulanqab-2017.toml"

SOAK = os.environ.get("YIKATONG_SOAK", "") not in ("", "0")
KILL_POINTS = int(os.environ.get("YIKATONG_KILL_POINTS") or (200 if SOAK else 20))
KILL_PAYMENTS = int(os.environ.get("YIKATONG_KILL_PAYMENTS") or (10_000 if SOAK else 2_000))
KILL_SEED = os.environ.get("YIKATONG_KILL_SEED")
CHUNK_PAYMENTS = 100  # the child's PAYMENTS_PER_CHUNK: a 2 000-payment month-end commits 20 times
MONTHS_PER_STORE = 6  # run months on one pair of stores before starting a fresh pair
ATTEMPTS_MAX = 30  # child starts for one command before the harness gives up loudly
COMMAND_TIMEOUT_S = 900  # one child, on a loaded machine
POLL_S = 0.001  # how often the harness looks at the child and the store
EXAMPLES_MAX = 20  # mismatch lines kept for the report
SCOPE = "150900"

ACCRUED = "domain.disbursement:Payment.Accrued"
RECOVERY_DUE = "domain.disbursement:Recovery.Due"
RUN_COMPLETED = "domain.disbursement:RunLog.RunCompleted"
EXPORTED = "domain.disbursement:Batch.Exported"
IMPORTED = "domain.disbursement:BankFile.Imported"
SEALED = "ledger.audit:AuditChain.Sealed"

# The child: a smaller month-end chunk, smaller seal segments when $YIKATONG_TEST_SEAL_SEGMENT says so
# (a large backlog's seal as many Sealed events in one transaction), optionally random payment ids (the
# store's uniqueness switched off, for the sensitivity test), then the real command line.
CHILD_CODE = """
import json, os, sys
options = json.loads(sys.argv[2])
import ledger.disbursement
ledger.disbursement.PAYMENTS_PER_CHUNK = options["chunk"]
if os.environ.get("YIKATONG_TEST_SEAL_SEGMENT"):
    import ledger.audit
    ledger.audit.SEGMENT_EVENTS_MAX = int(os.environ["YIKATONG_TEST_SEAL_SEGMENT"])
if os.environ.get("YIKATONG_TEST_DIE_IN_SEAL"):
    # Kill -9 itself inside the seal's transaction: every Sealed row inserted, nothing committed. Only
    # while the counter file says so (a number of deaths still to die), so a restart can finish.
    import signal
    import ledger.storage.postgres as pg
    import ledger.storage.sqlite as lite
    counter = os.environ["YIKATONG_TEST_DIE_IN_SEAL"]
    def _die_if_sealing(events):
        if any(e.topic.endswith("AuditChain.Sealed") for e in events):
            left = int(open(counter).read() or 0)
            if left > 0:
                open(counter, "w").write(str(left - 1))
                os.kill(os.getpid(), signal.SIGKILL)
    real_parts = pg.statement_parts
    def statement_parts(events):
        yield from real_parts(events)
        _die_if_sealing(events)  # after the last INSERT of the transaction, before its COMMIT
    pg.statement_parts = statement_parts
    real_insert = lite.LedgerSQLiteRecorder._insert_events
    def _insert_events(self, c, events, **kwargs):
        ids = real_insert(self, c, events, **kwargs)
        _die_if_sealing(events)  # inside the transaction, before its COMMIT
        return ids
    lite.LedgerSQLiteRecorder._insert_events = _insert_events
if options["random_ids"]:
    import uuid
    import domain.ids
    # The month-end names payments through the ledger's id scheme (domain.ids); these ledgers have no
    # charter, so their scheme is the uuid5 one: make it draw a new id each time.
    domain.ids.UUID5_IDS.payment_id = lambda *natural_key: uuid.uuid4()
import ledger.cli
ledger.cli.main(json.loads(sys.argv[1]), prog_name="yikatong")
"""


class HarnessFailure(AssertionError):
    """A command failed in a way a restart did not cure, or the harness could not do its job."""


# --- stores --------------------------------------------------------------------------------------------


def derived(db: Database, suffix: str) -> Database:
    """Another store beside `db`: a sibling SQLite file, or a schema named after the test's (the `db`
    fixture drops every schema whose name starts with the test's)."""
    if db.kind == "sqlite":
        path = Path(db.env["SQLITE_DBNAME"])
        return database_from_url(f"sqlite:///{path.with_name(f'{path.stem}-{suffix}.db')}")
    return database_from_url(f"{db.url}_{suffix}")


def build_ledger(db: Database, rows: int, seed: int = 2017, policy_text: str | None = None) -> None:
    """Policy (the shipped one unless `policy_text`) and a synthetic roster of `rows` enrolments, sealed and
    projected, as the CLI leaves it."""
    from ledger.audit import record_checkpoint
    from ledger.bootstrap import open_apps
    from ledger.reports import catch_up
    from ledger.synthetic import synthetic_rows

    registry, disbursement = open_apps(db)
    try:
        text = policy_text if policy_text is not None else POLICY.read_text(encoding="utf-8")
        registry.load_policy(text, POLICY.name, "clerk")
        registry.import_roster(tuple(synthetic_rows(rows, seed=seed)), "synthetic.csv", "clerk")
        record_checkpoint(registry)
    finally:
        registry.close()
        disbursement.close()
    catch_up(db)


class Poller:
    """Cheap looks at a store from outside the child: where its logs and read models stand."""

    def __init__(self, db: Database) -> None:
        self.db = db
        if db.kind == "sqlite":
            self.conn: Any = sqlite3.connect(db.env["SQLITE_DBNAME"], timeout=60, isolation_level=None)
            self.prefix = ""
        else:
            import psycopg

            from ledger.storage import postgres_conninfo

            self.conn = psycopg.connect(postgres_conninfo(db), autocommit=True)
            self.prefix = f'"{db.env["POSTGRES_SCHEMA"]}".'
        position = "rowid" if db.kind == "sqlite" else "notification_id"
        self.position = position
        self.signature_sql = (
            f"SELECT (SELECT max({position}) FROM {self.prefix}disbursement_events), "
            f"(SELECT max({position}) FROM {self.prefix}registry_events), "
            f"(SELECT max(position) FROM {self.prefix}rm_tracking)"
        )

    def signature(self) -> tuple[int, int, int]:
        """(disbursement log end, registry log end, read models' position): any change is a commit."""
        row = self.conn.execute(self.signature_sql).fetchone()
        return (row[0] or 0, row[1] or 0, row[2] or 0)

    def topics_since(self, position: int) -> Counter[str]:
        mark = "?" if self.db.kind == "sqlite" else "%s"
        rows = self.conn.execute(
            f"SELECT topic, count(*) FROM {self.prefix}disbursement_events WHERE {self.position} > {mark} "
            "GROUP BY topic",
            (position,),
        ).fetchall()
        return Counter({topic: count for topic, count in rows})

    def close(self) -> None:
        self.conn.close()


# --- child processes and kills -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timeline:
    """When a command's commits landed, in seconds after its child was started (a reference run)."""

    commits: tuple[float, ...]
    end_s: float


@dataclass(frozen=True, slots=True)
class KillPlan:
    at_s: float | None = None  # kill this long after the start, or …
    after_commits: int = 0  # … right after the store was seen to commit this many times
    extra_s: float = 0.0  # … and this much later
    kind: str = ""


def choose_plan(rng: random.Random, timeline: Timeline, *, restart: bool) -> KillPlan:
    """Weighted towards commits: near one of the reference's commit times (inside or just after the
    transaction), right after a commit is seen, or (one time in four) anywhere in the run."""
    commits = timeline.commits or (timeline.end_s,)
    roll = rng.random()
    if roll < 0.4 and not restart:
        moment = rng.choice(commits) + rng.uniform(-0.004, 0.002)
        return KillPlan(at_s=max(0.0, moment), kind="near a commit")
    if roll < 0.75:
        count = rng.randint(1, 3 if restart else len(commits))
        extra = rng.choice((0.0, rng.uniform(0.0, 0.003)))
        return KillPlan(after_commits=count, extra_s=extra, kind="after a commit")
    # From a little before the first commit: an export renders and writes its file in that time.
    return KillPlan(at_s=rng.uniform(max(0.0, commits[0] - 0.3), timeline.end_s), kind="uniform")


@dataclass(slots=True)
class Attempt:
    killed: bool
    returncode: int
    stdout: str
    stderr: str
    commits: list[float]
    elapsed_s: float


def child_command(db: Database, args: Sequence[str], *, random_ids: bool = False) -> list[str]:
    options = json.dumps({"chunk": CHUNK_PAYMENTS, "random_ids": random_ids})
    return [sys.executable, "-c", CHILD_CODE, json.dumps(["--db", db.url, *args]), options]


def attempt(
    db: Database, args: Sequence[str], poller: Poller, plan: KillPlan | None, logs: Path, *, random_ids: bool = False
) -> Attempt:
    """Start the command in a child; kill it as planned (or watch it finish, noting its commits)."""
    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs / "child.out", logs / "child.err"
    env = {k: v for k, v in os.environ.items() if k != "YIKATONG_DB"}
    commits: list[float] = []
    last = poller.signature()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.monotonic()
        child = subprocess.Popen(child_command(db, args, random_ids=random_ids), stdout=out, stderr=err, env=env)
        killed = False
        kill_at = plan.at_s if plan is not None and plan.at_s is not None else None
        try:
            while child.poll() is None:
                elapsed = time.monotonic() - started
                if elapsed > COMMAND_TIMEOUT_S:
                    raise HarnessFailure(f"{' '.join(args)}: still running after {COMMAND_TIMEOUT_S} s")
                if kill_at is not None and elapsed >= kill_at:
                    killed = _kill(child)
                    break
                if kill_at is None and (plan is None or plan.after_commits):
                    now = poller.signature()
                    if now != last:
                        last = now
                        commits.append(elapsed)
                        if plan is not None and len(commits) >= plan.after_commits:
                            if plan.extra_s:
                                time.sleep(plan.extra_s)
                            killed = _kill(child)
                            break
                time.sleep(POLL_S)
            returncode = child.wait(timeout=COMMAND_TIMEOUT_S)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    elapsed = time.monotonic() - started
    killed = killed and returncode == -signal.SIGKILL
    stdout = out_path.read_text(encoding="utf-8", errors="replace")
    stderr = err_path.read_text(encoding="utf-8", errors="replace")
    return Attempt(killed, returncode, stdout, stderr, commits, elapsed)


def _kill(child: subprocess.Popen[bytes]) -> bool:
    if child.poll() is not None:
        return False  # it finished first: not a kill point
    os.kill(child.pid, signal.SIGKILL)
    return True


def run_clean(db: Database, args: Sequence[str], logs: Path, *, random_ids: bool = False) -> tuple[Attempt, Timeline]:
    """The command uninterrupted; its timeline of commits."""
    poller = Poller(db)
    try:
        done = attempt(db, args, poller, None, logs, random_ids=random_ids)
    finally:
        poller.close()
    _require_success(args, done)
    return done, Timeline(tuple(done.commits), done.elapsed_s)


def _require_success(args: Sequence[str], done: Attempt) -> None:
    if done.returncode != 0 or "Traceback" in done.stderr:
        raise HarnessFailure(
            f"`yikatong {' '.join(args)}` exited {done.returncode} (a completed run must exit 0, without a "
            f"traceback, however many kills came before it):\n{done.stderr[-3000:]}"
        )


@dataclass(slots=True)
class Recovery:
    """One command driven to completion through kills."""

    kills: int = 0
    phases: Counter[str] = field(default_factory=Counter)
    plans: Counter[str] = field(default_factory=Counter)
    starts: int = 0
    final: Attempt | None = None


def run_with_kills(
    db: Database,
    args: Sequence[str],
    timeline: Timeline,
    kills_wanted: int,
    rng: random.Random,
    logs: Path,
    phase_of: Callable[[Counter[str]], str],
    *,
    random_ids: bool = False,
    choose: Callable[..., KillPlan] | None = None,
) -> Recovery:
    """Start the command, kill it, restart it… `kills_wanted` kills, then let it finish."""
    recovery = Recovery()
    poller = Poller(db)
    try:
        start_position = poller.signature()[0]
        while True:
            if recovery.starts >= ATTEMPTS_MAX:
                raise HarnessFailure(f"`yikatong {' '.join(args)}`: not complete after {ATTEMPTS_MAX} starts")
            plan = None
            if recovery.kills < kills_wanted:
                plan = (choose or choose_plan)(rng, timeline, restart=recovery.starts > 0)
            recovery.starts += 1
            done = attempt(db, args, poller, plan, logs, random_ids=random_ids)
            if done.killed:
                recovery.kills += 1
                recovery.plans[plan.kind if plan else "?"] += 1
                recovery.phases[phase_of(poller.topics_since(start_position))] += 1
                continue
            _require_success(args, done)  # finished, killed or not: the recovery is complete
            recovery.final = done
            break
    finally:
        poller.close()
    return recovery


def month_end_phase(topics: Counter[str]) -> str:
    if topics[SEALED]:
        return "month-end sealed: read models catching up"
    if topics[RUN_COMPLETED]:
        return "month-end recorded, not yet sealed"
    if topics[ACCRUED]:
        return "month-end partly written"
    return "before the first chunk committed"


def seal_phase(topics: Counter[str]) -> str:
    return "backlog sealed: read models catching up" if topics[SEALED] else "before the seal committed"


def export_phase(topics: Counter[str]) -> str:
    return "export recorded" if topics[EXPORTED] else "before the export was recorded"


def import_phase(topics: Counter[str]) -> str:
    return "results recorded" if topics[IMPORTED] else "before the results were recorded"


# --- invariants ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PaymentFact:
    # id number, programme, period, the payment it re-issues (""), the adjustment's number ("0": the
    # period's payment; "n": its n-th adjustment, issue 14)
    key: tuple[str, str, str, str, str]
    amount_fen: int
    batch_id: str  # "" for a recovery due (a negative adjustment: in no batch)


@dataclass(slots=True)
class BatchFact:
    listed: tuple[str, ...]
    count: int
    total_fen: int
    status: str
    approvals: int
    approved_by: str
    results: dict[str, tuple[str, str]]
    result_events_per_file: Counter[str]


@dataclass(slots=True)
class LedgerFacts:
    payments: dict[str, PaymentFact]
    batches: dict[str, BatchFact]
    registered: list[str]
    read_models: dict[str, dict[str, dict[str, Any]]]
    bank_files: set[str]
    recoveries: dict[str, PaymentFact] = field(default_factory=dict)  # Recovery.Due id → its fact

    def held(self) -> dict[tuple[str, str, str], int]:
        """Σ per enrolment × period of its payment and adjustments, minus its recoveries (re-issues aside)."""
        sums: dict[tuple[str, str, str], int] = {}
        for fact in self.payments.values():
            if not fact.key[3]:
                sums[fact.key[:3]] = sums.get(fact.key[:3], 0) + fact.amount_fen
        for fact in self.recoveries.values():
            sums[fact.key[:3]] = sums.get(fact.key[:3], 0) - fact.amount_fen
        return sums


def ledger_facts(db: Database) -> LedgerFacts:
    from domain.disbursement import BATCH_REGISTER_ID
    from ledger.bootstrap import open_apps

    registry, disbursement = open_apps(db)
    try:
        payments = _payment_facts(disbursement)
        recoveries = _payment_facts(disbursement, RECOVERY_DUE)
        register = disbursement.find(BATCH_REGISTER_ID)
        registered = list(register.batch_ids) if register is not None else []
        batches = {b: _batch_fact(disbursement, UUID(b)) for b in dict.fromkeys(registered)}
        bank_files = {b.hex for b in (bank_file_id(sha) for f in batches.values() for sha in f.result_events_per_file)}
        found_files = {h for h in bank_files if disbursement.find(UUID(h)) is not None}
    finally:
        registry.close()
        disbursement.close()
    return LedgerFacts(payments, batches, registered, read_model_rows(db), found_files, recoveries)


def _payment_facts(disbursement: Any, topic: str = ACCRUED) -> dict[str, PaymentFact]:
    facts: dict[str, PaymentFact] = {}
    start = 1
    while True:
        page = disbursement.recorder.select_notifications(start=start, limit=20_000, topics=[topic])
        if not page:
            return facts
        for n in page:
            data = disbursement.payload(n.state)
            key = (
                data["id_number"],
                data["programme"],
                data["period"],
                data.get("reissue_of", ""),
                str(data.get("adjustment", 0)),
            )
            # The bank line: less what recoveries offset (issue 14); a payment offset whole is in no batch.
            net = data["amount_fen"] - data.get("offset_fen", 0)
            facts[n.originator_id.hex] = PaymentFact(key, net, data.get("batch_id", ""))
        start = page[-1].id + 1


def _batch_fact(disbursement: Any, batch_id: UUID) -> BatchFact:
    from domain.disbursement import Batch

    state: Any = None
    approvals = 0
    per_file: Counter[str] = Counter()
    for domain_event in disbursement.repository.event_store.get(batch_id):
        if isinstance(domain_event, Batch.Approved):  # type: ignore[attr-defined]
            approvals += 1
        if isinstance(domain_event, Batch.ResultsRecorded):  # type: ignore[attr-defined]
            per_file[domain_event.bank_file] += 1
        state = domain_event.mutate(state)
    return BatchFact(
        listed=tuple(state.payment_ids),
        count=state.count,
        total_fen=state.total_fen,
        status=state.status,
        approvals=approvals,
        approved_by=state.approved_by,
        results=dict(state.results),
        result_events_per_file=per_file,
    )


def read_model_rows(db: Database) -> dict[str, dict[str, dict[str, Any]]]:
    from projections.read_models import all_read_model_rows, open_engine, read_models_exist

    with open_engine(db) as engine, engine.connect() as conn:
        if not read_models_exist(conn):
            return {}
        rows = all_read_model_rows(conn)
    keyed: dict[str, dict[str, dict[str, Any]]] = {}
    for table, table_rows in rows.items():
        if table.endswith("tracking"):
            continue
        keyed[table] = {_row_key(r): r for r in table_rows}
    return keyed


def _row_key(row: dict[str, Any]) -> str:
    for column in ("offset_id", "recovery_id", "payment_id", "batch_id"):
        if column in row:
            return str(row[column])
    return "/".join(str(row[c]) for c in ("region", "programme", "period"))


@dataclass(slots=True)
class Findings:
    payments: int = 0
    batches: int = 0
    duplicates: int = 0
    skipped: int = 0
    mismatches: int = 0
    examples: list[str] = field(default_factory=list)

    def mismatch(self, line: str) -> None:
        self.mismatches += 1
        if len(self.examples) < EXAMPLES_MAX:
            self.examples.append(line)

    @property
    def clean(self) -> bool:
        return not (self.duplicates or self.skipped or self.mismatches)

    def counts(self) -> dict[str, int]:
        return {"payments": self.payments, "duplicates": self.duplicates, "skipped": self.skipped,
                "mismatches": self.mismatches}  # fmt: skip


def check_store(db: Database, reference: Database | None = None, exports_dir: Path | None = None) -> Findings:
    """Every invariant of issue 7 for `db`, and, given a `reference`, agreement with its clean run."""
    mine = ledger_facts(db)
    clean = ledger_facts(reference) if reference is not None else None
    findings = Findings(payments=len(mine.payments), batches=len(mine.batches))
    _check_payments(mine, clean, findings)
    _check_payments(
        LedgerFacts(mine.recoveries, {}, [], {}, set()),
        LedgerFacts(clean.recoveries, {}, [], {}, set()) if clean is not None else None,
        findings,
    )  # recoveries due (issue 14): the same natural-key checks, in no batch
    _check_batches(mine, clean, findings)
    _check_read_models(db, mine, clean, findings)
    _check_logs_and_exports(db, exports_dir, findings)
    return findings


def _named(key: tuple[str, ...]) -> str:
    """id number/programme/period, and #n for the period's n-th adjustment."""
    return "/".join(key[:3]) + (f" #{key[4]}" if len(key) > 4 and key[4] != "0" else "")


def _check_payments(mine: LedgerFacts, clean: LedgerFacts | None, findings: Findings) -> None:
    by_key: dict[tuple[str, str, str, str], list[str]] = {}
    for pid, fact in mine.payments.items():
        by_key.setdefault(fact.key, []).append(pid)
    for key, pids in by_key.items():
        if len(pids) > 1:
            findings.duplicates += len(pids) - 1
            if len(findings.examples) < EXAMPLES_MAX:
                findings.examples.append(f"paid {len(pids)} times: {_named(key)} ({', '.join(pids)})")
    if clean is None:
        return
    clean_by_key = {fact.key: (pid, fact) for pid, fact in clean.payments.items()}
    for key, pids in by_key.items():
        expected = clean_by_key.get(key)
        if expected is None:
            findings.mismatch(f"paid, though the clean run did not pay it: {_named(key)}")
            continue
        clean_pid, clean_fact = expected
        for pid in pids:
            if pid != clean_pid:
                findings.mismatch(f"{_named(key)}: payment id {pid}, the clean run's is {clean_pid}")
            if mine.payments[pid].amount_fen != clean_fact.amount_fen:
                amount_fen = mine.payments[pid].amount_fen
                findings.mismatch(f"{_named(key)}: {amount_fen} fen, the clean run paid {clean_fact.amount_fen}")
    for key in clean_by_key.keys() - by_key.keys():
        findings.skipped += 1
        if len(findings.examples) < EXAMPLES_MAX:
            findings.examples.append(f"skipped: {_named(key)} was paid by the clean run, not here")


def _check_batches(mine: LedgerFacts, clean: LedgerFacts | None, findings: Findings) -> None:
    for batch_hex, times in Counter(mine.registered).items():
        if times > 1:
            findings.mismatch(f"batch {batch_hex} registered {times} times")
    listing: dict[str, list[str]] = {}
    for batch_hex, batch in mine.batches.items():
        for pid in batch.listed:
            listing.setdefault(pid, []).append(batch_hex)
        missing = [pid for pid in batch.listed if pid not in mine.payments]
        if missing:
            findings.mismatch(f"batch {batch_hex} lists {len(missing)} payments not in the log, e.g. {missing[0]}")
        listed_fen = sum(mine.payments[pid].amount_fen for pid in batch.listed if pid in mine.payments)
        if (batch.count, batch.total_fen) != (len(batch.listed), listed_fen):
            findings.mismatch(
                f"batch {batch_hex}: {batch.count} payments, {batch.total_fen} fen; its payments number "
                f"{len(batch.listed)} and sum to {listed_fen} fen"
            )
        if batch.approvals > 1:
            findings.mismatch(f"batch {batch_hex} approved {batch.approvals} times")
        for sha, events in batch.result_events_per_file.items():
            if events > 1:
                findings.mismatch(f"batch {batch_hex}: results of bank file {sha[:12]} recorded {events} times")
            if bank_file_id(sha).hex not in mine.bank_files:
                findings.mismatch(f"batch {batch_hex}: results of bank file {sha[:12]}, which was never recorded")
    for pid, batches in listing.items():
        if len(batches) > 1:
            findings.duplicates += len(batches) - 1
            if len(findings.examples) < EXAMPLES_MAX:
                findings.examples.append(f"payment {pid} in {len(batches)} batch listings: {', '.join(batches)}")
    for pid, fact in mine.payments.items():
        if pid not in listing and fact.batch_id == "":
            continue  # settled whole by offset: no bank line (docs/entitlement.md "Recoveries")
        if pid not in listing:
            findings.mismatch(f"payment {pid} is in no batch")
        elif fact.batch_id not in listing[pid]:
            findings.mismatch(f"payment {pid} says batch {fact.batch_id}, is listed in {listing[pid][0]}")
    if clean is None:
        return
    for batch_hex in mine.batches.keys() | clean.batches.keys():
        ours, theirs = mine.batches.get(batch_hex), clean.batches.get(batch_hex)
        if ours is None or theirs is None:
            findings.mismatch(
                f"batch {batch_hex}: {'only in the clean run' if ours is None else 'not in the clean run'}"
            )
            continue
        shape = (ours.count, ours.total_fen, ours.status, ours.approved_by, ours.results)
        if shape != (theirs.count, theirs.total_fen, theirs.status, theirs.approved_by, theirs.results):
            findings.mismatch(
                f"batch {batch_hex}: {ours.count} payments, {ours.total_fen} fen, {ours.status}, "
                f"{len(ours.results)} results; the clean run: {theirs.count}, {theirs.total_fen} fen, "
                f"{theirs.status}, {len(theirs.results)} results"
            )


def _check_read_models(db: Database, mine: LedgerFacts, clean: LedgerFacts | None, findings: Findings) -> None:
    from ledger.audit import compare_with_rebuild
    from projections.read_models import open_engine, tracked_position

    differences = compare_with_rebuild(db)
    if differences is None:
        findings.mismatch("no read models")
    for line in differences or ():
        findings.mismatch(f"read models differ from a rebuild: {line}")
    with open_engine(db) as engine, engine.connect() as conn:
        position = tracked_position(conn)
    poller = Poller(db)
    try:
        end = poller.signature()[0]
    finally:
        poller.close()
    if position != end:
        findings.mismatch(f"read models at position {position}, the log ends at {end}")
    if clean is None:
        return
    for table in sorted(mine.read_models.keys() | clean.read_models.keys()):
        ours, theirs = mine.read_models.get(table, {}), clean.read_models.get(table, {})
        for key in sorted(ours.keys() | theirs.keys()):
            if ours.get(key) != theirs.get(key):
                findings.mismatch(f"{table} {key}: {ours.get(key)} here, {theirs.get(key)} in the clean run")


def _check_logs_and_exports(db: Database, exports_dir: Path | None, findings: Findings) -> None:
    from ledger.audit import policy_history, verify_exports, verify_log
    from ledger.bootstrap import open_apps

    registry, disbursement = open_apps(db)
    try:
        for app in (registry, disbursement):
            log = verify_log(app)
            for failure in log.failures:
                findings.mismatch(f"log not intact: {log.describe(failure)}")
        exports = verify_exports(disbursement, policy_history(registry), exports_dir)
        for line in exports.failures:
            findings.mismatch(f"export does not regenerate: {line}")
        if exports.files_absent:
            findings.mismatch(f"{exports.files_absent} recorded export files are not on disk")
    finally:
        registry.close()
        disbursement.close()


# --- an adjustment run (issue 14): a retroactive rise re-prices every period already paid ----------------

ADJUSTED_MONTH = "2017-04"  # the run after the rise is loaded; 2017-03's run paid January–March first


def write_raised_policy(folder: Path) -> Path:
    """The shipped policy with urban dibao 555 → 580 元 a month and rural dibao 3906 → 4206 元 a year from
    2017-01-01 (a rise announced in April and back-dated, 003: "今年…提高到"): every standard derived from
    them (特困 1.3×, 三民 +220, 精简退职 …) rises too, so their `expect` figures are dropped."""
    import re

    text = POLICY.read_text(encoding="utf-8")
    raised = text.replace('amount = "555.00", per = "month"', 'amount = "580.00", per = "month"')
    raised = raised.replace('amount = "3906.00", per = "year"', 'amount = "4206.00", per = "year"')
    assert raised.count("580.00") > text.count("580.00") and "4206.00" in raised
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ulanqab-2017-raised.toml"
    path.write_text(re.sub(r', expect = "[0-9.]+"', "", raised), encoding="utf-8")
    return path


def adjustment_stores(db: Database, rows: int, folder: Path) -> tuple[Database, Database]:
    """`db` and a clean reference, each: the synthetic roster, 2017-03 run, the raised policy loaded (by
    the CLI, as an office does it); and a third ledger that had the raised policy from the start and ran
    2017-04: what every period is due. Returns (reference, due)."""
    logs = folder / "logs"
    policy = write_raised_policy(folder)
    reference, due = derived(db, "ref"), derived(db, "due")
    for each in (db, reference):
        build_ledger(each, rows)
        run_clean(each, ["--as", "clerk", "run", "2017-03", "--json"], logs)
        run_clean(each, ["--as", "clerk", "policy", "load", str(policy)], logs)
    build_ledger(due, rows, policy_text=policy.read_text(encoding="utf-8"))
    run_clean(due, ["--as", "clerk", "run", ADJUSTED_MONTH, "--json"], logs)
    return reference, due


def check_adjusted(db: Database, due: Database) -> list[str]:
    """After the adjustment run: every enrolment × period holds what the raised policy prices (the `due`
    ledger's one payment), by its first payment and at most one adjustment."""
    mine, owed = ledger_facts(db), ledger_facts(due)
    held, expected = mine.held(), owed.held()
    problems = [
        f"{'/'.join(key)}: holds {held.get(key)} fen, due {fen}"
        for key, fen in sorted(expected.items())
        if held.get(key) != fen
    ]
    problems += [f"{'/'.join(key)}: accrued, not due" for key in sorted(held.keys() - expected.keys())]
    numbers = Counter(f.key[:3] for f in (*mine.payments.values(), *mine.recoveries.values()) if f.key[4] != "0")
    problems += [f"{'/'.join(key)}: {n} adjustments, one expected" for key, n in sorted(numbers.items()) if n > 1]
    return problems[:EXAMPLES_MAX]


def adjustment_count(db: Database) -> int:
    facts = ledger_facts(db)
    return sum(1 for f in (*facts.payments.values(), *facts.recoveries.values()) if f.key[4] != "0")


# --- episodes: month-end, export, approve, bank import --------------------------------------------------


def run_months() -> Iterator[str]:
    """2017-01, 2017-04, 2017-07…: every run pays a quarter (and the monthly arrears), ≈ 1–1.5 × the roster."""
    month = Month(2017, 1)
    while True:
        yield str(month)
        month = month.plus(3)


def largest_batch(db: Database, run_month: str) -> str:
    from ledger.bootstrap import open_apps

    registry, disbursement = open_apps(db)
    try:
        batches = [b for b in disbursement.batches() if b.run_month == run_month]
        return max(batches, key=lambda b: (b.count, b.id.hex)).id.hex
    finally:
        registry.close()
        disbursement.close()


def write_bank_answer(reference: Database, batch_hex: str, run_month: str, folder: Path) -> tuple[Path, list[str]]:
    """A pain.002 for the whole batch: payments whose id ends in 0 returned (AC04), the rest paid.
    Returns the file and the id numbers of the returned payees."""
    from exporters.pain002 import render_pain002
    from ledger.bootstrap import open_apps

    registry, disbursement = open_apps(reference)
    try:
        batch = disbursement.batch_by_id(batch_hex)
        views = disbursement.payment_views(batch.payment_ids)
    finally:
        registry.close()
        disbursement.close()
    outcomes = []
    returned = []
    for pid in batch.payment_ids:
        if pid.endswith("0"):
            outcomes.append((pid, "RJCT", "AC04", views[pid].amount_fen))
            returned.append(views[pid].id_number)
        else:
            outcomes.append((pid, "ACSC", "", views[pid].amount_fen))
    message = f"YKT{batch_hex[:28]}"
    month = Month.parse(run_month)
    created = datetime(month.year, month.month, 6, 10, tzinfo=UTC)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{message}-{run_month}.pain002.xml"
    path.write_bytes(render_pain002(message, message, outcomes, created_at=created))
    return path, returned


def approve(db: Database, batch_hex: str) -> None:
    """The checker's approval: nothing to kill in it that the export and the import do not cover."""
    from ledger.bootstrap import open_apps
    from ledger.exports import approve_batch

    registry, disbursement = open_apps(db)
    try:
        approve_batch(disbursement, batch_hex, "checker")
    finally:
        registry.close()
        disbursement.close()


def correct_accounts(db: Database, id_numbers: Sequence[str]) -> None:
    """New accounts for the returned payees, so the next month-end re-issues their payments (补发)."""
    from ledger.bootstrap import open_apps

    registry, disbursement = open_apps(db)
    try:
        for n, id_number in enumerate(sorted(set(id_numbers))):
            registry.set_account(
                id_number=id_number,
                bank_code="402191000099",
                account=f"62170020{n:011d}",
                reason="换卡 AC04",
                actor="clerk",
            )
    finally:
        registry.close()
        disbursement.close()


@dataclass(slots=True)
class KillFigures:
    store: str
    seed: int
    kill_points_wanted: int
    payments_wanted: int
    kill_points: int = 0
    kills_by_command: Counter[str] = field(default_factory=Counter)
    kills_by_phase: Counter[str] = field(default_factory=Counter)
    kills_by_plan: Counter[str] = field(default_factory=Counter)
    child_starts: int = 0
    month_ends: list[int] = field(default_factory=list)  # payments accrued by each month-end
    stores: int = 0
    checks: int = 0
    payments_checked: int = 0
    duplicates: int = 0
    skipped: int = 0
    mismatches: int = 0
    examples: list[str] = field(default_factory=list)
    temporary_files_left: int = 0
    seconds: float = 0.0

    def add(self, command: str, recovery: Recovery) -> None:
        self.kill_points += recovery.kills
        self.kills_by_command[command] += recovery.kills
        self.kills_by_phase.update(recovery.phases)
        self.kills_by_plan.update(recovery.plans)
        self.child_starts += recovery.starts

    def record(self, findings: Findings) -> None:
        self.checks += 1
        self.payments_checked = max(self.payments_checked, findings.payments)
        self.duplicates += findings.duplicates
        self.skipped += findings.skipped
        self.mismatches += findings.mismatches
        self.examples.extend(findings.examples[: EXAMPLES_MAX - len(self.examples)])

    def clean(self) -> bool:
        return not (self.duplicates or self.skipped or self.mismatches or self.temporary_files_left)

    def line(self) -> str:
        sizes = f"{min(self.month_ends)}–{max(self.month_ends)}" if self.month_ends else "0"
        return (
            f"{self.store}: {self.kill_points} kill points survived "
            f"({', '.join(f'{k} {v}' for k, v in sorted(self.kills_by_command.items()))}) "
            f"over {len(self.month_ends)} month-ends of {sizes} payments on {self.stores} stores, "
            f"{self.child_starts} child starts, {self.checks} checks; "
            f"duplicates {self.duplicates}, skipped {self.skipped}, mismatches {self.mismatches}; "
            f"{self.temporary_files_left} temporary export files left by kills "
            f"[{self.seconds:.0f} s, seed {self.seed}]"
        )

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("kills_by_command", "kills_by_phase", "kills_by_plan"):
            data[key] = dict(getattr(self, key))
        return data


class KillHarness:
    """Episodes of month-end, export, approve and bank import under kill -9, on fresh pairs of stores."""

    def __init__(self, db: Database, work: Path, *, kill_points: int, payments: int, seed: int) -> None:
        self.db = db
        self.work = work
        self.rng = random.Random(seed)
        self.rows = payments + payments // 30 + 1  # January pays ≈ 98 % of the roster
        self.figures = KillFigures(db.kind, seed, kill_points, payments)
        self.temporary_files: dict[Path, int] = {}

    def run(self) -> KillFigures:
        started = time.monotonic()
        try:
            while self.figures.kill_points < self.figures.kill_points_wanted and self.figures.clean():
                self._store_pair(self.figures.stores)
                self.figures.stores += 1
        finally:
            self.figures.seconds = time.monotonic() - started
        return self.figures

    def _store_pair(self, n: int) -> None:
        store = self.db if n == 0 else derived(self.db, f"k{n}")
        reference = derived(self.db, f"ref{n}")
        for db in (store, reference):
            build_ledger(db, self.rows)
        folder = self.work / f"pair{n}"
        months = run_months()
        for _ in range(MONTHS_PER_STORE):
            if self.figures.kill_points >= self.figures.kill_points_wanted:
                return
            if not self._episode(store, reference, next(months), folder):
                return

    def _episode(self, store: Database, reference: Database, month: str, folder: Path) -> bool:
        """One run month under kills; False once a check has found something."""
        rng = self.rng
        logs = folder / "logs"
        done, timeline = run_clean(reference, ["--as", "clerk", "run", month, "--json"], logs)
        self.figures.month_ends.append(json.loads(done.stdout)["payments"])
        recovery = run_with_kills(
            store, ["--as", "clerk", "run", month, "--json"], timeline, rng.randint(3, 6), rng, logs, month_end_phase
        )
        self.figures.add("month-end", recovery)
        if not self._check(store, reference, folder / "store-exports"):
            return False

        batch_hex = largest_batch(reference, month)
        export = ["--as", "maker", "batch", "export", batch_hex, "--format", "pain001", "--out"]
        _, timeline = run_clean(reference, [*export, str(folder / "reference-exports")], logs)
        recovery = run_with_kills(
            store, [*export, str(folder / "store-exports")], timeline, rng.randint(1, 2), rng, logs, export_phase
        )
        self.figures.add("export", recovery)
        if not self._check(store, reference, folder / "store-exports"):
            return False

        for db in (store, reference):
            approve(db, batch_hex)
        answer, returned = write_bank_answer(reference, batch_hex, month, folder / "bank")
        bank = ["--as", "clerk", "bank", "import", str(answer), "--json"]
        _, timeline = run_clean(reference, bank, logs)
        recovery = run_with_kills(store, bank, timeline, rng.randint(1, 2), rng, logs, import_phase)
        self.figures.add("bank import", recovery)
        for db in (store, reference):
            correct_accounts(db, returned)
        return self._check(store, reference, folder / "store-exports")

    def _check(self, store: Database, reference: Database, exports: Path) -> bool:
        findings = check_store(store, reference, exports if exports.exists() else None)
        self.figures.record(findings)
        if exports.exists():
            # write_atomically's temporary files: a kill between writing and renaming leaves one behind,
            # which the restarted export must remove.
            self.temporary_files[exports] = sum(1 for p in exports.iterdir() if p.name.startswith("."))
            self.figures.temporary_files_left = sum(self.temporary_files.values())
        return findings.clean


def kill_seed() -> int:
    return int(KILL_SEED) if KILL_SEED else random.randrange(2**32)


RECORDED: dict[str, dict[str, Any]] = {}  # this session's figures, printed by conftest.py's summary


def write_figures(cache_dir: Path, name: str, figures: dict[str, Any]) -> Path:
    """Figures for `make soak`'s summary: kept for the end-of-run summary and written as one JSON file
    per test and store under .pytest_cache."""
    RECORDED[name] = figures
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{name}.json"
    path.write_text(json.dumps(figures, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    return path


# --- concurrent operators: workers started with multiprocessing's spawn ----------------------------------

BARRIER_TIMEOUT_S = 300  # the machine is shared; a slow start is not a failure
JOIN_TIMEOUT_S = 600


def outcome_of(action: Callable[[], Any]) -> tuple[str, Any]:
    """('ok', what the action returned), ('refused', 'Rule: message') for a broken rule (which the CLI
    prints as one line with exit 1), or ('traceback', text) for anything else: the one outcome an
    operator must never see."""
    try:
        result = action()
    except RuleBroken as e:
        return "refused", f"{e.rule}: {e}"
    except Exception:
        return "traceback", traceback.format_exc()
    return "ok", result


def month_end_worker(url: str, month: str, chunk: int, scope: str, barrier: Any, results: Any) -> None:
    """What `yikatong run MONTH [--region SCOPE]` does, with every process released at the same moment."""
    try:
        import ledger.disbursement as month_end
        from ledger.bootstrap import open_service

        month_end.PAYMENTS_PER_CHUNK = chunk
        service = open_service(database_from_url(url))
        snapshot = service.registry.read_registry()
        barrier.wait(timeout=BARRIER_TIMEOUT_S)
        figures: dict[str, int] = {}

        def run() -> None:
            done = service.month_end(Month.parse(month), actor=f"p{os.getpid()}", region=scope, snapshot=snapshot)
            summary = done.summary
            figures.update(
                payments=summary.payments,
                conflicts=summary.conflicts,
                already=summary.already_accrued,
                adjustments=summary.adjustments,
                recoveries=summary.recoveries,
            )

        status, detail = outcome_of(run)
        results.put((status, detail, figures))
    except BaseException:
        barrier.abort()
        results.put(("traceback", traceback.format_exc(), {}))


def _pause_after(function: Callable[..., Any], barrier: Any) -> Callable[..., Any]:
    """`function`, then wait for the other process: both decide on the same version of the batch."""

    def paused(*args: Any, **kwargs: Any) -> Any:
        found = function(*args, **kwargs)
        barrier.wait(timeout=BARRIER_TIMEOUT_S)
        return found

    return paused


def export_approve_worker(
    url: str, batch_hex: str, out: str, exporter: str, approver: str, interleave: bool, barrier: Any, results: Any
) -> None:
    """Export the batch as `exporter`, wait for the other, approve it as `approver`.

    With `interleave`, each process loads the batch for its approval, then waits for the other to have
    loaded it too, so both decide on the same version and exactly one save can land.
    """
    try:
        from ledger.bootstrap import open_apps
        from ledger.exports import approve_batch, export_batch

        registry, disbursement = open_apps(database_from_url(url))
        policy = registry.policy()
        barrier.wait(timeout=BARRIER_TIMEOUT_S)
        folder = Path(out)
        exported = outcome_of(
            lambda: export_batch(disbursement, policy, batch_hex, fmt="pain001", out=folder, actor=exporter)[0].status
        )
        barrier.wait(timeout=BARRIER_TIMEOUT_S)
        if interleave:
            disbursement.batch = _pause_after(disbursement.batch, barrier)  # type: ignore[method-assign]
        approved = outcome_of(lambda: approve_batch(disbursement, batch_hex, approver).approved_by)
        results.put((exporter, approver, exported, approved))
    except BaseException:
        barrier.abort()
        results.put((exporter, approver, ("traceback", traceback.format_exc()), ("traceback", "")))


def bank_import_worker(url: str, path: str, actor: str, interleave: bool, barrier: Any, results: Any) -> None:
    """`yikatong bank import FILE`; with `interleave`, both processes load the batch before either saves."""
    try:
        from ledger.bootstrap import open_apps
        from ledger.exports import import_bank_file

        _, disbursement = open_apps(database_from_url(url))
        barrier.wait(timeout=BARRIER_TIMEOUT_S)
        if interleave:
            disbursement.batch_by_id = _pause_after(disbursement.batch_by_id, barrier)  # type: ignore[method-assign]
        outcome = outcome_of(lambda: _imported(import_bank_file(disbursement, Path(path), actor=actor)))
        results.put((path, outcome))
    except BaseException:
        barrier.abort()
        results.put((path, ("traceback", traceback.format_exc())))


def _imported(outcome: Any) -> dict[str, Any]:
    return {"already_imported": outcome.already_imported, "paid": outcome.paid, "returned": outcome.returned}


def start_workers(target: Callable[..., None], argument_lists: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Start one spawned process per argument tuple (each gets the barrier and the result queue last)
    and collect one result from each."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(argument_lists))
    results = context.Queue()
    workers = [context.Process(target=target, args=(*a, barrier, results)) for a in argument_lists]
    for w in workers:
        w.start()
    collected = [results.get(timeout=JOIN_TIMEOUT_S) for _ in workers]
    for w in workers:
        w.join(timeout=JOIN_TIMEOUT_S)
        if w.is_alive():
            w.kill()
            raise HarnessFailure(f"worker {w.pid} did not finish within {JOIN_TIMEOUT_S} s")
        if w.exitcode != 0:
            raise HarnessFailure(f"worker {w.pid} exited {w.exitcode}")
    return collected
