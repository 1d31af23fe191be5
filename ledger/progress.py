"""A progress bar for long runs (month-end, imports, exports), shown only to a person watching.

Guarantees:
- On a terminal (stderr is a TTY, or `enabled=True`) a rich bar on stderr shows the description, the
  bar, done/total (`?` when the total is unknown), the rate in items per second and the elapsed time.
- Otherwise (piped, redirected, under tests, `enabled=False`) nothing at all is written, and the
  `advance` callable is a function that does nothing, so a batch job's output stays clean.
- stdout is never touched: machine-readable output (`--json`) can be piped while the bar runs.
- `advance(n)` costs one call into rich (a lock and an addition) when shown, one empty call when not;
  it does not redraw, rich's own refresh thread does, ten times a second at most.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

REFRESHES_PER_SECOND = 10


def _ignore(n: int) -> None:
    """The advance of a hidden bar."""


class RateColumn(ProgressColumn):
    """Items per second, e.g. `12.3k/s`; blank until rich has two samples to estimate from."""

    def render(self, task: Task) -> Text:
        speed = task.speed
        if speed is None:
            return Text("", style="progress.data.speed")
        return Text(f"{format_rate(speed)}/s", style="progress.data.speed")


def format_rate(per_second: float) -> str:
    """950 → '950', 12_345 → '12.3k', 2_500_000 → '2.5M'."""
    if per_second < 1_000:
        return f"{per_second:.0f}"
    if per_second < 1_000_000:
        return f"{per_second / 1_000:.1f}k"
    return f"{per_second / 1_000_000:.1f}M"


def stderr_is_terminal() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty is not None and isatty())


@contextmanager
def progress(description: str, total: int | None, *, enabled: bool | None = None) -> Iterator[Callable[[int], None]]:
    """Yield `advance(n)`, which adds n done items; `enabled=None` shows the bar only on a terminal."""
    shown = stderr_is_terminal() if enabled is None else enabled
    if not shown:
        yield _ignore
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
    )
    console = Console(stderr=True)
    with Progress(*columns, console=console, refresh_per_second=REFRESHES_PER_SECOND) as bar:
        task_id = bar.add_task(description, total=total)
        yield partial(bar.advance, task_id)
