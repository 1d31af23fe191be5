"""The command line's edges (ledger/cli): one error boundary, one acting identity, one way to print a result."""

from __future__ import annotations

import json
import sqlite3

import pytest

from domain.accounts import Identity
from domain.errors import FileRejected, RuleBroken
from domain.policy import PolicyRejected
from exporters.rows import ResultFileRejected
from ledger.cli import Context, refusals
from ledger.cli.identity import legacy_identity
from ledger.cli.output import Grid, Line, render
from ledger.exports import ResultsRefused
from ledger.roster import RosterRejected


def refused(error: Exception, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited, refusals():
        raise error
    assert exited.value.code == 1
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (PolicyRejected("p.toml", ["region.code: missing"]), "p.toml: region.code: missing\nnothing loaded"),
        (RosterRejected(("r.csv line 2: bad",), 1), "r.csv line 2: bad\nnothing imported: 1 bad row"),
        (ResultsRefused(["a.xml line 3: bad"]), "a.xml line 3: bad\nnothing applied"),
        (ResultFileRejected(["a.xml line 3: bad"]), "a.xml line 3: bad\nnothing applied"),
    ],
)
def test_a_rejected_file_lists_its_problems_and_is_printed_as_it_is_with_exit_1(
    error: FileRejected, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert isinstance(error, FileRejected) and len(error.errors) == 1
    assert refused(error, capsys) == message + "\n"


def test_a_broken_rule_is_one_line_naming_the_rule(capsys: pytest.CaptureFixture[str]) -> None:
    assert refused(RuleBroken("no such batch"), capsys) == "error: RuleBroken: no such batch\n"


def test_a_storage_library_error_is_its_first_line(capsys: pytest.CaptureFixture[str]) -> None:
    error = sqlite3.OperationalError("disk I/O error\nat page 7")
    assert refused(error, capsys) == "error: storage: disk I/O error\n"


def test_any_other_error_is_our_mistake_and_keeps_its_traceback() -> None:
    with pytest.raises(ZeroDivisionError), refusals():
        raise ZeroDivisionError("a bug")


def test_the_acting_identity_is_the_name_claimed_normalised_until_accounts_exist() -> None:
    assert legacy_identity(" ｗａｎｇ ") == Identity("wang", "", authenticated=False)
    assert Context("sqlite:///unused.db", "wang").claimed_actor == "wang"  # nothing opened until a command asks


def test_json_is_printed_instead_of_the_lines_and_tables(capsys: pytest.CaptureFixture[str]) -> None:
    def never() -> list[str]:
        raise AssertionError("the lines are not built for --json")

    render(iter(never, None), as_json=True, data={"区划": "150900", "rows": []})
    assert capsys.readouterr() == ('{"区划": "150900", "rows": []}\n', "")
    render([], as_json=True, data={"path": "出口"}, escape_non_ascii=True)
    assert json.loads(capsys.readouterr().out) == {"path": "出口"}


def test_lines_and_tables_are_printed_in_order_warnings_to_standard_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    render(["first", Line("warning: careful", err=True), Grid(("项目", "笔数"), [("urban_dibao", "2")], title="批次")])
    out, err = capsys.readouterr()
    assert out.startswith("first\n") and "批次" in out and "urban_dibao" in out
    assert err == "warning: careful\n"
