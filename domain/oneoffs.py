"""One-off payments: 临时救助 grants (`AidGrant`) and holiday payments (policy `[oneoffs.KEY]`).

Neither is a cadence programme: nothing accrues for them month by month. What they owe becomes an
ordinary `Payment` at the month-end (`oneoff_dues` here, chained into the month-end by ledger.oneoffs),
so batches, exports, bank results, balances and the audit treat them like any payment.

Exactly once, by the store (DESIGN.md, The event log):
- A grant's id is a deterministic function of (ID number, decision reference, stage) under the ledger's
  id scheme (`grant_id`), so the same grant recorded twice is one stored `AidGrant.Granted` at version 1:
  the store refuses the second. 分阶段救助 (004_f2a082fc87a827a6.txt 二.6 "一次审批、分阶段救助") is several
  stages under one decision reference, each its own grant.
- A grant's payment id derives from the grant id (`aid_payment_id`), not from (ID number, programme,
  period): two grants to one household can fall in one month, and each is paid once.
- A holiday payment's id is `ids.payment_id(ID number, KEY, month)`: one per payee whatever the number of
  listed programmes they are enrolled in.

Rules (docs/entitlement.md, "One-off payments"):
- a grant is within the policy's `min` and `max` per grant (001_d1b0155c81b44253.txt 九.13 "每户给予
  200—30000元的临时救助"), refused naming `AidBelowMinimum` / `AidAboveMaximum` otherwise;
- a grant above `approval_above` is payable only after a second account approved it (002_cbb0aaa0548496ba.txt
  一 "落实“分级审批”“先行救助”制度"); one at or below it is payable at once (004_… 二.6 "小金额先行救助");
- a grant is due `due_days` after its date and paid by the month-end of its month or any later one (then
  late); its period is its month (`YYYY-MM`);
- a holiday payment goes to every payee with an enrolment in one of its programmes payable in its month
  (`Enrolment.active_spans`: active in that month), once; `per = "person"` pays the amount × the household's members.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.disbursement import PaymentDue, Watermark
from domain.eligibility import NAMESPACE, PersonRecord
from domain.errors import RuleBroken
from domain.ids import IdScheme
from domain.money import format_yuan
from domain.periods import Month, Period
from domain.policy import TEMPORARY_AID, OneOff, Policy, TemporaryAid
from domain.regions import region_contains

AID_KINDS = ("emergency", "expense")  # 急难型, 支出型 (004_… 二.6)
STAGES_MAX = 99  # stages (分阶段) under one decision
REASON_MAX = 200  # characters of a grant's reason or decision reference
# The natural key of a grant lives in the payment key space under a label no programme key can take
# (policy keys are [a-z0-9_]), so a keyed ledger's grant ids reveal no ID number, as its payment ids.
_GRANT_LABEL = "aid-grant"


def grant_id(ids: IdScheme, id_number: str, decision_ref: str, stage: int) -> UUID:
    """The one grant for (ID number, decision, stage) under the ledger's id scheme."""
    return ids.payment_id(id_number, _GRANT_LABEL, f"{decision_ref}#{stage}")


def aid_payment_id(grant: UUID) -> UUID:
    """The one payment a grant can have: a second one is refused by the store."""
    return uuid5(NAMESPACE, f"aid-payment|{grant.hex}")


class NoTemporaryAid(RuleBroken):
    """The loaded policy has no `[programmes.temporary_aid]`: there are no bounds to grant within."""


class AidBelowMinimum(RuleBroken):
    """A temporary-aid grant below the policy's `min` per grant."""


class AidAboveMaximum(RuleBroken):
    """A temporary-aid grant above the policy's `max` per grant."""


class UnknownAidKind(RuleBroken):
    """Temporary aid is `emergency` (急难型) or `expense` (支出型)."""


class BadStage(RuleBroken):
    """A stage (分阶段) is a whole number 1-99."""


class BadAidReference(RuleBroken):
    """A reason or decision reference is empty, too long or holds control characters."""


class PersonHasNoAccount(RuleBroken):
    """Aid is paid to the person's 一卡通 account: a person without one cannot be granted aid."""


class AidRegionUnclear(RuleBroken):
    """The person is enrolled in several regions: the grant must name one (`--region`)."""


class AidRegionOutsidePolicy(RuleBroken):
    """A grant's region must lie inside the region the policy serves."""


class GrantAlreadyRecorded(RuleBroken):
    """A grant with the same ID number, decision and stage is recorded with other terms."""


class AidNeedsNoApproval(RuleBroken):
    """A grant at or below the policy's `approval_above` is payable without approval."""


class AidAlreadyApproved(RuleBroken):
    """An approved grant cannot be approved again."""


class AidApproverMustDifferFromGranter(RuleBroken):
    """Maker-checker: the account that granted aid cannot approve it."""


class UnknownGrant(RuleBroken):
    """No grant has that id (or the prefix is ambiguous)."""


def check_grant(aid: TemporaryAid | None, *, amount_fen: int, kind: str, stage: int) -> None:
    """Refuse a grant outside the policy's bounds, naming the rule and the bound."""
    if aid is None:
        raise NoTemporaryAid("the loaded policy has no [programmes.temporary_aid]: load one that states its bounds")
    if kind not in AID_KINDS:
        raise UnknownAidKind(f"kind {kind!r} is not one of {', '.join(AID_KINDS)}")
    if not 1 <= stage <= STAGES_MAX:
        raise BadStage(f"stage {stage} is not 1-{STAGES_MAX}")
    if amount_fen < aid.min_fen:
        raise AidBelowMinimum(
            f"{format_yuan(amount_fen)} 元 is below the policy's minimum {format_yuan(aid.min_fen)} 元 per grant "
            "(programmes.temporary_aid.min)"
        )
    if amount_fen > aid.max_fen:
        raise AidAboveMaximum(
            f"{format_yuan(amount_fen)} 元 is above the policy's maximum {format_yuan(aid.max_fen)} 元 per grant "
            "(programmes.temporary_aid.max)"
        )


def check_reference(label: str, text: str) -> str:
    cleaned = " ".join(text.split())
    if not cleaned or len(cleaned) > REASON_MAX or any(ord(c) < 32 for c in text if c not in "\t\n\r"):
        raise BadAidReference(f"{label} must be 1-{REASON_MAX} characters of text")
    return cleaned


def grant_region(record_regions: Iterable[str], region: str | None, policy_region: str) -> str:
    """The region a grant is paid in: `region` when given, else the person's one enrolment region."""
    if region is None:
        regions = sorted(set(record_regions))
        if len(regions) != 1:
            raise AidRegionUnclear(
                f"the person is enrolled in {len(regions)} regions ({', '.join(regions) or 'none'}): give --region"
            )
        region = regions[0]
    if not region_contains(policy_region, region):
        raise AidRegionOutsidePolicy(f"region {region} is outside the policy's region {policy_region}")
    return region


class AidGrant(Aggregate):
    """One 临时救助 grant (one stage of one decision) to one household, in the registry's log."""

    @classmethod
    def record(
        cls,
        *,
        grant: UUID,
        id_number: str,
        region: str,
        amount_fen: int,
        reason: str,
        granted_on: date,
        kind: str,
        decision_ref: str,
        stage: int,
        aid: TemporaryAid,
        actor: str,
    ) -> AidGrant:
        """A grant within `aid`'s bounds (`check_grant` first), due `aid.due_days` after `granted_on`; its id
        is `grant` (`grant_id` under the ledger's id scheme: `_create` is eventsourcing's constructor that
        takes an id)."""
        check_grant(aid, amount_fen=amount_fen, kind=kind, stage=stage)
        return cls._create(
            event_class=cls.Granted,  # type: ignore[attr-defined]
            id=grant,
            id_number=id_number,
            region=region,
            amount_fen=amount_fen,
            reason=reason,
            granted_on=granted_on.isoformat(),
            kind=kind,
            decision_ref=decision_ref,
            stage=stage,
            due_date=(granted_on + timedelta(days=aid.due_days)).isoformat(),
            needs_approval=aid.needs_approval(amount_fen),
            actor=actor,
        )

    @event("Granted")
    def __init__(
        self,
        id_number: str,
        region: str,
        amount_fen: int,
        reason: str,
        granted_on: str,
        kind: str,
        decision_ref: str,
        stage: int,
        due_date: str,
        needs_approval: bool,
        actor: str,
    ) -> None:
        self.id_number = id_number
        self.region = region
        self.amount_fen = amount_fen
        self.reason = reason
        self.granted_on = granted_on
        self.kind = kind
        self.decision_ref = decision_ref
        self.stage = stage
        self.due_date = due_date
        self.needs_approval = needs_approval
        self.granted_by = actor
        self.approved_by = ""

    def terms(self) -> tuple[str, str, int, str, str, str]:
        """What a second recording of the same grant must repeat to be the same grant."""
        return (self.id_number, self.region, self.amount_fen, self.granted_on, self.kind, self.reason)

    def approve(self, *, actor: str) -> None:
        if not self.needs_approval:
            raise AidNeedsNoApproval(f"grant {self.id.hex} is at or below the approval threshold: payable already")
        if self.approved_by:
            raise AidAlreadyApproved(f"grant {self.id.hex} was approved by {self.approved_by}")
        if actor == self.granted_by:
            raise AidApproverMustDifferFromGranter(
                f"{actor} granted {self.id.hex} and cannot approve it: a second person must"
            )
        self._approved(actor=actor)

    @event("Approved")
    def _approved(self, actor: str) -> None:
        self.approved_by = actor


@dataclass(slots=True)
class GrantRecord:
    """A grant as the month-end and `aid list` need it, folded from its stored events."""

    grant_id: UUID
    id_number: str
    region: str
    amount_fen: int
    reason: str
    granted_on: date
    kind: str
    decision_ref: str
    stage: int
    due_date: date
    needs_approval: bool
    granted_by: str
    approved_by: str = ""
    last_position: int = 0

    @property
    def payable(self) -> bool:
        return not self.needs_approval or bool(self.approved_by)

    @property
    def month(self) -> Month:
        return Month.of(self.granted_on)

    @property
    def state(self) -> str:
        return "payable" if self.payable else "awaiting approval"

    def as_json(self) -> dict[str, Any]:
        return {
            "grant": self.grant_id.hex,
            "id_number": self.id_number,
            "region": self.region,
            "amount_fen": self.amount_fen,
            "reason": self.reason,
            "on": self.granted_on.isoformat(),
            "kind": self.kind,
            "decision": self.decision_ref,
            "stage": self.stage,
            "due_date": self.due_date.isoformat(),
            "needs_approval": self.needs_approval,
            "granted_by": self.granted_by,
            "approved_by": self.approved_by,
            "state": self.state,
            "payment_id": aid_payment_id(self.grant_id).hex,
        }


GRANT_TOPIC_PREFIX = "domain.oneoffs:AidGrant."


def apply_grant_event(
    grants: dict[UUID, GrantRecord], originator_id: UUID, name: str, data: Mapping[str, Any], position: int
) -> None:
    """Fold one stored AidGrant event (`name`: the event class name) into `grants`."""
    if name == "Granted":
        grants[originator_id] = GrantRecord(
            grant_id=originator_id,
            id_number=data["id_number"],
            region=data["region"],
            amount_fen=data["amount_fen"],
            reason=data["reason"],
            granted_on=date.fromisoformat(data["granted_on"]),
            kind=data["kind"],
            decision_ref=data["decision_ref"],
            stage=data["stage"],
            due_date=date.fromisoformat(data["due_date"]),
            needs_approval=data["needs_approval"],
            granted_by=data["actor"],
            last_position=position,
        )
    elif name == "Approved":
        record = grants[originator_id]
        record.approved_by = data["actor"]
        record.last_position = position


# --- what the month-end owes --------------------------------------------------------------------------


def _covered(watermark: Watermark | None, policy_position: int) -> Watermark | None:
    """The completed run whose view still holds: none when the policy was loaded after it."""
    return watermark if watermark is not None and policy_position <= watermark.registry_position else None


def aid_dues(
    grants: Iterable[GrantRecord],
    persons: Mapping[UUID, PersonRecord],
    run_month: Month,
    scope: str,
    ids: IdScheme,
    watermark: Watermark | None = None,
    policy_position: int = 0,
) -> Iterator[PaymentDue]:
    """One payment per payable grant of `run_month` or earlier inside `scope`, earliest due first (a batch
    takes its first payment's due date). Grants a completed run already saw unchanged are skipped; the
    store (and the caller's existence check) refuses the rest that were paid."""
    covered = _covered(watermark, policy_position)
    chosen = []
    for grant in grants:
        if not grant.payable or grant.month > run_month or not region_contains(scope, grant.region):
            continue
        if covered is not None and grant.last_position <= covered.registry_position and grant.month <= covered.month:
            continue
        chosen.append(grant)
    chosen.sort(key=lambda g: (g.due_date, g.grant_id.hex))
    for grant in chosen:
        pid = ids.person_id(grant.id_number)
        record = persons.get(pid)
        if record is None:
            continue
        yield PaymentDue(
            payment_id=aid_payment_id(grant.grant_id),
            person_id=pid,
            id_number=grant.id_number,
            name=record.name,
            region=grant.region,
            programme=TEMPORARY_AID,
            period=Period(grant.month, 1),
            amount_fen=grant.amount_fen,
            persons=_household_members(record, grant.region, grant.granted_on),
            due_date=grant.due_date,
            late=grant.due_date < run_month.first_day,
            bank_code=record.bank_code,
            account=record.account,
            monthly=False,  # a fixed sum: never re-priced by an adjustment
        )


def _household_members(record: PersonRecord, region: str, day: date) -> int:
    """The people a household's aid covers: the largest household the person heads there, else 1."""
    return max(
        (e.household.members for e in record.all_enrolments() if e.region == region and e.effective_from <= day),
        default=1,
    )


def holiday_dues(
    policy: Policy,
    persons: Iterable[tuple[UUID, PersonRecord]],
    run_month: Month,
    scope: str,
    ids: IdScheme,
    watermark: Watermark | None = None,
    policy_position: int = 0,
) -> Iterator[PaymentDue]:
    """One payment per payee and holiday payment of `run_month` or earlier (later: late), for payees with an
    enrolment in one of its programmes payable in its month inside `scope`. Persons a completed run at or
    after that month already saw unchanged are skipped."""
    oneoffs = [o for o in policy.oneoffs.values() if o.month <= run_month]
    if not oneoffs:
        return
    covered = _covered(watermark, policy_position)
    for pid, record in persons:
        for oneoff in oneoffs:
            seen = covered is not None and covered.month >= oneoff.month
            if seen and covered is not None and record.last_position <= covered.registry_position:
                continue
            due = _holiday_due(policy, oneoff, pid, record, run_month, scope, ids)
            if due is not None:
                yield due


def _active_in(policy: Policy, enrolment: Any, month: Month) -> bool:
    """The enrolment pays `month` under its programme's `starts`/`stops` (domain.eligibility, issue 14)."""
    programme = policy.programmes[enrolment.programme]
    return any(a <= month.ordinal < b for a, b in enrolment.active_spans(programme.starts, programme.stops))


def _holiday_due(
    policy: Policy, oneoff: OneOff, pid: UUID, record: PersonRecord, run_month: Month, scope: str, ids: IdScheme
) -> PaymentDue | None:
    held = [
        e
        for e in record.all_enrolments()
        if e.programme in oneoff.programmes and region_contains(scope, e.region) and _active_in(policy, e, oneoff.month)
    ]
    if not held:
        return None
    held.sort(key=lambda e: (oneoff.programmes.index(e.programme), e.effective_from))
    members = max(e.household.members if policy.programmes[e.programme].unit == "household" else 1 for e in held)
    due_date = oneoff.month.day(oneoff.due_day)
    return PaymentDue(
        payment_id=ids.payment_id(record.id_number, oneoff.key, str(oneoff.month)),
        person_id=pid,
        id_number=record.id_number,
        name=record.name,
        region=held[0].region,
        programme=oneoff.key,
        period=Period(oneoff.month, 1),
        amount_fen=oneoff.amount_fen * (members if oneoff.per == "person" else 1),
        persons=members,
        due_date=due_date,
        late=due_date < run_month.first_day,
        bank_code=record.bank_code,
        account=record.account,
        monthly=False,  # a fixed sum: never re-priced by an adjustment
    )
