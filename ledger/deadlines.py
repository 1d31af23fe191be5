"""Deadline rows for `report deadlines`: each batch's due date, last safe day and state.

Due date: `due_day` of the period's first month (000_a883bdda05437b65.txt 一). Last safe day:
`bank_lead_days` working days before it on the official calendar (chinesecalendar, plus the policy's
own `[calendar]` for years the package does not know; an unknown year gives "unknown", never a guess).
不得跨年发放: a payment for year Y unsettled after 31 December Y is a breach, always shown.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from domain.deadlines import deadline_state, last_safe_day, year_end_breach
from domain.disbursement import SETTLED, SUBMITTED
from domain.periods import Period
from domain.policy import Policy
from ledger.workdays import ChineseWorkdays


def calendar_for(policy: Policy) -> ChineseWorkdays:
    return ChineseWorkdays(
        extra_holidays=policy.calendar_holidays,
        extra_workdays=policy.calendar_workdays,
        declared_years=policy.calendar_years,
    )


def deadline_rows(policy: Policy, batches: Iterable[Any], today: date) -> list[dict[str, Any]]:
    calendar = calendar_for(policy)
    rows = []
    for batch in batches:
        safe = last_safe_day(calendar, batch.due_date, policy.bank_lead_days)
        settled_on = getattr(batch, "settled_on", None)
        state = deadline_state(
            due_date=batch.due_date,
            safe_day=safe,
            today=today,
            settled_on=settled_on,
            submitted=batch.status in (SUBMITTED, SETTLED),
        )
        rows.append(
            {
                "batch": batch.id.hex,
                "region": batch.region,
                "programme": batch.programme,
                "period": batch.period,
                "run_month": batch.run_month,
                "payments": batch.count,
                "total_fen": batch.total_fen,
                "status": batch.status,
                "due_date": batch.due_date.isoformat(),
                "last_safe_day": safe.isoformat() if safe else None,
                "state": state,
                "year_end_breach": year_end_breach(
                    period_year=Period.parse(batch.period).year, today=today, settled_on=settled_on
                ),
            }
        )
    return rows
