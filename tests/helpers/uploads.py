"""Builders for the upload pages' tests (tests/web/test_uploads.py, tests/browser/test_uploads.py): roster
files (CSV and xlsx) and a bank's pain.002 answering a real pain.001 export of an approved, submitted batch."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from openpyxl import Workbook

from domain.errors import RuleBroken
from exporters.pain002 import render_pain002
from ledger.bootstrap import database_from_url, open_service
from tests.helpers.ledgers import HEADER, resident_id, yikatong
from tests.helpers.web import OfficeLedger

# A second 城镇低保 household in the office's city, so a month's urban batch holds two payments.
ZHAO_ID = resident_id("150902", "19690315", 21)
ZHAO = f"{ZHAO_ID},赵淑芬,150902,urban_dibao,2017-02-01,2,100.00,0,103191000012,6228480045001122345,集民发〔2017〕7号\n"
# Two bad rows (line 3: members 0; line 4: an ID number's check digit), one good (line 2).
BAD_ID = ZHAO_ID[:-1] + ("0" if ZHAO_ID[-1] != "0" else "1")
BAD_ROWS = (
    ZHAO,
    ZHAO.replace(ZHAO_ID, resident_id("150902", "19700101", 33)).replace(",2,100.00,", ",0,100.00,"),
    ZHAO.replace(ZHAO_ID, BAD_ID),
)


def roster_csv(folder: Path, name: str, *rows: str) -> Path:
    path = folder / name
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    return path


def roster_xlsx(folder: Path, name: str, *rows: str) -> Path:
    """The same rows as a workbook: the header on row 1, a row per line, every cell text as an office types
    it except members and income, which a spreadsheet keeps as numbers."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(HEADER.strip().split(","))
    for line in rows:
        cells: list[Any] = line.strip().split(",")
        cells[5] = int(cells[5]) if cells[5].isdigit() else cells[5]
        cells[6] = float(cells[6])
        sheet.append(cells)
    path = folder / name
    book.save(path)
    return path


def enrolled(office: OfficeLedger, id_number: str) -> bool:
    """Whether the ledger holds anyone under `id_number` (read through the service, as `audit history`)."""
    service = open_service(database_from_url(office.url), read_only=True)
    try:
        return bool(service.history(id_number))
    except RuleBroken:
        return False
    finally:
        service.registry.close()
        service.disbursement.close()


def batches(office: OfficeLedger) -> list[dict[str, Any]]:
    listed = yikatong(office.url, "batch", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class BankReply:
    batch_id: str
    path: Path
    paid: dict[str, int]  # name → fen
    returned: dict[str, int]


def february_urban_batch(office: OfficeLedger, folder: Path) -> str:
    """赵淑芬 enrolled and the month-end of 2017-02 run: the urban batch of February (李建华, 赵淑芬)."""
    imported = yikatong(office.url, "roster", "import", str(roster_csv(folder, "zhao.csv", ZHAO)))
    assert imported.returncode == 0, imported.stderr
    ran = yikatong(office.url, "run", "2017-02")
    assert ran.returncode == 0, ran.stderr
    february = [b for b in batches(office) if b["run_month"] == "2017-02" and b["programme"] == "urban_dibao"]
    (batch,) = [b for b in february if b["payments"] == 2]
    return str(batch["id"])


def submitted_with_reply(office: OfficeLedger, folder: Path, batch_id: str) -> BankReply:
    """The batch exported as pain.001 by the clerk, approved by the checker, handed to the bank by the clerk
    (提交银行), and the bank's pain.002 (`bank_reply`): 李建华 paid, 赵淑芬 returned AC04."""
    exported = yikatong(
        office.url, "batch", "export", batch_id, "--format", "pain001", "--out", str(folder / "out"), as_="clerk"
    )
    assert exported.returncode == 0, exported.stderr
    approved = yikatong(office.url, "batch", "approve", batch_id, as_="checker")
    assert approved.returncode == 0, approved.stderr
    submitted = yikatong(office.url, "batch", "submit", batch_id, as_="clerk")
    assert submitted.returncode == 0, submitted.stderr
    return bank_reply(office, folder, batch_id)


def bank_reply(office: OfficeLedger, folder: Path, batch_id: str) -> BankReply:
    """The bank's pain.002 for a submitted batch: 李建华 paid, everyone else returned AC04 (账户已销户)."""
    service = open_service(database_from_url(office.url), read_only=True)
    try:
        _, views = service.batch_payments(batch_id)
    finally:
        service.registry.close()
        service.disbursement.close()
    outcomes = [
        (v.payment_id, "ACSC", "", v.net_fen) if v.name == "李建华" else (v.payment_id, "RJCT", "AC04", v.net_fen)
        for v in views
    ]
    message = f"YKT{batch_id[:28]}"
    path = folder / f"pain002-{batch_id[:8]}.xml"
    path.write_bytes(render_pain002(message, message, outcomes, created_at=datetime(2017, 2, 8, 10, tzinfo=UTC)))
    return BankReply(
        batch_id,
        path,
        paid={v.name: v.net_fen for v in views if v.name == "李建华"},
        returned={v.name: v.net_fen for v in views if v.name != "李建华"},
    )
