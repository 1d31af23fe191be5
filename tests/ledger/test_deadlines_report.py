"""`report deadlines` on both stores: working-day calendar, unknown years, year-end breaches."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from domain.periods import Month
from ledger.deadlines import deadline_rows
from ledger.storage import Database
from tests.helpers.ledgers import LI, import_rows, ledger

LATER_STANDARD = 'standards = [{ from = "2017-01-01", amount = "555.00", per = "month" }]'


def _rows(db: Database, policy_text: str, tmp_path: Path, month: Month, today: date) -> list[dict]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    registry, disbursement = ledger(db, policy_text)
    import_rows(registry, tmp_path, LI)
    disbursement.run_month_end(registry.read_registry(), month, scope="150900", actor="clerk")
    return deadline_rows(registry.policy(), disbursement.batches(), today)


def test_the_last_safe_day_counts_working_days_before_the_due_date(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    (row,) = _rows(db, policy_text, tmp_path, Month(2017, 1), date(2017, 1, 3))
    # Due Tuesday 2017-01-10; two working days before: Monday the 9th, Friday the 6th.
    assert (row["due_date"], row["last_safe_day"], row["state"]) == ("2017-01-10", "2017-01-06", "on time")
    (risky,) = _rows(db, policy_text, tmp_path / "b", Month(2017, 1), date(2017, 1, 9))
    assert risky["state"] == "at risk"
    (late,) = _rows(db, policy_text, tmp_path / "c", Month(2017, 1), date(2017, 1, 11))
    assert late["state"] == "overdue"


def test_a_year_without_calendar_data_is_unknown_until_the_policy_declares_it(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    rows = _rows(db, policy_text, tmp_path, Month(2027, 1), date(2027, 1, 2))
    january = next(r for r in rows if r["period"] == "2027-01")
    assert (january["last_safe_day"], january["state"]) == (None, "unknown")

    declared = policy_text.replace(
        "[settings]", '[calendar]\nyears = [2027]\nholidays = ["2027-01-01"]\nworkdays = []\n\n[settings]', 1
    )
    rows = _rows(db, declared, tmp_path / "declared", Month(2027, 1), date(2027, 1, 2))
    january = next(r for r in rows if r["period"] == "2027-01")
    # Due Sunday 2027-01-10: the last working day on or before is Friday the 8th; two before that: the 6th.
    assert (january["last_safe_day"], january["state"]) == ("2027-01-06", "on time")


def test_a_payment_unpaid_after_the_31st_of_december_is_a_year_end_breach(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    rows = _rows(db, policy_text, tmp_path, Month(2017, 12), date(2018, 1, 2))
    assert rows and all(r["year_end_breach"] for r in rows if r["period"].startswith("2017"))
    before = _rows(db, policy_text, tmp_path / "b", Month(2017, 12), date(2017, 12, 31))
    assert not any(r["year_end_breach"] for r in before)
