"""Dependencies point inward (DESIGN.md, Architecture): domain imports nothing of ours outward,
exporters and projections never import the application layer."""

from __future__ import annotations

import ast
import re
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


# --- the import graph and the storage door (issue 12) ----------------------------------------------------

PACKAGES = ("domain", "ledger", "projections", "exporters")
SQL_TEXT = re.compile(
    r"\bSELECT\b.+\bFROM\b|\bINSERT INTO\b|\bUPDATE\b.+\bSET\b|\bDELETE FROM\b|\b(CREATE|DROP|ALTER) "
    r"(TABLE|SCHEMA|ROLE|INDEX)\b|\bGRANT \w+ ON\b|\bREVOKE\b|\bPRAGMA\b|\bLOCK TABLE\b|\bFROM STDIN\b",
    re.S,
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Our modules and the modules of ours each imports, at any depth in the file (inside functions too)."""
    modules = {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_anywhere() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """String literals of a module that are not docstrings, with their line numbers."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def _outside_storage() -> list[Path]:
    return [p for p in sorted((ROOT / "ledger").rglob("*.py")) if "storage" not in p.relative_to(ROOT).parts]


def test_all_of_the_ledgers_sql_is_in_its_storage_package() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {text[:60]!r}"
        for path in _outside_storage()
        for line, text in _code_strings(path)
        if SQL_TEXT.search(text)
    ]
    assert offenders == []


def test_the_sql_finder_finds_sql() -> None:
    assert SQL_TEXT.search("SELECT rowid FROM registry_events WHERE x=?")
    assert SQL_TEXT.search("LOCK TABLE {} IN EXCLUSIVE MODE")
    assert not SQL_TEXT.search("a SELECT-only auditor may read this ledger")


def test_no_backend_branches_outside_the_storage_package() -> None:
    offenders = []
    for path in _outside_storage():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance":
                text = ast.unparse(node.args[1]) if len(node.args) > 1 else ""
                if "SQLite" in text or "Postgres" in text or "sqlite3" in text or "psycopg" in text:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert offenders == []


def test_tests_share_helpers_only_through_the_helpers_package() -> None:
    """A test module imports shared builders from tests/helpers/ (or fixtures from tests/conftest.py),
    never from another test module."""
    offenders = [
        f"{path.relative_to(ROOT)}: {module}"
        for path, module in _imports("tests")
        if module.startswith("tests.")
        and not module.startswith(("tests.helpers", "tests.conftest", "tests.reliability.harness"))
    ]
    assert offenders == []
