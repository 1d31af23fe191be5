"""One-off payments in the ledger: 临时救助 grants recorded in the registry's log (`aid grant`, `aid approve`,
`aid list`) and what the month-end owes for them and for the policy's holiday payments (`oneoff_dues`,
chained into `Disbursement._run_month_end` beside the re-issues). Rules: domain.oneoffs and
docs/entitlement.md, "One-off payments".

A grant is written once by the store: its id is `grant_id(ID number, decision, stage)`, so a second
recording of the same grant is the store's conflict; it is then read back and reported as already
recorded when its terms are the same, refused (`GrantAlreadyRecorded`) when they differ. An approval
is a second event on the grant, saved at the version it read: two approvals at once, one is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from domain.disbursement import PaymentDue, RunLog, run_log_id
from domain.eligibility import UnknownEnrolment
from domain.errors import RuleBroken
from domain.oneoffs import (
    GRANT_TOPIC_PREFIX,
    AidGrant,
    GrantAlreadyRecorded,
    GrantRecord,
    PersonHasNoAccount,
    UnknownGrant,
    aid_dues,
    apply_grant_event,
    check_grant,
    check_reference,
    grant_id,
    grant_region,
    holiday_dues,
)
from domain.periods import Month
from ledger.storage import existing_originators, notification_pages

GRANTS_PAGE = 20_000  # notifications per query when listing grants
_GRANT_TOPICS = (f"{GRANT_TOPIC_PREFIX}Granted", f"{GRANT_TOPIC_PREFIX}Approved")


class PersonNotInLedger(RuleBroken):
    """Aid is granted to a person the ledger holds (registered by a roster, with an account)."""


class AidApprovalConflict(RuleBroken):
    """Someone else approved the same grant at the same moment; nothing was recorded."""


@dataclass(frozen=True, slots=True)
class GrantOutcome:
    grant: GrantRecord
    recorded: bool  # False: the same grant was recorded before; nothing new


def grant_aid(
    registry: Any,
    *,
    id_number: str,
    amount_fen: int,
    reason: str,
    on: date,
    kind: str,
    decision_ref: str | None,
    stage: int,
    region: str | None,
    actor: str,
) -> GrantOutcome:
    """Record one 临时救助 grant, within the policy's bounds, to a person the ledger holds."""
    grant = draft_grant(registry, id_number=id_number, amount_fen=amount_fen, reason=reason, on=on, kind=kind,
                        decision_ref=decision_ref, stage=stage, region=region, actor=actor)  # fmt: skip
    try:
        registry.save(grant)
    except IntegrityError:
        return _same_grant(registry.repository.get(grant.id), grant)
    return GrantOutcome(_record_of(grant), recorded=True)


def preview_grant(
    registry: Any,
    *,
    id_number: str,
    amount_fen: int,
    reason: str,
    on: date,
    kind: str,
    decision_ref: str | None,
    stage: int,
    region: str | None,
    actor: str,
) -> GrantOutcome:
    """What `grant_aid` would record (`recorded` False: the same grant is recorded already), under the same
    rules and refusals; records nothing (the web shows it before the clerk confirms)."""
    grant = draft_grant(registry, id_number=id_number, amount_fen=amount_fen, reason=reason, on=on, kind=kind,
                        decision_ref=decision_ref, stage=stage, region=region, actor=actor)  # fmt: skip
    try:
        existing = registry.repository.get(grant.id)
    except AggregateNotFoundError:
        return GrantOutcome(_record_of(grant), recorded=True)
    return _same_grant(existing, grant)


def draft_grant(
    registry: Any,
    *,
    id_number: str,
    amount_fen: int,
    reason: str,
    on: date,
    kind: str,
    decision_ref: str | None,
    stage: int,
    region: str | None,
    actor: str,
) -> AidGrant:
    """The grant as it would be recorded, every rule checked, not saved."""
    policy = registry.policy()
    check_grant(policy.temporary_aid, amount_fen=amount_fen, kind=kind, stage=stage)
    reason = check_reference("--reason", reason)
    decision = check_reference("--decision", decision_ref) if decision_ref is not None else reason
    try:
        person = registry.person(id_number)
    except UnknownEnrolment:
        raise PersonNotInLedger(f"no person with id_number {id_number} in the ledger: import them first") from None
    if not person.account:
        raise PersonHasNoAccount(f"{id_number} has no 一卡通 account recorded: `account set` first")
    regions = [e.region for e in person.enrolments.values()]
    chosen = grant_region(regions, region, policy.region_code)
    assert policy.temporary_aid is not None  # check_grant refuses a policy without it
    gid = grant_id(registry.ids, id_number, decision, stage)
    return AidGrant.record(
        grant=gid,
        id_number=id_number,
        region=chosen,
        amount_fen=amount_fen,
        reason=reason,
        granted_on=on,
        kind=kind,
        decision_ref=decision,
        stage=stage,
        aid=policy.temporary_aid,
        actor=actor,
    )


def _same_grant(existing: AidGrant, grant: AidGrant) -> GrantOutcome:
    """A grant of the same id recorded before: the same terms record nothing new; others are refused."""
    if existing.terms() != grant.terms():
        raise GrantAlreadyRecorded(
            f"{grant.id_number} decision {grant.decision_ref} stage {grant.stage} is recorded already as grant "
            f"{grant.id.hex} ({existing.amount_fen} fen on {existing.granted_on}); a further stage needs --stage"
        )
    return GrantOutcome(_record_of(existing), recorded=False)


def approve_aid(registry: Any, grant_ref: str, *, actor: str) -> GrantRecord:
    """A second account's approval of a grant above the policy's threshold (maker-checker)."""
    found = find_grant(registry, grant_ref)
    grant = registry.repository.get(found.grant_id)
    grant.approve(actor=actor)
    try:
        registry.save(grant)
    except IntegrityError:
        raise AidApprovalConflict(
            f"grant {found.grant_id.hex} changed at the same moment; nothing was recorded, run it again"
        ) from None
    return _record_of(grant)


def grants(registry: Any) -> list[GrantRecord]:
    """Every grant, in the order granted, with its approval (read by topic, not by folding the registry)."""
    found: dict[UUID, GrantRecord] = {}
    for page in notification_pages(registry, GRANTS_PAGE, topics=_GRANT_TOPICS):
        for notification in page:
            name = notification.topic[len(GRANT_TOPIC_PREFIX) :]
            data = registry.payload(notification.state)
            apply_grant_event(found, notification.originator_id, name, data, notification.id)
    return list(found.values())


def find_grant(registry: Any, grant_ref: str) -> GrantRecord:
    """A grant by its id or a unique prefix of it (as `aid list` prints)."""
    prefix = grant_ref.replace("-", "").lower()
    matches = [g for g in grants(registry) if g.grant_id.hex.startswith(prefix)] if prefix else []
    if len(matches) != 1:
        raise UnknownGrant(f"grant {grant_ref!r}: {'no such grant' if not matches else 'ambiguous prefix'}")
    return matches[0]


def _record_of(grant: AidGrant) -> GrantRecord:
    return GrantRecord(
        grant_id=grant.id,
        id_number=grant.id_number,
        region=grant.region,
        amount_fen=grant.amount_fen,
        reason=grant.reason,
        granted_on=date.fromisoformat(grant.granted_on),
        kind=grant.kind,
        decision_ref=grant.decision_ref,
        stage=grant.stage,
        due_date=date.fromisoformat(grant.due_date),
        needs_approval=grant.needs_approval,
        granted_by=grant.granted_by,
        approved_by=grant.approved_by,
    )


# --- the month-end ------------------------------------------------------------------------------------


def oneoff_dues(disbursement: Any, snapshot: Any, run_month: Month, scope: str) -> Iterator[PaymentDue]:
    """Payments the month-end owes for payable grants and holiday payments up to `run_month`, minus those
    already accrued (their ids exist; the store would refuse them anyway). A completed run's view is
    reused as the accrual reuses it: what it saw unchanged is not looked at again."""
    policy = snapshot.policy
    grants_held = getattr(snapshot, "grants", {})
    if not grants_held and not policy.oneoffs:
        return
    try:
        run_log = disbursement.repository.get(run_log_id(scope))
    except AggregateNotFoundError:
        run_log = None
    watermark = run_log.watermark_for(run_month) if isinstance(run_log, RunLog) else None
    ids = disbursement.ids
    candidates = [
        *aid_dues(grants_held.values(), snapshot.persons, run_month, scope, ids, watermark, snapshot.policy_position),
        *holiday_dues(policy, snapshot.persons.items(), run_month, scope, ids, watermark, snapshot.policy_position),
    ]
    if not candidates:
        return
    done = existing_originators(disbursement.recorder, (d.payment_id for d in candidates))
    yield from (d for d in candidates if d.payment_id not in done)
