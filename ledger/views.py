"""Plain views of the ledger's objects that more than one entry point shows the same way: the CLI's
`batch list --json` and the web's `/api/batches` print the very same rows (DESIGN.md, Interfaces)."""

from __future__ import annotations

from typing import Any

from domain.disbursement import Batch


def batch_row(b: Batch) -> dict[str, Any]:
    """A batch as `batch list --json` shows it (DESIGN.md, Interfaces: stable keys)."""
    return {
        "id": b.id.hex,
        "region": b.region,
        "programme": b.programme,
        "period": b.period,
        "payments": b.count,
        "total_fen": b.total_fen,
        "status": b.status,
        "run_month": b.run_month,
        "due_date": b.due_date.isoformat(),
        "paid": b.paid_count(),
        "returned": len(b.returned_ids()),
        "exported_by": b.exported_by,
        "approved_by": b.approved_by,
        "kind": b.kind,  # "payments", or "adjustment": a run's 补发差额 of one programme (issue 14)
    }
