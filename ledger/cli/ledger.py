"""The day-to-day ledger: create it, load the policy, import the roster, record decisions and accounts,
run the month-end; and the demo that does all of it on a synthetic city."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import click

from domain.accounts import check_password_rule, normalised_name
from domain.errors import RuleBroken
from domain.identity import check_account, is_bank_code
from domain.money import format_yuan, parse_yuan
from domain.periods import Month
from domain.policy import HouseholdFacts, NoStandardInForce, Policy, month_rate
from ledger.apps import ImportSummary
from ledger.bootstrap import init_ledger
from ledger.cli.context import Context, pass_context
from ledger.cli.identity import legacy_identity, new_password
from ledger.cli.output import Grid, Line, Shown, render
from ledger.demo import DemoNeedsNewLedger, passwords_folder_for, run_demo
from ledger.progress import progress
from ledger.storage import holds_events

DECISIONS = ("suspend", "resume", "terminate", "adjust", "phase-out")
DECISION_HELP = {
    "suspend": "Suspend one enrolment from a date (暂停).",
    "resume": "Resume a suspended enrolment from a date (恢复).",
    "terminate": "Terminate one enrolment from a date (停保).",
    "adjust": "Set the approved monthly amount of one enrolment from a date (--amount).",
    "phase-out": "Start the six-month phase-out of one enrolment (渐退期, 004_… 二.1).",
}
WARNINGS_SHOWN_MAX = 50  # a roster's warnings printed one per line; the rest are counted
REPRICED_PERIODS_SHOWN_MAX = 12  # periods named in one re-pricing warning
POLICY_HEADINGS = ("项目", "名称", "对象", "发放周期", "到账日", "标准", "自")


class InitNeedsAdmin(RuleBroken):
    """A new ledger is created with its first admin account: `yikatong init --admin NAME`."""


@click.command()
@click.option(
    "--plaintext",
    is_flag=True,
    help="create the ledger unencrypted, on purpose (stated in its log); ids stay uuid5 of ID numbers",
)
@click.option("--admin", "admin_name", help="the first admin account (a new ledger needs one)")
@click.option(
    "--password-file",
    "admin_password_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="the admin's password: the first line of this private file (else typed twice, or one line of stdin)",
)
@pass_context
def init(c: Context, plaintext: bool, admin_name: str | None, admin_password_file: Path | None) -> None:
    """Create the ledger: its key file (personal data encrypted), tables, charter (its id, encryption and
    id scheme, recorded in its log), signing key for anchors (its public half recorded and printed) and
    first admin account. On an existing ledger it records only what the ledger lacks: a ledger of an
    earlier release gains its signing key, and its first admin when one is named (until then it keeps
    working with typed names: docs/security.md, Accounts)."""
    password = None
    if admin_name is not None:
        admin_name = normalised_name(admin_name)
        password = new_password(admin_password_file, admin_name)
        check_password_rule(password)  # before anything is created: a refused password applies nothing
    elif not holds_events(c.db):
        raise InitNeedsAdmin("a new ledger needs its first admin account: yikatong init --admin NAME")
    done = init_ledger(
        c.db, ledger_id=uuid4(), actor=admin_name or legacy_identity(c.claimed_actor).name, plaintext=plaintext
    )
    c.authorise()
    lines: list[Shown] = [f"ledger ready at {c.db.url}"]
    lines += [Line(text, err=warning) for text, warning in done.messages()]
    # A ledger of an earlier release gains its signing key here; a new one recorded it with its charter.
    lines.append((done.signing or c.service().init_signing_key(actor=c.actor)).message())
    if admin_name is not None and password is not None:
        added = c.service().create_first_admin(admin_name, password, actor=c.actor)
        lines.append(f"admin account {added.name} created: from now on every command acts as an account")
    render(lines)


# --- policy --------------------------------------------------------------------------------------


@click.group()
def policy() -> None:
    """Load and show the region's policy."""


@policy.command("load")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="what was loaded, and the accrued periods it re-prices")
@pass_context
def policy_load(c: Context, file: Path, as_json: bool) -> None:
    """Load a policy TOML file (all or nothing)."""
    text = read_text(file)
    done = c.service().load_policy(text, file.name, actor=c.actor)
    loaded = done.policy
    data = {
        "region": loaded.region_code,
        "region_name": loaded.region_name,
        "programmes": len(loaded.programmes),
        "repriced": done.repriced,  # programme → accrued periods the next run adjusts (issue 14)
    }
    render(
        [f"loaded policy for {loaded.region_name} ({loaded.region_code}): {len(loaded.programmes)} programmes"],
        as_json=as_json,
        data=data,
    )
    render(Line(_repriced_warning(key, periods), err=True) for key, periods in done.repriced.items())


def _repriced_warning(key: str, periods: list[str]) -> str:
    shown = ", ".join(periods[:REPRICED_PERIODS_SHOWN_MAX])
    if len(periods) > REPRICED_PERIODS_SHOWN_MAX:
        shown += f" … ({len(periods)} periods)"
    return (
        f"warning: {key}: the standard for {shown}, already accrued, differs in this policy; "
        "the next `yikatong run` accrues the difference for every enrolment and period it changes as an "
        "adjustment (a rise: 补发差额 in that run's adjustment batch; a cut: a recovery due, 多发追回)"
    )


@policy.command("show")
@click.option("--on", "on", type=click.DateTime(["%Y-%m-%d"]), help="standards in force on this date")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def policy_show(c: Context, on: datetime | None, as_json: bool) -> None:
    """The programmes and the standard each has in force."""
    loaded = c.service().policy()
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
@click.option("--dry-run", is_flag=True, help="check the file against the ledger and record nothing")
@pass_context
def roster_import(c: Context, file: Path, as_json: bool, dry_run: bool) -> None:
    """Import a roster (CSV, or the first sheet of an xlsx): all rows or none; every bad row is reported
    with its line number. --dry-run checks it by the same rules and records nothing (the web's preview)."""
    if dry_run:
        preview = c.service().preview_roster(file, month=Month.of(date.today()))
        data = _import_json(file, preview.summary) | {
            "dry_run": True,
            "month": str(preview.month),
            "monthly_fen": {p.programme: p.monthly_fen for p in preview.programmes},
        }
        render(_import_lines(preview.summary, would=True), as_json=as_json, data=data)
        return
    summary = c.service().import_roster(file, actor=c.actor, progress=progress)
    render(_import_lines(summary), as_json=as_json, data=_import_json(file, summary))


def _import_lines(summary: ImportSummary, *, would: bool = False) -> Iterator[Shown]:
    for warning in summary.warnings[:WARNINGS_SHOWN_MAX]:
        yield Line(f"warning: {warning}", err=True)
    if len(summary.warnings) > WARNINGS_SHOWN_MAX:
        yield Line(f"warning: … and {len(summary.warnings) - WARNINGS_SHOWN_MAX} more", err=True)
    yield (
        ("dry run, nothing recorded: would import" if would else "imported")
        + f" {summary.enrolled} enrolments ({summary.households} households, {summary.persons} persons)"
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


@click.group()
def decide() -> None:
    """Record a decision on a person: on one enrolment (suspend, resume, terminate, adjust, phase-out, change
    of household facts), or a corrected name (rename)."""


def _decision_command(kind: str) -> click.Command:
    """`decide KIND ID_NUMBER PROGRAMME --on DATE --reason TEXT [--amount YUAN]`, one command per kind."""

    @click.command(kind, help=DECISION_HELP[kind])
    @click.argument("id_number")
    @click.argument("programme")
    @click.option("--on", "on", required=True, type=click.DateTime(["%Y-%m-%d"]), help="effective date")
    @click.option("--reason", required=True, help="decision document number, e.g. 乌海政发〔2014〕73号")
    @click.option("--amount", help="adjust: the approved monthly amount in yuan")
    @pass_context
    def decide_kind(c: Context, id_number: str, programme: str, on: datetime, reason: str, amount: str | None) -> None:
        amount_fen = parse_yuan(amount) if amount is not None else None
        c.service().decide(
            kind=kind,
            id_number=id_number.upper(),
            programme=programme,
            on=on.date(),
            actor=c.actor,
            reason=reason,
            amount_fen=amount_fen,
        )
        render([f"{kind} {programme} for {id_number} from {on.date().isoformat()} recorded"])

    return decide_kind


for _kind in DECISIONS:
    decide.add_command(_decision_command(_kind))


@decide.command("change")
@click.argument("id_number")
@click.argument("programme")
@click.option("--members", type=int, help="household members from D's month")
@click.option("--income", help="household monthly income in yuan from D's month")
@click.option("--special", type=int, help="special members (elderly, disabled, minor, seriously ill) from D's month")
@click.option("--on", "on", required=True, type=click.DateTime(["%Y-%m-%d"]), help="effective date D")
@click.option("--reason", required=True, help="the 复核 decision document number")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def decide_change(
    c: Context,
    id_number: str,
    programme: str,
    members: int | None,
    income: str | None,
    special: int | None,
    on: datetime,
    reason: str,
    as_json: bool,
) -> None:
    """Change a household's facts (复核 result, 004_… 二.7) from D's month: any of --members, --income,
    --special (at least one; the others keep their value). When per-capita income reaches the standard of a
    programme with `income_test`, the six-month phase-out starts on D by itself (004_… 二.1), paid at the
    amount before the change. docs/entitlement.md, "Household changes"."""
    day = on.date()
    service = c.service()
    outcome = service.change_household(
        id_number=id_number.upper(),
        programme=programme,
        on=day,
        actor=c.actor,
        reason=reason,
        members=members,
        monthly_income_fen=parse_yuan(income) if income is not None else None,
        special_members=special,
    )
    facts = outcome.household
    month_fen = _month_amount_or_none(service.policy(), programme, Month.of(day), facts)
    data = {
        "id_number": id_number.upper(),
        "programme": programme,
        "effective_on": day.isoformat(),
        "from_month": str(Month.of(day)),
        "recorded": outcome.recorded,
        "members": facts.members,
        "monthly_income_fen": facts.monthly_income_fen,
        "special_members": facts.special_members,
        "monthly_amount_fen": month_fen,
        "phase_out": outcome.phase_out_ends_on is not None,
        "phase_out_ends_on": outcome.phase_out_ends_on.isoformat() if outcome.phase_out_ends_on else None,
    }
    render(_change_lines(data), as_json=as_json, data=data)


def _month_amount_or_none(loaded: Policy, programme: str, month: Month, facts: HouseholdFacts) -> int | None:
    """What the new household facts pay a month under the standard of D's month (None: no standard yet)."""
    try:
        return month_rate(loaded, loaded.programme(programme), month).amount_for(0, facts)
    except NoStandardInForce:
        return None


def _change_lines(data: dict[str, Any]) -> Iterator[Shown]:
    if not data["recorded"]:
        yield "the same change is already recorded: nothing recorded"
        return
    facts = (
        f"{data['members']} members, income {format_yuan(data['monthly_income_fen'])} 元 a month, "
        f"{data['special_members']} special"
    )
    yield f"change {data['programme']} for {data['id_number']} from {data['from_month']} recorded: {facts}"
    if data["phase_out"]:
        yield (
            f"per-capita income at or above the standard: phase-out (渐退期) from {data['effective_on']} until "
            f"{data['phase_out_ends_on']}, paid at the amount before the change"
        )
    elif data["monthly_amount_fen"] is not None:
        yield f"pays {format_yuan(data['monthly_amount_fen'])} 元 a month from {data['from_month']}"


@decide.command("rename")
@click.argument("id_number")
@click.option("--name", "name", required=True, help="the corrected name (户名), as on the 一卡通 account")
@click.option("--reason", required=True, help="the document that corrects it")
@click.option("--on", "on", type=click.DateTime(["%Y-%m-%d"]), help="effective date (default today)")
@pass_context
def decide_rename(c: Context, id_number: str, name: str, reason: str, on: datetime | None) -> None:
    """Correct a person's name: a new event (the old name stays in the history); payments accrued from now
    on, re-issues included, carry it. Refused when some configured export format cannot carry it."""
    day = on.date() if on else date.today()
    done = c.service().rename(id_number=id_number.upper(), name=name, reason=reason, actor=c.actor, on=day)
    if not done.renamed and not done.batches_corrected:
        render(["name unchanged: nothing recorded"])
        return
    batches = f"; {done.batches_corrected} batch(es) not yet approved will export it" if done.batches_corrected else ""
    render([f"name of {id_number} corrected{batches}"])


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
    if not is_bank_code(bank):
        raise click.BadParameter("bank code must be digits", param_hint="--bank")
    changed = c.service().set_account(
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
    done = c.service().month_end(Month.parse(month), actor=c.actor, region=region, progress=progress)
    s = done.summary
    line = (
        f"{s.run_month}: accrued {s.payments} payments, {format_yuan(s.total_fen)} 元"
        f" in {len(s.batches)} batches ({s.late} late)"
    )
    lines = [line]
    if s.adjustments or s.recoveries:
        lines.append(
            f"{s.run_month}: adjusted periods already accrued: {s.adjustments} 补差 "
            f"({format_yuan(s.adjusted_fen)} 元), {s.recoveries} recoveries due ({format_yuan(s.recovery_due_fen)} 元)"
        )
    render(lines, as_json=as_json, data=done.as_json())


@click.command()
@click.option("--households", default=300, show_default=True, help="size of the generated city")
@click.option("--months", default=12, show_default=True, help="month-ends to run, from 2017-01")
@pass_context
def demo(c: Context, households: int, months: int) -> None:
    """The main job end to end on a synthetic city, on a new ledger (created, encrypted): creates its
    accounts (passwords in <ledger>-passwords/, mode 0600) and acts as each in turn."""
    if holds_events(c.db):
        raise DemoNeedsNewLedger(f"{c.db.url} holds events already: the demo runs on a new ledger")
    init_ledger(c.db, ledger_id=uuid4(), actor=legacy_identity(c.claimed_actor).name)
    service = c.service()
    run_demo(service, passwords_folder_for(c.db), started_by=c.actor, households=households, months=months)


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
