"""补发退回 on the batch page: what the page offers for a batch's returned payments (examples/web.md, 批次).

What we found: the ledger has no re-issue command of its own. A returned payment is re-issued (补发) by
a month-end once the payee's account or name is corrected (ledger.disbursement `_reissues_due`), and a
month-end run again for a month already run accrues nothing twice, so "re-issue now" is: run the month
again. The button (ledger/web/monthend.py, POST /batches/{id}/reissue) does exactly that, in the
background like 月结; this module says when to offer it and which month it runs. Kept apart from
monthend.py so the batch page (pages.py) can ask without importing the page module that imports it.
"""

from __future__ import annotations

from typing import Any

from domain.disbursement import Batch
from ledger.web.context import Visit


def reissue_month(v: Visit, batch: Batch) -> str:
    """The month a re-issue runs: the latest month already run up to this one (its batches are today's
    work), else the batch's own month."""
    today = v.web.today()
    current = f"{today.year:04d}-{today.month:02d}"
    run = [m for m in v.service.months_run() if m <= current]
    return max(run) if run else batch.run_month


def reissue_offer(v: Visit, batch: Batch) -> dict[str, Any] | None:
    """What the batch page shows about re-issue: None when the batch has no returns (nothing to show)."""
    if not batch.returned_ids():
        return None
    returns = v.service.batch_returns(batch.id.hex)
    return {
        "returned": returns.returned,
        "reissued": returns.reissued,
        "ready": returns.ready,
        "awaiting": returns.awaiting_account,
        "month": reissue_month(v, batch),
        "may_run": v.may("run"),
    }
