"""Builders of due payments and recoveries for one payee (李建华, urban dibao), for the offset tests."""

from __future__ import annotations

from datetime import date
from uuid import uuid4

from domain.disbursement import PaymentDue, payment_id
from domain.periods import Period
from tests.helpers.ledgers import LI

LI_ID = LI.split(",")[0]
REGION = "150900"  # the policy's region: every batch's and recovery's balance region


def due(period: str, amount_fen: int, *, adjusts: str = "", adjustment: int = 0) -> PaymentDue:
    pid = payment_id(LI_ID, "urban_dibao", period)
    return PaymentDue(
        payment_id=pid if not adjusts else uuid4(),
        person_id=uuid4(),
        id_number=LI_ID,
        name="李建华",
        region="150902",
        programme="urban_dibao",
        period=Period.parse(period),
        amount_fen=amount_fen,
        persons=2,
        due_date=date(2017, 5, 10),
        late=False,
        bank_code="103191000012",
        account="6228480045001122337",
        adjusts=adjusts,
        adjustment=adjustment,
    )


def recoveries_due(*periods: str) -> list[PaymentDue]:
    return [due(p, -20000, adjusts=payment_id(LI_ID, "urban_dibao", p).hex, adjustment=1) for p in periods]
