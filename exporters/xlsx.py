"""The payment roster (发放花名册) and the public notice (公示) as xlsx workbooks.

Guarantees:
- Amounts are number cells whose stored text is the exact yuan amount of the integer fen (555.01, never
  555.0099… or 87.68000000000001), shown with two decimals; the total is a number equal to the sum of
  the rows (the ledger's figure), not a formula.
- The notice shows no full name, no full ID number and no account number: names go through
  `mask_name` (张*三), ID numbers through `mask_id` (150602********1234), and the account column does
  not exist. Income is not among the rows, so it cannot appear.
- No text cell is ever a formula: every string is written as text, and one that a spreadsheet would
  read as a formula when edited or re-imported (starting with = + - @, a tab or a carriage return) also
  carries Excel's quote prefix (the stored form of typing a leading ').
- Identical input gives identical bytes: the document properties take `BatchHeader.created_at`, and the
  zip entries are rewritten with that timestamp and fixed attributes (openpyxl stamps them with the
  current time). Byte identity holds for one installed openpyxl and zlib; another version may lay out
  the same workbook differently.
- A text that an xlsx file cannot hold (control characters, lone surrogates) refuses the whole workbook
  naming every bad row (`FieldNotWritable`), rather than openpyxl failing halfway or dropping it.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Alignment, Border, Font, Side
from openpyxl.styles.cell_style import StyleArray
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from openpyxl.writer.excel import ExcelWriter

from domain.identity import mask_id, mask_name, shown
from domain.money import format_yuan
from exporters.rows import BatchHeader, ExportRefused, FieldLimit, PaymentRow

# An Excel sheet holds 1,048,576 rows; the title, headings, total and signature lines need a few.
SHEET_ROWS_MAX = 1_048_576 - 16
CELL_CHARS_MAX = 32_767  # Excel's limit on the text in one cell
ERRORS_SHOWN_MAX = 200
ZIP_EPOCH = datetime(1980, 1, 1)  # the earliest time a zip entry can carry

AMOUNT_FORMAT = "#,##0.00"
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
OBJECTION_LINE = "如有异议,请在公示期内向当地民政部门反映"

ROSTER_HEADINGS = ("序号", "姓名", "身份证号码", "一卡通账号", "开户行行号", "发放金额(元)", "保障人数", "备注")
ROSTER_WIDTHS = (8, 12, 22, 24, 16, 16, 10, 24)
NOTICE_HEADINGS = ("序号", "姓名", "身份证号", "保障人数", "发放金额(元)", "所在地区")
NOTICE_WIDTHS = (8, 12, 22, 10, 16, 16)

# Characters XML 1.0 cannot carry (so neither can a sheet), besides tab, line feed and carriage return.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

_TITLE_FONT = Font(bold=True, size=14)
_BOLD = Font(bold=True)
_CENTRE = Alignment(horizontal="center", vertical="center")
_ACROSS = Alignment(horizontal="centerContinuous", vertical="center")
_THIN = Side(style="thin")
_GRID = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)


def render_roster(header: BatchHeader, rows: Sequence[PaymentRow]) -> bytes:
    """The payment roster (发放花名册) the finance office signs: one row per payment, full details."""
    _check_rows(rows, [(row.name, row.id_number, row.account, row.bank_code, row.remark) for row in rows])
    _check_header(header, (header.region_name, header.programme_name, header.period, header.payer_name))
    book, sheet = _new_book(header, "发放花名册", ROSTER_WIDTHS)
    c = _Cells(sheet)
    title = f"{header.region_name}{header.programme_name}发放花名册 {header.period}"
    subtitle = f"付款单位:{header.payer_name}  批次号:{header.batch_id}  到账期限:{header.due_date}"
    _title_rows(c, title, subtitle, len(ROSTER_HEADINGS))
    sheet.append([c.heading(text) for text in ROSTER_HEADINGS])
    for row in rows:
        sheet.append(
            [
                c.number(row.serial),
                c.text(row.name),
                c.text(row.id_number),
                c.text(row.account),
                c.text(row.bank_code),
                c.amount(row.amount_fen),
                c.number(row.persons),
                c.text(row.remark),
            ]
        )
    total_fen = sum(row.amount_fen for row in rows)
    persons = sum(row.persons for row in rows)
    total = [c.text("合计", bold=True), c.text(f"{len(rows)}笔", bold=True), c.text(""), c.text(""), c.text("")]
    sheet.append([*total, c.amount(total_fen, bold=True), c.number(persons, bold=True), c.text("")])
    sheet.append([])
    signatures = [c.text("经办人:", border=False), None, None, c.text("审核人:", border=False), None]
    sheet.append([*signatures, c.text("日期:", border=False)])
    return _saved(book, header)


def render_notice(
    header: BatchHeader, rows: Sequence[PaymentRow], *, region_names: Mapping[str, str] | None = None
) -> bytes:
    """The public notice (公示): masked names and ID numbers, persons, amount and place; no account.

    `region_names` names the payees' divisions (county codes); without it a payee in the batch's own
    region shows `header.region_name` and any other shows its division code.
    """
    names = dict(region_names or {})
    names.setdefault(header.region, header.region_name)
    masked = [(mask_name(row.name), mask_id(row.id_number), names.get(row.region, row.region)) for row in rows]
    _check_rows(rows, masked)
    _check_header(header, (header.region_name, header.programme_name, header.period))
    book, sheet = _new_book(header, "公示", NOTICE_WIDTHS)
    c = _Cells(sheet)
    title = f"{header.region_name}{header.programme_name}发放公示 {header.period}"
    subtitle = f"以下为{header.period}{header.programme_name}发放对象,现予公示。"
    _title_rows(c, title, subtitle, len(NOTICE_HEADINGS))
    sheet.append([c.heading(text) for text in NOTICE_HEADINGS])
    for row, (name, id_masked, place) in zip(rows, masked, strict=True):
        sheet.append(
            [
                c.number(row.serial),
                c.text(name),
                c.text(id_masked),
                c.number(row.persons),
                c.amount(row.amount_fen),
                c.text(place),
            ]
        )
    total_fen = sum(row.amount_fen for row in rows)
    persons = sum(row.persons for row in rows)
    total = [c.text("合计", bold=True), c.text(f"{len(rows)}户(人)", bold=True), c.text("")]
    sheet.append([*total, c.number(persons, bold=True), c.amount(total_fen, bold=True), c.text("")])
    sheet.append([])
    sheet.append([c.text(OBJECTION_LINE, border=False)])
    return _saved(book, header)


# --------------------------------------------------------------------------------------------------
# Checks before anything is written


def _check_rows(rows: Sequence[PaymentRow], texts: Iterable[tuple[str, ...]]) -> None:
    """Every row's texts (as they will be written) fit in a cell; all bad rows named at once."""
    if len(rows) > SHEET_ROWS_MAX:
        raise ExportRefused("SheetTooLong", f"{len(rows)} payments, more than a sheet holds ({SHEET_ROWS_MAX})")
    problems: list[str] = []
    for row, row_texts in zip(rows, texts, strict=True):
        for text in row_texts:
            problem = _text_problem(text)
            if problem:
                problems.append(f"row {row.serial} (payment {row.payment_id}): {problem}")
    _refuse_if(problems)


def _check_header(header: BatchHeader, texts: tuple[str, ...]) -> None:
    problems = [f"batch {header.batch_id}: {p}" for p in map(_text_problem, texts) if p]
    _refuse_if(problems)


# The texts each workbook writes (render_roster, render_notice check them with `_text_problem`).
_ROW_TEXTS = ("name", "id_number", "account", "bank_code", "remark")
_HEADER_TEXTS = ("region_name", "programme_name", "period", "payer_name")


def field_limits() -> tuple[FieldLimit, ...]:
    """What an xlsx cell can carry, for each field the roster and the notice write."""
    return tuple(
        FieldLimit("xlsx", field, "a cell", CELL_CHARS_MAX, forbidden=_NOT_XML.pattern)
        for field in (*_ROW_TEXTS, *_HEADER_TEXTS)
    )


def _text_problem(text: str) -> str:
    hit = _NOT_XML.search(text)
    if hit:
        return f"{shown(text)} has {hit.group()!r} (U+{ord(hit.group()):04X}), which an xlsx file cannot hold"
    if len(text) > CELL_CHARS_MAX:
        return f"{shown(text)} is longer than a cell holds ({CELL_CHARS_MAX} characters)"
    return ""


def _refuse_if(problems: list[str]) -> None:
    if not problems:
        return
    lines = problems[:ERRORS_SHOWN_MAX]
    if len(problems) > ERRORS_SHOWN_MAX:
        lines.append(f"… and {len(problems) - ERRORS_SHOWN_MAX} more")
    raise ExportRefused("FieldNotWritable", "\n".join(lines))


# --------------------------------------------------------------------------------------------------
# Cells


class _Cells:
    """Makes the cells of one write-only sheet, each kind styled once.

    Assigning a border or font to a cell makes openpyxl hash the style objects and look them up, which
    was most of the time spent on a large roster; each kind of cell is styled once here and its style
    array copied to every cell of that kind.
    """

    def __init__(self, sheet: WriteOnlyWorksheet) -> None:
        self.sheet = sheet
        self._styles: dict[tuple[str, bool, bool], StyleArray | None] = {}

    def _style(self, cell: WriteOnlyCell, kind: str, *, bold: bool = False, border: bool = True) -> None:
        key = (kind, bold, border)
        if key not in self._styles:
            probe = WriteOnlyCell(self.sheet)
            if border:
                probe.border = _GRID
            if bold:
                probe.font = _BOLD
            if kind == "heading":
                probe.alignment = _CENTRE
            elif kind == "title":
                probe.font = _TITLE_FONT
                probe.alignment = _ACROSS
            elif kind == "amount":
                probe.number_format = AMOUNT_FORMAT
            elif kind == "quoted":
                probe.quotePrefix = True
            self._styles[key] = probe._style  # None when nothing was set: the default style
        style = self._styles[key]
        if style is not None:
            cell._style = StyleArray(style)

    def text(self, value: str, *, bold: bool = False, border: bool = True, kind: str = "text") -> WriteOnlyCell:
        """A text cell that is never a formula (nor an error value such as #N/A), whatever it says."""
        cell = WriteOnlyCell(self.sheet)
        if value:
            # Assigned directly rather than through `cell.value`, which would read "=…" as a formula and
            # "#N/A" as an error; the cell is text whatever its content.
            cell._value = value
            cell.data_type = "s"
            if kind == "text" and value.startswith(FORMULA_TRIGGERS):
                kind = "quoted"
        self._style(cell, kind, bold=bold, border=border)
        return cell

    def heading(self, value: str) -> WriteOnlyCell:
        return self.text(value, bold=True, kind="heading")

    def title(self, value: str) -> WriteOnlyCell:
        return self.text(value, border=False, kind="title")

    def number(self, value: int, *, bold: bool = False) -> WriteOnlyCell:
        cell = WriteOnlyCell(self.sheet, value=value)
        self._style(cell, "number", bold=bold)
        return cell

    def amount(self, amount_fen: int, *, bold: bool = False) -> WriteOnlyCell:
        """Yuan as a number cell whose stored text is the exact amount: 555.01, from 55501 fen.

        openpyxl would write a Decimal or float as "%.16g" of a binary double (87.68 becomes
        87.68000000000001 in the file); the cell's value is therefore the decimal text itself, which it
        writes unchanged into a numeric cell. A spreadsheet reads that text as the amount.
        """
        cell = WriteOnlyCell(self.sheet)
        cell._value = format_yuan(amount_fen)
        cell.data_type = "n"
        self._style(cell, "amount", bold=bold)
        return cell


# --------------------------------------------------------------------------------------------------
# Workbook and bytes


def _new_book(header: BatchHeader, sheet_title: str, widths: Sequence[int]) -> tuple[Workbook, WriteOnlyWorksheet]:
    # Write-only: rows stream to the file instead of living in memory, so a city's roster stays small.
    book = Workbook(write_only=True)
    sheet = book.create_sheet(sheet_title)
    for index, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = width
    sheet.freeze_panes = "A4"
    sheet.print_title_rows = "3:3"
    when = _utc_naive(header.created_at)
    book.properties.created = when
    book.properties.modified = when
    book.properties.creator = "yikatong"
    book.properties.lastModifiedBy = "yikatong"
    book.properties.title = sheet_title
    book.properties.identifier = header.batch_id
    return book, sheet


def _title_rows(c: _Cells, title: str, subtitle: str, columns: int) -> None:
    """The title centred across the table, and a line under it.

    Centred across the columns (Excel's "centre across selection": the empty cells to its right carry
    the same alignment) rather than merged, so every cell of the sheet stays addressable on its own.
    """
    c.sheet.append([c.title(title)] + [c.title("") for _ in range(columns - 1)])
    c.sheet.append([c.text(subtitle, border=False)])


def _utc_naive(moment: datetime) -> datetime:
    """openpyxl writes document times as UTC without a zone; a naive time is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _saved(book: Workbook, header: BatchHeader) -> bytes:
    # ExcelWriter rather than `Workbook.save`, which would stamp `modified` with the current time.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        ExcelWriter(book, archive).save()
    return _fixed_zip(buffer.getvalue(), _utc_naive(header.created_at))


def _fixed_zip(data: bytes, when: datetime) -> bytes:
    """The same archive with every entry stamped `when` and given fixed attributes, in the same order."""
    stamp = max(when, ZIP_EPOCH).timetuple()[:6]
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", allowZip64=True) as target:
        for entry in source.infolist():
            info = zipfile.ZipInfo(entry.filename, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, whatever system writes it, so the bytes do not depend on it
            info.external_attr = 0o644 << 16
            target.writestr(info, source.read(entry.filename))
    return out.getvalue()
