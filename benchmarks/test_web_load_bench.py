"""pytest-benchmark (`make bench`): the web load benchmark (benchmarks/web_load.py) at 10³ enrolments and
5 users: the real server in a child process, the month-end started through its page, the users browsing
while it runs. Times the whole run; asserts no request failed and the month-end finished."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks.web_load import measure

ENROLMENTS = 1_000
USERS = 5


@pytest.mark.benchmark(group="web load 1k")
def test_web_load_of_a_thousand_enrolments(benchmark: Any, tmp_path: Path) -> None:
    rounds = iter(range(100))

    def setup() -> tuple[tuple[Path], dict[str, Any]]:
        return (tmp_path / f"round{next(rounds)}",), {}

    def run(folder: Path) -> dict[str, Any]:
        return measure(folder, payments=ENROLMENTS, users=USERS, think_s=0.2)

    figures = benchmark.pedantic(run, setup=setup, rounds=1, iterations=1)
    assert figures["month_end"] == "done" and figures["failures"] == 0, figures
    assert figures["month_end_payments"].startswith("1,000 笔")
    benchmark.extra_info.update({k: v for k, v in figures.items() if k != "slow_requests"})
