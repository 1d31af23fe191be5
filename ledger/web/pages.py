"""The pages (examples/web.md): login, 首页, 批次 and a batch with its actions. Each page is one or more
use cases of ledger.service, the same ones the CLI's commands call; this module only arranges their
results for reading. Every form and button carries a stable `data-test` name for the browser tests."""

from __future__ import annotations

import io
import re
import tempfile
import zipfile
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from domain.access import LOGIN, LOGIN_FAILED, LOGOUT
from domain.accounts import AccountDisabled, normalised_name
from domain.disbursement import BATCH_STATUSES
from domain.errors import RuleBroken
from domain.periods import Month
from ledger.access import Access
from ledger.accounts import NoAccountsYet, WrongNameOrPassword
from ledger.exports import FORMATS
from ledger.views import batch_row
from ledger.web import formats
from ledger.web.auth import COOKIE
from ledger.web.context import Refused, Visit, log, visit, web_of
from ledger.web.messages import rule_text, t
from ledger.web.reissue import reissue_offer

router = APIRouter()
DEADLINE_DAYS = 15
PAGE_SIZE = 200
_MONTH = re.compile(r"^\d{4}-\d{2}$")


class BadInput(Exception):
    """A query or form value that does not parse: the page again with the reason (400)."""


def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    return web_of(request).templates.TemplateResponse(request, name, context, status_code=status)


# The menu: (path, catalogue key, the action whose right shows it). The page checks the right again.
NAV = (
    ("/", "nav.home", "report balances"),
    ("/roster", "nav.roster", "roster import"),
    ("/month-end", "nav.month_end", "run"),
    ("/batches", "nav.batches", "batch list"),
    ("/bank", "nav.bank", "bank import"),
    ("/persons", "nav.decisions", "audit history"),
    ("/aid", "nav.aid", "aid list"),
    ("/reports", "nav.reports", "report balances"),
    ("/audit", "nav.audit", "audit log"),
)


def visit_context(v: Visit, **more: Any) -> dict[str, Any]:
    policy = v.service.policy()
    return {
        "nav": [(path, key) for path, key, action in NAV if v.may(action)],
        "me": v.identity,
        "role_word": t(f"role.{v.identity.role}"),
        "csrf_token": v.csrf,
        "pname": policy.payment_name,
        "region_name": policy.region_name,
        **more,
    }


# --- login and logout ---------------------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no `//host`, no scheme) is followed after login."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return page(request, "login.html", {"next": _safe_next(next), "error": None, "username": ""})


@router.post("/login", response_model=None)
def login(request: Request, username: str = Form(""), password: str = Form(""), next: str = Form("/")) -> Response:
    """No CSRF token on this form (DESIGN.md); the password proves who acts."""
    web = web_of(request)
    target = _safe_next(next)

    def again(error: str, status: int) -> HTMLResponse:
        return page(request, "login.html", {"next": target, "error": error, "username": username}, status)

    waiting = web.throttle.waiting(username)
    if waiting > 0:
        return again(t("login.waiting", minutes=max(1, -(-int(waiting) // 60))), 429)
    service = web.open(writing=False)
    try:
        normalised_name(username)
        identity, token, expires_at = service.open_session(username, password, seconds=web.session_seconds)
    except NoAccountsYet:
        return again(t("login.no_accounts"), 403)
    except WrongNameOrPassword as e:
        web.throttle.failed(username)
        web.record_access(request, Access(LOGIN_FAILED, "web", username, rule=e.rule))
        return again(t("login.wrong"), 401)
    except AccountDisabled as e:  # said only to whoever knew the password
        web.record_access(request, Access(LOGIN_FAILED, "web", username, rule=e.rule))
        return again(t("login.disabled"), 403)
    except RuleBroken as e:
        web.throttle.failed(username)  # a name that cannot be an account: the same words as a wrong password
        web.record_access(request, Access(LOGIN_FAILED, "web", username, rule=e.rule))
        return again(t("login.wrong"), 401)
    finally:
        service.registry.close()
        service.disbursement.close()
    web.throttle.succeeded(username)
    log.info("login %s (%s)", identity.name, identity.role)
    web.record_access(request, Access(LOGIN, "web", identity.name, role=identity.role))
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=max(0, expires_at - int(web.clock())),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout", response_model=None)
def logout(request: Request, csrf_token: str = Form("")) -> Response:
    web = web_of(request)
    token = request.cookies.get(COOKIE)
    if token:
        if not web.sessions.csrf_ok(token, csrf_token):
            raise Refused(t("error.csrf"), "CsrfTokenRefused")
        try:
            session = web.sessions.check(token)
            web.sessions.revoke(token, session.expires_at)
        except RuleBroken:
            pass  # already ended
        else:
            web.record_access(request, Access(LOGOUT, "web", session.name))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


# --- 首页 -------------------------------------------------------------------------------------------------


def _month(text: str | None, today: date) -> str:
    if not text:
        return f"{today.year:04d}-{today.month:02d}"
    if not _MONTH.match(text):
        raise BadInput(f"month {text!r}: YYYY-MM")
    try:
        Month.parse(text)
    except RuleBroken as e:
        raise BadInput(str(e)) from e
    return text


def _day(text: str | None, default: date) -> date:
    if not text:
        return default
    try:
        return date.fromisoformat(text)
    except ValueError as e:
        raise BadInput(f"date {text!r}: YYYY-MM-DD") from e


@router.get("/", response_class=HTMLResponse)
def home(request: Request, month: str | None = None, today: str | None = None) -> HTMLResponse:
    with visit(request, "report balances") as v:
        day = _day(today, v.web.today())
        chosen = _month(month, day)
        service = v.service
        batches = [batch_row(b) for b in service.batches(chosen)]
        strip = []
        for status in BATCH_STATUSES:
            mine = [b for b in batches if b["status"] == status]
            query = urlencode({"month": chosen, "state": status})
            strip.append(
                {"status": status, "count": len(mine), "total_fen": sum(b["total_fen"] for b in mine), "query": query}
            )
        # The next 15 days' due dates, and any earlier one not yet paid (逾期 stays on the page until paid).
        horizon = day + timedelta(days=DEADLINE_DAYS)
        deadlines = [
            r
            for r in service.deadlines(day)
            if date.fromisoformat(r["due_date"]) <= horizon
            and (date.fromisoformat(r["due_date"]) >= day or r["status"] != "settled")
        ]
        balances = service.balances()
        per_programme: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for r in balances:
            for key in ("accrued_fen", "paid_fen", "returned_fen", "outstanding_fen"):
                per_programme[r["programme"]][key] += r[key]
        policy = service.policy()
        on_time = [r for r in service.on_time(day.year, day) if r["region"] == policy.region_code]
        latest: dict[str, dict[str, Any]] = {}
        for r in on_time:
            latest[r["programme"]] = r
        chart = _chart_data(balances, on_time, policy.payment_name)
        context = visit_context(
            v,
            month=chosen,
            today=day,
            strip=strip,
            deadlines=deadlines,
            deadline_days=DEADLINE_DAYS,
            per_programme={k: dict(vals) for k, vals in sorted(per_programme.items())},
            on_time=latest,
            year=day.year,
            chart=chart,
        )
        return page(request, "home.html", context)


def _chart_data(balances: list[dict[str, Any]], on_time: list[dict[str, Any]], name: Any) -> dict[str, Any]:
    """What the two ECharts charts draw (the tables beside them show the same figures without JavaScript)."""
    periods = sorted({r["period"] for r in balances})
    paid: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in balances:
        paid[r["programme"]][r["period"]] += r["paid_fen"]
    months = sorted({r["month"] for r in on_time})
    rates: dict[str, dict[str, str | None]] = defaultdict(dict)
    for r in on_time:
        rates[r["programme"]][r["month"]] = r["rate"]
    return {
        "periods": periods,
        "paid": [
            {"name": name(p), "values": [by[period] / 100 for period in periods]} for p, by in sorted(paid.items())
        ],
        "months": months,
        "rates": [
            {"name": name(p), "values": [float(by[m].rstrip("%")) if by.get(m) else None for m in months]}
            for p, by in sorted(rates.items())
        ],
    }


# --- 批次 -------------------------------------------------------------------------------------------------


@router.get("/batches", response_class=HTMLResponse)
def batches(
    request: Request,
    month: str | None = None,
    programme: str | None = None,
    state: str | None = None,
    region: str | None = None,
) -> HTMLResponse:
    with visit(request, "batch list") as v:
        if month:
            _month(month, date.today())
        if state and state not in BATCH_STATUSES:
            raise BadInput(f"state {state!r}")
        rows = [batch_row(b) for b in v.service.batches(month or None)]
        programmes = sorted({r["programme"] for r in rows})
        regions = sorted({r["region"] for r in rows})
        shown = [
            r
            for r in rows
            if (not programme or r["programme"] == programme)
            and (not state or r["status"] == state)
            and (not region or r["region"] == region)
        ]
        context = visit_context(
            v,
            rows=shown,
            programmes=programmes,
            regions=regions,
            states=BATCH_STATUSES,
            chosen={"month": month or "", "programme": programme or "", "state": state or "", "region": region or ""},
            total_payments=sum(r["payments"] for r in shown),
            total_fen=sum(r["total_fen"] for r in shown),
        )
        return page(request, "batches.html", context)


def _batch_page(request: Request, v: Visit, batch_id: str, start: int = 0, **more: Any) -> dict[str, Any]:
    found, views = v.service.batch_payments(batch_id, offset=start, limit=PAGE_SIZE)
    me = v.identity
    payments = [
        {
            "name": formats.shown_name(p.name, me),
            "id_number": formats.shown_id(p.id_number, me),
            "account": formats.shown_id(p.account, me),
            "persons": p.persons,
            "amount_fen": p.net_fen,
            "late": p.late,
            "result": found.results.get(p.payment_id, ("", ""))[0],
        }
        for p in views
    ]
    return visit_context(
        v,
        batch=batch_row(found),
        submitted_by=getattr(found, "submitted_by", None),
        payments=payments,
        start=start,
        page_size=PAGE_SIZE,
        formats=FORMATS,
        may_export=v.may("batch export"),
        may_approve=v.may("batch approve") and found.status == "exported" and me.name not in found.exported_by,
        may_submit=v.may("batch submit") and found.status == "approved",
        reissue=reissue_offer(v, found),  # 补发退回 (reissue.py, monthend.py)
        **({"notice": None, "error": None} | more),
    )


@router.get("/batches/{batch_id}", response_class=HTMLResponse)
def batch_page(request: Request, batch_id: str, start: int = Query(0, ge=0), done: str = "") -> HTMLResponse:
    with visit(request, "batch list") as v:
        context = _batch_page(request, v, batch_id, start)
        if done in ("approved", "submitted"):
            who = context["batch"]["approved_by"] if done == "approved" else context["submitted_by"]
            context["notice"] = t(f"batch.{done}", name=who or "")
        return page(request, "batch.html", context)


def _refused_in_place(request: Request, v: Visit, batch_id: str, e: RuleBroken) -> HTMLResponse:
    """The batch page again with the rule that refused, in Chinese (409: the ledger's state refused it)."""
    try:
        context = _batch_page(request, v, batch_id, error=rule_text(e.rule, str(e)))
    except RuleBroken:
        raise e from None
    return page(request, "batch.html", context, 409)


@router.post("/batches/{batch_id}/export", response_model=None)
def batch_export(
    request: Request,
    batch_id: str,
    csrf_token: str = Form(""),
    format: str = Form("pain001"),
    profile: str = Form("generic"),
) -> Response:
    """The batch's file as a download; the export is recorded with the logged-in account as actor."""
    with visit(request, "batch export", csrf_token=csrf_token, writing=True) as v:
        if format not in FORMATS:
            raise BadInput(f"format {format!r}")
        web = v.web
        with tempfile.TemporaryDirectory(prefix="yikatong-web-") as scratch:
            out = web.exports_dir or Path(scratch)
            try:
                _, files = v.service.export_batch(batch_id, fmt=format, out=out, profile=profile, actor=v.identity.name)
            except RuleBroken as e:
                return _refused_in_place(request, v, batch_id, e)
            parts = [(f.path.name, f.path.read_bytes()) for f in files]
    if len(parts) == 1:
        name, data = parts[0]
    else:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
            for part_name, part in parts:
                bundle.writestr(part_name, part)
        name, data = f"{batch_id[:12]}-{format}.zip", buffer.getvalue()
    return Response(
        data,
        media_type=_media_type(name),
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"},
    )


def _media_type(name: str) -> str:
    if name.endswith(".xml"):
        return "application/xml"
    if name.endswith(".xlsx"):
        return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    if name.endswith(".zip"):
        return "application/zip"
    return "application/octet-stream"


@router.post("/batches/{batch_id}/approve", response_model=None)
def batch_approve(request: Request, batch_id: str, csrf_token: str = Form("")) -> Response:
    """批准: by a checker who did not export the batch (the role here, maker-checker in the domain)."""
    with visit(request, "batch approve", csrf_token=csrf_token, writing=True) as v:
        try:
            approved = v.service.approve_batch(batch_id, actor=v.identity.name)
        except RuleBroken as e:
            return _refused_in_place(request, v, batch_id, e)
    return RedirectResponse(f"/batches/{approved.id.hex}?done=approved", status_code=303)


@router.post("/batches/{batch_id}/submit", response_model=None)
def batch_submit(request: Request, batch_id: str, csrf_token: str = Form("")) -> Response:
    """提交银行: an approved batch handed to the bank (who may: ledger.roles, as `batch submit`)."""
    with visit(request, "batch submit", csrf_token=csrf_token, writing=True) as v:
        try:
            submitted = v.service.submit_batch(batch_id, actor=v.identity.name)
        except RuleBroken as e:
            return _refused_in_place(request, v, batch_id, e)
    return RedirectResponse(f"/batches/{submitted.id.hex}?done=submitted", status_code=303)
