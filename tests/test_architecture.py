"""Dependencies point inward (DESIGN.md, Architecture): domain imports nothing of ours outward,
exporters and projections never import the application layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOMAIN_ALLOWED = {"domain", "eventsourcing", "stdnum"}


def _imports(package: str) -> list[tuple[Path, str]]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.extend((path, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((path, node.module))
    return found


def _is_stdlib(module: str) -> bool:
    import sys

    return module.split(".")[0] in sys.stdlib_module_names


def test_domain_imports_only_the_standard_library_eventsourcing_domain_and_stdnum() -> None:
    outward = [
        f"{path.name}: {module}"
        for path, module in _imports("domain")
        if not _is_stdlib(module) and module.split(".")[0] not in DOMAIN_ALLOWED
    ]
    assert outward == []
    assert all(m in ("eventsourcing.domain",) for _, m in _imports("domain") if m.startswith("eventsourcing"))


@pytest.mark.parametrize("package", ["exporters", "projections"])
def test_exporters_and_projections_never_import_the_ledger(package: str) -> None:
    assert [f"{p.name}: {m}" for p, m in _imports(package) if m.split(".")[0] == "ledger"] == []


def test_domain_reads_no_clock_and_draws_no_random_ids() -> None:
    forbidden = ("datetime.now", "date.today", "uuid4", "random.", "time.time")
    offenders = [
        f"{path.name}: {word}"
        for path in (ROOT / "domain").rglob("*.py")
        for word in forbidden
        if word in path.read_text(encoding="utf-8")
    ]
    assert offenders == []
