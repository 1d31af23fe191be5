"""Roster import reading: all rows or none, every problem named with its line (DESIGN.md, Roster)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from ledger.roster import (
    COLUMNS,
    LINE_CHARS_MAX,
    ROSTER_ROWS_MAX,
    RosterRejected,
    RosterRow,
)
from tests.helpers.rosters import HEADER, LI, WANG, city_roster_lines, read, row, with_check_digit, write


def rejected(path: Path) -> RosterRejected:
    with pytest.raises(RosterRejected) as caught:
        read(path)
    return caught.value


def test_walkthrough_roster_reads_into_checked_rows(tmp_path: Path) -> None:
    rows = read(write(tmp_path, [HEADER, LI, WANG]))
    assert rows == (
        RosterRow(
            line=2,
            id_number="152601198001011239",
            birth_date=date(1980, 1, 1),
            name="李建华",
            region="150902",
            programme="urban_dibao",
            effective_from=date(2017, 1, 1),
            members=2,
            monthly_income_fen=30000,
            special_members=0,
            bank_code="103191000012",
            account="6228480045001122337",
            decision_ref="集民发〔2017〕2号",
            warnings=(),
        ),
        RosterRow(
            line=3,
            id_number="152621197505052342",
            birth_date=date(1975, 5, 5),
            name="王桂英",
            region="150921",
            programme="rural_dibao",
            effective_from=date(2017, 1, 1),
            members=3,
            monthly_income_fen=20000,
            special_members=1,
            bank_code="402191000034",
            account="6217002050123456789",
            decision_ref="卓民发〔2017〕5号",
            warnings=(),
        ),
    )


def test_gb18030_roster_reads_the_same_as_utf8(tmp_path: Path) -> None:
    utf8 = read(write(tmp_path, [HEADER, LI, WANG], name="utf8.csv"))
    gb = read(write(tmp_path, [HEADER, LI, WANG], encoding="gb18030", name="gb.csv"))
    assert gb == utf8
    assert gb[1].name == "王桂英"


def test_utf8_roster_with_a_byte_order_mark_reads_the_same(tmp_path: Path) -> None:
    plain = read(write(tmp_path, [HEADER, LI, WANG], name="plain.csv"))
    with_bom = read(write(tmp_path, [HEADER, LI, WANG], encoding="utf-8-sig", name="bom.csv"))
    assert with_bom == plain


def test_crlf_line_ends_and_surrounding_blanks_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes((HEADER + "\r\n" + LI.replace(",", " , ") + "\r\n").encode())
    assert read(path)[0].name == "李建华"


def test_gb18030_roster_with_its_byte_order_mark_reads_the_same(tmp_path: Path) -> None:
    plain = read(write(tmp_path, [HEADER, LI, WANG], name="plain.csv"))
    path = tmp_path / "gb_bom.csv"
    path.write_bytes(b"\x84\x31\x95\x33" + "".join(f"{line}\n" for line in [HEADER, LI, WANG]).encode("gb18030"))
    assert read(path) == plain


def test_columns_may_come_in_any_order(tmp_path: Path) -> None:
    reordered = list(reversed(COLUMNS))
    line = ",".join(reversed(LI.split(",")))
    assert read(write(tmp_path, [",".join(reordered), line]))[0].id_number == "152601198001011239"


def test_walkthrough_bad_roster_names_both_lines_and_imports_nothing(tmp_path: Path) -> None:
    lines = [
        HEADER,
        LI,
        WANG.replace("152621197505052342", "152621197505052341"),
        row(id_number=with_check_digit("15260119800202123")),
        row(id_number=with_check_digit("15260119800303123"), effective_from="2017-02-30"),
    ]
    error = rejected(write(tmp_path, lines))
    assert str(error) == (
        "r.csv line 3: id_number 152621197505052341: check digit should be 2\n"
        "r.csv line 5: effective_from 2017-02-30: not a date\n"
        "nothing imported: 2 bad rows"
    )
    assert error.errors == (
        "r.csv line 3: id_number 152621197505052341: check digit should be 2",
        "r.csv line 5: effective_from 2017-02-30: not a date",
    )
    assert error.bad_rows == 2


def test_every_kind_of_bad_row_is_named_with_its_line(tmp_path: Path) -> None:
    ids = iter(with_check_digit(f"152601198001{n:02d}123") for n in range(2, 29))
    bad = {
        3: (row(id_number=next(ids), name=""), "name: empty"),
        4: (row(id_number=next(ids), region="15090"), "region 15090: not a six-digit division code"),
        5: (row(id_number=next(ids), region="151002"), "region 151002: outside the policy region 150900"),
        6: (row(id_number=next(ids), programme="tekun"), "programme tekun: not in the policy"),
        7: (row(id_number=next(ids), members="0"), "members 0: not a positive integer"),
        8: (row(id_number=next(ids), members="2.5"), "members 2.5: not a positive integer"),
        9: (row(id_number=next(ids), monthly_income="abc"), "monthly_income abc: not a yuan amount"),
        10: (row(id_number=next(ids), monthly_income="-5.00"), "monthly_income -5.00: not a yuan amount"),
        11: (row(id_number=next(ids), special_members="3"), "special_members 3: not an integer in 0..2"),
        12: (row(id_number=next(ids), special_members="-1"), "special_members -1: not an integer in 0..2"),
        13: (row(id_number=next(ids), bank_code="ICBC"), "bank_code ICBC: not digits"),
        14: (row(id_number=next(ids), account="12AB"), "account 12AB: must be 12-19 digits"),
        15: (row(id_number=next(ids), decision_ref=""), "decision_ref: empty"),
        16: (LI, "id_number 152601198001011239 programme urban_dibao: duplicates line 2"),
        17: (row(id_number=next(ids)) + ",extra", "12 fields, expected 11"),
        18: (row(id_number="1526011980"), "id_number 1526011980: must be 18 characters, not 10"),
        19: (row(id_number=next(ids), effective_from="20170101"), "effective_from 20170101: not a date"),
        20: (row(id_number=next(ids), monthly_income="1E+999999999"), "monthly_income 1E+999999999: not a"),
    }
    lines = [HEADER, LI] + [text for text, _ in bad.values()]
    error = rejected(write(tmp_path, lines))
    assert len(error.errors) == len(bad)
    for (line, (_, message)), reported in zip(bad.items(), error.errors, strict=True):
        assert reported.startswith(f"r.csv line {line}: {message}")
    assert str(error).endswith(f"nothing imported: {len(bad)} bad rows")


def test_one_row_with_several_problems_reports_each_and_counts_once(tmp_path: Path) -> None:
    error = rejected(write(tmp_path, [HEADER, row(name="", bank_code="x", decision_ref="")]))
    assert error.errors == (
        "r.csv line 2: name: empty",
        "r.csv line 2: bank_code x: not digits",
        "r.csv line 2: decision_ref: empty",
    )
    assert str(error).endswith("nothing imported: 1 bad row")


def test_the_same_person_in_two_programmes_is_not_a_duplicate(tmp_path: Path) -> None:
    rows = read(write(tmp_path, [HEADER, LI, row(programme="rural_dibao")]))
    assert [r.programme for r in rows] == ["urban_dibao", "rural_dibao"]


def test_a_lowercase_x_duplicates_the_uppercase_id(tmp_path: Path) -> None:
    number = next(n for n in (with_check_digit(f"15260119800101{k:03d}") for k in range(1000)) if n.endswith("X"))
    lines = [HEADER, row(id_number=number), row(id_number=number[:-1] + "x")]
    assert rejected(write(tmp_path, lines)).errors == (
        f"r.csv line 3: id_number {number} programme urban_dibao: duplicates line 2",
    )


def test_birth_place_and_luhn_warnings_ride_on_the_row(tmp_path: Path) -> None:
    number = with_check_digit("15262119980505234")
    rows = read(write(tmp_path, [HEADER, row(id_number=number, account="6228480045001122338")]))
    assert rows[0].warnings == (
        "birth-place code 152621 not known to python-stdnum for 1998",
        "account 6228480045001122338 fails the Luhn check (some real cards do)",
    )


def test_missing_and_unknown_columns_are_named(tmp_path: Path) -> None:
    header = HEADER.replace("bank_code", "bank").replace(",decision_ref", "")
    error = rejected(write(tmp_path, [header, LI]))
    assert len(error.errors) == 1
    assert error.errors[0].startswith(
        "r.csv line 1: header: missing columns bank_code, decision_ref; unknown column bank;"
    )


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    assert rejected(write(tmp_path, [])).errors == ("r.csv: empty file, expected a header line",)


def test_a_header_without_rows_is_refused(tmp_path: Path) -> None:
    assert rejected(write(tmp_path, [HEADER, ""])).errors == ("r.csv: no rows after the header",)


def test_a_file_that_is_neither_utf8_nor_gb18030_is_one_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(HEADER.encode() + b"\n\xff\xfe\x80\x80\n")
    error = rejected(path)
    assert len(error.errors) == 1
    assert error.errors[0].startswith("r.csv: neither UTF-8 nor GB18030 text")


def test_utf16_from_a_spreadsheet_is_refused(tmp_path: Path) -> None:
    error = rejected(write(tmp_path, [HEADER, LI], encoding="utf-16"))
    assert error.errors[0].startswith("r.csv: neither UTF-8 nor GB18030 text")


def test_a_missing_file_is_a_rejection_not_a_crash(tmp_path: Path) -> None:
    assert rejected(tmp_path / "gone.csv").errors[0].startswith("gone.csv: cannot read")


def test_a_directory_is_a_rejection_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "r.csv").mkdir()
    assert rejected(tmp_path / "r.csv").errors[0].startswith("r.csv: cannot read")


def test_nul_characters_are_reported_not_raised(tmp_path: Path) -> None:
    error = rejected(write(tmp_path, [HEADER, row(name="李\x00建华")]))
    assert error.errors == ("r.csv line 2: name '李\\x00建华': contains control characters",)


def test_a_huge_field_is_reported_and_reading_goes_on(tmp_path: Path) -> None:
    lines = [HEADER, row(name="李" * 5_000), row(id_number="bad")]
    error = rejected(write(tmp_path, lines))
    assert error.errors[0].startswith("r.csv line 2: not readable as CSV: field larger than field limit")
    assert error.errors[1] == "r.csv line 3: id_number bad: must be 18 characters, not 3"


def test_a_huge_line_is_reported_unread_and_reading_goes_on(tmp_path: Path) -> None:
    lines = [HEADER, LI, "," * 1_000_000, row(id_number="bad")]
    error = rejected(write(tmp_path, lines))
    assert error.errors == (
        f"r.csv line 3: longer than {LINE_CHARS_MAX} characters",
        "r.csv line 4: id_number bad: must be 18 characters, not 3",
    )
    assert error.bad_rows == 2


def test_a_huge_header_line_is_refused(tmp_path: Path) -> None:
    error = rejected(write(tmp_path, ["x" * 1_000_000, LI]))
    assert error.errors == (f"r.csv line 1: header longer than {LINE_CHARS_MAX} characters",)


def test_problems_beyond_the_listing_limit_are_counted_not_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ledger.roster.ERRORS_LISTED_MAX", 3)
    lines = [HEADER] + [row(id_number="bad", name="") for _ in range(4)]
    error = rejected(write(tmp_path, lines))
    assert error.errors == (
        "r.csv line 2: id_number bad: must be 18 characters, not 3",
        "r.csv line 2: name: empty",
        "r.csv line 3: id_number bad: must be 18 characters, not 3",
        "r.csv: 5 more problems not listed",
    )
    assert str(error).endswith("nothing imported: 4 bad rows")


def test_the_field_size_limit_is_put_back_after_reading(tmp_path: Path) -> None:
    import csv

    before = csv.field_size_limit()
    read(write(tmp_path, [HEADER, LI]))
    assert csv.field_size_limit() == before


def test_an_unclosed_quote_is_reported_with_its_line(tmp_path: Path) -> None:
    error = rejected(write(tmp_path, [HEADER, LI, row(name='"李建华')]))
    assert len(error.errors) == 1
    assert error.errors[0].startswith("r.csv line 3: not readable as CSV")


def test_ragged_rows_are_each_reported(tmp_path: Path) -> None:
    error = rejected(write(tmp_path, [HEADER, "a,b", LI, ",,,,,,,,,,,,"]))
    assert error.errors == (
        "r.csv line 2: 2 fields, expected 11",
        "r.csv line 4: 13 fields, expected 11",
    )


def test_a_quoted_field_spanning_lines_keeps_later_line_numbers_true(tmp_path: Path) -> None:
    lines = [HEADER, row(decision_ref='"集民发\n〔2017〕2号"'), row(id_number="bad")]
    error = rejected(write(tmp_path, lines))
    assert error.errors == ("r.csv line 4: id_number bad: must be 18 characters, not 3",)


def test_more_rows_than_the_limit_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ledger.roster.ROSTER_ROWS_MAX", 2)
    lines = [HEADER, LI, WANG, row(programme="rural_dibao")]
    assert rejected(write(tmp_path, lines)).errors == ("r.csv: more than 2 rows; split it by region",)
    assert ROSTER_ROWS_MAX == 2_000_000


def test_a_city_sized_roster_reads_every_row(tmp_path: Path) -> None:
    """Its speed is measured in benchmarks/test_roster_bench.py, never timed here."""
    rows = read(write(tmp_path, city_roster_lines(20_000)))
    assert len(rows) == 20_000
    assert len({r.id_number for r in rows}) == 20_000


# --- bounds (issue 13, item 6): figures within domain.policy's, fields every export format can carry ------


def _id(serial: int) -> str:
    return with_check_digit(f"152601198001011{serial:02d}")


def test_members_income_and_fields_beyond_their_bounds_are_refused_each_with_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            HEADER,
            row(id_number=_id(1), members="21"),
            row(id_number=_id(2), members="20", special_members="0", monthly_income="1000000.01"),
            row(id_number=_id(3), name="李|建华"),
            row(id_number=_id(4), name="王" * 141),
            row(id_number=_id(5), bank_code="1" * 36),
            row(id_number=_id(6), members="20", monthly_income="1000000.00", name="王" * 140, bank_code="1" * 35),
        ],
    )
    errors = rejected(path).errors
    assert errors[0] == "r.csv line 2: members 21: more than 20"
    assert errors[1] == "r.csv line 3: monthly_income 1000000.01: more than 1000000.00 a month"
    assert errors[2].startswith("r.csv line 4: name 李|建华: contains '|' (U+007C), which onecard:")
    assert errors[3].startswith("r.csv line 5: name 王王") and errors[3].endswith("pain001 Cdtr/Nm can carry")
    assert errors[4].startswith("r.csv line 6: bank_code 111") and "35 that pain001 CdtrAgt" in errors[4]
    assert len(errors) == 5  # line 7 is at every bound and passes


def test_a_rare_character_a_gbk_profile_lacks_is_a_warning_and_the_row_is_imported(tmp_path: Path) -> None:
    (checked,) = read(write(tmp_path, [HEADER, row(name="王䶮")]))
    assert checked.name == "王䶮"
    assert any("cannot be written in GBK, so onecard:bank-date" in w for w in checked.warnings)
