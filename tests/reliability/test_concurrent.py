"""Concurrent operators (issue 7, part 3), on SQLite and PostgreSQL: one effect each, a clear refusal
for the others, no lost update.

Each scenario starts real processes (multiprocessing, spawn) that open the ledger, meet at a barrier
and then act at the same moment. "Clear refusal" means a `RuleBroken` the CLI prints as one line with
exit 1; any other exception is reported as a traceback and fails the test. Where the natural race
could let the processes run one after the other, an interleaved round makes them load the batch,
wait for each other, and only then decide and save, so both decide on the same version.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from domain.periods import Month
from ledger.storage import Database
from tests.reliability.harness import (
    ADJUSTED_MONTH,
    RECORDED,
    SCOPE,
    adjustment_count,
    adjustment_stores,
    bank_import_worker,
    build_ledger,
    check_adjusted,
    check_store,
    derived,
    export_approve_worker,
    ledger_facts,
    month_end_worker,
    start_workers,
    write_figures,
)

MONTH_END_ROWS = 1500
# Small chunks of different sizes: the four processes collide many times, and a chunk that collides
# is often only partly written already by another process.
MONTH_END_CHUNKS = (50, 70, 90, 130)
OPERATOR_ROWS = 300


def _month_end(db: Database, month: str = "2017-01") -> None:
    """What `yikatong run MONTH` does (ledger.service): accrue, seal, catch the read models up."""
    from ledger.bootstrap import open_service

    service = open_service(db)
    try:
        service.month_end(Month.parse(month), actor="clerk", region=SCOPE)
    finally:
        service.registry.close()
        service.disbursement.close()


def _no_tracebacks(outcomes: list[tuple[str, Any]]) -> None:
    tracebacks = [detail for status, detail in outcomes if status == "traceback"]
    assert not tracebacks, "\n\n".join(tracebacks)


def _rule(outcome: tuple[str, Any]) -> str:
    status, detail = outcome
    return "ok" if status == "ok" else str(detail).split(":")[0]


# --- four month-ends at once ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scopes",
    [
        pytest.param(("150900",) * 4, id="the-same-month-end"),
        # A city run and county runs of the same month: each county's payments are part of the city's.
        pytest.param(("150900", "150902", "150921", "150900"), id="city-and-counties"),
    ],
)
def test_four_month_ends_at_once_pay_everyone_exactly_once(
    db: Database, scopes: tuple[str, ...], request: pytest.FixtureRequest
) -> None:
    reference = derived(db, "ref")
    for each in (db, reference):
        build_ledger(each, MONTH_END_ROWS)
    _month_end(reference)

    results = start_workers(
        month_end_worker,
        [(db.url, "2017-01", chunk, scope) for chunk, scope in zip(MONTH_END_CHUNKS, scopes, strict=True)],
    )

    _no_tracebacks([(status, detail) for status, detail, _ in results])
    assert [status for status, _, _ in results] == ["ok"] * 4, results
    written = sum(figures["payments"] for _, _, figures in results)
    conflicts = sum(figures["conflicts"] for _, _, figures in results)
    already = sum(figures["already"] for _, _, figures in results)
    findings = check_store(db, reference)
    print(
        f"\n{db.kind} {'/'.join(scopes)}: 4 month-ends at once wrote {written} payments "
        f"({[f['payments'] for _, _, f in results]}), {conflicts} chunk conflicts, {already} found already paid; "
        f"duplicates {findings.duplicates}, skipped {findings.skipped}, mismatches {findings.mismatches}"
    )
    name = "same" if len(set(scopes)) == 1 else "city-and-counties"
    figures = {
        "store": db.kind,
        "scopes": scopes,
        "payments_per_process": [f["payments"] for _, _, f in results],
        "chunk_conflicts": conflicts,
        "found_already_paid": already,
        "duplicates": findings.duplicates,
        "skipped": findings.skipped,
        "mismatches": findings.mismatches,
    }
    write_figures(Path(request.config.cache.mkdir("yikatong-reliability")), f"concurrent-{db.kind}-{name}", figures)
    assert findings.clean, "\n".join(findings.examples)
    assert written == findings.payments  # each payment written by exactly one of the four
    assert conflicts >= 1  # they really did collide


# --- adjustment runs at once (issue 14) -------------------------------------------------------------------

ADJUSTMENT_ROWS = 600


@pytest.mark.parametrize("processes", [2, 4])
def test_adjustment_runs_at_once_adjust_every_period_exactly_once(
    db: Database, processes: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """After a back-dated rise is loaded, the same month-end started by several clerks at the same moment:
    each adjustment is written by exactly one of them (the others' copies have the same id, refused by the
    store), none is missing, each period holds what the raised policy prices, batch totals equal sums."""
    reference, due = adjustment_stores(db, ADJUSTMENT_ROWS, tmp_path)
    _month_end(reference, ADJUSTED_MONTH)
    results = start_workers(
        month_end_worker, [(db.url, ADJUSTED_MONTH, chunk, SCOPE) for chunk in MONTH_END_CHUNKS[:processes]]
    )
    _no_tracebacks([(status, detail) for status, detail, _ in results])
    assert [status for status, _, _ in results] == ["ok"] * processes, results
    written = sum(f["adjustments"] + f["recoveries"] for _, _, f in results)
    conflicts = sum(f["conflicts"] for _, _, f in results)
    findings = check_store(db, reference)
    problems = check_adjusted(db, due)
    figures = {
        "store": db.kind,
        "processes": processes,
        "adjustments_per_process": [f["adjustments"] for _, _, f in results],
        "payments_per_process": [f["payments"] for _, _, f in results],
        "chunk_conflicts": conflicts,
        "duplicates": findings.duplicates,
        "skipped": findings.skipped,
        "mismatches": findings.mismatches,
        "wrong_sums": len(problems),
    }
    print(f"\n{db.kind}: {processes} adjustment runs at once: {figures}")
    write_figures(
        Path(request.config.cache.mkdir("yikatong-reliability")), f"concurrent-{db.kind}-adjust-{processes}", figures
    )
    assert findings.clean, "\n".join(findings.examples)
    assert not problems, "\n".join(problems)
    assert written == adjustment_count(db) == adjustment_count(reference) > 0  # each written by exactly one
    assert conflicts >= 1  # they really did collide


# --- two operators export and approve the same batch at once -------------------------------------------


def _operator_ledger(db: Database) -> list[str]:
    """A month-end's batches, largest first."""
    from ledger.bootstrap import open_apps

    build_ledger(db, OPERATOR_ROWS)
    _month_end(db)
    registry, disbursement = open_apps(db)
    try:
        batches = sorted(disbursement.batches(), key=lambda b: (-b.count, b.id.hex))
        return [b.id.hex for b in batches]
    finally:
        registry.close()
        disbursement.close()


def _batch_history(db: Database, batch_hex: str) -> list[tuple[str, str]]:
    """(event name, actor) of the batch's events, in order."""
    from uuid import UUID

    from ledger.bootstrap import open_apps

    registry, disbursement = open_apps(db)
    try:
        return [
            (type(e).__name__, getattr(e, "actor", ""))
            for e in disbursement.repository.event_store.get(UUID(batch_hex))
        ]
    finally:
        registry.close()
        disbursement.close()


def _no_approval_by_an_earlier_exporter(history: list[tuple[str, str]]) -> None:
    exporters: set[str] = set()
    for name, actor in history:
        if name == "Exported":
            exporters.add(actor)
        if name == "Approved":
            assert actor not in exporters, f"{actor} approved a batch they had exported: {history}"


def test_two_operators_export_and_approve_the_same_batch_at_once(db: Database, tmp_path: Path) -> None:
    batches = _operator_ledger(db)
    out = tmp_path / "exports"
    rounds = {
        "natural": (batches[0], False, [("maker-1", "checker-1"), ("maker-2", "checker-2")]),
        "interleaved": (batches[1], True, [("maker-1", "checker-1"), ("maker-2", "checker-2")]),
        # Each exports as one user and approves as the other's: maker-checker must still hold.
        "crossed": (batches[2], False, [("alice", "bob"), ("bob", "alice")]),
    }
    seen: dict[str, Any] = {}
    for name, (batch_hex, interleave, roles) in rounds.items():
        results = start_workers(
            export_approve_worker,
            [(db.url, batch_hex, str(out), exporter, approver, interleave) for exporter, approver in roles],
        )
        exports = [exported for _, _, exported, _ in results]
        approvals = [approved for _, _, _, approved in results]
        _no_tracebacks(exports + approvals)
        history = _batch_history(db, batch_hex)
        events = Counter(event for event, _ in history)
        seen[name] = {
            "exports": [_rule(e) for e in exports],
            "approvals": [_rule(a) for a in approvals],
            "events": dict(events),
        }

        assert {_rule(e) for e in exports} <= {"ok", "ConcurrentChange"}, exports
        assert events["Exported"] == sum(1 for e in exports if e[0] == "ok") >= 1
        _no_approval_by_an_earlier_exporter(history)
        if name == "crossed":
            assert events["Approved"] <= 1
            assert {_rule(a) for a in approvals} <= {
                "ok",
                "ConcurrentChange",
                "BatchAlreadyApproved",
                "ApproverMustDifferFromExporter",
            }, approvals
            continue
        # Exactly one approval lands; the other is refused by name.
        assert [a[0] for a in approvals].count("ok") == 1, approvals
        (refusal,) = [_rule(a) for a in approvals if a[0] != "ok"]
        assert refusal in ({"ConcurrentChange"} if interleave else {"BatchAlreadyApproved", "ConcurrentChange"})
        assert events["Approved"] == 1
        (approved_by,) = [a[1] for a in approvals if a[0] == "ok"]
        assert [actor for event, actor in history if event == "Approved"] == [approved_by]

    from ledger.reports import catch_up

    catch_up(db)
    findings = check_store(db, exports_dir=out)
    print(f"\n{db.kind}: export and approve at once: {seen}; mismatches {findings.mismatches}")
    RECORDED[f"concurrent-{db.kind}-export-and-approve"] = {"outcomes": seen, **findings.counts()}
    assert findings.clean, "\n".join(findings.examples)


def test_an_approved_batch_cannot_be_exported_again_into_a_file_nobody_approved(db: Database, tmp_path: Path) -> None:
    """Found while designing the crossed-roles round: an approver can export after approving."""
    from ledger.bootstrap import open_apps
    from ledger.exports import approve_batch, export_batch
    from tests.reliability.harness import POLICY, outcome_of

    build_ledger(db, 50)
    _month_end(db)
    registry, disbursement = open_apps(db)
    try:
        batch_hex = disbursement.batches()[0].id.hex
        _, files = export_batch(
            disbursement, registry.policy(), batch_hex, fmt="pain001", out=tmp_path / "maker", actor="maker"
        )
        approve_batch(disbursement, batch_hex, "checker")
        corrected = POLICY.read_text(encoding="utf-8").replace("0604000109000012345", "0604000109000099999")
        registry.load_policy(corrected, "ulanqab-2017-payer.toml", "admin")
        status, detail = outcome_of(
            lambda: export_batch(
                disbursement, registry.policy(), batch_hex, fmt="pain001", out=tmp_path / "checker", actor="checker"
            )[1]
        )
    finally:
        registry.close()
        disbursement.close()
    approved = {f.sha256 for f in files}
    assert status == "refused" or {f.sha256 for f in detail} <= approved, "an approved batch left in a new file"


# --- two operators import the same bank file at once ---------------------------------------------------


def _sent(db: Database, batch_hexes: list[str], out: Path) -> dict[str, dict[str, int]]:
    """Export (maker) and approve (checker) each batch; each batch's payment amounts by id."""
    from ledger.bootstrap import open_apps
    from ledger.exports import approve_batch, export_batch

    registry, disbursement = open_apps(db)
    try:
        amounts = {}
        for batch_hex in batch_hexes:
            export_batch(disbursement, registry.policy(), batch_hex, fmt="pain001", out=out, actor="maker")
            approve_batch(disbursement, batch_hex, "checker")
            batch = disbursement.batch_by_id(batch_hex)
            views = disbursement.payment_views(batch.payment_ids)
            amounts[batch_hex] = {pid: views[pid].amount_fen for pid in batch.payment_ids}
        return amounts
    finally:
        registry.close()
        disbursement.close()


def _pain002(folder: Path, batch_hex: str, amounts: dict[str, int], name: str) -> Path:
    """The bank's answer for these payments: ids ending in 0 returned (AC04), the others paid."""
    from exporters.pain002 import render_pain002

    message = f"YKT{batch_hex[:28]}"
    outcomes = [
        (pid, "RJCT" if pid.endswith("0") else "ACSC", "AC04" if pid.endswith("0") else "", amount_fen)
        for pid, amount_fen in amounts.items()
    ]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(render_pain002(message, message, outcomes, created_at=datetime(2017, 1, 6, 10, tzinfo=UTC)))
    return path


def test_two_operators_import_the_same_bank_file_at_once(db: Database, tmp_path: Path) -> None:
    from ledger.bootstrap import open_apps
    from ledger.exports import import_bank_file
    from ledger.reports import catch_up

    batches = _operator_ledger(db)[:3]
    amounts = _sent(db, batches, tmp_path / "exports")
    bank = tmp_path / "bank"
    seen: dict[str, Any] = {}

    # The same file twice at once: once naturally, once with both having loaded the batch first.
    for batch_hex, interleave in ((batches[0], False), (batches[1], True)):
        path = _pain002(bank, batch_hex, amounts[batch_hex], f"{batch_hex[:8]}.xml")
        results = start_workers(
            bank_import_worker, [(db.url, str(path), "clerk-1", interleave), (db.url, str(path), "clerk-2", interleave)]
        )
        outcomes = [outcome for _, outcome in results]
        _no_tracebacks(outcomes)
        assert [status for status, _ in outcomes] == ["ok", "ok"], outcomes
        applied = sorted(detail["already_imported"] for _, detail in outcomes)
        seen["interleaved" if interleave else "natural"] = ["already imported" if a else "applied" for a in applied]
        assert applied == [False, True], outcomes  # one applied it; the other was told it was imported before

    # Two different files for the same batch at once (each half of it): one applies, the other is
    # refused as a concurrent change and applies when imported again. Nothing is lost.
    payments = sorted(amounts[batches[2]])
    halves = [payments[: len(payments) // 2], payments[len(payments) // 2 :]]
    paths = [
        _pain002(bank, batches[2], {pid: amounts[batches[2]][pid] for pid in half}, f"half-{n}.xml")
        for n, half in enumerate(halves)
    ]
    results = start_workers(
        bank_import_worker, [(db.url, str(paths[0]), "clerk-1", True), (db.url, str(paths[1]), "clerk-2", True)]
    )
    outcomes = {path: outcome for path, outcome in results}
    _no_tracebacks(list(outcomes.values()))
    refused = [path for path, (status, _) in outcomes.items() if status != "ok"]
    seen["two halves"] = sorted(_rule(o) for o in outcomes.values())
    assert len(refused) == 1, outcomes
    assert "a batch changed while importing" in outcomes[refused[0]][1]
    _, disbursement = open_apps(db)
    try:
        again = import_bank_file(disbursement, Path(refused[0]), actor="clerk")
    finally:
        disbursement.close()
    assert not again.already_imported

    catch_up(db)
    facts = ledger_facts(db)
    for batch_hex in batches:
        fact = facts.batches[batch_hex]
        assert set(fact.results) == set(amounts[batch_hex])  # every result recorded …
        assert all(n == 1 for n in fact.result_events_per_file.values())  # … once per file
    assert len(facts.batches[batches[2]].result_events_per_file) == 2
    findings = check_store(db, exports_dir=tmp_path / "exports")
    print(f"\n{db.kind}: the same bank file at once: {seen}; mismatches {findings.mismatches}")
    RECORDED[f"concurrent-{db.kind}-bank-import"] = {"outcomes": seen, **findings.counts()}
    assert findings.clean, "\n".join(findings.examples)
