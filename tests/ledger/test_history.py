"""`audit history ID_NUMBER`, on both stores: every event touching one person, in order of recording,
with effective dates beside recorded times, full (unmasked) data, and the batch life of each payment:
export files with their SHA-256, approval, bank result with reason, re-issue."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from domain.disbursement import payment_id, reissue_id
from domain.eligibility import UnknownEnrolment
from domain.periods import Month
from ledger.exports import approve_batch, export_batch, import_bank_file, submit_batch
from ledger.history import describe, person_history
from ledger.storage import Database
from tests.helpers.anomalies import city, decide, person, plant_payment, roster_row, run
from tests.helpers.ledgers import ledger


def _pain002(tmp: Path, batch_hex: str, outcomes: list[tuple[str, str, str, int]], name: str) -> Path:
    from exporters.pain002 import render_pain002

    message = f"YKT{batch_hex[:28]}"
    path = tmp / name
    path.write_bytes(render_pain002(message, message, outcomes, created_at=datetime(2017, 1, 6, 10, tzinfo=UTC)))
    return path


def test_a_persons_history_lists_decisions_payments_files_results_and_reissues_in_recorded_order(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, disbursement = ledger(db, policy_text)
    city(registry)
    subject = roster_row(person(1), "urban_dibao", members=2, name="李建华")
    registry.import_roster([subject], "extra.csv", "clerk")
    run(registry, disbursement, Month(2017, 1))
    january = payment_id(subject.id_number, "urban_dibao", "2017-01").hex
    batch_hex = disbursement.payment_views([january])[january].batch_id
    _, files = export_batch(disbursement, registry.policy(), batch_hex, fmt="pain001", out=tmp_path, actor="maker")
    approve_batch(disbursement, batch_hex, "checker")
    submit_batch(disbursement, batch_hex, "maker")
    result = _pain002(tmp_path, batch_hex, [(january, "RJCT", "AC04", 111_000)], "jan-result.xml")
    import_bank_file(disbursement, result, actor="clerk")
    registry.set_account(
        id_number=subject.id_number, bank_code="103191000099", account="6217002050123456797", reason="销户", actor="c"
    )
    decide(registry, subject.id_number, "suspend", "2017-03-01")
    run(registry, disbursement, *(Month(2017, m) for m in (2, 3)))

    history = person_history(registry, disbursement, subject.id_number.lower())

    events = [(e["event"], e["period"]) for e in history]
    assert events == [
        ("registered", ""),
        ("payment_accrued", "2017-01"),
        ("batch_exported", "2017-01"),
        ("batch_approved", "2017-01"),
        ("batch_submitted", "2017-01"),
        ("bank_result", "2017-01"),
        ("account_changed", ""),
        ("decision", ""),
        ("payment_accrued", "2017-02"),  # February's run: March is suspended
        ("reissued", "2017-01"),
    ]
    recorded = [datetime.fromisoformat(e["recorded_at"]) for e in history]
    assert recorded == sorted(recorded)
    registered, accrued, exported, approved, submitted, returned, account, suspended, february, reissued = history

    assert (registered["name"], registered["id_number"], registered["account"]) == (
        "李建华",
        subject.id_number,
        subject.account,
    )
    assert (registered["effective_on"], registered["programme"], registered["decision_ref"]) == (
        "2017-01-01",
        "urban_dibao",
        "集民发〔2017〕9号",
    )
    assert (accrued["payment_id"], accrued["amount_fen"], accrued["effective_on"], accrued["batch_id"]) == (
        january,
        111_000,
        "2017-01-01",
        batch_hex,
    )
    assert exported["files"] == [{"name": f.path.name, "sha256": f.sha256} for f in files]
    assert (exported["actor"], approved["actor"], submitted["actor"]) == ("maker", "checker", "maker")
    assert (returned["status"], returned["reason_code"], returned["reason_zh"], returned["actor"]) == (
        "returned",
        "AC04",
        "账户已销户",
        "clerk",
    )
    assert returned["bank_file_name"] == "jan-result.xml"
    assert (account["account"], account["reason"]) == ("6217002050123456797", "销户")
    assert (suspended["kind"], suspended["effective_on"], suspended["actor"], suspended["reason"]) == (
        "suspend",
        "2017-03-01",
        "chief",
        "集民发〔2017〕7号",
    )
    assert (reissued["payment_id"], reissued["reissue_of"], reissued["account"], reissued["late"]) == (
        reissue_id(january).hex,
        january,
        "6217002050123456797",
        True,
    )
    assert (february["account"], february["late"]) == ("6217002050123456797", False)
    assert all(describe(e) for e in history)


def test_the_history_shows_a_payment_no_enrolment_explains(db: Database, policy_text: str) -> None:
    registry, disbursement = ledger(db, policy_text)
    rows = city(registry)
    subject = next(r for r in rows if r.programme == "urban_dibao")
    planted = plant_payment(disbursement, subject, "2017-H1", 465_000, programme="sanmin")
    history = person_history(registry, disbursement, subject.id_number)
    (found,) = [e for e in history if e["event"] == "payment_accrued"]
    assert (found["payment_id"], found["programme"], found["amount_fen"]) == (planted, "sanmin", 465_000)


def test_the_history_of_someone_unknown_is_refused(db: Database, policy_text: str) -> None:
    registry, disbursement = ledger(db, policy_text)
    city(registry)
    with pytest.raises(UnknownEnrolment):
        person_history(registry, disbursement, person(77))


def test_effective_dates_differ_from_recorded_times_for_a_late_decision(db: Database, policy_text: str) -> None:
    registry, disbursement = ledger(db, policy_text)
    subject = roster_row(person(1), "urban_dibao", members=2)
    registry.import_roster([subject], "extra.csv", "clerk")
    run(registry, disbursement, Month(2017, 1), Month(2017, 2))
    decide(registry, subject.id_number, "terminate", "2017-02-01")
    history = person_history(registry, disbursement, subject.id_number)
    decision = history[-1]
    assert (decision["event"], decision["effective_on"]) == ("decision", "2017-02-01")
    assert datetime.fromisoformat(decision["recorded_at"]).date() >= date.today()
    assert [e["period"] for e in history if e["event"] == "payment_accrued"] == ["2017-01", "2017-02"]
