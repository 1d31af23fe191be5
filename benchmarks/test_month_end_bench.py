"""pytest-benchmark suite (`make bench`): a month-end of 10⁴ payments on SQLite and on PostgreSQL.

Each round gets a fresh store with the registry already imported (set-up is not timed), then times
reading the registry and accruing every payment, as `yikatong run` does.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from domain.periods import Month
from ledger.bootstrap import database_from_url, open_apps
from ledger.storage import Database
from ledger.synthetic import synthetic_rows

PAYMENTS = 10_000
ROUNDS = 3


def _prepared(db: Database, policy_text: str, n: int) -> tuple[Any, Any]:
    url = db.url.replace("ledger.db", f"round{n}.db") if db.kind == "sqlite" else f"{db.url}_{n}"
    registry, disbursement = open_apps(database_from_url(url))
    registry.load_policy(policy_text, "ulanqab-2017.toml", "bench")
    registry.import_roster(tuple(synthetic_rows(PAYMENTS)), "synthetic", "bench")
    return registry, disbursement


@pytest.mark.benchmark(group="month-end 10k")
def test_month_end_of_ten_thousand_payments(benchmark: Any, db: Database, policy_text: str) -> None:
    rounds = itertools.count()

    def setup() -> tuple[tuple[Any, Any], dict[str, Any]]:
        return (_prepared(db, policy_text, next(rounds)),), {}

    def month_end(apps: tuple[Any, Any]) -> int:
        registry, disbursement = apps
        snapshot = registry.read_registry()
        return disbursement.run_month_end(snapshot, Month(2017, 1), scope="150900", actor="bench").payments

    payments = benchmark.pedantic(month_end, setup=setup, rounds=ROUNDS, iterations=1)
    assert payments >= PAYMENTS * 0.95
    benchmark.extra_info["payments"] = payments
