"""Roster files for the reading tests and the reading benchmark: the walkthrough's lines and a city's."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from stdnum.cn import ric

from ledger.roster import (
    COLUMNS,
    RosterRow,
    read_roster,
)

HEADER = ",".join(COLUMNS)


# The walkthrough's roster (examples/walkthrough.md), lines 2 and 3.
LI = (
    "152601198001011239,李建华,150902,urban_dibao,2017-01-01,2,300.00,0,103191000012,"
    "6228480045001122337,集民发〔2017〕2号"
)


WANG = (
    "152621197505052342,王桂英,150921,rural_dibao,2017-01-01,3,200.00,1,402191000034,"
    "6217002050123456789,卓民发〔2017〕5号"
)


PROGRAMMES = ("urban_dibao", "rural_dibao")


def with_check_digit(first_17: str) -> str:
    return first_17 + ric.calc_check_digit(first_17 + "0")


def write(tmp_path: Path, lines: list[str], *, encoding: str = "utf-8", name: str = "r.csv") -> Path:
    path = tmp_path / name
    path.write_bytes("".join(line + "\n" for line in lines).encode(encoding))
    return path


def read(path: Path) -> tuple[RosterRow, ...]:
    return read_roster(path, region="150900", programmes=PROGRAMMES)


def row(**changes: str) -> str:
    """The walkthrough's line 2 with some columns changed."""
    values = dict(zip(COLUMNS, LI.split(","), strict=True))
    values.update(changes)
    return ",".join(values[column] for column in COLUMNS)


def city_roster_lines(rows_count: int) -> list[str]:
    """A city's roster of distinct people (one birth day each, 1950 on): the reading benchmark's input."""
    lines = [HEADER]
    for n in range(rows_count):
        day = date(1950, 1, 1).toordinal() + n % 20_000
        born = date.fromordinal(day).strftime("%Y%m%d")
        number = with_check_digit(f"152601{born}{n % 1000:03d}")
        lines.append(row(id_number=number, name=f"李{n}", account=f"62284800{n:011d}"))
    return lines
