"""pain.002 in (exporters.pain002, DESIGN.md Bank files): final outcomes read back exactly, hostile or
broken files refused whole with every problem named by file, element and line.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from lxml import etree

from exporters.pain001 import render_pain001
from exporters.pain002 import read_pain002, render_pain002
from exporters.rows import BankResult, PaymentRow, ResultFileRejected
from tests.helpers.exporters import header_for

XSD_DIR = Path(__file__).resolve().parents[2] / "exporters" / "xsd"
VERSIONS = ("001.001.03", "001.001.10")
NAMESPACES = {
    "001.001.03": "urn:iso:std:iso:20022:tech:xsd:pain.002.001.03",
    "001.001.10": "urn:iso:std:iso:20022:tech:xsd:pain.002.001.10",
}
CREATED = datetime(2017, 1, 11, 16, 45, 30, 999, tzinfo=UTC)
MESSAGE = "YKT0f0f0f0f0f0f0f0f0f0f0f0f0f0f"
IDS = [uuid.uuid5(uuid.NAMESPACE_URL, f"payment/{n}").hex for n in range(1, 6)]


def _report(outcomes: list[tuple[str, str, str, int | None]], version: str = "001.001.10") -> bytes:
    return render_pain002(MESSAGE, f"{MESSAGE}-2", outcomes, version=version, created_at=CREATED)


def _rejected(data: bytes, source: str = "results.xml") -> tuple[str, ...]:
    with pytest.raises(ResultFileRejected) as rejected:
        read_pain002(data, source)
    return rejected.value.errors


# --- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_paid_and_returned_outcomes_round_trip_through_a_status_report(version: str) -> None:
    data = _report([(IDS[0], "ACSC", "", 55500), (IDS[1], "ACCP", "", None), (IDS[2], "RJCT", "AC04", 390600)], version)

    original, results = read_pain002(data, "results.xml")

    assert original == MESSAGE
    assert results == [
        BankResult(IDS[0], "paid", "", 55500, "results.xml TxInfAndSts[1]", f"{MESSAGE}-2", date(2017, 1, 11)),
        BankResult(IDS[1], "paid", "", None, "results.xml TxInfAndSts[2]", f"{MESSAGE}-2", date(2017, 1, 11)),
        BankResult(IDS[2], "returned", "AC04", 390600, "results.xml TxInfAndSts[3]", f"{MESSAGE}-2", None),
    ]


@pytest.mark.parametrize("version", VERSIONS)
def test_a_rendered_status_report_is_in_its_version_namespace_and_the_same_bytes_twice(version: str) -> None:
    data = _report([(IDS[0], "RJCT", "BE01", 100)], version)

    assert etree.fromstring(data).nsmap[None] == NAMESPACES[version]
    assert data == _report([(IDS[0], "RJCT", "BE01", 100)], version)


def test_a_rendered_03_report_validates_against_the_official_xsd() -> None:
    schema = etree.XMLSchema(etree.parse(str(XSD_DIR / "pain.002.001.03.xsd")))
    data = _report([(IDS[0], "ACSC", "", 1), (IDS[1], "RJCT", "AC04", 2)], "001.001.03")
    assert schema.validate(etree.fromstring(data).getroottree()), schema.error_log


def test_the_bank_answering_a_pain001_file_reads_back_to_exactly_its_payments() -> None:
    rows = [
        PaymentRow(
            serial=n,
            payment_id=IDS[n - 1],
            id_number="152601198001011239",
            name="李建国",
            account="6228480012345678901",
            bank_code="103191000012",
            amount_fen=10_000 + n,
            region="150902",
            persons=1,
            remark="城镇低保 2017-01",
        )
        for n in range(1, 6)
    ]
    header = header_for(
        rows,
        created_at=datetime(2017, 1, 5),
        message_id=MESSAGE,
        payer_account="150101234567",
        payer_bank_code="103191000001",
    )
    assert (header.count, header.total_fen) == (5, 50_015)
    sent = etree.fromstring(render_pain001(header, rows))
    ns = {"p": sent.nsmap[None]}
    outcomes = [
        (e.findtext("p:PmtId/p:EndToEndId", namespaces=ns), "ACSC", "", 10_000 + n)
        for n, e in enumerate(sent.iterfind(".//p:CdtTrfTxInf", ns), start=1)
    ]
    original, results = read_pain002(_report(outcomes), "bank.xml")

    assert original == header.message_id
    assert [(r.payment_id, r.status, r.amount_fen) for r in results] == [
        (r.payment_id, "paid", r.amount_fen) for r in rows
    ]


def test_a_payment_id_in_capitals_is_read_as_the_ledger_writes_it() -> None:
    _, results = read_pain002(_report([(IDS[0].upper(), "ACSC", "", 100)]), "results.xml")
    assert results[0].payment_id == IDS[0]


def test_a_bank_reason_code_stands_in_when_there_is_no_iso_code() -> None:
    data = _report([(IDS[0], "RJCT", "XXXX", 100)]).replace(b"<Cd>XXXX</Cd>", b"<Prtry>B042</Prtry>")
    _, results = read_pain002(data, "results.xml")
    assert (results[0].status, results[0].reason_code) == ("returned", "B042")


# --- hostile and broken files -----------------------------------------------------------------------

XXE = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.03"><CstmrPmtStsRpt><GrpHdr><MsgId>&e;</MsgId>
</GrpHdr></CstmrPmtStsRpt></Document>
"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10">&lol9;</Document>
"""


def test_an_external_entity_is_refused_for_its_doctype() -> None:
    (error,) = _rejected(XXE)
    assert error == "results.xml line 2: DOCTYPE declarations are refused"


def test_billion_laughs_is_refused_for_its_doctype() -> None:
    (error,) = _rejected(BILLION_LAUGHS)
    assert "DOCTYPE" in error


@pytest.mark.parametrize("payload", [XXE, BILLION_LAUGHS], ids=["xxe", "billion-laughs"])
def test_a_doctype_hidden_by_a_utf16_encoding_is_refused_after_parsing(payload: bytes) -> None:
    text = payload.decode().replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-8"?>')
    data = text.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    assert b"<!DOCTYPE" not in data  # the byte scan cannot see it: the parser's own guards must hold
    (error,) = _rejected(data)
    # Entities are never expanded; libxml2 may already stop at the amplification, else the DOCTYPE check does.
    assert "DOCTYPE declarations are refused" in error or "amplification" in error


def test_truncated_xml_is_refused_with_its_line() -> None:
    data = _report([(IDS[0], "ACSC", "", 100), (IDS[1], "ACSC", "", 100)])
    (error,) = _rejected(data[: len(data) // 2])
    assert error.startswith("results.xml line ") and "malformed XML" in error


def test_an_unknown_namespace_is_refused_naming_it() -> None:
    data = _report([(IDS[0], "ACSC", "", 100)]).replace(b"pain.002.001.10", b"pain.002.001.05")
    (error,) = _rejected(data)
    assert "urn:iso:std:iso:20022:tech:xsd:pain.002.001.05" in error


def test_a_document_without_a_namespace_is_refused() -> None:
    (error,) = _rejected(b"<Document><CstmrPmtStsRpt/></Document>")
    assert "no namespace" in error


@pytest.mark.parametrize("version", VERSIONS)
def test_a_pending_status_is_refused_naming_the_element(version: str) -> None:
    data = _report([(IDS[0], "ACSC", "", 100), (IDS[1], "PDNG", "", 100)], version)
    (error,) = _rejected(data)
    assert error.startswith("results.xml TxInfAndSts[2]/TxSts: PDNG is not a final status")
    assert "(line " in error


@pytest.mark.parametrize("version", VERSIONS)
def test_an_end_to_end_id_that_is_not_a_payment_id_is_refused_naming_the_element(version: str) -> None:
    data = _report([(IDS[0], "ACSC", "", 100), ("INV-2017-0001", "RJCT", "AC04", 100)], version)
    (error,) = _rejected(data)
    assert error.startswith("results.xml TxInfAndSts[2]/OrgnlEndToEndId: 'INV-2017-0001' is not a payment id")


def test_every_problem_in_a_file_is_reported_not_only_the_first() -> None:
    data = _report([("bad", "ACSC", "", 100), (IDS[1], "ACSC", "", 100), (IDS[2], "ACTC", "", 100)])
    errors = _rejected(data)
    assert [e.split(":")[0] for e in errors] == [
        "results.xml TxInfAndSts[1]/OrgnlEndToEndId",
        "results.xml TxInfAndSts[3]/TxSts",
    ]


def test_a_payment_reported_twice_is_refused() -> None:
    (error,) = _rejected(_report([(IDS[0], "ACSC", "", 100), (IDS[0], "RJCT", "AC04", 100)]))
    assert error.startswith("results.xml TxInfAndSts[2]/OrgnlEndToEndId: payment")
    assert "TxInfAndSts[1]" in error


def test_an_amount_in_another_currency_is_refused() -> None:
    data = _report([(IDS[0], "ACSC", "", 100)]).replace(b'Ccy="CNY"', b'Ccy="USD"')
    (error,) = _rejected(data)
    assert error.startswith("results.xml TxInfAndSts[1]/OrgnlTxRef/Amt/InstdAmt: currency 'USD'")


def test_an_amount_with_zeros_past_the_fen_is_read_exactly() -> None:
    data = _report([(IDS[0], "ACSC", "", 55500)]).replace(b">555.00<", b">555.00000<")
    _, results = read_pain002(data, "results.xml")
    assert results[0].amount_fen == 55500


def test_a_report_with_no_transaction_statuses_is_refused() -> None:
    (error,) = _rejected(_report([]))
    assert "no TxInfAndSts" in error


def test_a_03_file_that_breaks_the_xsd_is_refused_with_its_line() -> None:
    data = _report([(IDS[0], "ACSC", "", 100)], "001.001.03").replace(b"<TxSts>ACSC<", b"<TxSts>DONE<")
    errors = _rejected(data)
    assert errors[0].startswith("results.xml line ") and "TxSts" in errors[0]
    assert "pain.002.001.03" in errors[0]
