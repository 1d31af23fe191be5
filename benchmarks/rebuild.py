"""Standalone projection benchmark: `python -m benchmarks.rebuild --db URL`.

Rebuilds the read models (`projections.runner.rebuild`: drop, create, catch up from the first event) of
a store that already holds a history, e.g. one made by
`python -m benchmarks.month_end --payments 1000000 --db URL --fresh`, and prints the events read, the
seconds taken and events/s.

- `--catch-up` times a catch-up onto empty read models that an earlier command created instead (what
  the first command after a first month-end pays);
- `--keep-indexes` (with `--catch-up`) keeps rm_payments' indexes however large the backlog: the case of
  a month-end on top of a longer history, where building the indexes again would cost more;
- `--check` compares the balances with the reference fold (`projections.balances`) afterwards.

Target (issue 5): a 10⁶-payment month-end history rebuilds in ≤ 20 s on SQLite (≥ 50 000 events/s).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ledger.bootstrap import database_from_url, open_apps
from ledger.storage import Database
from projections import runner
from projections.read_models import create_read_models, drop_read_models, open_engine
from projections.runner import PAGE_SIZE, RunStats, catch_up, rebuild


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="a store holding a history: sqlite:///PATH or postgresql://…")
    parser.add_argument("--page-size", type=int, default=PAGE_SIZE, help="notifications per transaction")
    parser.add_argument("--catch-up", action="store_true", help="time a catch-up onto empty, indexed read models")
    parser.add_argument("--keep-indexes", action="store_true", help="with --catch-up: never defer the indexes")
    parser.add_argument("--check", action="store_true", help="compare the balances with the reference fold")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.keep_indexes:
        runner.BULK_BACKLOG_MIN = sys.maxsize
    figures = measure(database_from_url(args.db), args.page_size, catch_up_only=args.catch_up, check=args.check)
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:24} {value}")
    return 0


def measure(db: Database, page_size: int, *, catch_up_only: bool = False, check: bool = False) -> dict[str, Any]:
    registry, disbursement = open_apps(db)
    registry.close()
    if catch_up_only:
        with open_engine(db) as engine, engine.begin() as conn:
            drop_read_models(conn)
            create_read_models(conn)
        stats = _timed(lambda: catch_up(db, page_size=page_size))
    else:
        stats = _timed(lambda: rebuild(db, page_size=page_size))
    figures: dict[str, Any] = {
        "store": db.kind,
        "mode": ("catch-up" if catch_up_only else "rebuild")
        + (" (indexes kept)" if sys.maxsize == runner.BULK_BACKLOG_MIN else ""),
        "page_size": page_size,
        "events": stats.events,
        "pages": stats.pages,
        "seconds": round(stats.seconds, 2),
        "events_per_s": round(stats.events_per_s),
    }
    if check:
        from ledger.reports import balances_rows

        figures["balances_equal_fold"] = balances_rows(db) == disbursement.balances().rows()
    disbursement.close()
    return figures


def _timed(work: Any) -> RunStats:
    """The runner's own clock covers its pages; this one adds opening and closing the engine."""
    started = time.perf_counter()
    stats: RunStats = work()
    stats.seconds = time.perf_counter() - started
    return stats


if __name__ == "__main__":
    sys.exit(main())
