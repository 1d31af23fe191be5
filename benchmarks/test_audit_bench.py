"""pytest-benchmark suite (`make bench`): sealing and verifying the audit chain over a 10⁴-payment
month-end, on SQLite and on PostgreSQL.

The store is prepared once (registry imported, January run, not timed). Each sealing round first
removes the chain's own events, so every round hashes the whole log again; verification reads and
hashes every event and compares it with the seals.
"""

from __future__ import annotations

from typing import Any

import pytest

from domain.periods import Month
from ledger.audit import audit_chain_id, record_checkpoint, verify_log
from ledger.bootstrap import open_apps
from ledger.storage import Database
from ledger.synthetic import synthetic_rows

PAYMENTS = 10_000
ROUNDS = 3


def _month_end(db: Database, policy_text: str) -> Any:
    registry, disbursement = open_apps(db)
    registry.load_policy(policy_text, "ulanqab-2017.toml", "bench")
    registry.import_roster(tuple(synthetic_rows(PAYMENTS)), "synthetic", "bench")
    disbursement.run_month_end(registry.read_registry(), Month(2017, 1), scope="150900", actor="bench")
    registry.close()
    return disbursement


def _forget_the_chain(disbursement: Any) -> None:
    """Delete the chain's events (what a rebuilt deployment would start from), so a round seals all."""
    chain = audit_chain_id(disbursement.name)
    recorder = disbursement.recorder
    with recorder.datastore.transaction(commit=True) as cursor:
        if disbursement.env.get("PERSISTENCE_MODULE", "").endswith("sqlite"):
            cursor.execute(f"DELETE FROM {recorder.events_table_name} WHERE originator_id = ?", (chain.hex,))
        else:
            from psycopg import sql

            schema = recorder.datastore.schema
            cursor.execute(
                sql.SQL("DELETE FROM {}.{} WHERE originator_id = %s").format(
                    sql.Identifier(schema), sql.Identifier(recorder.events_table_name)
                ),
                (chain,),
            )


@pytest.mark.benchmark(group="audit seal 10k")
def test_sealing_a_ten_thousand_payment_log(benchmark: Any, db: Database, policy_text: str) -> None:
    disbursement = _month_end(db, policy_text)

    def seal() -> int:
        return record_checkpoint(disbursement).events_sealed

    sealed = benchmark.pedantic(seal, setup=lambda: _forget_the_chain(disbursement), rounds=ROUNDS, iterations=1)
    assert sealed >= PAYMENTS * 0.95
    assert verify_log(disbursement).ok
    benchmark.extra_info["events"] = sealed
    disbursement.close()


@pytest.mark.benchmark(group="audit verify 10k")
def test_verifying_a_ten_thousand_payment_log(benchmark: Any, db: Database, policy_text: str) -> None:
    disbursement = _month_end(db, policy_text)
    record_checkpoint(disbursement)
    result = benchmark.pedantic(lambda: verify_log(disbursement), rounds=ROUNDS, iterations=1)
    assert result.ok and result.events >= PAYMENTS * 0.95
    benchmark.extra_info["events"] = result.events
    disbursement.close()
