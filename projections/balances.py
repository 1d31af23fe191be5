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

Offsets (docs/entitlement.md "Recoveries"): a payment may be settled in part or whole by offsetting a
recovery due from its payee (`offset_fen` of `Payment.Accrued`, one `Recovery.Offset` per recovery). Its
bank line is the net amount, which is what `exported_fen`, `paid_fen` and `returned_fen` count when the
bank file is exported, paid or returned; the offset counts at once as paid for the period it was paid
into and as recovered for the period the recovery comes from. A bank return of the net payment undoes
its offsets: paid and recovered fall back, and the recovery is due again.
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
    amount_fen: int  # the first attempt's bank line (net of offsets)
    exported: bool = False
    paid: bool = False
    returned: bool = False
    returned_fen: int = 0  # the bank line counted as returned


Key = tuple[str, str, str]


@dataclass(slots=True)
class BalanceFold:
    """Feed it disbursement events in log order with `apply`; read `rows()`."""

    balances: dict[tuple[str, str, str], BalanceRow] = field(default_factory=dict)
    obligations: dict[str, _Obligation] = field(default_factory=dict)  # payment id (attempt) → obligation
    batch_region: dict[str, str] = field(default_factory=dict)
    batch_members: dict[str, list[str]] = field(default_factory=dict)
    net: dict[str, int] = field(default_factory=dict)  # payment id (attempt) → its bank line
    recoveries: dict[str, Key] = field(default_factory=dict)  # recovery id → the period it comes from
    # payment id (attempt) → its offsets: (the recovery's period, the period paid into, fen)
    offsets: dict[str, list[tuple[Key, Key, int]]] = field(default_factory=dict)

    def apply(self, topic: str, originator_hex: str, data: dict[str, Any]) -> None:
        name = topic.rsplit(".", 1)[-1]
        if topic.endswith("Payment.Accrued"):
            self._accrued(originator_hex, data)
        elif topic.endswith("Recovery.Due"):
            self._recovery_due(originator_hex, data)
        elif ":Recovery." in topic:
            self._recovery_event(name, originator_hex, data)
        elif ":Batch." in topic:
            self._batch_event(name, originator_hex, data)

    def _accrued(self, payment: str, data: dict[str, Any]) -> None:
        original = data.get("reissue_of", "")
        self.net[payment] = data["amount_fen"] - data.get("offset_fen", 0)
        if original:
            self.obligations[payment] = self.obligations[original]
            return
        region = self.batch_region.get(data["batch_id"]) or data.get("balance_region") or data["region"]
        key = (region, data["programme"], data["period"])
        row = self.balances.get(key)
        if row is None:
            row = self.balances[key] = BalanceRow(*key)
        if data.get("adjusts"):
            row.adjusted_fen += data["amount_fen"]  # 补发差额: more due for a payee already counted
        else:
            row.households += 1
            row.persons += data["persons"]
        row.accrued_fen += data["amount_fen"]
        self.obligations[payment] = _Obligation(key, self.net[payment])

    def _row(self, key: Key) -> BalanceRow:
        row = self.balances.get(key)
        if row is None:
            row = self.balances[key] = BalanceRow(*key)
        return row

    def _recovery_due(self, recovery: str, data: dict[str, Any]) -> None:
        key = (data["balance_region"], data["programme"], data["period"])
        self.recoveries[recovery] = key
        row = self._row(key)
        row.accrued_fen -= data["amount_fen"]
        row.adjusted_fen -= data["amount_fen"]
        row.recovery_due_fen += data["amount_fen"]

    def _recovery_event(self, name: str, recovery: str, data: dict[str, Any]) -> None:
        source = self.recoveries[recovery]
        row = self._row(source)
        fen = data["amount_fen"]
        row.recovery_due_fen -= fen
        if name == "Offset":
            target = (source[0], source[1], data["period"])
            row.recovered_fen += fen
            self._row(target).paid_fen += fen  # settled by offset: paid for the period it was paid into
            self.offsets.setdefault(data["payment_id"], []).append((source, target, fen))
        elif name == "Collected":
            row.recovered_fen += fen
        elif name == "WrittenOff":
            row.written_off_fen += fen

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
                    self.balances[obligation.key].exported_fen += self.net[payment]
        elif name == "ResultsRecorded":
            for payment, status, _reason, _settled in data["results"]:
                self._result(payment, status)

    def _result(self, payment: str, status: str) -> None:
        obligation = self.obligations[payment]
        row = self.balances[obligation.key]
        if status == "returned":
            # The net payment came back: its offsets no longer count, the recoveries are due again.
            for source, target, fen in self.offsets.pop(payment, ()):
                self._row(target).paid_fen -= fen
                self._row(source).recovered_fen -= fen
                self._row(source).recovery_due_fen += fen
        if status == "paid" and not obligation.paid:
            obligation.paid = True
            row.paid_fen += self.net[payment]
            if obligation.returned:
                obligation.returned = False
                row.returned_fen -= obligation.returned_fen
        elif status == "returned" and not obligation.paid and not obligation.returned:
            obligation.returned = True
            obligation.returned_fen = self.net[payment]
            row.returned_fen += self.net[payment]

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
