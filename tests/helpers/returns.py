"""A returned payment and its corrected account on an office ledger (tests/helpers/web.py), for the
补发退回 tests over HTTP and in the browser."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from exporters.pain002 import render_pain002
from ledger.bootstrap import database_from_url, open_service
from ledger.service import LedgerService
from tests.helpers.web import OfficeLedger

WANG_ID = "152621197505052342"


@contextmanager
def service_of(office: OfficeLedger, *, writing: bool = False) -> Iterator[LedgerService]:
    service = open_service(database_from_url(office.url), read_only=not writing)
    try:
        yield service
    finally:
        service.registry.close()
        service.disbursement.close()


def returned_and_corrected(office: OfficeLedger, tmp_path: Path, *, correct: bool = True) -> str:
    """王桂英's January rural batch exported, approved, submitted and returned by the bank (AC04 账户已销户);
    then, with `correct`, her account corrected. Through the service, as the office's roles would."""
    with service_of(office, writing=True) as service:
        (rural,) = [b for b in service.batches("2017-01") if b.programme == "rural_dibao"]
        service.export_batch(rural.id.hex, fmt="pain001", out=tmp_path / "out", actor="clerk")
        service.approve_batch(rural.id.hex, actor="checker")
        service.submit_batch(rural.id.hex, actor="clerk")
        message = f"YKT{rural.id.hex[:28]}"
        outcomes = [(rural.payment_ids[0], "RJCT", "AC04", 237834)]
        result = tmp_path / "result.xml"
        result.write_bytes(render_pain002(message, message, outcomes, created_at=datetime(2017, 1, 6, 10, tzinfo=UTC)))
        assert service.import_bank_file(result, actor="clerk").returned == 1
        if correct:
            service.set_account(
                id_number=WANG_ID, bank_code="402191000099", account="6217002050123456797", reason="原卡销户 AC04",
                actor="clerk",
            )  # fmt: skip
    return rural.id.hex
