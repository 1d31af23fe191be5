"""Household changes, reviews, exclusions across household members and the strict policy keys, end to end
through the CLI on both stores (docs/entitlement.md "Household changes", "Reviews", "Exclusions across
household members"; docs/policy.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ledger.storage import Database
from tests.conftest import POLICY
from tests.helpers.ledgers import HEADER, LI, WANG, resident_id, row, with_accounts, yikatong

LI_ID = LI.split(",")[0]
WANG_ID = WANG.split(",")[0]
OLD = resident_id("152601", "19380101", 3)
MEMBERS_HEADER = HEADER.rstrip("\n") + ",member_ids\n"


def _office(db: Database, tmp_path: Path, *rows: str, header: str = HEADER) -> str:
    with_accounts(db.url, tmp_path)
    assert yikatong(db.url, "policy", "load", str(POLICY), as_="admin").returncode == 0
    if rows:
        roster = tmp_path / "r.csv"
        roster.write_text(header + "".join(rows), encoding="utf-8")
        imported = yikatong(db.url, "roster", "import", str(roster))
        assert imported.returncode == 0, imported.stderr
    return db.url


def _json(url: str, *args: str) -> Any:
    done = yikatong(url, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _change(url: str, *args: str) -> Any:
    return _json(url, "decide", "change", LI_ID, "urban_dibao", *args, "--reason", "集民复〔2017〕3号")


def test_decide_change_pays_the_new_household_from_the_change_month(db: Database, tmp_path: Path) -> None:
    # urban dibao, 2 members, income 300: 2 × 555 − 300 = 810.00 a month.
    url = _office(db, tmp_path, LI)
    assert _json(url, "run", "2017-01")["total_fen"] == 81_000
    changed = _change(url, "--income", "500", "--on", "2017-02-01")
    assert changed == {
        "id_number": LI_ID,
        "programme": "urban_dibao",
        "effective_on": "2017-02-01",
        "from_month": "2017-02",
        "recorded": True,
        "members": 2,
        "monthly_income_fen": 50_000,
        "special_members": 0,
        "monthly_amount_fen": 61_000,
        "phase_out": False,
        "phase_out_ends_on": None,
    }
    assert _change(url, "--income", "500", "--on", "2017-02-01")["recorded"] is False  # the same again
    assert _json(url, "run", "2017-02")["total_fen"] == 61_000  # 2 × 555 − 500
    history = _json(url, "audit", "history", LI_ID)
    entries = history["events"]
    changes = [e for e in entries if e.get("kind") == "change"]
    assert [(e["effective_on"], e["monthly_income_fen"], e["phase_out"]) for e in changes] == [
        ("2017-02-01", 50_000, False)
    ]


def test_income_reaching_the_standard_starts_the_phase_out_at_the_amount_before(db: Database, tmp_path: Path) -> None:
    url = _office(db, tmp_path, LI)
    changed = _change(url, "--income", "1200", "--on", "2017-02-01")
    assert (changed["phase_out"], changed["phase_out_ends_on"]) == (True, "2017-08-01")
    # January and February at 810.00 each: the phase-out pays the amount in force before the change.
    assert _json(url, "run", "2017-02")["total_fen"] == 2 * 81_000


def test_decide_change_is_refused_without_facts_and_for_a_person_programme(db: Database, tmp_path: Path) -> None:
    url = _office(db, tmp_path, LI, row(OLD, "sanmin"))
    none = yikatong(url, "decide", "change", LI_ID, "urban_dibao", "--on", "2017-02-01", "--reason", "r")
    assert none.returncode == 1
    assert none.stderr.startswith("error: DecisionNotAllowed: change needs at least one of"), none.stderr
    person = yikatong(url, "decide", "change", OLD, "sanmin", "--members", "2", "--on", "2017-02-01", "--reason", "r")
    assert person.returncode == 1 and "DecisionNotAllowed" in person.stderr
    assert "Traceback" not in none.stderr + person.stderr


def test_report_reviews_lists_households_due_from_the_start_or_the_last_change(db: Database, tmp_path: Path) -> None:
    # urban and rural dibao: review_months = 6 (004_… 二.7), both started 2017-01-01 → due 2017-07-01.
    url = _office(db, tmp_path, LI, WANG)
    assert _json(url, "report", "reviews", "--due", "2017-06-30")["rows"] == []
    due = _json(url, "report", "reviews", "--due", "2017-07-01")
    assert due["due_by"] == "2017-07-01"
    assert [(r["id_number"], r["programme"], r["region"], r["last_review"], r["due_date"]) for r in due["rows"]] == [
        (LI_ID, "urban_dibao", "150902", "2017-01-01", "2017-07-01"),
        (WANG_ID, "rural_dibao", "150921", "2017-01-01", "2017-07-01"),
    ]
    assert due["rows"][0]["name"] == "李建华"
    _change(url, "--income", "300", "--on", "2017-03-15")  # a 复核 with no change in income still counts
    after = _json(url, "report", "reviews", "--due", "2017-09-14")
    assert [(r["id_number"], r["due_date"]) for r in after["rows"]] == [(WANG_ID, "2017-07-01")]
    later = _json(url, "report", "reviews", "--due", "2017-09-15")
    assert [(r["id_number"], r["last_review"], r["due_date"]) for r in later["rows"]] == [
        (WANG_ID, "2017-01-01", "2017-07-01"),
        (LI_ID, "2017-03-15", "2017-09-15"),
    ]
    table = yikatong(url, "report", "reviews", "--due", "2017-07-01")
    assert table.returncode == 0 and "复核 due by 2017-07-01" in table.stdout


def test_a_member_holding_an_excluded_programme_refuses_the_roster_naming_line_and_rule(
    db: Database, tmp_path: Path
) -> None:
    url = _office(db, tmp_path)
    roster = tmp_path / "m.csv"
    # WANG's rural dibao household lists OLD as a member; OLD is also paid 特困 (000_… 四: they exclude).
    roster.write_text(
        MEMBERS_HEADER + row(OLD, "tekun_rural_dispersed").rstrip("\n") + ",\n" + WANG.rstrip("\n") + f",{OLD}\n",
        encoding="utf-8",
    )
    refused = yikatong(url, "roster", "import", str(roster))
    assert refused.returncode == 1
    assert (
        f"m.csv line 2: tekun_rural_dispersed_excludes_rural_dibao: {OLD}: payee {OLD} holds rural_dibao as a "
        f"member of {WANG_ID}'s household (line 3)"
    ) in refused.stderr
    assert (
        f"m.csv line 3: rural_dibao_excludes_tekun_rural_dispersed: {WANG_ID}: member {OLD} holds "
        "tekun_rural_dispersed as payee (line 2)"
    ) in refused.stderr
    assert "nothing imported" in refused.stderr
    assert _json(url, "run", "2017-01")["payments"] == 0


def test_member_ids_are_stored_and_checked_against_the_ledger_by_a_later_roster(db: Database, tmp_path: Path) -> None:
    url = _office(db, tmp_path, WANG.rstrip("\n") + f",{OLD}\n", header=MEMBERS_HEADER)
    history = _json(url, "audit", "history", WANG_ID)
    entries = history["events"]
    assert entries[0]["member_ids"] == [OLD]
    # A later roster without the column: its payee is listed as a member of a household in the ledger.
    roster = tmp_path / "t.csv"
    roster.write_text(HEADER + row(OLD, "tekun_rural_dispersed"), encoding="utf-8")
    refused = yikatong(url, "roster", "import", str(roster))
    assert refused.returncode == 1
    assert (
        f"t.csv line 2: tekun_rural_dispersed_excludes_rural_dibao: {OLD}: payee {OLD} holds rural_dibao as a "
        f"member of {WANG_ID}'s household (the ledger)"
    ) in refused.stderr
    bad = tmp_path / "b.csv"
    bad.write_text(MEMBERS_HEADER + LI.rstrip("\n") + ",152601198001011238\n", encoding="utf-8")
    invalid = yikatong(url, "roster", "import", str(bad))
    assert invalid.returncode == 1
    assert "b.csv line 2: member_ids: " in invalid.stderr


def test_policy_load_refuses_an_unknown_programme_key_naming_it_and_the_programme(db: Database, tmp_path: Path) -> None:
    url = _office(db, tmp_path)
    typo = tmp_path / "typo.toml"
    typo.write_text(
        POLICY.read_text(encoding="utf-8").replace("age_min = 80", "age_mni = 80"),
        encoding="utf-8",
    )
    refused = yikatong(url, "policy", "load", str(typo), as_="admin")
    assert refused.returncode == 1
    assert "typo.toml: programmes.high_age.age_mni: unknown key 'age_mni' in programme high_age" in refused.stderr
    assert "nothing loaded" in refused.stderr
