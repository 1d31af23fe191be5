"""`yikatong demo`: the main job end to end on a synthetic city, on the embedded SQLite store.

It creates the office's accounts with generated passwords (admin 管理员, clerk 经办, checker 复核/审批,
auditor 审计), written one file each, mode 0600, in `<ledger>-passwords/` beside the ledger, and acts as
each in turn after its password (ledger.accounts.authenticate), through the same use cases the command
line calls (ledger.service): the admin loads the shipped 乌兰察布市 2017 policy; the clerk imports a
roster CSV for a generated city, records a few decisions during the year (a suspension, a phase-out, a
corrected account, a household enrolled late), runs every month-end, exports each batch and imports the
bank's answer; the checker approves each batch (maker-checker: not the exporter) and the clerk submits it; the
auditor verifies. It prints the batches and the deadline report.
"""

from __future__ import annotations

import csv
import secrets
import tempfile
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from domain.accounts import AUDITOR, CHECKER, CLERK, Identity
from domain.errors import RuleBroken
from domain.money import format_yuan
from domain.periods import Month
from ledger.accounts import read_password_file, write_password_file
from ledger.deadlines import deadline_rows
from ledger.roster import COLUMNS, read_roster
from ledger.service import LedgerService
from ledger.storage import Database
from ledger.synthetic import check_digit, synthetic_rows

DEMO_ADMIN = "admin"
DEMO_ACCOUNTS = ((CLERK, CLERK), (CHECKER, CHECKER), (AUDITOR, AUDITOR))  # name, role
DEMO_PASSWORD_BYTES = 15  # 20 characters of URL-safe base64


class DemoNeedsNewLedger(RuleBroken):
    """The demo creates its ledger's accounts, so it runs on a new ledger and a new passwords folder."""


def passwords_folder_for(db: Database) -> Path:
    """Beside the demo ledger: `demo.db` → `demo-passwords/` (for PostgreSQL, in the working folder)."""
    if db.kind == "sqlite":
        path = Path(db.env["SQLITE_DBNAME"])
        return path.with_name(f"{path.stem}-passwords")
    return Path("yikatong-demo-passwords")


def create_accounts(service: LedgerService, folder: Path, started_by: str) -> None:
    """The demo office's accounts, each with a generated password in its own 0600 file in `folder`."""
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        raise DemoNeedsNewLedger(f"{folder} exists: remove it (and the demo ledger) first") from None
    for name in (DEMO_ADMIN, *(n for n, _ in DEMO_ACCOUNTS)):
        write_password_file(folder / name, secrets.token_urlsafe(DEMO_PASSWORD_BYTES))
    service.create_first_admin(DEMO_ADMIN, read_password_file(folder / DEMO_ADMIN), actor=started_by)
    admin = log_in(service, folder, DEMO_ADMIN)
    for name, role in DEMO_ACCOUNTS:
        service.add_account(name, role, read_password_file(folder / name), actor=admin)


def log_in(service: LedgerService, folder: Path, name: str) -> Identity:
    """Act as `name` after its password, read from its file as `--password-file` reads it."""
    return service.authenticate(name, read_password_file(folder / name))


def shipped_policy_text(name: str = "ulanqab-2017.toml") -> str:
    return resources.files("ledger").joinpath("data", name).read_text(encoding="utf-8")


def write_roster(path: Path, households: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for r in synthetic_rows(households):
            writer.writerow(
                [
                    r.id_number,
                    r.name,
                    r.region,
                    r.programme,
                    r.effective_from.isoformat(),
                    r.members,
                    format_yuan(r.monthly_income_fen),
                    r.special_members,
                    r.bank_code,
                    r.account,
                    r.decision_ref,
                ]
            )


def run_demo(service: LedgerService, folder: Path, *, started_by: str, households: int, months: int) -> None:
    console = Console()
    create_accounts(service, folder, started_by)
    console.print(
        f"[bold]accounts[/] {DEMO_ADMIN} (管理员), clerk (经办), checker (复核/审批), auditor (审计); "
        f"passwords in {folder}/ (mode 0600)"
    )
    admin = log_in(service, folder, DEMO_ADMIN)
    policy = service.load_policy(shipped_policy_text(), "ulanqab-2017.toml", actor=admin.name).policy
    console.print(f"[bold]policy[/] {policy.region_name} ({policy.region_code}): {len(policy.programmes)} programmes")
    console.print(f"  loaded by {admin.name}")
    for key in ("urban_dibao", "rural_dibao", "tekun_rural_dispersed", "tekun_care_partial", "sanmin"):
        s = policy.standard_on(key, date(2017, 1, 1))
        console.print(f"  {policy.programmes[key].name}: {format_yuan(s.amount_fen)} 元/{s.per}")

    clerk, checker = log_in(service, folder, CLERK), log_in(service, folder, CHECKER)
    with tempfile.TemporaryDirectory() as tmp:
        roster_path = Path(tmp) / "roster.csv"
        write_roster(roster_path, households)
        rows = read_roster(roster_path, region=policy.region_code, programmes=policy.programmes)
        summary = service.import_roster(roster_path, actor=clerk.name)
    console.print(
        f"[bold]roster[/] imported {summary.enrolled} enrolments "
        f"({summary.households} households, {summary.persons} persons) by {clerk.name}"
    )
    by_programme: dict[str, int] = {}
    for r in rows:
        by_programme[r.programme] = by_programme.get(r.programme, 0) + 1
    console.print("  " + ", ".join(f"{k} {v}" for k, v in sorted(by_programme.items())))

    decided = _decisions_during_the_year(service, rows, clerk.name)
    out = Path("demo-out")
    for month_index in range(1, months + 1):
        month = Month(2017, month_index)
        if month_index == 4:
            for line in decided:
                console.print(f"[bold]decision[/] {line}")
        if month_index == 6:
            console.print(f"[bold]decision[/] {_enrol_late(service, clerk.name)}")
        result = service.month_end(month, actor=clerk.name).summary
        console.print(
            f"[bold]run {month}[/] {result.payments} payments, {format_yuan(result.total_fen)} 元, "
            f"{len(result.batches)} batches, {result.late} late"
            + (f", {result.reissued} re-issued" if result.reissued else "")
        )
        _bank_round_trip(console, service, out, clerk, checker, month)
        service.seal()
    again = service.month_end(Month(2017, months), actor=clerk.name).summary
    console.print(f"[bold]run {Month(2017, months)} again[/] {again.payments} payments: nothing is paid twice")
    disbursement = service.disbursement
    _print_batches(console, disbursement.batches())
    _print_balances(console, disbursement.balances().rows(year="2017"))
    _print_deadlines(console, deadline_rows(policy, disbursement.batches(), date(2017, 12, 20)))
    from ledger.reports import summary_rows, write_chart

    for row in summary_rows(service.db, policy, 2017, Month(2017, months)):
        console.print(f"[bold]summary[/] {row['sentence']}", soft_wrap=True)
    chart = write_chart(service.db, policy, 2017, Path("demo-chart.png"))
    console.print(f"[bold]chart[/] {chart}: monthly disbursement per programme and the on-time rate")
    auditor = log_in(service, folder, AUDITOR)
    verified = service.verify(out)
    for line in verified.lines():
        console.print(f"[bold]audit[/] {line}")
    console.print(f"  verified as {auditor.name}")
    console.print(
        f"[bold]web[/] yikatong --db {service.db.url} serve, then http://127.0.0.1:8000/login as "
        f"{DEMO_ADMIN}, {CLERK}, {CHECKER} or {AUDITOR}; each password in {folder}/NAME",
        soft_wrap=True,
    )


def _decisions_during_the_year(service: LedgerService, rows: Any, actor: str) -> list[str]:
    """A suspension, a phase-out and a corrected account in March, recorded before April's run."""
    lines = []
    dibao = [r for r in rows if r.programme == "urban_dibao"]
    if len(dibao) >= 3:
        first, second, third = dibao[:3]
        service.decide(
            kind="suspend",
            id_number=first.id_number,
            programme="urban_dibao",
            on=date(2017, 4, 1),
            actor=actor,
            reason="集民发〔2017〕31号",
            amount_fen=None,
        )
        lines.append(f"suspend urban_dibao for {first.id_number} from 2017-04-01")
        service.decide(
            kind="phase-out",
            id_number=second.id_number,
            programme="urban_dibao",
            on=date(2017, 4, 1),
            actor=actor,
            reason="集民发〔2017〕32号",
            amount_fen=None,
        )
        lines.append(f"phase-out urban_dibao for {second.id_number} from 2017-04-01: paid to September")
        service.set_account(
            id_number=third.id_number,
            bank_code="102191000031",
            account="6222020602012345678",
            reason="原卡销户,换卡",
            actor=actor,
        )
        lines.append(f"account corrected for {third.id_number}")
    return lines


LATE_BANK_MONTH = 5  # the month the bank credits after the due date, so the report shows "paid late"


def _bank_round_trip(
    console: Console, service: LedgerService, out: Path, clerk: Identity, checker: Identity, month: Month
) -> None:
    """The month's new batches go to the bank: the clerk exports, the checker approves (a second
    account: maker-checker), the clerk submits, the bank answers and the clerk imports its file.

    The demo plays the bank with a pain.002 per batch, credited two days before the due date (in
    May, two days after it). In January two payments come back returned (AC04 account closed, BE01
    name mismatch); their accounts are corrected, so February's run re-issues them (补发).
    """
    from exporters.pain002 import render_pain002
    from exporters.rows import reason_zh
    from ledger.exports import message_id

    disbursement = service.disbursement
    returned_ids: list[tuple[str, str]] = []
    reasons = iter(("AC04", "BE01") if month.month == 1 else ())
    paid = returned = 0
    for batch in [b for b in disbursement.batches() if b.status == "drafted"]:
        service.export_batch(batch.id.hex, fmt="pain001", out=out, actor=clerk.name)
        service.export_batch(batch.id.hex, fmt="notice", out=out, actor=clerk.name)
        service.approve_batch(batch.id.hex, actor=checker.name)
        service.submit_batch(batch.id.hex, actor=clerk.name)
        views = disbursement.payment_views(batch.payment_ids)
        outcomes = []
        for pid in batch.payment_ids:
            code = next(reasons, None) if batch.programme == "rural_dibao" else None
            if code:
                returned_ids.append((views[pid].id_number, code))
                outcomes.append((pid, "RJCT", code, views[pid].amount_fen))
            else:
                outcomes.append((pid, "ACSC", "", views[pid].amount_fen))
        # Credited two days before the due date (two days after it in LATE_BANK_MONTH), and never before
        # the batch was run: arrears are necessarily late.
        shift = 2 if month.month == LATE_BANK_MONTH else -2
        credited_on = max(batch.due_date + timedelta(days=shift), month.day(4))
        credited = datetime.combine(credited_on, datetime.min.time(), tzinfo=UTC)
        answer = out / f"{message_id(batch)}.pain002.xml"
        answer.write_bytes(render_pain002(message_id(batch), message_id(batch), outcomes, created_at=credited))
        service.import_bank_file(answer, actor=clerk.name)
        paid += sum(1 for o in outcomes if o[1] == "ACSC")
        returned += sum(1 for o in outcomes if o[1] == "RJCT")
    console.print(
        f"  bank: pain.001 and notices in {out}/, exported and submitted by {clerk.name}, approved by "
        f"{checker.name}; "
        f"{paid} paid, {returned} returned"
    )
    for n, (id_number, code) in enumerate(returned_ids):
        service.set_account(
            id_number=id_number,
            bank_code="102191000031",
            account=f"622202060201234{n:04d}",
            reason=f"退回 {code} {reason_zh(code)}: 换卡",
            actor=clerk.name,
        )
        console.print(f"  account {id_number}: returned {code} ({reason_zh(code)}), account corrected")


def _enrol_late(service: LedgerService, actor: str) -> str:
    """A household approved from 1 March but recorded only in June: June's run pays the arrears (补发)."""
    body = "15260119700101999"
    id_number = body + check_digit(body)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "late.csv"
        path.write_text(
            ",".join(COLUMNS) + "\n"
            f"{id_number},赵丽娟,150902,urban_dibao,2017-03-01,3,400.00,1,103191000012,"
            "6228480045001122345,集民发〔2017〕60号\n",
            encoding="utf-8",
        )
        service.import_roster(path, actor=actor)
    return f"urban_dibao for {id_number} approved from 2017-03-01, recorded in June: arrears follow"


def _print_batches(console: Console, batches: list[Any]) -> None:
    table = Table(title="批次 batches")
    for heading in ("批次", "项目", "期间", "月结", "笔数", "金额(元)", "状态"):
        table.add_column(heading, justify="right" if heading in ("笔数", "金额(元)") else "left")
    for b in batches:
        table.add_row(
            b.id.hex[:10], b.programme, b.period, b.run_month, str(b.count), format_yuan(b.total_fen), b.status
        )
    console.print(table)


def _print_balances(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(title="余额 balances (元)")
    for heading in ("项目", "期间", "户", "人", "应发", "已导出", "已到账", "退回", "未到账"):
        table.add_column(heading, justify="left" if heading in ("项目", "期间") else "right")
    for r in rows:
        table.add_row(
            r["programme"],
            r["period"],
            str(r["households"]),
            str(r["persons"]),
            *(
                format_yuan(r[k])
                for k in ("accrued_fen", "exported_fen", "paid_fen", "returned_fen", "outstanding_fen")
            ),
        )
    console.print(table)


def _print_deadlines(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(title="到账期限 deadlines, as of 2017-12-20")
    for heading in ("项目", "期间", "到账期限", "最迟报送日", "状态", "跨年"):
        table.add_column(heading)
    for r in rows:
        table.add_row(
            r["programme"],
            r["period"],
            r["due_date"],
            r["last_safe_day"] or "unknown",
            r["state"],
            "breach" if r["year_end_breach"] else "",
        )
    console.print(table)
