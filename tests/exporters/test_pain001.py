"""pain.001 out (exporters.pain001, DESIGN.md Bank files): valid against the official XSD, counts and
control sums equal to the rows to the fen, the same bytes every time, split files that add up to the
batch, and values the schema cannot carry refused naming the row.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from domain.money import parse_yuan
from exporters.pain001 import render_pain001, render_pain001_files, split_rows
from exporters.rows import BatchHeader, ExportRefused, PaymentRow
from tests.helpers.exporters import header_for

XSD_DIR = Path(__file__).resolve().parents[2] / "exporters" / "xsd"
VERSIONS = ("001.001.03", "001.001.09")


@cache
def _schema(version: str) -> etree.XMLSchema:
    """Loaded here from the shipped file, independently of the code under test."""
    return etree.XMLSchema(etree.parse(str(XSD_DIR / f"pain.{version}.xsd")))


def _row(serial: int, amount_fen: int, **changes: object) -> PaymentRow:
    row = PaymentRow(
        serial=serial,
        payment_id=uuid.uuid5(uuid.NAMESPACE_URL, f"payment/{serial}").hex,
        id_number="152601198001011239",
        name="李建国",
        account="6228480012345678901",
        bank_code="103191000012",
        amount_fen=amount_fen,
        region="150902",
        persons=2,
        remark="城镇低保 2017-01",
    )
    return dataclasses.replace(row, **changes)


def _header(rows: Sequence[PaymentRow], **changes: object) -> BatchHeader:
    fields: dict[str, object] = {"payer_account": "15010123456789", "payer_bank_code": "103191000001"}
    return header_for(rows, created_at=datetime(2017, 1, 5, 9, 30, 15, 123456), **{**fields, **changes})


def _parse(data: bytes) -> tuple[etree._Element, dict[str, str]]:
    root = etree.fromstring(data)
    return root, {"p": root.nsmap[None]}


def _texts(root: etree._Element, ns: dict[str, str], path: str) -> list[str]:
    return [e.text for e in root.iterfind(path, ns)]


# --- validity, counts and sums --------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_rendered_file_validates_against_the_official_xsd_and_counts_equal_the_rows(version: str) -> None:
    rows = [_row(i, 55500 + i) for i in range(1, 8)]
    data = render_pain001(_header(rows), rows, version=version)

    root, ns = _parse(data)
    assert _schema(version).validate(root.getroottree())
    assert root.nsmap[None] == f"urn:iso:std:iso:20022:tech:xsd:pain.{version}"
    assert _texts(root, ns, "p:CstmrCdtTrfInitn/p:GrpHdr/p:NbOfTxs") == ["7"]
    assert _texts(root, ns, "p:CstmrCdtTrfInitn/p:PmtInf/p:NbOfTxs") == ["7"]
    total_fen = sum(r.amount_fen for r in rows)
    assert [parse_yuan(t) for t in _texts(root, ns, ".//p:CtrlSum")] == [total_fen, total_fen]
    assert len(root.findall(".//p:CdtTrfTxInf", ns)) == 7


@pytest.mark.parametrize("version", VERSIONS)
def test_control_sum_of_ten_thousand_odd_amounts_is_exact_to_the_fen(version: str) -> None:
    rows = [_row(i, 2 * ((i * 7919) % 500_000) + 1) for i in range(1, 10_001)]
    data = render_pain001(_header(rows), rows, version=version)

    root, ns = _parse(data)
    assert _texts(root, ns, "p:CstmrCdtTrfInitn/p:GrpHdr/p:NbOfTxs") == ["10000"]
    (control_sum,) = _texts(root, ns, "p:CstmrCdtTrfInitn/p:GrpHdr/p:CtrlSum")
    assert parse_yuan(control_sum) == sum(r.amount_fen for r in rows)
    amounts = [parse_yuan(t) for t in _texts(root, ns, ".//p:InstdAmt")]
    assert amounts == [r.amount_fen for r in rows]


@pytest.mark.parametrize("version", VERSIONS)
def test_each_payment_carries_its_id_account_bank_code_id_number_name_and_remark(version: str) -> None:
    row = _row(1, 123456)
    data = render_pain001(_header([row]), [row], version=version)

    root, ns = _parse(data)
    (transfer,) = root.iterfind(".//p:CdtTrfTxInf", ns)
    assert transfer.findtext("p:PmtId/p:EndToEndId", namespaces=ns) == row.payment_id
    amount = transfer.find("p:Amt/p:InstdAmt", ns)
    assert (amount.text, amount.get("Ccy")) == ("1234.56", "CNY")
    member = transfer.find("p:CdtrAgt/p:FinInstnId/p:ClrSysMmbId", ns)
    assert member.findtext("p:ClrSysId/p:Cd", namespaces=ns) == "CNAPS"
    assert member.findtext("p:MmbId", namespaces=ns) == row.bank_code
    assert transfer.findtext("p:Cdtr/p:Nm", namespaces=ns) == "李建国"
    person = transfer.find("p:Cdtr/p:Id/p:PrvtId/p:Othr", ns)
    assert person.findtext("p:Id", namespaces=ns) == row.id_number
    assert person.findtext("p:SchmeNm/p:Cd", namespaces=ns) == "NIDN"
    assert transfer.findtext("p:CdtrAcct/p:Id/p:Othr/p:Id", namespaces=ns) == row.account
    assert transfer.findtext("p:RmtInf/p:Ustrd", namespaces=ns) == "城镇低保 2017-01"


@pytest.mark.parametrize("version", VERSIONS)
def test_group_and_payer_come_from_the_header(version: str) -> None:
    rows = [_row(1, 100)]
    header = _header(rows)
    root, ns = _parse(render_pain001(header, rows, version=version))

    assert _texts(root, ns, "p:CstmrCdtTrfInitn/p:GrpHdr/p:MsgId") == [header.message_id]
    assert _texts(root, ns, "p:CstmrCdtTrfInitn/p:GrpHdr/p:CreDtTm") == ["2017-01-05T09:30:15"]
    assert _texts(root, ns, "p:CstmrCdtTrfInitn/p:GrpHdr/p:InitgPty/p:Nm") == ["乌兰察布市民政局"]
    payment = root.find("p:CstmrCdtTrfInitn/p:PmtInf", ns)
    assert payment.findtext("p:PmtInfId", namespaces=ns) == header.message_id
    assert payment.findtext("p:PmtMtd", namespaces=ns) == "TRF"
    assert payment.findtext("p:Dbtr/p:Nm", namespaces=ns) == "乌兰察布市民政局"
    assert payment.findtext("p:DbtrAcct/p:Id/p:Othr/p:Id", namespaces=ns) == "15010123456789"
    assert payment.findtext("p:DbtrAgt/p:FinInstnId/p:ClrSysMmbId/p:MmbId", namespaces=ns) == "103191000001"
    assert payment.findtext("p:ChrgBr", namespaces=ns) == "SLEV"


def test_requested_date_is_plain_in_03_and_wrapped_in_dt_in_09() -> None:
    rows = [_row(1, 100)]
    root_03, ns_03 = _parse(render_pain001(_header(rows), rows, version="001.001.03"))
    root_09, ns_09 = _parse(render_pain001(_header(rows), rows, version="001.001.09"))

    assert root_03.findtext(".//p:PmtInf/p:ReqdExctnDt", namespaces=ns_03) == "2017-01-10"
    assert root_09.findtext(".//p:PmtInf/p:ReqdExctnDt/p:Dt", namespaces=ns_09) == "2017-01-10"


@pytest.mark.parametrize("version", VERSIONS)
def test_the_same_batch_renders_to_identical_bytes_twice(version: str) -> None:
    rows = [_row(i, 1000 * i + 7) for i in range(1, 50)]
    first = render_pain001(_header(rows), rows, version=version)
    second = render_pain001(_header(list(rows)), list(rows), version=version)

    assert first == second
    assert first.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<Document')
    assert b"\n    <GrpHdr>\n" in first  # pretty-printed


def test_a_row_without_a_remark_leaves_out_the_remittance_information() -> None:
    rows = [_row(1, 100, remark=""), _row(2, 200)]
    root, ns = _parse(render_pain001(_header(rows), rows))

    assert [t.find("p:RmtInf", ns) is None for t in root.iterfind(".//p:CdtTrfTxInf", ns)] == [True, False]


# --- splitting ----------------------------------------------------------------------------------


def test_split_rows_keeps_order_and_every_row() -> None:
    rows = [_row(i, i) for i in range(1, 26)]
    parts = split_rows(rows, 10)

    assert [len(p) for p in parts] == [10, 10, 5]
    assert [r for part in parts for r in part] == rows
    with pytest.raises(ValueError, match="at least 1"):
        split_rows(rows, 0)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_batch_over_the_limit_splits_into_files_whose_control_sums_add_up_to_the_whole(version: str) -> None:
    rows = [_row(i, 9999 + 2 * i) for i in range(1, 26)]
    header = _header(rows)
    files = render_pain001_files(header, rows, version=version, limit=10)

    assert [name for name, _ in files] == [f"{header.message_id}-{n}.pain001.xml" for n in (1, 2, 3)]
    counts, sums_fen, end_to_end = [], [], []
    for number, (_, data) in enumerate(files, start=1):
        root, ns = _parse(data)
        assert _schema(version).validate(root.getroottree())
        assert _texts(root, ns, ".//p:GrpHdr/p:MsgId") == [f"{header.message_id}-{number}"]
        assert _texts(root, ns, ".//p:PmtInf/p:PmtInfId") == [f"{header.message_id}-{number}"]
        (count,) = _texts(root, ns, ".//p:GrpHdr/p:NbOfTxs")
        (control_sum,) = _texts(root, ns, ".//p:GrpHdr/p:CtrlSum")
        amounts = [parse_yuan(t) for t in _texts(root, ns, ".//p:InstdAmt")]
        assert parse_yuan(control_sum) == sum(amounts)
        counts.append(int(count))
        sums_fen.append(parse_yuan(control_sum))
        end_to_end += _texts(root, ns, ".//p:EndToEndId")
    assert counts == [10, 10, 5]
    assert sum(sums_fen) == header.total_fen
    assert end_to_end == [r.payment_id for r in rows]


def test_a_batch_within_the_limit_is_one_file_named_by_its_message_id() -> None:
    rows = [_row(i, 100) for i in range(1, 11)]
    header = _header(rows)
    files = render_pain001_files(header, rows, limit=10)

    assert [name for name, _ in files] == [f"{header.message_id}.pain001.xml"]
    assert files[0][1] == render_pain001(header, rows)


def test_a_split_message_id_over_35_characters_is_refused() -> None:
    rows = [_row(i, 100) for i in range(1, 4)]
    header = _header(rows, message_id="M" * 34)

    with pytest.raises(ExportRefused) as refused:
        render_pain001_files(header, rows, limit=2)
    assert refused.value.rule == "Pain001MessageIdTooLong"


def test_a_message_id_that_could_name_a_path_is_refused_as_a_file_name() -> None:
    rows = [_row(1, 100)]
    with pytest.raises(ExportRefused) as refused:
        render_pain001_files(_header(rows, message_id="../etc/x"), rows, limit=10)
    assert refused.value.rule == "Pain001MessageIdUnsafeForFileName"


# --- refusals -------------------------------------------------------------------------------------


def test_a_name_over_the_xsd_limit_is_refused_naming_the_row_not_cut() -> None:
    rows = [_row(1, 100), _row(2, 100), _row(3, 100, name="王" * 141)]
    with pytest.raises(ExportRefused) as refused:
        render_pain001(_header(rows), rows)

    assert refused.value.rule == "Pain001FieldTooLong"
    message = str(refused.value)
    assert f"row 3 (payment {rows[2].payment_id})" in message
    assert "name" in message and "141" in message and "140" in message
    assert "王王" not in message  # errors go to logs: no personal data


def test_a_name_of_exactly_140_chinese_characters_is_written_whole() -> None:
    rows = [_row(1, 100, name="王" * 140)]
    root, ns = _parse(render_pain001(_header(rows), rows))
    assert root.findtext(".//p:Cdtr/p:Nm", namespaces=ns) == "王" * 140


@pytest.mark.parametrize(
    ("changes", "rule", "field"),
    [
        ({"remark": "备注" * 71}, "Pain001FieldTooLong", "remark"),
        ({"account": "6" * 35}, "Pain001FieldTooLong", "account"),
        ({"name": "  "}, "Pain001FieldEmpty", "name"),
        ({"id_number": ""}, "Pain001FieldEmpty", "id_number"),
        ({"name": "张\x07三"}, "Pain001CharacterNotAllowed", "name"),
        ({"amount_fen": 0}, "Pain001AmountNotPositive", "amount"),
        ({"payment_id": "not-a-payment-id"}, "Pain001PaymentIdInvalid", "payment id"),
    ],
)
def test_a_value_the_schema_cannot_carry_is_refused_naming_the_row(
    changes: dict[str, object], rule: str, field: str
) -> None:
    rows = [_row(1, 100), dataclasses.replace(_row(2, 100), **changes)]
    with pytest.raises(ExportRefused) as refused:
        render_pain001(_header(rows), rows)
    assert refused.value.rule == rule
    assert "row 2 " in str(refused.value) and field in str(refused.value)


def test_an_amount_beyond_the_xsd_digits_fails_validation_with_its_line() -> None:
    rows = [_row(1, 10**20)]  # 21 digits; ActiveOrHistoricCurrencyAndAmount allows 18
    with pytest.raises(ExportRefused) as refused:
        render_pain001(_header(rows), rows)
    assert refused.value.rule == "Pain001Invalid"
    assert "line 8: " in str(refused.value) and "totalDigits" in str(refused.value)  # GrpHdr/CtrlSum first


def test_rows_that_disagree_with_the_ledger_totals_are_refused() -> None:
    rows = [_row(1, 100), _row(2, 200)]
    with pytest.raises(ExportRefused) as refused:
        render_pain001(_header(rows, total_fen=301), rows)
    assert refused.value.rule == "Pain001TotalsDisagree"
    with pytest.raises(ExportRefused):
        render_pain001_files(_header(rows, count=3), rows, limit=10)


def test_a_payment_twice_in_one_file_is_refused() -> None:
    rows = [_row(1, 100), _row(2, 100, payment_id=_row(1, 100).payment_id)]
    with pytest.raises(ExportRefused) as refused:
        render_pain001(_header(rows), rows)
    assert refused.value.rule == "Pain001DuplicatePayment"


def test_an_empty_batch_and_an_unknown_version_are_refused() -> None:
    with pytest.raises(ExportRefused) as empty:
        render_pain001(_header([]), [])
    assert empty.value.rule == "Pain001NoPayments"
    with pytest.raises(ExportRefused) as no_files:
        render_pain001_files(_header([]), [], limit=10)
    assert no_files.value.rule == "Pain001NoPayments"
    rows = [_row(1, 100)]
    with pytest.raises(ExportRefused) as version:
        render_pain001(_header(rows), rows, version="001.001.12")
    assert version.value.rule == "Pain001VersionUnknown"


# --- property -------------------------------------------------------------------------------------

# Names: CJK unified ideographs, the rare characters of extension B outside the BMP (生僻字, which some
# real names use and which must count as one character each, like Python's len), and the middle dot
# of transliterated minority names.
CJK = (
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
    | st.characters(min_codepoint=0x20000, max_codepoint=0x2A6DF)
    | st.just("·")
)

payment_rows = st.lists(
    st.tuples(
        st.text(alphabet=CJK, min_size=1, max_size=140).filter(str.strip),
        st.integers(min_value=1, max_value=10**9),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=payment_rows, version=st.sampled_from(VERSIONS))
def test_any_rows_of_chinese_names_and_amounts_validate_and_sum_exactly(
    drawn: list[tuple[str, int]], version: str
) -> None:
    rows = [_row(i, amount_fen, name=name) for i, (name, amount_fen) in enumerate(drawn, start=1)]
    data = render_pain001(_header(rows), rows, version=version)

    root, ns = _parse(data)
    assert _schema(version).validate(root.getroottree())
    assert parse_yuan(root.findtext(".//p:GrpHdr/p:CtrlSum", namespaces=ns)) == sum(a for _, a in drawn)
    assert _texts(root, ns, ".//p:Cdtr/p:Nm") == [name for name, _ in drawn]
