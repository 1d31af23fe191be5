"""The rows every export renders and every bank result file is read into (STYLE.md 10).

Exporters build rows first, then render: the same `PaymentRow`s feed the one-card file, pain.001, the
roster and the notice, so their counts and totals cannot disagree. Readers of bank result files return
`BankResult`s; the ledger decides what they mean. Nothing here knows about the event store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from domain.errors import FileRejected


class ExportRefused(Exception):
    """A file cannot be written as asked (a name the encoding cannot carry, a profile field missing…).

    `rule` names the broken rule; the message names the row or the profile key.
    """

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


class ResultFileRejected(FileRejected):
    """A bank result file that cannot be read: `errors` name the file and the line or XML element."""

    def __init__(self, errors: list[str] | tuple[str, ...]) -> None:
        super().__init__(errors, "\n".join(errors) + "\nnothing applied")


@dataclass(frozen=True, slots=True)
class FieldLimit:
    """What one export format can carry in one field of a `PaymentRow` or `BatchHeader` (exporters.limits).

    Each exporter declares its own, beside the check that enforces it at export time, so what is checked
    at the door (a roster import, a rename, a policy load) is exactly what an export would refuse later.
    """

    fmt: str  # "pain001", "xlsx", "onecard:generic"
    field: str  # the row or header field: "name", "account", "remark", "payer_name"…
    where: str  # where the value goes in the file, for messages: "Cdtr/Nm", "batch_file.detail"
    chars_max: int | None = None  # the longest value the format can carry; None: no limit of its own
    forbidden: str = ""  # a regex character class of characters that would break the file
    encoding: str = ""  # the codec the text must encode in; "" for any Unicode text


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """What every file of one batch says about the batch as a whole."""

    batch_id: str  # 32 hex characters
    message_id: str  # ≤ 35 characters, unique per batch file (ISO 20022 MsgId)
    created_at: datetime  # from the ledger's events, never the clock: same batch, same bytes
    region: str
    region_name: str
    programme: str
    programme_name: str
    period: str
    due_date: date
    payer_name: str
    payer_account: str
    payer_bank_code: str
    count: int
    total_fen: int


@dataclass(frozen=True, slots=True)
class PaymentRow:
    serial: int  # 1-based position in the batch
    payment_id: str  # 32 hex characters; pain.001 EndToEndId
    id_number: str
    name: str
    account: str
    bank_code: str
    amount_fen: int
    region: str
    persons: int
    remark: str  # programme and period, e.g. "城镇低保 2017-01"


@dataclass(frozen=True, slots=True)
class BankResult:
    """One payment's outcome as the bank reports it."""

    payment_id: str  # 32 hex characters
    status: str  # "paid" | "returned"
    reason_code: str  # ISO 20022 code (AC04…) or the bank's; "" when paid
    amount_fen: int | None  # as the bank states it, when it does
    source: str  # "FILE line 7" or "FILE /Document/.../TxInfAndSts[3]", for messages
    batch_hint: str = ""  # the batch or message id the file names for this result, when it does
    settled_on: date | None = None  # the booking date the bank states, when it does


# ISO 20022 external status reason codes seen on returned social-assistance payments, in Chinese.
REASONS_ZH = {
    "AC01": "账号错误",
    "AC03": "收款账号无效",
    "AC04": "账户已销户",
    "AC06": "账户已冻结",
    "AC13": "账户类型不符",
    "AG01": "交易被禁止",
    "AM04": "余额不足",
    "AM05": "重复支付",
    "BE01": "户名不符",
    "BE05": "收款人信息不符",
    "MD07": "收款人已死亡",
    "MS03": "原因未说明",
    "NARR": "见附言",
    "RC01": "银行代码错误",
}


def reason_zh(code: str) -> str:
    return REASONS_ZH.get(code, f"其他({code})" if code else "")
