"""Ledgers with a history for projection tests: runs, exports, approvals, bank results, re-issues.

Bank results go through the real path (pain.001 export, maker-checker approval, a pain.002 answer
imported by `ledger.exports.import_bank_file`); the pain.002's acceptance time is the settlement date.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from domain.periods import Month
from ledger.exports import approve_batch, export_batch, import_bank_file
from ledger.storage import Database
from projections.read_models import all_read_model_rows, open_engine, reading
from tests.helpers.ledgers import LI, WANG, import_rows, ledger

WANG_ID = "152621197505052342"


def run(registry: Any, disbursement: Any, month: str) -> Any:
    return disbursement.run_month_end(registry.read_registry(), Month.parse(month), scope="150900", actor="clerk")


def batch_of(disbursement: Any, programme: str, run_month: str) -> Any:
    (found,) = [b for b in disbursement.batches() if b.programme == programme and b.run_month == run_month]
    return found


def send(registry: Any, disbursement: Any, batch: Any, tmp: Path) -> None:
    """Export (by the maker) and approve (by the checker)."""
    export_batch(disbursement, registry.policy(), batch.id.hex, fmt="pain001", out=tmp / "out", actor="maker")
    approve_batch(disbursement, batch.id.hex, "checker")


def settle(disbursement: Any, batch: Any, outcomes: dict[str, tuple[str, str]], tmp: Path, on: date) -> None:
    """The bank's pain.002 for `outcomes` (payment id → (paid|returned, reason)), accepted on `on`."""
    from exporters.pain002 import render_pain002

    views = disbursement.payment_views(outcomes)
    message = f"YKT{batch.id.hex[:28]}"
    lines = [
        (pid, "ACSC" if status == "paid" else "RJCT", reason, views[pid].amount_fen)
        for pid, (status, reason) in outcomes.items()
    ]
    created = datetime(on.year, on.month, on.day, 10, tzinfo=UTC)
    path = tmp / f"result-{batch.id.hex[:8]}-{len(list(tmp.glob('result-*')))}.xml"
    path.write_bytes(render_pain002(message, message, lines, created_at=created))
    import_bank_file(disbursement, path, actor="clerk")


def january(db: Database, policy_text: str, tmp: Path, *rows: str) -> tuple[Any, Any]:
    registry, disbursement = ledger(db, policy_text)
    import_rows(registry, tmp, *(rows or (LI, WANG)))
    run(registry, disbursement, "2017-01")
    return registry, disbursement


def history(db: Database, policy_text: str, tmp: Path, step: Any = None) -> tuple[Any, Any]:
    """January paid (urban) and returned (rural), arrears, a corrected account, the re-issue paid.

    `step(name, disbursement)` is called after each change, so a test can look along the way.
    """
    step = step or (lambda _name, _disbursement: None)
    registry, disbursement = january(db, policy_text, tmp)
    step("accrued", disbursement)
    urban, rural = batch_of(disbursement, "urban_dibao", "2017-01"), batch_of(disbursement, "rural_dibao", "2017-01")
    for batch in (urban, rural):
        send(registry, disbursement, batch, tmp)
    step("exported", disbursement)
    settle(disbursement, urban, {urban.payment_ids[0]: ("paid", "")}, tmp, date(2017, 1, 6))
    settle(disbursement, rural, {rural.payment_ids[0]: ("returned", "AC04")}, tmp, date(2017, 1, 9))
    step("results", disbursement)
    run(registry, disbursement, "2017-02")
    registry.set_account(
        id_number=WANG_ID, bank_code="402191000099", account="6217002050123456797", reason="换卡 AC04", actor="clerk"
    )
    run(registry, disbursement, "2017-03")  # the re-issue (补发) of the returned Q1 payment
    step("reissued", disbursement)
    reissue_batch = batch_of(disbursement, "rural_dibao", "2017-03")
    send(registry, disbursement, reissue_batch, tmp)
    settle(disbursement, reissue_batch, {reissue_batch.payment_ids[0]: ("paid", "")}, tmp, date(2017, 3, 8))
    step("reissue paid", disbursement)
    return registry, disbursement


def snapshot(db: Database) -> dict[str, list[dict[str, Any]]]:
    with open_engine(db) as engine, reading(engine.connect()) as conn:
        return all_read_model_rows(conn)
