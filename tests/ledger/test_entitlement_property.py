"""Hypothesis property (issue 14): what the ledger holds for each enrolment and period, payment plus
adjustments minus recoveries, is the sum of its monthly entitlements, to the fen, whatever the order in
which decisions and policies were recorded and the months were run; and running a month again adds nothing.

The entitlement is computed here, independently of domain/, from the rules of docs/entitlement.md:
- a month is paid when the enrolment is active on some day of it: a start or a resumption pays its own
  month; a stop (suspension, termination) effective on D makes D the first day not active, so the month
  of D − 1 is paid and nothing after (a stop on the 1st does not pay that month);
- a phase-out decided on D pays the months m … m+5 of D's month, then ends; those months are priced at the
  approved amount in force before m (the one month m − 1 pays), at each month's standard;
- an `adjust` decision's amount applies to the months whose first day is on or after its date;
- a household month pays max(0, members × S − income), S the month's standard (an annual one ÷ 12),
  rounded half-up to the fen; 三民 pays the month's urban dibao standard + 220 元 (003/000 一.7);
- every period starting by the run month that holds an active month is due.
Policies are the shipped Ulanqab file with urban and rural dibao standards replaced by a drawn list, loaded
between runs (a retroactive rise or cut, 003: "今年…提高到"), so the runs re-price periods already paid.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.utils import get_topic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.disbursement import Payment, Recovery
from domain.errors import RuleBroken
from domain.periods import Month
from ledger.bootstrap import database_from_url, open_apps
from ledger.roster import read_roster
from ledger.storage import Database
from tests.conftest import PG_ADMIN, POLICY, pg_url
from tests.helpers.ledgers import HEADER, resident_id

ACCRUED = get_topic(Payment.Accrued)  # type: ignore[attr-defined]
RECOVERY_DUE = get_topic(Recovery.Due)  # type: ignore[attr-defined]
REGION = "150900"
YEAR = 2017
CADENCE = {"urban_dibao": 1, "rural_dibao": 3, "sanmin": 6}  # months per period
HOUSEHOLD = {"urban_dibao", "rural_dibao"}
SANMIN_ADD_FEN = 22000
PHASE_OUT_MONTHS = 6
KINDS = ("suspend", "resume", "terminate", "phase-out", "adjust")
EXAMPLES = {"sqlite": 60, "postgres": 12}


# --- the independent computation ------------------------------------------------------------------


@dataclass(frozen=True)
class Standards:
    """The urban (per month) and rural (per year) dibao standards of one policy version: (from month, fen)."""

    urban: tuple[tuple[int, int], ...]
    rural: tuple[tuple[int, int], ...]

    @staticmethod
    def _at(entries: tuple[tuple[int, int], ...], month: int) -> int:
        return [fen for start, fen in entries if start <= month][-1]

    def month_standard(self, programme: str, month: int) -> Fraction:
        if programme == "rural_dibao":
            return Fraction(self._at(self.rural, month), 12)
        return Fraction(self._at(self.urban, month))

    def toml(self, text: str) -> str:
        """The shipped policy with these standards (and no `expect`: derived figures follow the bases)."""

        def entries(found: tuple[tuple[int, int], ...], per: str) -> str:
            return ", ".join(
                f'{{ from = "{YEAR}-{m:02d}-01", amount = "{fen // 100}.{fen % 100:02d}", per = "{per}" }}'
                for m, fen in found
            )

        text = re.sub(r', expect = "[0-9.]+"', "", text)
        urban = 'standards = [{ from = "2017-01-01", amount = "555.00", per = "month" }]'
        rural = 'standards = [{ from = "2017-01-01", amount = "3906.00", per = "year" }]'
        assert urban in text and rural in text
        text = text.replace(urban, f"standards = [{entries(self.urban, 'month')}]")
        return text.replace(rural, f"standards = [{entries(self.rural, 'year')}]")


SHIPPED = Standards(urban=((1, 55500),), rural=((1, 390600),))


@dataclass
class Decided:
    kind: str
    on: date
    amount_fen: int | None = None

    @property
    def ends_on(self) -> date | None:
        if self.kind != "phase-out":
            return None
        month = self.on.month - 1 + PHASE_OUT_MONTHS
        return date(self.on.year + month // 12, month % 12 + 1, 1)


@dataclass
class Enrolled:
    id_number: str
    programme: str
    start: date
    members: int
    income_fen: int
    decisions: list[Decided] = field(default_factory=list)  # in recording order

    def ordered(self) -> list[Decided]:
        return sorted(self.decisions, key=lambda d: d.on)  # stable: equal days keep their recording order

    def status_on(self, day: date) -> str:
        if day < self.start:
            return "pending"
        status = "active"
        for d in self.ordered():
            if d.on > day or status in ("terminated", "ended"):
                break
            if d.kind == "suspend":
                status = "suspended"
            elif d.kind == "resume":
                status = "active"
            elif d.kind == "terminate":
                status = "terminated"
            elif d.kind == "phase-out" and d.ends_on is not None and day >= d.ends_on:
                status = "ended"
        return status

    def active_in(self, month: int) -> bool:
        """Active on some day of `month` (of YEAR): on its first day or on a day the status changes in it."""
        low, high = _first(month), _first(month + 1)
        days = {low, self.start, *(d.on for d in self.decisions), *(d.ends_on for d in self.decisions if d.ends_on)}
        return any(low <= day < high and self.status_on(day) == "active" for day in days)

    def month_fen(self, month: int, standards: Standards) -> int:
        priced_on = _first(month)
        phase_outs = [d.on for d in self.ordered() if d.kind == "phase-out"]
        if phase_outs and month >= phase_outs[0].month:
            priced_on = max(_first(phase_outs[0].month - 1), self.start)
        approved = None
        for d in self.ordered():
            if d.on > priced_on:
                break
            if d.kind == "adjust":
                approved = d.amount_fen
        if approved is not None:
            return approved
        standard = standards.month_standard(self.programme, month)
        if self.programme == "sanmin":
            return int(standard) + SANMIN_ADD_FEN
        exact = max(Fraction(0), self.members * standard - self.income_fen)
        return int(exact + Fraction(1, 2)) if exact.denominator != 1 else int(exact)

    def owed(self, run: int, standards: Standards) -> dict[str, int]:
        """Every period starting by month `run` holding a month from the start's: the sum of its active months."""
        size = CADENCE[self.programme]
        found = {}
        for first in range(1, 13, size):
            if first > run or first + size - 1 < self.start.month:
                continue
            months = range(first, first + size)
            found[_period(self.programme, first)] = sum(
                self.month_fen(m, standards) for m in months if self.active_in(m)
            )
        return found


def _first(month: int) -> date:
    return date(YEAR + (month - 1) // 12, (month - 1) % 12 + 1, 1)


def _period(programme: str, first: int) -> str:
    size = CADENCE[programme]
    if size == 1:
        return f"{YEAR}-{first:02d}"
    return f"{YEAR}-{'Q' if size == 3 else 'H'}{(first - 1) // size + 1}"


# --- what the ledger holds --------------------------------------------------------------------------


def held(disbursement: Any) -> dict[tuple[str, str, str], int]:
    """Σ per (id number, programme, period) of payments and adjustments, minus recoveries."""
    sums: dict[tuple[str, str, str], int] = {}
    for note in disbursement.recorder.select_notifications(start=1, limit=10**6, topics=[ACCRUED, RECOVERY_DUE]):
        data = disbursement.payload(note.state)
        assert not data.get("reissue_of"), "no bank answers here: nothing is re-issued"
        key = (data["id_number"], data["programme"], data["period"])
        sign = -1 if note.topic == RECOVERY_DUE else 1
        sums[key] = sums.get(key, 0) + sign * data["amount_fen"]
    return sums


@contextmanager
def fresh_store(kind: str) -> Iterator[Database]:
    if kind == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="ykt-entitlement-"))
        try:
            yield database_from_url(f"sqlite:///{folder / 'ledger.db'}")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        yield database_from_url(pg_url(schema))
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# --- the drawn histories ------------------------------------------------------------------------------


def standards_lists() -> st.SearchStrategy[tuple[tuple[int, int], ...]]:
    """From January, maybe changed from a later month: rises and cuts of up to 60 元 a month (or a year's
    worth for rural dibao)."""

    @st.composite
    def draw(draw: st.DrawFn, base: int, step: int) -> tuple[tuple[int, int], ...]:
        first = base + draw(st.integers(-3, 3)) * step
        entries = [(1, first)]
        if draw(st.booleans()):
            entries.append((draw(st.integers(2, 9)), first + draw(st.integers(-3, 3).filter(bool)) * step))
        return tuple(entries)

    return draw


@st.composite
def policies(draw: st.DrawFn) -> Standards:
    lists = standards_lists()
    return Standards(urban=draw(lists(55500, 2000)), rural=draw(lists(390600, 12000)))


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Enrolled], list[tuple[Any, ...]]]:
    people = []
    for n in range(draw(st.integers(1, 3))):
        programme = draw(st.sampled_from(sorted(CADENCE)))
        start = date(YEAR, draw(st.integers(1, 6)), draw(st.integers(1, 28)))
        members = draw(st.integers(1, 4)) if programme in HOUSEHOLD else 1
        income = draw(st.integers(0, 300)) * 100 if programme in HOUSEHOLD else 0
        people.append(Enrolled(resident_id("150902", "19500615", n + 1), programme, start, members, income))
    steps: list[tuple[Any, ...]] = []
    run = 0
    for _ in range(draw(st.integers(3, 18))):
        what = draw(st.sampled_from(("decide", "decide", "decide", "run", "run", "policy", "again")))
        if what == "decide":
            kind = draw(st.sampled_from(KINDS))
            on = date(YEAR, draw(st.integers(1, 12)), draw(st.sampled_from((1, 1, 2, 10, 15, 28))))
            amount = draw(st.integers(1, 2000)) * 100 if kind == "adjust" else None
            steps.append(("decide", draw(st.integers(0, len(people) - 1)), kind, on, amount))
        elif what == "run" and run < 12:
            run = min(12, run + draw(st.integers(1, 3)))
            steps.append(("run", run))
        elif what == "again" and run:
            steps.append(("run", draw(st.integers(1, run))))
        elif what == "policy":
            steps.append(("policy", draw(policies())))
    steps.append(("run", max(run, 1)))
    return people, steps


# --- the property ---------------------------------------------------------------------------------------


class Figures:
    examples = 0
    adjustments = 0
    recoveries = 0
    policy_loads = 0
    decisions = 0


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_every_period_holds_the_sum_of_its_monthly_entitlements(kind: str, request: pytest.FixtureRequest) -> None:
    if kind == "postgres":
        request.getfixturevalue("pg_reachable")
    figures = Figures()

    @settings(
        max_examples=EXAMPLES[kind],
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(history=histories())
    def check(history: tuple[list[Enrolled], list[tuple[Any, ...]]]) -> None:
        with fresh_store(kind) as db:
            replay(db, *history, figures)

    check()
    print(
        f"\nentitlement property, {kind}: {figures.examples} examples, {figures.decisions} decisions recorded, "
        f"{figures.policy_loads} policy loads, {figures.adjustments} adjustments, {figures.recoveries} recoveries"
    )
    assert figures.adjustments and figures.recoveries, "the property must meet adjustments of both signs"


def replay(db: Database, people: list[Enrolled], steps: list[tuple[Any, ...]], figures: Figures) -> None:
    figures.examples += 1
    registry, disbursement = open_apps(db)
    text = POLICY.read_text(encoding="utf-8")
    try:
        standards = SHIPPED
        registry.load_policy(standards.toml(text), "policy-0.toml", "clerk")
        roster = Path(tempfile.mkdtemp(prefix="ykt-roster-")) / "roster.csv"
        lines = [
            f"{e.id_number},张三,150902,{e.programme},{e.start.isoformat()},{e.members},{e.income_fen // 100}.00,0,"
            f"103191000012,62284800{n:011d},集民发〔2017〕1号\n"
            for n, e in enumerate(people)
        ]
        roster.write_text(HEADER + "".join(lines), encoding="utf-8")
        programmes = registry.policy().programmes.keys()
        registry.import_roster(read_roster(roster, region=REGION, programmes=programmes), roster.name, "clerk")
        shutil.rmtree(roster.parent, ignore_errors=True)
        for step in steps:
            if step[0] == "decide":
                _, who, kind, on, amount = step
                enrolled = people[who]
                try:
                    registry.decide(
                        kind=kind, id_number=enrolled.id_number, programme=enrolled.programme, on=on,
                        actor="clerk", reason="集民发〔2017〕99号", amount_fen=amount,
                    )  # fmt: skip
                except RuleBroken:
                    continue  # not allowed on that day given what is recorded: nothing recorded
                enrolled.decisions.append(Decided(kind, on, amount))
                figures.decisions += 1
            elif step[0] == "policy":
                standards = step[1]
                registry.load_policy(standards.toml(text), f"policy-{figures.policy_loads + 1}.toml", "clerk")
                figures.policy_loads += 1
            else:
                run_and_check(registry, disbursement, people, standards, step[1], figures)
        # Running any month again adds nothing.
        for again in sorted({s[1] for s in steps if s[0] == "run"}):
            before = disbursement.recorder.max_notification_id()
            summary = disbursement.run_month_end(registry.read_registry(), Month(YEAR, again), scope=REGION, actor="c")
            assert (summary.payments, summary.adjustments, summary.recoveries) == (0, 0, 0), (again, summary)
            assert disbursement.recorder.max_notification_id() == before + 1  # its RunCompleted only
    finally:
        registry.close()
        disbursement.close()


def run_and_check(
    registry: Any, disbursement: Any, people: list[Enrolled], standards: Standards, run: int, figures: Figures
) -> None:
    summary = disbursement.run_month_end(registry.read_registry(), Month(YEAR, run), scope=REGION, actor="clerk")
    sums = held(disbursement)
    figures.adjustments += summary.adjustments
    figures.recoveries += summary.recoveries
    expected: dict[tuple[str, str, str], int] = {}
    for enrolled in people:
        for period, fen in enrolled.owed(run, standards).items():
            expected[enrolled.id_number, enrolled.programme, period] = fen
    for key, fen in sorted(expected.items()):
        if fen > 0 or key in sums:
            assert sums.get(key) == fen, f"after run {YEAR}-{run:02d}: {key} holds {sums.get(key)} fen, due {fen}"
    for key in sums.keys() - expected.keys():
        assert _starts(key[2]) > run, f"after run {YEAR}-{run:02d}: {key} accrued, not due"  # by a later run


def _starts(period: str) -> int:
    """The month (of YEAR) a period named 2017-03, 2017-Q2 or 2017-H2 starts in."""
    part = period[5:]
    if part[0] in "QH":
        return (int(part[1]) - 1) * (3 if part[0] == "Q" else 6) + 1
    return int(part)


def test_an_earlier_month_run_again_after_a_policy_and_its_reversal_recovers_what_a_later_run_added(
    db: Database, tmp_path: Path
) -> None:
    """Found by the property: urban dibao 555 → 580 from January (loaded after January's run), paid by
    March's run, then 555 loaded again and February run again. The watermark of February is January's run,
    made under 555 like the policy now: comparing those two alone examined nothing, and January and
    February kept 580 until the next later run. A run completed after the watermark makes the run examine
    every period (ledger.disbursement `_run_month_end`)."""
    registry, disbursement = open_apps(db)
    text = POLICY.read_text(encoding="utf-8")
    raised = Standards(urban=((1, 58000),), rural=SHIPPED.rural)
    try:
        registry.load_policy(SHIPPED.toml(text), "a.toml", "clerk")
        someone = Enrolled(resident_id("150902", "19500615", 1), "urban_dibao", date(2017, 1, 1), 1, 0)
        roster = tmp_path / "roster.csv"
        roster.write_text(
            HEADER + f"{someone.id_number},张三,150902,urban_dibao,2017-01-01,1,0.00,0,103191000012,"
            "6228480045001122337,集民发〔2017〕1号\n",
            encoding="utf-8",
        )
        programmes = registry.policy().programmes.keys()
        registry.import_roster(read_roster(roster, region=REGION, programmes=programmes), roster.name, "clerk")
        figures = Figures()
        run_and_check(registry, disbursement, [someone], SHIPPED, 1, figures)
        registry.load_policy(raised.toml(text), "b.toml", "clerk")
        run_and_check(registry, disbursement, [someone], raised, 3, figures)
        assert figures.adjustments == 1  # January +25.00; February and March paid at 580.00
        registry.load_policy(SHIPPED.toml(text), "a-again.toml", "clerk")
        run_and_check(registry, disbursement, [someone], SHIPPED, 2, figures)
        assert figures.recoveries == 2  # January and February: −25.00 each
        assert held(disbursement)[someone.id_number, "urban_dibao", "2017-03"] == 58000  # until a run of March
        run_and_check(registry, disbursement, [someone], SHIPPED, 3, figures)
        assert figures.recoveries == 3
    finally:
        registry.close()
        disbursement.close()
