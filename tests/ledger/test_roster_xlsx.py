"""xlsx rosters (issue 15, 名册导入): the first sheet read like a CSV file — the same rows, the same checks,
the same messages and line numbers (the header is line 1) — and problems as records (line, rule)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook

from ledger.roster import COLUMNS, FIELD_CHARS_MAX, RosterRejected, is_workbook
from tests.helpers.rosters import HEADER, LI, WANG, read, row, write


def workbook(folder: Path, rows: list[list[Any]], name: str = "r.xlsx") -> Path:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for values in rows:
        sheet.append(values)
    path = folder / name
    book.save(path)
    return path


def cells(line: str) -> list[Any]:
    return line.split(",")


def rejected(path: Path) -> RosterRejected:
    with pytest.raises(RosterRejected) as caught:
        read(path)
    return caught.value


def test_a_workbook_reads_into_the_same_rows_as_its_csv(tmp_path: Path) -> None:
    csv_rows = read(write(tmp_path, [HEADER, LI, WANG]))
    assert read(workbook(tmp_path, [cells(HEADER), cells(LI), cells(WANG)])) == csv_rows


def test_cells_a_spreadsheet_types_are_read_as_the_csv_text(tmp_path: Path) -> None:
    """Numbers, whole floats and real dates, blank rows skipped (line numbers stay the rows'), trailing empty
    cells dropped, missing ones empty."""
    typed = cells(LI)
    typed[4] = datetime(2017, 1, 1)  # a date cell
    typed[5] = 2  # members as a number
    typed[6] = 300.0  # income as a float
    typed[7] = 0
    wang = cells(WANG)
    wang[4] = date(2017, 1, 1)
    wang[6] = 200
    rows = read(workbook(tmp_path, [[*cells(HEADER), None, None], typed, [], [None, None], [*wang, None]]))
    assert [(r.line, r.effective_from, r.members, r.monthly_income_fen) for r in rows] == [
        (2, date(2017, 1, 1), 2, 30000),
        (5, date(2017, 1, 1), 3, 20000),
    ]


def test_a_bad_workbook_names_every_bad_row_by_its_row_number(tmp_path: Path) -> None:
    short = cells(row(members="0"))[:-1]  # decision_ref missing: an empty cell, as a spreadsheet shows it
    too_long = cells(row(id_number="152621197505052342", name="x" * (FIELD_CHARS_MAX + 1)))
    error = rejected(workbook(tmp_path, [cells(HEADER), cells(WANG), short, too_long, [1.5, *cells(WANG)[1:]]]))
    assert [(p.line, p.rule) for p in error.problems] == [
        (3, "members"),
        (3, "decision_ref"),
        (4, "fields"),
        (5, "id_number"),
    ]
    assert error.problems[0].message == "r.xlsx line 3: members 0: not a positive integer"
    assert error.bad_rows == 3
    assert error.errors == tuple(p.message for p in error.problems)


def test_a_csv_problem_carries_its_rule_and_a_file_problem_has_no_line(tmp_path: Path) -> None:
    error = rejected(write(tmp_path, [HEADER, row(account="12"), row(region="x", id_number="152621197505052342")]))
    assert [(p.line, p.rule) for p in error.problems] == [(2, "account"), (3, "region")]
    assert [p.rule for p in rejected(write(tmp_path, [])).problems] == ["file"]
    header = rejected(write(tmp_path, ["id_number,name"])).problems
    assert [(p.line, p.rule) for p in header] == [(1, "header")]


@pytest.mark.parametrize(
    "data",
    [b"PK\x03\x04 broken", b"PK\x03\x04" + bytes(200), b""],
    ids=["truncated", "zeros", "empty"],
)
def test_a_damaged_workbook_is_refused_naming_the_file(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "r.xlsx"
    path.write_bytes(data)
    (problem,) = rejected(path).problems
    assert problem.line == 0 and problem.message.startswith("r.xlsx: not a readable xlsx workbook")


def test_a_workbook_with_only_a_header_or_nothing_is_refused(tmp_path: Path) -> None:
    assert "no rows after the header" in str(rejected(workbook(tmp_path, [list(COLUMNS)])))
    assert "empty first sheet" in str(rejected(workbook(tmp_path, [], name="empty.xlsx")))


def test_a_workbook_is_known_by_its_name_or_its_first_bytes(tmp_path: Path) -> None:
    named = workbook(tmp_path, [cells(HEADER), cells(LI)], name="upload.bin")
    assert is_workbook(named) and is_workbook(tmp_path / "nothing.xlsx")
    assert read(named)[0].name == "李建华"
    assert not is_workbook(write(tmp_path, [HEADER, LI]))
