"""One batch header builder for the exporter tests: a 乌兰察布市 urban-dibao batch of the given rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from exporters.rows import BatchHeader, PaymentRow


def header_for(rows: Sequence[PaymentRow], *, created_at: datetime, **changes: Any) -> BatchHeader:
    """Count and total from the rows; `changes` override any other field."""
    header = BatchHeader(
        batch_id="0f" * 16,
        message_id="YKT0f0f0f0f0f0f0f0f0f0f0f0f0f0f",
        created_at=created_at,
        region="150900",
        region_name="乌兰察布市",
        programme="urban_dibao",
        programme_name="城镇低保",
        period="2017-01",
        due_date=date(2017, 1, 10),
        payer_name="乌兰察布市民政局",
        payer_account="150901234567890123",
        payer_bank_code="103191000015",
        count=len(rows),
        total_fen=sum(r.amount_fen for r in rows),
    )
    return replace(header, **changes)
