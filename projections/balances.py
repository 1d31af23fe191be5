"""Balances per region × programme × period, folded straight from the disbursement events.

This is the reference computation: `report balances --as-of` answers with it from the events recorded
up to a moment, and the SQL read models are tested against it.

Definitions (DESIGN.md, `report balances --json`), per obligation — one payment owed for one enrolment
and period; a re-issue (补发) is another attempt at the same obligation, not a new one:
- `accrued_fen`: obligations accrued; `households` counts them (payees), `persons` the people covered.
- `exported_fen`: obligations with at least one attempt in an exported batch.
- `paid_fen`: obligations the bank paid (by any attempt).
- `returned_fen`: obligations whose latest attempt came back returned and is not yet paid again.
- `outstanding_fen = accrued_fen − paid_fen + recovered_fen + written_off_fen`: a returned payment stays
  outstanding until re-issued and paid; an amount paid beyond what is now due is negative outstanding
  until it is recovered or written off.

Adjustments (issue 14, docs/entitlement.md): `accrued_fen` is what is due now, so every adjustment of a
period counts in it and in `adjusted_fen`. A positive one (补发差额) is a bank line of its own: an
obligation to pay, exported, paid or returned like a payment, but no new payee (`households`, `persons`
unchanged). A negative one (`Recovery.Due`) is owed back by the payee: `recovery_due_fen` is what remains
to recover, `recovered_fen` what was recovered (by offset or collected) and `written_off_fen` what was
written off, each counted for the period the recovery comes from.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from domain.periods import Period

BALANCE_KEYS = (
    "region",
    "programme",
    "period",
    "households",
    "persons",
    "accrued_fen",
    "exported_fen",
    "paid_fen",
    "returned_fen",
    "outstanding_fen",
    "adjusted_fen",
    "recovery_due_fen",
    "recovered_fen",
    "written_off_fen",
)


@dataclass(slots=True)
class BalanceRow:
    region: str
    programme: str
    period: str
    households: int = 0
    persons: int = 0
    accrued_fen: int = 0
    exported_fen: int = 0
    paid_fen: int = 0
    returned_fen: int = 0
    adjusted_fen: int = 0
    recovery_due_fen: int = 0
    recovered_fen: int = 0
    written_off_fen: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "programme": self.programme,
            "period": self.period,
            "households": self.households,
            "persons": self.persons,
            "accrued_fen": self.accrued_fen,
            "exported_fen": self.exported_fen,
            "paid_fen": self.paid_fen,
            "returned_fen": self.returned_fen,
            "outstanding_fen": self.accrued_fen - self.paid_fen + self.recovered_fen + self.written_off_fen,
            "adjusted_fen": self.adjusted_fen,
            "recovery_due_fen": self.recovery_due_fen,
            "recovered_fen": self.recovered_fen,
            "written_off_fen": self.written_off_fen,
        }


@dataclass(slots=True)
class _Obligation:
    key: tuple[str, str, str]
    amount_fen: int
    exported: bool = False
    paid: bool = False
    returned: bool = False


@dataclass(slots=True)
class BalanceFold:
    """Feed it disbursement events in log order with `apply`; read `rows()`."""

    balances: dict[tuple[str, str, str], BalanceRow] = field(default_factory=dict)
    obligations: dict[str, _Obligation] = field(default_factory=dict)  # payment id (attempt) → obligation
    batch_region: dict[str, str] = field(default_factory=dict)
    batch_members: dict[str, list[str]] = field(default_factory=dict)

    def apply(self, topic: str, originator_hex: str, data: dict[str, Any]) -> None:
        name = topic.rsplit(".", 1)[-1]
        if topic.endswith("Payment.Accrued"):
            self._accrued(originator_hex, data)
        elif topic.endswith("Recovery.Due"):
            self._recovery_due(data)
        elif ":Batch." in topic:
            self._batch_event(name, originator_hex, data)

    def _accrued(self, payment: str, data: dict[str, Any]) -> None:
        original = data.get("reissue_of", "")
        if original:
            self.obligations[payment] = self.obligations[original]
            return
        key = (self.batch_region.get(data["batch_id"], data["region"]), data["programme"], data["period"])
        row = self.balances.get(key)
        if row is None:
            row = self.balances[key] = BalanceRow(*key)
        if data.get("adjusts"):
            row.adjusted_fen += data["amount_fen"]  # 补发差额: more due for a payee already counted
        else:
            row.households += 1
            row.persons += data["persons"]
        row.accrued_fen += data["amount_fen"]
        self.obligations[payment] = _Obligation(key, data["amount_fen"])

    def _recovery_due(self, data: dict[str, Any]) -> None:
        key = (data["balance_region"], data["programme"], data["period"])
        row = self.balances.get(key)
        if row is None:
            row = self.balances[key] = BalanceRow(*key)
        row.accrued_fen -= data["amount_fen"]
        row.adjusted_fen -= data["amount_fen"]
        row.recovery_due_fen += data["amount_fen"]

    def _batch_event(self, name: str, batch: str, data: dict[str, Any]) -> None:
        if name == "Drafted":
            self.batch_region[batch] = data["region"]
            self.batch_members[batch] = []
        elif name == "PaymentsAdded":
            self.batch_members[batch].extend(data["payment_ids"])
        elif name == "Exported":
            for payment in self.batch_members.get(batch, ()):
                obligation = self.obligations.get(payment)
                if obligation is not None and not obligation.exported:
                    obligation.exported = True
                    self.balances[obligation.key].exported_fen += obligation.amount_fen
        elif name == "ResultsRecorded":
            for payment, status, _reason, _settled in data["results"]:
                self._result(payment, status)

    def _result(self, payment: str, status: str) -> None:
        obligation = self.obligations[payment]
        row = self.balances[obligation.key]
        if status == "paid" and not obligation.paid:
            obligation.paid = True
            row.paid_fen += obligation.amount_fen
            if obligation.returned:
                obligation.returned = False
                row.returned_fen -= obligation.amount_fen
        elif status == "returned" and not obligation.paid and not obligation.returned:
            obligation.returned = True
            row.returned_fen += obligation.amount_fen

    def rows(
        self,
        *,
        month: str | None = None,
        year: str | None = None,
        programme: str | None = None,
        region: str | None = None,
    ) -> list[dict[str, Any]]:
        """`month` selects the periods that start (fall due) in that month: `2017-01` gives January's
        urban dibao and the first quarter's rural dibao; `year` every period of that year."""
        selected = []
        for row in sorted(self.balances.values(), key=lambda r: (r.period, r.programme, r.region)):
            if month and str(Period.parse(row.period).start) != month:
                continue
            if year and not row.period.startswith(year):
                continue
            if programme and row.programme != programme:
                continue
            if region and row.region != region:
                continue
            selected.append(row.as_dict())
        return selected


def fold(events: Iterable[tuple[str, str, dict[str, Any]]]) -> BalanceFold:
    result = BalanceFold()
    for topic, originator_hex, data in events:
        result.apply(topic, originator_hex, data)
    return result
