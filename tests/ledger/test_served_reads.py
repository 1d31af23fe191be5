"""Reports as a server reads them (ledger.reports.ServedReads): a large backlog is left to its writer, a
small one is caught up, and rows are kept per read-model position (issue 15, "Load")."""

from __future__ import annotations

import pytest

from domain.periods import Month
from ledger.bootstrap import database_from_url, open_apps
from ledger.reports import ServedReads, balances_rows
from projections.runner import RunStats
from tests.helpers.web import OfficeLedger, build_office_ledger


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> OfficeLedger:
    return build_office_ledger(tmp_path_factory.mktemp("served-reads"))


def periods(rows: list[dict]) -> list[str]:
    return sorted({r["period"] for r in rows})


def test_a_large_backlog_is_left_to_its_writer_and_a_small_one_is_caught_up(office: OfficeLedger) -> None:
    db = database_from_url(office.url)
    served = ServedReads(backlog_max=1)
    assert periods(balances_rows(db, served=served)) == ["2017-01", "2017-Q1"]
    # February written as a month-end in another process writes it: no catch-up after it.
    registry, disbursement = open_apps(db)
    try:
        disbursement.run_month_end(registry.read_registry(), Month(2017, 2), scope="150900", actor="clerk")
    finally:
        registry.close()
        disbursement.close()
    assert periods(balances_rows(db, served=served)) == ["2017-01", "2017-Q1"]  # as of the models' position
    assert periods(balances_rows(db, served=ServedReads(backlog_max=1))) == ["2017-01", "2017-Q1"]
    assert periods(balances_rows(db, served=ServedReads(backlog_max=10_000))) == ["2017-01", "2017-02", "2017-Q1"]
    # Caught up now (the small backlog was): the same server reads February at the new position.
    assert periods(balances_rows(db, served=served)) == ["2017-01", "2017-02", "2017-Q1"]
    assert balances_rows(db, served=served) == balances_rows(db)  # a command's answer: the same rows


def test_rows_are_kept_per_position_and_answer_while_a_writer_is_behind() -> None:
    served = ServedReads(kept_s=3600)
    computed: list[int] = []

    def at(position: int) -> list[dict]:
        computed.append(position)
        return [{"position": position}]

    assert served.rows(("r",), RunStats(position=10), lambda: at(10)) == [{"position": 10}]
    assert served.rows(("r",), RunStats(position=10), lambda: at(10)) == [{"position": 10}]  # kept
    assert served.rows(("r",), RunStats(position=20, behind=50_000), lambda: at(20)) == [{"position": 10}]
    assert served.rows(("r",), RunStats(position=20), lambda: at(20)) == [{"position": 20}]  # current: exact
    assert served.rows(("other",), RunStats(position=20), lambda: at(20)) == [{"position": 20}]
    assert computed == [10, 20, 20]
    expired = ServedReads(kept_s=0)
    expired.rows(("r",), RunStats(position=1), lambda: at(1))
    expired.rows(("r",), RunStats(position=1, behind=9), lambda: at(1))
    assert computed[-2:] == [1, 1]
