"""Entitlement over time end to end through the CLI, on both stores (issue 14): the figures of
../shared/examples/entitlement.md on the shipped Ulanqab 2017 policy, to the fen."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ledger.storage import Database
from tests.conftest import POLICY
from tests.helpers.ledgers import HEADER, office_cli, resident_id, row

TEKUN = resident_id("150921", "19500101", 11)
ZHAO = resident_id("150902", "19450101", 12)
SOLO = resident_id("150902", "19700101", 13)
RURAL = resident_id("150921", "19600101", 14)
PAPERS = "集民发〔2017〕60号"


def cli(url: str, *args: str) -> Any:
    done = office_cli(url, *args)
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout) if "--json" in args else done.stdout


@pytest.fixture
def office(db: Database, tmp_path: Path) -> str:
    cli(db.url, "init")
    cli(db.url, "policy", "load", str(POLICY))
    return db.url


def imported(url: str, tmp_path: Path, *rows: str) -> None:
    roster = tmp_path / f"r{len(list(tmp_path.glob('r*.csv')))}.csv"
    roster.write_text(HEADER + "".join(rows), encoding="utf-8")
    cli(url, "roster", "import", str(roster))


def balances(url: str, programme: str) -> dict[str, dict[str, int]]:
    rows = cli(url, "report", "balances", "--programme", programme, "--json")["rows"]
    return {r["period"]: r for r in rows}


def batches(url: str) -> list[dict[str, Any]]:
    return cli(url, "batch", "list", "--json")


def test_a_tekun_start_in_february_is_paid_its_first_quarter_months_late(office: str, tmp_path: Path) -> None:
    cli(office, "run", "2017-01")
    imported(office, tmp_path, row(TEKUN, "tekun_rural_dispersed", region="150921", start="2017-02-01"))
    february = cli(office, "run", "2017-02", "--json")
    assert (february["payments"], february["total_fen"], february["late"]) == (1, 84634, 1)
    cli(office, "run", "2017-12")
    accrued = {p: r["accrued_fen"] for p, r in balances(office, "tekun_rural_dispersed").items()}
    assert accrued == {"2017-Q1": 84634, "2017-Q2": 126950, "2017-Q3": 126950, "2017-Q4": 126950}
    assert sum(accrued.values()) == 465484  # 5078.00 − January's 423.16
    findings = cli(office, "audit", "anomalies", "--json")["findings"]
    assert [f for f in findings if f["kind"] in ("amount_differs_from_standard", "paid_while_not_payable")] == []


def test_a_sanmin_start_in_february_is_paid_8525(office: str, tmp_path: Path) -> None:
    imported(office, tmp_path, row(ZHAO, "sanmin", start="2017-02-01"))
    cli(office, "run", "2017-12")
    accrued = {p: r["accrued_fen"] for p, r in balances(office, "sanmin").items()}
    assert accrued == {"2017-H1": 387500, "2017-H2": 465000}


def test_a_death_recorded_after_the_half_year_was_paid_is_a_recovery_due_of_2325(office: str, tmp_path: Path) -> None:
    imported(office, tmp_path, row(ZHAO, "sanmin"))
    january = cli(office, "run", "2017-01", "--json")
    assert january["total_fen"] == 465000
    cli(office, "decide", "terminate", ZHAO, "sanmin", "--on", "2017-03-05", "--reason", PAPERS)
    march = cli(office, "run", "2017-03", "--json")
    assert (march["payments"], march["adjustments"], march["recoveries"], march["recovery_due_fen"]) == (
        0,
        0,
        1,
        232500,
    )
    read_models = cli(office, "report", "balances", "--json")["rows"]
    assert read_models == cli(office, "report", "balances", "--as-of", "2100-01-01T00:00:00+00:00", "--json")["rows"]
    h1 = balances(office, "sanmin")["2017-H1"]
    assert (h1["accrued_fen"], h1["adjusted_fen"], h1["recovery_due_fen"], h1["households"]) == (
        232500,
        -232500,
        232500,
        1,
    )
    assert h1["outstanding_fen"] == 232500  # nothing paid yet: the bank has not confirmed January's file
    again = cli(office, "run", "2017-03", "--json")
    assert (again["payments"], again["adjustments"], again["recoveries"]) == (0, 0, 0)
    findings = cli(office, "audit", "anomalies", "--json")["findings"]
    assert [f for f in findings if f["kind"] in ("amount_differs_from_standard", "paid_while_not_payable")] == []
    assert [b["kind"] for b in batches(office)] == ["payments"]  # a recovery is never a bank line


def _raised(tmp_path: Path) -> Path:
    """The policy announced in April: urban dibao 555 → 580, rural dibao 3906 → 4006 and orphans 1200 → 1300
    from 2017-01-01; 三民 (+220), 特困 (1.3 ×) and other children in difficulty (50 %) follow."""
    text = POLICY.read_text(encoding="utf-8")
    for old, new in (
        ('amount = "555.00", per = "month"', 'amount = "580.00", per = "month"'),
        ('add = "220.00", per = "month", expect = "775.00"', 'add = "220.00", per = "month", expect = "800.00"'),
        ('amount = "3906.00", per = "year"', 'amount = "4006.00", per = "year"'),
        ('per = "year", expect = "3906.00"', 'per = "year", expect = "4006.00"'),
        ('per = "year", expect = "5078.00"', 'per = "year", expect = "5208.00"'),
        ('amount = "1200.00", per = "month"', 'amount = "1300.00", per = "month"'),
        ('per = "month", expect = "1200.00"', 'per = "month", expect = "1300.00"'),
        ('per = "month", expect = "600.00"', 'per = "month", expect = "650.00"'),
    ):
        assert text.count(old) >= 1, old
        text = text.replace(old, new)
    raised = tmp_path / "raised.toml"
    raised.write_text(text, encoding="utf-8")
    return raised


def test_a_retroactive_rise_is_paid_as_one_adjustment_per_enrolment_and_period(office: str, tmp_path: Path) -> None:
    child = resident_id("150902", "20100304", 15)
    imported(
        office,
        tmp_path,
        row(SOLO, "urban_dibao"),
        row(ZHAO, "sanmin"),
        row(TEKUN, "tekun_rural_dispersed", region="150921"),
        row(child, "children_in_difficulty"),
    )
    for month in ("2017-01", "2017-02", "2017-03"):
        cli(office, "run", month)
    cli(office, "policy", "load", str(_raised(tmp_path)))
    april = cli(office, "run", "2017-04", "--json")
    # urban: 3 × 25.00; 三民 H1: 6 × 25.00; 特困 Q1: 5208 − 5078 = 130 元 a year → Q1 ⌊520800/4⌋ − 126950;
    # children: 3 × 50.00 for Q1.
    tekun_q1 = 520800 // 4 - 126950
    assert (april["adjustments"], april["recoveries"]) == (6, 0)
    assert april["adjusted_fen"] == 3 * 2500 + 15000 + tekun_q1 + 3 * 5000
    adjustment_batches = [b for b in batches(office) if b["kind"] == "adjustment"]
    assert sorted(
        (b["programme"], b["period"], b["payments"], b["total_fen"], b["due_date"]) for b in adjustment_batches
    ) == [
        ("children_in_difficulty", "2017-04", 1, 15000, "2017-05-10"),
        ("sanmin", "2017-04", 1, 15000, "2017-05-10"),
        ("tekun_rural_dispersed", "2017-04", 1, tekun_q1, "2017-05-10"),
        ("urban_dibao", "2017-04", 3, 7500, "2017-05-10"),
    ]
    urban = balances(office, "urban_dibao")
    assert {p: (r["accrued_fen"], r["adjusted_fen"], r["households"]) for p, r in urban.items()} == {
        "2017-01": (58000, 2500, 1),
        "2017-02": (58000, 2500, 1),
        "2017-03": (58000, 2500, 1),
        "2017-04": (58000, 0, 1),
    }
    assert balances(office, "sanmin")["2017-H1"]["accrued_fen"] == 480000
    # The read models and the reference fold of the log (`--as-of`) agree, adjustments included.
    read_models = cli(office, "report", "balances", "--json")["rows"]
    folded = cli(office, "report", "balances", "--as-of", "2100-01-01T00:00:00+00:00", "--json")["rows"]
    assert read_models == folded
    again = cli(office, "run", "2017-04", "--json")
    assert (again["payments"], again["adjustments"]) == (0, 0)
    cli(office, "policy", "load", str(_raised(tmp_path)))  # the same policy again: nothing new
    assert cli(office, "run", "2017-04", "--json")["adjustments"] == 0
    anomalies = cli(office, "audit", "anomalies", "--json")
    assert [
        f for f in anomalies["findings"] if f["kind"] in ("amount_differs_from_standard", "paid_while_not_payable")
    ] == []


def test_a_quarterly_phase_out_pays_exactly_six_months(office: str, tmp_path: Path) -> None:
    imported(office, tmp_path, row(RURAL, "rural_dibao", region="150921", members=3, income="200.00"))
    cli(office, "decide", "phase-out", RURAL, "rural_dibao", "--on", "2017-05-01", "--reason", PAPERS)
    cli(office, "run", "2017-12")
    accrued = {p: r["accrued_fen"] for p, r in balances(office, "rural_dibao").items()}
    assert accrued == {"2017-Q1": 232950, "2017-Q2": 232950, "2017-Q3": 232950, "2017-Q4": 77650}


def test_a_phase_out_recorded_after_its_quarter_was_paid_recovers_the_months_after_it(
    office: str, tmp_path: Path
) -> None:
    imported(office, tmp_path, row(RURAL, "rural_dibao", region="150921", members=3, income="200.00"))
    cli(office, "run", "2017-10")
    cli(office, "decide", "phase-out", RURAL, "rural_dibao", "--on", "2017-05-01", "--reason", PAPERS)
    november = cli(office, "run", "2017-11", "--json")
    assert (november["recoveries"], november["recovery_due_fen"]) == (1, 2 * 77650)  # November, December
    assert balances(office, "rural_dibao")["2017-Q4"]["accrued_fen"] == 77650
