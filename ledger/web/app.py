"""The web application (DESIGN.md, `yikatong serve`): `create_app(db)` builds it on one ledger.

Entry point only: every page and API call goes through ledger.web.context.visit to a use case of
ledger.service; nothing here holds SQL or repeats a use case's steps (tests/test_architecture.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from domain.access import REFUSED
from domain.errors import RuleBroken
from ledger.access import Access
from ledger.bootstrap import check_store
from ledger.keys import with_cipher
from ledger.sessions import ledger_ref, session_secret
from ledger.storage import Database
from ledger.web import api, audit, decisions, monthend, pages, reports, uploads
from ledger.web.auth import LoginThrottle, WebSessions
from ledger.web.context import HERE, SESSION_S_DEFAULT, NotLoggedIn, Refused, Web, make_templates
from ledger.web.messages import rule_text, t


def create_app(
    db: Database,
    *,
    session_seconds: int = SESSION_S_DEFAULT,
    exports_dir: Path | None = None,
    throttle: LoginThrottle | None = None,
    today: Callable[[], date] = date.today,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The application on the ledger at `db` (which must hold one: `yikatong init`). `exports_dir` keeps
    every downloaded export (else each is written to a temporary folder, sent, and removed; the ledger
    records its SHA-256 either way and `audit verify` regenerates it)."""
    db = with_cipher(db)
    check_store(db, writing=False)
    templates = make_templates()
    web = Web(
        db=db,
        sessions=WebSessions(session_secret(db), ledger_ref(db), clock=clock),
        throttle=throttle or LoginThrottle(),
        templates=templates,
        session_seconds=session_seconds,
        exports_dir=exports_dir,
        today=today,
        clock=clock,
    )
    app = FastAPI(title=t("app.title"), version="1", docs_url=None, redoc_url=None)
    app.state.web = web
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(pages.router)
    app.include_router(uploads.router)
    app.include_router(monthend.router)
    app.include_router(decisions.router)
    app.include_router(reports.router)
    app.include_router(audit.router)
    app.include_router(api.router)

    def _is_api(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    @app.exception_handler(NotLoggedIn)
    def not_logged_in(request: Request, e: NotLoggedIn) -> Response:
        if _is_api(request):
            return JSONResponse({"error": "NotLoggedIn", "message": str(e)}, status_code=401)
        if request.method != "GET":
            return _error_page(request, str(e), 403)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    @app.exception_handler(Refused)
    def refused(request: Request, e: Refused) -> Response:
        if e.account:  # a logged-in account refused: recorded in the ledger (ledger.access)
            access = Access(REFUSED, "web", e.account, role=e.role, action=e.action, rule=e.rule)
            web.record_access(request, access)
        if _is_api(request):
            return JSONResponse({"error": e.rule, "message": e.message}, status_code=403)
        return _error_page(request, rule_text(e.rule, e.message) if e.rule != "CsrfTokenRefused" else e.message, 403)

    @app.exception_handler(pages.BadInput)
    def bad_input(request: Request, e: pages.BadInput) -> Response:
        return _error_page(request, t("error.bad_input", detail=str(e)), 400)

    @app.exception_handler(RuleBroken)
    def rule_broken(request: Request, e: RuleBroken) -> Response:
        status = 404 if e.rule == "UnknownBatch" else 400
        if _is_api(request):
            return JSONResponse({"error": e.rule, "message": str(e)}, status_code=status)
        return _error_page(request, rule_text(e.rule, str(e)), status)

    def _error_page(request: Request, message: str, status: int) -> HTMLResponse:
        return templates.TemplateResponse(request, "error.html", {"message": message}, status_code=status)

    return app
