"""pytest-benchmark suite (`make bench`): rebuilding the read models of a 10⁴-payment month-end, on
SQLite and on PostgreSQL.

The store is prepared once (registry imported, January run, not timed); each round drops and rebuilds
the read models from the first event, as `yikatong projections rebuild` does.
"""

from __future__ import annotations

from typing import Any

import pytest

from domain.periods import Month
from ledger.bootstrap import open_apps
from ledger.reports import balances_rows
from ledger.storage import Database
from ledger.synthetic import synthetic_rows
from projections.runner import rebuild

PAYMENTS = 10_000
ROUNDS = 3


@pytest.mark.benchmark(group="projections rebuild 10k")
def test_rebuild_of_a_ten_thousand_payment_month_end(benchmark: Any, db: Database, policy_text: str) -> None:
    registry, disbursement = open_apps(db)
    registry.load_policy(policy_text, "ulanqab-2017.toml", "bench")
    registry.import_roster(tuple(synthetic_rows(PAYMENTS)), "synthetic", "bench")
    disbursement.run_month_end(registry.read_registry(), Month(2017, 1), scope="150900", actor="bench")

    stats = benchmark.pedantic(lambda: rebuild(db), rounds=ROUNDS, iterations=1)
    assert stats.events >= PAYMENTS * 0.95
    assert balances_rows(db) == disbursement.balances().rows()
    benchmark.extra_info["events"] = stats.events
    benchmark.extra_info["events_per_s"] = round(stats.events_per_s)
