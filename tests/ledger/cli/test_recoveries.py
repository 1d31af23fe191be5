"""Recoveries (多发追回) end to end on both stores (issue 14 item 3; ../shared/examples/entitlement.md 2 and 3):
offset against the payee's next payment (the bank file carries the net amount), listed, collected or
written off by a second account, undone by a bank return, never twice under re-runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from exporters.pain002 import render_pain002
from ledger.bootstrap import database_from_url, open_apps
from ledger.keys import KEY_ENV, KEY_FILE_ENV
from ledger.storage import Database
from tests.conftest import pg_url
from tests.helpers.ledgers import HEADER, LI, office_cli, row

LI_ID = LI.split(",")[0]
SANMIN_ID = "152601195001011235"


@pytest.fixture(autouse=True)
def _key_file_of_the_test(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (KEY_ENV, KEY_FILE_ENV, "CIPHER_KEY", "CIPHER_TOPIC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "keys" / "ledger.key"))


@pytest.fixture
def url(db: Database) -> Iterator[str]:
    """An office's ledger (admin, clerk, checker) with the shipped Ulanqab policy, on each store."""
    found = f"sqlite:///{db.env['SQLITE_DBNAME']}" if db.kind == "sqlite" else pg_url(db.env["POSTGRES_SCHEMA"])
    assert cli(found, "init").exit_code == 0
    from tests.conftest import POLICY

    assert cli(found, "policy", "load", str(POLICY)).exit_code == 0
    yield found


def cli(url: str, *args: str) -> Result:
    return office_cli(url, *args)


def ok(url: str, *args: str) -> Any:
    done = cli(url, *args, "--json")
    assert done.exit_code == 0, done.output
    return json.loads(done.output)


def roster(url: str, tmp_path: Path, *rows: str) -> None:
    path = tmp_path / "r.csv"
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    done = cli(url, "roster", "import", str(path))
    assert done.exit_code == 0, done.output


def settle(url: str, tmp_path: Path, status: str = "ACSC", *, only: str | None = None) -> list[dict[str, Any]]:
    """Export every drafted batch as pain.001 (clerk), approve it (checker), and import the bank's pain.002
    answering each line with `status` (the line's own amount); the exported lines (id, amount in fen)."""
    lines = []
    for batch in ok(url, "batch", "list"):
        if batch["status"] != "drafted" or (only and batch["programme"] != only):
            continue
        out = tmp_path / f"out-{batch['id'][:8]}"
        assert cli(url, "batch", "export", batch["id"], "--format", "pain001", "--out", str(out)).exit_code == 0
        assert cli(url, "batch", "approve", batch["id"]).exit_code == 0
        _, disbursement = open_apps(database_from_url(url))
        try:
            views = disbursement.payment_views(disbursement.batch(batch["id"]).payment_ids)
        finally:
            disbursement.close()
        outcomes = [(pid, status, "" if status == "ACSC" else "AC04", v.net_fen) for pid, v in views.items()]
        lines.extend({"id": pid, "net_fen": v.net_fen, "period": v.period} for pid, v in views.items())
        message = f"YKT{batch['id'][:28]}"
        answer = tmp_path / f"answer-{batch['id'][:8]}.xml"
        answer.write_bytes(render_pain002(message, message, outcomes, created_at=datetime(2017, 5, 6, tzinfo=UTC)))
        imported = cli(url, "bank", "import", str(answer))
        assert imported.exit_code == 0, imported.output
    return lines


def balances(url: str, programme: str) -> dict[str, dict[str, int]]:
    rows = ok(url, "report", "balances", "--programme", programme)["rows"]
    keys = ("accrued_fen", "paid_fen", "outstanding_fen", "adjusted_fen", "recovery_due_fen", "recovered_fen",
            "written_off_fen")  # fmt: skip
    return {r["period"]: {k: r[k] for k in keys} for r in rows}


def folded(url: str, programme: str) -> dict[str, dict[str, int]]:
    """The same balances from the reference fold (`--as-of` now): the read models must agree."""
    rows = ok(url, "report", "balances", "--programme", programme, "--as-of", "2999-01-01")["rows"]
    keys = ("accrued_fen", "paid_fen", "outstanding_fen", "adjusted_fen", "recovery_due_fen", "recovered_fen",
            "written_off_fen")  # fmt: skip
    return {r["period"]: {k: r[k] for k in keys} for r in rows}


def example_3_until_april(url: str, tmp_path: Path, via: str = "change") -> dict[str, Any]:
    """Example 3: 2 members, income 300: 810.00 a month, paid January to March; on a review the income is
    500 from 2017-02-01 (`decide change`; or an approved amount of 610.00 from that date, `decide adjust`,
    which the month-end prices the same)."""
    roster(url, tmp_path, LI)
    for month in ("2017-01", "2017-02", "2017-03"):
        assert cli(url, "run", month).exit_code == 0
    settle(url, tmp_path)
    if via == "change":
        decided = cli(url, "decide", "change", LI_ID, "urban_dibao", "--income", "500", "--on", "2017-02-01",
                      "--reason", "复核:收入500元")  # fmt: skip
    else:
        decided = cli(url, "decide", "adjust", LI_ID, "urban_dibao", "--on", "2017-02-01", "--amount", "610",
                      "--reason", "复核:收入500元")  # fmt: skip
    assert decided.exit_code == 0, decided.output
    return ok(url, "run", "2017-04")


def test_example_3_by_an_approved_amount_is_recovered_the_same(url: str, tmp_path: Path) -> None:
    april = example_3_until_april(url, tmp_path, via="adjust")
    assert (april["recoveries"], april["recovery_due_fen"], april["total_fen"], april["offset_fen"]) == (
        2,
        40000,
        61000,
        40000,
    )


def test_example_3_a_back_dated_change_is_offset_against_april(url: str, tmp_path: Path) -> None:
    april = example_3_until_april(url, tmp_path)
    assert (april["adjustments"], april["recoveries"], april["recovery_due_fen"]) == (0, 2, 40000)
    assert (april["payments"], april["total_fen"], april["offsets"], april["offset_fen"]) == (1, 61000, 1, 40000)
    (batch,) = [b for b in ok(url, "batch", "list") if b["status"] == "drafted"]
    assert (batch["period"], batch["payments"], batch["total_fen"]) == ("2017-04", 1, 21000)  # the net
    assert ok(url, "report", "recoveries") == []  # both offset whole
    every = ok(url, "report", "recoveries", "--all")
    assert [(r["period"], r["due_fen"], r["recovered_fen"], r["remaining_fen"]) for r in every] == [
        ("2017-02", 20000, 20000, 0),
        ("2017-03", 20000, 20000, 0),
    ]
    (line,) = settle(url, tmp_path)
    assert (line["period"], line["net_fen"]) == ("2017-04", 21000)
    out = next(tmp_path.glob(f"out-{batch['id'][:8]}/*.xml")).read_text(encoding="utf-8")
    assert "<CtrlSum>210.00</CtrlSum>" in out and ">210.00</InstdAmt>" in out
    wanted = {
        "2017-01": {"accrued_fen": 81000, "paid_fen": 81000, "outstanding_fen": 0, "adjusted_fen": 0,
                    "recovery_due_fen": 0, "recovered_fen": 0, "written_off_fen": 0},
        "2017-02": {"accrued_fen": 61000, "paid_fen": 81000, "outstanding_fen": 0, "adjusted_fen": -20000,
                    "recovery_due_fen": 0, "recovered_fen": 20000, "written_off_fen": 0},
        "2017-03": {"accrued_fen": 61000, "paid_fen": 81000, "outstanding_fen": 0, "adjusted_fen": -20000,
                    "recovery_due_fen": 0, "recovered_fen": 20000, "written_off_fen": 0},
        "2017-04": {"accrued_fen": 61000, "paid_fen": 61000, "outstanding_fen": 0, "adjusted_fen": 0,
                    "recovery_due_fen": 0, "recovered_fen": 0, "written_off_fen": 0},
    }  # fmt: skip
    assert balances(url, "urban_dibao") == wanted
    assert folded(url, "urban_dibao") == wanted
    again = ok(url, "run", "2017-04")
    assert (again["payments"], again["recoveries"], again["offsets"]) == (0, 0, 0)
    assert balances(url, "urban_dibao") == wanted
    verified = cli(url, "audit", "verify")
    assert verified.exit_code == 0, verified.output
    anomalies = cli(url, "audit", "anomalies", "--json")
    assert anomalies.exit_code == 0, anomalies.output
    assert "2017-04" not in anomalies.output


def test_a_returned_net_payment_undoes_its_offset_and_its_re_issue_pays_it_again(url: str, tmp_path: Path) -> None:
    example_3_until_april(url, tmp_path)
    (line,) = settle(url, tmp_path, "RJCT")
    assert line["net_fen"] == 21000
    open_again = ok(url, "report", "recoveries")
    assert [(r["period"], r["recovered_fen"], r["remaining_fen"]) for r in open_again] == [
        ("2017-02", 0, 20000),
        ("2017-03", 0, 20000),
    ]
    returned = balances(url, "urban_dibao")
    assert returned["2017-04"]["paid_fen"] == 0 and returned["2017-04"]["outstanding_fen"] == 61000
    assert returned["2017-02"]["outstanding_fen"] == -20000 and returned["2017-02"]["recovery_due_fen"] == 20000
    assert folded(url, "urban_dibao") == returned
    assert cli(url, "account", "set", LI_ID, "--bank", "103191000012", "--account", "6228480045001122345",
               "--reason", "退回:账号更正").exit_code == 0  # fmt: skip
    may = ok(url, "run", "2017-05")
    assert (may["reissued"], may["offsets"], may["offset_fen"]) == (1, 1, 40000)
    lines = settle(url, tmp_path)
    assert sorted((x["period"], x["net_fen"]) for x in lines) == [("2017-04", 21000), ("2017-05", 61000)]
    paid = balances(url, "urban_dibao")
    assert {p: (r["outstanding_fen"], r["recovered_fen"]) for p, r in paid.items()} == {
        "2017-01": (0, 0), "2017-02": (0, 20000), "2017-03": (0, 20000), "2017-04": (0, 0), "2017-05": (0, 0),
    }  # fmt: skip
    assert paid["2017-04"]["paid_fen"] == 61000
    assert folded(url, "urban_dibao") == paid
    assert ok(url, "report", "recoveries") == []
    assert cli(url, "audit", "verify").exit_code == 0


def example_2(url: str, tmp_path: Path) -> dict[str, Any]:
    """Example 2: 三民 H1 paid 4650.00 in January, died 2017-03-05, recorded after."""
    roster(url, tmp_path, row(SANMIN_ID, "sanmin", name="赵三民"))
    assert cli(url, "run", "2017-01").exit_code == 0
    (line,) = settle(url, tmp_path)
    assert line["net_fen"] == 465000
    assert cli(url, "decide", "terminate", SANMIN_ID, "sanmin", "--on", "2017-03-05", "--reason", "死亡").exit_code == 0
    march = ok(url, "run", "2017-03")
    assert (march["recoveries"], march["recovery_due_fen"], march["offsets"]) == (1, 232500, 0)
    (listed,) = ok(url, "report", "recoveries")
    assert (listed["id_number"], listed["name"], listed["programme"], listed["period"]) == (
        SANMIN_ID, "赵三民", "sanmin", "2017-H1",
    )  # fmt: skip
    assert (listed["due_fen"], listed["recovered_fen"], listed["written_off_fen"], listed["remaining_fen"]) == (
        232500, 0, 0, 232500,
    )  # fmt: skip
    assert listed["since"] == "2017-03"
    h1 = balances(url, "sanmin")["2017-H1"]
    assert h1 == {"accrued_fen": 232500, "paid_fen": 465000, "outstanding_fen": -232500, "adjusted_fen": -232500,
                  "recovery_due_fen": 232500, "recovered_fen": 0, "written_off_fen": 0}  # fmt: skip
    return listed


def test_example_2_written_off_by_a_second_account(url: str, tmp_path: Path) -> None:
    listed = example_2(url, tmp_path)
    by_the_clerk = office_cli(url, "recovery", "collect", listed["id"][:10], "--amount", "0", "--reason", "x")
    assert by_the_clerk.exit_code == 1 and "RecoveryExceedsRemaining" in by_the_clerk.output
    from click.testing import CliRunner

    from ledger.cli import main
    from tests.helpers.ledgers import OFFICE_FILES

    clerk_writes_off = CliRunner().invoke(
        main, ["--db", url, "--as", "clerk", "--password-file", str(OFFICE_FILES["clerk"]), "recovery", "write-off",
               listed["id"][:10], "--reason", "死亡,无遗产"]
    )  # fmt: skip
    assert clerk_writes_off.exit_code == 1 and "OnlyCheckersApprove" in clerk_writes_off.output
    written = ok(url, "recovery", "write-off", listed["id"][:10], "--reason", "死亡,无遗产 民政局〔2017〕8号")
    assert (written["written_off_fen"], written["remaining_fen"]) == (232500, 0)
    twice = cli(url, "recovery", "write-off", listed["id"][:10], "--reason", "again")
    assert twice.exit_code == 1 and "NothingToRecover" in twice.output
    h1 = balances(url, "sanmin")["2017-H1"]
    assert (h1["outstanding_fen"], h1["written_off_fen"], h1["recovery_due_fen"], h1["recovered_fen"]) == (
        0, 232500, 0, 0,
    )  # fmt: skip
    assert folded(url, "sanmin")["2017-H1"] == h1
    assert ok(url, "report", "recoveries") == []
    assert cli(url, "audit", "verify").exit_code == 0


def test_example_2_collected_never_more_than_remains(url: str, tmp_path: Path) -> None:
    listed = example_2(url, tmp_path)
    too_much = cli(url, "recovery", "collect", listed["id"][:10], "--amount", "2325.01", "--reason", "收据001")
    assert too_much.exit_code == 1 and "RecoveryExceedsRemaining" in too_much.output
    part = ok(url, "recovery", "collect", listed["id"][:10], "--amount", "1000", "--reason", "收据001")
    assert (part["collected_fen"], part["recovered_fen"], part["remaining_fen"]) == (100000, 100000, 132500)
    rest = ok(url, "recovery", "collect", listed["id"], "--amount", "1325.00", "--reason", "收据002")
    assert rest["remaining_fen"] == 0
    h1 = balances(url, "sanmin")["2017-H1"]
    assert (h1["outstanding_fen"], h1["recovered_fen"], h1["written_off_fen"], h1["recovery_due_fen"]) == (
        0, 232500, 0, 0,
    )  # fmt: skip
    assert folded(url, "sanmin")["2017-H1"] == h1
    unknown = cli(url, "recovery", "collect", "ffffffffff", "--amount", "1", "--reason", "x")
    assert unknown.exit_code == 1 and "UnknownRecovery" in unknown.output
    assert cli(url, "audit", "verify").exit_code == 0
