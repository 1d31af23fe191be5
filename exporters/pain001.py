"""ISO 20022 pain.001 (customer credit transfer initiation) out, versions 001.001.03 and 001.001.09.

Guarantees (DESIGN.md, Bank files):
- One PmtInf per file; one CdtTrfTxInf per `PaymentRow`, in the rows' order. EndToEndId is the payment
  id, the amount is CNY printed from fen exactly, the account is `CdtrAcct/Id/Othr/Id`, the bank code is
  `ClrSysMmbId` under `CNAPS` and the ID number is `PrvtId/Othr` under `NIDN`.
- NbOfTxs and CtrlSum (group and PmtInf) are counted from the rows written, and for a whole batch they
  must equal the ledger's figures in the `BatchHeader`, or nothing is written.
- Every file is validated against the official XSD shipped in `exporters/xsd/` before it is returned,
  and a failure names the line of the first error in the file as it would have been written.
- Same header and rows, same bytes: nothing here reads the clock or depends on dict or set order.
- A value the schema cannot carry (a name over 140 characters, a control character, an empty account)
  is refused naming the row; nothing is ever cut to fit.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from functools import cache
from importlib.resources import files

from lxml import etree

from domain.money import format_yuan
from exporters.rows import BatchHeader, ExportRefused, FieldLimit, PaymentRow

PAIN001_VERSIONS = ("001.001.03", "001.001.09")
PAIN001_VERSION_DEFAULT = "001.001.09"

# A limit on what one file may hold (STYLE.md 8). A batch above a bank's own limit is split with
# `render_pain001_files`; this bound only keeps one document within memory.
PAIN001_TXS_PER_FILE_MAX = 1_000_000

# ISO 20022 text limits that apply to what we write (Max35Text, Max34Text, Max140Text in both XSDs).
MSG_ID_CHARS_MAX = 35
NAME_CHARS_MAX = 140
REMARK_CHARS_MAX = 140
ID_NUMBER_CHARS_MAX = 35
ACCOUNT_CHARS_MAX = 34
BANK_CODE_CHARS_MAX = 35

CLEARING_SYSTEM_CNAPS = "CNAPS"  # ISO external clearing system code for China's CNAPS
PERSON_ID_SCHEME_NATIONAL = "NIDN"  # ISO external person identification code: national identity number
CURRENCY = "CNY"

_PAYMENT_ID = re.compile(r"^[0-9a-f]{32}$")
# Characters XML 1.0 can carry; anything else (control characters, lone surrogates) is refused.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# A message id becomes part of a file name, so it must not be able to name a path.
_FILE_NAME_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# Written by hand because lxml quotes its own declaration with apostrophes, which some bank parsers refuse.
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


# --- schemas ------------------------------------------------------------------------------------


def namespace(message: str) -> str:
    """'pain.001.001.09' → its ISO 20022 XML namespace."""
    return f"urn:iso:std:iso:20022:tech:xsd:{message}"


def xsd_available(message: str) -> bool:
    """Whether the official XSD for `message` (e.g. 'pain.002.001.10') ships in exporters/xsd/."""
    return files("exporters").joinpath("xsd", f"{message}.xsd").is_file()


@cache
def xsd_schema(message: str) -> etree.XMLSchema:
    """The official XSD for `message`, loaded once, on first use (STYLE.md 14: nothing at import)."""
    data = files("exporters").joinpath("xsd", f"{message}.xsd").read_bytes()
    return etree.XMLSchema(etree.fromstring(data, secure_parser()))


def secure_parser() -> etree.XMLParser:
    """A parser that expands no entity, loads no DTD and reaches no network (XXE, billion laughs)."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def xsd_errors(schema: etree.XMLSchema, document: etree._ElementTree) -> list[str]:
    """Each schema violation as 'line N: message', in document order; empty when valid."""
    if schema.validate(document):
        return []
    return [f"line {e.line}: {e.message}" for e in schema.error_log]


# --- rendering ----------------------------------------------------------------------------------


def render_pain001(header: BatchHeader, rows: Sequence[PaymentRow], *, version: str = PAIN001_VERSION_DEFAULT) -> bytes:
    """The whole batch as one pain.001 file. Its counts and total must equal the header's."""
    _check_batch_totals(header, rows)
    return _render_file(header, header.message_id, rows, version)


def split_rows(rows: Sequence[PaymentRow], limit: int) -> list[Sequence[PaymentRow]]:
    """Consecutive slices of at most `limit` rows, in order; together they are exactly `rows`."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    return [rows[start : start + limit] for start in range(0, len(rows), limit)]


def render_pain001_files(
    header: BatchHeader,
    rows: Sequence[PaymentRow],
    *,
    version: str = PAIN001_VERSION_DEFAULT,
    limit: int,
) -> list[tuple[str, bytes]]:
    """(file name, bytes) for each file of the batch, at most `limit` payments per file.

    A batch within the limit is one file, `{message_id}.pain001.xml`, whose MsgId is the message id.
    A larger batch becomes files whose MsgId (and PmtInfId) is `{message_id}-1`, `{message_id}-2`…,
    named `{MsgId}.pain001.xml`; each carries its own NbOfTxs and CtrlSum, and together they carry
    exactly the batch's.
    """
    _check_batch_totals(header, rows)
    _check_file_name_safe(header.message_id)
    parts = split_rows(rows, limit)
    if len(parts) <= 1:  # an empty batch goes this way too, to be refused like any other file
        return [(f"{header.message_id}.pain001.xml", _render_file(header, header.message_id, rows, version))]
    out = []
    for number, part in enumerate(parts, start=1):
        message_id = f"{header.message_id}-{number}"
        if len(message_id) > MSG_ID_CHARS_MAX:
            raise ExportRefused(
                "Pain001MessageIdTooLong",
                f"message id {message_id!r} of file {number} of {len(parts)} has {len(message_id)} characters; "
                f"MsgId allows at most {MSG_ID_CHARS_MAX}",
            )
        out.append((f"{message_id}.pain001.xml", _render_file(header, message_id, part, version)))
    return out


def _render_file(header: BatchHeader, message_id: str, rows: Sequence[PaymentRow], version: str) -> bytes:
    if version not in PAIN001_VERSIONS:
        raise ExportRefused(
            "Pain001VersionUnknown", f"pain.001 version {version!r}: expected one of {', '.join(PAIN001_VERSIONS)}"
        )
    _check_header(header, message_id)
    _check_rows(rows)
    message = f"pain.{version}"
    document = _build_document(header, message_id, rows, namespace(message), version)
    schema = xsd_schema(message)
    if not schema.validate(document):
        in_tree = next(iter(schema.error_log)).message
        # A tree built in memory has no line numbers: find the first error in the bytes it would be.
        errors = xsd_errors(schema, etree.ElementTree(etree.fromstring(_serialise(document), secure_parser())))
        first = errors[0] if errors else in_tree
        raise ExportRefused("Pain001Invalid", f"{message_id}.pain001.xml is not valid {message}: {first}")
    return _serialise(document)


def _serialise(document: etree._Element) -> bytes:
    """UTF-8, pretty-printed. Indentation goes only between elements, never into a text, so the bytes
    mean exactly the tree that was validated."""
    return XML_DECLARATION + etree.tostring(document, encoding="UTF-8", pretty_print=True)


def _build_document(
    header: BatchHeader, message_id: str, rows: Sequence[PaymentRow], ns: str, version: str
) -> etree._Element:
    """The document tree, elements in the order the XSD's sequences require."""
    sub = etree.SubElement
    count = str(len(rows))
    total = format_yuan(sum(row.amount_fen for row in rows))

    document = etree.Element(f"{{{ns}}}Document", nsmap={None: ns})
    initiation = sub(document, f"{{{ns}}}CstmrCdtTrfInitn")
    group = sub(initiation, f"{{{ns}}}GrpHdr")
    _text(group, ns, "MsgId", message_id)
    _text(group, ns, "CreDtTm", header.created_at.replace(microsecond=0).isoformat())
    _text(group, ns, "NbOfTxs", count)
    _text(group, ns, "CtrlSum", total)
    _text(sub(group, f"{{{ns}}}InitgPty"), ns, "Nm", header.payer_name)

    payment = sub(initiation, f"{{{ns}}}PmtInf")
    _text(payment, ns, "PmtInfId", message_id)
    _text(payment, ns, "PmtMtd", "TRF")
    _text(payment, ns, "NbOfTxs", count)
    _text(payment, ns, "CtrlSum", total)
    due = header.due_date.isoformat()
    if version == "001.001.03":
        _text(payment, ns, "ReqdExctnDt", due)
    else:  # from .08 on the requested date is a choice of date or date-time
        _text(sub(payment, f"{{{ns}}}ReqdExctnDt"), ns, "Dt", due)
    _text(sub(payment, f"{{{ns}}}Dbtr"), ns, "Nm", header.payer_name)
    _text(_path(payment, ns, "DbtrAcct", "Id", "Othr"), ns, "Id", header.payer_account)
    _clearing_member(_path(payment, ns, "DbtrAgt", "FinInstnId"), ns, header.payer_bank_code)
    _text(payment, ns, "ChrgBr", "SLEV")
    _transfers(payment, ns, rows)
    return document


# The fields of a row that a CdtTrfTxInf carries, in document order. The remark is last so that a row
# without one can drop its RmtInf, the last child.
_TRANSFER_FIELDS = ("payment_id", "amount", "bank_code", "name", "id_number", "account", "remark")


def _transfers(payment: etree._Element, ns: str, rows: Sequence[PaymentRow]) -> None:
    """Append one CdtTrfTxInf per row.

    Building ~24 elements per row one by one costs about 3 µs a row; copying a finished template (in C)
    and setting its 7 texts costs a third of that, which is most of the time for 10⁵ rows.
    """
    template, paths = _transfer_template(ns)
    for row in rows:
        transfer = copy.deepcopy(template)
        values = (row.payment_id, format_yuan(row.amount_fen), row.bank_code, row.name, row.id_number, row.account)
        for path, value in zip(paths, values, strict=True):
            element = transfer
            for index in path:
                element = element[index]
            element.text = value
        if row.remark:
            transfer[-1][0].text = row.remark
        else:  # RmtInf is optional: leave it out rather than write an empty Ustrd
            del transfer[-1]
        payment.append(transfer)


def _transfer_template(ns: str) -> tuple[etree._Element, tuple[tuple[int, ...], ...]]:
    """A CdtTrfTxInf whose texts are placeholders, and the child-index path to each placeholder."""
    holder = etree.Element(f"{{{ns}}}Template", nsmap={None: ns})
    placeholders = {field: f"{{{field}}}" for field in _TRANSFER_FIELDS}
    template = _transfer(holder, ns, **placeholders)
    paths = {}
    for element in template.iter():
        if element.text in placeholders.values():
            paths[element.text] = _index_path(template, element)
    assert len(paths) == len(_TRANSFER_FIELDS), "each field must appear exactly once in the template"
    assert paths["{remark}"] == (len(template) - 1, 0), "RmtInf/Ustrd must be the last child"
    return template, tuple(paths[placeholders[field]] for field in _TRANSFER_FIELDS[:-1])


def _index_path(ancestor: etree._Element, element: etree._Element) -> tuple[int, ...]:
    path = []
    while element is not ancestor:
        parent = element.getparent()
        path.append(parent.index(element))
        element = parent
    return tuple(reversed(path))


def _transfer(
    parent: etree._Element,
    ns: str,
    *,
    payment_id: str,
    amount: str,
    bank_code: str,
    name: str,
    id_number: str,
    account: str,
    remark: str,
) -> etree._Element:
    """One CdtTrfTxInf, children in the XSD's order (CreditTransferTransaction in .03 and .09 alike)."""
    sub = etree.SubElement
    transfer = sub(parent, f"{{{ns}}}CdtTrfTxInf")
    _text(sub(transfer, f"{{{ns}}}PmtId"), ns, "EndToEndId", payment_id)
    instructed = _path(transfer, ns, "Amt", "InstdAmt")
    instructed.set("Ccy", CURRENCY)
    instructed.text = amount
    _clearing_member(_path(transfer, ns, "CdtrAgt", "FinInstnId"), ns, bank_code)
    creditor = sub(transfer, f"{{{ns}}}Cdtr")
    _text(creditor, ns, "Nm", name)
    person_id = _path(creditor, ns, "Id", "PrvtId", "Othr")
    _text(person_id, ns, "Id", id_number)
    _text(sub(person_id, f"{{{ns}}}SchmeNm"), ns, "Cd", PERSON_ID_SCHEME_NATIONAL)
    _text(_path(transfer, ns, "CdtrAcct", "Id", "Othr"), ns, "Id", account)
    _text(sub(transfer, f"{{{ns}}}RmtInf"), ns, "Ustrd", remark)
    return transfer


def _clearing_member(institution: etree._Element, ns: str, bank_code: str) -> None:
    member = etree.SubElement(institution, f"{{{ns}}}ClrSysMmbId")
    _text(etree.SubElement(member, f"{{{ns}}}ClrSysId"), ns, "Cd", CLEARING_SYSTEM_CNAPS)
    _text(member, ns, "MmbId", bank_code)


def _text(parent: etree._Element, ns: str, tag: str, text: str) -> etree._Element:
    element = etree.SubElement(parent, f"{{{ns}}}{tag}")
    element.text = text
    return element


def _path(parent: etree._Element, ns: str, *tags: str) -> etree._Element:
    """Nested new elements parent/tags[0]/tags[1]/…; returns the innermost."""
    for tag in tags:
        parent = etree.SubElement(parent, f"{{{ns}}}{tag}")
    return parent


# --- checks: refuse what the schema cannot carry, naming the row ----------------------------------


def _check_batch_totals(header: BatchHeader, rows: Sequence[PaymentRow]) -> None:
    """DESIGN.md, Bank files: NbOfTxs and CtrlSum equal the ledger's."""
    total_fen = sum(row.amount_fen for row in rows)
    if header.count != len(rows) or header.total_fen != total_fen:
        raise ExportRefused(
            "Pain001TotalsDisagree",
            f"batch {header.batch_id}: the ledger says {header.count} payments, {format_yuan(header.total_fen)} yuan; "
            f"the rows are {len(rows)} payments, {format_yuan(total_fen)} yuan",
        )


def _check_header(header: BatchHeader, message_id: str) -> None:
    fields = (
        ("message_id", message_id, MSG_ID_CHARS_MAX),
        ("payer_name", header.payer_name, NAME_CHARS_MAX),
        ("payer_account", header.payer_account, ACCOUNT_CHARS_MAX),
        ("payer_bank_code", header.payer_bank_code, BANK_CODE_CHARS_MAX),
    )
    for field, value, chars_max in fields:
        problem = _text_problem(value, chars_max)
        if problem:
            raise ExportRefused(problem[0], f"batch {header.batch_id} header {field}: {problem[1]}")


def _check_rows(rows: Sequence[PaymentRow]) -> None:
    if not rows:
        raise ExportRefused("Pain001NoPayments", "a pain.001 file needs at least one payment")
    if len(rows) > PAIN001_TXS_PER_FILE_MAX:
        raise ExportRefused(
            "Pain001TooManyPayments",
            f"{len(rows)} payments in one file; at most {PAIN001_TXS_PER_FILE_MAX} (split the batch)",
        )
    seen: set[str] = set()
    for row in rows:
        _check_row(row)
        if row.payment_id in seen:
            raise ExportRefused("Pain001DuplicatePayment", f"{_row_label(row)}: payment id appears twice in one file")
        seen.add(row.payment_id)


def _check_row(row: PaymentRow) -> None:
    if not _PAYMENT_ID.match(row.payment_id):
        raise ExportRefused("Pain001PaymentIdInvalid", f"{_row_label(row)}: payment id is not 32 lowercase hex digits")
    if row.amount_fen <= 0:
        raise ExportRefused("Pain001AmountNotPositive", f"{_row_label(row)}: amount {format_yuan(row.amount_fen)} yuan")
    fields = (
        ("name", row.name, NAME_CHARS_MAX, "Cdtr/Nm"),
        ("id_number", row.id_number, ID_NUMBER_CHARS_MAX, "Cdtr/Id/PrvtId/Othr/Id"),
        ("account", row.account, ACCOUNT_CHARS_MAX, "CdtrAcct/Id/Othr/Id"),
        ("bank_code", row.bank_code, BANK_CODE_CHARS_MAX, "CdtrAgt/FinInstnId/ClrSysMmbId/MmbId"),
    )
    if row.remark:  # an empty remark is left out (RmtInf is optional), not refused
        fields += (("remark", row.remark, REMARK_CHARS_MAX, "RmtInf/Ustrd"),)
    for field, value, chars_max, element in fields:
        problem = _text_problem(value, chars_max)
        if problem:
            raise ExportRefused(problem[0], f"{_row_label(row)}: {field} for {element}: {problem[1]}")


def _text_problem(value: str, chars_max: int) -> tuple[str, str] | None:
    """(rule, message) when `value` cannot be written as an ISO 20022 MaxNText, else None."""
    if not value.strip():
        return ("Pain001FieldEmpty", "is empty")
    if len(value) > chars_max:
        return ("Pain001FieldTooLong", f"has {len(value)} characters; the XSD allows at most {chars_max}")
    bad = _NOT_XML_CHAR.search(value)
    if bad:
        return ("Pain001CharacterNotAllowed", f"character U+{ord(bad.group()):04X} at position {bad.start() + 1}")
    return None


def field_limits() -> tuple[FieldLimit, ...]:
    """What a pain.001 file can carry in each field it writes (`_check_row`, `_check_header` enforce it)."""
    fields = (
        ("name", "Cdtr/Nm", NAME_CHARS_MAX),
        ("id_number", "Cdtr/Id/PrvtId/Othr/Id", ID_NUMBER_CHARS_MAX),
        ("account", "CdtrAcct/Id/Othr/Id", ACCOUNT_CHARS_MAX),
        ("bank_code", "CdtrAgt/FinInstnId/ClrSysMmbId/MmbId", BANK_CODE_CHARS_MAX),
        ("remark", "RmtInf/Ustrd", REMARK_CHARS_MAX),
        ("payer_name", "Dbtr/Nm", NAME_CHARS_MAX),
        ("payer_account", "DbtrAcct/Id/Othr/Id", ACCOUNT_CHARS_MAX),
        ("payer_bank_code", "DbtrAgt/FinInstnId/ClrSysMmbId/MmbId", BANK_CODE_CHARS_MAX),
    )
    return tuple(
        FieldLimit("pain001", field, where, chars_max, forbidden=_NOT_XML_CHAR.pattern)
        for field, where, chars_max in fields
    )


def _check_file_name_safe(message_id: str) -> None:
    if not _FILE_NAME_SAFE.match(message_id):
        raise ExportRefused(
            "Pain001MessageIdUnsafeForFileName",
            f"message id {message_id!r} cannot name a file: only letters, digits, '.', '_' and '-'",
        )


def _row_label(row: PaymentRow) -> str:
    """Names a row without personal data: errors end up in logs."""
    return f"row {row.serial} (payment {row.payment_id})"
