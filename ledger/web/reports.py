"""报表: balances with 截至 (as-of), the yearly summary, on-time rate, deadlines and recoveries, each
downloadable as xlsx (examples/web.md).

URLs: /reports."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
