"""Standalone month-end benchmark: `python -m benchmarks.month_end --payments N --db URL`.

1. Loads the shipped policy and N synthetic enrolments (one payee each) into an empty store.
2. Times the real command, `yikatong --db URL run 2017-01 --json`, in a child process, so the figure
   includes start-up, reading the registry, writing every payment and catching up the read models, and
   the child's peak RSS is exact. The command reports its phases: the month-end itself (`month_end_s`:
   read the registry, accrue, write every payment), sealing the new events into the audit chain
   (`seal_s`) and the read models' catch-up (`projections_s`).
3. Counts stored events per payment.
4. Measures the storage floor: the same payment rows (read back from the store) bulk-inserted into a
   scratch table of the same shape in the same database with one `executemany` in one transaction.
Prints payments/s, events per payment, peak RSS and the run's time as a multiple of the floor.

With `--operations`, every other big command then runs on the same ledger, each as the real command in
a child process, timed with its peak RSS: a second month-end (`run 2017-02`), `projections rebuild`,
`audit verify`, the largest batch's pain.001 export, its approval and submission, and the import of a
pain.002 answering every payment of it (generated here, as the bank would send it).

With `--retroactive`, February and March run, a policy raising urban and rural dibao from January (and
everything derived from them) is loaded, and the run that accrues one adjustment per enrolment and period
is timed (issue 14: at least half the plain month-end's payments/s).

Targets (issue 3), N = 1 000 000 on 2 cores: ≤ 60 s SQLite, ≤ 90 s PostgreSQL, ≤ 5× the floor,
≤ 1.1 events per payment, peak RSS ≤ 2 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ledger.audit import record_checkpoint
from ledger.bootstrap import database_from_url, open_apps
from ledger.demo import shipped_policy_text
from ledger.progress import progress
from ledger.storage import Database, ensure_schema, postgres_conninfo
from ledger.synthetic import synthetic_rows

# A child's peak RSS, measured from a small process: a child forked straight from this one would report at
# least this process's own peak (Linux carries the parent's high-water mark across fork and exec), and
# this process holds the generated roster. The wrapper starts fresh, forks the command and reports it.
PEAK_RSS_WRAPPER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
sys.stderr.write(f"\\nbenchmark-peak-rss-kb {usage.ru_maxrss}\\n")
sys.exit(os.waitstatus_to_exitcode(status))
"""
PEAK_MARK = "benchmark-peak-rss-kb "
IMPORT_CHUNK = 100_000  # rows generated and imported at a time, to bound the generator's memory
FLOOR_PAGE = 100_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=100_000, help="enrolments to generate (one payment each)")
    parser.add_argument("--db", default="sqlite:///bench.db", help="an EMPTY store: sqlite:///PATH or postgresql://…")
    parser.add_argument("--fresh", action="store_true", help="delete the SQLite file / drop the ?schema= first")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--operations", action="store_true", help="then time every other big command on it")
    parser.add_argument(
        "--retroactive",
        action="store_true",
        help="then run February and March, load a policy raising the standards from January and time the run "
        "that accrues one adjustment per enrolment and period (issue 14)",
    )
    args = parser.parse_args(argv)
    db = database_from_url(args.db)
    if args.fresh:
        _fresh(db)
    figures = measure(db, args.payments)
    if args.retroactive:
        figures.update(measure_retroactive(db, figures))
    if args.operations:
        figures.update(measure_operations(db))
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:32} {value}")
    return 0


def measure(db: Database, count: int) -> dict[str, Any]:
    registry, disbursement = open_apps(db)
    if registry.recorder.max_notification_id():
        raise SystemExit(f"{db.url} is not empty; pass --fresh or another database")
    registry.load_policy(shipped_policy_text(), "ulanqab-2017.toml", "bench")
    started = time.perf_counter()
    rows = tuple(synthetic_rows(count))
    with progress("importing enrolments", count) as advance:
        for start in range(0, count, IMPORT_CHUNK):
            registry.import_roster(rows[start : start + IMPORT_CHUNK], "synthetic", "bench", advance)
    record_checkpoint(registry)  # as `yikatong roster import` does: the month-end seals only what it adds
    import_s = time.perf_counter() - started
    del rows
    registry.close()
    disbursement.close()

    run_s, peak_rss_kb, result = _time_cli_run(db)
    payments = result["payments"]
    _, disbursement = open_apps(db)
    stored = _count_events(db, disbursement)
    floor_s = _storage_floor_s(db, disbursement)
    return {
        "store": db.kind,
        "enrolments": count,
        "import_s": round(import_s, 1),
        "payments": payments,
        "run_s": round(run_s, 2),
        "month_end_s": result["month_end_s"],
        "seal_s": result["seal_s"],
        "projections_s": result["projections_s"],
        "payments_per_s": round(payments / run_s),
        "stored_events": stored,
        "events_per_payment": round(stored / payments, 4) if payments else None,
        "peak_rss_mb": round(peak_rss_kb / 1024),
        "floor_s": round(floor_s, 2),
        "floor_rows_per_s": round(payments / floor_s) if floor_s else None,
        "run_over_floor": round(run_s / floor_s, 2) if floor_s else None,
        "month_end_over_floor": round(result["month_end_s"] / floor_s, 2) if floor_s else None,
    }


# The retroactive rise of the adjustment benchmark: urban dibao 555 → 580, rural dibao 3906 → 4006 from
# 2017-01-01, and what derives from them (三民 +220, 特困 1.3 ×, 精简退职 = rural dibao).
RAISES = (
    ('amount = "555.00", per = "month"', 'amount = "580.00", per = "month"'),
    ('add = "220.00", per = "month", expect = "775.00"', 'add = "220.00", per = "month", expect = "800.00"'),
    ('amount = "3906.00", per = "year"', 'amount = "4006.00", per = "year"'),
    ('per = "year", expect = "3906.00"', 'per = "year", expect = "4006.00"'),
    ('per = "year", expect = "5078.00"', 'per = "year", expect = "5208.00"'),
)


def raised_policy_text() -> str:
    text = shipped_policy_text()
    for old, new in RAISES:
        if old not in text:
            raise SystemExit(f"the shipped policy no longer holds {old!r}: update benchmarks.month_end.RAISES")
        text = text.replace(old, new)
    return text


def measure_retroactive(db: Database, plain: dict[str, Any]) -> dict[str, Any]:
    """Target (issue 14): a retroactive rise over every enrolment × 3 past months accrues its adjustments
    at no less than half the payments/s of the plain month-end (`month_end_s` of `run 2017-01`)."""
    import tempfile

    _time_cli(db, "run", "2017-02", "--json")
    _time_cli(db, "run", "2017-03", "--json")
    with tempfile.TemporaryDirectory() as folder:
        raised = Path(folder) / "raised.toml"
        raised.write_text(raised_policy_text(), encoding="utf-8")
        _time_cli(db, "policy", "load", str(raised), "--json")
    seconds, rss_mb, result = _time_cli(db, "run", "2017-03", "--json")
    adjustments = result["adjustments"]
    payments_per_s = plain["payments"] / plain["month_end_s"]
    adjustments_per_s = adjustments / result["month_end_s"] if result["month_end_s"] else 0.0
    return {
        "retro_adjustments": adjustments,
        "retro_adjusted_fen": result["adjusted_fen"],
        "retro_run_s": round(seconds, 2),
        "retro_month_end_s": result["month_end_s"],
        "retro_seal_s": result["seal_s"],
        "retro_projections_s": result["projections_s"],
        "retro_rss_mb": rss_mb,
        "retro_adjustments_per_s": round(adjustments_per_s),
        "plain_payments_per_s": round(payments_per_s),
        "retro_over_plain_rate": round(adjustments_per_s / payments_per_s, 2) if payments_per_s else None,
    }


def measure_operations(db: Database) -> dict[str, Any]:
    """Each big command after the month-end, as a user runs it: seconds and peak RSS (MB) of each."""
    import tempfile
    from datetime import UTC, datetime, timedelta

    from exporters.pain002 import render_pain002
    from ledger.exports import message_id

    figures: dict[str, Any] = {}

    def timed(name: str, *args: str) -> dict[str, Any]:
        seconds, rss_mb, out = _time_cli(db, *args)
        figures[f"{name}_s"] = round(seconds, 2)
        figures[f"{name}_rss_mb"] = rss_mb
        return out

    second = timed("second_run", "run", "2017-02", "--json")
    figures["second_run_payments"] = second["payments"]
    timed("rebuild", "projections", "rebuild", "--json")
    verified = timed("verify", "audit", "verify", "--json")
    figures["verify_ok"] = verified["ok"]
    _, disbursement = open_apps(db)
    largest = max(disbursement.batches(), key=lambda b: b.count)
    figures["largest_batch_payments"] = largest.count
    with tempfile.TemporaryDirectory() as folder:
        timed("export_pain001", "batch", "export", largest.id.hex, "--format", "pain001", "--out", folder, "--json")
        figures["export_rows_per_s"] = round(largest.count / figures["export_pain001_s"])
        _time_cli(db, "batch", "approve", largest.id.hex, "--json", actor="bench-checker")
        _time_cli(db, "batch", "submit", largest.id.hex, "--json")
        views = disbursement.payment_views(largest.payment_ids)
        outcomes = [(p, "ACSC", "", views[p].amount_fen) for p in largest.payment_ids]
        credited = datetime.combine(largest.due_date - timedelta(days=2), datetime.min.time(), tzinfo=UTC)
        answer = Path(folder) / f"{message_id(largest)}.pain002.xml"
        answer.write_bytes(render_pain002(message_id(largest), message_id(largest), outcomes, created_at=credited))
        disbursement.close()
        imported = timed("bank_import", "bank", "import", str(answer), "--json")
        figures["bank_import_paid"] = imported["paid"]
        figures["bank_import_rows_per_s"] = round(largest.count / figures["bank_import_s"])
    return figures


def _time_cli(db: Database, *args: str, actor: str = "bench") -> tuple[float, int, dict[str, Any]]:
    """Run one `yikatong` command in a child process: seconds, the child's peak RSS in MB, its JSON."""
    import tempfile

    command = [sys.executable, "-m", "ledger", "--db", db.url, "--as", actor, *args]
    # Output to files, not pipes: nothing reads a pipe while this process waits for the child.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", PEAK_RSS_WRAPPER, *command], stdout=out, stderr=err, check=False)
        elapsed = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}): {stderr.strip()}")
    peak_kb = int(stderr.rsplit(PEAK_MARK, 1)[1].split()[0])
    lines = stdout.strip().splitlines()
    return elapsed, round(peak_kb / 1024), json.loads(lines[-1]) if lines else {}


def _time_cli_run(db: Database) -> tuple[float, int, dict[str, Any]]:
    seconds, peak_mb, result = _time_cli(db, "run", "2017-01", "--json")
    return seconds, peak_mb * 1024, result


def _count_events(db: Database, disbursement: Any) -> int:
    table = disbursement.recorder.events_table_name
    if db.kind == "sqlite":
        with disbursement.recorder.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT COUNT(*) FROM {table}")
            return int(c.fetchone()[0])
    import psycopg

    schema = db.env.get("POSTGRES_SCHEMA", "public")
    with psycopg.connect(postgres_conninfo(db)) as conn:
        return int(conn.execute(f'SELECT COUNT(*) FROM "{schema}"."{table}"').fetchone()[0])


def _storage_floor_s(db: Database, disbursement: Any) -> float:
    """The same rows, one executemany, one transaction, into a scratch table shaped like the events table."""
    table = disbursement.recorder.events_table_name
    if db.kind == "sqlite":
        import sqlite3

        conn = sqlite3.connect(db.env["SQLITE_DBNAME"], isolation_level=None)
        rows = conn.execute(
            f"SELECT originator_id, originator_version, topic, state FROM {table} WHERE originator_version = 1"
        ).fetchall()
        conn.execute("DROP TABLE IF EXISTS floor_events")
        conn.execute(
            "CREATE TABLE floor_events (originator_id TEXT, originator_version INTEGER, topic TEXT, state BLOB, "
            "PRIMARY KEY (originator_id, originator_version))"
        )
        started = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO floor_events VALUES (?,?,?,?)", rows)
        conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE floor_events")
        conn.close()
        return elapsed
    import psycopg

    schema = db.env.get("POSTGRES_SCHEMA", "public")
    with psycopg.connect(postgres_conninfo(db)) as conn:
        rows = conn.execute(
            f'SELECT originator_id, originator_version, topic, state FROM "{schema}"."{table}" '
            "WHERE originator_version = 1"
        ).fetchall()
        conn.execute(f'DROP TABLE IF EXISTS "{schema}".floor_events')
        conn.execute(
            f'CREATE TABLE "{schema}".floor_events (originator_id uuid, originator_version bigint, topic text, '
            "state bytea, PRIMARY KEY (originator_id, originator_version))"
        )
        conn.commit()
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(f'INSERT INTO "{schema}".floor_events VALUES (%s, %s, %s, %s)', rows)
        elapsed = time.perf_counter() - started
        conn.execute(f'DROP TABLE "{schema}".floor_events')
        conn.commit()
        return elapsed


def _fresh(db: Database) -> None:
    if db.kind == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(db.env["SQLITE_DBNAME"] + suffix).unlink(missing_ok=True)
        return
    schema = db.env.get("POSTGRES_SCHEMA")
    if not schema:
        raise SystemExit("--fresh on PostgreSQL needs ?schema=NAME in the URL (it drops that schema)")
    import psycopg

    with psycopg.connect(postgres_conninfo(db), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    ensure_schema(db)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
