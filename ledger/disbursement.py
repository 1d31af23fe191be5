"""The month-end: accrue every payment due, in batches, exactly once.

How "exactly once" holds under re-runs, two runs at once and crashes:
- A payment's id is a deterministic function of (id_number, programme, period) under the ledger's id
  scheme (domain.ids: uuid5, or keyed for a ledger whose charter says so) and a payment is one stored
  event at version 1, so the store's primary key refuses a second one. No existence check decides what is written.
- Payments are written in chunks; each chunk is one `insert_events` transaction holding the payment
  events and, for every batch they join, the batch's next event (`Drafted` if new, `PaymentsAdded`).
  A chunk commits whole or not at all, so a payment is in exactly one batch, and a crash loses at most
  the chunk in flight, which the next run writes.
- When a chunk conflicts (another process wrote some of those payments, or appended to the same batch),
  the chunk is rolled back, the payments that now exist are dropped from it (they were paid by the
  other writer), batch versions are reloaded, and the rest is retried.
- A run records `RunCompleted` with the registry position it read only after every chunk is in, so a
  crashed run leaves no watermark and the next run re-examines everything the crashed one covered.
- A recovery due (多发追回) is offset against the payee's payments of the programme in the chunk that
  pays them: each offset is a further event of the `Recovery` aggregate (version n + 1) written in the
  chunk's transaction, so two writers offsetting one recovery conflict on its version, and the retry reads
  the recovery again from the store (`RecoveryBook.reload`). docs/entitlement.md "Recoveries".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from functools import cached_property
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.utils import get_topic

from domain.disbursement import (
    ADJUSTMENTS,
    BATCH_REGISTER_ID,
    DRAFTED,
    PAYMENTS,
    Accrual,
    Accrued,
    Batch,
    BatchFrozen,
    BatchRegister,
    Entitlement,
    Payment,
    PaymentDue,
    PolicyChanges,
    Recovery,
    RunLog,
    adjustment_batch_id,
    adjustment_id,
    batch_id,
    reissue_id,
    run_log_id,
)
from domain.errors import RuleBroken
from domain.ids import UUID5_IDS, IdScheme
from domain.periods import Month, Period
from domain.regions import region_contains
from ledger import topics  # noqa: F401  (stored topics of moved classes)
from ledger.oneoffs import oneoff_dues
from ledger.storage import (
    bulk_insert_events,
    chunked,
    collector_paused,
    existing_originators,
    first_event_states,
    notification_pages,
)
from projections.balances import BalanceFold
from projections.codec import PayloadCodec, datetime_json, json_string, stored_datetime

PAYMENTS_PER_CHUNK = 10_000  # payments per insert transaction
LOG_PAGE = 20_000  # notifications per query when folding the log
CHUNK_ATTEMPTS_MAX = 50  # conflicts tolerated on one chunk before giving up loudly

_PAYMENT_TOPIC = get_topic(Payment)
_ACCRUED_TOPIC = get_topic(Payment.Accrued)  # type: ignore[attr-defined]
_RECOVERY_TOPIC = get_topic(Recovery)
_RECOVERY_EVENT_TOPICS = tuple(
    get_topic(getattr(Recovery, name)) for name in ("Due", "Offset", "Collected", "WrittenOff")
)
_BALANCE_TOPICS = ("domain.disbursement:Payment.", "domain.disbursement:Batch.", "domain.disbursement:Recovery.")
Advance = Callable[[int], None]


class RunConflict(RuleBroken):
    """The month-end kept colliding with another writer and stopped; run it again to finish."""


@dataclass(slots=True)
class RunSummary:
    run_month: str
    scope: str
    payments: int = 0
    total_fen: int = 0
    late: int = 0
    already_accrued: int = 0
    conflicts: int = 0
    reissued: int = 0
    awaiting_account: int = 0  # returned payments whose account has not been corrected yet
    batches: set[UUID] = field(default_factory=set)
    # Adjustments of periods already accrued (issue 14): positive ones are bank lines (补发差额) in the run's
    # adjustment batches, negative ones recoveries due (多发追回).
    adjustments: int = 0
    adjusted_fen: int = 0
    recoveries: int = 0
    recovery_due_fen: int = 0
    examined: int = 0  # periods looked up in the store because they may have been accrued already
    # Recoveries offset against this run's payments (issue 14 item 3): how many offsets, how much, and
    # how many payments were settled whole by offset (no bank line).
    offsets: int = 0
    offset_fen: int = 0
    offset_whole: int = 0


class Disbursement(Application[UUID]):
    name = "Disbursement"
    # How payment and person ids derive from ID numbers (domain.ids): uuid5 unless the ledger's charter
    # says keyed; ledger.bootstrap.open_apps sets it from the charter.
    ids: IdScheme = UUID5_IDS

    # --- month-end -----------------------------------------------------------------------------

    def run_month_end(
        self,
        snapshot: Any,
        run_month: Month,
        *,
        scope: str,
        actor: str,
        advance: Advance | None = None,
    ) -> RunSummary:
        """Accrue everything payable by `run_month` for enrolments inside `scope`; idempotent."""
        with collector_paused():
            return self._run_month_end(snapshot, run_month, scope=scope, actor=actor, advance=advance)

    def _run_month_end(
        self, snapshot: Any, run_month: Month, *, scope: str, actor: str, advance: Advance | None
    ) -> RunSummary:
        policy = snapshot.policy
        summary = RunSummary(run_month=str(run_month), scope=scope)
        run_log = self.find(run_log_id(scope)) or RunLog(scope=scope)
        watermark = run_log.watermark_for(run_month)
        if (
            watermark is not None
            and snapshot.policy_position > watermark.registry_position
            and run_log.completed[-1] is not watermark
        ):
            # A run completed after the watermark (a later month, or this one again) may have priced periods
            # under a policy loaded since, neither the watermark's nor the current one (A, B, then A again):
            # comparing the two would miss them, so this run examines every period (re-running an earlier
            # month after a policy load: rare, and correct rather than fast).
            watermark = None
        changes = None
        if watermark is not None and snapshot.policy_position > watermark.registry_position:
            before = getattr(snapshot, "policy_at", lambda _: None)(watermark.registry_position)
            if before is not None:
                changes = PolicyChanges(before, policy)
        accrual = Accrual(policy, run_month, self.ids, changes=changes)
        batches = self.batches()  # read once: returned payments for the recoveries and the re-issues
        returned = {pid for batch in batches for pid in batch.returned_ids()}
        reissues = self._reissues_due(snapshot, scope, summary, batches)
        # Every amount is checked against the ledger-wide maximum before the first chunk is written, so a
        # wrong figure refuses the whole month-end instead of reaching a bank file (issue 13).
        accrual.check_amounts(snapshot.persons.items(), scope, watermark, snapshot.policy_position)
        causes = Causes(watermark, snapshot)
        # Progress is counted in persons of the registry gone through (of `len(snapshot.persons)`, the total
        # LedgerService.month_end announces), reported once their chunk is written: a total known from the
        # start, where the number of entitlements is known only at the end.
        persons = _Counted(snapshot.persons.items())
        entitlements = accrual.owed(persons, scope, watermark, snapshot.policy_position)
        # Payments are written with their batch, and every batch is registered in the same transaction: a
        # ledger without the batch register holds no payment, so nothing needs looking up (a first
        # month-end; two at once still meet on the store's uniqueness).
        nothing_accrued = self.find(BATCH_REGISTER_ID) is None
        book = RecoveryBook(self, returned)
        writer = ChunkWriter(self, policy.region_code, str(run_month), summary, book=book, actor=actor)
        # Re-issues first: a returned net payment's re-issue meets the recoveries its return reopened before
        # the payee's new payments do, so it pays what the returned one was to pay (docs/entitlement.md
        # "Recoveries").
        for chunk in chunked(reissues, PAYMENTS_PER_CHUNK):
            writer.write(chunk)  # type: ignore[arg-type]
        for chunk in chunked(entitlements, PAYMENTS_PER_CHUNK):
            dues = self._dues(chunk, accrual, causes, summary, nothing_accrued=nothing_accrued)
            writer.write(dues)  # type: ignore[arg-type]
            if advance:
                advance(persons.taken())
        if advance:
            advance(persons.taken())  # persons after the last entitlement (none due, or outside the scope)
        for chunk in chunked(oneoff_dues(self, snapshot, run_month, scope), PAYMENTS_PER_CHUNK):  # 临时救助, holidays
            writer.write(chunk)  # type: ignore[arg-type]
        self._complete(run_log, scope, run_month, snapshot.position, summary, actor)
        return summary

    def _dues(
        self,
        chunk: Sequence[Entitlement],
        accrual: Accrual,
        causes: Causes,
        summary: RunSummary,
        *,
        nothing_accrued: bool = False,
    ) -> list[PaymentDue]:
        """The payments and adjustments a chunk of entitlements comes to.

        An entitlement not to examine is a new period: its payment, written directly (a conflict with
        another writer is the store's to refuse). One to examine is looked up: a period not accrued yet is
        paid (arrears, late when its due date has passed); one accrued already is adjusted by what is due
        now minus what it holds (its payment and every adjustment so far), under the next adjustment
        number, so that two runs that read the same history write the same adjustment once."""
        examined = [] if nothing_accrued else [e for e in chunk if e.examine]
        held = self.accrued([self.ids.payment_id(e.record.id_number, e.programme.key, e.period.name) for e in examined])
        summary.examined += len(examined)
        dues = []
        for entitlement in chunk:
            if not entitlement.examine:
                dues.append(accrual.payment(entitlement))
                continue
            if nothing_accrued:
                if entitlement.amount_fen > 0:
                    dues.append(accrual.payment(entitlement))
                continue
            payment = self.ids.payment_id(
                entitlement.record.id_number, entitlement.programme.key, entitlement.period.name
            )
            accrued = held.get(payment)
            if accrued is None:
                if entitlement.amount_fen > 0:
                    dues.append(accrual.payment(entitlement))
                continue
            summary.already_accrued += 1  # paid before: only a difference is written
            adjustment = accrual.adjustment(entitlement, accrued, causes.of(entitlement))
            if adjustment is not None:
                dues.append(adjustment)
        return dues

    def accrued(self, payment_ids: Sequence[UUID]) -> dict[UUID, Accrued]:
        """What the store holds for each of these periods' payments that exists: the payment's amount and
        the sum and count of its adjustments (`adjustment_id(payment, 1)`, `…2`, … until one is missing).
        Read-only; the store's uniqueness, not this, keeps a second writer from adding the same one."""
        if not payment_ids:
            return {}
        held: dict[UUID, Accrued] = {}
        for pid, state in first_event_states(self.recorder, payment_ids).items():
            data = self.payload(state)
            held[pid] = Accrued(payment_fen=data["amount_fen"], monthly=bool(data.get("monthly", False)))
        pending = {pid: pid.hex for pid, found in held.items() if found.monthly}
        number = 1
        while pending:
            probes = {adjustment_id(hex_id, number): pid for pid, hex_id in pending.items()}
            found_states = first_event_states(self.recorder, probes)
            next_pending = {}
            for probe, state in found_states.items():
                pid = probes[probe]
                data = self.payload(state)
                # A Recovery.Due (negative adjustment) counts no persons; a Payment.Accrued does.
                signed = data["amount_fen"] if "persons" in data else -data["amount_fen"]
                was = held[pid]
                held[pid] = Accrued(was.payment_fen, True, was.adjustments_fen + signed, number)
                next_pending[pid] = pending[pid]
            pending = next_pending
            number += 1
        return held

    def _complete(
        self, run_log: RunLog, scope: str, run_month: Month, position: int, summary: RunSummary, actor: str
    ) -> None:
        for _ in range(CHUNK_ATTEMPTS_MAX):
            run_log.complete(
                month=run_month,
                registry_position=position,
                payments=summary.payments,
                total_fen=summary.total_fen,
                actor=actor,
            )
            try:
                self.save(run_log)
                return
            except IntegrityError:
                run_log = self.find(run_log_id(scope)) or RunLog(scope=scope)
        raise RunConflict("could not record the run's completion; run it again")

    def _reissues_due(
        self, snapshot: Any, scope: str, summary: RunSummary, batches: list[Batch] | None = None
    ) -> list[PaymentDue]:
        """Returned payments to pay again (补发), once the payee's account or name has been corrected.

        Each returned payment has exactly one possible re-issue, `reissue_id(returned)`, so the store
        refuses a second; a payment the bank paid is never re-issued; a re-issue that comes back returned
        can itself be re-issued after another correction. The re-issue keeps the period, amount and due
        date of what it replaces (so it counts late) and goes to the account and name on record now.
        """
        exported_name: dict[str, str] = {}  # a returned payment → the name its bank file carried, if corrected
        returned = []
        for batch in self.batches() if batches is None else batches:
            for pid in batch.returned_ids():
                returned.append(pid)
                if pid in batch.payee_names:
                    exported_name[pid] = batch.payee_names[pid]
        if not returned:
            return []
        candidates = {reissue_id(pid): pid for pid in returned}
        done = existing_originators(self.recorder, candidates)
        pending = [pid for rid, pid in candidates.items() if rid not in done]
        views = self.payment_views(pending)
        dues = []
        for pid in pending:
            view = views[pid]
            holder = self.ids.person_id(view.id_number)
            record = snapshot.persons.get(holder)
            if record is None or not region_contains(scope, view.region):
                continue
            if not corrected_since(view, record, exported_name.get(pid, view.name)):
                summary.awaiting_account += 1
                continue
            dues.append(
                PaymentDue(
                    payment_id=reissue_id(pid),
                    person_id=holder,
                    id_number=view.id_number,
                    name=record.name,
                    region=view.region,
                    programme=view.programme,
                    period=Period.parse(view.period),
                    amount_fen=view.amount_fen,
                    persons=view.persons,
                    due_date=date.fromisoformat(view.due_date),
                    late=True,
                    bank_code=record.bank_code,
                    account=record.account,
                    reissue_of=pid,
                )
            )
        summary.reissued += len(dues)
        return dues

    def batch_returns(self, batch: Batch, holder: Callable[[str], Any | None]) -> BatchReturns:
        """Where the returns of `batch` stand: re-issued already, corrected and waiting for a month-end to
        re-issue them (the same test as `_reissues_due`), or waiting for a corrected account. `holder(id
        number)` is the person as the registry holds them now (None: not in the registry)."""
        returned = batch.returned_ids()
        if not returned:
            return BatchReturns(0, 0, 0, 0)
        done = existing_originators(self.recorder, {reissue_id(pid): pid for pid in returned})
        pending = [pid for pid in returned if reissue_id(pid) not in done]
        views = self.payment_views(pending)
        ready = 0
        for pid in pending:
            record = holder(views[pid].id_number)
            name = batch.payee_names.get(pid, views[pid].name)
            if record is not None and corrected_since(views[pid], record, name):
                ready += 1
        return BatchReturns(len(returned), len(returned) - len(pending), ready, len(pending) - ready)

    def months_run(self, scope: str) -> list[str]:
        """The months whose month-end completed for `scope`, in the order they completed (repeats kept)."""
        run_log = self.find(run_log_id(scope))
        return [str(mark.month) for mark in run_log.completed] if isinstance(run_log, RunLog) else []

    # --- reading ---------------------------------------------------------------------------------

    def batches(self) -> list[Batch]:
        register = self.find(BATCH_REGISTER_ID)
        if register is None:
            return []
        return [self.repository.get(UUID(b)) for b in register.batch_ids]

    def batch(self, batch_ref: str) -> Batch:
        """A batch by its id or a unique prefix of it (as `batch list` prints)."""
        matches = [b for b in self.batches() if b.id.hex.startswith(batch_ref.replace("-", "").lower())]
        if len(matches) != 1:
            raise UnknownBatch(f"batch {batch_ref!r}: {'no such batch' if not matches else 'ambiguous prefix'}")
        return matches[0]

    def batch_by_id(self, batch_hex: str) -> Batch:
        found = self.find(UUID(batch_hex))
        if not isinstance(found, Batch):
            raise UnknownBatch(f"batch {batch_hex}: no such batch")
        return found

    def returned_payment_ids(self) -> set[str]:
        """Every payment (attempt) the bank returned: an offset it carried no longer counts."""
        return {pid for batch in self.batches() for pid in batch.returned_ids()}

    def recoveries(self) -> list[Recovery]:
        """Every recovery, folded from its events (one scan of the log for Recovery topics)."""
        found: dict[UUID, Recovery] = {}
        mapper = self.mapper
        for page in notification_pages(self, LOG_PAGE, topics=_RECOVERY_EVENT_TOPICS):
            for notification in page:
                domain_event = mapper.to_domain_event(notification)
                found[notification.originator_id] = domain_event.mutate(found.get(notification.originator_id))
        return list(found.values())

    def recovery(self, ref: str) -> Recovery:
        """A recovery by its id or a unique prefix of it (as `report recoveries` prints)."""
        wanted = ref.replace("-", "").lower()
        matches = [r for r in self.recoveries() if r.id.hex.startswith(wanted)] if wanted else []
        if len(matches) != 1:
            raise UnknownRecovery(f"recovery {ref!r}: {'no such recovery' if not matches else 'ambiguous prefix'}")
        return matches[0]

    def payments(self, payment_ids: Iterable[str]) -> list[Payment]:
        return [self.repository.get(UUID(p)) for p in payment_ids]

    def payment_views(self, payment_ids: Iterable[str]) -> dict[str, PaymentView]:
        """Payments by id (hex), loaded in pages straight from their single stored event."""
        states = first_event_states(self.recorder, [UUID(p) for p in payment_ids])
        return {pid.hex: PaymentView.from_payload(pid.hex, self.payload(state)) for pid, state in states.items()}

    def balances(self, as_of: datetime | None = None) -> BalanceFold:
        """Balances folded from the log, counting only events recorded at or before `as_of`."""
        result = BalanceFold()
        for page in notification_pages(self, LOG_PAGE):
            for notification in page:
                if not notification.topic.startswith(_BALANCE_TOPICS):
                    continue  # run logs, registers and audit seals carry no money
                data = self.payload(notification.state)
                if as_of is not None and stored_datetime(data["timestamp"]) > as_of:
                    continue
                result.apply(notification.topic, notification.originator_id.hex, data)
        return result

    def payload(self, state: bytes) -> dict[str, Any]:
        """A stored event's fields (projections.codec), without building the event: payments are JSON
        primitives by design (see `ChunkWriter._accrued`)."""
        return self.codec.payload(state)

    @cached_property
    def codec(self) -> PayloadCodec:
        """The mapper's cipher and compressor, undone the mapper's way (projections.codec)."""
        return PayloadCodec.of_mapper(self.mapper)

    def find(self, aggregate_id: UUID) -> Any:
        """The aggregate with this id (a batch, the batch register, a bank file, a run log), or None."""
        try:
            return self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None


class UnknownBatch(RuleBroken):
    """No batch has that id."""


class UnknownRecovery(RuleBroken):
    """No recovery has that id (or the prefix names more than one)."""


class RecoveryBook:
    """The recoveries a month-end may offset, per payee (ID number) and programme, as `Recovery`
    aggregates read from the store at the run's start; the run's own chunks change them in memory and
    keep the change only once the chunk is committed (`committed`), else read them again (`reload`)."""

    def __init__(self, app: Disbursement, returned: set[str]) -> None:
        self.app = app
        self.returned = returned
        self.by_payee: dict[tuple[str, str], list[Recovery]] = {}
        for recovery in app.recoveries():
            self._add(recovery)
        self.touched: dict[UUID, Recovery] = {}  # changed by the chunk being written
        self.created: list[Recovery] = []  # made by the chunk being written

    def _add(self, recovery: Recovery) -> None:
        found = self.by_payee.setdefault((recovery.id_number, recovery.programme), [])
        found[:] = [r for r in found if r.id != recovery.id]
        found.append(recovery)
        found.sort(key=lambda r: (r.period, r.run_month, r.id.hex))  # the oldest period is recovered first

    def add_new(self, recovery: Recovery) -> None:
        self.created.append(recovery)
        self._add(recovery)

    def offset(self, due: PaymentDue) -> PaymentDue:
        """The payment with the payee's open recoveries of its programme offset against it, oldest first;
        each offset an event on its recovery (collected by `pending_events`)."""
        recoveries = self.by_payee.get((due.id_number, due.programme))
        if not recoveries or due.amount_fen <= 0:
            return due
        left = due.amount_fen
        for recovery in recoveries:
            if left == 0:
                break
            take = min(left, recovery.remaining(self.returned))
            if take <= 0:
                continue
            recovery.offset(
                payment_id=due.payment_id.hex, amount_fen=take, period=due.period.name, returned=self.returned
            )
            self.touched[recovery.id] = recovery
            left -= take
        return due if left == due.amount_fen else replace(due, offset_fen=due.amount_fen - left)

    def pending_events(self) -> list[Any]:
        """The chunk's recovery events in aggregate order: each new recovery's `Due` before its offsets."""
        events: list[Any] = []
        for recovery in (*self.created, *(r for r in self.touched.values() if r not in self.created)):
            events.extend(recovery.collect_events())
        return events

    def committed(self) -> None:
        self.touched.clear()
        self.created.clear()

    def reload(self) -> None:
        """After a conflict: every recovery the chunk touched or made, as the store now holds it."""
        ids = {r.id for r in self.created} | set(self.touched)
        for recovery in self.created:
            found = self.by_payee.get((recovery.id_number, recovery.programme), [])
            found[:] = [r for r in found if r.id != recovery.id]
        self.committed()
        for rid in ids:
            stored = self.app.find(rid)
            if isinstance(stored, Recovery):
                self._add(stored)


@dataclass(frozen=True, slots=True)
class PaymentView:
    """A payment as stored (its one `Accrued` event), for exports, results and re-issues."""

    payment_id: str
    id_number: str
    name: str
    programme: str
    period: str
    region: str
    amount_fen: int
    persons: int
    due_date: str
    late: bool
    batch_id: str
    bank_code: str
    account: str
    run_month: str
    reissue_of: str
    adjusts: str = ""  # an adjustment (补发差额): the period's payment it corrects (issue 14)
    adjustment: int = 0
    offset_fen: int = 0  # settled by offsetting recoveries due: the bank line is `net_fen`
    balance_region: str = ""  # a payment offset whole (no batch): the region its balances count in

    @property
    def net_fen(self) -> int:
        """What the bank line carries (exports, batch totals, result files)."""
        return self.amount_fen - self.offset_fen

    @classmethod
    def from_payload(cls, payment_id: str, data: dict[str, Any]) -> PaymentView:
        return cls(
            payment_id=payment_id,
            id_number=data["id_number"],
            name=data["name"],
            programme=data["programme"],
            period=data["period"],
            region=data["region"],
            amount_fen=data["amount_fen"],
            persons=data["persons"],
            due_date=data["due_date"],
            late=data["late"],
            batch_id=data["batch_id"],
            bank_code=data["bank_code"],
            account=data["account"],
            run_month=data["run_month"],
            reissue_of=data.get("reissue_of", ""),
            adjusts=data.get("adjusts", ""),
            adjustment=data.get("adjustment", 0),
            offset_fen=data.get("offset_fen", 0),
            balance_region=data.get("balance_region", ""),
        )


class Causes:
    """Why a run looks at a period again, recorded with each adjustment it makes (issue 14)."""

    def __init__(self, watermark: Any, snapshot: Any) -> None:
        self.watermark = watermark
        self.position = snapshot.position
        self.policy_position = snapshot.policy_position

    def of(self, entitlement: Entitlement) -> str:
        if self.watermark is None:
            return f"no completed run before; registry at {self.position}"
        parts = []
        if entitlement.record.last_position > self.watermark.registry_position:
            parts.append(f"record changed at {entitlement.record.last_position}")
        if self.policy_position > self.watermark.registry_position:
            parts.append(f"policy loaded at {self.policy_position}")
        return "; ".join(parts) or f"registry at {self.position}"


@dataclass(frozen=True, slots=True)
class BatchReturns:
    """The payments of one batch the bank returned, by where their re-issue (补发) stands."""

    returned: int
    reissued: int  # paid again already, by a month-end after the correction
    ready: int  # account or name corrected: the next month-end re-issues them
    awaiting_account: int  # nothing corrected yet: a month-end would send them to the same account again


def corrected_since(view: PaymentView, record: Any, exported_name: str) -> bool:
    """Whether a returned payment may be paid again: the payee's account or name on record now differs
    from what its bank file carried (BE01 户名不符 is corrected by `decide rename`, a closed account by
    `account set`)."""
    sent = (view.bank_code, view.account, exported_name)
    return (record.bank_code, record.account, record.name) != sent


class _Counted:
    """An iterable that counts what has been taken from it, for progress reported after the fact."""

    def __init__(self, items: Iterable[Any]) -> None:
        self._items = items
        self._count = 0
        self._reported = 0

    def __iter__(self) -> Iterator[Any]:
        for item in self._items:
            self._count += 1
            yield item

    def taken(self) -> int:
        """How many were taken since the last call."""
        new, self._reported = self._count - self._reported, self._count
        return new


class ChunkWriter:
    """Writes chunks of due payments with their batch events, one transaction per chunk."""

    def __init__(
        self,
        app: Disbursement,
        region: str,
        run_month: str,
        summary: RunSummary,
        *,
        book: RecoveryBook | None = None,
        actor: str = "",
    ) -> None:
        self.app = app
        self.region = region
        self.run_month = run_month
        self.summary = summary
        self.book = book  # None: no offsets (re-issue-only writers, tests)
        self.actor = actor
        self.open_batches: dict[tuple[str, str], Batch] = {}
        self.register: BatchRegister | None = None
        self.now = datetime.now(UTC)
        # The mapper's JSON form of a datetime (eventsourcing.persistence.DatetimeAsISO).
        self.timestamp_json = datetime_json(self.now)

    def write(self, chunk: Sequence[PaymentDue]) -> None:
        pending = list(chunk)
        for _ in range(CHUNK_ATTEMPTS_MAX):
            if not pending:
                return
            stored, batches_touched, register, written = self._events_for(pending)
            try:
                bulk_insert_events(self.app.recorder, stored)
            except IntegrityError:
                self.summary.conflicts += 1
                if self.book is not None:
                    self.book.reload()
                pending = self._after_conflict(pending)
                continue
            if self.book is not None:
                self.book.committed()
            self._committed(written, batches_touched, register)
            return
        raise RunConflict(f"gave up after {CHUNK_ATTEMPTS_MAX} conflicts on one chunk; run it again")

    def _events_for(
        self, pending: Sequence[PaymentDue]
    ) -> tuple[list[Any], list[Batch], BatchRegister | None, list[PaymentDue]]:
        """Each touched batch's pending events, then the payment events, then the recovery events, mapped
        for the recorder; and the dues as written (with their offsets).

        Batch events come first in the log, so a reader folding it meets a payment's batch (and its
        region) before the payment. The chunk's recoveries due are made first, so a payment later in the
        same chunk (the same run: a back-dated change adjusts February and March, then pays April) is
        offset against them; a recovery made in a later chunk waits for the payee's next payment.
        """
        groups: dict[tuple[str, str], list[PaymentDue]] = {}
        recoveries = [due for due in pending if due.is_recovery]
        if self.book is not None:
            for due in recoveries:
                self.book.add_new(self._recovery(due))
        written: list[PaymentDue] = list(recoveries)
        offset_whole: list[PaymentDue] = []
        for due in pending:
            if due.is_recovery:
                continue
            if self.book is not None:
                due = self.book.offset(due)
            written.append(due)
            if due.net_fen == 0:
                offset_whole.append(due)  # settled whole by offset: no bank line, in no batch
            elif due.adjusts:
                groups.setdefault((due.programme, ADJUSTMENTS), []).append(due)  # the run's 补发差额 batch
            else:
                groups.setdefault((due.programme, due.period.name), []).append(due)
        register = self._register()
        payments: list[StoredEvent] = []
        touched = []
        for key, dues in groups.items():
            batch = self._open_batch(key, dues[0], register)
            batch.add_payments([(d.payment_id.hex, d.net_fen) for d in dues])  # the bank lines: net
            touched.append(batch)
            payments.extend(self._accrued(due, batch.id) for due in dues)
        payments.extend(self._accrued(due, None) for due in offset_whole)
        batch_events: list[Any] = []
        for batch in touched:
            batch_events.extend(batch.collect_events())
        register_events = list(register.collect_events())
        mapper = self.app.mapper
        stored = [mapper.to_stored_event(e) for e in (*register_events, *batch_events)]
        stored.extend(payments)
        if self.book is not None:
            stored.extend(mapper.to_stored_event(e) for e in self.book.pending_events())
        else:
            for due in recoveries:
                stored.extend(mapper.to_stored_event(e) for e in self._recovery(due).collect_events())
        return stored, touched, register if register_events else None, written

    def _recovery(self, due: PaymentDue) -> Recovery:
        """A negative adjustment: a recovery due from the payee, in the policy region's balances."""
        return Recovery(
            id_number=due.id_number,
            programme=due.programme,
            period=due.period.name,
            name=due.name,
            region=due.region,
            balance_region=self.region,
            amount_fen=-due.amount_fen,
            adjusts=due.adjusts,
            adjustment=due.adjustment,
            cause=due.cause,
            run_month=self.run_month,
            actor=self.actor,
        )

    def _accrued(self, due: PaymentDue, batch: UUID | None) -> StoredEvent:
        """`Payment.Accrued` stored exactly as the application's mapper would store it.

        The payload is JSON primitives plus the mapper's own encoding of the timestamp, so the
        library reads it back as an ordinary `Payment.Accrued` (tests/ledger/test_month_end.py checks
        this against `Mapper.to_stored_event`). Building the bytes directly skips constructing an
        event object per payment, the largest cost of a month-end after the accrual itself.
        """
        # Every field but the payee's name is validated ASCII (digits, policy keys, ISO dates), so only
        # the name needs JSON escaping; the template lists the fields in the mapper's order.
        payload = (
            f'{{"timestamp":{self.timestamp_json},"originator_topic":"{_PAYMENT_TOPIC}",'
            f'"id_number":"{due.id_number}","programme":"{due.programme}","period":"{due.period.name}",'
            f'"name":{json_string(due.name)},"region":"{due.region}","amount_fen":{due.amount_fen},'
            f'"persons":{due.persons},"due_date":"{due.due_date.isoformat()}",'
            f'"late":{"true" if due.late else "false"},"batch_id":"{batch.hex if batch else ""}",'
            f'"bank_code":"{due.bank_code}","account":"{due.account}","run_month":"{self.run_month}",'
            f'"reissue_of":"{due.reissue_of}","monthly":{"true" if due.monthly else "false"},'
            f'"adjusts":"{due.adjusts}","adjustment":{due.adjustment},"cause":{json_string(due.cause)},'
            f'"offset_fen":{due.offset_fen},"balance_region":"{"" if batch else self.region}"}}'
        ).encode()
        mapper = self.app.mapper
        if mapper.compressor:
            payload = mapper.compressor.compress(payload)
        if mapper.cipher:
            payload = mapper.cipher.encrypt(payload)
        return StoredEvent(originator_id=due.payment_id, originator_version=1, topic=_ACCRUED_TOPIC, state=payload)

    def _open_batch(self, key: tuple[str, str], due: PaymentDue, register: BatchRegister) -> Batch:
        """The drafted batch for this programme and period in this run, or the next sequence's."""
        batch = self.open_batches.get(key)
        if batch is not None:
            return batch
        programme, period = key
        kind = ADJUSTMENTS if period == ADJUSTMENTS else PAYMENTS
        if kind == ADJUSTMENTS:
            period = self.run_month  # an adjustment batch's period is its run month (issue 14)
        seq = 0
        while True:
            if kind == ADJUSTMENTS:
                found = self.app.find(adjustment_batch_id(self.region, programme, self.run_month, seq))
            else:
                found = self.app.find(batch_id(self.region, programme, period, self.run_month, seq))
            if found is None:
                batch = Batch(
                    region=self.region,
                    programme=programme,
                    period=period,
                    run_month=self.run_month,
                    seq=seq,
                    due_date=due.due_date.isoformat(),
                    kind=kind,
                )
                register.register(batch)
                break
            if found.status == DRAFTED:
                batch = found
                break
            seq += 1
        self.open_batches[key] = batch
        return batch

    def _register(self) -> BatchRegister:
        if self.register is None:
            self.register = self.app.find(BATCH_REGISTER_ID) or BatchRegister()
        return self.register

    def _committed(self, pending: Sequence[PaymentDue], touched: list[Batch], register: BatchRegister | None) -> None:
        payments = [d for d in pending if not d.adjusts]
        self.summary.payments += len(payments)
        self.summary.total_fen += sum(d.amount_fen for d in payments)
        self.summary.late += sum(1 for d in payments if d.late)
        self.summary.batches.update(b.id for b in touched)
        for due in pending:
            if due.is_recovery:
                self.summary.recoveries += 1
                self.summary.recovery_due_fen -= due.amount_fen
            elif due.adjusts:
                self.summary.adjustments += 1
                self.summary.adjusted_fen += due.amount_fen
            if due.offset_fen:
                self.summary.offsets += 1
                self.summary.offset_fen += due.offset_fen
                self.summary.offset_whole += due.net_fen == 0

    def _after_conflict(self, pending: Sequence[PaymentDue]) -> list[PaymentDue]:
        """Drop payments another writer stored, forget cached aggregates, and try the rest again."""
        self.open_batches.clear()
        self.register = None
        existing = existing_originators(self.app.recorder, (d.payment_id for d in pending))
        self.summary.already_accrued += len(existing)
        return [d for d in pending if d.payment_id not in existing]


_ = (BatchFrozen,)
