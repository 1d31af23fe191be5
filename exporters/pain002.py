"""ISO 20022 pain.002 (customer payment status report) in, versions 001.001.03 and 001.001.10.

Guarantees (DESIGN.md, Bank files):
- A result file is parsed with entity expansion, DTD loading and network access off, and any document
  that declares a DOCTYPE is refused before its content is looked at (external entities, billion laughs).
- Only final outcomes are imported: TxSts ACSC or ACCP is "paid", RJCT is "returned" with its reason
  code. Any other status, a payment id that is not 32 hex characters, an amount that is not CNY in whole
  fen, a payment reported twice: every such problem is collected, each naming the file, the element and
  its line, and the file is refused whole. Nothing is ever skipped silently.
- A version whose official XSD ships in `exporters/xsd/` is validated against it first (pain.002.001.03
  does; no PyPI package carries pain.002.001.10's, so .10 is checked element by element only).

`render_pain002` plays the bank: tests and the demo use it to answer a pain.001 file.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import NoReturn

from lxml import etree

from domain.errors import BadAmount
from domain.money import format_yuan, parse_yuan
from exporters.pain001 import XML_DECLARATION, namespace, secure_parser, xsd_available, xsd_errors, xsd_schema
from exporters.rows import BankResult, ExportRefused, ResultFileRejected

# Versions are named as callers name them ("001.001.10"); the message each one means, and the pain.001
# it answers (for OrgnlMsgNmId), are stated here rather than derived from the string.
PAIN002_MESSAGES = {"001.001.03": "pain.002.001.03", "001.001.10": "pain.002.001.10"}
PAIN002_VERSIONS = tuple(PAIN002_MESSAGES)
PAIN002_VERSION_DEFAULT = "001.001.10"
ANSWERS = {"001.001.03": "pain.001.001.03", "001.001.10": "pain.001.001.09"}

STATUSES_PAID = ("ACSC", "ACCP")  # settled on the creditor's account / accepted by the creditor's bank
STATUSES_RETURNED = ("RJCT",)
CURRENCY = "CNY"

# Limits (STYLE.md 8): a month-end for a province is 10⁶ payments, at well under 1 KiB each here.
RESULT_FILE_BYTES_MAX = 1 << 30
RESULT_TXS_MAX = 1_000_000
ERRORS_REPORTED_MAX = 1_000

_PAYMENT_ID = re.compile(r"^[0-9a-fA-F]{32}$")
# Amounts may carry up to 5 decimals in the XSD; trailing zeros past the fen change nothing.
_EXTRA_ZERO_DECIMALS = re.compile(r"^(\d+\.\d\d)0+$")

# Reports one problem: (element path under the TxInfAndSts, message, element for its line).
Problem = Callable[[str, str, etree._Element], None]


# --- reading ------------------------------------------------------------------------------------


def read_pain002(data: bytes, source: str) -> tuple[str, list[BankResult]]:
    """(OrgnlMsgId, one result per TxInfAndSts in document order), or ResultFileRejected naming every problem."""
    root = _parse(data, source)
    version, ns = _version(root, source)
    message = PAIN002_MESSAGES[version]
    if xsd_available(message):
        errors = xsd_errors(xsd_schema(message), root.getroottree())
        if errors:
            _reject([f"{source} {error} (not valid {message})" for error in errors])

    errors = []
    original_message_id = root.findtext(f"{{{ns}}}CstmrPmtStsRpt/{{{ns}}}OrgnlGrpInfAndSts/{{{ns}}}OrgnlMsgId")
    if not (original_message_id or "").strip():
        errors.append(f"{source} OrgnlGrpInfAndSts/OrgnlMsgId: missing")
    results = _read_transactions(root, ns, source, errors)
    if errors:
        _reject(errors)
    assert original_message_id is not None
    return original_message_id.strip(), results


def _parse(data: bytes, source: str) -> etree._Element:
    if len(data) > RESULT_FILE_BYTES_MAX:
        _reject([f"{source}: {len(data)} bytes; a result file may have at most {RESULT_FILE_BYTES_MAX}"])
    # A DOCTYPE is how entity attacks start; a bank's status report has no use for one. The byte scan
    # catches it before parsing; the check after parsing catches encodings the scan cannot read (UTF-16).
    if b"<!DOCTYPE" in data:
        _reject([f"{source} line {_line_of(data, b'<!DOCTYPE')}: DOCTYPE declarations are refused"])
    try:
        root = etree.fromstring(data, secure_parser())
    except etree.XMLSyntaxError as e:
        _reject([f"{source} line {e.lineno}: malformed XML: {e.msg}"])
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        _reject([f"{source}: DOCTYPE declarations are refused"])
    return root


def _version(root: etree._Element, source: str) -> tuple[str, str]:
    qname = etree.QName(root)
    for version in PAIN002_VERSIONS:
        ns = namespace(PAIN002_MESSAGES[version])
        if qname.namespace == ns and qname.localname == "Document":
            return version, ns
    if qname.namespace is None:
        _reject([f"{source} line {root.sourceline}: root {qname.localname} has no namespace; expected pain.002"])
    _reject(
        [
            f"{source} line {root.sourceline}: namespace {qname.namespace} ({qname.localname}) is not "
            f"{' or '.join(namespace(m) for m in PAIN002_MESSAGES.values())}"
        ]
    )


def _read_transactions(root: etree._Element, ns: str, source: str, errors: list[str]) -> list[BankResult]:
    results: list[BankResult] = []
    first_seen: dict[str, int] = {}  # payment id → the TxInfAndSts number that reported it first
    prefix = f"{{{ns}}}"
    number = 0
    for instruction in root.iterfind(f"{prefix}CstmrPmtStsRpt/{prefix}OrgnlPmtInfAndSts"):
        batch_hint = (instruction.findtext(f"{prefix}OrgnlPmtInfId") or "").strip()
        for transaction in instruction.iterfind(f"{prefix}TxInfAndSts"):
            number += 1
            if number > RESULT_TXS_MAX:
                errors.append(f"{source}: more than {RESULT_TXS_MAX} TxInfAndSts in one file")
                return results
            result = _read_transaction(transaction, prefix, f"{source} TxInfAndSts[{number}]", batch_hint, errors)
            if result is None:
                continue
            if result.payment_id in first_seen:
                errors.append(
                    f"{result.source}/OrgnlEndToEndId: payment {result.payment_id} was already reported in "
                    f"TxInfAndSts[{first_seen[result.payment_id]}] (line {transaction.sourceline})"
                )
                continue
            first_seen[result.payment_id] = number
            results.append(result)
    if number == 0:
        status = root.findtext(f"{prefix}CstmrPmtStsRpt/{prefix}OrgnlGrpInfAndSts/{prefix}GrpSts") or "none"
        errors.append(f"{source} CstmrPmtStsRpt: no TxInfAndSts (group status {status}): no payment outcome to import")
    return results


def _read_transaction(
    transaction: etree._Element, prefix: str, label: str, batch_hint: str, errors: list[str]
) -> BankResult | None:
    """One TxInfAndSts as a result; None (with its problems added to `errors`) when it cannot be one."""
    errors_before = len(errors)

    def problem(path: str, message: str, element: etree._Element) -> None:
        errors.append(f"{label}/{path}: {message} (line {element.sourceline})")

    children = _children(transaction, prefix)
    payment_id = _text_of(children.get("OrgnlEndToEndId"))
    if payment_id is None:
        problem("OrgnlEndToEndId", "missing", transaction)
    elif not _PAYMENT_ID.match(payment_id):
        problem("OrgnlEndToEndId", f"{payment_id!r} is not a payment id (32 hex characters)", transaction)

    status_code = _text_of(children.get("TxSts"))
    status = _status(status_code)
    if status_code is None:
        problem("TxSts", "missing", transaction)
    elif status is None:
        problem(
            "TxSts",
            f"{status_code} is not a final status; only {', '.join(STATUSES_PAID + STATUSES_RETURNED)} are imported",
            transaction,
        )

    amount_fen = _amount_fen(children.get("OrgnlTxRef"), prefix, problem)
    settled_on = _settled_on(children.get("AccptncDtTm"), problem)
    if len(errors) > errors_before:
        return None
    assert payment_id is not None and status is not None
    return BankResult(
        payment_id=payment_id.lower(),
        status=status,
        reason_code=_reason_code(children.get("StsRsnInf"), prefix) if status == "returned" else "",
        amount_fen=amount_fen,
        source=label,
        batch_hint=batch_hint,
        settled_on=settled_on,
    )


def _status(code: str | None) -> str | None:
    if code in STATUSES_PAID:
        return "paid"
    if code in STATUSES_RETURNED:
        return "returned"
    return None


def _reason_code(reason_information: etree._Element | None, prefix: str) -> str:
    """The first StsRsnInf's ISO code, else the bank's own (Prtry), else ''."""
    if reason_information is None:
        return ""
    reason = _children(reason_information, prefix).get("Rsn")
    if reason is None:
        return ""
    choice = _children(reason, prefix)
    return _text_of(choice.get("Cd")) or _text_of(choice.get("Prtry")) or ""


def _amount_fen(reference: etree._Element | None, prefix: str, problem: Problem) -> int | None:
    """OrgnlTxRef/Amt/InstdAmt in fen, when the bank states it."""
    amount = None if reference is None else _children(reference, prefix).get("Amt")
    element = None if amount is None else _children(amount, prefix).get("InstdAmt")
    if element is None:
        return None
    path = "OrgnlTxRef/Amt/InstdAmt"
    if element.get("Ccy") != CURRENCY:
        problem(path, f"currency {element.get('Ccy')!r}; only {CURRENCY} is paid", element)
        return None
    text = _EXTRA_ZERO_DECIMALS.sub(r"\1", (element.text or "").strip())
    try:
        return parse_yuan(text)
    except BadAmount as e:
        problem(path, str(e), element)
        return None


def _settled_on(element: etree._Element | None, problem: Problem) -> date | None:
    """AccptncDtTm's date, when the bank states it."""
    if element is None:
        return None
    text = (element.text or "").strip()
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        problem("AccptncDtTm", f"{text!r} is not an ISO 8601 date-time", element)
        return None


def _children(element: etree._Element, prefix: str) -> dict[str, etree._Element]:
    """Child elements in the document's namespace by local name, the first of each name.

    One pass over the children instead of a path search per field: reading 10⁵ results is 2× faster.
    """
    children: dict[str, etree._Element] = {}
    for child in element.iterchildren(etree.Element):
        tag = child.tag
        if tag.startswith(prefix):
            children.setdefault(tag[len(prefix) :], child)
    return children


def _text_of(element: etree._Element | None) -> str | None:
    """An element's text without surrounding blanks; None when it is absent or blank."""
    text = None if element is None else element.text
    if text is None or not text.strip():
        return None
    return text.strip()


def _line_of(data: bytes, needle: bytes) -> int:
    return data.count(b"\n", 0, data.find(needle)) + 1


def _reject(errors: list[str]) -> NoReturn:
    """Raise ResultFileRejected with every error, the list cut at ERRORS_REPORTED_MAX with a count."""
    if len(errors) > ERRORS_REPORTED_MAX:
        more = len(errors) - ERRORS_REPORTED_MAX
        errors = [*errors[:ERRORS_REPORTED_MAX], f"… and {more} more errors"]
    raise ResultFileRejected(errors)


# --- rendering (playing the bank) ----------------------------------------------------------------


def render_pain002(
    original_message_id: str,
    original_pmt_inf_id: str,
    outcomes: Sequence[tuple[str, str, str, int | None]],
    *,
    version: str = PAIN002_VERSION_DEFAULT,
    created_at: datetime,
) -> bytes:
    """A status report answering one pain.001 file: outcomes are (payment_id, TxSts, reason_code, amount_fen).

    A paid outcome (ACSC/ACCP) carries AccptncDtTm = `created_at`; a reason code, when given, goes in
    StsRsnInf/Rsn/Cd; an amount, when not None, in OrgnlTxRef/Amt/InstdAmt. Validated against the XSD
    when one ships for the version. Same arguments, same bytes.
    """
    if version not in PAIN002_VERSIONS:
        raise ExportRefused(
            "Pain002VersionUnknown", f"pain.002 version {version!r}: expected one of {', '.join(PAIN002_VERSIONS)}"
        )
    message = PAIN002_MESSAGES[version]
    ns = namespace(message)
    created = created_at.replace(microsecond=0).isoformat()
    sub = etree.SubElement

    document = etree.Element(f"{{{ns}}}Document", nsmap={None: ns})
    report = sub(document, f"{{{ns}}}CstmrPmtStsRpt")
    group = sub(report, f"{{{ns}}}GrpHdr")
    _text(group, ns, "MsgId", _report_message_id(original_message_id, original_pmt_inf_id, created))
    _text(group, ns, "CreDtTm", created)
    original_group = sub(report, f"{{{ns}}}OrgnlGrpInfAndSts")
    _text(original_group, ns, "OrgnlMsgId", original_message_id)
    _text(original_group, ns, "OrgnlMsgNmId", ANSWERS[version])
    _text(original_group, ns, "OrgnlNbOfTxs", str(len(outcomes)))
    instruction = sub(report, f"{{{ns}}}OrgnlPmtInfAndSts")
    _text(instruction, ns, "OrgnlPmtInfId", original_pmt_inf_id)
    _text(instruction, ns, "OrgnlNbOfTxs", str(len(outcomes)))
    for payment_id, status, reason_code, amount_fen in outcomes:
        _transaction_status(instruction, ns, payment_id, status, reason_code, amount_fen, created)

    data = XML_DECLARATION + etree.tostring(document, encoding="UTF-8", pretty_print=True)
    if xsd_available(message):
        errors = xsd_errors(xsd_schema(message), etree.ElementTree(etree.fromstring(data, secure_parser())))
        if errors:
            raise ExportRefused("Pain002Invalid", f"status report is not valid {message}: {errors[0]}")
    return data


def _transaction_status(
    instruction: etree._Element,
    ns: str,
    payment_id: str,
    status: str,
    reason_code: str,
    amount_fen: int | None,
    created: str,
) -> None:
    """One TxInfAndSts, children in the order of PaymentTransactionInformation25 (.03) / 105 (.10)."""
    transaction = etree.SubElement(instruction, f"{{{ns}}}TxInfAndSts")
    _text(transaction, ns, "OrgnlEndToEndId", payment_id)
    _text(transaction, ns, "TxSts", status)
    if reason_code:
        reason = etree.SubElement(etree.SubElement(transaction, f"{{{ns}}}StsRsnInf"), f"{{{ns}}}Rsn")
        _text(reason, ns, "Cd", reason_code)
    if status in STATUSES_PAID:
        _text(transaction, ns, "AccptncDtTm", created)
    if amount_fen is not None:
        reference = etree.SubElement(transaction, f"{{{ns}}}OrgnlTxRef")
        amount = _text(etree.SubElement(reference, f"{{{ns}}}Amt"), ns, "InstdAmt", format_yuan(amount_fen))
        amount.set("Ccy", CURRENCY)


def _report_message_id(original_message_id: str, original_pmt_inf_id: str, created: str) -> str:
    """A MsgId (≤ 35 characters) derived from what the report answers, so the same report has the same id."""
    digest = hashlib.sha256(f"{original_message_id}\n{original_pmt_inf_id}\n{created}".encode()).hexdigest()
    return f"STS{digest[:32]}"


def _text(parent: etree._Element, ns: str, tag: str, text: str) -> etree._Element:
    element = etree.SubElement(parent, f"{{{ns}}}{tag}")
    element.text = text
    return element
