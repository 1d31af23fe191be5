"""pytest-benchmark suite (`make bench`): reading and checking a 2·10⁴-row roster CSV (every row's
resident ID, dates, amounts and account checked; no store involved). The aim is 5·10⁴ rows/s, so that a
province's 10⁶-row roster reads in 20 s; the figure is in the benchmark's extra_info."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers.rosters import city_roster_lines, read, write

ROWS = 20_000


@pytest.mark.benchmark(group="roster read 20k")
def test_reading_a_city_roster(benchmark: Any, tmp_path: Path) -> None:
    path = write(tmp_path, city_roster_lines(ROWS))
    rows = benchmark.pedantic(lambda: read(path), rounds=3, iterations=1)
    assert len(rows) == ROWS
    benchmark.extra_info["rows_per_s"] = round(ROWS / benchmark.stats.stats.median)
