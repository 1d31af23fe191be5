"""The JSON API under /api/ (OpenAPI at /openapi.json): the same reads as the CLI's `--json`, row for
row — `/api/balances` is `report balances --json`, `/api/batches` is `batch list --json`,
`/api/deadlines` is `report deadlines --json`. It needs a logged-in session like the pages (401 without
one, 403 for a role that may not read it)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request

from domain.errors import RuleBroken
from domain.periods import Month
from ledger.views import batch_row
from ledger.web.context import visit

router = APIRouter(prefix="/api", tags=["api"])


def _bad(e: Exception) -> HTTPException:
    rule = e.rule if isinstance(e, RuleBroken) else "BadInput"
    return HTTPException(status_code=400, detail={"error": rule, "message": str(e)})


def _moment(text: str) -> datetime:
    """As the CLI's `--as-of`: a date alone is the end of that day, a naive time is UTC."""
    try:
        if len(text) == 10:
            return datetime.fromisoformat(text).replace(hour=23, minute=59, second=59, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError as e:
        raise _bad(e) from e
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@router.get("/balances", summary="余额: report balances --json")
def balances(
    request: Request,
    month: str | None = Query(None, description="periods falling due in this month (YYYY-MM)"),
    year: str | None = Query(None, description="periods of this year (YYYY)"),
    programme: str | None = None,
    region: str | None = None,
    as_of: str | None = Query(None, description="ISO 8601 moment: the answer from the events recorded by then"),
) -> dict[str, Any]:
    moment = _moment(as_of) if as_of else None
    with visit(request, "report balances") as v:
        try:
            if month:
                Month.parse(month)
            rows = v.service.balances(month=month, year=year, programme=programme, region=region, as_of=moment)
        except RuleBroken as e:
            raise _bad(e) from e
    return {"as_of": (moment or datetime.now(UTC)).isoformat(), "rows": rows}


@router.get("/batches", summary="批次: batch list --json")
def batches(request: Request, month: str | None = Query(None, description="run month YYYY-MM")) -> list[dict[str, Any]]:
    with visit(request, "batch list") as v:
        try:
            if month:
                Month.parse(month)
            return [batch_row(b) for b in v.service.batches(month)]
        except RuleBroken as e:
            raise _bad(e) from e


@router.get("/deadlines", summary="到账期限: report deadlines --json")
def deadlines(
    request: Request, today: Annotated[date | None, Query(description="judge as of this date")] = None
) -> list[Any]:
    with visit(request, "report deadlines") as v:
        return v.service.deadlines(today or v.web.today())
