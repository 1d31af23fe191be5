"""One person as the 决定 pages read them, and a decision previewed before it is recorded (issue 15).

`person_view`: who the person is, each enrolment with its state on a day, the payments made to them with
the bank's result, and the decisions on them in the order recorded — read from `ledger.history` (the
auditors' history, complete from the log) and the person's aggregate (the enrolments as the domain folds
them), so the page and `audit history` cannot disagree.

`preview_decision` / `preview_account`: what recording would change, computed by the domain command itself.
The person is loaded, the decision applied exactly as `decide` / `decide change` apply it
(`Registry.decided`, `Registry.changed`: the same rules, so a refusal comes at the preview already), and
the result is read instead of saved. It says:
- the decision(s) as they will be recorded (a change that starts the phase-out records two);
- the enrolment's state on the effective date before and after, and the months it pays before and after
  (`Enrolment.active_spans` under the programme's `starts`/`stops`);
- the effective month's amount before and after (`Accrual.period_amount_fen`, the month-end's own pricing);
- for periods a month-end has already accrued to the person, the sum of what each is due after minus
  before: positive, the next month-end accrues a 补发差额 of it; negative, a 追回 (issue 14's adjustments).
  It assumes the ledger holds what was due before this decision, which holds when the month-end has run
  since the last decision on the enrolment; the page says it is what this decision changes.
Nothing here records anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from domain.accounts import normalised_reason
from domain.disbursement import Accrual
from domain.eligibility import OPEN_END, Enrolment, Person, PersonRecord, UnknownEnrolment
from domain.errors import RuleBroken
from domain.identity import check_account, is_bank_code
from domain.periods import Month, Period
from domain.policy import NoStandardInForce, Policy, Programme
from ledger.history import payments_of, person_history
from ledger.roster import field_problems

DECISION_EVENTS = ("registered", "enrolled", "decision", "account_changed", "renamed")
PAYMENT_EVENTS = ("payment_accrued", "reissued")


class BankCodeNotDigits(RuleBroken):
    """A bank code (CNAPS 行号) is ASCII digits, as the roster and `account set` accept it."""


class FieldRefused(RuleBroken):
    """A bank code or account some configured export format cannot carry (exporters.limits)."""


@dataclass(frozen=True, slots=True)
class EnrolmentRow:
    programme: str
    region: str
    state: str  # on the day asked: active, suspended, terminated, ended, pending
    effective_from: str
    ends_on: str  # the day it stops for good (terminate, end of phase-out), "" when not decided
    members: int
    monthly_income_fen: int
    special_members: int
    decision_ref: str
    month_fen: int | None  # what the day's month pays (None: no standard in force)
    current: bool  # False: an ended spell replaced by a new admission
    upcoming: tuple[tuple[str, str], ...] = ()  # (kind, effective date) of decisions taking effect after the day


@dataclass(frozen=True, slots=True)
class PersonView:
    id_number: str
    name: str
    birth_date: str
    bank_code: str
    account: str
    enrolments: list[EnrolmentRow]
    payments: list[dict[str, Any]]  # history entries of payments, each with `result` and `reason_zh`
    decisions: list[dict[str, Any]]  # history entries of the person's own events, oldest first
    in_registry: bool  # False: payments to this ID number but no person recorded (an auditor's finding)


def person_view(registry: Any, disbursement: Any, id_number: str, day: date) -> PersonView:
    """The person with `id_number` as the 决定 page shows them, states on `day`. `UnknownEnrolment` when
    the ledger holds neither the person nor a payment to them."""
    id_number = id_number.strip().upper()
    entries = person_history(registry, disbursement, id_number)
    try:
        person: Person | None = registry.person(id_number)
    except UnknownEnrolment:
        person = None
    results: dict[str, dict[str, Any]] = {}
    for e in entries:
        if e["event"] == "bank_result":
            results[e["payment_id"]] = e
    payments = []
    for e in entries:
        if e["event"] in PAYMENT_EVENTS:
            found = results.get(e["payment_id"])
            payments.append(
                {
                    **e,
                    "result": found["status"] if found else "",
                    "reason_zh": found["reason_zh"] if found else "",
                    "settled_on": found["settled_on"] if found else "",
                }
            )
    payments.sort(key=lambda p: (p["period"], p["programme"], p["recorded_at"]))
    decisions = [e for e in entries if e["event"] in DECISION_EVENTS]
    if person is None:
        first = next((p for p in payments), None)
        return PersonView(
            id_number=id_number,
            name=first["name"] if first else "",
            birth_date="",
            bank_code=first["bank_code"] if first else "",
            account=first["account"] if first else "",
            enrolments=[],
            payments=payments,
            decisions=decisions,
            in_registry=False,
        )
    policy = registry.policy()
    record = _record(person)
    rows = [_enrolment_row(policy, record, e, day, current=True) for e in person.enrolments.values()]
    rows.extend(_enrolment_row(policy, record, e, day, current=False) for e in person.past_enrolments)
    return PersonView(
        id_number=person.id_number,
        name=person.name,
        birth_date=person.birth_date.isoformat(),
        bank_code=person.bank_code,
        account=person.account,
        enrolments=rows,
        payments=payments,
        decisions=decisions,
        in_registry=True,
    )


def _record(person: Person) -> PersonRecord:
    return PersonRecord(
        id_number=person.id_number,
        name=person.name,
        birth_date=person.birth_date,
        bank_code=person.bank_code,
        account=person.account,
        enrolments=dict(person.enrolments),
    )


def _enrolment_row(policy: Policy, record: PersonRecord, e: Enrolment, day: date, *, current: bool) -> EnrolmentRow:
    facts = e.household_on(day)
    ends = e.end_date()
    return EnrolmentRow(
        programme=e.programme,
        region=e.region,
        state=e.status_on(day),
        effective_from=e.effective_from.isoformat(),
        ends_on=ends.isoformat() if ends else "",
        members=facts.members,
        monthly_income_fen=facts.monthly_income_fen,
        special_members=facts.special_members,
        decision_ref=e.decision_ref,
        month_fen=_month_fen(policy, record, e, Month.of(day))
        if current and e.programme in policy.programmes
        else None,
        current=current,
        upcoming=tuple((d.kind, d.effective_on.isoformat()) for d in e.decisions if d.effective_on > day),
    )


def _month_fen(policy: Policy, record: PersonRecord, enrolment: Enrolment, month: Month) -> int | None:
    """What the enrolment is due for `month`, priced as the month-end prices it; None without a standard."""
    programme = policy.programmes[enrolment.programme]
    try:
        return Accrual(policy, month).period_amount_fen(programme, Period(month, 1), record, enrolment)
    except NoStandardInForce:
        return None


# --- previews ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Span:
    first: str  # YYYY-MM
    last: str  # YYYY-MM, "" while nothing stops it


@dataclass(frozen=True, slots=True)
class DecisionPreview:
    kind: str
    id_number: str
    name: str
    programme: str
    effective_on: str
    reason: str
    recorded: list[dict[str, Any]]  # the decision event(s) as they will be recorded; [] : nothing new
    state_before: str  # the enrolment's state on the effective date
    state_after: str
    spans_before: list[Span]
    spans_after: list[Span]
    month_before_fen: int | None  # the effective month's amount
    month_after_fen: int | None
    accrued_periods: list[str]  # periods of this programme a month-end has accrued to the person
    changed_periods: list[dict[str, Any]] = field(default_factory=list)  # period, before_fen, after_fen
    accrued_delta_fen: int | None = 0  # Σ (after − before) over them: > 0 补发, < 0 追回; None: not priced


@dataclass(frozen=True, slots=True)
class AccountPreview:
    id_number: str
    name: str
    bank_before: str
    account_before: str
    bank_after: str
    account_after: str
    reason: str
    changed: bool
    warnings: tuple[str, ...]


def preview_decision(
    registry: Any,
    disbursement: Any,
    *,
    kind: str,
    id_number: str,
    programme: str,
    on: date,
    actor: str,
    reason: str,
    amount_fen: int | None = None,
    members: int | None = None,
    monthly_income_fen: int | None = None,
    special_members: int | None = None,
) -> DecisionPreview:
    """What `decide KIND` (or `decide change` for kind "change") would record and change; records nothing."""
    reason = normalised_reason(reason)
    before_person = registry.person(id_number)
    policy = registry.policy()
    rules = policy.programme(programme)
    before = before_person.enrolments.get(programme)
    if kind == "change":
        after_person, outcome = registry.changed(
            id_number=id_number,
            programme=programme,
            on=on,
            actor=actor,
            reason=reason,
            members=members,
            monthly_income_fen=monthly_income_fen,
            special_members=special_members,
        )
        pending = after_person.collect_events() if outcome.recorded else []
    else:
        after_person = registry.decided(
            kind=kind,
            id_number=id_number,
            programme=programme,
            on=on,
            actor=actor,
            reason=reason,
            amount_fen=amount_fen,
        )
        pending = after_person.collect_events()
    assert before is not None  # the domain command refuses an enrolment that does not exist
    after = after_person.enrolments[programme]
    record = _record(before_person)
    accrued = sorted(
        {
            p["period"]
            for p in payments_of(disbursement, before_person.id_number).values()
            if p["programme"] == programme and not p.get("reissue_of") and not p.get("adjusts")
        }
    )
    changed, delta = _accrued_change(policy, rules, record, before, after, accrued)
    month = Month.of(on)
    return DecisionPreview(
        kind=kind,
        id_number=before_person.id_number,
        name=before_person.name,
        programme=programme,
        effective_on=on.isoformat(),
        reason=reason,
        recorded=[_recorded(e) for e in pending],
        state_before=before.status_on(on),
        state_after=after.status_on(on),
        spans_before=_spans(before, rules),
        spans_after=_spans(after, rules),
        month_before_fen=_month_fen(policy, record, before, month),
        month_after_fen=_month_fen(policy, record, after, month),
        accrued_periods=accrued,
        changed_periods=changed,
        accrued_delta_fen=delta,
    )


def _recorded(e: Any) -> dict[str, Any]:
    names = ("kind", "effective_on", "reason", "actor", "amount_fen", "ends_on", "members", "monthly_income_fen",
             "special_members", "phase_out")  # fmt: skip
    return {name: getattr(e, name, None) for name in names}


def _spans(enrolment: Enrolment, rules: Programme) -> list[Span]:
    return [
        Span(str(Month.from_ordinal(first)), "" if end == OPEN_END else str(Month.from_ordinal(end - 1)))
        for first, end in enrolment.active_spans(rules.starts, rules.stops)
    ]


def _accrued_change(
    policy: Policy,
    rules: Programme,
    record: PersonRecord,
    before: Enrolment,
    after: Enrolment,
    periods: list[str],
) -> tuple[list[dict[str, Any]], int | None]:
    changed = []
    for name in periods:
        period = Period.parse(name)
        accrual = Accrual(policy, period.start)
        try:
            was = accrual.period_amount_fen(rules, period, record, before)
            now = accrual.period_amount_fen(rules, period, record, after)
        except NoStandardInForce:
            return [], None
        if was != now:
            changed.append({"period": name, "before_fen": was, "after_fen": now})
    return changed, sum(c["after_fen"] - c["before_fen"] for c in changed)


def checked_account(bank_code: str, account: str) -> tuple[str, str, tuple[str, ...]]:
    """The bank code and account as `account set` records them (blanks trimmed) and the warnings (a failed
    Luhn check); `BadAccount`, `BankCodeNotDigits` or `FieldRefused` when they cannot be recorded."""
    bank_code = bank_code.strip()
    number, warnings = check_account(account)
    if not is_bank_code(bank_code):
        raise BankCodeNotDigits(f"bank code {bank_code!r} must be ASCII digits (CNAPS 行号)")
    problems = [*field_problems("bank_code", bank_code), *field_problems("account", number)]
    if problems:
        raise FieldRefused("; ".join(problems))
    return bank_code, number, warnings


def preview_account(registry: Any, *, id_number: str, bank_code: str, account: str, reason: str) -> AccountPreview:
    """What `account set` would record: the account before and after; records nothing."""
    reason = normalised_reason(reason)
    bank_code, number, warnings = checked_account(bank_code, account)
    person = registry.person(id_number)
    return AccountPreview(
        id_number=person.id_number,
        name=person.name,
        bank_before=person.bank_code,
        account_before=person.account,
        bank_after=bank_code,
        account_after=number,
        reason=reason,
        changed=(bank_code, number) != (person.bank_code, person.account),
        warnings=warnings,
    )
