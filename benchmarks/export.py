"""Export benchmark: `python -m benchmarks.export --payments N --db URL [--format pain001]`.

Builds a month-end of N synthetic payments in an empty store (not timed), then times exporting every
batch through `ledger.exports.export_batch` — loading the payments, building rows, rendering,
validating pain.001 against the XSD, writing atomically and recording the export — and prints rows/s.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.month_end import _fresh
from domain.periods import Month
from ledger.bootstrap import database_from_url, open_apps
from ledger.demo import shipped_policy_text
from ledger.exports import export_batch
from ledger.synthetic import synthetic_rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=100_000)
    parser.add_argument("--db", default="sqlite:///bench-export.db")
    parser.add_argument("--format", dest="fmt", default="pain001", choices=["pain001", "onecard", "xlsx", "notice"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    db = database_from_url(args.db)
    _fresh(db)
    registry, disbursement = open_apps(db)
    registry.load_policy(shipped_policy_text(), "ulanqab-2017.toml", "bench")
    registry.import_roster(tuple(synthetic_rows(args.payments)), "synthetic", "bench")
    summary = disbursement.run_month_end(registry.read_registry(), Month(2017, 1), scope="150900", actor="bench")
    policy = registry.policy()
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        rows = size = 0
        for batch in disbursement.batches():
            _, files = export_batch(disbursement, policy, batch.id.hex, fmt=args.fmt, out=Path(out), actor="bench")
            rows += batch.count
            size += sum(f.size for f in files)
        elapsed = time.perf_counter() - started
    figures = {
        "store": db.kind,
        "format": args.fmt,
        "payments": summary.payments,
        "rows": rows,
        "seconds": round(elapsed, 2),
        "rows_per_s": round(rows / elapsed),
        "megabytes": round(size / 2**20, 1),
    }
    print(json.dumps(figures) if args.json else "\n".join(f"{k:12} {v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
