"""报表: balances with 截至 (as-of), the yearly summary, on-time rate, deadlines and recoveries, each
downloadable as xlsx (examples/web.md).

URLs: /reports (the index), /reports/balances, /reports/summary, /reports/on-time, /reports/deadlines,
/reports/recoveries; each also as xlsx, at /reports/NAME.xlsx or with `?format=xlsx`, with the same query.

Each page is the CLI's report command, through the same use case with the same arguments and the CLI's
action name for the role check (`report balances`, …): its figures are `yikatong report … --json`'s
on the same ledger, and the xlsx holds the very rows the page shows (one `Report` feeds both: rows
first, then render). Every role reads reports (ledger.roles.READ_ONLY); names and ID numbers in
the recoveries are masked for roles that need not see them (formats.shown_name). Nothing here writes
the log (the read models are caught up, as every report does).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from domain.errors import RuleBroken
from domain.periods import Month
from exporters.report_xlsx import ReportSheet, render_report
from ledger.web import formats
from ledger.web.context import Visit, visit
from ledger.web.messages import t
from ledger.web.pages import BadInput, page, visit_context

router = APIRouter()
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_YEAR = re.compile(r"^\d{4}$")
_MONTH = re.compile(r"^\d{4}-\d{2}$")

# (URL name, the CLI's action, catalogue key of its title)
REPORTS = (
    ("balances", "report balances", "reports.balances"),
    ("summary", "report summary", "reports.summary"),
    ("on-time", "report on-time", "reports.on_time"),
    ("deadlines", "report deadlines", "reports.deadlines"),
    ("recoveries", "report recoveries", "reports.recoveries"),
)
ACTION = {name: action for name, action, _ in REPORTS}

# `report balances --json`'s amounts, in the order the page and the workbook show them.
BALANCE_AMOUNTS = (
    "accrued_fen",
    "adjusted_fen",
    "exported_fen",
    "paid_fen",
    "returned_fen",
    "recovery_due_fen",
    "recovered_fen",
    "written_off_fen",
    "outstanding_fen",
)
# Shown on the page only when some row holds one (the workbook always has them): most offices never see them.
BALANCE_OPTIONAL = frozenset({"adjusted_fen", "recovery_due_fen", "recovered_fen", "written_off_fen"})
RECOVERY_AMOUNTS = ("due_fen", "recovered_fen", "written_off_fen", "remaining_fen")


@dataclass
class Report:
    """One report as read once: what the page shows and what the workbook holds (the same rows)."""

    name: str
    title: str
    header_lines: list[str]
    sheet: ReportSheet
    context: dict[str, Any] = field(default_factory=dict)


# --- the index --------------------------------------------------------------------------------------------


@router.get("/reports", response_class=HTMLResponse)
def reports_index(request: Request) -> HTMLResponse:
    with visit(request, "report balances") as v:
        listed = [
            {"name": name, "title": t(key), "about": t(f"{key}.about")}
            for name, action, key in REPORTS
            if v.may(action)
        ]
        return page(request, "reports.html", visit_context(v, reports=listed))


# --- the five reports: one GET each, and its xlsx ----------------------------------------------------------


def _route(name: str, build: Callable[[Visit, Request], Report]) -> None:
    def html_or_xlsx(request: Request, format: str = "html") -> Response:
        return _answer(request, name, build, as_xlsx=format == "xlsx")

    def xlsx(request: Request) -> Response:
        return _answer(request, name, build, as_xlsx=True)

    router.add_api_route(f"/reports/{name}", html_or_xlsx, methods=["GET"], response_model=None)
    router.add_api_route(f"/reports/{name}.xlsx", xlsx, methods=["GET"], response_model=None)


def _answer(request: Request, name: str, build: Callable[[Visit, Request], Report], *, as_xlsx: bool) -> Response:
    with visit(request, ACTION[name]) as v:
        report = build(v, request)
        if as_xlsx:
            filename = f"{report.title}-{v.web.today().isoformat()}.xlsx"
            return Response(
                render_report(report.sheet),
                media_type=XLSX,
                headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}"},
            )
        query = {k: v for k, v in request.query_params.items() if k != "format"}
        context = visit_context(
            v,
            report=report,
            name=name,
            xlsx_url=f"/reports/{name}.xlsx" + (f"?{urlencode(query)}" if query else ""),
            **report.context,
        )
        return page(request, f"report_{name.replace('-', '_')}.html", context)


def _positions_line(v: Visit) -> str:
    at = v.service.log_positions()
    return t("reports.position", registry=at["registry_events"], disbursement=at["disbursement_events"])


def _moment(text: str) -> datetime:
    """As the CLI's `--as-of`: ISO 8601; a date alone is the end of that day; a time without zone is UTC."""
    try:
        if len(text) == 10:
            return datetime.fromisoformat(text).replace(hour=23, minute=59, second=59, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError as e:
        raise BadInput(f"as_of {text!r}: YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[+08:00]") from e
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _param(request: Request, key: str) -> str:
    return request.query_params.get(key, "").strip()


def _checked_month(text: str, what: str = "month") -> str:
    if not text:
        return ""
    if not _MONTH.match(text):
        raise BadInput(f"{what} {text!r}: YYYY-MM")
    try:
        Month.parse(text)
    except RuleBroken as e:
        raise BadInput(str(e)) from e
    return text


def _checked_year(text: str, default: int | None = None) -> int | None:
    if not text:
        return default
    if not _YEAR.match(text):
        raise BadInput(f"year {text!r}: YYYY")
    return int(text)


def _checked_day(text: str, default: date) -> date:
    if not text:
        return default
    try:
        return date.fromisoformat(text)
    except ValueError as e:
        raise BadInput(f"date {text!r}: YYYY-MM-DD") from e


# --- 余额 -------------------------------------------------------------------------------------------------


def build_balances(v: Visit, request: Request) -> Report:
    """`report balances [--month] [--year] [--programme] [--region] [--as-of]`, with totals."""
    month = _checked_month(_param(request, "month"))
    year = _checked_year(_param(request, "year"))
    programme, region, as_of_text = _param(request, "programme"), _param(request, "region"), _param(request, "as_of")
    moment = _moment(as_of_text) if as_of_text else None
    rows = v.service.balances(
        month=month or None,
        year=str(year) if year else None,
        programme=programme or None,
        region=region or None,
        as_of=moment,
    )
    stamp = (moment or datetime.now(UTC)).isoformat()
    totals = {key: sum(r[key] for r in rows) for key in BALANCE_AMOUNTS}
    shown = [key for key in BALANCE_AMOUNTS if key not in BALANCE_OPTIONAL or any(r[key] for r in rows)]
    pname = v.service.policy().payment_name
    header = [t("reports.as_of", as_of=stamp) if moment else t("reports.as_of_now", as_of=stamp), _positions_line(v)]
    filters = [
        f"{t(f'reports.filter.{k}')} {val}"
        for k, val in (
            ("month", month),
            ("year", year),
            ("programme", pname(programme) if programme else ""),
            ("region", region),
        )
        if val
    ]
    if filters:
        header.append(t("reports.filters", filters="，".join(str(f) for f in filters)))
    headings = (t("col.region"), t("col.programme"), t("col.period"), t("reports.col.households"), t("col.persons"))
    sheet = ReportSheet(
        title=t("reports.balances"),
        header_lines=tuple(header),
        headings=(*headings, *(t(f"reports.col.{key}") for key in BALANCE_AMOUNTS)),
        kinds=("text", "text", "text", "count", "count", *("amount" for _ in BALANCE_AMOUNTS)),
        rows=[
            (
                r["region"],
                pname(r["programme"]),
                r["period"],
                r["households"],
                r["persons"],
                *(r[key] for key in BALANCE_AMOUNTS),
            )
            for r in rows
        ],
        total=(t("reports.total"), "", "", None, None, *(totals[key] for key in BALANCE_AMOUNTS)),
    )
    programmes = list(v.service.policy().programmes)
    chosen = {"month": month, "year": str(year or ""), "programme": programme, "region": region, "as_of": as_of_text}
    context = {"rows": rows, "totals": totals, "amounts": shown, "programmes": programmes, "chosen": chosen}
    return Report("balances", t("reports.balances"), header, sheet, context)


# --- 年度汇总 ----------------------------------------------------------------------------------------------


def _standard_text(standard: dict[str, Any] | None) -> str:
    """As offices publish it: 555.00 元/月, 3,906.00 元/年, or the age tiers."""
    if not standard:
        return t("none")
    per = t(f"reports.per.{standard['per']}")
    if "amount" in standard:
        return f"{standard['amount']} 元/{per}"
    return "；".join(t("reports.by_age", age=age, amount=amount, per=per) for age, amount in standard["by_age"])


def build_summary(v: Visit, request: Request) -> Report:
    """`report summary --year YYYY [--through YYYY-MM]`: 标准 / 户 / 人 / 万元 per programme."""
    year = _checked_year(_param(request, "year"), v.web.today().year)
    assert year is not None
    through = _checked_month(_param(request, "through"), "through")
    try:
        rows = v.service.summary(year, Month.parse(through) if through else None)
    except RuleBroken as e:
        raise BadInput(str(e)) from e
    last = rows[0]["through"] if rows else (through or f"{year}-12")
    header = [t("reports.summary_through", year=year, month=int(last[-2:])), _positions_line(v)]
    sheet = ReportSheet(
        title=t("reports.summary"),
        header_lines=(*header, *(r["sentence"] for r in rows)),
        headings=(
            t("col.programme"),
            t("reports.col.standard"),
            t("reports.col.caseload_period"),
            t("reports.col.households"),
            t("col.persons"),
            t("reports.col.paid_yuan"),
            t("reports.col.paid_wan"),
        ),
        kinds=("text", "text", "text", "count", "count", "amount", "wan"),
        rows=[
            (
                r["name"],
                _standard_text(r["standard"]),
                r["caseload_period"],
                r["households"],
                r["persons"],
                r["paid_fen"],
                r["paid_wan"],
            )
            for r in rows
        ],
    )
    shown = [{**r, "standard_text": _standard_text(r["standard"])} for r in rows]
    context = {"rows": shown, "chosen": {"year": str(year), "through": through}}
    return Report("summary", t("reports.summary"), header, sheet, context)


# --- 按时发放率 ---------------------------------------------------------------------------------------------


def build_on_time(v: Visit, request: Request) -> Report:
    """`report on-time --year YYYY [--today DATE]` (the page's today is the server's, as the CLI's)."""
    day = _checked_day(_param(request, "today"), v.web.today())
    year = _checked_year(_param(request, "year"), day.year)
    assert year is not None
    rows = v.service.on_time(year, day)
    pname = v.service.policy().payment_name
    header = [t("reports.on_time_through", year=year, today=day.isoformat()), _positions_line(v)]
    sheet = ReportSheet(
        title=t("reports.on_time"),
        header_lines=tuple(header),
        headings=(
            t("col.programme"),
            t("col.region"),
            t("col.month"),
            t("col.due"),
            t("col.on_time"),
            t("col.on_time_rate"),
            t("reports.col.ytd_due"),
            t("reports.col.ytd_on_time"),
            t("reports.col.ytd_rate"),
        ),
        kinds=("text", "text", "text", "count", "count", "percent", "count", "count", "percent"),
        rows=[
            (
                pname(r["programme"]),
                r["region"],
                r["month"],
                r["due"],
                r["on_time"],
                r["rate"],
                r["ytd_due"],
                r["ytd_on_time"],
                r["ytd_rate"],
            )
            for r in rows
        ],
    )
    context = {"rows": rows, "chosen": {"year": str(year), "today": day.isoformat()}}
    return Report("on-time", t("reports.on_time"), header, sheet, context)


# --- 到账期限 ----------------------------------------------------------------------------------------------


def build_deadlines(v: Visit, request: Request) -> Report:
    """`report deadlines [--today DATE]`: each batch's due date, last safe day and state."""
    day = _checked_day(_param(request, "today"), v.web.today())
    rows = v.service.deadlines(day)
    pname = v.service.policy().payment_name
    header = [t("reports.deadlines_today", today=day.isoformat()), _positions_line(v)]
    sheet = ReportSheet(
        title=t("reports.deadlines"),
        header_lines=tuple(header),
        headings=(
            t("col.batch"),
            t("col.programme"),
            t("col.region"),
            t("col.period"),
            t("col.payments"),
            t("col.amount"),
            t("col.due_date"),
            t("col.last_safe_day"),
            t("col.deadline_state"),
            t("col.state"),
            t("reports.col.year_end"),
        ),
        kinds=("text", "text", "text", "text", "count", "amount", "text", "text", "text", "text", "text"),
        rows=[
            (
                r["batch"],
                pname(r["programme"]),
                r["region"],
                r["period"],
                r["payments"],
                r["total_fen"],
                r["due_date"],
                r["last_safe_day"] or t("deadline.unknown"),
                t(f"deadline.{r['state']}"),
                formats.state_word(r["status"]),
                t("reports.year_end_breach") if r["year_end_breach"] else "",
            )
            for r in rows
        ],
        total=(
            t("reports.total"),
            "",
            "",
            "",
            sum(r["payments"] for r in rows),
            sum(r["total_fen"] for r in rows),
            "",
            "",
            "",
            "",
            "",
        ),
    )
    context = {"rows": rows, "chosen": {"today": day.isoformat()}}
    return Report("deadlines", t("reports.deadlines"), header, sheet, context)


# --- 追回 -------------------------------------------------------------------------------------------------


def build_recoveries(v: Visit, request: Request) -> Report:
    """`report recoveries [--all]`: 多发追回 still to collect or write off (names masked by role)."""
    show_all = _param(request, "all") in ("1", "true", "on")
    me = v.identity
    rows = [
        {**view.as_json(), "name": formats.shown_name(view.name, me), "id_number": formats.shown_id(view.id_number, me)}
        for view in v.service.recoveries(open_only=not show_all)
    ]
    pname = v.service.policy().payment_name
    header = [t("reports.recoveries_all") if show_all else t("reports.recoveries_open"), _positions_line(v)]
    sheet = ReportSheet(
        title=t("reports.recoveries"),
        header_lines=tuple(header),
        headings=(
            t("reports.col.recovery"),
            t("col.id_number"),
            t("col.name"),
            t("col.programme"),
            t("col.period"),
            t("col.region"),
            *(t(f"reports.col.recovery_{key}") for key in RECOVERY_AMOUNTS),
            t("col.run_month"),
        ),
        kinds=("text", "text", "text", "text", "text", "text", *("amount" for _ in RECOVERY_AMOUNTS), "text"),
        rows=[
            (
                r["id"][:12],
                r["id_number"],
                r["name"],
                pname(r["programme"]),
                r["period"],
                r["region"],
                *(r[key] for key in RECOVERY_AMOUNTS),
                r["since"],
            )
            for r in rows
        ],
        total=(t("reports.total"), "", "", "", "", "", *(sum(r[key] for r in rows) for key in RECOVERY_AMOUNTS), ""),
    )
    totals = {key: sum(r[key] for r in rows) for key in RECOVERY_AMOUNTS}
    context = {"rows": rows, "totals": totals, "amounts": RECOVERY_AMOUNTS, "chosen": {"all": show_all}}
    return Report("recoveries", t("reports.recoveries"), header, sheet, context)


_route("balances", build_balances)
_route("summary", build_summary)
_route("on-time", build_on_time)
_route("deadlines", build_deadlines)
_route("recoveries", build_recoveries)
