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
- no (id_number, programme, period) obligation has two first payments or is paid by the bank twice;
- no payment is in two batches, each payment names its batch, and each batch's total is its sum;
- no export was approved by someone who had exported it (read from the batch's event history);
- balances from the reference fold (`Disbursement.balances()`) and from the read model
  (`ledger.reports.balances_rows`) both equal the balances recomputed here from the payments and the
  bank results, and `outstanding_fen = accrued_fen − paid_fen` in every row;
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

import pytest
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

from domain.disbursement import reissue_id
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
PHASE_OUT_MONTHS = 6  # 004_… 二.1: paid for 6 more months, then it stops by itself
EXPORTERS = ("amy", "bo", "cy")
APPROVERS = ("amy", "bo", "cy", "dee")  # dee never exports, so some approval is always possible
NAMES = ("张三", "李建华", "王桂英", "欧阳小明", "乌力吉")
BANK_CODES = ("103191000012", "402191000034")
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
    """From the first month starting on or after the decision, six more months; then it has ended."""
    first = ordinal_of(on) + (0 if on.day == 1 else 1)
    return first_day(first + PHASE_OUT_MONTHS)


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

    def month_fen(self, ordinal: int) -> int:
        """What one month pays: the latest adjust in force on its first day, else the standard.

        Household programmes pay max(0, members × standard − income) plus 5 % of the standard per special
        member, rounded half-up to the fen (DESIGN.md); an annual person standard A pays
        ⌊A·k/12⌋ − ⌊A·(k−1)/12⌋ in month k, so the months sum to the year.
        """
        override = None
        for decision in self.ordered():
            if decision.on > first_day(ordinal):
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
    """One payment the ledger made: a first payment or a re-issue of a returned one."""

    key: tuple[str, str, str]  # (id_number, programme, period): the obligation
    account: str
    reissue_of: str
    batch: str


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
        return first_day(ordinal).replace(day=data.draw(st.sampled_from((1, 1, 15)), label="day"))

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
        person, enrolment = data.draw(st.sampled_from(self.enrolments()), label="enrolment")
        kind = data.draw(st.sampled_from(sorted(ALLOWED_FROM)), label="kind")
        low = max(FIRST_MONTH, ordinal_of(enrolment.start) - 1)
        suspended = [d.on for d in enrolment.decisions if d.kind == "suspend"]
        if kind == "resume" and suspended:
            low = ordinal_of(max(suspended))  # a resume mostly follows a suspension
        on = self.draw_day(data, low, max(low, self.next_month + 3))
        amount = data.draw(st.integers(min_value=1, max_value=900), label="amount") if kind == "adjust" else None

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

    def payable(self, run: int) -> set[tuple[str, str, str]]:
        """Every period starting by month `run` whose first day finds the enrolment active."""
        keys = set()
        for person, enrolment in self.enrolments():
            cadence = CADENCES[enrolment.programme]
            for ordinal in range(ordinal_of(enrolment.start), run + 1):
                name = period_starting(cadence, ordinal)
                if name and enrolment.status_on(first_day(ordinal)) == "active":
                    keys.add((person.id_number, enrolment.programme, name))
        return keys

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
        self.due |= self.payable(run)
        new = self.sync_attempts()
        assert {a.reissue_of for a in new.values() if a.reissue_of} == reissues
        assert summary.reissued == len(reissues)
        assert summary.payments == len(new)
        views = self.disbursement.payment_views(new)
        for pid, attempt in new.items():
            person = self.persons[attempt.key[0]]
            view = views[pid]
            if attempt.reissue_of:
                assert attempt.account == person.account, "a re-issue goes to the new account"
                assert view.amount_fen == views_of(self, attempt.reissue_of).amount_fen, "a re-issue pays the same"
                continue
            enrolment = person.enrolments[attempt.key[1]]
            expected_fen = sum(enrolment.month_fen(o) for o in months_of(attempt.key[2]))
            assert view.amount_fen == expected_fen, (
                f"{attempt.key}: {view.amount_fen} fen, the model says {expected_fen}"
            )
            household = enrolment.programme in HOUSEHOLD_STANDARD_FEN
            assert view.persons == (enrolment.members if household else 1)
        self.stats["payments"] += len(new)
        self.stats["re-issues"] += len(reissues)

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
        only what became due since (arrears from a late decision, re-issues) is accrued."""
        assert self.last_run is not None
        earlier = data.draw(st.integers(0, 3), label="earlier") == 0
        month = data.draw(st.integers(FIRST_MONTH, self.last_run), label="month") if earlier else self.last_run
        self.month_end(month)
        self.stats["reruns"] += 1

    def sync_attempts(self) -> dict[str, Attempt]:
        """Payments the ledger made since the last look, added to the model's list of attempts."""
        new: dict[str, Attempt] = {}
        batches = self.disbursement.batches()
        unseen = [pid for b in batches for pid in b.payment_ids if pid not in self.attempts]
        views = self.disbursement.payment_views(unseen)
        for pid in unseen:
            view = views[pid]
            key = (view.id_number, view.programme, view.period)
            new[pid] = Attempt(key, view.account, view.reissue_of, view.batch_id)
            self.exporters.setdefault(view.batch_id, set())
        self.attempts.update(new)
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
            amount = views[pid].amount_fen if data.draw(st.booleans(), label="states amount") else None
            outcomes.append((pid, status, reason, amount))
        path = self.pain002_file(batch_hex, outcomes)
        outcome = import_bank_file(self.disbursement, path, actor="clerk")
        returned = sum(1 for o in outcomes if o[1] == "RJCT")
        assert (outcome.already_imported, outcome.paid, outcome.returned) == (False, len(outcomes) - returned, returned)
        for pid, status, _, _ in outcomes:
            self.results[pid] = "returned" if status == "RJCT" else "paid"
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
        unapproved = sorted(p for p, a in self.attempts.items() if a.batch not in self.approved_by)
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
            batch_hex = data.draw(st.sampled_from(sorted({a.batch for a in self.attempts.values()})), label="batch")
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
        assert set(membership) == set(self.attempts), "every payment made is known to the model"
        views = self.disbursement.payment_views(membership)
        by_batch = {b.id.hex: b for b in batches}
        for batch in batches:
            assert batch.total_fen == sum(views[p].amount_fen for p in batch.payment_ids), "batch total = its sum"
            assert all(views[p].batch_id == batch.id.hex for p in batch.payment_ids), "a payment names its batch"
            assert set(batch.exported_by) == self.exporters[batch.id.hex]
            assert batch.approved_by == self.approved_by.get(batch.id.hex, "")
        self.check_obligations(views)
        self.check_results(batches)
        self.check_maker_checker(batches)
        self.check_balances(views, by_batch)

    def check_obligations(self, views: dict[str, Any]) -> None:
        firsts = Counter((v.id_number, v.programme, v.period) for v in views.values() if not v.reissue_of)
        assert max(firsts.values(), default=1) == 1, f"an obligation paid twice: {firsts.most_common(1)}"
        assert set(firsts) == self.due, (
            f"skipped: {sorted(self.due - set(firsts))}; not due: {sorted(set(firsts) - self.due)}"
        )
        paid = Counter(self.attempts[p].key for p, s in self.results.items() if s == "paid")
        assert max(paid.values(), default=1) == 1, f"paid by the bank twice: {paid.most_common(1)}"
        for pid, view in views.items():
            if view.reissue_of:
                assert self.results.get(view.reissue_of) == "returned", f"{pid} re-issues a payment not returned"
                assert (view.id_number, view.programme, view.period) == self.attempts[view.reissue_of].key

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
        for first, tries in attempts.items():
            view = views[first]
            key = (by_batch[view.batch_id].region, view.programme, view.period)
            row = expected.setdefault(
                key,
                dict(zip(("region", "programme", "period"), key, strict=True))
                | {k: 0 for k in ("households", "persons", "accrued_fen", "exported_fen", "paid_fen", "returned_fen")},
            )
            statuses = {self.results.get(p) for p in tries}
            row["households"] += 1
            row["persons"] += view.persons
            row["accrued_fen"] += view.amount_fen
            if any(by_batch[views[p].batch_id].exports for p in tries):
                row["exported_fen"] += view.amount_fen
            if "paid" in statuses:
                row["paid_fen"] += view.amount_fen
            elif "returned" in statuses:
                row["returned_fen"] += view.amount_fen
        for row in expected.values():
            row["outstanding_fen"] = row["accrued_fen"] - row["paid_fen"]
        by_key = lambda rows: {(r["region"], r["programme"], r["period"]): dict(r) for r in rows}  # noqa: E731
        folded = by_key(self.disbursement.balances().rows())
        read = by_key(balances_rows(self.db))
        assert folded == expected, "the reference fold disagrees with the payments"
        assert read == expected, "the read model disagrees with the payments"
        for row in (*folded.values(), *read.values()):
            assert row["outstanding_fen"] == row["accrued_fen"] - row["paid_fen"]


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
