"""`audit verify` compares the live read models with a rebuild from the log, on both stores."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from domain.periods import Month
from ledger.audit import compare_with_rebuild
from ledger.reports import catch_up
from ledger.storage import Database
from projections.read_models import open_engine
from tests.helpers.ledgers import LI, WANG, import_rows, ledger


def test_intact_read_models_equal_a_rebuild_and_a_hand_edit_is_named(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, disbursement = ledger(db, policy_text)
    import_rows(registry, tmp_path, LI, WANG)
    disbursement.run_month_end(registry.read_registry(), Month(2017, 1), scope="150900", actor="clerk")
    catch_up(db)
    assert compare_with_rebuild(db) == []

    with open_engine(db) as engine, engine.begin() as conn:
        conn.execute(
            text(f"UPDATE {_table(db, 'rm_balances')} SET paid_fen = paid_fen + 100 WHERE programme = 'urban_dibao'")
        )
    differences = compare_with_rebuild(db)
    assert differences, "a hand edit must be found"
    assert all("rm_balances 150900/urban_dibao/2017-01" in d for d in differences)
    assert any("paid_fen is 100, a rebuild from the log gives 0" in d for d in differences)

    with open_engine(db) as engine, engine.begin() as conn:
        conn.execute(text(f"DELETE FROM {_table(db, 'rm_payments')} WHERE programme = 'rural_dibao'"))
    assert any("missing from the live read model" in d for d in compare_with_rebuild(db))


def _table(db: Database, name: str) -> str:
    schema = db.env.get("POSTGRES_SCHEMA")
    return f'"{schema}".{name}' if db.kind == "postgres" and schema else name
