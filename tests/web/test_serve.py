"""`yikatong serve`: refused before listening when the ledger cannot be served."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from ledger.cli import main
from tests.helpers.ledgers import new_ledger


def test_serve_refuses_a_ledger_without_accounts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"
    new_ledger(url)
    done = CliRunner().invoke(main, ["--db", url, "serve", "--port", "8999"])
    assert done.exit_code == 1
    assert "WebNeedsAccounts" in done.output


def test_serve_refuses_a_store_that_holds_no_ledger(tmp_path: Path) -> None:
    done = CliRunner().invoke(main, ["--db", f"sqlite:///{tmp_path / 'missing.db'}", "serve"])
    assert done.exit_code == 1 and "Traceback" not in done.output
    assert not (tmp_path / "missing.db").exists()


def test_serve_refuses_a_bad_session_length(tmp_path: Path) -> None:
    done = CliRunner().invoke(main, ["--db", f"sqlite:///{tmp_path / 'x.db'}", "serve", "--session", "9d"])
    assert done.exit_code == 1 and "BadDuration" in done.output
