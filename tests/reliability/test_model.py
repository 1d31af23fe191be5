"""Stateful model test (issue 7, part 4): the ledger against a small model of what is owed.

A hypothesis state machine drives a fresh SQLite ledger per example through the finance office's
month: enrol (a roster import of 1–3 generated rows), decide (suspend, resume, terminate, adjust,
phase-out), run the next month-end (or run the same month again), export a batch as pain.001, approve
it (and try self-approval), import the bank's pain.002 answer (a mix of ACSC, ACCP and RJCT), change
an account, and re-issue returned payments (which happens in the next run once the account changed).

The model is deliberately independent of `domain/`: its own status fold, its own phase-out end, its own
period names. After every step it checks:
- the obligations accrued are exactly those the model says fell due in some run (nobody skipped,
  nobody paid what was not due), and the re-issues exactly those due;
- entitlement is monthly (issue 14): a period is due the sum of its months in which the enrolment is
  active on some day (a start or resume pays its own month, a stop on D pays the month of D − 1, a
  phase-out decided in month m pays m … m+5 at the amount in force before m); after each run of month M,
  every period starting by M that was ever accrued holds, payment plus adjustments minus recoveries, what
  the model says is due now, to the fen; decisions are often back-dated, so adjustments (补发差额, in the
  run's adjustment batch, exported, approved and answered by the bank like payments) and recoveries
  (`Recovery.Due`, in no batch) happen, numbered 1, 2, … per period, and running the month again adds
  nothing;
- no (id_number, programme, period) obligation has two first payments, no adjustment is written twice,
  and nothing is paid by the bank twice;
- no payment is in two batches, each payment names its batch, and each batch's total is its sum;
- no export was approved by someone who had exported it (read from the batch's event history);
- balances from the reference fold (`Disbursement.balances()`) and from the read model
  (`ledger.reports.balances_rows`) both equal the balances recomputed here from the payments and the
  bank results and the recoveries (adjustments in `adjusted_fen`, not counted as households), and
  `outstanding_fen = accrued_fen − paid_fen + recovered_fen + written_off_fen` in every row;
- every refusal the model predicts happens, with the predicted rule, and records nothing.

Size: CI runs YIKATONG_MODEL_EXAMPLES (default 200) examples of up to YIKATONG_MODEL_STEPS (30) steps;
YIKATONG_SOAK=1 runs ten times the examples. The figures are printed at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID

import pytest
from eventsourcing.utils import get_topic
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from domain.disbursement import ADJUSTMENTS, PAYMENTS, Payment, Recovery, adjustment_id, reissue_id
from domain.errors import RuleBroken
from domain.identity import age_on
from domain.periods import Month
from exporters.pain002 import render_pain002
from ledger.bootstrap import database_from_url, open_apps
from ledger.exports import ResultsRefused, approve_batch, export_batch, import_bank_file
from ledger.reports import balances_rows
from ledger.roster import RosterRejected, read_roster
from tests.conftest import POLICY
from tests.helpers.ledgers import HEADER, resident_id
from tests.reliability.harness import RECORDED

SOAK = os.environ.get("YIKATONG_SOAK") == "1"
EXAMPLES = int(os.environ.get("YIKATONG_MODEL_EXAMPLES") or (2000 if SOAK else 200))
STEPS = int(os.environ.get("YIKATONG_MODEL_STEPS") or 30)

REGION = "150900"  # the policy's region (乌兰察布市)
COUNTIES = ("150902", "150921")  # 集宁区, 卓资县: inside it
FIRST_MONTH = 2017 * 12  # ordinal of 2017-01, when the policy's standards start
PERSONS_MAX = 5  # tiny rosters keep an example cheap; the rules, not the volume, are under test

# The programmes the model covers, with their cadence. Tekun excludes both dibao programmes
# (000_a883bdda05437b65.txt 四), so the model meets exclusions; youfu_topup is half-yearly.
CADENCES = {
    "urban_dibao": "monthly",
    "rural_dibao": "quarterly",
    "tekun_rural_dispersed": "quarterly",
    "youfu_topup": "half-yearly",
}
# Tekun is drawn less often: most of its enrolments beside a dibao are refused, which is cheap to check.
PROGRAMME_DRAWS = ("urban_dibao", "urban_dibao", "rural_dibao", "youfu_topup", "tekun_rural_dispersed")
EXCLUDED = {
    frozenset(("tekun_rural_dispersed", "urban_dibao")),
    frozenset(("tekun_rural_dispersed", "rural_dibao")),
}
ALLOWED_FROM = {
    "suspend": {"active"},
    "resume": {"suspended"},
    "terminate": {"active", "suspended"},
    "adjust": {"active", "suspended"},
    "phase-out": {"active"},
}
# Standards of ulanqab-2017.toml in fen, as the seed prints them (000_a883bdda05437b65.txt 一).
HOUSEHOLD_STANDARD_FEN = {"urban_dibao": Fraction(55500), "rural_dibao": Fraction(390600, 12)}
YEARLY_PERSON_FEN = {"tekun_rural_dispersed": 507800}  # 1.3 × 3906 = 5077.8 → 5078 元/年
MONTHLY_PERSON_FEN = {"youfu_topup": 12000}
UPLIFT = Fraction(5, 100)  # special_member_uplift
PHASE_OUT_MONTHS = 6  # 004_… 二.1: the six months m … m+5 of the decision's month are paid, then it ends
EXPORTERS = ("amy", "bo", "cy")
APPROVERS = ("amy", "bo", "cy", "dee")  # dee never exports, so some approval is always possible
NAMES = ("张三", "李建华", "王桂英", "欧阳小明", "乌力吉")
BANK_CODES = ("103191000012", "402191000034")
RECOVERY_DUE = get_topic(Recovery.Due)  # type: ignore[attr-defined]
RECOVERY_OFFSET = get_topic(Recovery.Offset)  # type: ignore[attr-defined]
ACCRUED = get_topic(Payment.Accrued)  # type: ignore[attr-defined]
REASONS = ("AC04", "AC01", "BE01")


# --- the model: months as ordinals, statuses folded here, not by domain/ --------------------------


def first_day(ordinal: int) -> date:
    return date(ordinal // 12, ordinal % 12 + 1, 1)


def ordinal_of(day: date) -> int:
    return day.year * 12 + day.month - 1


def period_starting(cadence: str, ordinal: int) -> str | None:
    """The name of the period of `cadence` that starts in month `ordinal`, or None."""
    year, month = ordinal // 12, ordinal % 12 + 1
    if cadence == "monthly":
        return f"{year}-{month:02d}"
    if cadence == "quarterly":
        return f"{year}-Q{(month - 1) // 3 + 1}" if month % 3 == 1 else None
    if cadence == "half-yearly":
        return f"{year}-H{(month - 1) // 6 + 1}" if month in (1, 7) else None
    raise AssertionError(cadence)


def period_containing(cadence: str, ordinal: int) -> str:
    """The name of the period of `cadence` holding month `ordinal`."""
    year, month = ordinal // 12, ordinal % 12 + 1
    if cadence == "monthly":
        return f"{year}-{month:02d}"
    if cadence == "quarterly":
        return f"{year}-Q{(month - 1) // 3 + 1}"
    if cadence == "half-yearly":
        return f"{year}-H{(month - 1) // 6 + 1}"
    raise AssertionError(cadence)


def months_of(period: str) -> list[int]:
    """The month ordinals of a period named 2017-03, 2017-Q2 or 2017-H1."""
    year, part = int(period[:4]), period[5:]
    if part.startswith("Q"):
        first, count = (int(part[1]) - 1) * 3, 3
    elif part.startswith("H"):
        first, count = (int(part[1]) - 1) * 6, 6
    else:
        first, count = int(part) - 1, 1
    return [year * 12 + first + i for i in range(count)]


def phase_out_end(on: date) -> date:
    """The decision's month and five more are paid; the first day after them it has ended."""
    return first_day(ordinal_of(on) + PHASE_OUT_MONTHS)


@dataclass
class ModelDecision:
    kind: str
    on: date
    ends_on: date | None = None
    amount_fen: int | None = None  # adjust: the approved monthly amount


@dataclass
class ModelEnrolment:
    programme: str
    start: date
    row: str  # the CSV line that enrolled it, for an identical re-import
    members: int = 1
    income_fen: int = 0
    special: int = 0
    decisions: list[ModelDecision] = field(default_factory=list)

    def ordered(self) -> list[ModelDecision]:
        return sorted(self.decisions, key=lambda d: d.on)  # stable: equal dates keep their order

    def status_on(self, day: date) -> str:
        if day < self.start:
            return "pending"
        status = "active"
        for decision in self.ordered():
            if decision.on > day or status in ("terminated", "ended"):
                break
            if decision.kind == "suspend":
                status = "suspended"
            elif decision.kind == "resume":
                status = "active"
            elif decision.kind == "terminate":
                status = "terminated"
            elif decision.kind == "phase-out" and decision.ends_on is not None and day >= decision.ends_on:
                status = "ended"
        return status

    def end_date(self) -> date | None:
        ends = [d.on if d.kind == "terminate" else d.ends_on for d in self.decisions]
        return min((e for e in ends if e is not None), default=None)

    def month_active(self, ordinal: int) -> bool:
        """Some day of the month finds the enrolment active. The status only changes on the start, a
        decision's day or a phase-out's end, so the month's first day and those days inside it decide."""
        low, high = first_day(ordinal), first_day(ordinal + 1)
        days = {low, self.start}
        for decision in self.decisions:
            days.add(decision.on)
            if decision.ends_on is not None:
                days.add(decision.ends_on)
        return any(low <= day < high and self.status_on(day) == "active" for day in days)

    def period_fen(self, period: str) -> int:
        """A period is due the sum of its active months."""
        return sum(self.month_fen(o) for o in months_of(period) if self.month_active(o))

    def periods(self, run: int) -> list[str]:
        """Every period of the cadence starting by `run` and holding a month from the start's on (a start
        later in the run month's half-year is paid with that half-year, in the run)."""
        cadence, first = CADENCES[self.programme], ordinal_of(self.start)
        names = dict.fromkeys(period_containing(cadence, o) for o in range(first, max(first, run) + 1))
        return [name for name in names if months_of(name)[0] <= run]

    def month_fen(self, ordinal: int) -> int:
        """What one month pays: the latest adjust in force on its first day, else the standard. From a
        phase-out's month on, the amount in force before it: the adjust in force on the first day of the
        month before (or on the start, if later).

        Household programmes pay max(0, members × standard − income) plus 5 % of the standard per special
        member, rounded half-up to the fen (DESIGN.md); an annual person standard A pays
        ⌊A·k/12⌋ − ⌊A·(k−1)/12⌋ in month k, so the months sum to the year.
        """
        override = None
        priced_on = first_day(ordinal)
        phase_outs = [d.on for d in self.ordered() if d.kind == "phase-out"]
        if phase_outs and ordinal >= ordinal_of(phase_outs[0]):
            priced_on = max(first_day(ordinal_of(phase_outs[0]) - 1), self.start)
        for decision in self.ordered():
            if decision.on > priced_on:
                break
            if decision.kind == "adjust":
                override = decision.amount_fen
        if override is not None:
            return override
        if self.programme in HOUSEHOLD_STANDARD_FEN:
            standard = HOUSEHOLD_STANDARD_FEN[self.programme]
            exact = max(0, self.members * standard - self.income_fen) + UPLIFT * standard * self.special
            return int(exact + Fraction(1, 2)) if exact.denominator != 1 else int(exact)
        if self.programme in YEARLY_PERSON_FEN:
            year_fen, k = YEARLY_PERSON_FEN[self.programme], ordinal % 12 + 1
            return year_fen * k // 12 - year_fen * (k - 1) // 12
        return MONTHLY_PERSON_FEN[self.programme]


@dataclass
class ModelPerson:
    id_number: str
    name: str
    bank_code: str
    account: str
    enrolments: dict[str, ModelEnrolment] = field(default_factory=dict)
    former: list[tuple[str, str]] = field(default_factory=list)  # (bank code, account) held before


@dataclass
class Attempt:
    """One bank line the ledger made: a first payment, a positive adjustment (补发差额) or a re-issue of a
    returned one."""

    key: tuple[str, str, str]  # (id_number, programme, period): the enrolment's period
    account: str
    reissue_of: str
    batch: str
    adjustment: int = 0  # 0: the period's payment; n: its n-th adjustment (a re-issue: the one it pays again)

    @property
    def obligation(self) -> tuple[str, str, str, int]:
        return (*self.key, self.adjustment)


def views_of(machine: Any, pid: str) -> Any:
    return machine.disbursement.payment_views([pid])[pid]


# Eligibility guards of the shipped policy the model meets (docs/entitlement.md): 特困 from 16
# (000_… 一.3 "未满16周岁儿童暂不纳入特困人员"). Incomes drawn (≤ 300 元 a household) stay below both dibao lines.
AGE_MIN = {"tekun_rural_dispersed": 16}


def below_age(id_number: str, programme: str, on: date) -> bool:
    born = date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))
    return programme in AGE_MIN and (on < born or age_on(born, on) < AGE_MIN[programme])


def excluded_by(held: dict[str, ModelEnrolment], programme: str, on: date) -> bool:
    """Holding `programme` from `on` beside an enrolment it excludes that has not ended by then."""
    for other_key, other in held.items():
        if other_key == programme or frozenset((programme, other_key)) not in EXCLUDED:
            continue
        ends = other.end_date()
        if ends is None or ends > on:
            return True
    return False


# --- the machine ----------------------------------------------------------------------------------


class LedgerMachine(RuleBasedStateMachine):
    stats: ClassVar[Counter[str]] = Counter()

    @initialize(data=st.data())
    def open_ledger(self, data: st.DataObject) -> None:
        self.stats["examples"] += 1
        self.folder = Path(tempfile.mkdtemp(prefix="ykt-model-"))
        self.db = database_from_url(f"sqlite:///{self.folder / 'ledger.db'}")
        self.registry, self.disbursement = open_apps(self.db)
        self.registry.load_policy(POLICY.read_text(encoding="utf-8"), POLICY.name, "clerk")
        self.policy = self.registry.policy()
        self.persons: dict[str, ModelPerson] = {}
        self.serial = 0
        self.files = 0
        self.next_month = FIRST_MONTH
        self.last_run: int | None = None
        self.due: set[tuple[str, str, str]] = set()  # obligations the model says fell due in some run
        self.attempts: dict[str, Attempt] = {}
        self.recoveries: dict[str, dict[str, Any]] = {}  # Recovery.Due id → its fields
        self.results: dict[str, str] = {}  # payment id → paid | returned, as the bank files said
        self.exporters: dict[str, set[str]] = {}
        self.approved_by: dict[str, str] = {}
        self.export_hashes: dict[tuple[str, int], str] = {}  # (batch, payment count) → pain.001 SHA-256
        self.enrol_rows(data)  # every example starts with someone to pay

    def teardown(self) -> None:
        if hasattr(self, "registry"):
            self.registry.close()
            self.disbursement.close()
            shutil.rmtree(self.folder, ignore_errors=True)

    # --- helpers ---------------------------------------------------------------------------------

    def positions(self) -> tuple[int, int]:
        return (
            self.registry.recorder.max_notification_id() or 0,
            self.disbursement.recorder.max_notification_id() or 0,
        )

    def refused(self, error: type[BaseException], call: Any, *, rule: str = "") -> RuleBroken:
        """`call()` raises `error` (naming `rule` when given) and records nothing in either log."""
        before = self.positions()
        with pytest.raises(error) as raised:
            call()
        assert self.positions() == before, f"{error.__name__} recorded events"
        if rule:
            assert rule in str(raised.value), f"expected {rule}, got: {raised.value}"
        self.stats[f"refused {error.__name__}"] += 1
        return raised.value  # type: ignore[return-value]

    def import_lines(self, lines: list[str]) -> Any:
        self.files += 1
        path = self.folder / f"roster-{self.files}.csv"
        path.write_text(HEADER + "".join(lines), encoding="utf-8")
        rows = read_roster(path, region=REGION, programmes=self.policy.programmes.keys())
        return self.registry.import_roster(rows, path.name, "clerk")

    def draw_batch(self, data: st.DataObject, prefer: list[str]) -> Any:
        """Mostly a batch from `prefer` (the next step of its life), sometimes any batch."""
        pool = sorted(prefer) if prefer and data.draw(st.integers(0, 3), label="usual") else sorted(self.exporters)
        return self.disbursement.batch_by_id(data.draw(st.sampled_from(pool), label="batch"))

    def enrolments(self) -> list[tuple[ModelPerson, ModelEnrolment]]:
        return [(p, e) for _, p in sorted(self.persons.items()) for _, e in sorted(p.enrolments.items())]

    def draw_day(self, data: st.DataObject, low: int, high: int) -> date:
        ordinal = data.draw(st.integers(min_value=low, max_value=high), label="month")
        return first_day(ordinal).replace(day=data.draw(st.sampled_from((1, 1, 2, 15, 28)), label="day"))

    # --- enrol -----------------------------------------------------------------------------------

    @rule(data=st.data())
    def enrol(self, data: st.DataObject) -> None:
        """A roster of 1–3 rows: new persons (up to PERSONS_MAX) or existing persons in a new programme;
        now and then a row imported before, sent again."""
        if self.persons and not data.draw(st.integers(0, 5), label="re-send"):
            self.reimport_a_row(data)
            return
        self.enrol_rows(data)

    def enrol_rows(self, data: st.DataObject) -> None:
        wanted = data.draw(st.integers(min_value=1, max_value=3), label="rows")
        lines: list[str] = []
        planned: dict[str, dict[str, ModelEnrolment]] = {}  # id_number → programmes added by this file
        new_persons: dict[str, ModelPerson] = {}
        for _ in range(wanted):
            known = {**self.persons, **new_persons}
            if len(known) < PERSONS_MAX and (not known or data.draw(st.booleans(), label="new person")):
                self.serial += 1
                birth = f"{data.draw(st.integers(min_value=1930, max_value=2005), label='born')}0615"
                person = ModelPerson(
                    id_number=resident_id("150902", birth, self.serial),
                    name=data.draw(st.sampled_from(NAMES), label="name"),
                    bank_code=BANK_CODES[0],
                    account=f"62284800{self.serial:011d}",
                )
                new_persons[person.id_number] = person
            else:
                person = known[data.draw(st.sampled_from(sorted(known)), label="person")]
            taken = set(person.enrolments) | set(planned.get(person.id_number, {}))
            free = [p for p in PROGRAMME_DRAWS if p not in taken]
            if not free:
                continue
            programme = data.draw(st.sampled_from(free), label="programme")
            start = self.draw_day(data, max(FIRST_MONTH, self.next_month - 4), self.next_month + 2)
            members = data.draw(st.integers(min_value=1, max_value=4), label="members")
            income = data.draw(st.integers(min_value=0, max_value=300), label="income")
            special = data.draw(st.integers(min_value=0, max_value=members), label="special")
            county = data.draw(st.sampled_from(COUNTIES), label="county")
            line = (
                f"{person.id_number},{person.name},{county},{programme},{start.isoformat()},{members},"
                f"{income}.00,{special},{person.bank_code},{person.account},集民发〔2017〕{self.serial}号\n"
            )
            lines.append(line)
            planned.setdefault(person.id_number, {})[programme] = ModelEnrolment(
                programme, start, line, members, income * 100, special
            )
        if not lines:
            return
        # The model's verdict: every row is checked against what the person holds, rows in file order.
        # A row breaking an exclusion names it; otherwise one below a programme's minimum age names that.
        reasons = set()
        for id_number, added in planned.items():
            known_person = self.persons.get(id_number)
            held = dict(known_person.enrolments) if known_person else {}
            for programme, enrolment in added.items():
                if excluded_by(held, programme, enrolment.start):
                    reasons.add("exclude each other")
                elif below_age(id_number, programme, enrolment.start):
                    reasons.add("AgeBelowMinimum")
                else:
                    held[programme] = enrolment  # a refused row is not held by the rows after it
        if reasons:
            error = self.refused(RosterRejected, lambda: self.import_lines(lines))
            assert all(reason in str(error) for reason in reasons), (reasons, str(error))
            return
        summary = self.import_lines(lines)
        assert (summary.enrolled, summary.unchanged) == (len(lines), 0)
        self.persons.update(new_persons)
        for id_number, added in planned.items():
            self.persons[id_number].enrolments.update(added)
        self.stats["enrolled"] += len(lines)

    def reimport_a_row(self, data: st.DataObject) -> None:
        """The same row again changes nothing (an office re-sends last month's roster)."""
        person, enrolment = data.draw(st.sampled_from(self.enrolments()), label="enrolment")
        if f",{person.bank_code},{person.account}," not in enrolment.row:
            # The account was corrected since the row was sent: the old row is refused naming the
            # command that changes an account, never taken as unchanged (issue 14).
            self.refused(RosterRejected, lambda: self.import_lines([enrolment.row]), rule="`account set`")
            return
        # Even when the person has moved to an excluding programme since (特困 ended, then 低保): the
        # row is what the ledger already holds, so it is unchanged, not re-checked and refused
        # (test_a_row_sent_again_is_unchanged_after_the_person_moved_to_an_excluding_programme).
        before = self.positions()
        summary = self.import_lines([enrolment.row])
        assert (summary.enrolled, summary.unchanged) == (0, 1)
        assert self.positions() == before
        self.stats["re-imported"] += 1

    # --- decide ----------------------------------------------------------------------------------

    @precondition(lambda self: self.persons)
    @rule(data=st.data())
    def decide(self, data: st.DataObject) -> None:
        self.decide_on(data, back_dated=False)

    @precondition(lambda self: self.persons and self.last_run is not None)
    @rule(data=st.data())
    def decide_late(self, data: st.DataObject) -> None:
        """A decision back-dated before the last run (a late death, a suspension recorded late, an amount
        approved from an earlier month): the next run adjusts periods already accrued."""
        self.decide_on(data, back_dated=True)

    def decide_on(self, data: st.DataObject, *, back_dated: bool) -> None:
        # Late decisions lean to approved amounts and resumptions: the ones that pay more (补发差额).
        kinds = ("adjust", "adjust", "resume", *sorted(ALLOWED_FROM)) if back_dated else sorted(ALLOWED_FROM)
        kind = data.draw(st.sampled_from(kinds), label="kind")
        pool = self.enrolments()
        if kind == "resume":
            pool = [(p, e) for p, e in pool if any(d.kind == "suspend" for d in e.decisions)] or pool
        person, enrolment = data.draw(st.sampled_from(pool), label="enrolment")
        low = max(FIRST_MONTH, ordinal_of(enrolment.start) - (0 if back_dated else 1))
        suspended = [d.on for d in enrolment.decisions if d.kind == "suspend"]
        if kind == "resume" and suspended:
            low = ordinal_of(max(suspended))  # a resume mostly follows a suspension
        high = self.last_run if back_dated and self.last_run is not None else self.next_month + 3
        on = self.draw_day(data, low, max(low, high))
        amount = data.draw(st.integers(min_value=1, max_value=2400), label="amount") if kind == "adjust" else None

        def call() -> Any:
            return self.registry.decide(
                kind=kind,
                id_number=person.id_number,
                programme=enrolment.programme,
                on=on,
                actor="clerk",
                reason="集民发〔2017〕99号",
                amount_fen=amount * 100 if amount is not None else None,
            )

        if on < enrolment.start:
            self.refused(RuleBroken, call, rule="before the enrolment starts")
            return
        status = enrolment.status_on(on)
        if status not in ALLOWED_FROM[kind]:
            self.refused(RuleBroken, call, rule=f"it is {status}")
            return
        others = {k: v for k, v in person.enrolments.items() if k != enrolment.programme}
        if kind == "resume" and excluded_by(others, enrolment.programme, on):
            self.refused(RuleBroken, call, rule="exclude each other")
            return
        call()
        ends_on = phase_out_end(on) if kind == "phase-out" else None
        enrolment.decisions.append(ModelDecision(kind, on, ends_on, amount * 100 if amount is not None else None))
        self.stats[f"decided {kind}"] += 1

    # --- account ---------------------------------------------------------------------------------

    @precondition(lambda self: self.persons)
    @rule(data=st.data())
    def change_account(self, data: st.DataObject) -> None:
        """A corrected account; sometimes the one on record (nothing changes) or a former one again (a
        returned payment to that account then waits for another correction)."""
        waiting = sorted({self.attempts[p].key[0] for p, r in self.results.items() if r == "returned"})
        pool = waiting if waiting and data.draw(st.integers(0, 3), label="usual") else sorted(self.persons)
        person = self.persons[data.draw(st.sampled_from(pool), label="person")]
        self.serial += 1
        fresh = (data.draw(st.sampled_from(BANK_CODES), label="bank"), f"62170020{self.serial:011d}")
        current = (person.bank_code, person.account)
        choices = [fresh, fresh, current, *person.former[-1:]]
        bank_code, account = data.draw(st.sampled_from(choices), label="account")
        changed = self.registry.set_account(
            id_number=person.id_number, bank_code=bank_code, account=account, reason="更正", actor="clerk"
        )
        assert changed == ((bank_code, account) != current)
        if changed:
            person.former.append(current)
        person.bank_code, person.account = bank_code, account
        self.stats["account changed" if changed else "account unchanged"] += 1

    # --- month-end -------------------------------------------------------------------------------

    def entitlements(self, run: int) -> dict[tuple[str, str, str], int]:
        """What every enrolment is due now for each period starting by month `run`, in fen."""
        owed = {}
        for person, enrolment in self.enrolments():
            for name in enrolment.periods(run):
                owed[person.id_number, enrolment.programme, name] = enrolment.period_fen(name)
        return owed

    def reissues_due(self) -> set[str]:
        """Returned payments not re-issued yet whose payee's account has changed since."""
        reissued = {a.reissue_of for a in self.attempts.values() if a.reissue_of}
        due = set()
        for pid, status in self.results.items():
            attempt = self.attempts[pid]
            person = self.persons[attempt.key[0]]
            if status == "returned" and pid not in reissued and person.account != attempt.account:
                due.add(pid)
        return due

    def month_end(self, run: int) -> None:
        reissues = self.reissues_due()
        month = Month(run // 12, run % 12 + 1)
        summary = self.disbursement.run_month_end(self.registry.read_registry(), month, scope=REGION, actor="clerk")
        owed = self.entitlements(run)
        self.due |= {key for key, fen in owed.items() if fen > 0}
        new = self.sync_attempts()
        new_recoveries = self.sync_recoveries()
        assert {a.reissue_of for a in new.values() if a.reissue_of} == reissues
        assert summary.reissued == len(reissues)
        adjustments = {p: a for p, a in new.items() if a.adjustment and not a.reissue_of}
        assert summary.payments == len(new) - len(adjustments)
        assert (summary.adjustments, summary.recoveries) == (len(adjustments), len(new_recoveries))
        views = self.disbursement.payment_views(new)
        for pid, attempt in new.items():
            person = self.persons[attempt.key[0]]
            view = views[pid]
            if attempt.reissue_of:
                assert attempt.account == person.account, "a re-issue goes to the new account"
                assert view.amount_fen == views_of(self, attempt.reissue_of).amount_fen, "a re-issue pays the same"
                continue
            assert view.run_month == str(month)
            enrolment = person.enrolments[attempt.key[1]]
            household = enrolment.programme in HOUSEHOLD_STANDARD_FEN
            assert view.persons == (enrolment.members if household else 1)
            if attempt.adjustment:
                assert view.amount_fen > 0 and not view.late, "a positive adjustment is a bank line, not late"
                continue
            assert view.amount_fen == owed[attempt.key] > 0, (
                f"{attempt.key}: {view.amount_fen} fen, the model says {owed[attempt.key]}"
            )
        self.check_sums(run, owed)
        self.stats["payments"] += len(new) - len(adjustments) - len(reissues)
        self.stats["re-issues"] += len(reissues)
        self.stats["adjustments"] += len(adjustments)
        self.stats["recoveries"] += len(new_recoveries)
        if adjustments:
            self.stats["runs with adjustments"] += 1
        if new_recoveries:
            self.stats["runs with recoveries"] += 1
        if not (new or new_recoveries):
            return
        # The same month again, nothing changed in between: nothing more to accrue, adjust or recover.
        before = self.positions()[1]
        again = self.disbursement.run_month_end(self.registry.read_registry(), month, scope=REGION, actor="clerk")
        assert (again.payments, again.adjustments, again.recoveries, again.reissued) == (0, 0, 0, 0), again
        assert not self.sync_attempts() and not self.sync_recoveries()
        assert self.positions()[1] == before + 1, "a run that finds nothing records only its completion"

    def check_sums(self, run: int, owed: dict[tuple[str, str, str], int]) -> None:
        """Every period starting by `run` that was ever accrued holds what is due now: its payment, plus
        its positive adjustments, minus its recoveries, numbered 1, 2, … without a gap, to the fen."""
        views = self.disbursement.payment_views(self.attempts)
        held: dict[tuple[str, str, str], int] = {}
        numbers: dict[str, list[int]] = {}
        firsts: dict[tuple[str, str, str], str] = {}
        for pid, attempt in self.attempts.items():
            if attempt.reissue_of:
                continue
            held[attempt.key] = held.get(attempt.key, 0) + views[pid].amount_fen
            if attempt.adjustment:
                numbers.setdefault(views[pid].adjusts, []).append(attempt.adjustment)
                assert UUID(pid) == adjustment_id(views[pid].adjusts, attempt.adjustment)
            else:
                firsts[attempt.key] = pid
        for rid, found in self.recoveries.items():
            key = (found["id_number"], found["programme"], found["period"])
            assert found["amount_fen"] > 0 and found["balance_region"] == REGION
            held[key] = held.get(key, 0) - found["amount_fen"]
            numbers.setdefault(found["adjusts"], []).append(found["adjustment"])
            assert UUID(rid) == adjustment_id(found["adjusts"], found["adjustment"])
        for adjusts, found_numbers in numbers.items():
            assert sorted(found_numbers) == list(range(1, len(found_numbers) + 1)), (adjusts, found_numbers)
        by_pid = {pid: key for key, pid in firsts.items()}
        for pid, attempt in self.attempts.items():
            if attempt.adjustment and not attempt.reissue_of:
                assert by_pid[views[pid].adjusts] == attempt.key, "an adjustment corrects its own period"
        for found in self.recoveries.values():
            assert by_pid[found["adjusts"]] == (found["id_number"], found["programme"], found["period"])
        for key, fen in held.items():
            if months_of(key[2])[0] <= run:
                assert fen == owed.get(key, 0), f"{key}: holds {fen} fen after the run of {run}, due {owed.get(key, 0)}"

    @rule()
    def run_next_month(self) -> None:
        self.month_end(self.next_month)
        self.last_run = self.next_month
        self.next_month += 1
        self.stats["runs"] += 1

    @precondition(lambda self: self.last_run is not None)
    @rule(data=st.data())
    def run_a_month_again(self, data: st.DataObject) -> None:
        """The last month again (a second clerk, a retry), or now and then an earlier one by mistake:
        only what became due since (arrears and adjustments from a late decision, re-issues) is accrued."""
        assert self.last_run is not None
        earlier = data.draw(st.integers(0, 3), label="earlier") == 0
        month = data.draw(st.integers(FIRST_MONTH, self.last_run), label="month") if earlier else self.last_run
        self.month_end(month)
        self.stats["reruns"] += 1

    def sync_attempts(self) -> dict[str, Attempt]:
        """Bank lines the ledger made since the last look, added to the model's list of attempts."""
        new: dict[str, Attempt] = {}
        batches = self.disbursement.batches()
        kinds = {b.id.hex: b for b in batches}
        # Every payment in the log: a payment offset whole by recoveries due is in no batch (issue 14).
        recorder = self.disbursement.recorder
        accrued = recorder.select_notifications(start=1, limit=10**6, topics=[ACCRUED])
        unseen = [n.originator_id.hex for n in accrued if n.originator_id.hex not in self.attempts]
        views = self.disbursement.payment_views(unseen)
        for pid in unseen:
            view = views[pid]
            key = (view.id_number, view.programme, view.period)
            number = self.attempts[view.reissue_of].adjustment if view.reissue_of else view.adjustment
            new[pid] = Attempt(key, view.account, view.reissue_of, view.batch_id, number)
            if not view.batch_id:
                # Offset whole: nothing for the bank, and only a payment's whole amount is ever offset.
                assert view.offset_fen == view.amount_fen > 0 and view.balance_region == REGION, view
                self.stats["payments offset whole"] += 1
                continue
            batch = kinds[view.batch_id]
            if view.adjusts and not view.reissue_of:
                assert (batch.kind, batch.period, batch.run_month) == (ADJUSTMENTS, view.run_month, view.run_month)
            else:
                assert (batch.kind, batch.period) == (PAYMENTS, view.period)
            self.exporters.setdefault(view.batch_id, set())
        self.attempts.update(new)
        return new

    def sync_recoveries(self) -> dict[str, dict[str, Any]]:
        """Recoveries due (negative adjustments) recorded since the last look: events in no batch."""
        recorder = self.disbursement.recorder
        new = {}
        for notification in recorder.select_notifications(start=1, limit=10**6, topics=[RECOVERY_DUE]):
            rid = notification.originator_id.hex
            if rid not in self.recoveries:
                new[rid] = self.disbursement.payload(notification.state)
        self.recoveries.update(new)
        return new

    # --- export, approve, bank results -------------------------------------------------------------

    def export_as(self, batch: Any, actor: str) -> None:
        out = self.folder / "out"
        _, files = export_batch(self.disbursement, self.policy, batch.id.hex, fmt="pain001", out=out, actor=actor)
        (written,) = files
        assert written.path.read_bytes() and not [p for p in out.iterdir() if p.name.startswith(".")]
        # Same batch, same payments: same bytes (DESIGN.md, Bank files).
        assert self.export_hashes.setdefault((batch.id.hex, batch.count), written.sha256) == written.sha256
        self.exporters[batch.id.hex].add(actor)
        self.stats["exports"] += 1
        if batch.kind == ADJUSTMENTS:
            self.stats["adjustment batches exported"] += 1

    def approve_as(self, batch: Any, actor: str) -> bool:
        """Approve as `actor` when the model says it is allowed; else check the refusal and its rule."""
        exporters = self.exporters[batch.id.hex]
        expected = ""
        if not exporters:
            expected = "BatchNotExported"
        elif batch.id.hex in self.approved_by:
            expected = "BatchAlreadyApproved"
        elif actor in exporters:
            expected = "ApproverMustDifferFromExporter"
        if expected:
            error = self.refused(RuleBroken, lambda: approve_batch(self.disbursement, batch.id.hex, actor))
            assert error.rule == expected, f"expected {expected}, got {error.rule}: {error}"
            return False
        approve_batch(self.disbursement, batch.id.hex, actor)
        self.approved_by[batch.id.hex] = actor
        self.stats["approvals"] += 1
        return True

    def try_self_approval(self, batch: Any, data: st.DataObject) -> None:
        """Maker-checker: whoever exported a batch cannot approve it, whatever else is true."""
        exporters = self.exporters[batch.id.hex]
        if exporters:
            self.approve_as(batch, data.draw(st.sampled_from(sorted(exporters)), label="self-approver"))

    def answer(self, batch_hex: str, open_ids: list[str], data: st.DataObject) -> None:
        """The bank answers some of a batch's open payments: paid (ACSC/ACCP) or returned (RJCT)."""
        chosen = data.draw(st.lists(st.sampled_from(open_ids), min_size=1, unique=True), label="answered")
        views = self.disbursement.payment_views(chosen)
        outcomes = []
        for pid in chosen:
            status = data.draw(st.sampled_from(("ACSC", "ACCP", "RJCT", "RJCT")), label="status")
            reason = data.draw(st.sampled_from(REASONS), label="reason") if status == "RJCT" else ""
            amount = views[pid].net_fen if data.draw(st.booleans(), label="states amount") else None
            outcomes.append((pid, status, reason, amount))
        path = self.pain002_file(batch_hex, outcomes)
        outcome = import_bank_file(self.disbursement, path, actor="clerk")
        returned = sum(1 for o in outcomes if o[1] == "RJCT")
        assert (outcome.already_imported, outcome.paid, outcome.returned) == (False, len(outcomes) - returned, returned)
        for pid, status, _, _ in outcomes:
            self.results[pid] = "returned" if status == "RJCT" else "paid"
            if self.attempts[pid].adjustment:
                self.stats["adjustments answered by the bank"] += 1
        self.stats["results paid"] += len(outcomes) - returned
        self.stats["results returned"] += returned
        if data.draw(st.integers(0, 3), label="import again") == 0:
            before = self.positions()
            assert import_bank_file(self.disbursement, path, actor="clerk").already_imported
            assert self.positions() == before
            self.stats["re-imports refused as done"] += 1

    def pain002_file(self, batch_hex: str, outcomes: list[tuple[str, str, str, int | None]]) -> Path:
        self.files += 1
        message = f"YKT{batch_hex[:28]}"
        created = datetime(2017, 1, 20, 9, tzinfo=UTC) + timedelta(hours=self.files)
        path = self.folder / f"result-{self.files}.xml"
        path.write_bytes(render_pain002(message, message, outcomes, created_at=created))
        return path

    def open_ids(self, batch_hex: str) -> list[str]:
        return sorted(p for p, a in self.attempts.items() if a.batch == batch_hex and p not in self.results)

    def unresolved(self) -> list[str]:
        """Approved batches with payments the bank has not answered yet."""
        return [b for b in sorted(self.approved_by) if self.open_ids(b)]

    def unexported(self) -> list[str]:
        return sorted(b for b, who in self.exporters.items() if not who)

    @precondition(lambda self: self.attempts)
    @rule(data=st.data())
    def export(self, data: st.DataObject) -> None:
        batch = self.draw_batch(data, prefer=self.unexported())
        self.export_as(batch, data.draw(st.sampled_from(EXPORTERS), label="exporter"))

    @precondition(lambda self: self.attempts)
    @rule(data=st.data())
    def approve(self, data: st.DataObject) -> None:
        waiting = [b for b, who in self.exporters.items() if who and b not in self.approved_by]
        batch = self.draw_batch(data, prefer=waiting)
        self.try_self_approval(batch, data)
        self.approve_as(batch, data.draw(st.sampled_from(APPROVERS), label="approver"))

    @precondition(lambda self: self.unresolved())
    @rule(data=st.data())
    def bank_answers(self, data: st.DataObject) -> None:
        batch_hex = data.draw(st.sampled_from(self.unresolved()), label="batch")
        self.answer(batch_hex, self.open_ids(batch_hex), data)

    @precondition(lambda self: self.unexported())
    @rule(data=st.data())
    def pay_a_batch(self, data: st.DataObject) -> None:
        """The usual path in one step: export, self-approval refused, approval by another, the bank's
        answer. Without it, returns and re-issues are rarely reached within 30 steps."""
        batch = self.disbursement.batch_by_id(data.draw(st.sampled_from(self.unexported()), label="batch"))
        maker = data.draw(st.sampled_from(EXPORTERS), label="exporter")
        self.export_as(batch, maker)
        self.try_self_approval(batch, data)
        checker = data.draw(st.sampled_from([a for a in APPROVERS if a != maker]), label="approver")
        assert self.approve_as(batch, checker)
        self.answer(batch.id.hex, self.open_ids(batch.id.hex), data)

    @precondition(lambda self: self.attempts)
    @rule(data=st.data())
    def bank_answers_wrongly(self, data: st.DataObject) -> None:
        """A result file the ledger must refuse whole: for an unapproved batch, contradicting an earlier
        result, or naming an unknown payment beside a valid one."""
        answered = sorted(self.results)
        unapproved = sorted(p for p, a in self.attempts.items() if a.batch and a.batch not in self.approved_by)
        kinds = [k for k, ok in (("contradicts", answered), ("unapproved", unapproved)) if ok]
        kind = data.draw(st.sampled_from([*kinds, "unknown"]), label="wrong file")
        if kind == "contradicts":
            pid = data.draw(st.sampled_from(answered), label="payment")
            status = "RJCT" if self.results[pid] == "paid" else "ACSC"
            path = self.pain002_file(
                self.attempts[pid].batch, [(pid, status, "AC04" if status == "RJCT" else "", None)]
            )
            self.refused(
                ResultsRefused, lambda: import_bank_file(self.disbursement, path, actor="clerk"), rule="ResultConflicts"
            )
        elif kind == "unapproved":
            pid = data.draw(st.sampled_from(unapproved), label="payment")
            path = self.pain002_file(self.attempts[pid].batch, [(pid, "ACSC", "", None)])
            self.refused(
                ResultsRefused,
                lambda: import_bank_file(self.disbursement, path, actor="clerk"),
                rule="ResultForUnapprovedBatch",
            )
        else:
            batched = sorted({a.batch for a in self.attempts.values() if a.batch})
            if not batched:
                return  # every payment so far was offset whole: no bank file to answer wrongly
            batch_hex = data.draw(st.sampled_from(batched), label="batch")
            stranger = reissue_id("0" * 32).hex  # a well-formed id the ledger never paid
            path = self.pain002_file(batch_hex, [(stranger, "ACSC", "", None)])
            self.refused(
                ResultsRefused, lambda: import_bank_file(self.disbursement, path, actor="clerk"), rule="unknown payment"
            )

    # --- invariants ------------------------------------------------------------------------------

    @invariant()
    def the_ledger_agrees_with_the_model(self) -> None:
        if not hasattr(self, "registry"):
            return
        self.stats["steps"] += 1
        batches = self.disbursement.batches()
        membership = Counter(pid for b in batches for pid in b.payment_ids)
        twice = [pid for pid, n in membership.items() if n > 1]
        assert not twice, f"payments in two batches: {twice}"
        batchless = {p for p, a in self.attempts.items() if not a.batch}
        assert set(membership) | batchless == set(self.attempts), "every payment made is known to the model"
        views = self.disbursement.payment_views(self.attempts)
        by_batch = {b.id.hex: b for b in batches}
        for batch in batches:
            # The bank line is what recoveries left of the payment (its net, issue 14).
            assert batch.total_fen == sum(views[p].net_fen for p in batch.payment_ids), "batch total = its sum"
            assert all(views[p].batch_id == batch.id.hex for p in batch.payment_ids), "a payment names its batch"
            assert set(batch.exported_by) == self.exporters[batch.id.hex]
            assert batch.approved_by == self.approved_by.get(batch.id.hex, "")
        self.check_obligations(views)
        self.check_results(batches)
        self.check_maker_checker(batches)
        self.check_balances(views, by_batch)

    def check_obligations(self, views: dict[str, Any]) -> None:
        """First payments are the periods that fell due; an adjustment (positive here, a recovery in no
        batch) is never a first payment, and each (period, number) is written once."""
        firsts = Counter(
            (v.id_number, v.programme, v.period) for v in views.values() if not v.reissue_of and not v.adjusts
        )
        assert max(firsts.values(), default=1) == 1, f"an obligation paid twice: {firsts.most_common(1)}"
        assert set(firsts) == self.due, (
            f"skipped: {sorted(self.due - set(firsts))}; not due: {sorted(set(firsts) - self.due)}"
        )
        numbered = Counter((v.adjusts, v.adjustment) for v in views.values() if v.adjusts and not v.reissue_of)
        numbered.update((r["adjusts"], r["adjustment"]) for r in self.recoveries.values())
        assert max(numbered.values(), default=1) == 1, f"an adjustment written twice: {numbered.most_common(1)}"
        paid = Counter(self.attempts[p].obligation for p, s in self.results.items() if s == "paid")
        assert max(paid.values(), default=1) == 1, f"paid by the bank twice: {paid.most_common(1)}"
        for pid, view in views.items():
            if view.reissue_of:
                assert self.results.get(view.reissue_of) == "returned", f"{pid} re-issues a payment not returned"
                assert self.attempts[pid].obligation == self.attempts[view.reissue_of].obligation

    def check_results(self, batches: list[Any]) -> None:
        recorded = {pid: status for b in batches for pid, (status, _) in b.results.items()}
        assert recorded == self.results

    def check_maker_checker(self, batches: list[Any]) -> None:
        """From each batch's history: nobody approved a batch they had exported before approving it."""
        for batch in batches:
            if not batch.approved_by:
                continue
            exporters: set[str] = set()
            for event in self.disbursement.repository.event_store.get(batch.id):
                name = type(event).__name__
                if name == "Exported":
                    exporters.add(event.actor)
                elif name == "Approved":
                    assert event.actor not in exporters, f"{event.actor} approved their own export"

    def check_balances(self, views: dict[str, Any], by_batch: dict[str, Any]) -> None:
        """Balances recomputed from the payments and results, against the fold and the read model."""

        def root(pid: str) -> str:
            while views[pid].reissue_of:
                pid = views[pid].reissue_of
            return pid

        attempts: dict[str, list[str]] = {}
        for pid in views:
            attempts.setdefault(root(pid), []).append(pid)
        expected: dict[tuple[str, str, str], dict[str, Any]] = {}
        amounts = ("accrued_fen", "exported_fen", "paid_fen", "returned_fen", "adjusted_fen", "recovery_due_fen")
        zero = {k: 0 for k in ("households", "persons", *amounts, "recovered_fen", "written_off_fen")}

        def row_of(key: tuple[str, str, str]) -> dict[str, Any]:
            return expected.setdefault(key, dict(zip(("region", "programme", "period"), key, strict=True)) | zero)

        region_of = {p: by_batch[v.batch_id].region if v.batch_id else v.balance_region for p, v in views.items()}
        for first, tries in attempts.items():
            view = views[first]
            row = row_of((region_of[first], view.programme, view.period))
            statuses = {self.results.get(p) for p in tries}
            if view.adjusts:
                row["adjusted_fen"] += view.amount_fen  # more due for a payee already counted
            else:
                row["households"] += 1
                row["persons"] += view.persons
            row["accrued_fen"] += view.amount_fen
            # What the bank carries is each attempt's net (the first attempt's: a re-issue pays the same).
            if any(views[p].batch_id and by_batch[views[p].batch_id].exports for p in tries):
                row["exported_fen"] += view.net_fen
            if "paid" in statuses:
                row["paid_fen"] += view.net_fen
            elif "returned" in statuses:
                row["returned_fen"] += view.net_fen
        for found in self.recoveries.values():
            row = row_of((found["balance_region"], found["programme"], found["period"]))
            row["accrued_fen"] -= found["amount_fen"]
            row["adjusted_fen"] -= found["amount_fen"]
            row["recovery_due_fen"] += found["amount_fen"]
        # Offsets (issue 14): each counts as paid for the period of the payment it nets and as recovered for
        # the recovery's period, unless the bank returned that payment (the return undoes it). Nothing is
        # collected or written off in the model's steps.
        recorder = self.disbursement.recorder
        offered: dict[str, int] = {}
        for n in recorder.select_notifications(start=1, limit=10**6, topics=[RECOVERY_OFFSET]):
            data = self.disbursement.payload(n.state)
            rid, payment = n.originator_id.hex, data["payment_id"]
            recovery = self.recoveries[rid]
            paid_into = views[payment]
            assert (paid_into.id_number, paid_into.programme) == (recovery["id_number"], recovery["programme"])
            assert paid_into.period == data["period"]
            offered[payment] = offered.get(payment, 0) + data["amount_fen"]
            if self.results.get(payment) == "returned":
                continue
            row_of((region_of[payment], paid_into.programme, paid_into.period))["paid_fen"] += data["amount_fen"]
            source = row_of((recovery["balance_region"], recovery["programme"], recovery["period"]))
            source["recovered_fen"] += data["amount_fen"]
            source["recovery_due_fen"] -= data["amount_fen"]
            self.stats["offsets"] += 1
        for payment, view in views.items():
            assert offered.get(payment, 0) == view.offset_fen, f"{payment}: offsets recorded ≠ its offset_fen"
        for row in expected.values():
            row["outstanding_fen"] = (
                row["accrued_fen"] - row["paid_fen"] + row["recovered_fen"] + row["written_off_fen"]
            )
        by_key = lambda rows: {(r["region"], r["programme"], r["period"]): dict(r) for r in rows}  # noqa: E731
        folded = by_key(self.disbursement.balances().rows())
        read = by_key(balances_rows(self.db))
        assert folded == expected, "the reference fold disagrees with the payments"
        assert read == expected, "the read model disagrees with the payments"
        for row in (*folded.values(), *read.values()):
            assert row["outstanding_fen"] == (
                row["accrued_fen"] - row["paid_fen"] + row["recovered_fen"] + row["written_off_fen"]
            )


def test_the_ledger_agrees_with_its_model_after_every_step(capsys: pytest.CaptureFixture[str]) -> None:
    LedgerMachine.stats = Counter()
    started = time.perf_counter()
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    seconds = time.perf_counter() - started
    stats = LedgerMachine.stats
    RECORDED["model"] = {
        **{k: v for k, v in stats.items() if k not in ("examples", "steps")},
        "examples": stats["examples"],
        "steps": stats["steps"],
        "max_steps": STEPS,
        "seconds": round(seconds),
    }
    with capsys.disabled():
        print(
            f"\nmodel test: {stats['examples']} examples run, {stats['steps']} checked states "
            f"(max {STEPS} steps each) in {seconds:.0f} s"
        )
        print("  " + ", ".join(f"{k} {v}" for k, v in sorted(stats.items()) if k not in ("examples", "steps")))


def test_a_row_sent_again_is_unchanged_after_the_person_moved_to_an_excluding_programme(tmp_path: Path) -> None:
    registry, disbursement = open_apps(database_from_url(f"sqlite:///{tmp_path / 'ledger.db'}"))
    try:
        registry.load_policy(POLICY.read_text(encoding="utf-8"), POLICY.name, "clerk")
        programmes = registry.policy().programmes.keys()
        id_number = resident_id("150902", "19500615", 1)
        dibao = (
            f"{id_number},张三,150902,urban_dibao,2017-01-01,1,0.00,0,103191000012,6228480045001122337,"
            "集民发〔2017〕1号\n"
        )
        tekun = dibao.replace("urban_dibao,2017-01-01", "tekun_rural_dispersed,2017-06-01")

        def send(name: str, line: str) -> Any:
            (tmp_path / name).write_text(HEADER + line, encoding="utf-8")
            rows = read_roster(tmp_path / name, region=REGION, programmes=programmes)
            return registry.import_roster(rows, name, "clerk")

        send("january.csv", dibao)
        registry.decide(
            kind="terminate", id_number=id_number, programme="urban_dibao", on=date(2017, 6, 1),
            actor="clerk", reason="集民发〔2017〕5号", amount_fen=None,
        )  # fmt: skip
        send("june.csv", tekun)
        again = send("january-again.csv", dibao)  # the January roster, re-sent unchanged
        assert (again.enrolled, again.unchanged) == (0, 1)
    finally:
        registry.close()
        disbursement.close()
