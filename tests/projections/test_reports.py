"""Reports on both stores: balances from the read model and as of a moment, the published summary,
the on-time rate, the chart."""

from __future__ import annotations

import warnings
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from domain.periods import Month
from ledger.reports import (
    BadReportPeriod,
    balances_rows,
    format_wan,
    on_time_rows,
    percent,
    periods_starting_in,
    summary_rows,
    write_chart,
)
from ledger.storage import Database
from projections.balances import BALANCE_KEYS
from tests.helpers.ledgers import LI, WANG, resident_id, row
from tests.helpers.projections import batch_of, history, january, run, send, settle


def test_balances_rows_have_the_contract_keys_and_filter_like_the_fold(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, disbursement = january(db, policy_text, tmp_path)
    run(registry, disbursement, "2017-02")
    rows = balances_rows(db)
    assert all(tuple(r) == BALANCE_KEYS for r in rows)
    assert [(r["programme"], r["period"]) for r in rows] == [
        ("urban_dibao", "2017-01"),
        ("urban_dibao", "2017-02"),
        ("rural_dibao", "2017-Q1"),
    ]
    for filters in (
        {"month": "2017-01"},
        {"month": "2017-02"},
        {"year": "2017"},
        {"year": "2018"},
        {"programme": "rural_dibao"},
        {"region": "150900"},
        {"region": "150902"},
    ):
        assert balances_rows(db, **filters) == disbursement.balances().rows(**filters), filters
    assert {r["period"] for r in balances_rows(db, month="2017-01")} == {"2017-01", "2017-Q1"}


def test_periods_falling_due_in_a_month_are_the_month_and_what_it_opens() -> None:
    assert periods_starting_in(Month(2017, 1)) == ["2017-01", "2017-Q1", "2017-H1", "2017"]
    assert periods_starting_in(Month(2017, 7)) == ["2017-07", "2017-Q3", "2017-H2"]
    assert periods_starting_in(Month(2017, 10)) == ["2017-10", "2017-Q4"]
    assert periods_starting_in(Month(2017, 11)) == ["2017-11"]


def test_as_of_before_a_bank_result_shows_it_unpaid_and_after_it_paid(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, disbursement = january(db, policy_text, tmp_path)
    urban = batch_of(disbursement, "urban_dibao", "2017-01")
    send(registry, disbursement, urban, tmp_path)
    before = datetime.now(UTC)
    settle(disbursement, urban, {urban.payment_ids[0]: ("paid", "")}, tmp_path, date(2017, 1, 6))
    after = datetime.now(UTC)

    def paid(**options: object) -> int:
        (found,) = [r for r in balances_rows(db, programme="urban_dibao", **options)]  # type: ignore[arg-type]
        return int(found["paid_fen"])

    assert paid(as_of=before, disbursement=disbursement) == 0
    assert paid(as_of=after, disbursement=disbursement) == 81000
    assert paid() == 81000


def test_wan_is_printed_with_two_decimals_rounded_half_up() -> None:
    assert format_wan(14023_23_0000) == "14023.23"  # seed 003 二: 发放低保金14023.23万元
    assert format_wan(5680_79_0000) == "5680.79"
    assert format_wan(14023_23_4999) == "14023.23"
    assert format_wan(14023_23_5000) == "14023.24"
    assert (format_wan(0), format_wan(4999), format_wan(5000), format_wan(81000)) == ("0.00", "0.00", "0.01", "0.08")
    assert format_wan(-5000) == "-0.01"


def test_summary_states_the_standard_the_caseload_and_the_amount_paid(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    history(db, policy_text, tmp_path)
    rows = {r["programme"]: r for r in summary_rows(db, _policy(db), 2017, Month(2017, 3))}
    urban, rural = rows["urban_dibao"], rows["rural_dibao"]
    assert urban["standard"] == {"per": "month", "amount": "555.00"}
    assert (urban["caseload_period"], urban["households"], urban["persons"]) == ("2017-03", 1, 2)
    assert (urban["paid_fen"], urban["paid_wan"]) == (81000, "0.08")  # only January came back paid
    assert urban["sentence"] == "城镇低保标准每人每月555元,保障1户、2人,截至3月底发放0.08万元。"
    assert rural["standard"] == {"per": "year", "amount": "3906.00"}
    assert (rural["caseload_period"], rural["households"], rural["persons"]) == ("2017-Q1", 1, 3)
    assert (rural["paid_fen"], rural["paid_wan"]) == (237834, "0.24")  # the re-issue, paid 8 March
    february = {r["programme"]: r for r in summary_rows(db, _policy(db), 2017, Month(2017, 2))}
    assert february["rural_dibao"]["paid_fen"] == 0  # returned in January, not yet paid again
    with pytest.raises(BadReportPeriod):
        summary_rows(db, _policy(db), 2016, Month(2017, 3))


def _policy(db: Database):  # type: ignore[no-untyped-def]
    from ledger.bootstrap import open_apps

    registry, _ = open_apps(db)
    return registry.policy()


def test_percentages_are_exact_fractions_rounded_half_up() -> None:
    assert (percent(1, 2), percent(2, 3), percent(1, 3), percent(1, 8)) == ("50.00%", "66.67%", "33.33%", "12.50%")
    assert (percent(1, 20_000), percent(1, 20_001), percent(0, 5), percent(5, 5)) == (
        "0.01%",
        "0.00%",
        "0.00%",
        "100.00%",
    )
    assert percent(0, 0) is None


def test_on_time_rate_with_one_payment_late_and_one_on_time(db: Database, policy_text: str, tmp_path: Path) -> None:
    other = row(resident_id("150902", "19700303", 7), "urban_dibao", members=1, name="赵六")
    registry, disbursement = january(db, policy_text, tmp_path, LI, other, WANG)
    urban = batch_of(disbursement, "urban_dibao", "2017-01")
    send(registry, disbursement, urban, tmp_path)
    first, second = urban.payment_ids
    settle(disbursement, urban, {first: ("paid", "")}, tmp_path, date(2017, 1, 6))  # due by the 10th
    settle(disbursement, urban, {second: ("paid", "")}, tmp_path, date(2017, 1, 12))  # two days late
    rows = {(r["programme"], r["region"], r["month"]): r for r in on_time_rows(db, 2017, today=date(2017, 12, 31))}
    for region in ("150900", "150902"):
        january_row = rows[("urban_dibao", region, "2017-01")]
        assert (january_row["due"], january_row["on_time"], january_row["rate"]) == (2, 1, "50.00%")
        assert (january_row["ytd_due"], january_row["ytd_on_time"], january_row["ytd_rate"]) == (2, 1, "50.00%")
    rural = rows[("rural_dibao", "150900", "2017-01")]  # due 10 January, never paid
    assert (rural["due"], rural["on_time"], rural["rate"]) == (1, 0, "0.00%")
    assert on_time_rows(db, 2017, today=date(2017, 1, 9)) == []  # nothing was due yet


def test_a_returned_payment_paid_again_later_counts_late(db: Database, policy_text: str, tmp_path: Path) -> None:
    history(db, policy_text, tmp_path)
    rows = {(r["programme"], r["region"], r["month"]): r for r in on_time_rows(db, 2017, today=date(2017, 3, 31))}
    rural = rows[("rural_dibao", "150921", "2017-01")]
    assert (rural["due"], rural["on_time"]) == (1, 0)  # one obligation, paid on 8 March by its re-issue
    urban = [rows[("urban_dibao", "150900", m)] for m in ("2017-01", "2017-02", "2017-03")]
    assert [(r["due"], r["on_time"], r["ytd_rate"]) for r in urban] == [
        (1, 1, "100.00%"),
        (1, 0, "50.00%"),  # February and March: accrued, never sent to the bank
        (1, 0, "33.33%"),
    ]


@pytest.mark.parametrize("cjk_font", [None, "DejaVu Sans"])
def test_the_chart_is_a_png(
    db: Database, policy_text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cjk_font: str | None
) -> None:
    # With a CJK font the labels are Chinese; DejaVu stands in for one here (its missing glyphs only warn).
    monkeypatch.setattr("ledger.reports._cjk_family", lambda: cjk_font)
    history(db, policy_text, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        path = write_chart(db, _policy(db), 2017, tmp_path / "charts" / "2017.png")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
