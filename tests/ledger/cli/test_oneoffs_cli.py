"""One-off payments end to end through the CLI, on both stores (docs/entitlement.md, "One-off payments"):
临时救助 within the policy's bounds and under maker-checker above its threshold, holiday payments once per
payee, both accrued once by `run`, batched, exported in pain.001, read back from pain.002, in balances,
verified by the audit and never a finding of `audit anomalies`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from ledger.cli import main
from ledger.storage import Database
from tests.conftest import POLICY
from tests.helpers.ledgers import HEADER, LI, OFFICE_FILES, WANG, new_ledger, office_cli, resident_id, row, yikatong

LI_ID, WANG_ID = LI.split(",")[0], WANG.split(",")[0]
OLD = resident_id("152601", "19380101", 3)
LI_ACCOUNT, OLD_ACCOUNT = "6228480045001122337", "6228480045001122345"
CARE_Q = 3 * 37300  # tekun_care_partial, a quarter of 373.00 a month (tekun_urban states no standard)
HOLIDAYS = """
[oneoffs.spring_2017]
name = "春节生活补贴"
month = "2017-02"
amount = "500.00"
per = "household"
programmes = ["tekun_urban", "tekun_care_partial", "urban_dibao", "rural_dibao"]

[oneoffs.mid_autumn_2017]
name = "中秋生活补贴"
month = "2017-09"
amount = "100.00"
per = "person"
programmes = ["urban_dibao", "rural_dibao"]
"""


def cli(url: str, *args: str) -> Result:
    return office_cli(url, *args)


def ok(url: str, *args: str) -> Any:
    done = cli(url, *args, "--json")
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


def refused(url: str, *args: str) -> str:
    done = cli(url, *args)
    assert done.exit_code == 1, done.output
    assert "Traceback" not in done.output
    return done.output


def _office(db: Database, tmp_path: Path, policy_text: str | None = None) -> str:
    url = db.url
    assert cli(url, "init").exit_code == 0
    policy = tmp_path / "policy.toml"
    policy.write_text(policy_text or POLICY.read_text(encoding="utf-8"), encoding="utf-8")
    loaded = cli(url, "policy", "load", str(policy))
    assert loaded.exit_code == 0, loaded.output
    roster = tmp_path / "r.csv"
    old_rows = (row(OLD, "tekun_urban") + row(OLD, "tekun_care_partial")).replace(LI_ACCOUNT, OLD_ACCOUNT)
    roster.write_text(HEADER + LI + WANG + old_rows, encoding="utf-8")
    imported = cli(url, "roster", "import", str(roster))
    assert imported.exit_code == 0, imported.output
    return url


def _pain002_roundtrip(url: str, batch: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """Export the batch as pain.001, have the checker approve it, and import a pain.002 paying all of it."""
    from exporters.pain002 import render_pain002
    from ledger.bootstrap import database_from_url, open_apps

    exported = ok(url, "batch", "export", batch["id"][:12], "--format", "pain001", "--out", str(tmp_path / "out"))
    (file,) = exported["files"]
    xml = Path(file["path"]).read_bytes()
    assert xml.count(b"<CdtTrfTxInf>") == batch["payments"]
    assert f"<CtrlSum>{batch['total_fen'] // 100}.{batch['total_fen'] % 100:02d}</CtrlSum>".encode() in xml
    assert ok(url, "batch", "approve", batch["id"])["status"] == "approved"
    registry, disbursement = open_apps(database_from_url(url))
    try:
        payments = disbursement.payments(disbursement.batch(batch["id"]).payment_ids)
    finally:
        registry.close()
        disbursement.close()
    message = f"YKT{batch['id'][:28]}"
    answer = tmp_path / f"answer-{batch['id'][:8]}.xml"
    answer.write_bytes(
        render_pain002(
            message,
            message,
            [(p.id.hex, "ACSC", "", p.amount_fen) for p in payments],
            created_at=datetime(2017, 4, 6, tzinfo=UTC),
        )
    )
    return ok(url, "bank", "import", str(answer))


def _batches(url: str, programme: str) -> list[tuple[str, str, int, int]]:
    return [
        (b["period"], b["run_month"], b["payments"], b["total_fen"])
        for b in ok(url, "batch", "list")
        if b["programme"] == programme
    ]


def test_temporary_aid_bounds_approval_run_once_export_and_bank_results(db: Database, tmp_path: Path) -> None:
    url = _office(db, tmp_path)
    grant = ("aid", "grant")
    below = refused(url, *grant, LI_ID, "--amount", "199.99", "--reason", "集民救〔2017〕1号", "--on", "2017-03-05")
    assert "error: AidBelowMinimum: 199.99 元 is below the policy's minimum 200.00 元 per grant" in below
    above = refused(url, *grant, LI_ID, "--amount", "30000.01", "--reason", "集民救〔2017〕1号", "--on", "2017-03-05")
    assert "error: AidAboveMaximum: 30000.01 元 is above the policy's maximum 30000.00 元 per grant" in above
    stranger = refused(url, *grant, "110101199001011237", "--amount", "500", "--reason", "x", "--on", "2017-03-05")
    assert "PersonNotInLedger" in stranger

    small = ok(url, *grant, LI_ID, "--amount", "800", "--reason", "集民救〔2017〕1号", "--on", "2017-03-05")
    assert (small["amount_fen"], small["region"], small["state"], small["recorded"]) == (
        80000,
        "150902",
        "payable",
        True,
    )
    assert small["due_date"] == "2017-03-15"
    again = ok(url, *grant, LI_ID, "--amount", "800", "--reason", "集民救〔2017〕1号", "--on", "2017-03-05")
    assert (again["grant"], again["recorded"]) == (small["grant"], False)
    other = refused(url, *grant, LI_ID, "--amount", "900", "--reason", "集民救〔2017〕1号", "--on", "2017-03-05")
    assert "GrantAlreadyRecorded" in other

    # 支出型, 一次审批、分阶段救助: two stages of one decision, each above the 1000 元 threshold.
    staged = (*grant, WANG_ID, "--kind", "expense", "--decision", "卓民救〔2017〕7号", "--reason", "住院")
    first = ok(url, *staged, "--amount", "5000", "--stage", "1", "--on", "2017-03-20")
    second = ok(url, *staged, "--amount", "2500.50", "--stage", "2", "--on", "2017-04-10")
    assert (first["state"], second["state"]) == ("awaiting approval", "awaiting approval")
    assert first["grant"] != second["grant"]
    by_clerk = CliRunner().invoke(
        main,
        ["--db", url, "--as", "clerk", "--password-file", str(OFFICE_FILES["clerk"]), "aid", "approve", first["grant"]],
    )
    assert (
        by_clerk.exit_code == 1 and "error: OnlyCheckersApprove: clerk (clerk) may not aid approve" in by_clerk.output
    )

    march = ok(url, "run", "2017-03")
    # urban_dibao 2017-01..03 (3 × 810.00), rural_dibao and OLD's care subsidy for 2017-Q1, and only the
    # payable grant (800.00).
    assert (march["payments"], march["total_fen"]) == (6, 3 * 81000 + 237834 + CARE_Q + 80000)
    assert _batches(url, "temporary_aid") == [("2017-03", "2017-03", 1, 80000)]
    deadlines = [
        r for r in ok(url, "report", "deadlines", "--today", "2017-03-08") if r["programme"] == "temporary_aid"
    ]
    assert [(r["period"], r["due_date"], r["last_safe_day"]) for r in deadlines] == [
        ("2017-03", "2017-03-15", "2017-03-13")
    ]
    listed = {g["grant"]: g for g in ok(url, "aid", "list")}
    assert [listed[g["grant"]]["accrued"] for g in (small, first, second)] == [True, False, False]

    approved = ok(url, "aid", "approve", first["grant"][:12])
    assert (approved["approved_by"], approved["state"]) == ("checker", "payable")
    assert "AidAlreadyApproved" in refused(url, "aid", "approve", first["grant"][:12])
    assert "AidNeedsNoApproval" in refused(url, "aid", "approve", small["grant"][:12])
    rerun = ok(url, "run", "2017-03")
    assert (rerun["payments"], rerun["total_fen"], rerun["late"]) == (1, 500000, 0)
    assert ok(url, "run", "2017-03")["payments"] == 0
    april = ok(url, "run", "2017-04")  # stage 2 still awaits approval
    assert (april["payments"], april["total_fen"]) == (3, 81000 + 237834 + CARE_Q)
    ok(url, "aid", "approve", second["grant"])
    may = ok(url, "run", "2017-05")
    assert (may["payments"], may["total_fen"], may["late"]) == (2, 81000 + 250050, 1)  # due 2017-04-20: late
    assert ok(url, "run", "2017-05")["payments"] == 0
    assert _batches(url, "temporary_aid") == [("2017-03", "2017-03", 2, 580000), ("2017-04", "2017-05", 1, 250050)]

    march_batch = next(
        b for b in ok(url, "batch", "list") if (b["programme"], b["period"]) == ("temporary_aid", "2017-03")
    )
    imported = _pain002_roundtrip(url, march_batch, tmp_path)
    assert (imported["paid"], imported["returned"]) == (2, 0)
    balances = ok(url, "report", "balances")["rows"]
    aid_rows = [
        (r["period"], r["accrued_fen"], r["paid_fen"], r["outstanding_fen"])
        for r in balances
        if r["programme"] == "temporary_aid"
    ]
    assert aid_rows == [("2017-03", 580000, 580000, 0), ("2017-04", 250050, 0, 250050)]
    assert cli(url, "audit", "verify").exit_code == 0
    findings = ok(url, "audit", "anomalies")
    assert not [
        f
        for f in (findings if isinstance(findings, list) else findings["findings"])
        if "temporary_aid" in f["programmes"]
    ]


def test_a_holiday_payment_is_paid_once_per_payee_across_programmes(db: Database, tmp_path: Path) -> None:
    url = _office(db, tmp_path, POLICY.read_text(encoding="utf-8") + HOLIDAYS)
    january = ok(url, "run", "2017-01")
    assert _batches(url, "spring_2017") == []
    february = ok(url, "run", "2017-02")
    # OLD holds tekun_urban and tekun_care_partial: one payment; LI and WANG one each, per household.
    assert _batches(url, "spring_2017") == [("2017-02", "2017-02", 3, 150000)]
    assert ok(url, "run", "2017-02")["payments"] == 0
    october = ok(url, "run", "2017-10")
    # mid-autumn per person, late: LI's household of 2 and WANG's of 3 at 100.00 元.
    assert _batches(url, "mid_autumn_2017") == [("2017-09", "2017-10", 2, 50000)]
    assert ok(url, "run", "2017-10")["payments"] == 0
    assert january["payments"] > 0 and february["payments"] > 0 and october["late"] >= 2

    (spring,) = [b for b in ok(url, "batch", "list") if b["programme"] == "spring_2017"]
    assert _pain002_roundtrip(url, spring, tmp_path)["paid"] == 3
    rows = {(r["programme"], r["period"]): r for r in ok(url, "report", "balances")["rows"]}
    assert (rows["spring_2017", "2017-02"]["paid_fen"], rows["spring_2017", "2017-02"]["households"]) == (150000, 3)
    assert rows["mid_autumn_2017", "2017-09"]["persons"] == 5
    assert cli(url, "audit", "verify").exit_code == 0
    findings = ok(url, "audit", "anomalies")
    listed = findings if isinstance(findings, list) else findings["findings"]
    assert not [f for f in listed if {"spring_2017", "mid_autumn_2017"} & set(f["programmes"])]


def test_the_granter_cannot_approve_on_a_ledger_with_typed_names(db: Database, tmp_path: Path) -> None:
    """On a ledger without accounts (an earlier release's), maker-checker still holds per grant."""
    new_ledger(db.url)
    assert yikatong(db.url, "policy", "load", str(POLICY), as_="wang").returncode == 0
    roster = tmp_path / "r.csv"
    roster.write_text(HEADER + LI, encoding="utf-8")
    assert yikatong(db.url, "roster", "import", str(roster), as_="wang").returncode == 0
    granted = yikatong(
        db.url, "aid", "grant", LI_ID, "--amount", "3000", "--reason", "集民救〔2017〕2号", "--on", "2017-03-01",
        "--json", as_="wang",
    )  # fmt: skip
    assert granted.returncode == 0, granted.stderr
    grant = json.loads(granted.stdout)["grant"]
    same = yikatong(db.url, "aid", "approve", grant[:10], as_="wang")
    assert same.returncode == 1
    assert same.stderr.startswith("error: AidApproverMustDifferFromGranter: wang granted"), same.stderr
    assert yikatong(db.url, "aid", "approve", grant[:10], as_="li").returncode == 0
    assert (
        json.loads(yikatong(db.url, "run", "2017-03", "--json", as_="wang").stdout)["total_fen"] == 3 * 81000 + 300000
    )
