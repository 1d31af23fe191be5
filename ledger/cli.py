"""The `yikatong` command (also `python -m ledger`). Contract: ../shared/DESIGN.md, Interfaces.

Exit 0 on success, 1 on a refused command or bad input (one line per problem, naming the rule or the
file line), 2 on usage errors (click's own). A user's file never produces a traceback.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from eventsourcing.persistence import OperationalError, PersistenceError
from rich.console import Console
from rich.table import Table

from domain.errors import FileRejected, RuleBroken
from domain.money import format_yuan, parse_yuan
from domain.periods import Month
from ledger.audit import record_checkpoint
from ledger.progress import progress
from ledger.store import database_from_url

F = TypeVar("F", bound=Callable[..., Any])
DECISIONS = ("suspend", "resume", "terminate", "adjust", "phase-out")


class Context:
    def __init__(self, db_url: str | None, actor: str) -> None:
        self.db_url = db_url
        self.actor = actor
        self._apps: Any = None
        self.read_only = False  # set by `authorise`: the command changes nothing in the ledger

    @property
    def db(self) -> Any:
        return database_from_url(self.db_url)

    def authorise(self) -> str:
        """Refuse the command being run when the roles file does not allow it to the actor (ledger.roles);
        returns the command's path, e.g. "batch approve". No roles file: everything is allowed."""
        from ledger.roles import READ_ONLY, command_action, load_roles, require, roles_path_for

        action = command_action(click.get_current_context())
        require(load_roles(roles_path_for(self.db)), self.actor, action)
        self.read_only = action in READ_ONLY
        return action

    def apps(self) -> Any:
        if self._apps is None:
            from ledger.apps import open_apps

            self.authorise()
            self._apps = open_apps(self.db, read_only=self.read_only)
        return self._apps

    def close(self) -> None:
        """Every command that opened the ledger leaves the read models caught up (docs/projections.md)."""
        if self._apps is None:
            return
        if self.read_only:  # a read-only command (an auditor's SELECT-only role) writes no read model either
            for app in self._apps:
                app.close()
            return
        try:
            from ledger.reports import catch_up

            with refusals():
                catch_up(self.db)
        finally:
            for app in self._apps:
                app.close()


def _default_actor() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except Exception:
        return "unknown"


@contextmanager
def refusals() -> Iterator[None]:
    """Turn broken rules and storage failures into one clear message and exit code 1."""
    try:
        yield
    except FileRejected as e:  # a user's file: one line per problem, each naming file and line
        click.echo(str(e), err=True)
        sys.exit(1)
    except RuleBroken as e:
        click.echo(f"error: {e.rule}: {e}", err=True)
        sys.exit(1)
    except (OperationalError, PersistenceError) as e:
        click.echo(f"error: storage: {_storage_reason(e)}", err=True)
        sys.exit(1)
    except OSError as e:  # a full disk, a missing or unreadable file
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    except Exception as e:
        # The storage libraries' own errors, raised outside eventsourcing's wrappers: psycopg from direct
        # connections (schema, grants, a read-only role), sqlite3 from the connection pool (a read-only
        # file system, a full disk), SQLAlchemy from the read models.
        import sqlite3

        import psycopg
        from sqlalchemy.exc import SQLAlchemyError

        if not isinstance(e, psycopg.Error | sqlite3.Error | SQLAlchemyError):
            raise
        click.echo(f"error: storage: {_storage_reason(e)}", err=True)
        sys.exit(1)


def _storage_reason(e: Exception) -> str:
    """The storage error's first line. When PostgreSQL refused something ("permission denied for
    database/schema/table …", or a bare "pipeline aborted": a statement before it was refused and
    psycopg does not always say which), the reason asked of the database: the ledger tables this role
    may not write, i.e. a SELECT-only auditor's role trying to change the ledger."""
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    ctx = click.get_current_context(silent=True)
    c = ctx.find_object(Context) if ctx is not None else None
    waited = _deadline_reason(reason, c)
    if waited is not None:
        return waited
    if "pipeline aborted" not in reason and "permission denied" not in reason:
        return reason
    if c is None:
        return reason
    from ledger.roles import tables_not_writable

    try:
        user, tables = tables_not_writable(c.db)
    except Exception:  # the diagnosis is a courtesy: never let it hide the error it explains
        return reason
    if tables:
        return f"permission denied for table {', '.join(tables)}: role {user} may only read this ledger"
    return reason


def _deadline_reason(reason: str, c: Context | None) -> str | None:
    """What a wait that ran out of time waited for, with the setting that bounds it (ledger.postgres)."""
    from ledger import postgres

    try:
        env = c.db.env if c is not None else {}
    except RuleBroken:  # a URL that does not parse has no settings to quote
        env = {}
    if "database is locked" in reason:  # SQLite's busy timeout
        seconds = env.get("SQLITE_LOCK_TIMEOUT", "?")
        return (
            f"waited {seconds} s for another command's write to this ledger to finish (lock_timeout); "
            "nothing was recorded, run it again when that command has finished"
        )
    if "lock timeout" in reason:
        seconds = env.get(postgres.LOCK_TIMEOUT_ENV, str(postgres.LOCK_TIMEOUT_S))
        return (
            f"waited {seconds} s for a lock another command holds (lock_timeout); nothing was recorded, "
            "run it again when that command has finished"
        )
    if "statement timeout" in reason:
        seconds = env.get(postgres.STATEMENT_TIMEOUT_ENV, str(postgres.STATEMENT_TIMEOUT_S))
        return f"the database did not finish within {seconds} s (statement_timeout); nothing was recorded"
    return None


@click.group()
@click.option("--db", "db_url", envvar="YIKATONG_DB", help="sqlite:///PATH (default ./yikatong.db) or postgresql://…")
@click.option("--as", "actor", default=_default_actor, show_default="$USER", help="who is acting")
@click.pass_context
def main(ctx: click.Context, db_url: str | None, actor: str) -> None:
    """yikatong: the 一卡通 disbursement ledger."""
    ctx.obj = Context(db_url, actor)
    ctx.call_on_close(ctx.obj.close)


pass_context = click.make_pass_decorator(Context)


@main.command()
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


@main.group()
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
        text = _read_text(file)
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


@main.group()
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


@main.command()
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


@main.group()
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


@main.command()
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


# --- batches and deadlines ----------------------------------------------------------------------------


@main.group()
def batch() -> None:
    """Batches of payments."""


@batch.command("list")
@click.option("--month", help="only batches of this run month (YYYY-MM)")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def batch_list(c: Context, month: str | None, as_json: bool) -> None:
    """Batches with their count, total and status."""
    with refusals():
        if month:
            Month.parse(month)
        _, disbursement = c.apps()
        rows = [batch_row(b) for b in disbursement.batches() if not month or b.run_month == month]
        if as_json:
            click.echo(json.dumps(rows, ensure_ascii=False))
            return
        table = Table()
        for heading in ("批次", "区划", "项目", "期间", "月结", "笔数", "金额(元)", "状态"):
            table.add_column(heading, justify="right" if heading in ("笔数", "金额(元)") else "left")
        for r in rows:
            table.add_row(
                r["id"][:12],
                r["region"],
                r["programme"],
                r["period"],
                r["run_month"],
                str(r["payments"]),
                format_yuan(r["total_fen"]),
                r["status"],
            )
        Console().print(table)


@batch.command("export")
@click.argument("batch_ref", metavar="BATCH")
@click.option("--format", "fmt", required=True, type=click.Choice(["onecard", "pain001", "xlsx", "notice"]))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path), help="folder")
@click.option("--profile", default="generic", show_default=True, help="one-card bank profile (onecard format)")
@click.option(
    "--pain-version",
    "version",
    default="001.001.09",
    show_default=True,
    type=click.Choice(["001.001.09", "001.001.03"]),
)
@click.option("--json", "as_json", is_flag=True)
@pass_context
def batch_export(c: Context, batch_ref: str, fmt: str, out: Path, profile: str, version: str, as_json: bool) -> None:
    """Write a batch's bank file, roster or public notice; the export is recorded with its SHA-256."""
    from ledger.exports import export_batch

    with refusals():
        registry, disbursement = c.apps()
        batch_, files = export_batch(
            disbursement,
            registry.policy(),
            batch_ref,
            fmt=fmt,
            out=out,
            profile=profile,
            version=version,
            actor=c.actor,
        )
        record_checkpoint(disbursement)
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "batch": batch_.id.hex,
                        "format": fmt,
                        "files": [{"path": str(f.path), "sha256": f.sha256, "bytes": f.size} for f in files],
                    }
                )
            )
            return
        for f in files:
            click.echo(f"{f.path}  sha256 {f.sha256}")
        click.echo(
            f"batch {batch_.id.hex[:12]}: {batch_.count} payments, {format_yuan(batch_.total_fen)} 元, {batch_.status}"
        )


@batch.command("approve")
@click.argument("batch_ref", metavar="BATCH")
@click.option("--json", "as_json", is_flag=True, help="the approved batch as `batch list --json` shows it")
@pass_context
def batch_approve(c: Context, batch_ref: str, as_json: bool) -> None:
    """Approve an exported batch: by anyone but the person who exported it. Approval freezes it."""
    from ledger.exports import approve_batch

    _batch_step(c, batch_ref, as_json, approve_batch, "approved")


@batch.command("submit")
@click.argument("batch_ref", metavar="BATCH")
@click.option("--json", "as_json", is_flag=True, help="the submitted batch as `batch list --json` shows it")
@pass_context
def batch_submit(c: Context, batch_ref: str, as_json: bool) -> None:
    """Mark an approved batch as handed to the bank."""
    from ledger.exports import submit_batch

    _batch_step(c, batch_ref, as_json, submit_batch, "submitted")


def _batch_step(c: Context, batch_ref: str, as_json: bool, step: Callable[..., Any], done: str) -> None:
    with refusals():
        _, disbursement = c.apps()
        changed = step(disbursement, batch_ref, c.actor)
        if as_json:
            click.echo(json.dumps(batch_row(changed), ensure_ascii=False))
        else:
            click.echo(f"batch {changed.id.hex[:12]} {done} by {c.actor}")


@main.group()
def bank() -> None:
    """Bank result files."""


@bank.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--profile", default="generic", show_default=True, help="profile of a one-card return file")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def bank_import(c: Context, file: Path, profile: str, as_json: bool) -> None:
    """Import a pain.002 or a profile's return file (回盘文件): the whole file applies or nothing does."""
    from ledger.exports import import_bank_file

    with refusals():
        _, disbursement = c.apps()
        outcome = import_bank_file(disbursement, file, actor=c.actor, profile=profile)
        record_checkpoint(disbursement)
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "already_imported": outcome.already_imported,
                        "paid": outcome.paid,
                        "returned": outcome.returned,
                        "batches": outcome.batches,
                    }
                )
            )
        elif outcome.already_imported:
            click.echo(f"{file.name} was imported before: nothing changed")
        else:
            click.echo(
                f"{file.name}: {outcome.paid} paid, {outcome.returned} returned, {outcome.batches} batches updated"
            )


def batch_row(b: Any) -> dict[str, Any]:
    return {
        "id": b.id.hex,
        "region": b.region,
        "programme": b.programme,
        "period": b.period,
        "payments": b.count,
        "total_fen": b.total_fen,
        "status": b.status,
        "run_month": b.run_month,
        "due_date": b.due_date.isoformat(),
        "paid": b.paid_count(),
        "returned": len(b.returned_ids()),
        "exported_by": b.exported_by,
        "approved_by": b.approved_by,
    }


@main.group()
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
    with refusals():
        if month:
            Month.parse(month)
        moment = _moment(as_of) if as_of else None
        from ledger.reports import balances_rows

        _, disbursement = c.apps()
        rows = balances_rows(
            c.db, month=month, year=year, programme=programme, region=region, as_of=moment, disbursement=disbursement
        )
        stamp = (moment or datetime.now(UTC)).isoformat()
        if as_json:
            click.echo(json.dumps({"as_of": stamp, "rows": rows}, ensure_ascii=False))
            return
        table = Table(title=f"余额 as of {stamp}")
        for heading in ("区划", "项目", "期间", "户", "人", "应发", "已导出", "已到账", "退回", "未到账"):
            table.add_column(heading, justify="left" if heading in ("区划", "项目", "期间") else "right")
        for r in rows:
            table.add_row(
                r["region"],
                r["programme"],
                r["period"],
                str(r["households"]),
                str(r["persons"]),
                *(
                    format_yuan(r[k])
                    for k in ("accrued_fen", "exported_fen", "paid_fen", "returned_fen", "outstanding_fen")
                ),
            )
        Console().print(table)


def _moment(text: str) -> datetime:
    """An ISO 8601 moment; a date alone means the end of that day, a naive time is UTC."""
    try:
        if len(text) == 10:
            return datetime.fromisoformat(text).replace(hour=23, minute=59, second=59, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise RuleBroken(f"--as-of {text!r}: not an ISO 8601 date or time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@report.command("deadlines")
@click.option("--today", type=click.DateTime(["%Y-%m-%d"]), help="judge as of this date (default: today)")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def report_deadlines(c: Context, today: Any, as_json: bool) -> None:
    """Each batch with its due date, the last safe day to hand the file to the bank, and its state."""
    from ledger.deadlines import deadline_rows

    with refusals():
        registry, disbursement = c.apps()
        loaded = registry.policy()
        rows = deadline_rows(loaded, disbursement.batches(), today.date() if today else date.today())
        if as_json:
            click.echo(json.dumps(rows, ensure_ascii=False))
            return
        table = Table()
        for heading in ("批次", "项目", "期间", "笔数", "到账期限", "最迟报送日", "状态", "跨年"):
            table.add_column(heading)
        for r in rows:
            table.add_row(
                r["batch"][:12],
                r["programme"],
                r["period"],
                str(r["payments"]),
                r["due_date"],
                r["last_safe_day"] or "unknown",
                r["state"],
                "breach" if r["year_end_breach"] else "",
            )
        Console().print(table)


@main.group()
def audit() -> None:
    """Auditors: verify the log and the exports, trace a person, find anomalies."""


@audit.command("verify")
@click.option(
    "--exports",
    "exports_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="also check the exported files found in this folder against their recorded SHA-256",
)
@click.option("--json", "as_json", is_flag=True)
@pass_context
def audit_verify_command(c: Context, exports_dir: Path | None, as_json: bool) -> None:
    """Prove the log is intact, the read models equal a rebuild, and every export regenerates byte-for-byte."""
    from ledger.audit import audit_verify

    with refusals():
        registry, disbursement = c.apps()
        result = audit_verify(c.db, registry, disbursement, exports_dir)
        if as_json:
            click.echo(json.dumps(result.as_json(), ensure_ascii=False))
        else:
            for line in result.lines():
                click.echo(line)
        result.raise_for_failure()


@audit.command("history")
@click.argument("id_number")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def audit_history_command(c: Context, id_number: str, as_json: bool) -> None:
    """Every event touching one person, in order of recording, with effective dates (full, unmasked data)."""
    from ledger.history import describe, person_history

    with refusals():
        registry, disbursement = c.apps()
        events = person_history(registry, disbursement, id_number)
        if as_json:
            click.echo(json.dumps({"id_number": id_number.strip().upper(), "events": events}, ensure_ascii=False))
            return
        # One line per event, recorded time first: the history reads as a log, at any terminal width.
        for e in events:
            recorded = e["recorded_at"][:19].replace("T", " ")
            effective = f"effective {e['effective_on']}" if e["effective_on"] else ""
            click.echo(
                f"{recorded}  {effective:20}  {e['event']:16}  {e['actor']:10}  "
                f"{e['programme']} {e['period']}  {describe(e)}"
            )


@audit.command("anomalies")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def audit_anomalies_command(c: Context, as_json: bool) -> None:
    """Findings the seeds name: 超范围发放, 重复发放, 擅自升降发放标准, shared 一卡通 accounts, two regions."""
    from ledger.anomalies import find_anomalies

    with refusals():
        registry, disbursement = c.apps()
        findings = find_anomalies(registry, disbursement)
        if as_json:
            click.echo(json.dumps({"count": len(findings), "findings": findings}, ensure_ascii=False))
            return
        table = Table(title=f"{len(findings)} findings")
        for heading in ("类别", "身份证号", "项目", "期间", "说明"):
            table.add_column(heading)
        for f in findings:
            table.add_row(
                f"{f['title_zh']} {f['kind']}",
                "\n".join(f["id_numbers"]),
                ", ".join(f["programmes"]),
                ", ".join(f["periods"]),
                f["detail"],
            )
        Console().print(table)


@main.group("db")
def db_group() -> None:
    """Database administration."""


@db_group.command("grant-auditor")
@click.argument("role")
@pass_context
def db_grant_auditor(c: Context, role: str) -> None:
    """PostgreSQL: create ROLE that can log in and SELECT from the ledger's schema, and nothing else."""
    from ledger.roles import grant_auditor

    with refusals():
        c.authorise()
        for statement in grant_auditor(c.db, role):
            click.echo(statement)
        click.echo(f"role {role}: SELECT only; connect as postgresql://{role}@HOST:PORT/DB")


@report.command("summary")
@click.option("--year", required=True, type=int, help="the year reported (YYYY)")
@click.option("--through", help="the last month counted (YYYY-MM; default: December)")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def report_summary(c: Context, year: int, through: str | None, as_json: bool) -> None:
    """Standard, households, persons and amount paid (万元) per programme, as civil-affairs offices publish."""
    from ledger.reports import summary_rows

    with refusals():
        registry, _ = c.apps()
        rows = summary_rows(c.db, registry.policy(), year, Month.parse(through) if through else None)
        if as_json:
            click.echo(json.dumps({"year": year, "rows": rows}, ensure_ascii=False))
            return
        table = Table(title=f"{year} 截至 {rows[0]['through'] if rows else through or year}")
        for heading in ("项目", "名称", "标准", "户", "人", "发放(万元)"):
            table.add_column(heading, justify="right" if heading in ("户", "人", "发放(万元)") else "left")
        for r in rows:
            standard = r["standard"] or {}
            text = f"{standard['amount']}/{standard['per']}" if "amount" in standard else ("分档" if standard else "—")
            table.add_row(r["programme"], r["name"], text, str(r["households"]), str(r["persons"]), r["paid_wan"])
        Console().print(table)
        for r in rows:
            click.echo(r["sentence"])


@report.command("on-time")
@click.option("--year", required=True, type=int, help="the year reported (YYYY)")
@click.option("--today", type=click.DateTime(["%Y-%m-%d"]), help="count payments due by this date (default: today)")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def report_on_time(c: Context, year: int, today: Any, as_json: bool) -> None:
    """按时发放率: payments in the account by their due date ÷ payments due, by month and year to date."""
    from ledger.reports import on_time_rows

    with refusals():
        c.apps()
        rows = on_time_rows(c.db, year, today=today.date() if today else None)
        if as_json:
            click.echo(json.dumps(rows, ensure_ascii=False))
            return
        table = Table()
        for heading in ("项目", "区划", "月", "应发", "按时", "按时发放率", "累计", "累计按时", "累计按时发放率"):
            table.add_column(heading)
        for r in rows:
            table.add_row(
                r["programme"], r["region"], r["month"], str(r["due"]), str(r["on_time"]), r["rate"] or "—",
                str(r["ytd_due"]), str(r["ytd_on_time"]), r["ytd_rate"] or "—",
            )  # fmt: skip
        Console().print(table)


@report.command("chart")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="FILE.png")
@click.option("--year", type=int, help="the year charted (default: the latest with payments)")
@pass_context
def report_chart(c: Context, out: Path, year: int | None) -> None:
    """A PNG of monthly disbursement per programme and the on-time rate."""
    from ledger.reports import latest_year, write_chart

    with refusals():
        registry, _ = c.apps()
        chosen = year or latest_year(c.db)
        if chosen is None:
            raise RuleBroken("nothing accrued yet: run a month-end first")
        write_chart(c.db, registry.policy(), chosen, out)
        click.echo(f"{out}: {chosen}")


# --- projections ------------------------------------------------------------------------------------


@main.group("projections")
def projections_group() -> None:
    """Read models built from the event log (docs/projections.md)."""


@projections_group.command("rebuild")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def projections_rebuild(c: Context, as_json: bool) -> None:
    """Drop the read models and rebuild them from the first event."""
    from projections.runner import rebuild

    with refusals():
        c.apps()  # the event tables exist before the read models are built from them
        stats = rebuild(c.db)
        figures = {
            "events": stats.events,
            "position": stats.position,
            "seconds": round(stats.seconds, 2),
            "events_per_s": round(stats.events_per_s),
        }
        if as_json:
            click.echo(json.dumps(figures))
            return
        click.echo(
            f"read models rebuilt: {stats.events} events to position {stats.position} in {stats.seconds:.1f} s "
            f"({stats.events_per_s:,.0f} events/s)"
        )


@projections_group.command("follow")
@click.option("--stop-after", type=float, help="seconds to follow, then exit (default: until interrupted)")
@pass_context
def projections_follow(c: Context, stop_after: float | None) -> None:
    """Keep the read models current as events are recorded (PostgreSQL: LISTEN/NOTIFY; SQLite: polling)."""
    from projections.runner import follow

    with refusals():
        c.apps()
        try:
            stats = follow(c.db, stop_after)
        except KeyboardInterrupt:
            click.echo("stopped", err=True)
            return
        click.echo(f"followed: {stats.events} events, at position {stats.position}")


@main.command()
@click.option("--households", default=300, show_default=True, help="size of the generated city")
@click.option("--months", default=12, show_default=True, help="month-ends to run, from 2017-01")
@pass_context
def demo(c: Context, households: int, months: int) -> None:
    """The main job end to end on a synthetic city, on the embedded store."""
    from ledger.demo import run_demo

    with refusals():
        run_demo(c, households=households, months=months)


def _read_text(file: Path) -> str:
    try:
        data = file.read_bytes()
    except OSError as e:
        raise RuleBroken(f"{file}: cannot read: {e.strerror}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RuleBroken(f"{file}: not UTF-8 text") from None


if __name__ == "__main__":
    main()
