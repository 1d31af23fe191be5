"""Audit findings the seeds name, found in the whole history (seed 000_a883bdda05437b65.txt 五:
超范围发放, 擅自升降发放标准, 政策衔接不到位重复发放).

The ledger refuses most of these when they are attempted; this module finds them anyway, in what the
log holds: decisions recorded late (a termination effective before payments already made), data
imported before a rule existed, or events written around the commands. Every finding is derived from
the append-only log alone and judged with today's registry and policy ("as known now").

Kinds (each finding: `kind`, `title_zh`, `id_number`, `id_numbers`, `programmes`, `periods`, `detail`,
`payment_ids`, plus `account` or `regions` where they apply):

- `paid_while_not_payable` (超范围发放): a payment for a period whose first day no enrolment spell of
  that programme was active on: terminated, suspended, phase-out (渐退期) ended, not started, or no
  enrolment at all. Same payability rule as the month-end (domain.eligibility).
- `paid_by_excluded_programmes` (重复发放): one person paid by two programmes that exclude each other
  (policy `excludes`, symmetric; 000_… 四) for periods sharing at least one month.
- `amount_differs_from_standard` (擅自升降发放标准): a payment whose amount is not what the standard in
  force for its period gives for that enrolment, after any `adjust` decision in force (the month-end's
  own computation, domain.disbursement.Accrual). An amount matching an `adjust` is not a finding; an
  amount with no standard in force at all is.
- `account_shared` (一卡通多人共用): one 一卡通 account (bank code + account number) paid for two or more
  different ID numbers in the same month. Household programmes pay the head only, so two different
  payees on one account are never one household's normal payment.
- `enrolled_in_two_regions` (跨区域重复享受): one ID number holding enrolments in two different region
  codes at the same time (any programmes), including ended spells that overlapped.

Payments are grouped by obligation (ID number × programme × period): a re-issue (补发) is another
attempt at the same obligation and its id is listed in the same finding, not reported twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from eventsourcing.utils import get_topic

from domain.disbursement import Accrual, Payment
from domain.eligibility import ACTIVE, PENDING, Enrolment, PersonRecord
from domain.money import format_yuan
from domain.periods import Month, Period
from domain.policy import NoStandardInForce, Policy
from ledger.storage import notification_pages

SCAN_PAGE = 20_000  # payment events read per query
FINDINGS_DETAIL_PERIODS_MAX = 12  # periods named in one finding's detail text (all are in `periods`)

PAID_WHILE_NOT_PAYABLE = "paid_while_not_payable"
PAID_BY_EXCLUDED_PROGRAMMES = "paid_by_excluded_programmes"
AMOUNT_DIFFERS_FROM_STANDARD = "amount_differs_from_standard"
ACCOUNT_SHARED = "account_shared"
ENROLLED_IN_TWO_REGIONS = "enrolled_in_two_regions"
KINDS = (
    PAID_WHILE_NOT_PAYABLE,
    PAID_BY_EXCLUDED_PROGRAMMES,
    AMOUNT_DIFFERS_FROM_STANDARD,
    ACCOUNT_SHARED,
    ENROLLED_IN_TWO_REGIONS,
)
TITLES_ZH = {
    PAID_WHILE_NOT_PAYABLE: "超范围发放",
    PAID_BY_EXCLUDED_PROGRAMMES: "政策衔接不到位重复发放",
    AMOUNT_DIFFERS_FROM_STANDARD: "擅自升降发放标准",
    ACCOUNT_SHARED: "一卡通账户多人共用",
    ENROLLED_IN_TWO_REGIONS: "跨区域重复享受",
}

_ACCRUED_TOPIC = get_topic(Payment.Accrued)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One stored payment (first attempt or re-issue), the fields the audit needs."""

    payment_id: str
    id_number: str
    programme: str
    period: Period
    amount_fen: int
    bank_code: str
    account: str
    reissue_of: str

    def months(self) -> range:
        return range(self.period.start.ordinal, self.period.start.ordinal + self.period.months)


@dataclass(slots=True)
class Obligation:
    """One payment owed (ID number × programme × period) with every attempt at it, in log order."""

    id_number: str
    programme: str
    period: Period
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def payment_ids(self) -> list[str]:
        return [a.payment_id for a in self.attempts]


def find_anomalies(registry: Any, disbursement: Any) -> list[dict[str, Any]]:
    """Every finding of every kind, ordered by kind, then ID number, then first period."""
    snapshot = registry.read_registry()
    persons = {record.id_number: record for record in snapshot.persons.values()}
    attempts = list(scan_payments(disbursement))
    obligations = group_obligations(attempts)
    findings = [
        *paid_while_not_payable(persons, obligations),
        *paid_by_excluded_programmes(snapshot.policy, obligations),
        *amount_differs_from_standard(snapshot.policy, persons, obligations),
        *account_shared(attempts),
        *enrolled_in_two_regions(persons, obligations),
    ]
    order = {kind: i for i, kind in enumerate(KINDS)}
    findings.sort(key=lambda f: (order[f["kind"]], f["id_number"], f["periods"][:1], f["programmes"]))
    return findings


# --- reading the log ------------------------------------------------------------------------------------


def scan_payments(disbursement: Any) -> Iterator[Attempt]:
    """Every `Payment.Accrued` in log order, read in pages of that topic only."""
    periods: dict[str, Period] = {}
    for page in notification_pages(disbursement, SCAN_PAGE, topics=(_ACCRUED_TOPIC,)):
        for notification in page:
            data = disbursement.payload(notification.state)
            name = data["period"]
            period = periods.get(name)
            if period is None:
                period = periods[name] = Period.parse(name)
            yield Attempt(
                payment_id=notification.originator_id.hex,
                id_number=data["id_number"],
                programme=data["programme"],
                period=period,
                amount_fen=data["amount_fen"],
                bank_code=data["bank_code"],
                account=data["account"],
                reissue_of=data.get("reissue_of", ""),
            )


def group_obligations(attempts: Iterable[Attempt]) -> list[Obligation]:
    by_key: dict[tuple[str, str, Period], Obligation] = {}
    for attempt in attempts:
        key = (attempt.id_number, attempt.programme, attempt.period)
        found = by_key.get(key)
        if found is None:
            found = by_key[key] = Obligation(attempt.id_number, attempt.programme, attempt.period)
        found.attempts.append(attempt)
    return list(by_key.values())


def _finding(
    kind: str,
    id_numbers: Iterable[str],
    programmes: Iterable[str],
    periods: Iterable[Period],
    detail: str,
    payment_ids: Iterable[str],
    **extra: Any,
) -> dict[str, Any]:
    ids = sorted(set(id_numbers))
    return {
        "kind": kind,
        "title_zh": TITLES_ZH[kind],
        "id_number": ids[0] if ids else "",
        "id_numbers": ids,
        "programmes": sorted(set(programmes)),
        "periods": [p.name for p in sorted(set(periods))],
        "detail": detail,
        "payment_ids": sorted(set(payment_ids)),
        **extra,
    }


def _spells(record: PersonRecord | None, programme: str) -> list[Enrolment]:
    if record is None:
        return []
    return [e for e in record.all_enrolments() if e.programme == programme]


def _spell_on(spells: list[Enrolment], day: date) -> Enrolment | None:
    """The spell in force on `day`: the latest one started by then (spells of one programme do not
    overlap: a new admission needs the old spell ended, domain.eligibility.check_reenrolment)."""
    started = [s for s in spells if s.effective_from <= day]
    return max(started, key=lambda s: s.effective_from) if started else None


# --- (a) paid while not payable --------------------------------------------------------------------------


def paid_while_not_payable(persons: dict[str, PersonRecord], obligations: list[Obligation]) -> list[dict]:
    """`persons` by ID number."""
    findings = []
    for ob in obligations:
        spells = _spells(persons.get(ob.id_number), ob.programme)
        day = ob.period.first_day
        if any(s.status_on(day) == ACTIVE for s in spells):
            continue
        findings.append(
            _finding(
                PAID_WHILE_NOT_PAYABLE,
                [ob.id_number],
                [ob.programme],
                [ob.period],
                f"{ob.programme} {ob.period.name} paid ({_amounts(ob)}) while {_why_not_payable(spells, day)}",
                ob.payment_ids,
            )
        )
    return findings


def _why_not_payable(spells: list[Enrolment], day: date) -> str:
    if not spells:
        return "the person holds no enrolment in it"
    spell = _spell_on(spells, day)
    if spell is None:
        first = min(s.effective_from for s in spells)
        return f"the enrolment had not started on {day.isoformat()} (it starts {first.isoformat()})"
    status = spell.status_on(day)
    if status == PENDING:
        return f"the enrolment had not started on {day.isoformat()}"
    decisive = [d for d in spell.decisions if d.effective_on <= day and d.kind in ("suspend", "terminate", "phase-out")]
    if not decisive:
        return f"the enrolment was {status} on {day.isoformat()}"
    last = decisive[-1]
    ends = f", phase-out ended {last.ends_on.isoformat()}" if last.kind == "phase-out" and last.ends_on else ""
    return (
        f"the enrolment was {status} on {day.isoformat()} ({last.kind} from {last.effective_on.isoformat()}{ends}, "
        f"{last.reason}, by {last.actor})"
    )


def _amounts(ob: Obligation) -> str:
    return " + ".join(f"{format_yuan(a.amount_fen)} 元" for a in ob.attempts)


# --- (b) paid by programmes that exclude each other ------------------------------------------------------


def paid_by_excluded_programmes(policy: Policy, obligations: list[Obligation]) -> list[dict]:
    pairs = policy.excluded_pairs()
    by_person: dict[str, dict[str, list[Obligation]]] = {}
    for ob in obligations:
        by_person.setdefault(ob.id_number, {}).setdefault(ob.programme, []).append(ob)
    findings = []
    for id_number, programmes in by_person.items():
        if len(programmes) < 2:
            continue
        for pair in pairs:
            first, second = sorted(pair)
            if first not in programmes or second not in programmes:
                continue
            overlap = _months_of(programmes[first]) & _months_of(programmes[second])
            if not overlap:
                continue
            involved = [
                ob for key in (first, second) for ob in programmes[key] if overlap.intersection(ob.attempts[0].months())
            ]
            months = sorted(overlap)
            findings.append(
                _finding(
                    PAID_BY_EXCLUDED_PROGRAMMES,
                    [id_number],
                    [first, second],
                    [ob.period for ob in involved],
                    f"{first} and {second} exclude each other (000_a883bdda05437b65.txt 四) and were both paid for "
                    f"{len(months)} month(s), {Month.from_ordinal(months[0])} to {Month.from_ordinal(months[-1])}",
                    [pid for ob in involved for pid in ob.payment_ids],
                )
            )
    return findings


def _months_of(obligations: list[Obligation]) -> set[int]:
    return {m for ob in obligations for m in ob.attempts[0].months()}


# --- (c) amount differs from the standard in force ---------------------------------------------------------


def amount_differs_from_standard(
    policy: Policy, persons: dict[str, PersonRecord], obligations: list[Obligation]
) -> list[dict]:
    """`persons` by ID number."""
    accrual = Accrual(policy, Month(2000, 1))  # only its per-period computation is used: no run month
    findings = []
    for ob in obligations:
        record = persons.get(ob.id_number)
        spell = _spell_on(_spells(record, ob.programme), ob.period.first_day)
        if record is None or spell is None or spell.status_on(ob.period.first_day) != ACTIVE:
            continue  # not payable at all: (a) reports it
        owed = _owed_fen(accrual, policy, ob, record, spell)
        if owed is not None and all(a.amount_fen == owed for a in ob.attempts):
            continue
        expected = _expected(accrual, policy, ob, record, spell)
        findings.append(
            _finding(
                AMOUNT_DIFFERS_FROM_STANDARD,
                [ob.id_number],
                [ob.programme],
                [ob.period],
                f"{ob.programme} {ob.period.name} paid {_amounts(ob)}; {expected['why']}",
                ob.payment_ids,
                expected_fen=expected.get("owed"),
                paid_fen=[a.amount_fen for a in ob.attempts],
            )
        )
    return findings


def _owed_fen(accrual: Accrual, policy: Policy, ob: Obligation, record: PersonRecord, spell: Enrolment) -> int | None:
    """What the month-end computes for the obligation; None when it cannot (`_expected` says why)."""
    programme = policy.programmes.get(ob.programme)
    if programme is None:
        return None
    try:
        return accrual.period_amount_fen(programme, ob.period, record, spell)
    except NoStandardInForce:
        return None


def _expected(accrual: Accrual, policy: Policy, ob: Obligation, record: PersonRecord, spell: Enrolment) -> dict:
    programme = policy.programmes.get(ob.programme)
    if programme is None:
        return {"owed": None, "why": f"the policy has no programme {ob.programme}"}
    try:
        owed = accrual.period_amount_fen(programme, ob.period, record, spell)
        # The standard without `adjust` decisions, with the household in force each month (`decide change`).
        unadjusted = tuple(d for d in spell.decisions if d.kind != "adjust")
        standard = accrual.period_amount_fen(programme, ob.period, record, replace(spell, decisions=unadjusted))
    except NoStandardInForce as e:
        return {"owed": None, "why": f"no standard was in force ({e})"}
    if owed == standard:
        why = f"the standard in force gives {format_yuan(standard)} 元 and no adjust decision covers it"
    else:
        why = f"the standard in force gives {format_yuan(standard)} 元, the adjust decisions {format_yuan(owed)} 元"
    return {"owed": owed, "why": why}


# --- (d) one account, several payees ------------------------------------------------------------------------


def account_shared(attempts: list[Attempt]) -> list[dict]:
    # Most accounts have one payee: find the few with several first, then look at their months.
    payees: dict[tuple[str, str], set[str]] = {}
    for attempt in attempts:
        payees.setdefault((attempt.bank_code, attempt.account), set()).add(attempt.id_number)
    by_account: dict[tuple[str, str], dict[int, dict[str, list[Attempt]]]] = {}
    for attempt in attempts:
        key = (attempt.bank_code, attempt.account)
        if len(payees[key]) < 2:
            continue
        months = by_account.setdefault(key, {})
        for month in attempt.months():
            months.setdefault(month, {}).setdefault(attempt.id_number, []).append(attempt)
    findings = []
    for (bank_code, account), months in by_account.items():
        shared = {m: found for m, found in months.items() if len(found) > 1}
        if not shared:
            continue
        involved = {a.payment_id: a for found in shared.values() for same in found.values() for a in same}
        ids = sorted({a.id_number for a in involved.values()})
        first, last = Month.from_ordinal(min(shared)), Month.from_ordinal(max(shared))
        findings.append(
            _finding(
                ACCOUNT_SHARED,
                ids,
                [a.programme for a in involved.values()],
                [a.period for a in involved.values()],
                f"account {bank_code}/{account} was paid for {len(ids)} different ID numbers ({', '.join(ids)}) "
                f"in {len(shared)} month(s), {first} to {last}",
                involved,
                account=f"{bank_code}/{account}",
            )
        )
    return findings


# --- (e) one ID number, two regions at once --------------------------------------------------------------------


def enrolled_in_two_regions(persons: dict[str, PersonRecord], obligations: list[Obligation]) -> list[dict]:
    """`persons` by ID number."""
    paid: dict[str, list[Obligation]] = {}
    for ob in obligations:
        paid.setdefault(ob.id_number, []).append(ob)
    findings = []
    for record in persons.values():
        spells = record.all_enrolments()
        if len({s.region for s in spells}) < 2:
            continue
        for i, a in enumerate(spells):
            for b in spells[i + 1 :]:
                if a.region == b.region:
                    continue
                overlap = _overlap(a, b)
                if overlap is None:
                    continue
                findings.append(_two_regions(record, a, b, overlap, paid.get(record.id_number, [])))
    return findings


def _overlap(a: Enrolment, b: Enrolment) -> tuple[date, date | None] | None:
    """The days both spells were held: [start, end), end None when neither has ended."""
    start = max(a.effective_from, b.effective_from)
    ends = [e for e in (a.end_date(), b.end_date()) if e is not None]
    end = min(ends) if ends else None
    if end is not None and end <= start:
        return None
    return start, end


def _two_regions(
    record: PersonRecord, a: Enrolment, b: Enrolment, overlap: tuple[date, date | None], paid: list[Obligation]
) -> dict[str, Any]:
    start, end = overlap
    during = [
        ob
        for ob in paid
        if ob.programme in (a.programme, b.programme)
        and ob.period.first_day >= start
        and (end is None or ob.period.first_day < end)
    ]
    until = f" until {end.isoformat()}" if end else ""
    return _finding(
        ENROLLED_IN_TWO_REGIONS,
        [record.id_number],
        [a.programme, b.programme],
        [ob.period for ob in during],
        f"enrolled in {a.programme} in {a.region} ({a.decision_ref}) and in {b.programme} in {b.region} "
        f"({b.decision_ref}) at the same time, from {start.isoformat()}{until}; {len(during)} payment(s) meanwhile",
        [pid for ob in during for pid in ob.payment_ids],
        regions=sorted({a.region, b.region}),
    )
