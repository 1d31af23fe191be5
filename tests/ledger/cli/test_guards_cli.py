"""The eligibility guards end to end through the CLI, on both stores: `roster import` and `decide resume`
refuse with the rule's name (and the file's line), exit 1, and record nothing (docs/entitlement.md)."""

from __future__ import annotations

import json
from pathlib import Path

from ledger.storage import Database
from tests.conftest import POLICY
from tests.helpers.ledgers import HEADER, LI, WANG, resident_id, row, with_accounts, yikatong

CHILD = resident_id("150902", "20100304", 1)
OLD = resident_id("152601", "19380101", 3)


def _office(db: Database, tmp_path: Path) -> str:
    with_accounts(db.url, tmp_path)
    assert yikatong(db.url, "policy", "load", str(POLICY), as_="admin").returncode == 0
    return db.url


def test_roster_import_refuses_each_guard_by_line_and_imports_nothing(db: Database, tmp_path: Path) -> None:
    url = _office(db, tmp_path)
    roster = tmp_path / "r.csv"
    roster.write_text(
        HEADER + LI + row(CHILD, "tekun_rural_dispersed") + row(OLD, "tekun_care_partial") + WANG, encoding="utf-8"
    )
    refused = yikatong(url, "roster", "import", str(roster))
    assert refused.returncode == 1, refused.stderr
    assert "r.csv line 3: AgeBelowMinimum: " in refused.stderr
    assert "r.csv line 4: RequiredProgrammeMissing: " in refused.stderr
    assert "nothing imported: 2 bad rows" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert json.loads(yikatong(url, "run", "2017-01", "--json").stdout)["payments"] == 0


def test_a_changed_account_in_a_reimport_names_account_set(db: Database, tmp_path: Path) -> None:
    url = _office(db, tmp_path)
    roster = tmp_path / "r.csv"
    roster.write_text(HEADER + LI + WANG, encoding="utf-8")
    assert yikatong(url, "roster", "import", str(roster)).returncode == 0
    roster.write_text(HEADER + LI.replace("6228480045001122337", "6228480045001122345") + WANG, encoding="utf-8")
    refused = yikatong(url, "roster", "import", str(roster))
    assert refused.returncode == 1
    assert (
        "r.csv line 2: RowDiffersFromLedger: 152601198001011239: account 6228480045001122345 differs from "
        "6228480045001122337 recorded in the ledger; use `account set`"
    ) in refused.stderr


def test_decide_resume_refuses_a_care_subsidy_after_basic_tekun_ended(db: Database, tmp_path: Path) -> None:
    url = _office(db, tmp_path)
    roster = tmp_path / "r.csv"
    roster.write_text(HEADER + row(OLD, "tekun_rural_dispersed") + row(OLD, "tekun_care_partial"), encoding="utf-8")
    assert yikatong(url, "roster", "import", str(roster)).returncode == 0
    for kind, programme, on in (
        ("suspend", "tekun_care_partial", "2017-02-01"),
        ("terminate", "tekun_rural_dispersed", "2017-03-01"),
    ):
        decided = yikatong(url, "decide", kind, OLD, programme, "--on", on, "--reason", "集民发〔2017〕60号")
        assert decided.returncode == 0, decided.stderr
    refused = yikatong(
        url, "decide", "resume", OLD, "tekun_care_partial", "--on", "2017-04-01", "--reason", "集民发〔2017〕61号"
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: RequiredProgrammeMissing: "), refused.stderr
