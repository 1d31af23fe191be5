"""审计 (auditor, read-only): a person's history, anomalies, verify against an anchor, and the actions
log with logins (examples/web.md).

URLs: /audit."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
