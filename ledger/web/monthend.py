"""月结: choose a month, start the month-end in the background and follow its progress; and 补发退回
(re-issue of corrected returns) from a batch (examples/web.md).

URLs: GET /month-end (the page: a month, 开始月结, the job of that month), POST /month-end/start,
GET /month-end/progress (the job alone: the fragment htmx polls every second), POST
/batches/{id}/reissue (runs the month again: that is how the ledger re-issues, see reissue.py).

The month-end runs in a child process (jobs.py) as the logged-in account; the job lives in this server,
keyed by month, so the page can be left and come back. Both POSTs are the CLI's `run` (ledger.roles).
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from domain.errors import BadPeriod, RuleBroken
from domain.periods import Month
from ledger.web.auth import COOKIE
from ledger.web.context import Visit, visit, web_of
from ledger.web.jobs import MonthEndJob, MonthEndJobs
from ledger.web.messages import rule_text, t
from ledger.web.pages import page, visit_context
from ledger.web.reissue import reissue_month

router = APIRouter()
ACTION = "run"  # the CLI's `yikatong run`
MONTH_CHARS_MAX = 16
_JOBS_LOCK = threading.Lock()


class NothingToReissue(RuleBroken):
    """补发退回 asked for a batch none of whose returns has a corrected account (or name) yet."""


def jobs_of(request: Request) -> MonthEndJobs:
    """This server's month-end jobs (one table per application, made on first use)."""
    state = request.app.state
    with _JOBS_LOCK:
        jobs = getattr(state, "month_end_jobs", None)
        if jobs is None:
            web = web_of(request)
            jobs = state.month_end_jobs = MonthEndJobs(web.db, clock=web.clock)
    return jobs  # type: ignore[no-any-return]


def parse_month(text: str) -> str:
    """A month as the form sends it (YYYY-MM), else BadPeriod: the domain's rule, as `run 2017-13` meets it."""
    if len(text) > MONTH_CHARS_MAX:
        raise BadPeriod(f"{text[:MONTH_CHARS_MAX]!r}…: not a month (YYYY-MM)")
    return str(Month.parse(text))


def _current_month(v: Visit) -> str:
    today = v.web.today()
    return f"{today.year:04d}-{today.month:02d}"


def job_context(v: Visit, job: MonthEndJob | None, month: str) -> dict[str, Any]:
    """What the job fragment shows (the job, and the months run so far), computed here so the template
    only lays it out."""
    months_run = sorted(set(v.service.months_run()))
    if job is None:
        return {"job": None, "month": month, "months_run": months_run}
    now = v.web.clock()
    with job.lock:
        rate = job.rate(now)
        end = job.finished_at if job.finished_at is not None else now
        shown: dict[str, Any] = {
            "job": job,
            "month": job.month,
            "phase": job.phase,
            "running": job.running,
            "done": job.done,
            "total": job.total,
            "percent": job.percent(),
            "rate": f"{rate:,.0f}" if rate is not None else "",
            "started": datetime.fromtimestamp(job.started_at).strftime("%H:%M:%S"),
            "seconds": max(0, round(end - job.started_at)),
            "result": job.result,
            "job_error": rule_text(job.error_rule, job.error_message) if job.phase == "failed" else "",
            "months_run": months_run,
        }
    return shown


def _page(
    request: Request, v: Visit, month: str, *, status: int = 200, notice: str = "", error: str = ""
) -> HTMLResponse:
    jobs = jobs_of(request)
    job = jobs.running() or jobs.get(month)
    context = visit_context(
        v,
        chosen=month,
        notice=notice,
        error=error,
        **job_context(v, job, month),
    )
    return page(request, "monthend.html", context, status)


@router.get("/month-end", response_class=HTMLResponse)
def month_end_page(request: Request, month: str = "", started: str = "") -> HTMLResponse:
    with visit(request, ACTION) as v:
        if not month:
            return _page(request, v, _current_month(v))
        try:
            chosen = parse_month(month)
        except RuleBroken as e:
            return _page(request, v, _current_month(v), status=400, error=rule_text(e.rule, str(e)))
        job = jobs_of(request).get(chosen)
        notice = t("monthend.started", month=chosen, actor=job.actor) if started and job is not None else ""
        return _page(request, v, chosen, notice=notice)


@router.get("/month-end/progress", response_class=HTMLResponse)
def month_end_progress(request: Request, month: str = "") -> HTMLResponse:
    """The job alone (htmx swaps it in every second while it runs; once finished it stops polling)."""
    with visit(request, ACTION) as v:
        jobs = jobs_of(request)
        chosen = _current_month(v)
        if month:
            try:
                chosen = parse_month(month)
            except RuleBroken as e:
                return page(request, "error.html", {"message": rule_text(e.rule, str(e))}, 400)
        job = jobs.get(chosen) or jobs.running()
        return page(request, "monthend_job.html", job_context(v, job, chosen))


def _start(request: Request, v: Visit, month: str) -> Response:
    """Start the month-end of `month` as this account, or show the one already running (409)."""
    session = v.web.sessions.check(request.cookies[COOKIE])  # checked by visit() already: its version
    job, started = jobs_of(request).start(month, name=v.identity.name, version=session.version)
    if not started:
        words = t("monthend.running") if job.month == month else t("monthend.running_other", month=job.month)
        return _page(request, v, job.month, status=409, error=words)
    return RedirectResponse("/month-end?" + urlencode({"month": month, "started": "1"}), status_code=303)


@router.post("/month-end/start", response_model=None)
def month_end_start(request: Request, csrf_token: str = Form(""), month: str = Form("")) -> Response:
    """开始月结: the month is checked here (bad month: the page again, nothing started); every other rule
    (no policy, an amount above the maximum) is the month-end's own and shows on the page when it ends."""
    with visit(request, ACTION, csrf_token=csrf_token, writing=True) as v:
        try:
            chosen = parse_month(month)
        except RuleBroken as e:
            return _page(request, v, _current_month(v), status=400, error=rule_text(e.rule, str(e)))
        return _start(request, v, chosen)


@router.post("/batches/{batch_id}/reissue", response_model=None)
def batch_reissue(request: Request, batch_id: str, csrf_token: str = Form("")) -> Response:
    """补发退回: the month-end of the latest month run, again (reissue.py says why); refused when no
    return of this batch has been corrected yet (a run would re-issue none of them)."""
    with visit(request, ACTION, csrf_token=csrf_token, writing=True) as v:
        batch = v.service.batch(batch_id)
        returns = v.service.batch_returns(batch.id.hex)
        if returns.ready == 0:
            raise NothingToReissue(
                f"batch {batch.id.hex[:12]}: {returns.returned} returned, {returns.reissued} re-issued, "
                f"{returns.awaiting_account} awaiting a corrected account"
            )
        return _start(request, v, reissue_month(v, batch))
