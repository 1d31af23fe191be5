"""The `yikatong` command as a clerk uses it (walkthrough.md): outputs, exit codes, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import POLICY
from tests.helpers.ledgers import HEADER, LI, WANG, with_accounts, yikatong


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    """A new ledger with its accounts (admin, clerk, checker, auditor), each acting after its password."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with_accounts(url, tmp_path)
    assert yikatong(url, "policy", "load", str(POLICY), as_="admin").returncode == 0
    return url


def test_the_walkthrough_month_end(ledger_url: str, tmp_path: Path) -> None:
    roster = tmp_path / "r.csv"
    roster.write_text(HEADER + LI + WANG, encoding="utf-8")
    imported = yikatong(ledger_url, "roster", "import", str(roster))
    assert imported.stdout.strip() == "imported 2 enrolments (2 households, 5 persons)"
    again = json.loads(yikatong(ledger_url, "roster", "import", str(roster), "--json").stdout)
    assert again == {"file": "r.csv", "enrolled": 0, "unchanged": 2, "households": 2, "persons": 5, "warnings": []}
    assert yikatong(ledger_url, "run", "2017-01").returncode == 0
    balances = json.loads(yikatong(ledger_url, "report", "balances", "--json").stdout)
    assert [(r["programme"], r["period"], r["accrued_fen"], r["persons"]) for r in balances["rows"]] == [
        ("urban_dibao", "2017-01", 81000, 2),
        ("rural_dibao", "2017-Q1", 237834, 3),
    ]
    again = json.loads(yikatong(ledger_url, "run", "2017-01", "--json").stdout)
    assert again["payments"] == 0
    march = json.loads(yikatong(ledger_url, "run", "2017-03", "--json").stdout)
    assert (march["payments"], march["late"]) == (2, 1)
    batches = json.loads(yikatong(ledger_url, "batch", "list", "--json").stdout)
    assert {"id", "region", "programme", "period", "payments", "total_fen", "status"} <= set(batches[0])


def test_a_roster_with_bad_rows_names_each_line_exits_1_and_imports_nothing(ledger_url: str, tmp_path: Path) -> None:
    roster = tmp_path / "r.csv"
    bad_check = WANG.replace("152621197505052342", "152621197505052341")
    bad_date = LI.replace("2017-01-01", "2017-02-30")
    roster.write_text(
        HEADER + LI + bad_check + LI.replace("152601198001011239", "152601198001011255") + bad_date, encoding="utf-8"
    )
    refused = yikatong(ledger_url, "roster", "import", str(roster))
    assert refused.returncode == 1
    assert "r.csv line 3: id_number 152621197505052341: check digit should be 2" in refused.stderr
    assert "r.csv line 5: effective_from 2017-02-30: not a date" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert json.loads(yikatong(ledger_url, "run", "2017-01", "--json").stdout)["payments"] == 0


def test_refusals_exit_1_with_the_rule_and_usage_errors_exit_2(ledger_url: str, tmp_path: Path) -> None:
    roster = tmp_path / "r.csv"
    roster.write_text(HEADER + LI, encoding="utf-8")
    yikatong(ledger_url, "roster", "import", str(roster))
    unknown = yikatong(
        ledger_url, "decide", "suspend", "152621197505052342", "urban_dibao", "--on", "2017-03-01", "--reason", "x"
    )
    assert unknown.returncode == 1 and "UnknownEnrolment" in unknown.stderr
    assert yikatong(ledger_url, "run", "2017-13").returncode == 1
    assert yikatong(ledger_url, "decide", "explode", "1", "2", "--on", "2017-01-01", "--reason", "x").returncode == 2
    missing = yikatong(ledger_url, "policy", "load", str(tmp_path / "nope.toml"), as_="admin")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr


def test_a_bad_policy_names_the_key_path_and_both_numbers(ledger_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        POLICY.read_text(encoding="utf-8").replace('expect = "5078.00"', 'expect = "5079.00"'), encoding="utf-8"
    )
    refused = yikatong(ledger_url, "policy", "load", str(bad), as_="admin")
    assert refused.returncode == 1
    assert "programmes.tekun_rural_dispersed.standards[0].expect" in refused.stderr
    assert "5078.00" in refused.stderr and "5079.00" in refused.stderr


def test_export_approve_and_bank_import_from_the_command_line(ledger_url: str, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from exporters.pain002 import render_pain002

    roster = tmp_path / "r.csv"
    roster.write_text(HEADER + LI, encoding="utf-8")
    yikatong(ledger_url, "roster", "import", str(roster))
    yikatong(ledger_url, "run", "2017-01")
    (batch,) = json.loads(yikatong(ledger_url, "batch", "list", "--json").stdout)
    exported = yikatong(
        ledger_url, "batch", "export", batch["id"][:12], "--format", "pain001", "--out", str(tmp_path / "out"), "--json"
    )
    assert exported.returncode == 0, exported.stderr
    (file,) = json.loads(exported.stdout)["files"]
    assert Path(file["path"]).read_bytes().count(b"<CdtTrfTxInf>") == 1
    self_approval = yikatong(ledger_url, "batch", "approve", batch["id"][:12])  # the clerk who exported it
    assert self_approval.returncode == 1 and "OnlyCheckersApprove" in self_approval.stderr
    approved = yikatong(ledger_url, "batch", "approve", batch["id"], "--json", as_="checker")
    assert approved.returncode == 0, approved.stderr
    message = f"YKT{batch['id'][:28]}"
    views = json.loads(yikatong(ledger_url, "batch", "list", "--json").stdout)
    assert views[0]["status"] == "approved" and views[0]["approved_by"] == "checker"
    assert json.loads(approved.stdout) == views[0]  # --json prints the batch as `batch list --json` does
    submitted = json.loads(yikatong(ledger_url, "batch", "submit", batch["id"][:12], "--json", as_="clerk").stdout)
    assert submitted["status"] == "submitted" and submitted["id"] == batch["id"]
    from ledger.bootstrap import database_from_url, open_apps

    _, disbursement = open_apps(database_from_url(ledger_url))
    (pid,) = disbursement.batch(batch["id"]).payment_ids
    answer = tmp_path / "answer.xml"
    answer.write_bytes(
        render_pain002(message, message, [(pid, "ACSC", "", 81000)], created_at=datetime(2017, 1, 6, tzinfo=UTC))
    )
    first = json.loads(yikatong(ledger_url, "bank", "import", str(answer), "--json").stdout)
    again = json.loads(yikatong(ledger_url, "bank", "import", str(answer), "--json").stdout)
    assert (first["paid"], first["already_imported"], again["already_imported"]) == (1, False, True)
    broken = tmp_path / "broken.xml"
    broken.write_bytes(answer.read_bytes()[:200])
    refused = yikatong(ledger_url, "bank", "import", str(broken))
    assert refused.returncode == 1 and "nothing applied" in refused.stderr and "Traceback" not in refused.stderr


def test_audit_verify_passes_on_an_intact_ledger_and_names_an_edited_event(ledger_url: str, tmp_path: Path) -> None:
    import sqlite3

    roster = tmp_path / "r.csv"
    roster.write_text(HEADER + LI + WANG, encoding="utf-8")
    yikatong(ledger_url, "roster", "import", str(roster))
    yikatong(ledger_url, "run", "2017-01")
    intact = yikatong(ledger_url, "audit", "verify")
    assert intact.returncode == 0, intact.stderr
    connection = sqlite3.connect(ledger_url.removeprefix("sqlite:///"))
    (rowid, state) = connection.execute(
        "SELECT rowid, state FROM disbursement_events WHERE topic LIKE '%Payment.Accrued' LIMIT 1"
    ).fetchone()
    flipped = state[:40] + bytes([state[40] ^ 1]) + state[41:]  # one byte: the state may be ciphertext
    connection.execute("UPDATE disbursement_events SET state = ? WHERE rowid = ?", (flipped, rowid))
    connection.commit()
    connection.close()
    tampered = yikatong(ledger_url, "audit", "verify")
    assert tampered.returncode == 1
    assert f"position {rowid}" in tampered.stdout + tampered.stderr


def test_a_policy_that_changes_accrued_months_warns_and_the_next_run_adjusts_them(
    ledger_url: str, tmp_path: Path
) -> None:
    roster = tmp_path / "r.csv"
    roster.write_text(HEADER + LI, encoding="utf-8")
    yikatong(ledger_url, "roster", "import", str(roster))
    yikatong(ledger_url, "run", "2017-02")
    raised = tmp_path / "raised.toml"
    text = POLICY.read_text(encoding="utf-8")
    old = 'standards = [{ from = "2017-01-01", amount = "555.00", per = "month" }]'
    assert text.count(old) == 1
    raised.write_text(
        text.replace(old, old[:-1] + ', { from = "2017-02-01", amount = "580.00", per = "month" }]'), encoding="utf-8"
    )
    loaded = yikatong(ledger_url, "policy", "load", str(raised), as_="admin")
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stderr.startswith("warning: urban_dibao: the standard for 2017-02, already accrued, differs")
    again = yikatong(ledger_url, "policy", "load", str(raised), as_="admin")
    assert again.stderr == ""  # the same policy again: nothing
    yikatong(ledger_url, "run", "2017-03")
    rows = json.loads(yikatong(ledger_url, "report", "balances", "--json").stdout)["rows"]
    by_period = {r["period"]: r["accrued_fen"] for r in rows if r["programme"] == "urban_dibao"}
    # LI: 2 members, income 300 元: 2 × 555 − 300 = 810 元 as accrued; from February 2 × 580 − 300 = 860 元,
    # February's 50 元 more as an adjustment (补发差额) accrued by the March run (issue 14).
    assert by_period == {"2017-01": 81000, "2017-02": 86000, "2017-03": 86000}
    adjusted = {r["period"]: r.get("adjusted_fen") for r in rows if r["programme"] == "urban_dibao"}
    assert adjusted == {"2017-01": 0, "2017-02": 5000, "2017-03": 0}
