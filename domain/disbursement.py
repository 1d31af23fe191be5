"""Payments, batches and month-end runs.

Consistency boundary (issue 3): one `Payment` aggregate per enrolment × period, whose id is a
deterministic function of that natural key (uuid5, or keyed for a new ledger: domain.ids), holding
exactly one stored event (`Payment.Accrued`). The event store's primary key
(originator_id, originator_version) therefore refuses a second payment for the same enrolment and
period: no check-then-insert decides it. A month-end of N payments stores N payment events plus one
`Batch.PaymentsAdded` event per batch per chunk (per PAYMENT_IDS_PER_EVENT ids), ≈ 1.0 events per payment.

Every event stays small (ledger.storage.EVENT_BYTES_MAX): a batch's payment ids arrive in `PaymentsAdded`
events of at most PAYMENT_IDS_PER_EVENT ids, and a bank file's results in `ResultsRecorded` events of
at most RESULTS_PER_EVENT results, all saved in one transaction. Ledgers written before these bounds hold
larger events of the same shape and read the same.

A `Batch` groups payments by the policy's region × programme × period × run month (DESIGN.md), plus a
sequence number: once a batch has left `drafted` it is frozen, and later payments for the same key go
to the next sequence. The payments and the `PaymentsAdded` event that lists them are written in one
transaction, so a payment belongs to exactly one batch.

A `RunLog` per run scope records each completed month-end with the registry position it read. A later
run need only look at periods after that month for persons unchanged since that position; a person
whose record changed (new enrolment, decision, account) is looked at from their enrolment start, so
arrears (补发) are found without re-checking every past period of every person.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.eligibility import NAMESPACE, PersonRecord
from domain.errors import RuleBroken
from domain.identity import age_on
from domain.ids import UUID5_IDS, IdScheme, payment_id  # payment_id: uuid5, re-exported here
from domain.money import MONTHS_PER_PAYMENT_MAX, PAYMENT_FEN_MAX, format_yuan
from domain.periods import Month, Period, periods_starting_between
from domain.policy import HouseholdFacts, MonthRate, NoStandardInForce, Policy, Programme, month_rate
from domain.regions import region_contains

PAYMENT_IDS_PER_EVENT = 4_000  # 32-hex ids: ≈ 140 KB of JSON per PaymentsAdded
RESULTS_PER_EVENT = 2_000  # (id, status, reason, date): ≈ 130 KB of JSON per ResultsRecorded

DRAFTED, EXPORTED, APPROVED, SUBMITTED, SETTLED = "drafted", "exported", "approved", "submitted", "settled"
BATCH_STATUSES = (DRAFTED, EXPORTED, APPROVED, SUBMITTED, SETTLED)
BANK_FORMATS = ("pain.", "onecard")  # export labels of files that go to the bank


def batch_id(region: str, programme: str, period: str, run_month: str, seq: int) -> UUID:
    return uuid5(NAMESPACE, f"batch|{region}|{programme}|{period}|{run_month}|{seq}")


def run_log_id(scope: str) -> UUID:
    return uuid5(NAMESPACE, f"runlog|{scope}")


def reissue_id(returned_payment_id: str) -> UUID:
    """The one re-issue (补发) a returned payment can have: a second one is refused by the store."""
    return uuid5(NAMESPACE, f"reissue|{returned_payment_id}")


def bank_file_id(sha256: str) -> UUID:
    return uuid5(NAMESPACE, f"bankfile|{sha256}")


class BatchFrozen(RuleBroken):
    """Payments cannot be added to a batch that has left `drafted`."""


class EmptyBatch(RuleBroken):
    """A batch with no payments has nothing to export."""


class BatchNotExported(RuleBroken):
    """Only an exported batch can be approved (maker-checker: someone made the file first)."""


class BatchAlreadyApproved(RuleBroken):
    """An approved batch is frozen; it cannot be approved again."""


class ApproverMustDifferFromExporter(RuleBroken):
    """Maker-checker: the person who exported a batch cannot approve it."""


class OnlyApprovedBatchesSubmit(RuleBroken):
    """Only an approved batch can be marked as submitted to the bank."""


class ExportDiffersFromApproved(RuleBroken):
    """After approval a bank file may be regenerated, never changed: what the checker approved is what
    goes to the bank (maker-checker)."""


class ResultForUnapprovedBatch(RuleBroken):
    """The bank cannot have paid a batch nobody approved: its results are refused."""


class ResultConflicts(RuleBroken):
    """A payment already has a different final result from the bank."""


class Payment(Aggregate):
    """One payment to one payee for one period of one programme."""

    @staticmethod
    def create_id(id_number: str, programme: str, period: str, **_: Any) -> UUID:  # type: ignore[override]
        return payment_id(id_number, programme, period)

    @event("Accrued")
    def __init__(
        self,
        id_number: str,
        programme: str,
        period: str,
        name: str,
        region: str,
        amount_fen: int,
        persons: int,
        due_date: str,
        late: bool,
        batch_id: str,
        bank_code: str,
        account: str,
        run_month: str,
        reissue_of: str,
    ) -> None:
        self.id_number = id_number
        self.programme = programme
        self.period = period
        self.name = name
        self.region = region
        self.amount_fen = amount_fen
        self.persons = persons
        self.due_date = date.fromisoformat(due_date)
        self.late = late
        self.batch_id = UUID(batch_id)
        self.bank_code = bank_code
        self.account = account
        self.run_month = run_month
        self.reissue_of = reissue_of  # the returned payment this one pays again (补发), or ""


class Batch(Aggregate):
    """Payments of one region × programme × period × run, and the batch's life after the month-end."""

    @staticmethod
    def create_id(  # type: ignore[override]
        region: str, programme: str, period: str, run_month: str, seq: int, **_: Any
    ) -> UUID:
        return batch_id(region, programme, period, run_month, seq)

    @event("Drafted")
    def __init__(self, region: str, programme: str, period: str, run_month: str, seq: int, due_date: str) -> None:
        self.region = region
        self.programme = programme
        self.period = period
        self.run_month = run_month
        self.seq = seq
        self.due_date = date.fromisoformat(due_date)
        self.status = DRAFTED
        self.payment_ids: list[str] = []
        self.total_fen = 0
        self.exported_by: list[str] = []
        self.exports: list[tuple[str, tuple[tuple[str, str], ...], str]] = []  # format, (name, sha256)…, actor
        self.approved_by = ""
        self.exports_at_approval = 0
        self.submitted_by = ""
        self.results: dict[str, tuple[str, str]] = {}  # payment id → (paid|returned, reason code)
        self.settled_on: date | None = None
        # payment id → the payee's corrected name (`decide rename` before approval); exports write it
        self.payee_names: dict[str, str] = {}

    @property
    def count(self) -> int:
        return len(self.payment_ids)

    def paid_count(self) -> int:
        return sum(1 for status, _ in self.results.values() if status == "paid")

    def returned_ids(self) -> list[str]:
        return [pid for pid, (status, _) in self.results.items() if status == "returned"]

    # --- after the month-end: export, approve (maker-checker), submit, results -------------------

    def check_export(self, *, format_name: str, files: tuple[tuple[str, str], ...]) -> None:
        """Refuse, before anything is written, a bank file that differs from the ones approved."""
        if not self.payment_ids:
            raise EmptyBatch(f"batch {self.id.hex} has no payments")
        if not self.approved_by or not format_name.startswith(BANK_FORMATS):
            return
        approved = self.approved_sha256()
        for name, sha in files:
            if sha not in approved:
                raise ExportDiffersFromApproved(
                    f"{name} differs from the files {self.approved_by} approved for batch {self.id.hex} "
                    f"(sha256 {sha[:16]}…); a changed bank file needs a new batch and a new approval"
                )

    def approved_sha256(self) -> set[str]:
        """The bank files exported before approval: what the checker saw."""
        return {
            sha
            for fmt, files, _ in self.exports[: self.exports_at_approval]
            if fmt.startswith(BANK_FORMATS)
            for _, sha in files
        }

    def record_export(
        self, *, format_name: str, files: tuple[tuple[str, str], ...], actor: str, profile_sha256: str = ""
    ) -> None:
        """An export of this batch's payments (file names and SHA-256), whoever makes it; a one-card export
        also records the SHA-256 of the bank profile's text it was laid out with (domain.bank_profiles)."""
        self.check_export(format_name=format_name, files=files)
        self._exported(
            format=format_name,
            files=files,
            actor=actor,
            count=self.count,
            total_fen=self.total_fen,
            profile_sha256=profile_sha256,
        )

    @event("Exported")
    def _exported(
        self,
        format: str,
        files: tuple[tuple[str, str], ...],
        actor: str,
        count: int,
        total_fen: int,
        profile_sha256: str = "",  # added in issue 13: "" in the events of earlier releases and non-profile formats
    ) -> None:
        if self.status == DRAFTED:
            self.status = EXPORTED
        if actor not in self.exported_by:
            self.exported_by.append(actor)
        self.exports.append((format, tuple((name, sha) for name, sha in files), actor))

    def approve(self, *, actor: str) -> None:
        if self.status == DRAFTED:
            raise BatchNotExported(f"batch {self.id.hex} has not been exported yet")
        if self.approved_by:
            raise BatchAlreadyApproved(f"batch {self.id.hex} was approved by {self.approved_by}")
        if actor in self.exported_by:
            raise ApproverMustDifferFromExporter(
                f"{actor} exported batch {self.id.hex} and cannot approve it: a second person must"
            )
        self._approved(actor=actor)

    @event("Approved")
    def _approved(self, actor: str) -> None:
        self.approved_by = actor
        self.exports_at_approval = len(self.exports)
        self.status = APPROVED

    def submit(self, *, actor: str) -> None:
        if self.status != APPROVED:
            raise OnlyApprovedBatchesSubmit(f"batch {self.id.hex} is {self.status}; only approved batches submit")
        self._submitted(actor=actor)

    @event("Submitted")
    def _submitted(self, actor: str) -> None:
        self.submitted_by = actor
        self.status = SUBMITTED

    def check_results(self, results: Iterable[tuple[str, str, str, str]]) -> list[str]:
        """Problems with applying (payment id, status, reason code, settled_on) results; empty when none."""
        problems = []
        if self.status not in (APPROVED, SUBMITTED, SETTLED):
            problems.append(f"ResultForUnapprovedBatch: batch {self.id.hex} is {self.status}")
        members = set(self.payment_ids)
        for payment, status, _, _ in results:
            if payment not in members:
                problems.append(f"payment {payment} is not in batch {self.id.hex}")
            elif payment in self.results and self.results[payment][0] != status:
                problems.append(
                    f"ResultConflicts: payment {payment} is already {self.results[payment][0]}, the file says {status}"
                )
        return problems

    def record_results(self, *, bank_file: str, results: tuple[tuple[str, str, str, str], ...], actor: str) -> bool:
        """Apply results not yet known; False when the batch already knew all of them."""
        problems = self.check_results(results)
        if problems:
            raise ResultConflicts("; ".join(problems))
        new = tuple(r for r in results if r[0] not in self.results)
        if not new:
            return False
        for start in range(0, len(new), RESULTS_PER_EVENT):
            self._results_recorded(bank_file=bank_file, results=new[start : start + RESULTS_PER_EVENT], actor=actor)
        return True

    @event("ResultsRecorded")
    def _results_recorded(self, bank_file: str, results: tuple[tuple[str, str, str, str], ...], actor: str) -> None:
        for payment, status, reason_code, settled_on in results:
            self.results[payment] = (status, reason_code)
            if settled_on and (self.settled_on is None or date.fromisoformat(settled_on) > self.settled_on):
                self.settled_on = date.fromisoformat(settled_on)
        if len(self.results) >= len(self.payment_ids):
            self.status = SETTLED

    def payee_name(self, payment_id: str, accrued_name: str) -> str:
        """The name a file of this batch writes for a payment: the corrected one, else the accrued one."""
        return self.payee_names.get(payment_id, accrued_name)

    def correct_names(self, *, names: Mapping[str, str], reason: str, actor: str) -> bool:
        """Payees renamed (`decide rename`) before this batch was approved: its next exports carry the new
        names. An approved batch is what the checker saw and the bank got, so it is never changed; its
        returned payments are re-issued under the new name. False when there is nothing to change."""
        if self.approved_by:
            return False
        unknown = sorted(set(names) - set(self.payment_ids))
        if unknown:
            raise UnknownPaymentInBatch(f"payment {unknown[0]} is not in batch {self.id.hex}")
        changed = tuple(sorted((pid, name) for pid, name in names.items() if self.payee_names.get(pid) != name))
        if not changed:
            return False
        self._names_corrected(names=changed, reason=reason, actor=actor)
        return True

    @event("NamesCorrected")
    def _names_corrected(self, names: tuple[tuple[str, str], ...], reason: str, actor: str) -> None:
        self.payee_names.update(names)

    def add_payments(self, payments: Sequence[tuple[str, int]]) -> None:
        """Add (payment id hex, amount in fen) pairs, PAYMENT_IDS_PER_EVENT to an event."""
        if self.status != DRAFTED:
            raise BatchFrozen(f"batch {self.id} is {self.status}; payments go to a new batch")
        for start in range(0, len(payments), PAYMENT_IDS_PER_EVENT):
            part = payments[start : start + PAYMENT_IDS_PER_EVENT]
            self._payments_added(payment_ids=tuple(p for p, _ in part), total_fen=sum(a for _, a in part))

    @event("PaymentsAdded")
    def _payments_added(self, payment_ids: tuple[str, ...], total_fen: int) -> None:
        self.payment_ids.extend(payment_ids)
        self.total_fen += total_fen


class BankFile(Aggregate):
    """One bank result file, imported once: its id is uuid5 of the file's SHA-256, so a second import of
    the same bytes is refused by the store even when two clerks import it at the same moment."""

    @staticmethod
    def create_id(sha256: str, **_: Any) -> UUID:  # type: ignore[override]
        return bank_file_id(sha256)

    @event("Imported")
    def __init__(
        self,
        sha256: str,
        name: str,
        file_format: str,
        message_id: str,
        paid: int,
        returned: int,
        actor: str,
        profile_sha256: str = "",  # the return file's bank profile (issue 13); "" before, and for pain.002
    ) -> None:
        self.sha256 = sha256
        self.name = name
        self.paid = paid
        self.returned = returned


class RunLog(Aggregate):
    """The completed month-ends of one scope (a region code), in the order they completed."""

    @staticmethod
    def create_id(scope: str, **_: Any) -> UUID:  # type: ignore[override]
        return run_log_id(scope)

    @event("Opened")
    def __init__(self, scope: str) -> None:
        self.scope = scope
        self.completed: list[Watermark] = []

    def complete(self, *, month: Month, registry_position: int, payments: int, total_fen: int, actor: str) -> None:
        self._completed(
            month=str(month),
            registry_position=registry_position,
            payments=payments,
            total_fen=total_fen,
            actor=actor,
        )

    @event("RunCompleted")
    def _completed(self, month: str, registry_position: int, payments: int, total_fen: int, actor: str) -> None:
        self.completed.append(Watermark(Month.parse(month), registry_position))

    def watermark_for(self, month: Month) -> Watermark | None:
        """The latest completed run for a month at or before `month`: what that run covered stays covered."""
        best = None
        for mark in self.completed:
            if mark.month <= month and (best is None or mark.month > best.month):
                best = mark
        return best


@dataclass(frozen=True, slots=True)
class Watermark:
    month: Month
    registry_position: int


# --- accrual: what is owed, decided from the registry and the policy ---------------------------------


class UnknownPaymentInBatch(RuleBroken):
    """A name correction names a payment the batch does not hold."""


class PaymentAboveMaximum(RuleBroken):
    """A payment above the ledger-wide maximum per payment (domain.money.PAYMENT_FEN_MAX) is never accrued."""


@dataclass(frozen=True, slots=True)
class PaymentDue:
    payment_id: UUID
    person_id: UUID
    id_number: str
    name: str
    region: str
    programme: str
    period: Period
    amount_fen: int
    persons: int
    due_date: date
    late: bool
    bank_code: str
    account: str
    reissue_of: str = ""


class Accrual:
    """Computes what each enrolment is owed, caching standards per programme and month.

    Rules (issue 3, DESIGN.md):
    - every period of the programme's cadence that starts in a month up to the run month is due, from
      the enrolment's start; periods starting before the run month whose due date has passed are
      arrears (补发) and flagged late;
    - a period is payable when the enrolment is active on its first day (domain.eligibility);
    - the period pays the sum of its months (domain.policy.month_amount_fen's rules): a quarter of an
      annual standard is exactly ⌊A·q/4⌋ − ⌊A·(q−1)/4⌋, and a household quarter is 3 × its monthly amount;
    - an amount of zero (income at or above the line, below the first age tier) is not a payment.
    """

    def __init__(self, policy: Policy, run_month: Month, ids: IdScheme = UUID5_IDS) -> None:
        self.policy = policy
        self.run_month = run_month
        self.ids = ids  # the ledger's id scheme (domain.ids): uuid5, or keyed for a ledger with a charter
        self._rates: dict[tuple[str, int], MonthRate | None] = {}
        self._due_dates: dict[tuple[str, Period], date] = {}
        self._in_scope: dict[str, bool] = {}

    def due(
        self,
        records: Iterable[tuple[UUID, PersonRecord]],
        scope: str,
        watermark: Watermark | None,
        policy_position: int,
    ) -> Iterator[PaymentDue]:
        payment_id_of = self.ids.payment_id
        for pid, record, enrolment, programme, period, amount_fen in self.owed(
            records, scope, watermark, policy_position
        ):
            due_date = self._due_date(programme, period)
            yield PaymentDue(
                payment_id=payment_id_of(record.id_number, programme.key, period.name),
                person_id=pid,
                id_number=record.id_number,
                name=record.name,
                region=enrolment.region,
                programme=programme.key,
                period=period,
                amount_fen=amount_fen,
                persons=enrolment.household.members if programme.unit == "household" else 1,
                due_date=due_date,
                late=due_date < self.run_month.first_day,
                bank_code=record.bank_code,
                account=record.account,
            )

    def check_amounts(
        self,
        records: Collection[tuple[UUID, PersonRecord]],
        scope: str,
        watermark: Watermark | None,
        policy_position: int,
    ) -> None:
        """Refuse the month-end before it writes anything when a payment would exceed the ledger-wide
        maximum (domain.money.PAYMENT_FEN_MAX): a figure that large is a wrong standard, household or
        approved amount, and must not reach a bank file (issue 13). Names the enrolment and the bound.

        An upper bound first (`largest_possible_fen`: one pass over the enrolments, no periods): when even
        the largest household on the highest standard for a whole year fits, nothing can exceed the
        maximum and the exact pass over every period is skipped, as it is at every ordinary month-end."""
        if self.largest_possible_fen(records, scope) <= PAYMENT_FEN_MAX:
            return
        for _pid, record, enrolment, programme, period, amount_fen in self.owed(
            records, scope, watermark, policy_position
        ):
            if amount_fen > PAYMENT_FEN_MAX:
                raise PaymentAboveMaximum(
                    f"{record.id_number} {programme.key} {period.name}: the payment would be "
                    f"{format_yuan(amount_fen)} 元, more than the ledger's maximum per payment "
                    f"{format_yuan(PAYMENT_FEN_MAX)} 元 (enrolment from {enrolment.effective_from.isoformat()}, "
                    f"{enrolment.household.members} members); nothing was accrued: correct the policy or decision"
                )

    def _inside(self, scope: str, region: str) -> bool:
        in_scope = self._in_scope.get(region)
        if in_scope is None:
            in_scope = self._in_scope[region] = region_contains(scope, region)
        return in_scope

    def largest_possible_fen(self, records: Iterable[tuple[UUID, PersonRecord]], scope: str) -> int:
        """More than any one payment of this run can be: per programme, twelve months (a yearly period) of
        the largest month any of its enrolments could be owed, from its earliest start to the run month's
        year end: the largest household (no income, every member special), the highest tier, the largest
        approved amount."""
        # (largest household, most special members, earliest start, largest approved amount) per programme
        seen: dict[tuple[str, str], list[Any]] = {}
        for _pid, record in records:
            for enrolment in (*record.past, *record.enrolments.values()):
                household = enrolment.household
                found = seen.get((enrolment.programme, enrolment.region))
                if found is None:
                    seen[enrolment.programme, enrolment.region] = [
                        household.members,
                        household.special_members,
                        enrolment.effective_from,
                        0,
                    ]
                    found = seen[enrolment.programme, enrolment.region]
                else:
                    if household.members > found[0]:
                        found[0] = household.members
                    if household.special_members > found[1]:
                        found[1] = household.special_members
                    if enrolment.effective_from < found[2]:
                        found[2] = enrolment.effective_from
                for decision in enrolment.decisions:
                    if decision.kind == "adjust" and (decision.amount_fen or 0) > found[3]:
                        found[3] = decision.amount_fen
        members: dict[str, int] = {}
        special: dict[str, int] = {}
        override: dict[str, int] = {}
        first: dict[str, Month] = {}
        for (key, region), (most, most_special, earliest, approved) in seen.items():
            if key not in self.policy.programmes or not self._inside(scope, region):
                continue
            members[key] = max(members.get(key, 0), most)
            special[key] = max(special.get(key, 0), most_special)
            override[key] = max(override.get(key, 0), approved)
            first[key] = min(first.get(key, Month.of(earliest)), Month.of(earliest))
        largest = 0
        for key, start in first.items():
            programme = self.policy.programmes[key]
            facts = HouseholdFacts(members[key], 0, special[key])
            month_max = override.get(key, 0)
            month = start
            while month <= self.run_month.plus(11):
                try:
                    rate = self._rate(programme, month)
                except NoStandardInForce:
                    rate = None
                if rate is not None:
                    tier_max = max((fen for _, fen in rate.tiers), default=0)
                    month_max = max(month_max, rate.amount_for(0, facts), tier_max)
                month = month.plus(1)
            largest = max(largest, MONTHS_PER_PAYMENT_MAX * month_max)
        return largest

    def owed(
        self,
        records: Iterable[tuple[UUID, PersonRecord]],
        scope: str,
        watermark: Watermark | None,
        policy_position: int,
    ) -> Iterator[tuple[UUID, PersonRecord, Any, Programme, Period, int]]:
        """(person id, record, enrolment, programme, period, amount) for every payable period with a
        positive amount; `due` makes payments of them, `check_amounts` checks them first."""
        covered = watermark if watermark is not None and policy_position <= watermark.registry_position else None
        for pid, record in records:
            unchanged = covered is not None and record.last_position <= covered.registry_position
            for enrolment in record.all_enrolments():
                programme_key = enrolment.programme
                in_scope = self._in_scope.get(enrolment.region)
                if in_scope is None:
                    in_scope = self._in_scope[enrolment.region] = region_contains(scope, enrolment.region)
                if not in_scope:
                    continue
                programme = self.policy.programmes.get(programme_key)
                if programme is None:
                    continue
                first = Month.of(enrolment.effective_from)
                if unchanged:
                    assert covered is not None
                    first = max(first, covered.month.plus(1))
                for period in periods_starting_between(programme.cadence, first, self.run_month):
                    if not enrolment.payable_in(period.start):
                        continue
                    try:
                        amount_fen = self.period_amount_fen(programme, period, record, enrolment)
                    except NoStandardInForce:
                        continue
                    if amount_fen <= 0:
                        continue
                    yield pid, record, enrolment, programme, period, amount_fen

    def period_amount_fen(self, programme: Programme, period: Period, record: PersonRecord, enrolment: Any) -> int:
        """The sum of the period's months (see `domain.policy.month_amount_fen` for one month's rules)."""
        total = 0
        plain = not enrolment.decisions
        for month in period.month_list():
            override = None if plain else enrolment.override_fen_on(month.first_day)
            if override is not None:
                total += override
                continue
            rate = self._rate(programme, month)
            age = age_on(record.birth_date, month.first_day) if rate.tiers else 0
            total += rate.amount_for(age, enrolment.household_on(month.first_day))
        return total

    def _rate(self, programme: Programme, month: Month) -> MonthRate:
        key = (programme.key, month.ordinal)
        if key not in self._rates:
            try:
                self._rates[key] = month_rate(self.policy, programme, month)
            except NoStandardInForce:
                self._rates[key] = None
        rate = self._rates[key]
        if rate is None:
            raise NoStandardInForce(f"{programme.key} has no standard in force in {month}")
        return rate

    def _due_date(self, programme: Programme, period: Period) -> date:
        key = (programme.key, period)
        found = self._due_dates.get(key)
        if found is None:
            found = self._due_dates[key] = period.due_date(programme.due_day)
        return found


BATCH_REGISTER_ID = uuid5(NAMESPACE, "batch-register")


class BatchRegister(Aggregate):
    """Every batch ever drafted, in order: `batch list` reads this one aggregate, not the whole log.

    Stored topic: events written before this class moved here carry `ledger.disbursement:BatchRegister.…`,
    registered to this class in ledger.topics."""

    @staticmethod
    def create_id(**_: Any) -> UUID:  # type: ignore[override]
        return BATCH_REGISTER_ID

    @event("Opened")
    def __init__(self) -> None:
        self.batch_ids: list[str] = []

    def register(self, batch: Batch) -> None:
        self._registered(batch_id=batch.id.hex, run_month=batch.run_month, period=batch.period)

    @event("Registered")
    def _registered(self, batch_id: str, run_month: str, period: str) -> None:
        self.batch_ids.append(batch_id)
