"""How a command shows its result: one JSON document with `--json`, else lines and tables for people.

The JSON is the contract (DESIGN.md, Interfaces: stable keys; users' scripts parse it). The lines and
tables are for reading. A command builds both from the same result and hands them to `render`, which
prints exactly one of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console
from rich.table import Table


@dataclass(frozen=True, slots=True)
class Line:
    """One line of text; `err` sends it to standard error (a warning, a note beside the result)."""

    text: str
    err: bool = False


@dataclass(frozen=True, slots=True)
class Grid:
    """A table: its headings, one row of cells per entry, an optional title, and the headings whose
    columns are right-aligned (amounts and counts); the others are left-aligned."""

    headings: Sequence[str]
    rows: Iterable[Sequence[str]]
    title: str | None = None
    right: frozenset[str] = frozenset()


Shown = str | Line | Grid  # a plain string is a line on standard output


def render(human: Iterable[Shown], *, as_json: bool = False, data: Any = None, escape_non_ascii: bool = False) -> None:
    """Print `data` as one line of JSON when the user asked `--json`, else each of `human` in order.

    `human` may be a generator: it is not consumed for `--json`. `escape_non_ascii` keeps the one JSON
    output that has always written non-ASCII text as \\u escapes (`batch export --json`) byte for byte.
    """
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=escape_non_ascii))
        return
    for shown in human:
        if isinstance(shown, Grid):
            Console().print(_table(shown))
        elif isinstance(shown, Line):
            click.echo(shown.text, err=shown.err)
        else:
            click.echo(shown)


def _table(grid: Grid) -> Table:
    table = Table(title=grid.title)
    for heading in grid.headings:
        table.add_column(heading, justify="right" if heading in grid.right else "left")
    for row in grid.rows:
        table.add_row(*row)
    return table
