"""Month-end on both stores: the walkthrough figures, idempotence, arrears, concurrency and crashes."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from domain.disbursement import Payment
from domain.periods import Month
from ledger.bootstrap import open_apps
from ledger.disbursement import ChunkWriter, Disbursement
from ledger.storage import Database
from ledger.synthetic import synthetic_rows
from tests.helpers.ledgers import LI, WANG, import_rows, ledger


def _payments(disbursement: Disbursement) -> list[Payment]:
    return [p for b in disbursement.batches() for p in disbursement.payments(b.payment_ids)]


def _batch_totals(disbursement: Disbursement) -> dict[tuple[str, str], tuple[int, int]]:
    return {(b.programme, b.period): (b.count, b.total_fen) for b in disbursement.batches()}


def test_january_accrues_the_walkthrough_figures(db: Database, policy_text: str, tmp_path: Path) -> None:
    registry, disbursement = ledger(db, policy_text)
    import_rows(registry, tmp_path, LI, WANG)
    summary = disbursement.run_month_end(registry.read_registry(), Month(2017, 1), scope="150900", actor="clerk")
    assert summary.payments == 2
    assert _batch_totals(disbursement) == {
        ("urban_dibao", "2017-01"): (1, 81000),
        ("rural_dibao", "2017-Q1"): (1, 237834),
    }
    by_programme = {p.programme: p for p in _payments(disbursement)}
    assert by_programme["rural_dibao"].persons == 3
    assert by_programme["urban_dibao"].account == "6228480045001122337"
    assert not by_programme["urban_dibao"].late


def test_a_second_run_of_the_same_month_pays_nobody_twice(db: Database, policy_text: str, tmp_path: Path) -> None:
    registry, disbursement = ledger(db, policy_text)
    import_rows(registry, tmp_path, LI, WANG)
    disbursement.run_month_end(registry.read_registry(), Month(2017, 1), scope="150900", actor="clerk")
    events_before = disbursement.recorder.max_notification_id()
    again = disbursement.run_month_end(registry.read_registry(), Month(2017, 1), scope="150900", actor="clerk")
    assert again.payments == 0
    # Only the run log's completion is recorded the second time.
    assert disbursement.recorder.max_notification_id() == events_before + 1


def test_missed_months_are_accrued_as_late_arrears(db: Database, policy_text: str, tmp_path: Path) -> None:
    registry, disbursement = ledger(db, policy_text)
    import_rows(registry, tmp_path, LI)
    disbursement.run_month_end(registry.read_registry(), Month(2017, 1), scope="150900", actor="clerk")
    march = disbursement.run_month_end(registry.read_registry(), Month(2017, 3), scope="150900", actor="clerk")
    assert (march.payments, march.late) == (2, 1)
    late = {p.period: p.late for p in _payments(disbursement)}
    assert late == {"2017-01": False, "2017-02": True, "2017-03": False}


def test_a_person_enrolled_after_a_completed_run_gets_their_arrears(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, disbursement = ledger(db, policy_text)
    import_rows(registry, tmp_path, WANG)
    disbursement.run_month_end(registry.read_registry(), Month(2017, 4), scope="150900", actor="clerk")
    import_rows(registry, tmp_path, LI, name="late.csv")  # urban dibao from 2017-01, recorded in April
    april = disbursement.run_month_end(registry.read_registry(), Month(2017, 4), scope="150900", actor="clerk")
    assert april.payments == 4 and april.late == 3


def test_a_county_run_accrues_only_that_county(db: Database, policy_text: str, tmp_path: Path) -> None:
    registry, disbursement = ledger(db, policy_text)
    import_rows(registry, tmp_path, LI, WANG)
    county = disbursement.run_month_end(registry.read_registry(), Month(2017, 1), scope="150921", actor="clerk")
    assert county.payments == 1
    city = disbursement.run_month_end(registry.read_registry(), Month(2017, 1), scope="150900", actor="clerk")
    assert city.payments == 1  # the other county's; 150921's was already paid


def test_fast_payment_events_read_back_as_the_mappers_own(db: Database, policy_text: str, tmp_path: Path) -> None:
    """The month-end writes Payment.Accrued bytes itself; the library must read them as its own."""
    registry, disbursement = ledger(db, policy_text)
    import_rows(registry, tmp_path, LI.replace("李建华", 'O"Brien\\李'))
    disbursement.run_month_end(registry.read_registry(), Month(2017, 1), scope="150900", actor="clerk")
    (payment,) = _payments(disbursement)
    stored = disbursement.recorder.select_events(payment.id)[0]
    event = disbursement.mapper.to_domain_event(stored)
    again = disbursement.mapper.to_stored_event(event)
    assert again.state == stored.state and again.topic == stored.topic
    assert payment.name == 'O"Brien\\李' and payment.amount_fen == 81000


def _run_in_process(db_url: str, month: str, chunk: int, start: Any, result: Any) -> None:
    from ledger import disbursement as module
    from ledger.bootstrap import database_from_url

    module.PAYMENTS_PER_CHUNK = chunk
    registry, disbursement = open_apps(database_from_url(db_url))
    snapshot = registry.read_registry()
    start.wait(timeout=300)  # both processes start writing at the same moment
    summary = disbursement.run_month_end(snapshot, Month.parse(month), scope="150900", actor="p")
    result.put((summary.payments, summary.conflicts))


def _synthetic_ledger(db: Database, policy_text: str, count: int) -> tuple[Any, Disbursement]:
    registry, disbursement = ledger(db, policy_text)
    registry.import_roster(tuple(synthetic_rows(count)), "synthetic", "clerk")
    return registry, disbursement


def _assert_each_payment_once(disbursement: Disbursement, expected: int) -> None:
    ids = [pid for b in disbursement.batches() for pid in b.payment_ids]
    assert len(ids) == expected
    assert not [pid for pid, n in Counter(ids).items() if n > 1]
    assert sum(b.total_fen for b in disbursement.batches()) == sum(p.amount_fen for p in _payments(disbursement))


def test_two_runs_at_the_same_time_pay_everyone_exactly_once(db: Database, policy_text: str) -> None:
    registry, disbursement = _synthetic_ledger(db, policy_text, 1500)
    expected = len(list(registry.read_registry().persons))
    context = multiprocessing.get_context("spawn")
    result = context.Queue()
    start = context.Barrier(2)
    workers = [context.Process(target=_run_in_process, args=(db.url, "2017-01", 50, start, result)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
        assert w.exitcode == 0
    outcomes = [result.get(timeout=5) for _ in workers]
    reference = _payments(disbursement)
    assert sum(written for written, _ in outcomes) == len(reference)
    assert sum(conflicts for _, conflicts in outcomes) >= 1  # they really did collide
    assert len(reference) >= expected * 0.9  # every synthetic enrolment is payable in January
    _assert_each_payment_once(disbursement, len(reference))


def test_a_run_that_crashes_midway_is_completed_by_the_next_run(
    db: Database, policy_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, disbursement = _synthetic_ledger(db, policy_text, 600)
    monkeypatch.setattr("ledger.disbursement.PAYMENTS_PER_CHUNK", 100)
    original = ChunkWriter.write
    calls = {"n": 0}

    def crash_on_third_chunk(self: ChunkWriter, chunk: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("power cut")
        original(self, chunk)

    monkeypatch.setattr(ChunkWriter, "write", crash_on_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        disbursement.run_month_end(registry.read_registry(), Month(2017, 1), scope="150900", actor="clerk")
    assert len(_payments(disbursement)) == 200
    monkeypatch.setattr(ChunkWriter, "write", original)
    disbursement.run_month_end(registry.read_registry(), Month(2017, 1), scope="150900", actor="clerk")

    _, clean = _synthetic_ledger(_fresh(db), policy_text, 600)
    clean.run_month_end(registry.read_registry(), Month(2017, 1), scope="150900", actor="clerk")
    assert _batch_totals(disbursement) == _batch_totals(clean)
    _assert_each_payment_once(disbursement, len(_payments(clean)))


def _fresh(db: Database) -> Database:
    from ledger.bootstrap import database_from_url

    if db.kind == "sqlite":
        return database_from_url(db.url.replace("ledger.db", "clean.db"))
    return database_from_url(db.url + "_clean")  # dropped with the test's schema (conftest)
