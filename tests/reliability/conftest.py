"""The reliability figures in one block at the end of the run: what `make soak` prints for the README.

Each test of this folder records its figures in `harness.RECORDED` (and as JSON under
.pytest_cache/d/yikatong-reliability); this hook prints whichever were recorded, so a partial run (`-k`)
prints its part.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.reliability.harness import RECORDED


def summary_lines(recorded: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for store in ("sqlite", "postgres"):
        kill = recorded.get(f"kill-{store}")
        if kill:
            commands = ", ".join(f"{k} {v}" for k, v in sorted(kill["kills_by_command"].items()))
            sizes = kill["month_ends"]
            lines.append(
                f"kill -9, {store}: {kill['kill_points']} kill points survived ({commands}) over "
                f"{len(sizes)} month-ends of {min(sizes, default=0)}–{max(sizes, default=0)} payments; "
                f"duplicates {kill['duplicates']}, skipped {kill['skipped']}, mismatches {kill['mismatches']}, "
                f"temporary files left {kill['temporary_files_left']} [{kill['seconds']:.0f} s, seed {kill['seed']}]"
            )
    for store in ("sqlite", "postgres"):
        for ids in ("random", "deterministic"):
            found = recorded.get(f"sensitivity-{store}-{ids}")
            if found:
                lines.append(
                    f"sensitivity, {store}, {ids} ids: duplicates {found['duplicates_after_kill_and_restart']} "
                    f"after a kill and restart, {found['duplicates_after_second_run']} after a second run"
                    + (" (protection off: the harness must find them)" if ids == "random" else "")
                )
    for name, found in sorted(recorded.items()):
        if name.startswith("concurrent-"):
            what = (
                f"payments per process {found['payments_per_process']}"
                if "payments_per_process" in found
                else f"outcomes {found.get('outcomes')}"
            )
            lines.append(
                f"{name}: {what}; duplicates {found.get('duplicates', 0)}, skipped {found.get('skipped', 0)}, "
                f"mismatches {found.get('mismatches', 0)}"
            )
    model = recorded.get("model")
    if model:
        lines.append(
            f"model test: {model['examples']} examples run (up to {model['max_steps']} steps each), "
            f"{model['steps']} states checked against the model [{model['seconds']} s]"
        )
    hostile = recorded.get("hostile-files")
    if hostile:
        lines.append(
            f"hostile files: {hostile.get('fuzz inputs', 0)} fuzz inputs tried, "
            f"{hostile.get('property examples', 0)} property examples, {hostile.get('xml attacks', 0)} XML attacks, "
            f"{hostile.get('cli cases', 0)} CLI cases; tracebacks 0 unless a test above failed"
        )
    return lines


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = summary_lines(RECORDED)
    if not lines:
        return
    terminalreporter.section("reliability figures")
    for line in lines:
        terminalreporter.write_line(line)
