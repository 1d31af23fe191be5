"""Recoveries offset by the month-end's chunk writer (ledger.disbursement.ChunkWriter, RecoveryBook) and the
Recovery aggregate's rules, on both stores: an offset is a version of its recovery, so two writers that
read the same open recovery never both offset it (the second conflicts, reads it again, offsets nothing)."""

from __future__ import annotations

import pytest

from domain.disbursement import (
    NothingToRecover,
    Recovery,
    RecoveryExceedsRemaining,
    WriteOffNeedsSecondPerson,
    payment_id,
)
from ledger.disbursement import ChunkWriter, RecoveryBook, RunSummary
from ledger.storage import Database
from tests.helpers.ledgers import ledger
from tests.helpers.recoveries import LI_ID, REGION, due, recoveries_due


def test_two_writers_never_offset_one_recovery_twice(db: Database, policy_text: str) -> None:
    _, app = ledger(db, policy_text)
    ChunkWriter(app, REGION, "2017-04", RunSummary("2017-04", REGION)).write(recoveries_due("2017-02", "2017-03"))
    # Both read the recoveries open (400.00 remaining) before either writes: as two runs at once.
    first_book, second_book = RecoveryBook(app, set()), RecoveryBook(app, set())
    first, second = RunSummary("2017-05", REGION), RunSummary("2017-05", REGION)
    ChunkWriter(app, REGION, "2017-05", first, book=first_book).write([due("2017-04", 61000)])
    ChunkWriter(app, REGION, "2017-05", second, book=second_book).write([due("2017-05", 61000)])
    assert (first.offsets, first.offset_fen, first.conflicts) == (1, 40000, 0)
    assert (second.offsets, second.offset_fen, second.conflicts) == (0, 0, 1)  # read again: nothing left
    views = app.payment_views([payment_id(LI_ID, "urban_dibao", p).hex for p in ("2017-04", "2017-05")])
    assert sorted((v.period, v.amount_fen, v.offset_fen, v.net_fen) for v in views.values()) == [
        ("2017-04", 61000, 40000, 21000),
        ("2017-05", 61000, 0, 61000),
    ]
    recovered = sorted((r.period, r.remaining(), r.offsets) for r in app.recoveries())
    april = payment_id(LI_ID, "urban_dibao", "2017-04").hex
    assert recovered == [("2017-02", 0, [(april, 20000, "2017-04")]), ("2017-03", 0, [(april, 20000, "2017-04")])]
    assert sum(b.total_fen for b in app.batches()) == 21000 + 61000  # the bank lines are net
    rows = {r["period"]: r for r in app.balances().rows(programme="urban_dibao")}
    assert (rows["2017-02"]["recovered_fen"], rows["2017-03"]["recovered_fen"]) == (20000, 20000)
    assert (rows["2017-04"]["paid_fen"], rows["2017-04"]["accrued_fen"]) == (40000, 61000)


def test_a_payment_offset_whole_is_no_bank_line_and_a_later_chunk_meets_the_run_s_recoveries(
    db: Database, policy_text: str
) -> None:
    _, app = ledger(db, policy_text)
    summary = RunSummary("2017-04", REGION)
    writer = ChunkWriter(app, REGION, "2017-04", summary, book=RecoveryBook(app, set()))
    writer.write(recoveries_due("2017-02", "2017-03"))  # an earlier chunk of the same run
    writer.write([due("2017-04", 30000)])
    assert (summary.offsets, summary.offset_fen, summary.offset_whole) == (1, 30000, 1)
    (view,) = app.payment_views([payment_id(LI_ID, "urban_dibao", "2017-04").hex]).values()
    assert (view.batch_id, view.balance_region, view.offset_fen, view.net_fen) == ("", REGION, 30000, 0)
    assert app.batches() == []  # nothing for the bank
    left = sorted((r.period, r.remaining()) for r in app.recoveries())
    assert left == [("2017-02", 0), ("2017-03", 10000)]  # the oldest period is recovered first
    rows = {r["period"]: r for r in app.balances().rows(programme="urban_dibao")}
    assert rows["2017-04"]["accrued_fen"] == rows["2017-04"]["paid_fen"] == 30000
    assert rows["2017-04"]["outstanding_fen"] == 0 and rows["2017-04"]["households"] == 1
    assert (rows["2017-03"]["recovery_due_fen"], rows["2017-03"]["recovered_fen"]) == (10000, 10000)


def _recovery(actor: str = "clerk") -> Recovery:
    return Recovery(
        id_number=LI_ID,
        programme="sanmin",
        period="2017-H1",
        name="赵三民",
        region="150902",
        balance_region=REGION,
        amount_fen=232500,
        adjusts="ab" * 16,
        adjustment=1,
        cause="record changed",
        run_month="2017-03",
        actor=actor,
    )


def test_a_write_off_needs_someone_who_neither_made_the_recovery_nor_collected_on_it() -> None:
    recovery = _recovery()
    with pytest.raises(WriteOffNeedsSecondPerson):
        recovery.write_off(reason="x", actor="clerk")
    recovery.collect(amount_fen=32500, reason="收据", actor="wang")
    with pytest.raises(WriteOffNeedsSecondPerson):
        recovery.write_off(reason="x", actor="wang")
    assert recovery.write_off(reason="死亡", actor="li") == 200000
    assert recovery.remaining() == 0
    with pytest.raises(NothingToRecover):
        recovery.collect(amount_fen=1, reason="x", actor="wang")


def test_offsets_count_while_their_payment_is_not_returned() -> None:
    recovery = _recovery()
    recovery.offset(payment_id="cd" * 16, amount_fen=200000, period="2017-H2")
    with pytest.raises(RecoveryExceedsRemaining):
        recovery.collect(amount_fen=32501, reason="x", actor="wang")
    assert recovery.remaining() == 32500
    assert recovery.remaining(returned={"cd" * 16}) == 232500  # the bank returned the net payment
    recovery.collect(amount_fen=232500, reason="收据", actor="wang", returned={"cd" * 16})
    assert recovery.remaining(returned={"cd" * 16}) == 0
