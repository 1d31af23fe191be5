"""The day-to-day ledger: create it, load the policy, import the roster, record decisions and accounts,
run the month-end; and the demo that does all of it on a synthetic city."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click

from domain.errors import RuleBroken
from domain.identity import check_account
from domain.money import format_yuan, parse_yuan
from domain.periods import Month
from domain.policy import NoStandardInForce, Policy, repriced_periods
from domain.regions import region_contains
from ledger.apps import ImportSummary, NoPolicy, Registry
from ledger.audit import record_checkpoint
from ledger.cli.context import Context, pass_context
from ledger.cli.output import Grid, Line, Shown, render
from ledger.demo import run_demo
from ledger.disbursement import RunSummary
from ledger.history import batch_keys
from ledger.keys import init_key
from ledger.progress import progress
from ledger.roster import read_roster

DECISIONS = ("suspend", "resume", "terminate", "adjust", "phase-out")
WARNINGS_SHOWN_MAX = 50  # a roster's warnings printed one per line; the rest are counted
REPRICED_PERIODS_SHOWN_MAX = 12  # periods named in one re-pricing warning
POLICY_HEADINGS = ("项目", "名称", "对象", "发放周期", "到账日", "标准", "自")


@click.command()
@pass_context
def init(c: Context) -> None:
    """Create the event store's tables and, for a new ledger, its key file (personal data encrypted)."""
    c.authorise()
    status = init_key(c.db)
    c.apps()
    render([f"ledger ready at {c.db.url}", Line(status.message(), err=status.source == "none")])


# --- policy --------------------------------------------------------------------------------------


@click.group()
def policy() -> None:
    """Load and show the region's policy."""


@policy.command("load")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_context
def policy_load(c: Context, file: Path) -> None:
    """Load a policy TOML file (all or nothing)."""
    text = read_text(file)
    registry, disbursement = c.apps()
    before = _policy_or_none(registry)
    loaded = registry.load_policy(text, file.name, c.actor)
    render([f"loaded policy for {loaded.region_name} ({loaded.region_code}): {len(loaded.programmes)} programmes"])
    if before is not None:
        repriced = repriced_periods(before, loaded, batch_keys(disbursement))
        render(Line(_repriced_warning(key, periods), err=True) for key, periods in repriced.items())


def _policy_or_none(registry: Registry) -> Policy | None:
    try:
        return registry.policy()
    except NoPolicy:
        return None


def _repriced_warning(key: str, periods: list[str]) -> str:
    shown = ", ".join(periods[:REPRICED_PERIODS_SHOWN_MAX])
    if len(periods) > REPRICED_PERIODS_SHOWN_MAX:
        shown += f" … ({len(periods)} periods)"
    return (
        f"warning: {key}: the standard for {shown}, already accrued, differs in this policy; "
        "those payments keep the amounts accrued (yikatong does not re-price them), so any "
        "difference is to be settled outside this run"
    )


@policy.command("show")
@click.option("--on", "on", type=click.DateTime(["%Y-%m-%d"]), help="standards in force on this date")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def policy_show(c: Context, on: datetime | None, as_json: bool) -> None:
    """The programmes and the standard each has in force."""
    registry, _ = c.apps()
    loaded = registry.policy()
    rows = _policy_rows(loaded, on.date() if on else None)
    title = f"{loaded.region_name} ({loaded.region_code})"
    data = {"region": loaded.region_code, "name": loaded.region_name, "programmes": rows}
    render([Grid(POLICY_HEADINGS, [_policy_cells(r) for r in rows], title=title)], as_json=as_json, data=data)


def _policy_cells(r: dict[str, Any]) -> tuple[str, ...]:
    return (r["programme"], r["name"], r["unit"], r["cadence"], str(r["due_day"]), r["standard"], r["from"])


def _policy_rows(loaded: Policy, on: date | None) -> list[dict[str, Any]]:
    rows = []
    for p in loaded.programmes.values():
        day = on or (p.standards[-1].effective_from if p.standards else date.today())
        rows.append(
            {
                "programme": p.key,
                "name": p.name,
                "unit": p.unit,
                "cadence": p.cadence,
                "due_day": p.due_day,
                "standard": _standard_text(loaded, p.key, day),
                "from": day.isoformat() if p.standards else "",
            }
        )
    return rows


def _standard_text(loaded: Policy, programme: str, day: date) -> str:
    try:
        s = loaded.standard_on(programme, day)
    except NoStandardInForce:
        return "—"
    if s.by_age:
        return ", ".join(f"{age}+: {format_yuan(f)}" for age, f in s.by_age) + f" /{s.per}"
    return f"{format_yuan(s.amount_fen)} /{s.per}"


# --- roster and decisions ---------------------------------------------------------------------------


@click.group()
def roster() -> None:
    """Import enrolments."""


@roster.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="counts and warnings as JSON")
@pass_context
def roster_import(c: Context, file: Path, as_json: bool) -> None:
    """Import a roster CSV: all rows or none; every bad row is reported with its line number."""
    registry, _ = c.apps()
    loaded = registry.policy()
    rows = read_roster(file, region=loaded.region_code, programmes=loaded.programmes.keys())
    with progress("importing roster", len(rows)) as advance:
        summary = registry.import_roster(rows, file.name, c.actor, advance)
    record_checkpoint(registry)
    render(_import_lines(summary), as_json=as_json, data=_import_json(file, summary))


def _import_lines(summary: ImportSummary) -> Iterator[Shown]:
    for warning in summary.warnings[:WARNINGS_SHOWN_MAX]:
        yield Line(f"warning: {warning}", err=True)
    if len(summary.warnings) > WARNINGS_SHOWN_MAX:
        yield Line(f"warning: … and {len(summary.warnings) - WARNINGS_SHOWN_MAX} more", err=True)
    yield (
        f"imported {summary.enrolled} enrolments ({summary.households} households, {summary.persons} persons)"
        + (f"; {summary.unchanged} already enrolled, unchanged" if summary.unchanged else "")
    )


def _import_json(file: Path, summary: ImportSummary) -> dict[str, Any]:
    return {
        "file": file.name,
        "enrolled": summary.enrolled,
        "unchanged": summary.unchanged,
        "households": summary.households,
        "persons": summary.persons,
        "warnings": list(summary.warnings),
    }


@click.command()
@click.argument("kind", type=click.Choice(DECISIONS))
@click.argument("id_number")
@click.argument("programme")
@click.option("--on", "on", required=True, type=click.DateTime(["%Y-%m-%d"]), help="effective date")
@click.option("--reason", required=True, help="decision document number, e.g. 乌海政发〔2014〕73号")
@click.option("--amount", help="adjust: the approved monthly amount in yuan")
@pass_context
def decide(
    c: Context, kind: str, id_number: str, programme: str, on: datetime, reason: str, amount: str | None
) -> None:
    """Record an eligibility decision on one enrolment."""
    amount_fen = parse_yuan(amount) if amount is not None else None
    registry, _ = c.apps()
    registry.decide(
        kind=kind,
        id_number=id_number.upper(),
        programme=programme,
        on=on.date(),
        actor=c.actor,
        reason=reason,
        amount_fen=amount_fen,
    )
    render([f"{kind} {programme} for {id_number} from {on.date().isoformat()} recorded"])


@click.group()
def account() -> None:
    """一卡通 accounts."""


@account.command("set")
@click.argument("id_number")
@click.option("--bank", required=True, help="bank code (CNAPS)")
@click.option("--account", "account_no", required=True, help="一卡通 account number")
@click.option("--reason", required=True)
@pass_context
def account_set(c: Context, id_number: str, bank: str, account_no: str, reason: str) -> None:
    """Record a corrected 一卡通 account; later payments go there."""
    number, warnings = check_account(account_no)
    render(Line(f"warning: {w}", err=True) for w in warnings)
    if not bank.isdigit():
        raise click.BadParameter("bank code must be digits", param_hint="--bank")
    registry, _ = c.apps()
    changed = registry.set_account(
        id_number=id_number.upper(), bank_code=bank, account=number, reason=reason, actor=c.actor
    )
    render(["account changed" if changed else "account unchanged: nothing recorded"])


# --- month-end ------------------------------------------------------------------------------------


@click.command()
@click.argument("month")
@click.option("--region", help="only enrolments inside this division code")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def run(c: Context, month: str, region: str | None, as_json: bool) -> None:
    """Accrue everything payable in MONTH (YYYY-MM); running it again accrues nothing new."""
    # SQLAlchemy and the read models load here, not at start-up (~0.2 s the read-only commands skip).
    from ledger.reports import catch_up

    run_month = Month.parse(month)
    started = time.perf_counter()
    summary = _run(c, run_month, region)
    accrued_at = time.perf_counter()
    # Seal both logs (ledger.audit): from here on, any edit to what the month-end read or wrote is detected.
    registry, disbursement = c.apps()
    record_checkpoint(disbursement)
    record_checkpoint(registry)
    sealed_at = time.perf_counter()
    catch_up(c.db)  # the read models follow before the command returns (docs/projections.md)
    data = {
        "month": summary.run_month,
        "scope": summary.scope,
        "payments": summary.payments,
        "total_fen": summary.total_fen,
        "late": summary.late,
        "batches": len(summary.batches),
        "already_accrued": summary.already_accrued,
        "reissued": summary.reissued,
        "awaiting_account": summary.awaiting_account,
        "month_end_s": round(accrued_at - started, 3),
        "seal_s": round(sealed_at - accrued_at, 3),
        "projections_s": round(time.perf_counter() - sealed_at, 3),
    }
    line = (
        f"{summary.run_month}: accrued {summary.payments} payments, {format_yuan(summary.total_fen)} 元"
        f" in {len(summary.batches)} batches ({summary.late} late)"
    )
    render([line], as_json=as_json, data=data)


def _run(c: Context, run_month: Month, region: str | None) -> RunSummary:
    registry, disbursement = c.apps()
    with progress("reading registry", None) as advance:
        snapshot = registry.read_registry(advance)
    scope = region or snapshot.policy.region_code
    if not region_contains(snapshot.policy.region_code, scope):
        raise RuleBroken(f"region {scope} is outside the policy's region {snapshot.policy.region_code}")
    with progress(f"month-end {run_month}", None) as advance:
        summary = disbursement.run_month_end(snapshot, run_month, scope=scope, actor=c.actor, advance=advance)
    return summary


@click.command()
@click.option("--households", default=300, show_default=True, help="size of the generated city")
@click.option("--months", default=12, show_default=True, help="month-ends to run, from 2017-01")
@pass_context
def demo(c: Context, households: int, months: int) -> None:
    """The main job end to end on a synthetic city, on the embedded store."""
    run_demo(c, households=households, months=months)


def read_text(file: Path) -> str:
    """A user's text file (a policy), as `policy load` reads it: UTF-8, with or without a BOM."""
    try:
        data = file.read_bytes()
    except OSError as e:
        raise RuleBroken(f"{file}: cannot read: {e.strerror}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RuleBroken(f"{file}: not UTF-8 text") from None
