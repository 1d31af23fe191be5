"""Reports as xlsx workbooks (报表下载): one sheet, a title, header lines saying as of when and where
the ledger stood, Chinese headings, the rows and a total.

Guarantees:
- Money columns are number cells in 元 whose stored text is the exact amount of the integer fen
  (555.01, never 555.0099…), with the format `0.00`; 万元 columns likewise with two decimals; rates
  are number cells holding the exact fraction the report printed (66.67% is 0.6667), formatted `0.00%`.
  So a spreadsheet sums what the ledger says, and the figures equal the report's `--json` to the fen.
- No text cell is ever a formula: every string is stored as text, and one starting with = + - @ (or a
  tab or carriage return) carries the quote prefix as well.
- Text an xlsx file cannot hold (control characters) is refused before anything is written
  (`FieldNotWritable`, naming the row), never dropped.
Rows first, then render (STYLE.md 10): the caller builds `ReportSheet`, this module only writes it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from openpyxl import Workbook
from openpyxl.cell import Cell
from openpyxl.styles import Alignment, Border, Font, Side
from openpyxl.utils import get_column_letter

from domain.money import format_yuan
from exporters.rows import ExportRefused

ROWS_MAX = 100_000  # a report's rows (region × programme × period, batches, recoveries)
AMOUNT_FORMAT = "0.00"
PERCENT_FORMAT = "0.00%"
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
KINDS = ("text", "count", "amount", "wan", "percent")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_PERCENT = re.compile(r"^(-?\d+)\.(\d{2})%$")
_DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")
_THIN = Side(style="thin")
_GRID = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)


@dataclass(frozen=True, slots=True)
class ReportSheet:
    """What a report workbook holds. Cells by column kind: `text` str, `count` int, `amount` int fen,
    `wan` the 万元 text the report printed ("14023.23"), `percent` the rate text ("66.67%") or None."""

    title: str
    header_lines: tuple[str, ...]
    headings: tuple[str, ...]
    kinds: tuple[str, ...]
    rows: Sequence[Sequence[object]]
    total: Sequence[object] | None = None  # a last row (合计), same kinds; None: no total
    widths: tuple[int, ...] = field(default=())


def render_report(sheet: ReportSheet) -> bytes:
    """The workbook's bytes; refused whole (`ExportRefused`) when a cell cannot be written."""
    _check(sheet)
    book = Workbook()
    ws = book.active
    assert ws is not None  # a new workbook has its one sheet
    ws.title = sheet.title[:31]
    ws.append([sheet.title])
    ws.cell(row=1, column=1).font = Font(bold=True, size=14)
    for line in sheet.header_lines:
        ws.append([None])
        _text(ws.cell(row=ws.max_row, column=1), line)
    heading_row = ws.max_row + 1
    for column, heading in enumerate(sheet.headings, start=1):
        cell = ws.cell(row=heading_row, column=column)
        _text(cell, heading)
        cell.font = Font(bold=True)
        cell.alignment = Alignment(horizontal="center")
        cell.border = _GRID
    body = list(sheet.rows) + ([sheet.total] if sheet.total is not None else [])
    for index, values in enumerate(body):
        row_number = heading_row + 1 + index
        bold = sheet.total is not None and index == len(body) - 1
        for column, (kind, value) in enumerate(zip(sheet.kinds, values, strict=True), start=1):
            cell = ws.cell(row=row_number, column=column)
            _write(cell, kind, value)
            cell.border = _GRID
            if bold:
                cell.font = Font(bold=True)
    for column, width in enumerate(sheet.widths or _widths(sheet), start=1):
        ws.column_dimensions[get_column_letter(column)].width = width
    ws.freeze_panes = ws.cell(row=heading_row + 1, column=1)
    book.properties.creator = "yikatong"
    book.properties.title = sheet.title
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _check(sheet: ReportSheet) -> None:
    if len(sheet.kinds) != len(sheet.headings) or any(kind not in KINDS for kind in sheet.kinds):
        raise ValueError(f"kinds {sheet.kinds} do not fit headings {sheet.headings}")
    if len(sheet.rows) > ROWS_MAX:
        raise ExportRefused("SheetTooLong", f"{len(sheet.rows)} rows, more than a report sheet holds ({ROWS_MAX})")
    problems = []
    texts = [(0, t) for t in (sheet.title, *sheet.header_lines, *sheet.headings)]
    texts += [(n, v) for n, row in enumerate(sheet.rows, start=1) for v in row if isinstance(v, str)]
    for row_number, text in texts:
        hit = _NOT_XML.search(text)
        if hit:
            where = f"row {row_number}" if row_number else "header"
            problems.append(f"{where}: {text[:40]!r} has U+{ord(hit.group()):04X}, which an xlsx file cannot hold")
    if problems:
        raise ExportRefused("FieldNotWritable", "\n".join(problems[:200]))


def _write(cell: Cell, kind: str, value: object) -> None:
    if value is None or value == "":
        return
    if kind == "text":
        _text(cell, str(value))
    elif kind == "count":
        cell.value = int(value)  # type: ignore[call-overload]
    elif kind == "amount":
        _number(cell, format_yuan(int(value)), AMOUNT_FORMAT)  # type: ignore[call-overload]
    elif kind == "wan":
        text = str(value)
        if not _DECIMAL.match(text):
            raise ValueError(f"万元 {text!r}")
        _number(cell, text, AMOUNT_FORMAT)
    elif kind == "percent":
        _number(cell, _fraction_text(str(value)), PERCENT_FORMAT)


def _fraction_text(rate: str) -> str:
    """'66.67%' → '0.6667' exactly (the rate as the report printed it, as a fraction of one)."""
    match = _PERCENT.match(rate)
    if match is None:
        raise ValueError(f"rate {rate!r}")
    whole, hundredths = int(match.group(1)), int(match.group(2))
    ten_thousandths = abs(whole) * 100 + hundredths
    sign = "-" if rate.startswith("-") else ""
    return f"{sign}{ten_thousandths // 10_000}.{ten_thousandths % 10_000:04d}"


def _number(cell: Cell, text: str, number_format: str) -> None:
    """A number cell whose stored text is `text` itself: openpyxl would write a float's binary
    expansion (87.68 as 87.68000000000001); a spreadsheet reads the text as the exact number."""
    cell._value = text
    cell.data_type = "n"
    cell.number_format = number_format


def _text(cell: Cell, text: str) -> None:
    """A text cell that is never a formula or an error value, whatever it says."""
    cell._value = text
    cell.data_type = "s"
    if text.startswith(FORMULA_TRIGGERS):
        cell.quotePrefix = True  # type: ignore[attr-defined]


def _widths(sheet: ReportSheet) -> tuple[int, ...]:
    return tuple(max(10, min(40, len(h) * 2 + 4)) for h in sheet.headings)
