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
from functools import lru_cache
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.eligibility import NAMESPACE, OPEN_END, Enrolment, PersonRecord
from domain.errors import RuleBroken
from domain.identity import age_on
from domain.ids import UUID5_IDS, IdScheme, payment_id  # payment_id: uuid5, re-exported here
from domain.money import MONTHS_PER_PAYMENT_MAX, PAYMENT_FEN_MAX, format_yuan
from domain.periods import Month, Period, periods_overlapping
from domain.policy import HouseholdFacts, MonthRate, NoStandardInForce, Policy, Programme, month_rate
from domain.regions import region_contains

PAYMENT_IDS_PER_EVENT = 4_000  # 32-hex ids: ≈ 140 KB of JSON per PaymentsAdded
RESULTS_PER_EVENT = 2_000  # (id, status, reason, date): ≈ 130 KB of JSON per ResultsRecorded

DRAFTED, EXPORTED, APPROVED, SUBMITTED, SETTLED = "drafted", "exported", "approved", "submitted", "settled"
BATCH_STATUSES = (DRAFTED, EXPORTED, APPROVED, SUBMITTED, SETTLED)
BANK_FORMATS = ("pain.", "onecard")
PAYMENTS, ADJUSTMENTS = (
    "payments",
    "adjustment",
)  # batch kinds: a period's payments, a run's 补发差额  # export labels of files that go to the bank


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
        # Added in issue 14, defaults for the events of earlier releases: priced by months, and for an
        # adjustment (补发差额) the period's payment it corrects, its number and its cause.
        monthly: bool = False,
        adjusts: str = "",
        adjustment: int = 0,
        cause: str = "",
        # Added with recoveries (issue 14 item 3): the part of `amount_fen` settled by offsetting the
        # payee's recoveries due (`Recovery.Offset` events written in the same transaction); the bank
        # line carries `amount_fen - offset_fen`. A payment offset whole is no bank line: its `batch_id`
        # is "" and `balance_region` names the region its balances count in (a batch's region otherwise).
        offset_fen: int = 0,
        balance_region: str = "",
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
        self.batch_id = UUID(batch_id) if batch_id else None  # None: settled whole by offset, no bank line
        self.bank_code = bank_code
        self.account = account
        self.run_month = run_month
        self.reissue_of = reissue_of  # the returned payment this one pays again (补发), or ""
        self.monthly = monthly
        self.adjusts = adjusts
        self.adjustment = adjustment
        self.offset_fen = offset_fen

    @property
    def net_fen(self) -> int:
        """What the bank line carries: the amount due less what was settled by offset."""
        return self.amount_fen - self.offset_fen


class Batch(Aggregate):
    """Payments of one region × programme × period × run, and the batch's life after the month-end."""

    @staticmethod
    def create_id(  # type: ignore[override]
        region: str, programme: str, period: str, run_month: str, seq: int, kind: str = "payments", **_: Any
    ) -> UUID:
        if kind == ADJUSTMENTS:
            return adjustment_batch_id(region, programme, run_month, seq)
        return batch_id(region, programme, period, run_month, seq)

    @event("Drafted")
    def __init__(
        self, region: str, programme: str, period: str, run_month: str, seq: int, due_date: str, kind: str = PAYMENTS
    ) -> None:
        self.kind = kind  # PAYMENTS, or ADJUSTMENTS: a run's 补发差额 of one programme (issue 14); period = run month
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
    # Priced by months (issue 14): a period this release accrues can be adjusted later; one of an
    # earlier release (False) is never re-priced.
    monthly: bool = True
    # An adjustment (issue 14): the period's payment id it corrects, its number n (1, 2, …) among that
    # payment's adjustments and why. A positive one is a bank line of the run's adjustment batch
    # (补发差额); a negative one is a recovery due (多发追回), never a bank line (`Recovery`).
    adjusts: str = ""
    adjustment: int = 0
    cause: str = ""
    # Settled by offsetting recoveries due from the payee (ledger.disbursement.ChunkWriter): the bank line
    # is `net_fen`; a payment offset whole is no bank line.
    offset_fen: int = 0

    @property
    def net_fen(self) -> int:
        return self.amount_fen - self.offset_fen

    @property
    def is_recovery(self) -> bool:
        return bool(self.adjusts) and self.amount_fen < 0


@dataclass(frozen=True, slots=True)
class Entitlement:
    """What one enrolment is due now for one period: the sum of its active months (`Accrual`)."""

    person_id: UUID
    record: PersonRecord
    enrolment: Enrolment
    programme: Programme
    period: Period
    amount_fen: int
    # The period may already be accrued (a run has covered it, or the person or the policy changed since):
    # look at the store before paying it, and compare what it holds with what is due now.
    examine: bool


@dataclass(frozen=True, slots=True)
class Accrued:
    """What the store holds for one enrolment and period: its payment and every adjustment of it."""

    payment_fen: int
    monthly: bool  # priced by months (this release on); False: never re-priced
    adjustments_fen: int = 0  # the sum of its adjustments, positive and negative
    adjustments: int = 0  # how many: the next one is number adjustments + 1

    @property
    def total_fen(self) -> int:
        return self.payment_fen + self.adjustments_fen


def adjustment_id(payment_id_hex: str, number: int) -> UUID:
    """The n-th adjustment of a period's payment (n = 1, 2, …), positive or negative.

    The number is the adjustment's place in the payment's history, as a version is an event's place in an
    aggregate's: two runs that see the same history both compute number n, so the store keeps one and
    refuses the other (re-runs, two runs at once, crashes: docs/entitlement.md "Adjustments"); what caused
    it is recorded in the event. The payment id already hides the ID number (domain.ids), so a uuid5 of it
    reveals nothing more."""
    return uuid5(NAMESPACE, f"adjustment|{payment_id_hex}|{number}")


def adjustment_batch_id(region: str, programme: str, run_month: str, seq: int) -> UUID:
    """The batch of a run's positive adjustments of one programme (issue 14: region × programme × run month)."""
    return uuid5(NAMESPACE, f"batch|adjustment|{region}|{programme}|{run_month}|{seq}")


class RecoveryExceedsRemaining(RuleBroken):
    """A recovery's collections and write-offs never exceed what remains to recover."""


class NothingToRecover(RuleBroken):
    """A recovery with nothing remaining cannot be collected or written off."""


class WriteOffNeedsSecondPerson(RuleBroken):
    """Maker-checker: a recovery is written off by an account other than the one whose month-end made it
    and any that recorded a collection on it."""


class Recovery(Aggregate):
    """An amount paid for a period beyond what is now due (多发追回): a negative adjustment. It is never a
    bank line: the office recovers it by offset against the payee's next payments of the programme, or
    collects or writes it off (docs/entitlement.md "Recoveries"). Its id is `adjustment_id`.

    Every change after `Due` is a further event of this aggregate (version 2, 3, …), so two writers that
    read the same recovery and both offset, collect or write it off conflict on the store's primary key
    and one of them reads it again: nothing is recovered twice. An offset counts while the payment that
    carries it is not returned by the bank (`remaining` takes the returned payment ids): a returned net
    payment undoes its offset, and the recovery is open again."""

    @staticmethod
    def create_id(adjusts: str, adjustment: int, **_: Any) -> UUID:  # type: ignore[override]
        return adjustment_id(adjusts, adjustment)

    @event("Due")
    def __init__(
        self,
        id_number: str,
        programme: str,
        period: str,
        name: str,
        region: str,
        balance_region: str,
        amount_fen: int,
        adjusts: str,
        adjustment: int,
        cause: str,
        run_month: str,
        actor: str = "",  # who ran the month-end that made it (a write-off needs someone else)
    ) -> None:
        self.id_number = id_number
        self.programme = programme
        self.period = period
        self.name = name
        self.region = region
        self.balance_region = balance_region
        self.amount_fen = amount_fen  # positive: what the payee owes back
        self.adjusts = adjusts
        self.run_month = run_month
        self.actor = actor
        self.offsets: list[tuple[str, int, str]] = []  # (payment id, fen, the period it was paid into)
        self.collected_fen = 0
        self.written_off_fen = 0
        self.collected_by: list[str] = []

    def offset_fen(self, returned: Collection[str] = ()) -> int:
        """Recovered by offset, not counting offsets carried by payments the bank returned."""
        return sum(fen for payment, fen, _ in self.offsets if payment not in returned)

    def remaining(self, returned: Collection[str] = ()) -> int:
        return self.amount_fen - self.offset_fen(returned) - self.collected_fen - self.written_off_fen

    def offset(self, *, payment_id: str, amount_fen: int, period: str, returned: Collection[str] = ()) -> None:
        if amount_fen <= 0:
            raise NothingToRecover(f"recovery {self.id.hex}: an offset must be positive")
        if amount_fen > self.remaining(returned):
            raise RecoveryExceedsRemaining(
                f"recovery {self.id.hex}: offset {format_yuan(amount_fen)} 元 is more than the "
                f"{format_yuan(self.remaining(returned))} 元 remaining"
            )
        self._offset(payment_id=payment_id, amount_fen=amount_fen, period=period)

    @event("Offset")
    def _offset(self, payment_id: str, amount_fen: int, period: str) -> None:
        self.offsets.append((payment_id, amount_fen, period))

    def collect(self, *, amount_fen: int, reason: str, actor: str, returned: Collection[str] = ()) -> None:
        """The office collected `amount_fen` from the payee (cash or transfer), at most what remains."""
        remaining = self.remaining(returned)
        if remaining <= 0:
            raise NothingToRecover(f"recovery {self.id.hex} has nothing left to recover")
        if amount_fen <= 0 or amount_fen > remaining:
            raise RecoveryExceedsRemaining(
                f"recovery {self.id.hex}: {format_yuan(amount_fen)} 元 collected would exceed the "
                f"{format_yuan(remaining)} 元 remaining (and must be positive)"
            )
        self._collected(amount_fen=amount_fen, reason=reason, actor=actor)

    @event("Collected")
    def _collected(self, amount_fen: int, reason: str, actor: str) -> None:
        self.collected_fen += amount_fen
        self.collected_by.append(actor)

    def write_off(self, *, reason: str, actor: str, returned: Collection[str] = ()) -> int:
        """Write off what remains, by a second person; the amount written off."""
        remaining = self.remaining(returned)
        if remaining <= 0:
            raise NothingToRecover(f"recovery {self.id.hex} has nothing left to write off")
        if actor == self.actor or actor in self.collected_by:
            raise WriteOffNeedsSecondPerson(
                f"{actor} {'ran the month-end that made' if actor == self.actor else 'recorded a collection on'} "
                f"recovery {self.id.hex} and cannot write it off: a second person must"
            )
        self._written_off(amount_fen=remaining, reason=reason, actor=actor)
        return remaining

    @event("WrittenOff")
    def _written_off(self, amount_fen: int, reason: str, actor: str) -> None:
        self.written_off_fen += amount_fen


class PolicyChanges:
    """Which months a newly loaded policy prices differently from the one a run last used.

    A run after a policy load re-examines, for persons it had already covered, only the periods holding
    a month whose rate changed (a retroactive standard and everything derived from it, 003: 今年…提高到)
    or every period of a programme whose month rules (`starts`/`stops`) changed or that is new."""

    def __init__(self, before: Policy, now: Policy) -> None:
        self.before = before
        self.now = now
        self._months: dict[tuple[str, int], bool] = {}
        self._whole: dict[str, bool] = {}

    def whole_programme(self, key: str) -> bool:
        found = self._whole.get(key)
        if found is None:
            old = self.before.programmes.get(key)
            new = self.now.programmes.get(key)
            found = old is None or new is None or (old.starts, old.stops, old.unit) != (new.starts, new.stops, new.unit)
            self._whole[key] = found
        return found

    def month_changed(self, key: str, month: Month) -> bool:
        found = self._months.get((key, month.ordinal))
        if found is None:
            found = self._rate(self.before, key, month) != self._rate(self.now, key, month)
            self._months[key, month.ordinal] = found
        return found

    def period_changed(self, key: str, period: Period) -> bool:
        return self.whole_programme(key) or any(self.month_changed(key, m) for m in period.month_list())

    @staticmethod
    def _rate(policy: Policy, key: str, month: Month) -> MonthRate | None:
        try:
            return month_rate(policy, policy.programmes[key], month)
        except NoStandardInForce:
            return None


class Accrual:
    """Computes what each enrolment is due, caching standards per programme and month.

    Rules (issue 14, DESIGN.md "Entitlement over time", docs/entitlement.md):
    - entitlement is monthly: a period is due the sum of its months in which the enrolment is active
      (`Enrolment.active_spans`, under the programme's `starts`/`stops`); a month's amount is the
      standard's month share (an annual standard split 12 ways, so a quarter of it is exactly
      ⌊A·q/4⌋ − ⌊A·(q−1)/4⌋), the household formula with the household in force that month, or an
      approved amount (`adjust`); a phase-out's months keep the household and approved amount in force
      before it (004_… 二.1);
    - every period of the programme's cadence that holds an active month and starts in a month up to the
      run month is due, from the enrolment's first active month: a start in the middle of a quarter pays
      the quarter's remaining months; periods whose due date has passed are arrears and flagged late;
    - an amount of zero (income at or above the line, below the first age tier) is not a payment, but
      is what a period already paid is now due (`examine`): the difference is an adjustment.
    """

    def __init__(
        self,
        policy: Policy,
        run_month: Month,
        ids: IdScheme = UUID5_IDS,
        *,
        changes: PolicyChanges | None = None,
    ) -> None:
        self.policy = policy
        self.run_month = run_month
        self.ids = ids  # the ledger's id scheme (domain.ids): uuid5, or keyed for a ledger with a charter
        self.changes = changes  # the policy changed since the watermark: which periods to look at again
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
        """New payments only, as if no period were accrued yet (domain tests; the month-end looks at the
        store first, ledger.disbursement)."""
        for entitlement in self.owed(records, scope, watermark, policy_position):
            if entitlement.amount_fen > 0:
                yield self.payment(entitlement)

    def payment(self, entitlement: Entitlement) -> PaymentDue:
        """The payment of a period not accrued before."""
        record, programme, period = entitlement.record, entitlement.programme, entitlement.period
        due_date = self._due_date(programme, period)
        enrolment = entitlement.enrolment
        return PaymentDue(
            payment_id=self.ids.payment_id(record.id_number, programme.key, period.name),
            person_id=entitlement.person_id,
            id_number=record.id_number,
            name=record.name,
            region=enrolment.region,
            programme=programme.key,
            period=period,
            amount_fen=entitlement.amount_fen,
            persons=_persons(programme, enrolment, entitlement.period),
            due_date=due_date,
            late=due_date < self.run_month.first_day,
            bank_code=record.bank_code,
            account=record.account,
        )

    def adjustment(self, entitlement: Entitlement, accrued: Accrued, cause: str) -> PaymentDue | None:
        """The correction of a period already accrued, or None when it holds what is due (or was priced by
        an earlier release, whose periods are never re-priced). Positive: 补发差额, due on the programme's
        due day of the month after the run month; negative: a recovery due."""
        delta = entitlement.amount_fen - accrued.total_fen
        if delta == 0 or not accrued.monthly:
            return None
        record, programme, enrolment = entitlement.record, entitlement.programme, entitlement.enrolment
        payment = self.ids.payment_id(record.id_number, programme.key, entitlement.period.name).hex
        due_date = self.run_month.plus(1).day(programme.due_day)
        return PaymentDue(
            payment_id=adjustment_id(payment, accrued.adjustments + 1),
            person_id=entitlement.person_id,
            id_number=record.id_number,
            name=record.name,
            region=enrolment.region,
            programme=programme.key,
            period=entitlement.period,
            amount_fen=delta,
            persons=_persons(programme, enrolment, entitlement.period),
            due_date=due_date,
            late=False,
            bank_code=record.bank_code,
            account=record.account,
            adjusts=payment,
            adjustment=accrued.adjustments + 1,
            cause=cause,
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
        for found in self.owed(records, scope, watermark, policy_position):
            if found.amount_fen > PAYMENT_FEN_MAX:
                enrolment = found.enrolment
                raise PaymentAboveMaximum(
                    f"{found.record.id_number} {found.programme.key} {found.period.name}: the payment would be "
                    f"{format_yuan(found.amount_fen)} 元, more than the ledger's maximum per payment "
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
                for household in enrolment.households():
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
    ) -> Iterator[Entitlement]:
        """What each enrolment inside `scope` is due, period by period, for the periods this run must look
        at (docs/entitlement.md "What a run looks at"):
        - no completed run to start from, or a person whose record changed since it (a decision, a late
          death, a new enrolment, an account): every period from the enrolment's first month, zero ones
          too, each to be examined (`examine`): a stop recorded late makes a paid period due less;
        - a person unchanged since it: the periods starting after its month, with a positive amount; and
          when a policy was loaded since, also the periods it covered that hold a month the new policy
          prices differently (`changes`: a retroactive standard), to be examined;
        `check_amounts`, `due` and the month-end (ledger.disbursement) read it."""
        policy_unchanged = watermark is not None and policy_position <= watermark.registry_position
        for pid, record in records:
            changed = watermark is None or record.last_position > watermark.registry_position
            for enrolment in record.all_enrolments():
                if not self._inside(scope, enrolment.region):
                    continue
                programme = self.policy.programmes.get(enrolment.programme)
                if programme is None:
                    continue
                if enrolment.decisions:
                    spans = enrolment.active_spans(programme.starts, programme.stops)
                else:
                    spans = _PLAIN_SPANS[programme.starts](enrolment.effective_from)
                if not spans and not changed:
                    continue
                started = Month.of(enrolment.effective_from)
                if changed or not policy_unchanged:
                    first = started
                else:
                    assert watermark is not None
                    first = max(started, watermark.month.plus(1))
                for period in periods_overlapping(programme.cadence, first, self.run_month):
                    covered = watermark is not None and period.start <= watermark.month
                    active = _holds_active_month(spans, period)
                    if changed:
                        examine = True
                    elif covered:
                        if policy_unchanged:
                            continue
                        key = programme.key
                        if self.changes is not None and not self.changes.period_changed(key, period):
                            continue
                        if not active and (self.changes is None or not self.changes.whole_programme(key)):
                            continue  # never active, never paid: the record is what the covering run saw
                        examine = True
                    else:
                        if not active:
                            continue
                        examine = False
                    if not active:
                        amount_fen = 0
                    else:
                        try:
                            amount_fen = self.period_amount_fen(programme, period, record, enrolment, spans)
                        except NoStandardInForce:
                            continue
                    if amount_fen <= 0 and not examine:
                        continue
                    yield Entitlement(pid, record, enrolment, programme, period, amount_fen, examine)

    def period_amount_fen(
        self,
        programme: Programme,
        period: Period,
        record: PersonRecord,
        enrolment: Enrolment,
        spans: tuple[tuple[int, int], ...] | None = None,
    ) -> int:
        """The sum of the period's active months (see `domain.policy.month_amount_fen` for one month's rules)."""
        if spans is None:
            spans = enrolment.active_spans(programme.starts, programme.stops)
        total = 0
        plain = not enrolment.decisions
        phase_out = None if plain else enrolment.phase_out_from()
        for month in period.month_list():
            ordinal = month.ordinal
            if not any(first <= ordinal < end for first, end in spans):
                continue
            rate = self._rate(programme, month)
            if plain:
                priced_on = month.first_day
            else:
                # A phase-out's months keep the household and approved amount in force before it (004_… 二.1).
                priced_on = (
                    max(phase_out.plus(-1).first_day, enrolment.effective_from)
                    if phase_out is not None and month >= phase_out
                    else month.first_day
                )
                override = enrolment.override_fen_on(priced_on)
                if override is not None:
                    total += override
                    continue
            age = age_on(record.birth_date, month.first_day) if rate.tiers else 0
            total += rate.amount_for(age, enrolment.household_on(priced_on))
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


def _persons(programme: Programme, enrolment: Enrolment, period: Period) -> int:
    """The people a payment covers: the household's members at the period's start (`decide change`), or 1."""
    return enrolment.household_on(period.first_day).members if programme.unit == "household" else 1


def _holds_active_month(spans: tuple[tuple[int, int], ...], period: Period) -> bool:
    first, end = period.start.ordinal, period.end.ordinal
    return any(a < end and first < b for a, b in spans)


@lru_cache(maxsize=65536)
def _same_month_spans(effective_from: date) -> tuple[tuple[int, int], ...]:
    return ((Month.of(effective_from).ordinal, OPEN_END),)


@lru_cache(maxsize=65536)
def _next_month_spans(effective_from: date) -> tuple[tuple[int, int], ...]:
    return ((Month.of(effective_from).ordinal + 1, OPEN_END),)


# An enrolment without decisions pays every month from its start (the month-end's common case, cached).
_PLAIN_SPANS = {"same_month": _same_month_spans, "next_month": _next_month_spans}


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
