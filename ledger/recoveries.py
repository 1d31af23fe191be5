"""Recoveries (多发追回) the month-end could not offset: listed, collected by the office, written off by a
second person (issue 14 item 3; docs/entitlement.md "Recoveries").

Every change is a further event of the `Recovery` aggregate, saved at the next version: two clerks who
collect, or a collection and a month-end offsetting the same recovery at once, conflict on the store's
primary key, and the loser reads the recovery again and re-checks what remains (never more than remains
is collected or written off). What remains leaves out offsets carried by payments the bank returned
(`Disbursement.returned_payment_ids`): a returned net payment undoes its offset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from domain.disbursement import Recovery
from domain.errors import RuleBroken
from ledger.disbursement import Disbursement

SAVE_ATTEMPTS_MAX = 20


class RecoveryChangedMeanwhile(RuleBroken):
    """The recovery kept changing under this command (other writers); run it again."""


@dataclass(frozen=True, slots=True)
class RecoveryView:
    """One recovery as `report recoveries --json` shows it (stable keys)."""

    id: str
    id_number: str
    name: str
    programme: str
    period: str
    region: str
    balance_region: str
    run_month: str  # the month-end that made it
    due_fen: int
    offset_fen: int
    collected_fen: int
    written_off_fen: int
    remaining_fen: int

    @property
    def recovered_fen(self) -> int:
        return self.offset_fen + self.collected_fen

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "id_number": self.id_number,
            "name": self.name,
            "programme": self.programme,
            "period": self.period,
            "region": self.region,
            "balance_region": self.balance_region,
            "since": self.run_month,
            "due_fen": self.due_fen,
            "recovered_fen": self.recovered_fen,
            "offset_fen": self.offset_fen,
            "collected_fen": self.collected_fen,
            "written_off_fen": self.written_off_fen,
            "remaining_fen": self.remaining_fen,
        }


def view(recovery: Recovery, returned: set[str]) -> RecoveryView:
    return RecoveryView(
        id=recovery.id.hex,
        id_number=recovery.id_number,
        name=recovery.name,
        programme=recovery.programme,
        period=recovery.period,
        region=recovery.region,
        balance_region=recovery.balance_region,
        run_month=recovery.run_month,
        due_fen=recovery.amount_fen,
        offset_fen=recovery.offset_fen(returned),
        collected_fen=recovery.collected_fen,
        written_off_fen=recovery.written_off_fen,
        remaining_fen=recovery.remaining(returned),
    )


def recovery_views(disbursement: Disbursement, *, open_only: bool = True) -> list[RecoveryView]:
    """Recoveries by payee, programme and period; only those with something remaining unless asked."""
    returned = disbursement.returned_payment_ids()
    views = [view(r, returned) for r in disbursement.recoveries()]
    if open_only:
        views = [v for v in views if v.remaining_fen > 0]
    return sorted(views, key=lambda v: (v.id_number, v.programme, v.period, v.id))


def collect(disbursement: Disbursement, ref: str, *, amount_fen: int, reason: str, actor: str) -> RecoveryView:
    """The office collected `amount_fen` of a recovery (cash or transfer); at most what remains."""
    rid = disbursement.recovery(ref).id
    return _change(
        disbursement,
        rid,
        lambda r, returned: r.collect(amount_fen=amount_fen, reason=reason, actor=actor, returned=returned),
    )


def write_off(disbursement: Disbursement, ref: str, *, reason: str, actor: str) -> RecoveryView:
    """What remains of a recovery written off, by someone other than whoever ran the month-end that made
    it or recorded a collection on it (maker-checker; the CLI also requires the checker role)."""
    rid = disbursement.recovery(ref).id
    return _change(disbursement, rid, lambda r, returned: r.write_off(reason=reason, actor=actor, returned=returned))


def _change(disbursement: Disbursement, rid: UUID, step: Callable[[Recovery, set[str]], Any]) -> RecoveryView:
    for _ in range(SAVE_ATTEMPTS_MAX):
        recovery = disbursement.repository.get(rid)
        returned = disbursement.returned_payment_ids()
        step(recovery, returned)
        try:
            disbursement.save(recovery)
        except IntegrityError:
            continue  # another writer changed it: read it again and check again
        return view(recovery, returned)
    raise RecoveryChangedMeanwhile(f"recovery {rid.hex} kept changing; nothing was recorded, run it again")
