"""Reading a roster CSV (DESIGN.md, Interfaces: Roster): all rows or none.

Guarantees:
- `read_roster` either returns every row of the file, checked, or raises `RosterRejected` listing every
  problem it found, each pointing at the file and line (STYLE.md 7: collect all of them, report all,
  apply none). Bad input of any kind (undecodable bytes, NUL characters, huge or ragged rows, a missing
  file) ends in `RosterRejected`, never in another exception.
- The file is UTF-8 (with or without BOM) if it all decodes as UTF-8, else GB18030 if it all decodes as
  that; a file that is neither is refused with one error naming it. Whole-file decoding decides, so a
  GB18030 file whose first lines happen to be valid UTF-8 is still read as GB18030.
- Warnings (a birth-place code stdnum does not know, a card failing the Luhn check) ride on the row and
  never refuse it.
- Work and memory are bounded: at most ROSTER_ROWS_MAX rows, fields of at most FIELD_CHARS_MAX
  characters; the file is streamed, never held whole in memory.
- Every figure is within the bounds domain.policy states (members 1-HOUSEHOLD_MEMBERS_MAX, income up to
  MONTHLY_INCOME_FEN_MAX), and every field a bank file or workbook writes (name, ID number, account, bank
  code) is one every configured export format can carry (exporters.limits: length, delimiters, control
  characters). A name the export would refuse later, after the money is accrued, is refused here;
  `name_problems` is the same check for `decide rename`.

This module is an input edge (STYLE.md 9): it opens the file; the checks themselves are the domain's.
"""

from __future__ import annotations

import codecs
import csv
import gc
import zipfile
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from domain.errors import BadAmount, FileRejected
from domain.identity import (
    BadAccount,
    BadResidentId,
    ResidentId,
    check_account,
    check_resident_id,
    is_bank_code,
    shown,
)
from domain.money import format_yuan, parse_yuan
from domain.policy import HOUSEHOLD_MEMBERS_MAX, MONTHLY_INCOME_FEN_MAX
from domain.regions import is_region_code, region_contains
from exporters.limits import FieldRule, export_field_rules

COLUMNS = (
    "id_number",
    "name",
    "region",
    "programme",
    "effective_from",
    "members",
    "monthly_income",
    "special_members",
    "bank_code",
    "account",
    "decision_ref",
)
# Columns a roster may carry or leave out. `member_ids`: the household members' resident ID numbers,
# `;`-separated, each checked like `id_number`; exclusions are then checked across the members too
# (docs/entitlement.md, "Exclusions across household members").
OPTIONAL_COLUMNS = ("member_ids",)
MEMBER_SEPARATOR = ";"
ROSTER_ROWS_MAX = 2_000_000
# No legitimate field comes near this (the longest are names and decision numbers); a larger one is a
# broken quote swallowing the rest of the file, and is refused before it costs memory.
FIELD_CHARS_MAX = 4096
# A physical line longer than this is refused unread; a real roster line is a few hundred characters.
LINE_CHARS_MAX = 1 << 16
# Problems listed in full; the rest are counted. A human reads the first screenful, and a file of
# two million bad rows must not become gigabytes of messages.
ERRORS_LISTED_MAX = 100_000
# Longer than any household income written in yuan and fen (a trillion yuan is 16 characters).
YUAN_CHARS_MAX = 20
ENCODINGS = ("utf-8-sig", "gb18030")
# xlsx rosters (the first sheet read like a CSV): by the file's name, or by its first bytes.
WORKBOOK_SUFFIXES = (".xlsx", ".xlsm")
ZIP_MAGIC = b"PK\x03\x04"
# A whole number stored as a float is written without `.0` only while a float holds it exactly.
FLOAT_WHOLE_MAX = 2**53
# What a damaged workbook raises from openpyxl, zipfile, zlib and the XML parsers (SyntaxError covers
# xml.etree's ParseError and lxml's XMLSyntaxError); each becomes a RosterRejected naming the file.
WORKBOOK_ERRORS: tuple[type[Exception], ...] = (
    zipfile.BadZipFile,
    zlib.error,
    KeyError,
    ValueError,
    TypeError,
    IndexError,
    EOFError,
    OSError,
    SyntaxError,
)
DECODE_CHUNK_BYTES = 1 << 20
# Programme names listed in an "unknown programme" message, so a policy with many does not flood it.
PROGRAMMES_SHOWN_MAX = 12


if TYPE_CHECKING:
    # The type of csv.reader(...) objects; typeshed names it, the runtime module does not export it.
    from _csv import _reader as _CsvReader


# One problem as a row check finds it: (the rule that refused it, the CLI's words for it). The rule is the
# column whose check failed (`members`, `id_number`…: the word the CLI's message starts with), or
# `fields`, `csv`, `line_length` and `duplicate` for a row as a whole.
Problem = tuple[str, str]
FILE_RULE = "file"  # a problem with the file as a whole (unreadable, empty, not UTF-8 or GB18030)


@dataclass(frozen=True, slots=True)
class RowProblem:
    """One problem in a roster, as a record (STYLE.md 19): its line (the header is line 1; 0 for the file
    as a whole), the rule that refused it (a check's column name as the CLI's message starts with it, or a
    domain rule's name such as `AgeBelowMinimum`), the rule's kind (the error's class for a domain rule,
    which names a family of rules such as `ProgrammesExclude`; else the rule itself), and the CLI's line
    for it, e.g. `roster.csv line 7: members 0: not a positive integer`. A page words the rule in its own
    language from `kind` and `rule`, and never reads `message` to learn what happened."""

    line: int
    rule: str
    message: str
    kind: str = ""

    @property
    def rule_kind(self) -> str:
        return self.kind or self.rule


class RosterRejected(FileRejected):
    """The roster had problems; nothing in it was imported. `errors` has one message per problem, and
    `problems` the same problems as records."""

    def __init__(self, errors: Sequence[str], bad_rows: int = 0, problems: Sequence[RowProblem] = ()) -> None:
        self.bad_rows = bad_rows
        self.problems = tuple(problems) or tuple(RowProblem(0, FILE_RULE, e) for e in errors)
        if bad_rows:
            tail = f"nothing imported: {bad_rows} bad row{'s' if bad_rows != 1 else ''}"
        else:
            tail = "nothing imported"
        super().__init__(errors, "\n".join((*errors, tail)))

    @classmethod
    def of(cls, problems: Sequence[RowProblem], bad_rows: int = 0) -> RosterRejected:
        return cls(tuple(p.message for p in problems), bad_rows, problems)


def _header_refused(name: str, message: str) -> RosterRejected:
    return RosterRejected.of((RowProblem(1, "header", f"{name} line 1: {message}"),))


@dataclass(frozen=True, slots=True)
class RosterRow:
    """One checked enrolment row; `line` is its line in the file (the header is line 1)."""

    line: int
    id_number: str
    birth_date: date
    name: str
    region: str
    programme: str
    effective_from: date
    members: int
    monthly_income_fen: int
    special_members: int
    bank_code: str
    account: str
    decision_ref: str
    warnings: tuple[str, ...]
    member_ids: tuple[str, ...] = ()  # optional column `member_ids`


# The row fields that go into bank files and workbooks, checked against what every export format carries.
EXPORTED_FIELDS = ("name", "id_number", "account", "bank_code")


def name_problems(name: str, rules: Mapping[str, FieldRule] | None = None) -> list[str]:
    """What is wrong with a payee's name, by the rules a roster row's name obeys: not empty, no control
    character, and carried by every configured export format (exporters.limits)."""
    problems = _basic_name_problems(name)
    if problems:
        return problems
    rule = (export_field_rules() if rules is None else rules).get("name")
    return rule.problems(name) if rule is not None else []


def field_problems(field: str, value: str, rules: Mapping[str, FieldRule] | None = None) -> list[str]:
    """What keeps some configured export format from carrying `value` in `field` (a bank code or an
    account given to `account set`), by the rule a roster row's field obeys."""
    rule = (export_field_rules() if rules is None else rules).get(field)
    return rule.problems(value) if rule is not None else []


def _basic_name_problems(name: str) -> list[str]:
    if not name:
        return ["name: empty"]
    if not name.isprintable():
        # A control character in a name would reach bank files and public notices.
        return [f"name {shown(name)}: contains control characters"]
    return []


def read_roster(
    path: Path, *, region: str, programmes: Collection[str], rules: Mapping[str, FieldRule] | None = None
) -> tuple[RosterRow, ...]:
    """Read and check a whole roster for the policy's `region` and `programmes`, or raise RosterRejected.

    `rules` are the export formats' field limits (default: every shipped format and profile)."""
    if not is_region_code(region):
        raise ValueError(f"policy region {region!r} is not a six-digit division code")
    field_rules = export_field_rules() if rules is None else rules
    if is_workbook(path):
        return _read_workbook(path, region, frozenset(programmes), field_rules)
    encoding = _encoding_of(path)
    limit_before = csv.field_size_limit(FIELD_CHARS_MAX)
    # Reading a million rows allocates millions of long-lived objects and none of them in cycles, so the
    # cyclic collector would only rescan them again and again: a fifth of the time at 10^6 rows.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with path.open(encoding=encoding, newline="") as file:
            return _read_rows(path.name, file, region, frozenset(programmes), field_rules)
    except OSError as error:
        raise RosterRejected((f"{path.name}: cannot read: {error.strerror or error}",)) from None
    finally:
        # Both settings are process-wide; put back whatever the rest of the program chose.
        csv.field_size_limit(limit_before)
        if gc_was_enabled:
            gc.enable()


def _encoding_of(path: Path) -> str:
    """The first of ENCODINGS that decodes the whole file, streamed in chunks."""
    failures: list[str] = []
    for encoding in ENCODINGS:
        failed_at = _first_undecodable_byte(path, encoding)
        if failed_at is None:
            return encoding
        failures.append(f"{encoding.removesuffix('-sig').upper()} at byte {failed_at}")
    raise RosterRejected((f"{path.name}: neither UTF-8 nor GB18030 text (fails as {', '.join(failures)})",))


def _first_undecodable_byte(path: Path, encoding: str) -> int | None:
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = 0
    try:
        with path.open("rb") as file:
            while chunk := file.read(DECODE_CHUNK_BYTES):
                pending = len(decoder.getstate()[0])
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as error:
                    return offset - pending + error.start
                offset += len(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError as error:
        return offset - len(error.object) + error.start
    except OSError as error:
        raise RosterRejected((f"{path.name}: cannot read: {error.strerror or error}",)) from None
    return None


def _read_rows(
    name: str, file: TextIO, region: str, programmes: frozenset[str], rules: Mapping[str, FieldRule]
) -> tuple[RosterRow, ...]:
    lines = _BoundedLines(file)
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as error:
        raise _header_refused(name, f"header not readable as CSV: {error}") from None
    if lines.too_long:
        raise _header_refused(name, f"header longer than {LINE_CHARS_MAX} characters")
    if header is None:
        raise RosterRejected((f"{name}: empty file, expected a header line",))
    checker = _RowChecker(name, region, programmes, _column_index(name, header), rules)
    lines.on_too_long = checker.too_long
    return _checked_rows(name, checker, _records(reader, checker))


def _checked_rows(name: str, checker: _RowChecker, records: Iterable[tuple[int, list[str]]]) -> tuple[RosterRow, ...]:
    """Every record through `checker`; the rows when all passed, else every problem (CSV and xlsx alike)."""
    row_count = 0
    for line, fields in records:
        row_count += 1
        if row_count > ROSTER_ROWS_MAX:
            raise RosterRejected((f"{name}: more than {ROSTER_ROWS_MAX} rows; split it by region",))
        checker.check(line, fields)
    if checker.bad_rows:
        raise RosterRejected.of(checker.all_problems(), checker.bad_rows)
    if row_count == 0:
        raise RosterRejected((f"{name}: no rows after the header",))
    return tuple(checker.rows)


# --- xlsx rosters ---------------------------------------------------------------------------------------
# An office keeps its roster in a workbook as often as in a CSV. The first sheet is read like a CSV file:
# its first row is the header (line 1), each later row is the line of its row number, blank rows are
# skipped, and every row passes the same checks with the same messages. openpyxl's read-only mode streams
# the sheet, so memory stays bounded as it does for a CSV.


def is_workbook(path: Path) -> bool:
    """An xlsx file by its name or by its first bytes (a ZIP archive: a CSV never starts so)."""
    if path.suffix.lower() in WORKBOOK_SUFFIXES:
        return True
    try:
        with path.open("rb") as file:
            return file.read(len(ZIP_MAGIC)) == ZIP_MAGIC
    except OSError:
        return False


def _read_workbook(
    path: Path, region: str, programmes: frozenset[str], rules: Mapping[str, FieldRule]
) -> tuple[RosterRow, ...]:
    # openpyxl loads here, not when the command line starts: only an xlsx roster needs it.
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    name = path.name
    errors = (*WORKBOOK_ERRORS, InvalidFileException)
    try:
        # Opened by us, so openpyxl judges the bytes and not the file's name (an upload's may be anything).
        with path.open("rb") as file:
            book = load_workbook(file, read_only=True, data_only=True)
            return _read_sheet(name, book, region, programmes, rules)
    except errors as error:
        raise RosterRejected((f"{name}: not a readable xlsx workbook: {type(error).__name__}: {error}",)) from None


def _read_sheet(
    name: str, book: Any, region: str, programmes: frozenset[str], rules: Mapping[str, FieldRule]
) -> tuple[RosterRow, ...]:
    try:
        sheet = book.worksheets[0]
        sheet.reset_dimensions()  # trust the cells, not the dimension the file declares
        rows = sheet.iter_rows(values_only=True)
        header = [_cell_text(value) for value in next(rows, ())]
        while header and not header[-1].strip():
            header.pop()
        if not header:
            raise RosterRejected((f"{name}: empty first sheet, expected a header row",))
        checker = _RowChecker(name, region, programmes, _column_index(name, header), rules)
        return _checked_rows(name, checker, _sheet_records(rows, len(header), checker))
    finally:
        book.close()


def _sheet_records(
    rows: Iterator[tuple[object, ...]], width: int, checker: _RowChecker
) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells as text) per non-blank row after the header. Empty cells past the header's
    width are dropped and missing ones count as empty, as a spreadsheet shows them."""
    for line, values in enumerate(rows, start=2):
        cells = [_cell_text(value) for value in values]
        if not any(cell.strip() for cell in cells):
            continue
        while len(cells) > width and not cells[-1].strip():
            cells.pop()
        cells.extend("" for _ in range(width - len(cells)))
        if any(len(cell) > FIELD_CHARS_MAX for cell in cells):
            checker.cell_too_long(line)
            continue
        yield line, cells


def _cell_text(value: object) -> str:
    """A cell as the text a CSV would hold: whole numbers without `.0`, dates as YYYY-MM-DD."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).upper()
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < FLOAT_WHOLE_MAX else repr(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


class _BoundedLines:
    """The file's lines, none longer than LINE_CHARS_MAX: a longer one is reported and read as blank.

    Plain iteration over a file would hold any single line in memory whole, however long it is.
    """

    def __init__(self, file: TextIO) -> None:
        self.file = file
        self.line = 0
        self.too_long: list[int] = []
        self.on_too_long: Callable[[int], None] = self.too_long.append

    def __iter__(self) -> Iterator[str]:
        readline = self.file.readline
        while text := readline(LINE_CHARS_MAX + 1):
            self.line += 1
            if len(text) > LINE_CHARS_MAX and not text.endswith(("\n", "\r")):
                self.on_too_long(self.line)
                while text and not text.endswith(("\n", "\r")):
                    text = readline(LINE_CHARS_MAX + 1)
                # One item per physical line keeps the csv reader's line numbers true.
                yield "\n"
                continue
            yield text


def _records(reader: _CsvReader, checker: _RowChecker) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) per non-blank record; a record the csv module cannot parse is reported to
    `checker` and skipped, and reading goes on after it so that later problems are reported too."""
    previous_end = reader.line_num
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            checker.unreadable(previous_end + 1, error)
            previous_end = reader.line_num
            continue
        start = previous_end + 1
        previous_end = reader.line_num
        if fields:
            yield start, fields


def _column_index(name: str, header: list[str]) -> tuple[int, ...]:
    """Position of each of COLUMNS in the header, then of each OPTIONAL_COLUMNS present (-1 when absent);
    any order is accepted, any other difference is refused."""
    cells = [cell.strip() for cell in header]
    if cells:
        # A GB18030 file may start with its own byte-order mark, which decodes to U+FEFF.
        cells[0] = cells[0].removeprefix("\ufeff")
    problems: list[str] = []
    known = (*COLUMNS, *OPTIONAL_COLUMNS)
    missing = [column for column in COLUMNS if column not in cells]
    unknown = [cell for cell in cells if cell not in known]
    repeated = sorted({cell for cell in cells if cells.count(cell) > 1 and cell in known})
    if missing:
        problems.append(f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown column{'s' if len(unknown) > 1 else ''} {', '.join(map(shown, unknown))}")
    if repeated:
        problems.append(f"repeated column{'s' if len(repeated) > 1 else ''} {', '.join(repeated)}")
    if problems:
        raise _header_refused(name, f"header: {'; '.join(problems)}; expected {','.join(COLUMNS)}")
    return tuple(cells.index(column) if column in cells else -1 for column in known)


class _RowChecker:
    """Checks rows one at a time, keeping the rows that pass and a message per problem."""

    def __init__(
        self,
        name: str,
        region: str,
        programmes: frozenset[str],
        index: tuple[int, ...],
        rules: Mapping[str, FieldRule],
    ) -> None:
        self.name = name
        self.exported = tuple((position, rules[field]) for position, field in _exported_positions() if field in rules)
        self.region = region
        self.programmes = programmes
        self.width = sum(1 for i in index if i >= 0)
        self.index = index[: len(COLUMNS)]
        self.member_index = index[len(COLUMNS)]
        self.identity_index = tuple(range(len(COLUMNS))) == self.index and self.width == len(COLUMNS)
        self.rows: list[RosterRow] = []
        self.errors: list[RowProblem] = []
        self.errors_not_listed = 0
        self.bad_rows = 0
        self.last_bad_line = 0
        # programme → id_number → line of its first row, for duplicates.
        self.first_line: dict[str, dict[str, int]] = {programme: {} for programme in programmes}
        self.regions_inside: dict[str, bool] = {}
        # Repeated values (regions, bank codes, decision numbers, dates) are kept once, not once per row:
        # at 10^6 rows that is a quarter of the memory the rows take.
        self.shared: dict[str, str] = {}
        self.dates: dict[str, date] = {}

    def unreadable(self, line: int, error: csv.Error) -> None:
        self._report(line, (("csv", f"not readable as CSV: {error}"),))

    def too_long(self, line: int) -> None:
        self._report(line, (("line_length", f"longer than {LINE_CHARS_MAX} characters"),))

    def cell_too_long(self, line: int) -> None:
        self._report(line, (("fields", f"a cell longer than {FIELD_CHARS_MAX} characters"),))

    def all_problems(self) -> list[RowProblem]:
        if not self.errors_not_listed:
            return self.errors
        more = f"{self.name}: {self.errors_not_listed} more problems not listed"
        return [*self.errors, RowProblem(0, FILE_RULE, more)]

    def _report(self, line: int, problems: Sequence[Problem]) -> None:
        if line != self.last_bad_line:
            self.bad_rows += 1
            self.last_bad_line = line
        room = ERRORS_LISTED_MAX - len(self.errors)
        self.errors.extend(
            RowProblem(line, rule, f"{self.name} line {line}: {problem}") for rule, problem in problems[:room]
        )
        self.errors_not_listed += max(0, len(problems) - max(room, 0))

    def check(self, line: int, fields: list[str]) -> None:
        problems: list[Problem] = []
        row = self._row(line, fields, problems)
        if problems:
            self._report(line, problems)
        elif row is not None:
            self.rows.append(row)

    def _row(self, line: int, fields: list[str], problems: list[Problem]) -> RosterRow | None:
        if len(fields) != self.width:
            problems.append(("fields", f"{len(fields)} fields, expected {self.width}"))
            return None
        if self.identity_index:
            values = [field.strip() for field in fields]
        else:
            values = [fields[i].strip() for i in self.index]
        (
            id_text,
            name,
            region,
            programme,
            effective_text,
            members_text,
            income_text,
            special_text,
            bank_code,
            account_text,
            decision_ref,
        ) = values

        resident = _resident_or_problem(id_text, problems)
        account = _account_or_problem(account_text, problems)
        problems.extend(("name", p) for p in _basic_name_problems(name))
        self._check_region(region, problems)
        if programme not in self.programmes:
            problems.append(
                ("programme", f"programme {shown(programme)}: not in the policy ({self._programmes_list()})")
            )
        effective_from = self.dates.get(effective_text)
        if effective_from is None:
            effective_from = _date_or_problem("effective_from", effective_text, problems)
            if effective_from is not None:
                self.dates[effective_text] = effective_from
        members = _members_or_problem(members_text, problems)
        income_fen = _income_or_problem(income_text, problems)
        special = _special_or_problem(special_text, members, problems)
        if not is_bank_code(bank_code):
            problems.append(("bank_code", f"bank_code {shown(bank_code)}: not digits"))
        if not decision_ref:
            problems.append(("decision_ref", "decision_ref: empty"))
        export_warnings = self._check_exported(values, problems)
        member_ids = (
            _member_ids_or_problem(fields[self.member_index], members, problems) if self.member_index >= 0 else ()
        )
        if resident is not None and programme in self.programmes:
            self._check_duplicate(line, resident.number, programme, problems)
        if problems:
            return None
        assert resident is not None and account is not None and effective_from is not None
        assert members is not None and income_fen is not None and special is not None
        shared = self.shared
        return RosterRow(
            line=line,
            id_number=resident.number,
            birth_date=resident.birth_date,
            name=name,
            region=shared.setdefault(region, region),
            programme=shared.setdefault(programme, programme),
            effective_from=effective_from,
            members=members,
            monthly_income_fen=income_fen,
            special_members=special,
            bank_code=shared.setdefault(bank_code, bank_code),
            account=account[0],
            decision_ref=shared.setdefault(decision_ref, decision_ref),
            warnings=resident.warnings + account[1] + export_warnings,
            member_ids=member_ids,
        )

    def _check_exported(self, values: list[str], problems: list[Problem]) -> tuple[str, ...]:
        """Each field a bank file or workbook writes, against every configured format (exporters.limits):
        a value some format cannot carry is refused now, not when its batch is exported."""
        warnings: list[str] = []
        for position, rule in self.exported:
            value = values[position]
            if value and value.isprintable():  # empty and control characters are reported by their own check
                problems.extend((rule.field, p) for p in rule.problems(value))
                warnings.extend(rule.warnings(value))
        return tuple(warnings)

    def _check_region(self, region: str, problems: list[Problem]) -> None:
        if not is_region_code(region):
            problems.append(("region", f"region {shown(region)}: not a six-digit division code"))
            return
        inside = self.regions_inside.get(region)
        if inside is None:
            inside = self.regions_inside[region] = region_contains(self.region, region)
        if not inside:
            # DESIGN.md, Roster: a row's region (county) must lie inside the policy's region.
            problems.append(("region", f"region {region}: outside the policy region {self.region}"))

    def _check_duplicate(self, line: int, id_number: str, programme: str, problems: list[Problem]) -> None:
        first = self.first_line[programme].setdefault(id_number, line)
        if first != line:
            problems.append(
                ("duplicate", f"id_number {id_number} programme {shown(programme)}: duplicates line {first}")
            )

    def _programmes_list(self) -> str:
        names = sorted(self.programmes)
        listed = ", ".join(names[:PROGRAMMES_SHOWN_MAX])
        return listed + (", …" if len(names) > PROGRAMMES_SHOWN_MAX else "")


def _exported_positions() -> tuple[tuple[int, str], ...]:
    return tuple((COLUMNS.index(field), field) for field in EXPORTED_FIELDS)


def _resident_or_problem(text: str, problems: list[Problem]) -> ResidentId | None:
    try:
        return check_resident_id(text)
    except BadResidentId as error:
        problems.append(("id_number", str(error)))
        return None


def _member_ids_or_problem(text: str, members: int | None, problems: list[Problem]) -> tuple[str, ...]:
    """`member_ids`: empty, or `;`-separated resident ID numbers (each checked like `id_number`), no
    repeats, at most `members` of them."""
    cells = [cell.strip() for cell in text.strip().split(MEMBER_SEPARATOR)] if text.strip() else []
    numbers: list[str] = []
    for cell in cells:
        inner: list[Problem] = []
        resident = _resident_or_problem(cell, inner)
        if resident is None:
            problems.extend(("member_ids", f"member_ids: {p}") for _, p in inner)
        elif resident.number in numbers:
            problems.append(("member_ids", f"member_ids: {resident.number} is listed twice"))
        else:
            numbers.append(resident.number)
    if members is not None and len(numbers) > members:
        problems.append(("member_ids", f"member_ids: {len(numbers)} ID numbers for a household of {members} members"))
    return tuple(numbers)


def _account_or_problem(text: str, problems: list[Problem]) -> tuple[str, tuple[str, ...]] | None:
    try:
        return check_account(text)
    except BadAccount as error:
        problems.append(("account", str(error)))
        return None


def _date_or_problem(column: str, text: str, problems: list[Problem]) -> date | None:
    # Only YYYY-MM-DD: date.fromisoformat alone would also take 20170101 and week dates like 2017-W01-1.
    if len(text) != 10 or text[4] != "-" or text[7] != "-" or not text.isascii():
        problems.append((column, f"{column} {shown(text)}: not a date (YYYY-MM-DD)"))
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        problems.append((column, f"{column} {text}: not a date"))
        return None


def _members_or_problem(text: str, problems: list[Problem]) -> int | None:
    if not (text.isascii() and text.isdigit()) or int(text) == 0:
        problems.append(("members", f"members {shown(text)}: not a positive integer"))
        return None
    members = int(text)
    if members > HOUSEHOLD_MEMBERS_MAX:
        problems.append(("members", f"members {members}: more than {HOUSEHOLD_MEMBERS_MAX}"))
        return None
    return members


def _income_or_problem(text: str, problems: list[Problem]) -> int | None:
    # Exponent and digit-group forms ("1E+999999999", "1_000") are refused before parse_yuan sees them:
    # Decimal accepts both, and the first would make it build an integer of a billion digits.
    if len(text) > YUAN_CHARS_MAX or not text.isascii() or any(c in text for c in "eE_"):
        problems.append(("monthly_income", f"monthly_income {shown(text)}: not a yuan amount"))
        return None
    try:
        # A household's income is never negative; parse_yuan refuses negatives by default.
        income_fen = parse_yuan(text)
    except BadAmount:
        reason = ""
        if text.startswith("-"):
            reason = " (negative)"
        elif len(text.partition(".")[2]) > 2:
            reason = " (more than 2 decimals)"
        problems.append(("monthly_income", f"monthly_income {shown(text)}: not a yuan amount{reason}"))
        return None
    if income_fen > MONTHLY_INCOME_FEN_MAX:
        problems.append(
            ("monthly_income", f"monthly_income {text}: more than {format_yuan(MONTHLY_INCOME_FEN_MAX)} a month")
        )
        return None
    return income_fen


def _special_or_problem(text: str, members: int | None, problems: list[Problem]) -> int | None:
    # 001_…, 004_…: the uplift is per elderly/disabled/minor/seriously-ill member, so at most all of them.
    upper = members if members is not None else HOUSEHOLD_MEMBERS_MAX
    if not (text.isascii() and text.isdigit()) or int(text) > upper:
        problems.append(("special_members", f"special_members {shown(text)}: not an integer in 0..{upper}"))
        return None
    return int(text)
