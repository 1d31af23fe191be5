"""Eligibility: a person's enrolments in programmes and the decisions that change them.

Consistency boundary: one `Person` aggregate holds every enrolment of one resident ID, so the
exclusions between programmes (000_a883bdda05437b65.txt 四: 特困 excludes dibao and the disability 两项;
orphans exclude 特困) are checked against one version of the truth, and two clerks changing the same
person at once cannot both succeed: the second append conflicts on the aggregate version.

A corrected name (`rename`, event `Renamed`) is an event like any other: the registered name stays in the
log, and payments accrued after the rename (re-issues too) carry the new one.

Each decision has an effective date (`effective_on`), an actor and a reason (the decision document
number). Effective date and recorded time are different axes: the enrolment's timeline is ordered by
effective date, so a decision recorded late still applies from its date.

Months (issue 14, docs/entitlement.md "Months"): entitlement is monthly. `Enrolment.active_spans`
states which calendar months an enrolment pays, under the programme's `starts` and `stops` settings: a
start (enrolment or resumption) effective in month m pays from m, or from m+1 (次月起); a stop (suspend,
terminate) effective on D makes D the first day not active and pays the month of the last active day
and nothing after, or not even D's month. A period pays the sum of its active months
(domain.disbursement.Accrual). Ledgers of earlier releases paid a whole period when the enrolment was
active on its first day (`payable_in`); their periods are never re-priced.

Phase-out (004_f2a082fc87a827a6.txt 二.1, 渐退期): decided with effective date D, the enrolment pays the six
months m … m+5 of D's month, then ends by itself on `ends_on` (the first day of m+6), whatever the
programme's `stops` setting. Phase-outs recorded by earlier releases keep the `ends_on` they stored
(six months from the first month starting on or after D).

Event payloads are JSON primitives (ISO dates as text, fen as int), so the log reads the same to any
tool and the month-end can fold it in bulk with `apply_person_event` without building aggregates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from fractions import Fraction
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import RuleBroken
from domain.identity import age_on
from domain.money import MONTH_AMOUNT_FEN_MAX, PAYMENT_FEN_MAX, format_yuan, round_half_up_fen
from domain.periods import Month
from domain.policy import (
    HOUSEHOLD_MEMBERS_MAX,
    MONTHLY_INCOME_FEN_MAX,
    HouseholdFacts,
    NoStandardInForce,
    Policy,
)

NAMESPACE = UUID("6f1c2b1e-1f7d-4d55-9a57-0c3b8e0f7a11")
PHASE_OUT_MONTHS = 6  # 004_… 二.1: 给予6个月的渐退期

ACTIVE, SUSPENDED, TERMINATED, ENDED, PENDING = "active", "suspended", "terminated", "ended", "pending"
DECISION_KINDS = ("suspend", "resume", "terminate", "adjust", "phase-out", "change")


def person_id(id_number: str) -> UUID:
    return uuid5(NAMESPACE, f"person|{id_number}")


class UnknownEnrolment(RuleBroken):
    """A decision names a person or programme with no enrolment."""


class AlreadyEnrolled(RuleBroken):
    """The person already holds an enrolment in that programme with different terms."""


class ProgrammesExclude(RuleBroken):
    """Holding both programmes at once is forbidden (000_a883bdda05437b65.txt 四)."""

    def __init__(self, message: str, rule_name: str) -> None:
        super().__init__(message)
        self.rule_name = rule_name

    @property
    def rule(self) -> str:
        return self.rule_name


class DecisionNotAllowed(RuleBroken):
    """The decision does not apply to the enrolment's status on its effective date."""


class DecisionBeforeEnrolment(RuleBroken):
    """A decision cannot take effect before the enrolment starts."""


class AmountAboveMaximum(RuleBroken):
    """An approved amount above what the ledger may pay (domain.money.MONTH_AMOUNT_FEN_MAX a month)."""


class NameInvalid(RuleBroken):
    """A payee's name must be non-empty printable text; a rename needs a reason."""


@dataclass(frozen=True, slots=True)
class Decision:
    kind: str  # one of DECISION_KINDS
    effective_on: date
    actor: str
    reason: str
    amount_fen: int | None = None
    ends_on: date | None = None  # phase-out only
    # change only (`decide change`, a 复核 result): the household facts in force from the first day of the
    # month of `effective_on` (Enrolment.household_on).
    household: HouseholdFacts | None = None
    # change only: this change starts a phase-out on the same date (004_… 二.1), so the phase-out months
    # are paid with the household before it (Enrolment.household_on skips it).
    phase_out: bool = False


@dataclass(frozen=True, slots=True)
class Enrolment:
    programme: str
    region: str
    effective_from: date
    household: HouseholdFacts
    decision_ref: str
    decisions: tuple[Decision, ...] = ()  # in effective-date order, stable for equal dates
    # Resident ID numbers of the household's members (roster column `member_ids`), for exclusions across
    # members (docs/entitlement.md); empty when not given, and for every enrolment of an earlier release.
    member_ids: tuple[str, ...] = ()

    def status_on(self, day: date) -> str:
        """Fold the decisions in force on `day` (effective date order)."""
        if day < self.effective_from:
            return PENDING
        status = ACTIVE
        for decision in self.decisions:
            if decision.effective_on > day:
                break
            status = _next_status(status, decision, day)
        return status

    def override_fen_on(self, day: date) -> int | None:
        """The approved monthly amount from the latest `adjust` in force on `day`, if any."""
        amount = None
        for decision in self.decisions:
            if decision.effective_on > day:
                break
            if decision.kind == "adjust":
                amount = decision.amount_fen
        return amount

    def household_on(self, day: date) -> HouseholdFacts:
        """The household facts in force on `day`: the enrolment's own, until the latest `change` whose
        month has begun by `day`.

        A change effective on D counts from the first day of D's month (docs/entitlement.md, "Household
        changes"): the month-end prices each month with the household on its first day, and issue 14 says
        a change applies from D's month, so a change on 15 February already prices February. A change that
        started a phase-out (`phase_out`) is skipped: the phase-out pays the amount in force before it.
        Changes of one month apply in effective-date order, the later one winning.
        """
        facts = self.household
        if not self.decisions:
            return facts
        for decision in self.decisions:
            if decision.kind != "change":
                continue
            if month_start(decision.effective_on) > day:
                break  # decisions are in effective-date order: no later change has begun either
            if decision.household is not None and not decision.phase_out:
                facts = decision.household
        return facts

    def households(self) -> tuple[HouseholdFacts, ...]:
        """Every household fact this enrolment has held (the bound of the largest payment)."""
        return (self.household, *(d.household for d in self.decisions if d.kind == "change" and d.household))

    def latest_household(self) -> HouseholdFacts:
        """The household facts last decided: the latest `change`'s (a phase-out one too), else its own.
        A roster row stating them re-sends the enrolment as it stands (`same_household`)."""
        changes = [d.household for d in self.decisions if d.kind == "change" and d.household is not None]
        return changes[-1] if changes else self.household

    def same_household(self, household: HouseholdFacts) -> bool:
        """`household` is the facts the enrolment was recorded with, or the ones last decided for it."""
        return household == self.household or household == self.latest_household()

    def last_review(self) -> date:
        """The latest 复核 of this enrolment: its start, or the latest `change` decision's effective date."""
        changes = [d.effective_on for d in self.decisions if d.kind == "change"]
        return max((self.effective_from, *changes))

    def end_date(self) -> date | None:
        """The day the enrolment stops for good (termination or end of phase-out), if decided."""
        ends = [
            d.effective_on if d.kind == "terminate" else d.ends_on
            for d in self.decisions
            if d.kind in ("terminate", "phase-out")
        ]
        return min((e for e in ends if e is not None), default=None)

    def payable_in(self, month: Month) -> bool:
        """The payability rule of earlier releases: active on the first day of the period that starts in
        `month`. The month-end now pays months (`active_spans`); this stays for what reads old ledgers."""
        return self.status_on(month.first_day) == ACTIVE

    def active_spans(self, starts: str = "same_month", stops: str = "next_month") -> tuple[tuple[int, int], ...]:
        """The months this enrolment pays, as [first, end) month ordinals (domain.periods.Month.ordinal),
        in order and disjoint; `end` is OPEN_END while nothing stops it.

        `starts`/`stops` are the programme's settings (domain.policy.Programme). Decisions fold in
        effective-date order as in `status_on`: a suspension or termination closes the open span at the
        stop's first unpaid month; a resumption opens a new one at the start's first paid month; a
        phase-out caps every span at its `ends_on` month (six months from D's month, docs/entitlement.md).
        """
        spans: list[tuple[int, int]] = []
        opened: int | None = _start_month(self.effective_from, starts)
        opened_on = self.effective_from  # the first active day of the open span
        cap = OPEN_END
        for decision in self.decisions:
            kind = decision.kind
            if kind in ("suspend", "terminate") and opened is not None:
                # A stop on the span's first day leaves no active day: nothing of it is paid.
                if decision.effective_on > opened_on:
                    spans.append((opened, _stop_month(decision.effective_on, stops)))
                opened = None
            elif kind == "resume" and opened is None:  # after a phase-out too: capped at its end below
                opened = _start_month(decision.effective_on, starts)
                opened_on = decision.effective_on
            elif kind == "phase-out" and cap == OPEN_END:  # ends the enrolment at ends_on, as status_on
                ends_on = decision.ends_on or phase_out_ends_on(decision.effective_on)
                cap = Month.of(ends_on).ordinal
            if kind == "terminate":
                break
        if opened is not None:
            spans.append((opened, OPEN_END))
        merged: list[tuple[int, int]] = []
        for first, end in sorted(spans):
            end = min(end, cap)
            if first >= end:
                continue
            if merged and first <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((first, end))
        return tuple(merged)

    def phase_out_from(self) -> Month | None:
        """The first month of a phase-out in force (D's month), if one was decided."""
        for decision in self.decisions:
            if decision.kind == "phase-out":
                return Month.of(decision.effective_on)
        return None

    def with_decision(self, decision: Decision) -> Enrolment:
        ordered = sorted((*self.decisions, decision), key=lambda d: d.effective_on)
        return replace(self, decisions=tuple(ordered))


def _next_status(status: str, decision: Decision, day: date) -> str:
    if status in (TERMINATED, ENDED):
        return status
    if decision.kind == "suspend":
        return SUSPENDED
    if decision.kind == "resume":
        return ACTIVE
    if decision.kind == "terminate":
        return TERMINATED
    if decision.kind == "phase-out" and decision.ends_on is not None and day >= decision.ends_on:
        return ENDED
    return status


OPEN_END = 10**9  # a month ordinal after any real month: a span nothing has stopped yet


def _start_month(effective_on: date, starts: str) -> int:
    """The first month a start effective on `effective_on` pays: its own month, or the next (次月起)."""
    month = Month.of(effective_on).ordinal
    return month + 1 if starts == "next_month" else month


def _stop_month(first_day_not_active: date, stops: str) -> int:
    """The first month a stop no longer pays. "next_month": the month of the last active day is paid
    (died 2021-02-10: February paid, March not; suspended from 2017-04-01: March paid, April not);
    "same_month": the stop's own month is not paid either."""
    if stops == "same_month":
        return Month.of(first_day_not_active).ordinal
    return Month.of(first_day_not_active - timedelta(days=1)).ordinal + 1


def month_start(day: date) -> date:
    return day.replace(day=1)


def phase_out_ends_on(effective_on: date) -> date:
    """The six months m … m+5 of the decision's month m are paid, then it ends (004_… 二.1: 给予6个月的
    渐退期). Earlier releases stored six months from the first month starting on or after the decision."""
    return Month.of(effective_on).plus(PHASE_OUT_MONTHS).first_day


# Which statuses each decision may act on, on its effective date.
_ALLOWED_FROM = {
    "suspend": (ACTIVE,),
    "resume": (SUSPENDED,),
    "terminate": (ACTIVE, SUSPENDED),
    "adjust": (ACTIVE, SUSPENDED),
    "phase-out": (ACTIVE,),
    "change": (ACTIVE, SUSPENDED),
}


def check_exclusions(
    enrolments: Mapping[str, Enrolment],
    programme: str,
    on: date,
    excluded_pairs: Iterable[frozenset[str]],
    id_number: str,
) -> None:
    """Refuse holding `programme` from `on` beside an enrolment it excludes (symmetric, 000_… 四).

    An enrolment that has ended (terminated or phased out) on or before `on` is no longer held.
    """
    pairs = set(excluded_pairs)
    for other_key, other in enrolments.items():
        if other_key == programme or frozenset((programme, other_key)) not in pairs:
            continue
        ends = other.end_date()
        if ends is None or ends > on:
            raise ProgrammesExclude(
                f"{id_number}: {programme} and {other_key} exclude each other "
                f"(000_a883bdda05437b65.txt 四); {other_key} is held from {other.effective_from.isoformat()}"
                + (f" until {ends.isoformat()}" if ends else ""),
                rule_name=f"{programme}_excludes_{other_key}",
            )


# --- eligibility guards (docs/entitlement.md, "Eligibility guards") --------------------------------
# Each is a policy key per programme and is checked only when a new enrolment starts (roster import) or
# an enrolment starts again (`decide resume`): what an earlier release recorded is never re-judged.


class AgeBelowMinimum(RuleBroken):
    """The person is younger than the programme's `age_min` on the effective date (e.g. 000_… 一.3:
    未满16周岁儿童暂不纳入特困人员)."""


class AgeAboveMaximum(RuleBroken):
    """The person is older than the programme's `age_max` on the effective date (children's programmes)."""


class RequiredProgrammeMissing(RuleBroken):
    """The programme is paid on top of another (`requires`), which the person does not hold on the date."""


class IncomeAtOrAboveStandard(RuleBroken):
    """A household's per-capita income is at or above the standard (`income_test`): nothing to top up."""


def check_guards(
    policy: Policy,
    programme: str,
    *,
    id_number: str,
    birth_date: date,
    on: date,
    held: Mapping[str, Enrolment],
    household: HouseholdFacts | None,
) -> None:
    """Refuse starting `programme` on `on` for this person when a guard of the policy forbids it.

    `held` are the person's other enrolments (the ledger's and those of the same import); `household`
    is None where the household facts are not being decided (a resumption), so no income test runs.
    """
    rules = policy.programme(programme)
    _check_age(rules.key, rules.age_min, rules.age_max, id_number, birth_date, on)
    if rules.requires and not any(key in held and held[key].status_on(on) == ACTIVE for key in rules.requires):
        raise RequiredProgrammeMissing(
            f"{id_number}: {programme} requires one of {', '.join(rules.requires)} held on {on.isoformat()} "
            "(policy key requires)"
        )
    if household is not None and rules.income_test:
        _check_income(policy, programme, id_number, on, household)


def _check_age(
    programme: str, age_min: int | None, age_max: int | None, id_number: str, birth_date: date, on: date
) -> None:
    if age_min is None and age_max is None:
        return
    age = age_on(birth_date, on) if on >= birth_date else -1  # not yet born: below any minimum
    if age_min is not None and age < age_min:
        raise AgeBelowMinimum(
            f"{id_number}: aged {max(age, 0)} on {on.isoformat()}, {programme} starts at {age_min} (policy key age_min)"
        )
    if age_max is not None and age > age_max:
        raise AgeAboveMaximum(
            f"{id_number}: aged {age} on {on.isoformat()}, {programme} ends at {age_max} (policy key age_max)"
        )


def _check_income(policy: Policy, programme: str, id_number: str, on: date, household: HouseholdFacts) -> None:
    try:
        standard = policy.monthly_standard_fen(programme, on)
    except NoStandardInForce:
        return  # nothing accrues before a standard is loaded; the guard applies once there is one
    # Per-capita income ≥ standard ⇔ income ≥ members × standard (exact, in fen; 001_…, 004_…: 补差).
    if household.monthly_income_fen >= household.members * standard:
        per_capita = round_half_up_fen(Fraction(household.monthly_income_fen, household.members))
        raise IncomeAtOrAboveStandard(
            f"{id_number}: per-capita income {format_yuan(per_capita)} 元 a month is at or above the {programme} "
            f"standard {format_yuan(round_half_up_fen(standard))} 元 on {on.isoformat()} (policy key income_test)"
        )


# --- household changes (docs/entitlement.md, "Household changes") -----------------------------------


class HouseholdInvalid(RuleBroken):
    """Household facts outside what a roster row may state: members 1-HOUSEHOLD_MEMBERS_MAX, income
    0-MONTHLY_INCOME_FEN_MAX a month, special members 0-members (docs/policy.md, Bounds)."""


@dataclass(frozen=True, slots=True)
class ChangeOutcome:
    recorded: bool  # False: the same change was already recorded
    household: HouseholdFacts  # the facts in force from the change's month
    phase_out_ends_on: date | None  # the phase-out this change started, if any


def _check_household(id_number: str, facts: HouseholdFacts) -> None:
    problems = []
    if not 1 <= facts.members <= HOUSEHOLD_MEMBERS_MAX:
        problems.append(f"members {facts.members} is not 1-{HOUSEHOLD_MEMBERS_MAX}")
    if not 0 <= facts.monthly_income_fen <= MONTHLY_INCOME_FEN_MAX:
        problems.append(
            f"income {format_yuan(facts.monthly_income_fen)} is not 0-{format_yuan(MONTHLY_INCOME_FEN_MAX)} a month"
        )
    if not 0 <= facts.special_members <= facts.members:
        problems.append(f"special members {facts.special_members} is not 0-{facts.members} (the members)")
    if problems:
        raise HouseholdInvalid(f"{id_number}: {'; '.join(problems)}")


def _in_phase_out(enrolment: Enrolment, on: date) -> bool:
    """A phase-out already decided and not ended by `on` (a second one would pay the months again)."""
    return any(d.kind == "phase-out" and (d.ends_on is None or d.ends_on > on) for d in enrolment.decisions)


def _income_at_or_above(policy: Policy, programme: str, on: date, household: HouseholdFacts) -> bool:
    try:
        standard = policy.monthly_standard_fen(programme, on)
    except NoStandardInForce:
        return False
    return household.monthly_income_fen >= household.members * standard


# --- exclusions across household members (docs/entitlement.md) -------------------------------------

MEMBER_LISTS_ID = uuid5(NAMESPACE, "member-lists")


class MemberLists(Aggregate):
    """Recorded once, when the first roster row listing household members (`member_ids`) is imported.

    From then on every roster import checks exclusions across household members against the whole ledger
    (a new payee may be listed in a household already recorded), which costs a fold of the registry; a
    ledger where no household lists members never pays for it. One fixed id: recording it twice is
    refused by the store, and a second importer finds it there."""

    @staticmethod
    def create_id(**_: Any) -> UUID:  # type: ignore[override]
        return MEMBER_LISTS_ID

    @event("Started")
    def __init__(self, actor: str) -> None:
        self.actor = actor


# --- the aggregate -------------------------------------------------------------------------------


class Person(Aggregate):
    """One resident ID with its 一卡通 account and its enrolments."""

    @staticmethod
    def create_id(id_number: str, **_: Any) -> UUID:  # type: ignore[override]
        return person_id(id_number)

    @event("Registered")
    def __init__(
        self,
        id_number: str,
        name: str,
        birth_date: str,
        bank_code: str,
        account: str,
        actor: str,
        enrolment: dict[str, Any] | None = None,
    ) -> None:
        """A new person, usually with their first enrolment in the same event.

        Registering and the first enrolment are one decision in practice (a roster row), and one event
        instead of two halves what a month-end must read for a city of new payees. Nothing is held
        yet, so no exclusion can be broken by the first enrolment; `register` builds the fields.
        """
        self.id_number = id_number
        self.name = name
        self.birth_date = date.fromisoformat(birth_date)
        self.bank_code = bank_code
        self.account = account
        self.enrolments: dict[str, Enrolment] = {}
        self.past_enrolments: list[Enrolment] = []
        if enrolment is not None:
            self.enrolments[enrolment["programme"]] = enrolment_from_event(enrolment)

    @classmethod
    def register(
        cls,
        *,
        id_number: str,
        name: str,
        birth_date: date,
        bank_code: str,
        account: str,
        actor: str,
        programme: str,
        region: str,
        effective_from: date,
        household: HouseholdFacts,
        decision_ref: str,
        person_id: UUID | None = None,
        member_ids: tuple[str, ...] = (),
    ) -> Person:
        """`person_id`: the id under the ledger's id scheme (domain.ids); uuid5 of the ID number when not
        given, as in every ledger without a charter. (`_create` is eventsourcing's constructor that takes
        an id; calling the class cannot pass one.)"""
        return cls._create(
            event_class=cls.Registered,  # type: ignore[attr-defined]
            id=person_id,
            id_number=id_number,
            name=name,
            birth_date=birth_date.isoformat(),
            bank_code=bank_code,
            account=account,
            actor=actor,
            enrolment=enrolment_fields(
                programme, region, effective_from, household, decision_ref, actor, member_ids=member_ids
            ),
        )

    # Commands: decide, then record (STYLE.md 3).

    def enrol(
        self,
        *,
        programme: str,
        region: str,
        effective_from: date,
        household: HouseholdFacts,
        decision_ref: str,
        actor: str,
        excluded_pairs: Iterable[frozenset[str]],
        member_ids: tuple[str, ...] = (),
    ) -> bool:
        """Enrol in `programme`; returns False when an identical enrolment already exists.

        A person whose enrolment has ended (terminated, or phased out) may be admitted again from a
        date on or after the end: the new spell replaces it, the old one is kept in `past_enrolments`.
        """
        existing = self.enrolments.get(programme)
        if existing is not None:
            check_reenrolment(self.id_number, existing, region, effective_from, household, decision_ref)
            if existing.effective_from == effective_from:
                return False
        check_exclusions(self.enrolments, programme, effective_from, excluded_pairs, self.id_number)
        self._enrolled(
            programme=programme,
            region=region,
            effective_from=effective_from.isoformat(),
            members=household.members,
            monthly_income_fen=household.monthly_income_fen,
            special_members=household.special_members,
            decision_ref=decision_ref,
            actor=actor,
            member_ids=list(member_ids) or None,
        )
        return True

    def decide(
        self,
        *,
        kind: str,
        programme: str,
        on: date,
        actor: str,
        reason: str,
        amount_fen: int | None,
        excluded_pairs: Iterable[frozenset[str]],
        policy: Policy | None = None,
    ) -> None:
        """`policy`, when given, has its eligibility guards checked for a resumption (check_guards)."""
        if kind == "change":
            raise DecisionNotAllowed("a change of household facts is recorded by change_household (decide change)")
        enrolment = self.enrolments.get(programme)
        if enrolment is None:
            raise UnknownEnrolment(f"{self.id_number} has no enrolment in {programme}")
        if on < enrolment.effective_from:
            raise DecisionBeforeEnrolment(
                f"{kind} on {on.isoformat()} is before the enrolment starts ({enrolment.effective_from.isoformat()})"
            )
        status = enrolment.status_on(on)
        if status not in _ALLOWED_FROM[kind]:
            raise DecisionNotAllowed(f"cannot {kind} {programme} for {self.id_number}: it is {status} on {on}")
        if kind == "adjust" and (amount_fen is None or amount_fen < 0):
            raise DecisionNotAllowed("adjust needs --amount, the approved monthly amount in yuan")
        if kind == "adjust" and amount_fen is not None and amount_fen > MONTH_AMOUNT_FEN_MAX:
            raise AmountAboveMaximum(
                f"adjust {programme} for {self.id_number}: {format_yuan(amount_fen)} 元 a month is more than "
                f"{format_yuan(MONTH_AMOUNT_FEN_MAX)} 元, the most a month may pay so that a year of it stays "
                f"within the ledger's maximum per payment ({format_yuan(PAYMENT_FEN_MAX)} 元)"
            )
        if kind == "resume":
            others = {k: v for k, v in self.enrolments.items() if k != programme}
            check_exclusions(others, programme, on, excluded_pairs, self.id_number)
            if policy is not None:
                check_guards(
                    policy,
                    programme,
                    id_number=self.id_number,
                    birth_date=self.birth_date,
                    on=on,
                    held=others,
                    household=None,
                )
        ends_on = phase_out_ends_on(on).isoformat() if kind == "phase-out" else None
        self._decided(
            programme=programme,
            kind=kind,
            effective_on=on.isoformat(),
            actor=actor,
            reason=reason,
            amount_fen=amount_fen if kind == "adjust" else None,
            ends_on=ends_on,
        )

    def change_household(
        self,
        *,
        programme: str,
        on: date,
        actor: str,
        reason: str,
        members: int | None,
        monthly_income_fen: int | None,
        special_members: int | None,
        policy: Policy,
    ) -> ChangeOutcome:
        """A change of household facts (`decide change`, the result of a 复核, 004_… 二.7), in force from
        D's month (Enrolment.household_on); facts not given keep the value in force on D.

        When the programme has `income_test` and the new per-capita income is at or above the standard
        in force on D, the 6-month phase-out starts on D by itself (004_… 二.1 "对实现就业且家庭人均收入超过
        当地低保标准的,给予六个月的渐退期"): a `phase-out` decision is recorded with the change, and the change
        is marked `phase_out` so the phase-out months are paid with the household before it. The same
        change recorded again (same date, same facts) records nothing (`recorded` False).
        """
        enrolment = self.enrolments.get(programme)
        if enrolment is None:
            raise UnknownEnrolment(f"{self.id_number} has no enrolment in {programme}")
        rules = policy.programme(programme)
        if rules.unit != "household":
            raise DecisionNotAllowed(
                f"cannot change household facts of {programme} for {self.id_number}: it is paid per person "
                "(unit person), its amount depends on no household"
            )
        if members is None and monthly_income_fen is None and special_members is None:
            raise DecisionNotAllowed("change needs at least one of --members, --income, --special")
        if on < enrolment.effective_from:
            raise DecisionBeforeEnrolment(
                f"change on {on.isoformat()} is before the enrolment starts ({enrolment.effective_from.isoformat()})"
            )
        status = enrolment.status_on(on)
        if status not in _ALLOWED_FROM["change"]:
            raise DecisionNotAllowed(f"cannot change {programme} for {self.id_number}: it is {status} on {on}")
        before = enrolment.household_on(on)
        facts = HouseholdFacts(
            members=before.members if members is None else members,
            monthly_income_fen=before.monthly_income_fen if monthly_income_fen is None else monthly_income_fen,
            special_members=before.special_members if special_members is None else special_members,
        )
        _check_household(self.id_number, facts)
        for decision in enrolment.decisions:
            if decision.kind == "change" and decision.effective_on == on and decision.household == facts:
                return ChangeOutcome(recorded=False, household=facts, phase_out_ends_on=None)
        phase_out = (
            rules.income_test
            and status == ACTIVE
            and not _in_phase_out(enrolment, on)
            and _income_at_or_above(policy, programme, on, facts)
        )
        ends_on = phase_out_ends_on(on) if phase_out else None
        self._decided(
            programme=programme,
            kind="change",
            effective_on=on.isoformat(),
            actor=actor,
            reason=reason,
            amount_fen=None,
            ends_on=None,
            members=facts.members,
            monthly_income_fen=facts.monthly_income_fen,
            special_members=facts.special_members,
            phase_out=phase_out,
        )
        if ends_on is not None:
            self._decided(
                programme=programme,
                kind="phase-out",
                effective_on=on.isoformat(),
                actor=actor,
                reason=reason,
                amount_fen=None,
                ends_on=ends_on.isoformat(),
            )
        return ChangeOutcome(recorded=True, household=facts, phase_out_ends_on=ends_on)

    def rename(self, *, name: str, effective_on: date, reason: str, actor: str) -> bool:
        """A corrected name (户名): a new event, never an edit; payments accrued from now on, re-issues
        included, carry it. False when the name is already this one. The caller checks the name against
        the export formats (ledger.roster.name_problems); here only what any name must be."""
        if not name or name != name.strip() or not name.isprintable():
            raise NameInvalid(f"{self.id_number}: the new name must be non-empty printable text without outer spaces")
        if not reason.strip():
            raise NameInvalid(f"{self.id_number}: a rename needs a reason (the document that corrects the name)")
        if name == self.name:
            return False
        self._renamed(
            name=name, previous_name=self.name, effective_on=effective_on.isoformat(), reason=reason, actor=actor
        )
        return True

    def set_account(self, *, bank_code: str, account: str, reason: str, actor: str) -> bool:
        """A corrected 一卡通 account; later payments go there. False when nothing changes."""
        if (bank_code, account) == (self.bank_code, self.account):
            return False
        self._account_changed(bank_code=bank_code, account=account, reason=reason, actor=actor)
        return True

    # Events: apply only (STYLE.md 3). The bodies delegate to the pure folds below.

    @event("Enrolled")
    def _enrolled(
        self,
        programme: str,
        region: str,
        effective_from: str,
        members: int,
        monthly_income_fen: int,
        special_members: int,
        decision_ref: str,
        actor: str,
        member_ids: list[str] | None = None,  # absent from events of earlier releases
    ) -> None:
        previous = self.enrolments.get(programme)
        if previous is not None:
            self.past_enrolments.append(previous)
        self.enrolments[programme] = enrolment_from_event(locals())

    @event("DecisionRecorded")
    def _decided(
        self,
        programme: str,
        kind: str,
        effective_on: str,
        actor: str,
        reason: str,
        amount_fen: int | None,
        ends_on: str | None,
        # `change` only (defaults: events recorded before `decide change` existed load unchanged).
        members: int | None = None,
        monthly_income_fen: int | None = None,
        special_members: int | None = None,
        phase_out: bool = False,
    ) -> None:
        self.enrolments[programme] = self.enrolments[programme].with_decision(decision_from_event(locals()))

    @event("AccountChanged")
    def _account_changed(self, bank_code: str, account: str, reason: str, actor: str) -> None:
        self.bank_code = bank_code
        self.account = account

    @event("Renamed")
    def _renamed(self, name: str, previous_name: str, effective_on: str, reason: str, actor: str) -> None:
        self.name = name


def check_reenrolment(
    id_number: str,
    existing: Enrolment,
    region: str,
    effective_from: date,
    household: HouseholdFacts,
    decision_ref: str,
) -> None:
    """An identical row is fine (a re-import); a new spell needs the old one ended by its start."""
    if (existing.region, existing.effective_from, existing.decision_ref) == (
        region,
        effective_from,
        decision_ref,
    ) and existing.same_household(household):
        return
    ends = existing.end_date()
    if ends is not None and ends <= effective_from:
        return
    raise AlreadyEnrolled(
        f"{id_number} is already enrolled in {existing.programme} from "
        f"{existing.effective_from.isoformat()} with other terms; use `decide adjust`"
        + (f", or admit again from {ends.isoformat()} or later" if ends else "")
    )


def enrolment_fields(
    programme: str,
    region: str,
    effective_from: date,
    household: HouseholdFacts,
    decision_ref: str,
    actor: str,
    *,
    member_ids: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The payload of an enrolment, as `Enrolled` and `Registered.enrolment` carry it (`member_ids` only
    when given, so an enrolment without them is stored exactly as before)."""
    fields = {
        "programme": programme,
        "region": region,
        "effective_from": effective_from.isoformat(),
        "members": household.members,
        "monthly_income_fen": household.monthly_income_fen,
        "special_members": household.special_members,
        "decision_ref": decision_ref,
        "actor": actor,
    }
    if member_ids:
        fields["member_ids"] = list(member_ids)
    return fields


def enrolment_from_event(data: Mapping[str, Any]) -> Enrolment:
    return Enrolment(
        programme=data["programme"],
        region=data["region"],
        effective_from=date.fromisoformat(data["effective_from"]),
        household=HouseholdFacts(
            members=data["members"],
            monthly_income_fen=data["monthly_income_fen"],
            special_members=data["special_members"],
        ),
        decision_ref=data["decision_ref"],
        member_ids=tuple(data.get("member_ids") or ()),
    )


def decision_from_event(data: Mapping[str, Any]) -> Decision:
    members = data.get("members")
    return Decision(
        kind=data["kind"],
        effective_on=date.fromisoformat(data["effective_on"]),
        actor=data["actor"],
        reason=data["reason"],
        amount_fen=data.get("amount_fen"),
        ends_on=date.fromisoformat(data["ends_on"]) if data.get("ends_on") else None,
        household=(
            HouseholdFacts(members, data["monthly_income_fen"], data["special_members"])
            if members is not None
            else None
        ),
        phase_out=bool(data.get("phase_out", False)),
    )


# --- bulk fold for the month-end ------------------------------------------------------------------


@dataclass(slots=True)
class PersonRecord:
    """What the month-end needs of a person, folded straight from stored event payloads."""

    id_number: str
    name: str
    birth_date: date
    bank_code: str
    account: str
    enrolments: dict[str, Enrolment]
    last_position: int = 0  # notification id of the last event folded
    past: list[Enrolment] = field(default_factory=list)  # ended spells replaced by a new admission

    def all_enrolments(self) -> list[Enrolment]:
        return [*self.past, *self.enrolments.values()]


def apply_person_event(
    records: dict[UUID, PersonRecord], originator_id: UUID, name: str, data: Mapping[str, Any], position: int
) -> None:
    """Fold one stored Person event (`name` is the event class name) into `records`."""
    if name == "Registered":
        first = data.get("enrolment")
        records[originator_id] = PersonRecord(
            id_number=data["id_number"],
            name=data["name"],
            birth_date=date.fromisoformat(data["birth_date"]),
            bank_code=data["bank_code"],
            account=data["account"],
            enrolments={first["programme"]: enrolment_from_event(first)} if first else {},
            last_position=position,
        )
        return
    record = records[originator_id]
    record.last_position = position
    if name == "Enrolled":
        previous = record.enrolments.get(data["programme"])
        if previous is not None:
            record.past.append(previous)
        record.enrolments[data["programme"]] = enrolment_from_event(data)
    elif name == "DecisionRecorded":
        enrolment = record.enrolments[data["programme"]]
        record.enrolments[data["programme"]] = enrolment.with_decision(decision_from_event(data))
    elif name == "AccountChanged":
        record.bank_code = data["bank_code"]
        record.account = data["account"]
    elif name == "Renamed":
        record.name = data["name"]
