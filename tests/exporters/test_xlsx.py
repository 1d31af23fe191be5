"""The payment roster (发放花名册) and the public notice (公示) as xlsx (DESIGN.md, The event log: public
outputs mask personal data; exports regenerate byte-for-byte)."""

from __future__ import annotations

import hashlib
import html
import io
import os
import re
import subprocess
import sys
import uuid
import zipfile
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import load_workbook

from exporters.rows import BatchHeader, ExportRefused, PaymentRow
from exporters.xlsx import OBJECTION_LINE, render_notice, render_roster
from tests.helpers.exporters import header_for

CREATED_AT = datetime(2017, 1, 4, 9, 15, tzinfo=UTC)
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN = "建国秀英桂兰志强玉梅海燕明华丽娟"
FORMULA_NAMES = ("=cmd|' /C calc'!A0", "+SUM(A1:A9)", "-2+3", "@SUM(1)", "\tTAB", "\r=1+1", '=HYPERLINK("x")')


def make_rows(count: int) -> list[PaymentRow]:
    """`count` payees with distinct 18-character IDs, 19-digit accounts and three-character names."""
    return [
        PaymentRow(
            serial=i,
            payment_id=uuid.uuid5(uuid.NAMESPACE_URL, f"yikatong:xlsx:{i}").hex,
            id_number=f"1509{i % 100:02d}{19300101 + i % 28:08d}{i % 1000:03d}{'0123456789X'[i % 11]}",
            name=SURNAMES[i % len(SURNAMES)] + GIVEN[i % len(GIVEN)] + GIVEN[(i // len(GIVEN)) % len(GIVEN)],
            account=f"{6217000000000000000 + i * 7919:019d}",
            bank_code="103191000015",
            amount_fen=1 + (i * 104729) % 300000,
            region="150902" if i % 3 else "150981",
            persons=1 + i % 5,
            remark="城镇低保 2017-01",
        )
        for i in range(1, count + 1)
    ]


def make_header(rows: list[PaymentRow]) -> BatchHeader:
    return header_for(rows, created_at=CREATED_AT, batch_id="a1" * 16, message_id="YKT-a1a1a1a1-2017-01")


def sheet_text(data: bytes) -> str:
    """Every XML part of the workbook, character references resolved, as one text to search."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return "\n".join(html.unescape(archive.read(n).decode("utf-8")) for n in archive.namelist())


def cells(data: bytes) -> list[tuple]:
    sheet = load_workbook(io.BytesIO(data)).worksheets[0]
    return list(sheet.iter_rows(values_only=True))


def fen(value: float | int) -> int:
    """A cell's number back in fen; exact for two-decimal amounts far below 2**53 fen."""
    return int((Decimal(repr(value)) * 100).to_integral_value())


# --------------------------------------------------------------------------------------------------
# Roster


def test_roster_has_title_headings_one_row_per_payment_total_and_signature_lines() -> None:
    rows = make_rows(5)
    table = cells(render_roster(make_header(rows), rows))
    assert table[0][0] == "乌兰察布市城镇低保发放花名册 2017-01"
    assert table[2] == ("序号", "姓名", "身份证号码", "一卡通账号", "开户行行号", "发放金额(元)", "保障人数", "备注")
    for row, line in zip(rows, table[3:8], strict=True):
        assert line[:5] == (row.serial, row.name, row.id_number, row.account, row.bank_code)
        assert fen(line[5]) == row.amount_fen and line[6] == row.persons
    assert table[8][:2] == ("合计", "5笔")
    signatures = [c for c in table[-1] if c]
    assert signatures == ["经办人:", "审核人:", "日期:"]


def test_roster_total_is_a_number_equal_to_the_sum_of_the_rows() -> None:
    rows = make_rows(2000)
    data = render_roster(make_header(rows), rows)
    table = cells(data)
    total_row = next(r for r in table if r[0] == "合计")
    assert isinstance(total_row[5], float | int)
    assert fen(total_row[5]) == sum(r.amount_fen for r in rows)
    assert sum(fen(r[5]) for r in table[3 : 3 + len(rows)]) == sum(r.amount_fen for r in rows)
    assert "<f>" not in sheet_text(data)  # the total is the ledger's figure, not a formula


def test_roster_amounts_are_stored_as_exact_decimals_and_shown_with_two_decimals() -> None:
    rows = [replace(r, amount_fen=a) for r, a in zip(make_rows(4), (1, 10, 8768, 123456789012), strict=True)]
    data = render_roster(make_header(rows), rows)
    sheet = load_workbook(io.BytesIO(data)).worksheets[0]
    assert [sheet.cell(row=4 + i, column=6).value for i in range(4)] == [0.01, 0.1, 87.68, 1234567890.12]
    assert sheet.cell(row=4, column=6).number_format == "#,##0.00"
    xml = sheet_text(data)
    for text in ("<v>0.01</v>", "<v>0.10</v>", "<v>87.68</v>", "<v>1234567890.12</v>", "<v>1234567977.91</v>"):
        assert text in xml  # the decimal itself, not a double's 16 digits (87.68000000000001)


def test_id_numbers_and_accounts_are_text_not_numbers() -> None:
    rows = make_rows(3)
    table = cells(render_roster(make_header(rows), rows))
    assert all(isinstance(line[2], str) and isinstance(line[3], str) for line in table[3:6])


def test_roster_bytes_are_identical_for_identical_input() -> None:
    rows = make_rows(300)
    assert render_roster(make_header(rows), rows) == render_roster(make_header(rows), rows)


def test_roster_and_notice_bytes_do_not_depend_on_the_process(tmp_path: Path) -> None:
    """Another interpreter, another hash seed, a later time: the same bytes."""
    script = (
        "import hashlib, sys\n"
        "from tests.exporters.test_xlsx import make_rows, make_header\n"
        "from exporters.xlsx import render_roster, render_notice\n"
        "rows = make_rows(200)\n"
        "print(hashlib.sha256(render_roster(make_header(rows), rows)).hexdigest())\n"
        "print(hashlib.sha256(render_notice(make_header(rows), rows)).hexdigest())\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=str(root))
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, check=True
    )
    rows = make_rows(200)
    here = [
        hashlib.sha256(render_roster(make_header(rows), rows)).hexdigest(),
        hashlib.sha256(render_notice(make_header(rows), rows)).hexdigest(),
    ]
    assert result.stdout.split() == here


def test_workbook_times_come_from_the_batch_not_the_clock() -> None:
    rows = make_rows(2)
    data = render_roster(make_header(rows), rows)
    book = load_workbook(io.BytesIO(data))
    assert book.properties.created == book.properties.modified == datetime(2017, 1, 4, 9, 15)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert {info.date_time for info in archive.infolist()} == {(2017, 1, 4, 9, 15, 0)}


@pytest.mark.parametrize("render", [render_roster, render_notice])
def test_formula_looking_names_are_stored_as_text_never_as_formulas(render) -> None:
    rows = [replace(r, name=n) for r, n in zip(make_rows(len(FORMULA_NAMES)), FORMULA_NAMES, strict=True)]
    data = render(make_header(rows), rows)
    xml = sheet_text(data)
    assert "<f>" not in xml and "<f " not in xml
    sheet = load_workbook(io.BytesIO(data)).worksheets[0]
    for i in range(len(rows)):
        cell = sheet.cell(row=4 + i, column=2)
        assert cell.data_type == "s"
        if cell.value.startswith(("=", "+", "-", "@", "\t", "\r")):
            assert cell.quotePrefix  # what Excel stores when one types a leading '


def test_a_name_like_an_error_value_stays_text() -> None:
    rows = [replace(make_rows(1)[0], name="#N/A")]
    sheet = load_workbook(io.BytesIO(render_roster(make_header(rows), rows))).worksheets[0]
    assert (sheet.cell(row=4, column=2).value, sheet.cell(row=4, column=2).data_type) == ("#N/A", "s")


def test_text_an_xlsx_cannot_hold_is_refused_naming_every_row() -> None:
    rows = make_rows(6)
    rows[1] = replace(rows[1], name="张\x07三")
    rows[4] = replace(rows[4], remark="低保\ud800")
    with pytest.raises(ExportRefused) as e:
        render_roster(make_header(rows), rows)
    assert e.value.rule == "FieldNotWritable"
    assert f"row 2 (payment {rows[1].payment_id})" in str(e.value)
    assert f"row 5 (payment {rows[4].payment_id})" in str(e.value)


# --------------------------------------------------------------------------------------------------
# Notice


def test_notice_has_heading_masked_columns_and_how_to_object() -> None:
    rows = make_rows(4)
    table = cells(render_notice(make_header(rows), rows, region_names={"150902": "集宁区", "150981": "丰镇市"}))
    assert table[0][0] == "乌兰察布市城镇低保发放公示 2017-01"
    assert table[2] == ("序号", "姓名", "身份证号", "保障人数", "发放金额(元)", "所在地区")
    first = rows[0]
    masked_id = first.id_number[:6] + "*" * 8 + first.id_number[-4:]
    assert table[3][:4] == (1, first.name[0] + "*" + first.name[-1], masked_id, first.persons)
    assert fen(table[3][4]) == first.amount_fen and table[3][5] == "集宁区"
    assert table[5][5] == "丰镇市"
    assert table[-1][0] == OBJECTION_LINE == "如有异议,请在公示期内向当地民政部门反映"
    assert fen(next(r for r in table if r[0] == "合计")[4]) == sum(r.amount_fen for r in rows)


def test_notice_over_ten_thousand_rows_shows_no_full_id_no_account_and_no_full_name() -> None:
    rows = make_rows(10_000)
    data = render_notice(make_header(rows), rows)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        raw = {name: archive.read(name).decode("utf-8") for name in archive.namelist()}
    for name, xml in raw.items():
        for text in (xml, html.unescape(xml)):
            assert not re.search(r"\d{17}[\dX]", text), name
            assert not re.search(r"\d{12,19}", text), name
    everything = sheet_text(data)
    assert not any(r.account in everything or r.id_number in everything for r in rows)
    assert not any(r.name in everything for r in rows)
    assert "一卡通账号" not in everything and "收入" not in everything
    assert len(cells(data)) >= 10_000 + 3
