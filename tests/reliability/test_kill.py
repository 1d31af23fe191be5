"""Kill -9 anywhere (issue 7, parts 1 and 2), on SQLite and PostgreSQL.

Part 1: month-ends, exports and bank imports are SIGKILLed at many moments, weighted towards commits,
restarted until they complete, and checked against a clean run after every recovery: nobody paid
twice, nobody skipped, batches equal to their payments, read models equal to a rebuild, exports
regenerating to their recorded hash (tests/reliability/harness.py says how).

Part 2: the same harness with the store's uniqueness switched off (the child draws random payment ids
instead of uuid5 of the natural key) must report duplicates, after a kill and restart and after a
plain second run. A harness that cannot fail proves nothing.

Size: YIKATONG_KILL_POINTS kill points (default 20; `make soak`: 200) over month-ends of
YIKATONG_KILL_PAYMENTS payments (default 2 000; soak: 10 000), YIKATONG_SOAK=1 selecting the soak
sizes; YIKATONG_KILL_SEED replays a run's choices. `pytest -s` shows the figures; they are also
written to .pytest_cache/d/yikatong-reliability/.
"""

from __future__ import annotations

import json
import random
import signal
from pathlib import Path

import pytest

from domain.periods import Month
from ledger.audit import audit_chain_id, verify_log
from ledger.bootstrap import open_apps
from ledger.storage import Database
from tests.reliability.harness import (
    ADJUSTED_MONTH,
    KILL_PAYMENTS,
    KILL_POINTS,
    POLICY,
    KillHarness,
    KillPlan,
    Poller,
    adjustment_count,
    adjustment_stores,
    attempt,
    build_ledger,
    check_adjusted,
    check_store,
    derived,
    kill_seed,
    ledger_facts,
    month_end_phase,
    run_clean,
    run_with_kills,
    seal_phase,
    write_figures,
)

SENSITIVITY_PAYMENTS = 600
ADJUSTMENT_ROWS = 500  # ≈ 900 adjustments (urban dibao: one per month) in the child's chunks of 100
SEAL_SEGMENT = 50  # digests per Sealed event in the child: a 2 000-payment backlog seals as 40+ events
DEATHS_IN_SEAL = 2  # starts that kill -9 themselves inside the seal's transaction, before the timed kills


def _figures_dir(request: pytest.FixtureRequest) -> Path:
    return Path(request.config.cache.mkdir("yikatong-reliability"))


def test_kill_9_at_any_moment_pays_everyone_exactly_once(
    db: Database, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    harness = KillHarness(db, tmp_path, kill_points=KILL_POINTS, payments=KILL_PAYMENTS, seed=kill_seed())
    figures = harness.run()
    print(f"\n{figures.line()}")
    print(f"  kills by phase: {dict(figures.kills_by_phase)}; by aim: {dict(figures.kills_by_plan)}")
    write_figures(_figures_dir(request), f"kill-{db.kind}", figures.as_json())
    assert figures.clean(), "\n".join(figures.examples)
    assert figures.kill_points >= KILL_POINTS


def _during_the_seal(rng: random.Random, timeline: object, *, restart: bool) -> KillPlan:
    """Mostly inside the quarter-second before the reference run's seal committed (its only commit to
    the log): reading the backlog, hashing it, inserting the bounded seals; now and then just after."""
    committed = timeline.commits[0] if timeline.commits else timeline.end_s  # type: ignore[attr-defined]
    return KillPlan(at_s=max(0.0, rng.uniform(committed - 0.25, committed + 0.002)), kind="during the seal")


def _written_but_not_sealed(db: Database) -> int:
    """A month-end whose every chunk committed but whose seal did not (a crash between the two): the
    backlog the next command seals. Returns how many events wait to be sealed."""
    build_ledger(db, KILL_PAYMENTS)
    registry, disbursement = open_apps(db)
    try:
        disbursement.run_month_end(registry.read_registry(), Month(2017, 1), scope="150900", actor="clerk")
        return verify_log(disbursement).unsealed
    finally:
        registry.close()
        disbursement.close()


def test_kill_9_while_sealing_a_large_backlog(
    db: Database, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seal of a month-end's backlog, written as many bounded Sealed events in one transaction, killed
    at random moments and restarted until it completes: the backlog is sealed exactly once, the chain
    has no gap and no overlap, and the ledger equals one that was never interrupted."""
    monkeypatch.setenv("YIKATONG_TEST_SEAL_SEGMENT", str(SEAL_SEGMENT))
    reference = derived(db, "ref")
    backlog = _written_but_not_sealed(db)
    assert _written_but_not_sealed(reference) == backlog >= KILL_PAYMENTS * 0.9
    logs = tmp_path / "logs"
    seal = ["--as", "clerk", "run", "2017-01", "--json"]  # nothing left to pay: it seals the backlog
    _, timeline = run_clean(reference, seal, logs)

    # First, deterministic: the child kills itself with every Sealed row inserted and nothing committed.
    counter = tmp_path / "deaths-in-seal"
    counter.write_text(str(DEATHS_IN_SEAL), encoding="utf-8")
    monkeypatch.setenv("YIKATONG_TEST_DIE_IN_SEAL", str(counter))
    poller = Poller(db)
    try:
        died = [attempt(db, seal, poller, None, logs) for _ in range(DEATHS_IN_SEAL)]
    finally:
        poller.close()
    assert [d.returncode for d in died] == [-signal.SIGKILL] * DEATHS_IN_SEAL, [d.stderr[-500:] for d in died]
    assert counter.read_text(encoding="utf-8") == "0"
    monkeypatch.delenv("YIKATONG_TEST_DIE_IN_SEAL")
    _, disbursement = open_apps(db)
    try:
        assert verify_log(disbursement).unsealed >= backlog  # nothing of the killed seals committed
    finally:
        disbursement.close()

    # Then kills at random moments around the seal, restarted until the command completes.
    rng = random.Random(kill_seed())
    kills = max(3, KILL_POINTS // 4)
    recovery = run_with_kills(db, seal, timeline, kills, rng, logs, seal_phase, choose=_during_the_seal)
    findings = check_store(db, reference)
    _, disbursement = open_apps(db)
    try:
        chain = disbursement.recorder.select_events(audit_chain_id("Disbursement"))
        report = verify_log(disbursement)
    finally:
        disbursement.close()
    figures = {"store": db.kind, "backlog": backlog, "deaths_inside_the_seal": len(died),
               "kills": recovery.kills, "phases": dict(recovery.phases),
               "seals": len(chain) - 1, "mismatches": findings.counts()}  # fmt: skip
    print(f"\nseal of a backlog, {db.kind}: {figures}")
    write_figures(_figures_dir(request), f"seal-backlog-{db.kind}", figures)
    assert recovery.kills == kills
    assert findings.clean, findings.examples
    assert report.ok and report.sealed_position >= backlog
    assert len(chain) - 1 >= backlog // SEAL_SEGMENT  # Started, then the bounded seals


def _after_first_chunk(*_: object, **__: object) -> KillPlan:
    """Kill right after the child's first commit: a month-end with only its first chunk written."""
    return KillPlan(after_commits=1, kind="after the first chunk")


@pytest.mark.parametrize("ids", ["deterministic", "random"])
def test_the_harness_reports_duplicates_when_the_store_cannot_refuse_them(
    db: Database, tmp_path: Path, ids: str, request: pytest.FixtureRequest
) -> None:
    """Random ids (no uniqueness) must show duplicates after a kill-and-restart and after a second run;
    deterministic ids, the same steps, must show none. Both sides run through the same harness."""
    random_ids = ids == "random"
    store, reference = db, derived(db, "ref")
    for each in (store, reference):
        build_ledger(each, SENSITIVITY_PAYMENTS)
    logs = tmp_path / "logs"
    run = ["--as", "clerk", "run", "2017-01", "--json"]
    _, timeline = run_clean(reference, run, logs)

    # A month-end killed right after its first chunk committed, then restarted to completion.
    recovery = run_with_kills(
        store,
        run,
        timeline,
        1,
        random.Random(0),
        logs,
        month_end_phase,
        random_ids=random_ids,
        choose=_after_first_chunk,
    )
    after_restart = check_store(store, reference)

    # The same month run again after a policy reload (a comment added: nothing the payments depend on),
    # which makes the month-end look at every enrolment again instead of trusting its watermark.
    # A policy load alone no longer makes the run look again at periods it does not re-price (issue 14,
    # domain.disbursement.PolicyChanges); a run of the month completed after the watermark does (the
    # month-end examines every period when a run followed its watermark and a policy was loaded since).
    run_clean(store, run, logs)
    reloaded = tmp_path / "ulanqab-2017-reloaded.toml"
    reloaded.write_text(POLICY.read_text(encoding="utf-8") + "\n# reloaded\n", encoding="utf-8")
    run_clean(store, ["--as", "clerk", "policy", "load", str(reloaded)], logs)
    second, _ = run_clean(store, run, logs, random_ids=random_ids)
    after_second_run = check_store(store, reference)

    figures = {
        "ids": ids,
        "store": db.kind,
        "kills": recovery.kills,
        "payments_clean_run": len(_clean_payments(reference)),
        "duplicates_after_kill_and_restart": after_restart.duplicates,
        "duplicates_after_second_run": after_second_run.duplicates,
        "skipped": after_second_run.skipped,
        "second_run_accrued": json.loads(second.stdout)["payments"],
    }
    print(f"\nsensitivity {db.kind}, {ids} ids: {figures}")
    write_figures(_figures_dir(request), f"sensitivity-{db.kind}-{ids}", figures)
    assert recovery.kills == 1
    if random_ids:
        assert after_restart.duplicates > 0
        assert after_second_run.duplicates > after_restart.duplicates
    else:
        assert after_restart.clean, after_restart.examples
        assert after_second_run.clean, after_second_run.examples
        assert figures["second_run_accrued"] == 0


def _clean_payments(reference: Database) -> dict[str, object]:
    return ledger_facts(reference).payments


def test_kill_9_during_an_adjustment_run_adjusts_every_period_exactly_once(
    db: Database, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Issue 14: 2017-03 run, then a rise of urban and rural dibao back-dated to January loaded; the 2017-04
    run writes one adjustment (补发差额) per enrolment × period already paid, in its adjustment batches.
    Killed at random moments (weighted towards its commits) and restarted until it completes: no adjustment
    twice, none missing, each period holding what the raised policy prices, batch totals equal to their
    payments, and the ledger equal to one whose run was never interrupted."""
    run = ["--as", "clerk", "run", ADJUSTED_MONTH, "--json"]
    rng = random.Random(kill_seed())
    wanted = max(4, KILL_POINTS // 2)
    figures: dict[str, object] = {"store": db.kind, "kills": 0, "episodes": 0, "adjustments": 0, "phases": {}}
    problems: list[str] = []
    # A restart often completes before its planned kill: episodes on fresh stores until the kills are in.
    while figures["kills"] < wanted and figures["episodes"] < 6 and not problems:  # type: ignore[operator]
        episode = figures["episodes"]
        store = db if episode == 0 else derived(db, f"a{episode}")
        reference, due = adjustment_stores(store, ADJUSTMENT_ROWS, tmp_path / f"episode{episode}")
        logs = tmp_path / f"episode{episode}" / "logs"
        done, timeline = run_clean(reference, run, logs)
        clean = json.loads(done.stdout)
        left = wanted - figures["kills"]  # type: ignore[operator]
        recovery = run_with_kills(store, run, timeline, left, rng, logs, month_end_phase)
        findings = check_store(store, reference)
        problems += findings.examples if not findings.clean else []
        problems += check_adjusted(store, due) + check_adjusted(reference, due)
        adjustments = adjustment_count(store)
        if adjustments != clean["adjustments"] + clean["recoveries"] or adjustments < ADJUSTMENT_ROWS // 2:
            problems.append(f"{adjustments} adjustments, the clean run wrote {clean['adjustments']}")
        figures["episodes"] = episode + 1
        figures["kills"] += recovery.kills  # type: ignore[operator]
        figures["adjustments"] += adjustments  # type: ignore[operator]
        phases: dict[str, int] = figures["phases"]  # type: ignore[assignment]
        for phase, n in recovery.phases.items():
            phases[phase] = phases.get(phase, 0) + n
    print(f"\nadjustment runs under kill -9, {db.kind}: {figures}; problems {len(problems)}")
    write_figures(_figures_dir(request), f"kill-adjustments-{db.kind}", figures)
    assert not problems, "\n".join(problems)
    assert figures["kills"] >= wanted  # type: ignore[operator]
