"""名册导入 and 回盘: upload a roster (CSV or xlsx) or a bank result file (pain.002 or a profile's
return file), preview what it will change, then apply all or nothing (examples/web.md).

URLs: /roster, /bank."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
