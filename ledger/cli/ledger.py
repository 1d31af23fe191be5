"""The day-to-day ledger: create it, load the policy, import the roster, record decisions and accounts,
run the month-end; and the demo that does all of it on a synthetic city."""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from domain.errors import RuleBroken
from domain.money import format_yuan, parse_yuan
from domain.periods import Month
from ledger.audit import record_checkpoint
from ledger.cli.context import Context, pass_context
from ledger.cli.errors import refusals
from ledger.progress import progress

DECISIONS = ("suspend", "resume", "terminate", "adjust", "phase-out")


@click.command()
@pass_context
def init(c: Context) -> None:
    """Create the event store's tables and, for a new ledger, its key file (personal data encrypted)."""
    from ledger.keys import init_key

    with refusals():
        c.authorise()
        status = init_key(c.db)
        c.apps()
        click.echo(f"ledger ready at {c.db.url}")
        click.echo(status.message(), err=status.source == "none")


# --- policy --------------------------------------------------------------------------------------


@click.group()
def policy() -> None:
    """Load and show the region's policy."""


@policy.command("load")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_context
def policy_load(c: Context, file: Path) -> None:
    """Load a policy TOML file (all or nothing)."""
    from domain.policy import repriced_periods
    from ledger.apps import NoPolicy
    from ledger.history import batch_keys

    with refusals():
        text = read_text(file)
        registry, disbursement = c.apps()
        try:
            before = registry.policy()
        except NoPolicy:
            before = None
        loaded = registry.load_policy(text, file.name, c.actor)
        click.echo(
            f"loaded policy for {loaded.region_name} ({loaded.region_code}): {len(loaded.programmes)} programmes"
        )
        if before is not None:
            for key, periods in repriced_periods(before, loaded, batch_keys(disbursement)).items():
                shown = ", ".join(periods[:12]) + (f" … ({len(periods)} periods)" if len(periods) > 12 else "")
                click.echo(
                    f"warning: {key}: the standard for {shown}, already accrued, differs in this policy; "
                    "those payments keep the amounts accrued (yikatong does not re-price them), so any "
                    "difference is to be settled outside this run",
                    err=True,
                )


@policy.command("show")
@click.option("--on", "on", type=click.DateTime(["%Y-%m-%d"]), help="standards in force on this date")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def policy_show(c: Context, on: Any, as_json: bool) -> None:
    """The programmes and the standard each has in force."""
    with refusals():
        registry, _ = c.apps()
        loaded = registry.policy()
        rows = _policy_rows(loaded, on.date() if on else None)
        if as_json:
            click.echo(
                json.dumps(
                    {"region": loaded.region_code, "name": loaded.region_name, "programmes": rows},
                    ensure_ascii=False,
                )
            )
            return
        table = Table(title=f"{loaded.region_name} ({loaded.region_code})")
        for heading in ("项目", "名称", "对象", "发放周期", "到账日", "标准", "自"):
            table.add_column(heading)
        for r in rows:
            table.add_row(
                r["programme"],
                r["name"],
                r["unit"],
                r["cadence"],
                str(r["due_day"]),
                r["standard"],
                r["from"],
            )
        Console().print(table)


def _policy_rows(loaded: Any, on: date | None) -> list[dict[str, Any]]:
    from domain.policy import NoStandardInForce

    rows = []
    for p in loaded.programmes.values():
        day = on or (p.standards[-1].effective_from if p.standards else date.today())
        try:
            s = loaded.standard_on(p.key, day)
            if s.by_age:
                text = ", ".join(f"{age}+: {format_yuan(f)}" for age, f in s.by_age) + f" /{s.per}"
            else:
                text = f"{format_yuan(s.amount_fen)} /{s.per}"
        except NoStandardInForce:
            text = "—"
        rows.append(
            {
                "programme": p.key,
                "name": p.name,
                "unit": p.unit,
                "cadence": p.cadence,
                "due_day": p.due_day,
                "standard": text,
                "from": day.isoformat() if p.standards else "",
            }
        )
    return rows


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
    from ledger.roster import read_roster

    with refusals():
        registry, _ = c.apps()
        loaded = registry.policy()
        rows = read_roster(file, region=loaded.region_code, programmes=loaded.programmes.keys())
        with progress("importing roster", len(rows)) as advance:
            summary = registry.import_roster(rows, file.name, c.actor, advance)
        record_checkpoint(registry)
        if as_json:
            click.echo(json.dumps(_import_json(file, summary), ensure_ascii=False))
            return
        for warning in summary.warnings[:50]:
            click.echo(f"warning: {warning}", err=True)
        if len(summary.warnings) > 50:
            click.echo(f"warning: … and {len(summary.warnings) - 50} more", err=True)
        click.echo(
            f"imported {summary.enrolled} enrolments ({summary.households} households, {summary.persons} persons)"
            + (f"; {summary.unchanged} already enrolled, unchanged" if summary.unchanged else "")
        )


def _import_json(file: Path, summary: Any) -> dict[str, Any]:
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
def decide(c: Context, kind: str, id_number: str, programme: str, on: Any, reason: str, amount: str | None) -> None:
    """Record an eligibility decision on one enrolment."""
    with refusals():
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
        click.echo(f"{kind} {programme} for {id_number} from {on.date().isoformat()} recorded")


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
    from domain.identity import check_account

    with refusals():
        number, warnings = check_account(account_no)
        for w in warnings:
            click.echo(f"warning: {w}", err=True)
        if not bank.isdigit():
            raise click.BadParameter("bank code must be digits", param_hint="--bank")
        registry, _ = c.apps()
        changed = registry.set_account(
            id_number=id_number.upper(), bank_code=bank, account=number, reason=reason, actor=c.actor
        )
        click.echo("account changed" if changed else "account unchanged: nothing recorded")


# --- month-end ------------------------------------------------------------------------------------


@click.command()
@click.argument("month")
@click.option("--region", help="only enrolments inside this division code")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def run(c: Context, month: str, region: str | None, as_json: bool) -> None:
    """Accrue everything payable in MONTH (YYYY-MM); running it again accrues nothing new."""
    with refusals():
        run_month = Month.parse(month)
        started = time.perf_counter()
        summary = _run(c, run_month, region)
        accrued_at = time.perf_counter()
        # Seal both logs (ledger.audit): from here on, any edit to what the month-end read or wrote is detected.
        registry, disbursement = c.apps()
        record_checkpoint(disbursement)
        record_checkpoint(registry)
        sealed_at = time.perf_counter()
        from ledger.reports import catch_up

        catch_up(c.db)  # the read models follow before the command returns (docs/projections.md)
        result = {
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
        if as_json:
            click.echo(json.dumps(result))
        else:
            click.echo(
                f"{summary.run_month}: accrued {summary.payments} payments, {format_yuan(summary.total_fen)} 元"
                f" in {len(summary.batches)} batches ({summary.late} late)"
            )


def _run(c: Context, run_month: Month, region: str | None) -> Any:
    from domain.regions import region_contains

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
    from ledger.demo import run_demo

    with refusals():
        run_demo(c, households=households, months=months)


def read_text(file: Path) -> str:
    try:
        data = file.read_bytes()
    except OSError as e:
        raise RuleBroken(f"{file}: cannot read: {e.strerror}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RuleBroken(f"{file}: not UTF-8 text") from None
