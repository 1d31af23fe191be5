"""Bank files out and results back, on both stores: maker-checker, pain.002 round trip, re-issue."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from domain.disbursement import ApproverMustDifferFromExporter, BatchNotExported, OnlyApprovedBatchesSubmit
from domain.periods import Month
from ledger.exports import ResultsRefused, approve_batch, export_batch, import_bank_file, submit_batch
from ledger.storage import Database
from tests.helpers.ledgers import LI, WANG, import_rows, ledger


def _january(db: Database, policy_text: str, tmp_path: Path) -> tuple[Any, Any]:
    registry, disbursement = ledger(db, policy_text)
    import_rows(registry, tmp_path, LI, WANG)
    disbursement.run_month_end(registry.read_registry(), Month(2017, 1), scope="150900", actor="clerk")
    return registry, disbursement


def _batch(disbursement: Any, programme: str) -> Any:
    (found,) = [b for b in disbursement.batches() if b.programme == programme]
    return found


def _pain002(tmp: Path, batch: Any, outcomes: list[tuple[str, str, str, int]], name: str = "result.xml") -> Path:
    from exporters.pain002 import render_pain002

    message = f"YKT{batch.id.hex[:28]}"
    data = render_pain002(message, message, outcomes, created_at=datetime(2017, 1, 6, 10, tzinfo=UTC))
    path = tmp / name
    path.write_bytes(data)
    return path


def test_export_is_recorded_with_its_hash_and_reexports_byte_for_byte(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, disbursement = _january(db, policy_text, tmp_path)
    batch = _batch(disbursement, "urban_dibao")
    for fmt in ("pain001", "onecard", "xlsx", "notice"):
        _, first = export_batch(
            disbursement, registry.policy(), batch.id.hex, fmt=fmt, out=tmp_path / "a", actor="maker"
        )
        _, second = export_batch(
            disbursement, registry.policy(), batch.id.hex, fmt=fmt, out=tmp_path / "b", actor="maker"
        )
        assert [f.sha256 for f in first] == [f.sha256 for f in second]
        assert all(hashlib.sha256(f.path.read_bytes()).hexdigest() == f.sha256 for f in first)
    recorded = disbursement.batch(batch.id.hex)
    assert recorded.status == "exported"
    assert len(recorded.exports) == 8
    assert not list((tmp_path / "a").glob(".*"))  # no temporary files left behind


def test_maker_checker_refuses_self_approval_and_unapproved_submission(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, disbursement = _january(db, policy_text, tmp_path)
    batch = _batch(disbursement, "urban_dibao")
    with pytest.raises(BatchNotExported):
        approve_batch(disbursement, batch.id.hex, "checker")
    export_batch(disbursement, registry.policy(), batch.id.hex, fmt="pain001", out=tmp_path, actor="maker")
    with pytest.raises(OnlyApprovedBatchesSubmit):
        submit_batch(disbursement, batch.id.hex, "maker")
    with pytest.raises(ApproverMustDifferFromExporter):
        approve_batch(disbursement, batch.id.hex, "maker")
    approve_batch(disbursement, batch.id.hex, "checker")
    assert submit_batch(disbursement, batch.id.hex, "maker").status == "submitted"


def _approved(disbursement: Any, registry: Any, batch: Any, tmp: Path) -> None:
    export_batch(disbursement, registry.policy(), batch.id.hex, fmt="pain001", out=tmp, actor="maker")
    approve_batch(disbursement, batch.id.hex, "checker")


def test_results_for_an_unapproved_batch_are_refused_and_nothing_applies(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, disbursement = _january(db, policy_text, tmp_path)
    urban, rural = _batch(disbursement, "urban_dibao"), _batch(disbursement, "rural_dibao")
    _approved(disbursement, registry, urban, tmp_path)
    path = _pain002(
        tmp_path, urban, [(urban.payment_ids[0], "ACSC", "", 81000), (rural.payment_ids[0], "ACSC", "", 237834)]
    )
    with pytest.raises(ResultsRefused, match="ResultForUnapprovedBatch"):
        import_bank_file(disbursement, path, actor="clerk")
    assert disbursement.batch(urban.id.hex).results == {}


def test_an_unknown_payment_or_a_wrong_amount_refuses_the_whole_file(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, disbursement = _january(db, policy_text, tmp_path)
    urban = _batch(disbursement, "urban_dibao")
    _approved(disbursement, registry, urban, tmp_path)
    wrong = _pain002(tmp_path, urban, [(urban.payment_ids[0], "ACSC", "", 81001)], "wrong.xml")
    with pytest.raises(ResultsRefused, match="81001 fen disagrees"):
        import_bank_file(disbursement, wrong, actor="clerk")
    unknown = _pain002(
        tmp_path, urban, [(urban.payment_ids[0], "ACSC", "", 81000), ("ab" * 16, "ACSC", "", 100)], "u.xml"
    )
    with pytest.raises(ResultsRefused, match="unknown payment"):
        import_bank_file(disbursement, unknown, actor="clerk")
    assert disbursement.batch(urban.id.hex).results == {}


def test_round_trip_paid_and_returned_then_reissued_exactly_once(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, disbursement = _january(db, policy_text, tmp_path)
    urban, rural = _batch(disbursement, "urban_dibao"), _batch(disbursement, "rural_dibao")
    for batch in (urban, rural):
        _approved(disbursement, registry, batch, tmp_path)
    paid = _pain002(tmp_path, urban, [(urban.payment_ids[0], "ACSC", "", 81000)], "urban.xml")
    returned = _pain002(tmp_path, rural, [(rural.payment_ids[0], "RJCT", "AC04", 237834)], "rural.xml")
    assert import_bank_file(disbursement, paid, actor="clerk").paid == 1
    assert import_bank_file(disbursement, returned, actor="clerk").returned == 1
    again = import_bank_file(disbursement, returned, actor="clerk")
    assert again.already_imported

    rows = {r["programme"]: r for r in disbursement.balances().rows()}
    assert (rows["urban_dibao"]["paid_fen"], rows["urban_dibao"]["outstanding_fen"]) == (81000, 0)
    assert (rows["rural_dibao"]["returned_fen"], rows["rural_dibao"]["outstanding_fen"]) == (237834, 237834)
    assert disbursement.batch(urban.id.hex).status == "settled"

    # Not re-issued while the account is unchanged, re-issued once after it is corrected.
    february = disbursement.run_month_end(registry.read_registry(), Month(2017, 2), scope="150900", actor="clerk")
    assert (february.reissued, february.awaiting_account) == (0, 1)
    registry.set_account(
        id_number="152621197505052342",
        bank_code="402191000099",
        account="6217002050123456797",
        reason="原卡销户 AC04",
        actor="clerk",
    )
    march = disbursement.run_month_end(registry.read_registry(), Month(2017, 3), scope="150900", actor="clerk")
    assert march.reissued == 1
    april = disbursement.run_month_end(registry.read_registry(), Month(2017, 4), scope="150900", actor="clerk")
    assert april.reissued == 0
    reissue_batch = next(b for b in disbursement.batches() if b.programme == "rural_dibao" and b.run_month == "2017-03")
    (reissue,) = disbursement.payment_views(reissue_batch.payment_ids).values()
    assert (reissue.reissue_of, reissue.account, reissue.amount_fen, reissue.period) == (
        rural.payment_ids[0],
        "6217002050123456797",
        237834,
        "2017-Q1",
    )
    # Once the re-issue is paid, the obligation is paid once and nothing is outstanding.
    _approved(disbursement, registry, reissue_batch, tmp_path)
    import_bank_file(
        disbursement,
        _pain002(tmp_path, reissue_batch, [(reissue.payment_id, "ACCP", "", 237834)], "r2.xml"),
        actor="clerk",
    )
    rows = {r["programme"]: r for r in disbursement.balances().rows(month="2017-01")}
    assert rows["rural_dibao"] == {
        "region": "150900",
        "programme": "rural_dibao",
        "period": "2017-Q1",
        "households": 1,
        "persons": 3,
        "accrued_fen": 237834,
        "exported_fen": 237834,
        "paid_fen": 237834,
        "returned_fen": 0,
        "outstanding_fen": 0,
        "adjusted_fen": 0,
        "recovery_due_fen": 0,
        "recovered_fen": 0,
        "written_off_fen": 0,
    }


def test_balances_as_of_a_moment_before_the_bank_result_show_it_unpaid(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, disbursement = _january(db, policy_text, tmp_path)
    urban = _batch(disbursement, "urban_dibao")
    _approved(disbursement, registry, urban, tmp_path)
    before = datetime.now(UTC)
    import_bank_file(disbursement, _pain002(tmp_path, urban, [(urban.payment_ids[0], "ACSC", "", 81000)]), actor="c")
    then = {r["programme"]: r for r in disbursement.balances(before).rows()}
    now = {r["programme"]: r for r in disbursement.balances().rows()}
    assert then["urban_dibao"]["paid_fen"] == 0 and now["urban_dibao"]["paid_fen"] == 81000


@pytest.mark.parametrize("profile", ["generic", "bank-p", "bank-date"])
def test_a_profiles_return_file_applies_like_a_pain002(
    db: Database, policy_text: str, tmp_path: Path, profile: str
) -> None:
    from exporters.onecard import load_profile, render_return_file
    from ledger.exports import batch_header, payment_rows

    registry, disbursement = _january(db, policy_text, tmp_path)
    rural = _batch(disbursement, "rural_dibao")
    export_batch(
        disbursement, registry.policy(), rural.id.hex, fmt="onecard", profile=profile, out=tmp_path, actor="maker"
    )
    approve_batch(disbursement, rural.id.hex, "checker")
    header = batch_header(registry.policy(), rural)
    rows = payment_rows(header, rural, disbursement.payment_views(rural.payment_ids))
    data = render_return_file(header, rows, {rural.payment_ids[0]: ("returned", "BE01")}, load_profile(profile))
    answer = tmp_path / f"{profile}-return.txt"
    answer.write_bytes(data)
    outcome = import_bank_file(disbursement, answer, actor="clerk", profile=profile)
    assert (outcome.paid, outcome.returned) == (0, 1)
    assert disbursement.batch(rural.id.hex).results == {rural.payment_ids[0]: ("returned", "BE01")}
    truncated = tmp_path / "truncated.txt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ResultsRefused):
        import_bank_file(disbursement, truncated, actor="clerk", profile=profile)
