"""An office ledger with a history for the report and audit pages (tests/web, tests/browser): the
January month-end of tests/helpers/web.py, then both batches exported (clerk), approved (checker) and
submitted, the bank's pain.002 (李建华 paid on 2017-01-05, 王桂英 returned AC04), 张秀兰 enrolled from
February on 李建华's account and the February month-end (一卡通账户多人共用), a termination of 李建华
back-dated to 2017-01-01, and the March month-end (多发追回 of January and February). `before_bank` is a
moment after the January month-end and before any export: the figures `--as-of` it are January's
accruals with nothing paid."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from domain.accounts import CLERK, Identity
from domain.errors import RuleBroken
from exporters.pain002 import render_pain002
from ledger.bootstrap import database_from_url, open_service
from ledger.roles import require_account
from tests.helpers.ledgers import HEADER, resident_id, yikatong
from tests.helpers.web import OfficeLedger, build_office_ledger


def _submitter() -> str:
    """Who hands a batch to the bank under this release's role table (examples/web.md: the clerk)."""
    try:
        require_account(Identity("clerk", CLERK), "batch submit")
    except RuleBroken:
        return "checker"
    return "clerk"


SUBMITTER = _submitter()
LI_ID, WANG_ID = "152601198001011239", "152621197505052342"
TERMINATION_REF = "集民发〔2017〕31号"
ZHANG_ID = resident_id("150902", "19700101", 5)
# 张秀兰 from February, paid into 李建华's 一卡通 account: 一卡通账户多人共用 in February (audit anomalies).
ZHANG = (
    f"{ZHANG_ID},张秀兰,150902,urban_dibao,2017-02-01,1,0.00,0,103191000012,6228480045001122337,集民发〔2017〕20号\n"
)


@dataclass(frozen=True)
class SettledOffice:
    office: OfficeLedger
    before_bank: str  # ISO 8601 moment between the January month-end and the first export


def cli(url: str, *args: str, as_: str = "clerk") -> str:
    done = yikatong(url, *args, as_=as_)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


def build_settled_office(folder: Path) -> SettledOffice:
    office = build_office_ledger(folder)
    time.sleep(0.01)
    before_bank = datetime.now(UTC).isoformat()
    time.sleep(0.01)
    batches = json.loads(cli(office.url, "batch", "list", "--json"))
    out = folder / "exports"
    for batch in batches:
        cli(office.url, "batch", "export", batch["id"], "--format", "pain001", "--out", str(out))
        cli(office.url, "batch", "approve", batch["id"], as_="checker")
        cli(office.url, "batch", "submit", batch["id"], as_=SUBMITTER)
        cli(office.url, "bank", "import", str(_pain002(office, batch["id"], folder)))
    roster = folder / "roster-february.csv"
    roster.write_text(HEADER + ZHANG, encoding="utf-8")
    cli(office.url, "roster", "import", str(roster))
    cli(office.url, "run", "2017-02")
    cli(office.url, "decide", "terminate", LI_ID, "urban_dibao", "--on", "2017-01-01", "--reason", TERMINATION_REF)
    cli(office.url, "run", "2017-03")
    return SettledOffice(office, before_bank)


def _pain002(office: OfficeLedger, batch_id: str, folder: Path) -> Path:
    """The bank's answer: 李建华's payment paid on 2017-01-05, 王桂英's returned (AC04 账户已销户)."""
    service = open_service(database_from_url(office.url), read_only=True)
    try:
        _, views = service.batch_payments(batch_id)
    finally:
        service.registry.close()
        service.disbursement.close()
    lines = [
        (
            p.payment_id,
            "RJCT" if p.id_number == WANG_ID else "ACSC",
            "AC04" if p.id_number == WANG_ID else "",
            p.net_fen,
        )
        for p in views
    ]
    message = f"YKT{batch_id[:28]}"
    path = folder / f"pain002-{batch_id[:8]}.xml"
    path.write_bytes(render_pain002(message, message, lines, created_at=datetime(2017, 1, 5, 10, tzinfo=UTC)))
    return path
