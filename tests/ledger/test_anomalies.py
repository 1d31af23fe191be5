"""`audit anomalies`, on both stores: each kind the seeds name is planted in a generated history and
found, and a clean history (with suspensions, adjustments, a phase-out, a move and a re-issue) reports
none. What the ledger refuses is planted around its commands: a decision recorded late, data imported
under an earlier policy that lacked a rule, events written directly to the store.

The builders are in tests/helpers/anomalies.py, shared with the other audit tests.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from domain.disbursement import payment_id, reissue_id
from domain.eligibility import person_id
from domain.periods import Month
from ledger.anomalies import (
    ACCOUNT_SHARED,
    AMOUNT_DIFFERS_FROM_STANDARD,
    ENROLLED_IN_TWO_REGIONS,
    PAID_BY_EXCLUDED_PROGRAMMES,
    PAID_WHILE_NOT_PAYABLE,
    find_anomalies,
)
from ledger.exports import approve_batch, export_batch, import_bank_file
from ledger.roster import RosterRejected
from ledger.storage import Database
from tests.helpers.anomalies import city, decide, person, plant_payment, roster_row, run
from tests.helpers.ledgers import ledger

# --- builders (shared with test_history and test_encryption) -------------------------------------------


def months(first: int, last: int) -> list[Month]:
    return [Month(2017, m) for m in range(first, last + 1)]


def return_payment(registry: Any, disbursement: Any, tmp: Path, payment: str, programme: str, code: str) -> None:
    """Export and approve the batch holding `payment`, then import a pain.002 returning it."""
    from exporters.pain002 import render_pain002

    view = disbursement.payment_views([payment])[payment]
    batch = disbursement.batch_by_id(view.batch_id)
    export_batch(disbursement, registry.policy(), batch.id.hex, fmt="pain001", out=tmp, actor="maker")
    approve_batch(disbursement, batch.id.hex, "checker")
    message = f"YKT{batch.id.hex[:28]}"
    data = render_pain002(
        message, message, [(payment, "RJCT", code, view.amount_fen)], created_at=datetime(2017, 1, 6, tzinfo=UTC)
    )
    path = tmp / f"{payment[:8]}.xml"
    path.write_bytes(data)
    import_bank_file(disbursement, path, actor="clerk")


def kinds(findings: list[dict[str, Any]]) -> list[str]:
    return [f["kind"] for f in findings]


# --- a clean history -------------------------------------------------------------------------------------


def test_a_clean_generated_history_with_decisions_a_move_and_a_reissue_reports_no_anomaly(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, disbursement = ledger(db, policy_text)
    city(registry)
    suspended, adjusted, phased, mover = (roster_row(person(i), "urban_dibao", members=2) for i in range(1, 5))
    returned = roster_row(person(5), "rural_dibao", region="150921", members=2)
    registry.import_roster([suspended, adjusted, phased, mover, returned], "extra.csv", "clerk")
    run(registry, disbursement, Month(2017, 1))
    decide(registry, suspended.id_number, "suspend", "2017-02-01")
    decide(registry, suspended.id_number, "resume", "2017-04-01")
    decide(registry, adjusted.id_number, "adjust", "2017-02-01", amount_fen=30_000)
    decide(registry, phased.id_number, "phase-out", "2017-02-01")  # paid to July, ends 2017-08-01
    decide(registry, mover.id_number, "terminate", "2017-03-01")
    registry.import_roster(
        [roster_row(mover.id_number, "urban_dibao", region="150921", start=date(2017, 3, 1), members=2)],
        "moved.csv",
        "clerk",
    )
    first = payment_id(returned.id_number, "rural_dibao", "2017-Q1").hex
    return_payment(registry, disbursement, tmp_path, first, "rural_dibao", "AC04")
    registry.set_account(
        id_number=returned.id_number, bank_code="103191000012", account="6217002050123456797", reason="AC04", actor="c"
    )
    run(registry, disbursement, *months(2, 9))

    assert find_anomalies(registry, disbursement) == []
    # The history above did happen: the return was re-issued, the decisions changed what was paid.
    (reissue,) = disbursement.payment_views([reissue_id(first).hex]).values()
    assert (reissue.reissue_of, reissue.account) == (first, "6217002050123456797")
    views = disbursement.payment_views(
        [payment_id(suspended.id_number, "urban_dibao", m).hex for m in ("2017-02", "2017-04")]
        + [payment_id(adjusted.id_number, "urban_dibao", "2017-02").hex]
        + [payment_id(phased.id_number, "urban_dibao", m).hex for m in ("2017-07", "2017-08")]
    )
    assert sorted((v.id_number, v.period, v.amount_fen) for v in views.values()) == sorted(
        [
            (suspended.id_number, "2017-04", 111_000),
            (adjusted.id_number, "2017-02", 30_000),
            (phased.id_number, "2017-07", 111_000),
        ]
    )


# --- (a) paid while not payable ----------------------------------------------------------------------------


def test_payments_after_a_late_termination_during_a_suspension_and_after_a_phase_out_are_found(
    db: Database, policy_text: str
) -> None:
    registry, disbursement = ledger(db, policy_text)
    city(registry)
    terminated, suspended, phased = (roster_row(person(i), "urban_dibao", members=2) for i in range(1, 4))
    registry.import_roster([terminated, suspended, phased], "extra.csv", "clerk")
    run(registry, disbursement, *months(1, 3))
    assert find_anomalies(registry, disbursement) == []

    # Recorded after February and March were paid, effective from 1 February.
    decide(registry, terminated.id_number, "terminate", "2017-02-01")
    # Written around the month-end: a payment for a suspended month and one after the phase-out ended.
    decide(registry, suspended.id_number, "suspend", "2017-04-01")
    decide(registry, phased.id_number, "phase-out", "2017-01-01")  # ends 2017-07-01
    plant_payment(disbursement, suspended, "2017-04", 111_000)
    plant_payment(disbursement, phased, "2017-07", 111_000)

    findings = find_anomalies(registry, disbursement)
    assert kinds(findings) == [PAID_WHILE_NOT_PAYABLE] * 4
    found = {(f["id_number"], f["periods"][0]): f for f in findings}
    assert set(found) == {
        (terminated.id_number, "2017-02"),
        (terminated.id_number, "2017-03"),
        (suspended.id_number, "2017-04"),
        (phased.id_number, "2017-07"),
    }
    assert "terminated" in found[(terminated.id_number, "2017-02")]["detail"]
    assert "by chief" in found[(terminated.id_number, "2017-02")]["detail"]
    assert "suspended" in found[(suspended.id_number, "2017-04")]["detail"]
    assert "phase-out ended 2017-07-01" in found[(phased.id_number, "2017-07")]["detail"]
    assert found[(phased.id_number, "2017-07")]["payment_ids"] == [
        payment_id(phased.id_number, "urban_dibao", "2017-07").hex
    ]


def test_a_payment_for_a_programme_the_person_never_held_is_found(db: Database, policy_text: str) -> None:
    registry, disbursement = ledger(db, policy_text)
    rows = city(registry)
    urban = next(r for r in rows if r.programme == "urban_dibao")
    plant_payment(disbursement, urban, "2017-H1", 465_000, programme="sanmin")
    (finding,) = find_anomalies(registry, disbursement)
    assert (finding["kind"], finding["programmes"], finding["periods"]) == (
        PAID_WHILE_NOT_PAYABLE,
        ["sanmin"],
        ["2017-H1"],
    )
    assert "holds no enrolment" in finding["detail"]


# --- (b) paid by programmes that exclude each other ------------------------------------------------------------


def _without_the_tekun_dibao_exclusion(policy_text: str) -> str:
    """The same policy as it might have stood before the 特困/低保 exclusion was written into it."""
    rule = '    "urban_dibao", "rural_dibao", "disability_living", "disability_care",\n'
    assert policy_text.count(rule) == 1
    return policy_text.replace(rule, '    "disability_living", "disability_care",\n')


def test_duplicate_payment_by_excluded_programmes_is_found_in_data_imported_before_the_rule(
    db: Database, policy_text: str
) -> None:
    from ledger.bootstrap import open_apps

    registry, disbursement = open_apps(db)
    registry.load_policy(_without_the_tekun_dibao_exclusion(policy_text), "ulanqab-2016.toml", "clerk")
    city(registry)
    both = person(1, region="152624")
    registry.import_roster(
        [
            roster_row(both, "rural_dibao", region="150921", members=1),
            roster_row(both, "tekun_rural_dispersed", region="150921"),
        ],
        "2016.csv",
        "clerk",
    )
    registry.load_policy(policy_text, "ulanqab-2017.toml", "clerk")
    # The ledger refuses the same thing now that the rule exists ...
    late = person(2, region="152624")
    with pytest.raises(RosterRejected, match="tekun_rural_dispersed_excludes_rural_dibao"):
        registry.import_roster(
            [
                roster_row(late, "rural_dibao", region="150921"),
                roster_row(late, "tekun_rural_dispersed", region="150921"),
            ],
            "2017.csv",
            "clerk",
        )
    # ... and the audit finds what came in before it, once it has been paid.
    run(registry, disbursement, *months(1, 3))
    (finding,) = find_anomalies(registry, disbursement)
    assert finding["kind"] == PAID_BY_EXCLUDED_PROGRAMMES
    assert (finding["id_number"], finding["programmes"], finding["periods"]) == (
        both,
        ["rural_dibao", "tekun_rural_dispersed"],
        ["2017-Q1"],
    )
    assert sorted(finding["payment_ids"]) == sorted(
        payment_id(both, p, "2017-Q1").hex for p in ("rural_dibao", "tekun_rural_dispersed")
    )
    assert "3 month(s), 2017-01 to 2017-03" in finding["detail"]


def test_an_enrolment_written_around_the_exclusion_check_is_found(db: Database, policy_text: str) -> None:
    registry, disbursement = ledger(db, policy_text)
    city(registry)
    holder = roster_row(person(1), "urban_dibao", members=1)
    registry.import_roster([holder], "extra.csv", "clerk")
    # The event method directly: what `Person.enrol` would have refused.
    record = registry.person(holder.id_number)
    record._enrolled(
        programme="tekun_rural_dispersed",
        region="150902",
        effective_from="2017-04-01",
        members=1,
        monthly_income_fen=0,
        special_members=0,
        decision_ref="imported",
        actor="legacy",
    )
    registry.save(record)
    run(registry, disbursement, *months(1, 6))
    (finding,) = find_anomalies(registry, disbursement)
    assert finding["kind"] == PAID_BY_EXCLUDED_PROGRAMMES
    assert finding["periods"] == ["2017-04", "2017-Q2", "2017-05", "2017-06"]  # by start month
    assert len(finding["payment_ids"]) == 4


# --- (c) amount differs from the standard ------------------------------------------------------------------------


def test_an_amount_raised_without_a_decision_is_found_and_an_adjusted_one_is_not(
    db: Database, policy_text: str
) -> None:
    registry, disbursement = ledger(db, policy_text)
    city(registry)
    raised, adjusted = roster_row(person(1), "urban_dibao", members=2), roster_row(person(2), "urban_dibao", members=2)
    registry.import_roster([raised, adjusted], "extra.csv", "clerk")
    run(registry, disbursement, Month(2017, 1))
    decide(registry, adjusted.id_number, "adjust", "2017-02-01", amount_fen=80_000)
    planted = plant_payment(disbursement, raised, "2017-02", 121_000)  # 100 元 more than 2 × 555
    run(registry, disbursement, *months(2, 3))  # February of `raised` exists: the month-end skips it

    (finding,) = find_anomalies(registry, disbursement)
    assert finding["kind"] == AMOUNT_DIFFERS_FROM_STANDARD
    assert (finding["id_number"], finding["periods"], finding["payment_ids"]) == (
        raised.id_number,
        ["2017-02"],
        [planted],
    )
    assert (finding["expected_fen"], finding["paid_fen"]) == (111_000, [121_000])
    assert "1110.00" in finding["detail"] and "no adjust decision" in finding["detail"]


# --- (d) one account, several payees -----------------------------------------------------------------------------


def test_one_account_paid_for_two_people_is_found_but_one_person_with_two_programmes_is_not(
    db: Database, policy_text: str
) -> None:
    registry, disbursement = ledger(db, policy_text)
    city(registry)
    shared = "6228480045001122337"
    first, second = person(1), person(2, birth="19520303")
    registry.import_roster(
        [
            roster_row(first, "urban_dibao", members=2, account=shared),
            roster_row(second, "youfu_topup", account=shared),
            roster_row(person(3), "urban_dibao", members=2, account="6228480045001122345"),
            roster_row(person(3), "youfu_topup", account="6228480045001122345"),
        ],
        "extra.csv",
        "clerk",
    )
    run(registry, disbursement, *months(1, 2))
    (finding,) = find_anomalies(registry, disbursement)
    assert finding["kind"] == ACCOUNT_SHARED
    assert finding["account"] == f"103191000012/{shared}"
    assert finding["id_numbers"] == sorted([first, second])
    assert finding["periods"] == ["2017-01", "2017-H1", "2017-02"]
    assert "2 month(s), 2017-01 to 2017-02" in finding["detail"]


# --- (e) one ID number, two regions ------------------------------------------------------------------------------


def test_one_id_number_enrolled_in_two_counties_at_once_is_found(db: Database, policy_text: str) -> None:
    registry, disbursement = ledger(db, policy_text)
    city(registry)
    twice = person(1)
    registry.import_roster(
        [
            roster_row(twice, "urban_dibao", region="150902", members=2, ref="集民发〔2017〕1号"),
            roster_row(
                twice, "rural_dibao", region="150921", members=2, start=date(2017, 4, 1), ref="卓民发〔2017〕5号"
            ),
        ],
        "extra.csv",
        "clerk",
    )
    run(registry, disbursement, *months(1, 4))
    (finding,) = find_anomalies(registry, disbursement)
    assert finding["kind"] == ENROLLED_IN_TWO_REGIONS
    assert (finding["id_number"], finding["regions"]) == (twice, ["150902", "150921"])
    assert finding["periods"] == ["2017-04", "2017-Q2"]  # what was paid while both were held
    assert "from 2017-04-01" in finding["detail"] and "卓民发〔2017〕5号" in finding["detail"]


def test_findings_come_sorted_by_kind_with_stable_keys(db: Database, policy_text: str) -> None:
    registry, disbursement = ledger(db, policy_text)
    city(registry)
    twice, raised = person(1), roster_row(person(2), "urban_dibao", members=2)
    registry.import_roster(
        [
            raised,
            roster_row(twice, "urban_dibao", region="150902", members=2),
            roster_row(twice, "rural_dibao", region="150921", members=2),
        ],
        "extra.csv",
        "clerk",
    )
    plant_payment(disbursement, raised, "2017-01", 1)
    run(registry, disbursement, Month(2017, 1))
    findings = find_anomalies(registry, disbursement)
    assert kinds(findings) == [AMOUNT_DIFFERS_FROM_STANDARD, ENROLLED_IN_TWO_REGIONS]
    for f in findings:
        assert {"kind", "title_zh", "id_number", "id_numbers", "programmes", "periods", "detail", "payment_ids"} <= set(
            f
        )
    assert person_id(twice) in registry.read_registry().persons
