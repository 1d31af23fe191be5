"""Reports from the read models: balances, the statistics offices publish, the on-time rate, a chart.

Guarantees:
- Every report first catches the read models up (`projections.runner.catch_up`), so it answers from
  the whole log as recorded when it runs; `balances_rows(as_of=…)` answers instead from the events
  recorded up to a moment, with the reference fold (what we knew then, not today's read model).
- Money stays integer fen until it is printed: 万元 is printed with two decimals, rounded half-up to
  the 0.01 万元 (100 元), and rates are exact fractions printed as percentages with two decimals,
  rounded half-up. Floats appear only as chart coordinates.
- Counting follows `projections.balances`: obligations, not attempts (a re-issue is not a second
  payee), so a returned-then-re-issued payment is one payment, paid once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, and_, case, extract, func, select

from domain.errors import RuleBroken
from domain.money import format_yuan
from domain.periods import Month, Period
from domain.policy import NoStandardInForce, Policy
from ledger.storage import Database
from projections.balances import BALANCE_KEYS
from projections.read_models import PAID, balances, open_engine, payments, reading
from projections.runner import RunStats
from projections.runner import catch_up as _catch_up

FEN_PER_WAN = 1_000_000  # 1 万元 = 10 000 元 = 1 000 000 fen
FEN_PER_WAN_HUNDREDTH = FEN_PER_WAN // 100


class BadReportPeriod(RuleBroken):
    """A report's month lies outside its year (e.g. `--through 2021-11` with `--year 2020`)."""


def catch_up(db: Database) -> RunStats:
    """Bring the read models to the end of the log; every command calls this before it returns."""
    return _catch_up(db)


class ServedReads:
    """How a long-running server's many readers read the reports (the web application, issue 15 "Load").

    A command answers from the whole log: it catches the read models up first. A server answering twenty
    people while a month-end of 10⁵ payments is being written in another process must not: each request
    would take the store's write lock to project the month-end's pages as they land, contending with the
    month-end's own writes, and the projection's CPU would stall every other request of the process. So:
    - a served read catches up a backlog of at most `backlog_max` events (a bank result, an export, a
      decision: the read models stay exact after ordinary work); a larger one is its writer's to catch up
      (every command does before it returns, the month-end too, and every POST of the server), and until
      then the report answers as of the read models' position;
    - rows are kept per report and arguments with the read models' position they were computed at, for at
      most `kept_s` seconds: at the same position they are the answer (twenty dashboards compute
      `on_time_rows`, a GROUP BY over every payment, once); while the log is ahead of the read models by
      more than `backlog_max` (a writer at work: the models move page by page, or not at all) the kept
      rows answer whatever the position, as they would have a moment ago. Once the models are current
      again the next read computes exact rows; while one request computes them, the others asking for the
      same rows answer with the latest kept (exact a moment ago) instead of waiting behind it.
    """

    def __init__(self, *, backlog_max: int = 5_000, kept_s: float = 30.0, entries_max: int = 256) -> None:
        self.backlog_max = backlog_max
        self.kept_s = kept_s
        self.entries_max = entries_max
        self._rows: dict[tuple[Any, ...], tuple[int, float, list[dict[str, Any]]]] = {}
        self._locks: dict[tuple[Any, ...], threading.Lock] = {}
        self._lock = threading.Lock()

    def rows(
        self, key: tuple[Any, ...], stats: RunStats, compute: Callable[[], list[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        """The rows of `key` at the read models' position in `stats` (a bounded catch-up's outcome)."""
        kept = self._usable(key, stats)
        if kept is not None:
            return kept
        with self._lock:
            one = self._locks.setdefault(key, threading.Lock())
        if not one.acquire(blocking=False):
            kept = self._usable(key, stats, computing=True)
            if kept is not None:
                return kept
            one.acquire()
        try:
            kept = self._usable(key, stats)
            if kept is not None:
                return kept
            fresh = compute()
            with self._lock:
                if len(self._rows) >= self.entries_max:
                    self._rows.clear()
                self._rows[key] = (stats.position, time.monotonic(), fresh)
            return [dict(row) for row in fresh]
        finally:
            one.release()

    def _usable(self, key: tuple[Any, ...], stats: RunStats, *, computing: bool = False) -> list[dict[str, Any]] | None:
        """Kept rows that may answer: at this position, or while the log is ahead of the read models, or
        (`computing`: another request is computing this position's rows right now) the latest kept."""
        kept = self._rows.get(key)
        if kept is None:
            return None
        position, at, rows = kept
        if time.monotonic() - at > self.kept_s:
            return None
        if position != stats.position and not stats.behind and not computing:
            return None
        return [dict(row) for row in rows]


def _served(
    db: Database, served: ServedReads | None, key: tuple[Any, ...], compute: Callable[[], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """A report's rows, caught up first (bounded for a server, see ServedReads)."""
    if served is None:
        catch_up(db)
        return compute()
    stats = _catch_up(db, backlog_max=served.backlog_max)
    return served.rows((db.url, *key), stats, compute)


# --- balances ----------------------------------------------------------------------------------------


def balances_rows(
    db: Database,
    *,
    month: str | None = None,
    year: str | None = None,
    programme: str | None = None,
    region: str | None = None,
    as_of: datetime | None = None,
    disbursement: Any = None,
    served: ServedReads | None = None,
) -> list[dict[str, Any]]:
    """`report balances`: the rows of DESIGN.md's `report balances --json`, sorted by period,
    programme, region. `month` selects periods that fall due (start) in that month, `year` every
    period of that year. With `as_of`, the answer is folded from the events recorded up to then."""
    if month:
        Month.parse(month)
    if as_of is not None:
        return _balances_as_of(db, as_of, disbursement, month=month, year=year, programme=programme, region=region)
    key = ("balances", month, year, programme, region)
    return _served(db, served, key, lambda: _balances_rows(db, month, year, programme, region))


def _balances_rows(
    db: Database, month: str | None, year: str | None, programme: str | None, region: str | None
) -> list[dict[str, Any]]:
    query = select(*(balances.c[key] for key in BALANCE_KEYS))
    if month:
        query = query.where(balances.c.period.in_(periods_starting_in(Month.parse(month))))
    if year:
        query = query.where(balances.c.period.startswith(year, autoescape=True))
    if programme:
        query = query.where(balances.c.programme == programme)
    if region:
        query = query.where(balances.c.region == region)
    query = query.order_by(balances.c.period, balances.c.programme, balances.c.region)
    with open_engine(db) as engine, reading(engine.connect()) as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def _balances_as_of(db: Database, as_of: datetime, disbursement: Any, **filters: Any) -> list[dict[str, Any]]:
    if disbursement is None:
        raise TypeError("balances as of a moment are folded from the log: pass the Disbursement application")
    return disbursement.balances(as_of).rows(**filters)  # type: ignore[no-any-return]


def periods_starting_in(month: Month) -> list[str]:
    """The period names that fall due in `month`: the month, and the quarter, half and year it opens."""
    names = [str(month)]
    if month.month % 3 == 1:
        names.append(f"{month.year}-Q{month.month // 3 + 1}")
    if month.month in (1, 7):
        names.append(f"{month.year}-H{month.month // 6 + 1}")
    if month.month == 1:
        names.append(str(month.year))
    return names


# --- the published summary (seed 003 二) -----------------------------------------------------------


def format_wan(amount_fen: int) -> str:
    """Fen as 万元 with two decimals, rounded half-up to 0.01 万元: 14023230000 → '14023.23'."""
    if amount_fen < 0:
        return "-" + format_wan(-amount_fen)
    hundredths = (amount_fen + FEN_PER_WAN_HUNDREDTH // 2) // FEN_PER_WAN_HUNDREDTH
    return f"{hundredths // 100}.{hundredths % 100:02d}"


def summary_rows(db: Database, policy: Policy, year: int, through_month: Month | None = None) -> list[dict[str, Any]]:
    """`report summary`: per programme, as offices publish it (seed 003 二: "城市低保标准每人每月840元,
    保障3426户、5601人 … 截至11月底发放低保金14023.23万元").

    - `standard`: in force on the last day of `through_month` (December when not given);
    - `households`, `persons`: the caseload of the programme's latest period of the year that starts
      by `through_month` and has accruals (obligations, as in `report balances`);
    - `paid_fen` / `paid_wan`: paid by the bank for periods of the year, settled by the end of
      `through_month` (settled_on; when a bank result carried no date, the date it was recorded).
    Programmes with nobody covered and nothing paid are left out, as offices leave them out.
    """
    through = through_month or Month(year, 12)
    if through.year != year:
        raise BadReportPeriod(f"--through {through} is not in {year}")
    last_day = through.plus(1).first_day - timedelta(days=1)
    catch_up(db)
    with open_engine(db) as engine, reading(engine.connect()) as conn:
        caseloads = _caseloads(conn, year, through)
        paid = _paid_by_programme(conn, year, last_day)
    rows = []
    for programme in policy.programmes.values():
        standard = _standard(policy, programme.key, last_day)
        period, households, persons = caseloads.get(programme.key, ("", 0, 0))
        paid_fen = paid.get(programme.key, 0)
        if not households and not paid_fen:
            continue  # nobody covered, nothing paid: nothing an office would publish
        row = {
            "programme": programme.key,
            "name": programme.name,
            "unit": programme.unit,
            "standard": standard,
            "caseload_period": period,
            "households": households,
            "persons": persons,
            "paid_fen": paid_fen,
            "paid_wan": format_wan(paid_fen),
            "through": str(through),
        }
        row["sentence"] = _sentence(row, through)
        rows.append(row)
    return rows


def _standard(policy: Policy, key: str, day: date) -> dict[str, Any] | None:
    try:
        standard = policy.standard_on(key, day)
    except NoStandardInForce:
        return None
    if standard.by_age:
        return {"per": standard.per, "by_age": [[age, format_yuan(fen)] for age, fen in standard.by_age]}
    return {"per": standard.per, "amount": format_yuan(standard.amount_fen)}


def _caseloads(conn: Connection, year: int, through: Month) -> dict[str, tuple[str, int, int]]:
    query = (
        select(balances.c.programme, balances.c.period, func.sum(balances.c.households), func.sum(balances.c.persons))
        .where(balances.c.period.startswith(str(year), autoescape=True), balances.c.households > 0)
        .group_by(balances.c.programme, balances.c.period)
    )
    latest: dict[str, tuple[Period, int, int]] = {}
    for programme, period_name, households, persons in conn.execute(query):
        period = Period.parse(period_name)
        if period.start > through:
            continue
        found = latest.get(programme)
        if found is None or period.start > found[0].start:
            latest[programme] = (period, int(households), int(persons))
    return {key: (p.name, h, n) for key, (p, h, n) in latest.items()}


def _paid_by_programme(conn: Connection, year: int, last_day: date) -> dict[str, int]:
    query = (
        select(payments.c.programme, func.sum(payments.c.amount_fen))
        .where(
            payments.c.status == PAID,
            payments.c.period.startswith(str(year), autoescape=True),
            payments.c.settled_on <= last_day,
        )
        .group_by(payments.c.programme)
    )
    return {programme: int(total) for programme, total in conn.execute(query)}


def _sentence(row: dict[str, Any], through: Month) -> str:
    """The published sentence, e.g. 城镇低保标准每人每月555元,保障2户、5人,截至11月底发放0.16万元。"""
    standard = row["standard"]
    if standard is None:
        text = f"{row['name']}"
    elif "amount" in standard:
        per = "月" if standard["per"] == "month" else "年"
        text = f"{row['name']}标准每人每{per}{_yuan_text(standard['amount'])}元"
    else:
        tiers = "、".join(f"{age}周岁以上{_yuan_text(amount)}元" for age, amount in standard["by_age"])
        text = f"{row['name']}标准每人每{'月' if standard['per'] == 'month' else '年'}{tiers}"
    if row["unit"] == "household":
        text += f",保障{row['households']}户、{row['persons']}人"
    else:
        text += f",共保障{row['persons']}人"
    return text + f",截至{through.month}月底发放{row['paid_wan']}万元。"


def _yuan_text(amount: str) -> str:
    """'840.00' → '840', '325.50' → '325.50': whole yuan print as offices print them."""
    return amount[:-3] if amount.endswith(".00") else amount


# --- the on-time rate (按时发放率, seed 000 一) ------------------------------------------------------


def percent(part: int, whole: int) -> str | None:
    """part / whole as a percentage with two decimals, exact until rounded half-up: 2/3 → '66.67%'."""
    if whole == 0:
        return None
    hundredths = Fraction(part * 10_000, whole) + Fraction(1, 2)
    value = hundredths.numerator // hundredths.denominator
    return f"{value // 100}.{value % 100:02d}%"


@dataclass(slots=True)
class _Tally:
    due: int = 0
    on_time: int = 0


def on_time_rows(
    db: Database, year: int, *, today: date | None = None, served: ServedReads | None = None
) -> list[dict[str, Any]]:
    """按时发放率 per programme and region, by month of the due date, with the year to date.

    A payment is due on its due date (in the account by `due_day`, seed 000 一); it is on time when the
    bank paid it (by any attempt) on or before that date. Payments not yet due on `today` are not
    counted; arrears accrued late (补发) count in the month they were due, as late. Rows are per county
    (the payee's region) and, for each programme, for the whole policy region.
    """
    last_due = min(today or date.today(), date(year, 12, 31))
    return _served(db, served, ("on_time", year, last_due), lambda: _on_time_rows(db, year, last_due))


def _on_time_rows(db: Database, year: int, last_due: date) -> list[dict[str, Any]]:
    with open_engine(db) as engine, reading(engine.connect()) as conn:
        tallies = _on_time_tallies(conn, year, last_due)
    rows = []
    for (programme, region), months in sorted(tallies.items()):
        ytd = _Tally()
        for month_number in sorted(months):
            tally = months[month_number]
            ytd.due += tally.due
            ytd.on_time += tally.on_time
            rows.append(
                {
                    "programme": programme,
                    "region": region,
                    "month": f"{year:04d}-{month_number:02d}",
                    "due": tally.due,
                    "on_time": tally.on_time,
                    "rate": percent(tally.on_time, tally.due),
                    "ytd_due": ytd.due,
                    "ytd_on_time": ytd.on_time,
                    "ytd_rate": percent(ytd.on_time, ytd.due),
                }
            )
    return rows


def _on_time_tallies(conn: Connection, year: int, last_due: date) -> dict[tuple[str, str], dict[int, _Tally]]:
    on_time = func.max(
        case((and_(payments.c.status == PAID, payments.c.settled_on <= payments.c.due_date), 1), else_=0)
    )
    obligations = (
        select(
            func.min(payments.c.programme).label("programme"),
            func.min(payments.c.county).label("county"),
            func.min(payments.c.region).label("region"),
            func.min(payments.c.due_date).label("due_date"),
            on_time.label("on_time"),
        )
        .where(payments.c.due_date >= date(year, 1, 1), payments.c.due_date <= last_due)
        .group_by(payments.c.obligation_id)
        .subquery()
    )
    month = extract("month", obligations.c.due_date)
    query = select(
        obligations.c.programme,
        obligations.c.county,
        obligations.c.region,
        month,
        func.count(),
        func.sum(obligations.c.on_time),
    ).group_by(obligations.c.programme, obligations.c.county, obligations.c.region, month)
    tallies: dict[tuple[str, str], dict[int, _Tally]] = {}
    for programme, county, region, month_number, due, punctual in conn.execute(query):
        for place in (county, region):
            tally = tallies.setdefault((programme, place), {}).setdefault(int(month_number), _Tally())
            tally.due += int(due)
            tally.on_time += int(punctual or 0)
    return tallies


def latest_year(db: Database) -> int | None:
    """The latest year any period has accruals for (the default year of `report chart`), or None."""
    catch_up(db)
    with open_engine(db) as engine, reading(engine.connect()) as conn:
        latest = conn.execute(select(func.max(balances.c.period))).scalar()
    return int(latest[:4]) if latest else None


# --- the chart ---------------------------------------------------------------------------------------

_CJK_FAMILIES = ("Noto Sans CJK", "Noto Serif CJK", "Source Han", "WenQuanYi", "SimHei", "Microsoft YaHei",
                 "PingFang", "Heiti", "AR PL", "Droid Sans Fallback")  # fmt: skip


def write_chart(db: Database, policy: Policy, year: int, path: Path) -> Path:
    """A PNG of each month's disbursement per programme (paid, by settlement month, stacked bars) and
    the on-time rate of the payments due that month (line, right axis). Chinese labels when a CJK font
    is installed, programme keys otherwise (matplotlib's default font has no Chinese glyphs)."""
    catch_up(db)
    with open_engine(db) as engine, reading(engine.connect()) as conn:
        paid = _paid_by_month(conn, year)
    rates = _monthly_rates(on_time_rows(db, year), policy.region_code)
    _render_chart(policy, year, paid, rates, path)
    return path


def _paid_by_month(conn: Connection, year: int) -> dict[str, dict[int, int]]:
    month = extract("month", payments.c.settled_on)
    query = (
        select(payments.c.programme, month, func.sum(payments.c.amount_fen))
        .where(
            payments.c.status == PAID,
            payments.c.settled_on >= date(year, 1, 1),
            payments.c.settled_on <= date(year, 12, 31),
        )
        .group_by(payments.c.programme, month)
    )
    found: dict[str, dict[int, int]] = {}
    for programme, month_number, total in conn.execute(query):
        found.setdefault(programme, {})[int(month_number)] = int(total)
    return found


def _monthly_rates(rows: Iterable[dict[str, Any]], region: str) -> dict[int, Fraction]:
    due: dict[int, int] = {}
    on_time: dict[int, int] = {}
    for row in rows:
        if row["region"] != region:
            continue
        month_number = int(row["month"][5:])
        due[month_number] = due.get(month_number, 0) + row["due"]
        on_time[month_number] = on_time.get(month_number, 0) + row["on_time"]
    return {m: Fraction(on_time[m], due[m]) for m in due if due[m]}


def _render_chart(
    policy: Policy, year: int, paid: dict[str, dict[int, int]], rates: dict[int, Fraction], path: Path
) -> None:
    from matplotlib import rc_context

    family = _cjk_family()
    fonts = {"font.family": [family, "DejaVu Sans"]} if family else {}
    with rc_context(fonts):
        figure = _figure(policy, year, paid, rates, chinese=family is not None)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png", metadata={"Software": None})


def _figure(
    policy: Policy, year: int, paid: dict[str, dict[int, int]], rates: dict[int, Fraction], *, chinese: bool
) -> Any:
    # The object-oriented API on the Agg canvas: no pyplot, no global backend switch, no display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, PercentFormatter

    months = list(range(1, 13))
    figure = Figure(figsize=(11, 6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    bottoms = [0] * 12
    for key in sorted(paid, key=lambda k: -sum(paid[k].values())):
        heights = [paid[key].get(m, 0) // 100 for m in months]  # whole yuan: plotted, never summed
        label = policy.programmes[key].name if chinese and key in policy.programmes else key
        axes.bar(months, heights, bottom=bottoms, label=label)
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    decimals = 0 if max(bottoms) >= 1_000_000 else 2  # whole 万元 once the bars reach 100 万元
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value / 10_000:,.{decimals}f}"))
    axes.set_xticks(months)
    axes.set_xlabel("月" if chinese else "month")
    axes.set_ylabel("发放金额(万元)" if chinese else "paid (10k yuan)")
    rate_axes = axes.twinx()
    rate_months = sorted(rates)
    rate_label = "按时发放率" if chinese else "on-time rate"
    rate_axes.plot(
        rate_months, [float(rates[m] * 100) for m in rate_months], color="black", marker="o", label=rate_label
    )
    rate_axes.set_ylim(0, 105)
    rate_axes.yaxis.set_major_formatter(PercentFormatter())
    axes.set_title(f"{policy.region_name} {year}年 发放与按时发放率" if chinese else f"{policy.region_code} {year}")
    handles, labels = axes.get_legend_handles_labels()
    rate_handles, rate_labels = rate_axes.get_legend_handles_labels()
    if handles or rate_handles:
        # Below the plot, so that no bar hides behind it.
        axes.legend(
            handles + rate_handles,
            labels + rate_labels,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.1),
            ncol=5,
            fontsize="small",
            frameon=False,
        )
    figure.tight_layout()
    return figure


def _cjk_family() -> str | None:
    from matplotlib import font_manager

    for font in font_manager.fontManager.ttflist:
        if font.name.startswith(_CJK_FAMILIES):
            return str(font.name)
    return None
