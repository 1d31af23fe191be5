"""月结: choose a month, start the month-end in the background and follow its progress; and 补发退回
(re-issue of corrected returns) from a batch (examples/web.md).

URLs: /month-end, /batches/{id}/reissue."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
