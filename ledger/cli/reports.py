"""Reports: balances, deadlines, the published summary, the on-time rate and its chart.

`ledger.reports` is imported inside the commands that use it, not at start-up: it loads SQLAlchemy and
the read models (~0.2 s), which the other commands do not need.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click

from domain.errors import RuleBroken
from domain.money import format_yuan
from domain.periods import Month
from ledger.cli.context import Context, pass_context
from ledger.cli.output import Grid, Shown, render

BALANCE_HEADINGS = ("区划", "项目", "期间", "户", "人", "应发", "已导出", "已到账", "退回", "未到账")
BALANCE_AMOUNTS = ("accrued_fen", "exported_fen", "paid_fen", "returned_fen", "outstanding_fen")
DEADLINE_HEADINGS = ("批次", "项目", "期间", "笔数", "到账期限", "最迟报送日", "状态", "跨年")
RECOVERY_HEADINGS = ("追回", "身份证号", "姓名", "项目", "期间", "区划", "应追回", "已追回", "已核销", "待追回", "月结")
SUMMARY_HEADINGS = ("项目", "名称", "标准", "户", "人", "发放(万元)")
REVIEW_HEADINGS = ("身份证号", "姓名", "项目", "区划", "上次复核", "应复核")
ON_TIME_HEADINGS = ("项目", "区划", "月", "应发", "按时", "按时发放率", "累计", "累计按时", "累计按时发放率")


@click.group()
def report() -> None:
    """Reports."""


@report.command("balances")
@click.option("--month", help="periods falling due in this month (YYYY-MM)")
@click.option("--year", help="periods of this year (YYYY)")
@click.option("--programme", help="one programme")
@click.option("--region", help="one region code")
@click.option("--as-of", "as_of", help="answer from the events recorded up to this moment (ISO 8601)")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def report_balances(
    c: Context,
    month: str | None,
    year: str | None,
    programme: str | None,
    region: str | None,
    as_of: str | None,
    as_json: bool,
) -> None:
    """Accrued, exported, paid, returned and outstanding per region, programme and period."""
    if month:
        Month.parse(month)
    moment = _moment(as_of) if as_of else None
    rows = c.service().balances(month=month, year=year, programme=programme, region=region, as_of=moment)
    stamp = (moment or datetime.now(UTC)).isoformat()
    table = Grid(
        BALANCE_HEADINGS,
        [_balance_cells(r) for r in rows],
        title=f"余额 as of {stamp}",
        right=frozenset(BALANCE_HEADINGS[3:]),
    )
    render([table], as_json=as_json, data={"as_of": stamp, "rows": rows})


def _balance_cells(r: dict[str, Any]) -> tuple[str, ...]:
    counts = (r["region"], r["programme"], r["period"], str(r["households"]), str(r["persons"]))
    return (*counts, *(format_yuan(r[k]) for k in BALANCE_AMOUNTS))


def _moment(text: str) -> datetime:
    """An ISO 8601 moment; a date alone means the end of that day, a naive time is UTC."""
    try:
        if len(text) == 10:
            return datetime.fromisoformat(text).replace(hour=23, minute=59, second=59, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise RuleBroken(f"--as-of {text!r}: not an ISO 8601 date or time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@report.command("recoveries")
@click.option("--all", "show_all", is_flag=True, help="also recoveries with nothing remaining")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def report_recoveries(c: Context, show_all: bool, as_json: bool) -> None:
    """Recoveries due (多发追回) with what remains after offsets, collections and write-offs: what the
    office still has to collect (`recovery collect`) or have written off (`recovery write-off`)."""
    rows = [v.as_json() for v in c.service().recoveries(open_only=not show_all)]
    table = Grid(
        RECOVERY_HEADINGS,
        [_recovery_cells(r) for r in rows],
        right=frozenset({"应追回", "已追回", "已核销", "待追回"}),
    )
    render([table], as_json=as_json, data=rows)


def _recovery_cells(r: dict[str, Any]) -> tuple[str, ...]:
    return (
        r["id"][:12], r["id_number"], r["name"], r["programme"], r["period"], r["region"],
        format_yuan(r["due_fen"]), format_yuan(r["recovered_fen"]), format_yuan(r["written_off_fen"]),
        format_yuan(r["remaining_fen"]), r["since"],
    )  # fmt: skip


@report.command("deadlines")
@click.option("--today", type=click.DateTime(["%Y-%m-%d"]), help="judge as of this date (default: today)")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def report_deadlines(c: Context, today: datetime | None, as_json: bool) -> None:
    """Each batch with its due date, the last safe day to hand the file to the bank, and its state."""
    rows = c.service().deadlines(today.date() if today else date.today())
    render([Grid(DEADLINE_HEADINGS, [_deadline_cells(r) for r in rows])], as_json=as_json, data=rows)


def _deadline_cells(r: dict[str, Any]) -> tuple[str, ...]:
    return (
        r["batch"][:12],
        r["programme"],
        r["period"],
        str(r["payments"]),
        r["due_date"],
        r["last_safe_day"] or "unknown",
        r["state"],
        "breach" if r["year_end_breach"] else "",
    )


@report.command("summary")
@click.option("--year", required=True, type=int, help="the year reported (YYYY)")
@click.option("--through", help="the last month counted (YYYY-MM; default: December)")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def report_summary(c: Context, year: int, through: str | None, as_json: bool) -> None:
    """Standard, households, persons and amount paid (万元) per programme, as civil-affairs offices publish."""
    rows = c.service().summary(year, Month.parse(through) if through else None)
    render(_summary_shown(rows, year, through), as_json=as_json, data={"year": year, "rows": rows})


def _summary_shown(rows: list[dict[str, Any]], year: int, through: str | None) -> Iterator[Shown]:
    """The table, then each programme's sentence as the offices publish it."""
    yield Grid(
        SUMMARY_HEADINGS,
        [_summary_cells(r) for r in rows],
        title=f"{year} 截至 {rows[0]['through'] if rows else through or year}",
        right=frozenset({"户", "人", "发放(万元)"}),
    )
    for r in rows:
        yield r["sentence"]


def _summary_cells(r: dict[str, Any]) -> tuple[str, ...]:
    standard = r["standard"] or {}
    text = f"{standard['amount']}/{standard['per']}" if "amount" in standard else ("分档" if standard else "—")
    return (r["programme"], r["name"], text, str(r["households"]), str(r["persons"]), r["paid_wan"])


@report.command("reviews")
@click.option("--due", "due", type=click.DateTime(["%Y-%m-%d"]), help="reviews due by this date (default: today)")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def report_reviews(c: Context, due: datetime | None, as_json: bool) -> None:
    """Households whose review (复核, 004_… 二.7) is due by the date: the policy's `review_months` after the
    last review (the enrolment's start or its latest `decide change`). docs/entitlement.md, "Reviews"."""
    day = due.date() if due else date.today()
    rows = c.service().reviews(day)
    table = Grid(REVIEW_HEADINGS, [_review_cells(r) for r in rows], title=f"复核 due by {day.isoformat()}")
    render([table], as_json=as_json, data={"due_by": day.isoformat(), "rows": rows})


def _review_cells(r: dict[str, Any]) -> tuple[str, ...]:
    return (r["id_number"], r["name"], r["programme"], r["region"], r["last_review"], r["due_date"])


@report.command("on-time")
@click.option("--year", required=True, type=int, help="the year reported (YYYY)")
@click.option("--today", type=click.DateTime(["%Y-%m-%d"]), help="count payments due by this date (default: today)")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def report_on_time(c: Context, year: int, today: datetime | None, as_json: bool) -> None:
    """按时发放率: payments in the account by their due date ÷ payments due, by month and year to date."""
    rows = c.service().on_time(year, today.date() if today else None)
    render([Grid(ON_TIME_HEADINGS, [_on_time_cells(r) for r in rows])], as_json=as_json, data=rows)


def _on_time_cells(r: dict[str, Any]) -> tuple[str, ...]:
    return (
        r["programme"], r["region"], r["month"], str(r["due"]), str(r["on_time"]), r["rate"] or "—",
        str(r["ytd_due"]), str(r["ytd_on_time"]), r["ytd_rate"] or "—",
    )  # fmt: skip


@report.command("chart")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="FILE.png")
@click.option("--year", type=int, help="the year charted (default: the latest with payments)")
@pass_context
def report_chart(c: Context, out: Path, year: int | None) -> None:
    """A PNG of monthly disbursement per programme and the on-time rate."""
    chosen = c.service().chart(out, year)
    render([f"{out}: {chosen}"])
