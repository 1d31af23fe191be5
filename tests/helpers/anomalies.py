"""Generated city histories for the audit tests (anomalies, history, encryption, roles)."""

from __future__ import annotations

from datetime import date
from typing import Any

from domain.disbursement import BATCH_REGISTER_ID, Batch, BatchRegister, Payment, payment_id
from domain.identity import check_resident_id
from domain.periods import Month, Period
from ledger.roster import RosterRow
from ledger.synthetic import luhn_complete, synthetic_rows
from tests.helpers.ledgers import resident_id

CITY_SIZE = 40


def roster_row(
    id_number: str,
    programme: str,
    *,
    region: str = "150902",
    start: date = date(2017, 1, 1),
    account: str | None = None,
    members: int = 1,
    income_fen: int = 0,
    name: str = "赵秀兰",
    ref: str = "集民发〔2017〕9号",
) -> RosterRow:
    return RosterRow(
        line=2,
        id_number=id_number,
        birth_date=check_resident_id(id_number).birth_date,
        name=name,
        region=region,
        programme=programme,
        effective_from=start,
        members=members,
        monthly_income_fen=income_fen,
        special_members=0,
        bank_code="103191000012",
        account=account or luhn_complete(f"621700{int(id_number[-7:-1]):012d}"),
        decision_ref=ref,
        warnings=(),
    )


def person(serial: int, birth: str = "19500101", region: str = "152601") -> str:
    """A valid resident ID outside the generated city's serials (0–99)."""
    return resident_id(region, birth, 900 + serial)


def city(registry: Any, size: int = CITY_SIZE) -> list[RosterRow]:
    rows = list(synthetic_rows(size, seed=6))
    registry.import_roster(rows, "city.csv", "clerk")
    return rows


def run(registry: Any, disbursement: Any, *months: Month) -> None:
    for month in months:
        disbursement.run_month_end(registry.read_registry(), month, scope="150900", actor="clerk")


def decide(registry: Any, id_number: str, kind: str, on: str, *, programme: str = "urban_dibao", **kw: Any) -> None:
    registry.decide(
        kind=kind,
        id_number=id_number,
        programme=programme,
        on=date.fromisoformat(on),
        actor="chief",
        reason=f"集民发〔2017〕{len(kind)}号",
        amount_fen=kw.get("amount_fen"),
    )


def plant_payment(
    disbursement: Any, row: RosterRow, period: str, amount_fen: int, *, programme: str | None = None, seq: int = 900
) -> str:
    """Store a payment as the month-end would, without its rules: a batch of its own (drafted and
    registered) holding one `Payment.Accrued`, saved in one transaction through the application."""
    programme = programme or row.programme
    parsed = Period.parse(period)
    due = parsed.due_date(10).isoformat()
    register = disbursement.find(BATCH_REGISTER_ID) or BatchRegister()
    batch = Batch(
        region="150900", programme=programme, period=period, run_month=str(parsed.start), seq=seq, due_date=due
    )
    register.register(batch)
    pid = payment_id(row.id_number, programme, period)
    batch.add_payments([(pid.hex, amount_fen)])
    payment = Payment(
        id_number=row.id_number,
        programme=programme,
        period=period,
        name=row.name,
        region=row.region,
        amount_fen=amount_fen,
        persons=row.members,
        due_date=due,
        late=False,
        batch_id=batch.id.hex,
        bank_code=row.bank_code,
        account=row.account,
        run_month=str(parsed.start),
        reissue_of="",
    )
    disbursement.save(register, batch, payment)
    return pid.hex
