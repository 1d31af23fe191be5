"""One-card (一卡通) batch files out and their return files (回盘文件) in, laid out by bank profiles.

No national layout exists: each bank, often each branch, has its own (DESIGN.md, Bank files). A layout
is a profile, a TOML file of templates with named placeholders (docs/bank-files.md), not code.

Guarantees:
- `load_profile` refuses a profile with a missing or unknown key, a template naming a placeholder that
  does not exist where it is used, a bad format spec or an unknown encoding, naming the file and the key
  (rule `ProfileInvalid`). Every problem in the file is reported at once.
- `render_onecard` returns every file or refuses the whole batch: every line is checked and encoded with
  the profile's encoding before anything is returned, and every bad row is named in one refusal
  (`NameNotEncodable`, `FieldNotEncodable`, `FieldContainsDelimiter`…). Each file states its own count
  and total, and its total is the sum of its rows' `amount_fen` to the fen; the batch header's count and
  total must equal the rows' (`BatchTotalsDisagree`).
- Output is a function of the input only: the date in file names and headers comes from
  `BatchHeader.created_at`, never the clock. The same batch gives the same bytes.
- `read_return_file` returns a result for every detail line or raises `ResultFileRejected` naming the
  file and every bad line: a byte sequence the encoding cannot decode, a line that does not match the
  layout, an unknown status, a duplicated payment, a count that disagrees with the lines (a truncated
  file), a missing trailer. Nothing is skipped silently.
- The return file identifies each payment by its 32-hex payment id, which the batch file's detail line
  carries in a column the bank echoes back (附言/remark or a dedicated column): every profile's batch
  detail and return detail must both name `{payment_id}`.
- Money goes where the ledger says (issue 13, item 4): a profile whose batch file could write an account
  or an amount from anything but the payment's own `{account}` and amount is refused at load, naming
  the line, the key and the rule (`check_money_columns`, docs/bank-files.md "Where the money goes").
"""

from __future__ import annotations

import codecs
import re
import string
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from domain.errors import BadAmount
from domain.identity import shown
from domain.money import format_yuan, parse_yuan
from exporters.rows import (
    BankResult,
    BatchHeader,
    ExportRefused,
    FieldLimit,
    PaymentRow,
    ResultFileRejected,
    reason_zh,
)

# Limits (STYLE.md 8).
ROWS_PER_FILE_MAX = 1_000_000  # the largest `rows_max` a profile may ask for
ROWS_PER_BATCH_MAX = 2_000_000  # a province's month-end for one programme stays well below this
RETURN_FILE_BYTES_MAX = 512 * 1024 * 1024
RETURN_FILE_LINES_MAX = ROWS_PER_BATCH_MAX + 16
ERRORS_SHOWN_MAX = 200  # a refusal lists this many problems, then says how many more there were
PROFILE_BYTES_MAX = 64 * 1024
TEMPLATE_CHARS_MAX = 1000

# Dates printed in bank files are Beijing dates: a batch created at 00:30 on 5 January in China is a
# 5 January file even though it is still 4 January in UTC. China has kept UTC+8 without daylight saving
# since 1991, so a fixed offset is exact and needs no time-zone database.
CHINA_TZ = timezone(timedelta(hours=8), "CST")

ENCODINGS = ("gb18030", "gbk", "utf-8")  # codec names as `codecs.lookup(...).name` spells them
LINE_ENDINGS = {"crlf": "\r\n", "lf": "\n"}
REASON_UNSTATED = "MS03"  # ISO 20022 "reason not specified", for a return that states no reason

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"

# Placeholders each template may name. Batch-wide values are the same in every file of a batch; file
# values (count, total) are per file when a batch is split at `rows_max`.
_BATCH_FIELDS = frozenset(
    {
        "date", "due_date", "batch_id", "batch8", "message_id", "region", "region_name", "programme",
        "programme_name", "period", "payer_name", "payer_account", "payer_bank_code", "part", "parts",
        "batch_count", "batch_total_yuan", "batch_total_fen",
    }
)  # fmt: skip
_FILE_FIELDS = _BATCH_FIELDS | {"count", "total_yuan", "total_fen"}
_DETAIL_FIELDS = frozenset(
    {
        "serial", "line", "payment_id", "id_number", "name", "account", "bank_code", "amount_yuan",
        "amount_fen", "region", "persons", "remark", "date", "due_date", "batch_id", "batch8",
        "message_id", "programme", "programme_name", "period", "payer_name", "payer_account",
        "payer_bank_code",
    }
)  # fmt: skip
_RETURN_FILE_FIELDS = frozenset(
    {
        "count", "total_yuan", "total_fen", "date", "settled_on", "batch_id", "batch8", "message_id",
        "payer_account", "payer_bank_code", "skip",
    }
)  # fmt: skip
_RETURN_DETAIL_FIELDS = frozenset(
    {
        "serial", "line", "payment_id", "account", "name", "id_number", "bank_code", "amount_yuan",
        "amount_fen", "remark", "status", "reason", "reason_text", "settled_on", "skip",
    }
)  # fmt: skip
_DATE_FIELDS = frozenset({"date", "due_date", "settled_on"})
_INT_FIELDS = frozenset({"serial", "line", "count", "part", "parts", "persons", "batch_count"})
_FEN_FIELDS = frozenset({"amount_fen", "total_fen", "batch_total_fen"})
_YUAN_FIELDS = frozenset({"amount_yuan", "total_yuan", "batch_total_yuan"})
# Row fields that carry free text from the ledger; each is checked for the delimiter and line breaks.
_ROW_TEXT_FIELDS = ("name", "account", "id_number", "bank_code", "region", "remark", "payment_id")
_BATCH_TEXT_FIELDS = (
    "region", "region_name", "programme", "programme_name", "period", "payer_name", "payer_account",
    "payer_bank_code", "message_id", "batch_id",
)  # fmt: skip

_TOP_KEYS = {"title", "encoding", "line_ending", "delimiter", "rows_max", "end_with_line_ending"}
_TOP_REQUIRED = {"encoding", "line_ending", "delimiter", "rows_max"}
_BATCH_KEYS = {"file_name", "header", "detail", "trailer"}
_RETURN_KEYS = {"encoding", "header", "detail", "trailer", "status", "reasons"}
_STATUS_KEYS = {"paid", "returned"}

_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_DIGITS = re.compile(r"[0-9]+")
_FORMATTER = string.Formatter()


@dataclass(frozen=True)
class ReturnLayout:
    """How a bank's return file (回盘文件) is laid out and what its status and reason values mean."""

    encoding: str
    header: str  # template; "" when the file has no header line
    detail: str
    trailer: str  # template; "" when the file has no trailer line
    status_paid: tuple[str, ...]  # the bank's status values meaning "paid"
    status_returned: tuple[str, ...]  # … meaning "returned" (退回)
    reasons: tuple[tuple[str, str], ...]  # the bank's reason code → ISO 20022 code, in file order

    def reason_iso(self, bank_code: str) -> str:
        """The ISO 20022 code for the bank's reason code; an unmapped code is kept as the bank wrote it."""
        for bank, iso in self.reasons:
            if bank == bank_code:
                return iso
        return bank_code

    def reason_bank(self, iso_code: str) -> str:
        """The bank's code for an ISO 20022 reason (the first mapped to it), else the ISO code itself."""
        for bank, iso in self.reasons:
            if iso == iso_code:
                return bank
        return iso_code


@dataclass(frozen=True)
class Profile:
    """One bank's one-card batch-file layout and its return-file layout (docs/bank-files.md)."""

    name: str
    source: str  # the file it was loaded from, for messages
    title: str
    encoding: str  # "gb18030" | "gbk" | "utf-8"
    line_ending: str  # "\r\n" or "\n"
    delimiter: str  # one character no field may contain
    rows_max: int  # detail lines per file; a larger batch is split into parts
    end_with_line_ending: bool  # whether the last line is followed by a line ending
    file_name: str  # templates, see docs/bank-files.md
    header: str
    detail: str
    trailer: str
    returns: ReturnLayout


# --------------------------------------------------------------------------------------------------
# Loading profiles


def profile_names() -> list[str]:
    """The names of the profiles shipped in `exporters/profiles/`, sorted."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def shipped_profile_bytes(name: str) -> bytes:
    """The bytes of a shipped profile (`exporters/profiles/NAME.toml`): reviewed with the code."""
    if name not in profile_names():
        raise ExportRefused("ProfileUnknown", f"{name}: no such profile (shipped: {', '.join(profile_names())})")
    return (PROFILES_DIR / f"{name}.toml").read_bytes()


def profile_from_bytes(data: bytes, name: str, source: str) -> Profile:
    """A profile from its file's bytes (as recorded in the ledger), checked exactly as `load_profile` does."""
    return _profile_from_bytes(data, name, source)


def load_profile(name: str) -> Profile:
    """A shipped profile by name (`bank-p`), or a profile file by path (`./my-bank.toml`)."""
    if name.endswith(".toml") or "/" in name or "\\" in name:
        path = Path(name)
        if not path.is_file():
            raise ExportRefused("ProfileUnknown", f"{name}: no such profile file")
        if path.stat().st_size > PROFILE_BYTES_MAX:
            raise ExportRefused("ProfileInvalid", f"{name}: larger than {PROFILE_BYTES_MAX} bytes")
        return _profile_from_bytes(path.read_bytes(), path.stem, str(path))
    if name not in profile_names():
        raise ExportRefused("ProfileUnknown", f"{name}: no such profile (shipped: {', '.join(profile_names())})")
    return _profile_from_bytes((PROFILES_DIR / f"{name}.toml").read_bytes(), name, f"{name}.toml")


NUMBER_DIGITS_MAX = 18  # serials, counts and fen amounts in a return file: far beyond any real batch


def _profile_from_bytes(data: bytes, name: str, source: str) -> Profile:
    if len(data) > PROFILE_BYTES_MAX:
        raise ExportRefused("ProfileInvalid", f"{source}: larger than {PROFILE_BYTES_MAX} bytes")
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, ValueError) as e:  # ValueError: an over-long integer
        raise ExportRefused("ProfileInvalid", f"{source}: not a UTF-8 TOML file: {e}") from None
    problems: list[str] = []
    profile = _check_profile(raw, name, source, problems)
    if problems or profile is None:
        raise ExportRefused("ProfileInvalid", "\n".join(f"{source}: {p}" for p in problems))
    money: list[MoneyProblem] = []
    check_money_columns(profile, money)
    if money:
        text = data.decode("utf-8")
        shown_money = [f"{source}{_line_of(text, p.key)}: {p.key}: {p.rule}: {p.message}" for p in money]
        raise ExportRefused(money[0].rule, "\n".join(shown_money))
    return profile


def _check_profile(raw: dict[str, Any], name: str, source: str, problems: list[str]) -> Profile | None:
    """Check every key of a parsed profile, appending 'key: problem' to `problems`."""
    _check_keys(
        raw, "", _TOP_KEYS | {"batch_file", "return_file"}, _TOP_REQUIRED | {"batch_file", "return_file"}, problems
    )
    encoding = _check_encoding(raw.get("encoding"), "encoding", problems)
    line_ending = _check_choice(raw.get("line_ending"), "line_ending", LINE_ENDINGS, problems)
    delimiter = _check_delimiter(raw.get("delimiter"), problems)
    rows_max = _check_rows_max(raw.get("rows_max"), problems)
    end_with = raw.get("end_with_line_ending", True)
    if not isinstance(end_with, bool):
        problems.append("end_with_line_ending: must be true or false")
    title = raw.get("title", "")
    if not isinstance(title, str):
        problems.append("title: must be a string")

    file_name, header, detail, trailer = _check_batch_layout(raw, problems)
    returns = _check_return_layout(raw, encoding, delimiter, problems)
    if problems:
        return None
    assert returns is not None and encoding is not None and line_ending is not None
    return Profile(
        name=name,
        source=source,
        title=title,
        encoding=encoding,
        line_ending=LINE_ENDINGS[line_ending],
        delimiter=delimiter,
        rows_max=rows_max,
        end_with_line_ending=end_with,
        file_name=file_name,
        header=header,
        detail=detail,
        trailer=trailer,
        returns=returns,
    )


def _check_batch_layout(raw: dict[str, Any], problems: list[str]) -> tuple[str, str, str, str]:
    """The batch file's templates: file name, header, detail and trailer."""
    batch = _check_table(raw, "batch_file", _BATCH_KEYS, {"file_name", "detail"}, problems)
    file_name = _check_template(batch, "batch_file.file_name", _FILE_FIELDS, problems)
    header = _check_template(batch, "batch_file.header", _FILE_FIELDS, problems)
    detail = _check_template(batch, "batch_file.detail", _DETAIL_FIELDS, problems)
    trailer = _check_template(batch, "batch_file.trailer", _FILE_FIELDS, problems)
    if batch:
        frame = "batch_file.header or batch_file.trailer"
        # The payment id goes out in a column the bank echoes back, so the return file can name it.
        _require_fields(detail, "batch_file.detail", ("payment_id", "account", "name"), problems)
        _require_one_of(detail, "batch_file.detail", ("amount_yuan", "amount_fen"), problems)
        _require_one_of(header + trailer, frame, ("count",), problems)
        _require_one_of(header + trailer, frame, ("total_yuan", "total_fen"), problems)
        _require_fields(file_name, "batch_file.file_name", ("part",), problems, why="split files need distinct names")
    return file_name, header, detail, trailer


def _check_return_layout(
    raw: dict[str, Any], encoding: str | None, delimiter: str, problems: list[str]
) -> ReturnLayout | None:
    table = _check_table(raw, "return_file", _RETURN_KEYS, {"detail", "status"}, problems)
    return_encoding = encoding
    if "encoding" in table:
        return_encoding = _check_encoding(table["encoding"], "return_file.encoding", problems)
    header = _check_template(table, "return_file.header", _RETURN_FILE_FIELDS, problems, parsed=True)
    detail = _check_template(table, "return_file.detail", _RETURN_DETAIL_FIELDS, problems, parsed=True)
    trailer = _check_template(table, "return_file.trailer", _RETURN_FILE_FIELDS, problems, parsed=True)
    if table:
        _require_fields(detail, "return_file.detail", ("payment_id", "status"), problems)
        _require_one_of(
            header + trailer,
            "return_file.header or return_file.trailer",
            ("count",),
            problems,
            why="a truncated file must be detectable",
        )

    status = _check_table(table, "return_file.status", _STATUS_KEYS, _STATUS_KEYS, problems)
    paid = _check_values(status.get("paid"), "return_file.status.paid", delimiter, problems)
    returned = _check_values(status.get("returned"), "return_file.status.returned", delimiter, problems)
    if set(paid) & set(returned):
        problems.append(f"return_file.status: {sorted(set(paid) & set(returned))} both paid and returned")

    reasons_raw = table.get("reasons", {})
    reasons: list[tuple[str, str]] = []
    if not isinstance(reasons_raw, dict):
        problems.append("return_file.reasons: must be a table of bank code = ISO 20022 code")
    else:
        for bank_code, iso in reasons_raw.items():
            if not isinstance(iso, str) or not re.fullmatch(r"[A-Z0-9]{4}", iso):
                problems.append(f"return_file.reasons.{bank_code}: {iso!r} is not an ISO 20022 reason code")
            else:
                reasons.append((bank_code, iso))
    if return_encoding is None:
        return None
    return ReturnLayout(
        encoding=return_encoding,
        header=header,
        detail=detail,
        trailer=trailer,
        status_paid=paid,
        status_returned=returned,
        reasons=tuple(reasons),
    )


def _check_keys(table: dict[str, Any], prefix: str, allowed: set[str], required: set[str], problems: list[str]) -> None:
    for key in sorted(required - table.keys()):
        problems.append(f"{prefix}{key}: missing")
    for key in sorted(table.keys() - allowed):
        problems.append(f"{prefix}{key}: unknown key (known: {', '.join(sorted(allowed))})")


def _check_table(
    parent: dict[str, Any], key: str, allowed: set[str], required: set[str], problems: list[str]
) -> dict[str, Any]:
    short = key.rsplit(".", 1)[-1]
    if short not in parent:
        return {}  # already reported as missing by the parent's key check, or reported here
    table = parent[short]
    if not isinstance(table, dict):
        problems.append(f"{key}: must be a table")
        return {}
    _check_keys(table, key + ".", allowed, required, problems)
    return table


def _check_encoding(value: Any, key: str, problems: list[str]) -> str | None:
    if value is None:
        return None
    try:
        name = codecs.lookup(value).name if isinstance(value, str) else None
    except LookupError:
        name = None
    if name not in ENCODINGS:
        problems.append(f"{key}: unknown encoding {value!r} (one of {', '.join(ENCODINGS)})")
        return None
    return name


def _check_choice(value: Any, key: str, choices: Mapping[str, str], problems: list[str]) -> str | None:
    if value is None:
        return None
    if value not in choices:
        problems.append(f"{key}: {value!r} is not one of {', '.join(choices)}")
        return None
    return value


def _check_delimiter(value: Any, problems: list[str]) -> str:
    if value is None:
        return "|"
    if not isinstance(value, str) or len(value) != 1 or not value.isprintable() or value.isalnum():
        problems.append(f"delimiter: {value!r} must be one printable character, not a letter or digit")
        return "|"
    return value


def _check_rows_max(value: Any, problems: list[str]) -> int:
    if value is None:
        return ROWS_PER_FILE_MAX
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= ROWS_PER_FILE_MAX:
        problems.append(f"rows_max: {value!r} must be a whole number from 1 to {ROWS_PER_FILE_MAX}")
        return ROWS_PER_FILE_MAX
    return value


def _check_values(value: Any, key: str, delimiter: str, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and v and delimiter not in v for v in value)
    ):
        problems.append(f"{key}: must be a non-empty list of non-empty strings without {delimiter!r}")
        return ()
    return tuple(value)


def _check_template(
    table: dict[str, Any], key: str, allowed: frozenset[str], problems: list[str], *, parsed: bool = False
) -> str:
    """A template's text, after checking its placeholders are known here and its format specs work.

    A template that is read back (`parsed`) must separate every two placeholders with literal text, or
    a line could be split between them in more than one way.
    """
    short = key.rsplit(".", 1)[-1]
    text = table.get(short, "")
    if not isinstance(text, str):
        problems.append(f"{key}: must be a string")
        return ""
    if len(text) > TEMPLATE_CHARS_MAX or "\r" in text or "\n" in text:
        problems.append(f"{key}: must be one line of at most {TEMPLATE_CHARS_MAX} characters")
        return ""
    try:
        parts = list(_FORMATTER.parse(text))
    except ValueError as e:
        problems.append(f"{key}: not a template: {e} (write a literal brace as {{{{ or }}}})")
        return ""
    before = len(problems)
    previous_was_field = False
    for literal, field, spec, conversion in parts:
        if field is None:
            continue
        if literal == "" and previous_was_field and parsed:
            problems.append(f"{key}: {{{field}}} follows another placeholder with no text between them")
        previous_was_field = True
        if field == "" or not field.isidentifier():
            problems.append(f"{key}: placeholder {{{field}}} must be a plain name (no index, attribute or position)")
        elif field not in allowed:
            problems.append(f"{key}: unknown placeholder {{{field}}} (known here: {', '.join(sorted(allowed))})")
        elif conversion is not None:
            problems.append(f"{key}: placeholder {{{field}!{conversion}}}: conversions are not allowed")
        elif spec and ("{" in spec):
            problems.append(f"{key}: placeholder {{{field}:{spec}}}: nested placeholders are not allowed")
        elif parsed and spec and field not in _DATE_FIELDS:
            problems.append(f"{key}: placeholder {{{field}:{spec}}}: a file that is read back may format only dates")
    if len(problems) == before:
        try:
            text.format_map(_SampleValues())
        except (ValueError, TypeError) as e:
            problems.append(f"{key}: a format spec does not fit its placeholder: {e}")
    return text


class _SampleValues(dict):
    """Values of the right type for every placeholder, to try a template's format specs at load time."""

    def __missing__(self, key: str) -> object:
        if key in _DATE_FIELDS:
            return datetime(2017, 1, 5, 9, 30, tzinfo=CHINA_TZ)
        if key in _INT_FIELDS or key in _FEN_FIELDS:
            return 1
        return "x"


@lru_cache(maxsize=256)
def _fields(template: str) -> frozenset[str]:
    """The placeholder names a (checked) template uses."""
    return frozenset(field for _, field, _, _ in _FORMATTER.parse(template) if field)


def _already_reported(key: str, problems: list[str]) -> bool:
    """Whether `key` already has a problem: a template that is missing or broken is not also incomplete."""
    return any(p.startswith(key + ":") for p in problems)


def _require_fields(template: str, key: str, names: Iterable[str], problems: list[str], *, why: str = "") -> None:
    if _already_reported(key, problems):
        return
    present = _fields(template)
    for name in names:
        if name not in present:
            problems.append(f"{key}: must contain {{{name}}}" + (f" ({why})" if why else ""))


def _require_one_of(template: str, key: str, names: Sequence[str], problems: list[str], *, why: str = "") -> None:
    if any(_already_reported(k, problems) for k in key.split(" or ")):
        return
    if not _fields(template) & set(names):
        shown_names = " or ".join(f"{{{n}}}" for n in names)
        problems.append(f"{key}: must contain {shown_names}" + (f" ({why})" if why else ""))


# --------------------------------------------------------------------------------------------------
# Where the money goes (issue 13, item 4)
#
# A profile is data a clerk registers and a checker approves; the batch file it lays out is what the bank
# pays. The rules below keep the file's account and amount columns the payment's own, whatever else a
# template says, so that a profile cannot send money past the approver of a batch (the attack: a
# detail template with a hard-coded account, approved by a second name, verified, 0 anomalies).
#
# They follow from how a line is rendered: `template.format_map(values)` writes the template's literal
# text and each placeholder's value (`_row_values`) in order, and a bank reads the line as columns split
# at the delimiter. Text values are refused at render time when they hold the delimiter
# (`FieldContainsDelimiter`); the rules here make sure no number, date or literal text can hold it
# either, so the columns of the template are exactly the columns the bank reads:
# - AccountNotFromPayment: `{account}` stands once in the detail line, alone in its column, with no
#   format spec; no other account-shaped value (`{payer_account}`, `{payer_bank_code}`) is in the line.
# - AmountNotFromPayment: exactly one of `{amount_yuan}` / `{amount_fen}` stands in the detail line,
#   alone in its column, with no format spec (the batch's totals are not detail placeholders at all).
# - LiteralCouldCarryAccount: in the header, detail and trailer, a column holding a placeholder holds no
#   literal digit (a date spec's literal text counts), and a column of literal text alone holds at most
#   LITERAL_CODE_DIGITS_MAX digits: room for a fixed code such as 156 or 0001, never for an account.
# - FormatSpecCouldAlterValue: numbers take only a width with zero padding (`{serial:05d}`), text only
#   an alignment and width padded with spaces (`{name:<20}`), never a fill character or a precision
#   that would write other digits or cut a value short.
# - DelimiterInValues: the delimiter is none of . - : + and space, which numbers and dates write.
# Any digit counts (`str.isdigit`: ASCII, full-width ０-９ and the rest), since a bank's system may
# normalise them.

LITERAL_CODE_DIGITS_MAX = 4
_VALUE_CHARS = ".-:+ "  # what amounts in yuan and dates write besides digits
_OWN_AMOUNTS = ("amount_yuan", "amount_fen")
_MONEY_CHECKED = ("batch_file.header", "batch_file.detail", "batch_file.trailer")
# The batch's totals are not detail placeholders at all (an unknown placeholder there is ProfileInvalid).
_FOREIGN_IN_DETAIL = {"payer_account": "AccountNotFromPayment", "payer_bank_code": "AccountNotFromPayment"}
_INT_SPEC = re.compile(r"(0?[1-9][0-9]?)?d?")
_TEXT_SPEC = re.compile(r"([<>^]?[1-9][0-9]?)?s?")
_DATE_DIRECTIVE = re.compile(r"%[-#]?[A-Za-z%]")


@dataclass(frozen=True)
class MoneyProblem:
    """A template that could write an account or amount from something other than the payment."""

    key: str  # e.g. "batch_file.detail"
    rule: str  # AccountNotFromPayment | AmountNotFromPayment | LiteralCouldCarryAccount | …
    message: str


_Piece = tuple[str, str, str]  # ("text", literal, "") or ("field", name, spec)


def template_columns(template: str, delimiter: str) -> list[list[_Piece]]:
    """A template's columns as a bank reads them: its literal text split at the delimiter, each
    placeholder in the column where it stands. `{{` and `}}` are literal braces."""
    columns: list[list[_Piece]] = [[]]
    for literal, field, spec, _ in _FORMATTER.parse(template):
        for i, part in enumerate(literal.split(delimiter)):
            if i:
                columns.append([])
            if part:
                columns[-1].append(("text", part, ""))
        if field is not None:
            columns[-1].append(("field", field, spec or ""))
    return columns


def check_money_columns(profile: Profile, problems: list[MoneyProblem]) -> None:
    """Append a `MoneyProblem` for every way the profile's batch file could write an account or an amount
    that is not the payment's own (rules above). Called on every load of a profile."""
    if profile.delimiter in _VALUE_CHARS:
        problems.append(
            MoneyProblem(
                "delimiter",
                "DelimiterInValues",
                f"{profile.delimiter!r} is written by amounts or dates, so a bank would split them into columns",
            )
        )
        return
    templates = dict(zip(_MONEY_CHECKED, (profile.header, profile.detail, profile.trailer), strict=True))
    for key, template in templates.items():
        if template:
            _check_columns(key, template_columns(template, profile.delimiter), profile.delimiter, problems)
    _check_detail_money(template_columns(profile.detail, profile.delimiter), problems)


def _check_columns(key: str, columns: list[list[_Piece]], delimiter: str, problems: list[MoneyProblem]) -> None:
    for number, column in enumerate(columns, start=1):
        literal = ""
        fields = []
        for kind, value, spec in column:
            if kind == "text":
                literal += value
                continue
            fields.append(value)
            spec_problem = _spec_problem(value, spec, delimiter)
            if spec_problem:
                problems.append(MoneyProblem(key, "FormatSpecCouldAlterValue", f"column {number}: {spec_problem}"))
            if value in _DATE_FIELDS:
                literal += _DATE_DIRECTIVE.sub("", spec)
        digits = sum(1 for ch in literal if ch.isdigit())
        if fields and digits:
            problems.append(
                MoneyProblem(
                    key,
                    "LiteralCouldCarryAccount",
                    f"column {number} ({_shown_column(column)}) writes literal digits beside "
                    f"{{{fields[0]}}}; a column with a placeholder holds no literal digit",
                )
            )
        elif digits > LITERAL_CODE_DIGITS_MAX:
            problems.append(
                MoneyProblem(
                    key,
                    "LiteralCouldCarryAccount",
                    f"column {number} is literal text {_shown_column(column)!r} with {digits} digits; literal "
                    f"text may hold at most {LITERAL_CODE_DIGITS_MAX} digits in a column (a code, never an account)",
                )
            )


def _spec_problem(field: str, spec: str, delimiter: str) -> str:
    """Why a placeholder's format spec could write something other than its value ("" when it cannot)."""
    if not spec:
        return ""
    if field in _DATE_FIELDS:
        if delimiter in _DATE_DIRECTIVE.sub("", spec):
            return f"{{{field}:{spec}}} writes the delimiter {delimiter!r}"
        return ""
    if field in _INT_FIELDS or field in _FEN_FIELDS:
        if not _INT_SPEC.fullmatch(spec):
            return f"{{{field}:{spec}}}: a number takes only a width with zero padding, e.g. {{{field}:05d}}"
        return ""
    if not _TEXT_SPEC.fullmatch(spec):
        return f"{{{field}:{spec}}}: text takes only an alignment and a width padded with spaces, e.g. {{{field}:<20}}"
    return ""


def _check_detail_money(columns: list[list[_Piece]], problems: list[MoneyProblem]) -> None:
    key = "batch_file.detail"
    placed: dict[str, list[int]] = {}
    for number, column in enumerate(columns, start=1):
        for kind, value, _ in column:
            if kind == "field":
                placed.setdefault(value, []).append(number)
    for field, rule in _FOREIGN_IN_DETAIL.items():
        if field in placed:
            problems.append(
                MoneyProblem(
                    key,
                    rule,
                    f"column {placed[field][0]}: {{{field}}} is not the payment's own; the detail line carries "
                    "only the payment's account (the payer's goes in the header)",
                )
            )
    accounts = placed.get("account", [])
    if len(accounts) > 1:
        problems.append(
            MoneyProblem(key, "AccountNotFromPayment", f"{{account}} stands in columns {accounts}; once, alone")
        )
    amounts = sorted(n for f in _OWN_AMOUNTS for n in placed.get(f, []))
    if len(amounts) > 1:
        problems.append(
            MoneyProblem(key, "AmountNotFromPayment", f"the amount stands in columns {amounts}; once, alone")
        )
    for field, rule in (("account", "AccountNotFromPayment"), *((f, "AmountNotFromPayment") for f in _OWN_AMOUNTS)):
        for number in placed.get(field, [])[:1]:
            column = columns[number - 1]
            if column != [("field", field, "")]:
                problems.append(
                    MoneyProblem(
                        key,
                        rule,
                        f"column {number} is {_shown_column(column)!r}; the column of {{{field}}} must be "
                        f"{{{field}}} alone, with no other text and no format spec",
                    )
                )


def _shown_column(column: list[_Piece]) -> str:
    return "".join(
        value if kind == "text" else "{" + value + (f":{spec}" if spec else "") + "}" for kind, value, spec in column
    )


def _line_of(text: str, key: str) -> str:
    """' line N' for the line of the profile file where `key` (e.g. "batch_file.detail") is set, else ""."""
    table, _, name = key.rpartition(".")
    current = ""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.fullmatch(r"\[\s*([^\[\]]+?)\s*\]\s*(#.*)?", stripped)
        if header:
            current = header.group(1).replace('"', "").replace(" ", "")
        elif current == table and re.match(rf"{re.escape(name)}\s*=", stripped):
            return f" line {number}"
    return ""


# --------------------------------------------------------------------------------------------------
# Rendering batch files


def render_onecard(header: BatchHeader, rows: Sequence[PaymentRow], profile: Profile) -> list[tuple[str, bytes]]:
    """The batch as the bank's one-card files: (file name, bytes) per file of at most `rows_max` rows."""
    _check_batch(header, rows)
    batch_values = _batch_values(header)
    chunks = [rows[i : i + profile.rows_max] for i in range(0, len(rows), profile.rows_max)]
    batch_values["parts"] = len(chunks)

    problems: list[tuple[str, str]] = []  # (rule, message), every bad row
    bodies: list[list[bytes]] = []
    for chunk in chunks:
        bodies.append(_encode_details(chunk, batch_values, profile, problems))
    if problems:
        _refuse(problems)

    files: list[tuple[str, bytes]] = []
    for part, (chunk, body) in enumerate(zip(chunks, bodies, strict=True), start=1):
        values = dict(batch_values, part=part, **_totals(chunk))
        lines = _framed(body, values, profile.header, profile.trailer, profile.encoding, profile.delimiter, problems)
        name = _file_name(profile.file_name.format_map(values), problems)
        files.append((name, _joined(lines, profile.line_ending, profile.end_with_line_ending)))
    if problems:
        _refuse(problems)
    names = [name for name, _ in files]
    if len(set(names)) != len(names):
        raise ExportRefused("FileNamesCollide", f"batch_file.file_name gives the same name twice: {names}")
    return files


def _check_batch(header: BatchHeader, rows: Sequence[PaymentRow]) -> None:
    if not rows:
        raise ExportRefused("BatchEmpty", f"batch {header.batch_id}: no payments to export")
    if len(rows) > ROWS_PER_BATCH_MAX:
        raise ExportRefused(
            "BatchTooLarge", f"batch {header.batch_id}: {len(rows)} payments, more than {ROWS_PER_BATCH_MAX}"
        )
    total_fen = sum(row.amount_fen for row in rows)
    if header.count != len(rows) or header.total_fen != total_fen:
        raise ExportRefused(
            "BatchTotalsDisagree",
            f"batch {header.batch_id}: header says {header.count} payments, {format_yuan(header.total_fen)} yuan; "
            f"rows are {len(rows)} payments, {format_yuan(total_fen)} yuan",
        )
    problems: list[tuple[str, str]] = []
    seen_ids: dict[str, int] = {}
    seen_serials: dict[int, int] = {}
    for row in rows:
        if row.amount_fen <= 0:
            problems.append(
                ("AmountNotPositive", f"{_row_label(row)}: amount {format_yuan(row.amount_fen)} is not positive")
            )
        if not _HEX32.fullmatch(row.payment_id):
            problems.append(("PaymentIdInvalid", f"{_row_label(row)}: payment id is not 32 hex characters"))
        if row.payment_id in seen_ids:
            problems.append(("DuplicatePayment", f"{_row_label(row)}: same payment as row {seen_ids[row.payment_id]}"))
        if row.serial in seen_serials:
            problems.append(("DuplicatePayment", f"{_row_label(row)}: serial already used"))
        seen_ids.setdefault(row.payment_id, row.serial)
        seen_serials.setdefault(row.serial, row.serial)
    if problems:
        _refuse(problems)


def _row_label(row: PaymentRow) -> str:
    return f"row {row.serial} (payment {row.payment_id})"


def _local(moment: datetime) -> datetime:
    """A timestamp as a Beijing wall-clock time; a naive one is taken to be one already."""
    return moment.astimezone(CHINA_TZ) if moment.tzinfo is not None else moment


def _batch_values(header: BatchHeader) -> dict[str, Any]:
    return {
        "date": _local(header.created_at),
        "due_date": header.due_date,
        "batch_id": header.batch_id,
        "batch8": header.batch_id[:8],
        "message_id": header.message_id,
        "region": header.region,
        "region_name": header.region_name,
        "programme": header.programme,
        "programme_name": header.programme_name,
        "period": header.period,
        "payer_name": header.payer_name,
        "payer_account": header.payer_account,
        "payer_bank_code": header.payer_bank_code,
        "batch_count": header.count,
        "batch_total_fen": header.total_fen,
        "batch_total_yuan": format_yuan(header.total_fen),
    }


def _totals(rows: Sequence[PaymentRow]) -> dict[str, Any]:
    total_fen = sum(row.amount_fen for row in rows)
    return {"count": len(rows), "total_fen": total_fen, "total_yuan": format_yuan(total_fen)}


def _row_values(row: PaymentRow, line: int, batch_values: Mapping[str, Any]) -> dict[str, Any]:
    values = dict(batch_values)
    values.update(
        serial=row.serial,
        line=line,
        payment_id=row.payment_id,
        id_number=row.id_number,
        name=row.name,
        account=row.account,
        bank_code=row.bank_code,
        amount_fen=row.amount_fen,
        amount_yuan=format_yuan(row.amount_fen),
        region=row.region,
        persons=row.persons,
        remark=row.remark,
    )
    return values


def field_limits(profile: Profile) -> tuple[FieldLimit, ...]:
    """What this profile's batch files can carry in each text field their templates write: no delimiter,
    line break or control character (`_field_problems` refuses them at export), in the profile's encoding.
    A delimited layout has no column widths of its own, so no length limit."""
    fmt = f"onecard:{profile.name}"
    forbidden = _forbidden(profile.delimiter).pattern
    limits = [
        FieldLimit(fmt, field, "batch_file.detail", forbidden=forbidden, encoding=profile.encoding)
        for field in _ROW_TEXT_FIELDS
        if field in _fields(profile.detail)
    ]
    frame = _fields(profile.header) | _fields(profile.trailer)
    limits.extend(
        FieldLimit(fmt, field, "batch_file.header", forbidden=forbidden, encoding=profile.encoding)
        for field in _BATCH_TEXT_FIELDS
        if field in frame
    )
    return tuple(limits)


@lru_cache(maxsize=64)
def _forbidden(delimiter: str) -> re.Pattern[str]:
    """Characters no field may contain: the delimiter, line breaks and other control characters."""
    return re.compile("[" + re.escape(delimiter) + r"\x00-\x1f\x7f\x85\u2028\u2029]")


def _encode_details(
    rows: Sequence[PaymentRow], batch_values: Mapping[str, Any], profile: Profile, problems: list[tuple[str, str]]
) -> list[bytes]:
    used = _fields(profile.detail)
    checked = [f for f in _ROW_TEXT_FIELDS if f in used]
    forbidden = _forbidden(profile.delimiter)
    encoded: list[bytes] = []
    for line, row in enumerate(rows, start=1):
        values = _row_values(row, line, batch_values)
        bad = _field_problems(values, checked, forbidden, profile.encoding)
        if bad:
            problems.extend((rule, f"{_row_label(row)}: {message}") for rule, message in bad)
            continue
        encoded.append(profile.detail.format_map(values).encode(profile.encoding))
    return encoded


def _field_problems(
    values: Mapping[str, Any], fields: Iterable[str], forbidden: re.Pattern[str], encoding: str
) -> list[tuple[str, str]]:
    """What is wrong with the text fields of one line: a character the file cannot carry or encode."""
    found: list[tuple[str, str]] = []
    for field in fields:
        text = values[field]
        hit = forbidden.search(text)
        if hit:
            found.append(
                (
                    "FieldContainsDelimiter",
                    f"{field} {shown(text)} contains {_char(hit.group())}, "
                    "which would break the file's columns or lines",
                )
            )
            continue
        try:
            text.encode(encoding)
        except UnicodeEncodeError as e:
            rule = "NameNotEncodable" if field == "name" else "FieldNotEncodable"
            hint = "" if encoding == "gb18030" else " (a GB18030 profile can carry rare characters)"
            found.append(
                (
                    rule,
                    f"{field} {shown(text)} has {_char(text[e.start])}, which {encoding.upper()} cannot encode{hint}",
                )
            )
    return found


def _char(ch: str) -> str:
    return f"{ch!r} (U+{ord(ch):04X})" if not ch.isprintable() else f"'{ch}' (U+{ord(ch):04X})"


def _framed(
    body: list[bytes],
    values: Mapping[str, Any],
    header: str,
    trailer: str,
    encoding: str,
    delimiter: str,
    problems: list[tuple[str, str]],
) -> list[bytes]:
    """Header, detail lines and trailer; header and trailer checked like the rows."""
    checked = {"header": header, "trailer": trailer}
    frame: dict[str, bytes | None] = {}
    for where, template in checked.items():
        if not template:
            frame[where] = None
            continue
        used = [f for f in _BATCH_TEXT_FIELDS if f in _fields(template)]
        bad = _field_problems(values, used, _forbidden(delimiter), encoding)
        problems.extend((rule, f"{where}: {message}") for rule, message in bad)
        frame[where] = None if bad else template.format_map(values).encode(encoding)
    lines = [frame["header"]] if frame["header"] is not None else []
    lines.extend(body)
    if frame["trailer"] is not None:
        lines.append(frame["trailer"])
    return lines


def _joined(lines: list[bytes], line_ending: str, end_with_line_ending: bool) -> bytes:
    ending = line_ending.encode("ascii")
    data = ending.join(lines)
    return data + ending if end_with_line_ending else data


_FILE_NAME_BAD = re.compile(r"[/\\\x00-\x1f:*?\"<>|]")


def _file_name(name: str, problems: list[tuple[str, str]]) -> str:
    if not name or name.startswith(".") or _FILE_NAME_BAD.search(name):
        problems.append(("FileNameInvalid", f"batch_file.file_name: {shown(name)} is not a plain file name"))
    return name


def _refuse(problems: list[tuple[str, str]]) -> None:
    """One refusal naming every problem; its rule is the first problem's (the row order)."""
    lines = [f"{rule}: {message}" for rule, message in problems[:ERRORS_SHOWN_MAX]]
    if len(problems) > ERRORS_SHOWN_MAX:
        lines.append(f"… and {len(problems) - ERRORS_SHOWN_MAX} more")
    raise ExportRefused(problems[0][0], "\n".join(lines))


# --------------------------------------------------------------------------------------------------
# Playing the bank: a return file for a batch


def render_return_file(
    header: BatchHeader,
    rows: Sequence[PaymentRow],
    outcomes: Mapping[str, tuple[str, str]],
    profile: Profile,
    *,
    settled_on: date | None = None,
) -> bytes:
    """The return file the profile's bank would send for `rows` (one batch file's rows).

    `outcomes` maps a payment id to (status, ISO 20022 reason code); status is "paid" or "returned". A
    payment without an outcome is paid. `settled_on` defaults to the batch's creation date.
    """
    layout = profile.returns
    rows_by_id = {row.payment_id: row for row in rows}
    for payment_id, (status, _reason) in outcomes.items():
        if payment_id not in rows_by_id:
            raise ExportRefused("UnknownPayment", f"outcome for payment {payment_id}, which is not in these rows")
        if status not in ("paid", "returned"):
            raise ExportRefused("UnknownStatus", f"payment {payment_id}: status {status!r} is not paid or returned")
    values = _batch_values(header)
    values["settled_on"] = settled_on or _local(header.created_at).date()
    values["skip"] = ""
    values.update(_totals(rows))

    problems: list[tuple[str, str]] = []
    forbidden = _forbidden(profile.delimiter)
    checked = [f for f in _ROW_TEXT_FIELDS if f in _fields(layout.detail)]
    body: list[bytes] = []
    for line, row in enumerate(rows, start=1):
        status, reason = outcomes.get(row.payment_id, ("paid", ""))
        row_values = _row_values(row, line, values)
        if status == "paid":
            row_values.update(status=layout.status_paid[0], reason="", reason_text="")
        else:
            iso = reason or REASON_UNSTATED
            row_values.update(
                status=layout.status_returned[0], reason=layout.reason_bank(iso), reason_text=reason_zh(iso)
            )
        bad = _field_problems(row_values, checked, forbidden, layout.encoding)
        if bad:
            problems.extend((rule, f"{_row_label(row)}: {message}") for rule, message in bad)
            continue
        body.append(layout.detail.format_map(row_values).encode(layout.encoding))
    if problems:
        _refuse(problems)
    lines = _framed(body, values, layout.header, layout.trailer, layout.encoding, profile.delimiter, problems)
    if problems:
        _refuse(problems)
    return _joined(lines, profile.line_ending, profile.end_with_line_ending)


# --------------------------------------------------------------------------------------------------
# Reading return files


@dataclass(frozen=True)
class _LinePattern:
    regex: re.Pattern[str]
    groups: tuple[tuple[str, str, str], ...]  # (group name, placeholder, format spec)
    template: str


@lru_cache(maxsize=64)
def _line_pattern(template: str, delimiter: str) -> _LinePattern:
    """A regex matching lines of a template: literals exactly, each placeholder as one field.

    A field is any run of characters other than the delimiter and line breaks; the payment id is
    exactly 32 hex characters, so it can share a column with the bank's echo of the remark.
    """
    free = "[^" + re.escape(delimiter) + r"\r\n]*"
    pieces: list[str] = ["^"]
    groups: list[tuple[str, str, str]] = []
    for literal, field, spec, _ in _FORMATTER.parse(template):
        pieces.append(re.escape(literal))
        if field is None:
            continue
        group = f"g{len(groups)}"
        groups.append((group, field, spec or ""))
        pieces.append(f"(?P<{group}>{'[0-9A-Fa-f]{32}' if field == 'payment_id' else free})")
    pieces.append("$")
    return _LinePattern(re.compile("".join(pieces)), tuple(groups), template)


def read_return_file(data: bytes, source: str, profile: Profile) -> list[BankResult]:
    """Every payment's outcome in a bank's return file, or `ResultFileRejected` naming every bad line."""
    reader = _ReturnReader(source, profile)
    results = reader.read(data)
    if reader.problems:
        errors = reader.errors
        shown_errors = errors[:ERRORS_SHOWN_MAX]
        if len(errors) > ERRORS_SHOWN_MAX:
            shown_errors.append(f"{source}: … and {len(errors) - ERRORS_SHOWN_MAX} more")
        raise ResultFileRejected(shown_errors)
    return results


class _ReturnReader:
    """Reads one return file, collecting every problem rather than stopping at the first."""

    def __init__(self, source: str, profile: Profile) -> None:
        self.source = source
        self.profile = profile
        self.layout = profile.returns
        self.problems: list[tuple[int, int, str]] = []  # (line, order found, message)

    def error(self, line_no: int | None, message: str) -> None:
        self.problems.append((line_no or 0, len(self.problems), message))

    @property
    def errors(self) -> list[str]:
        """Every problem found, in line order, each naming the file and the line."""
        return [
            f"{self.source} line {line_no}: {message}" if line_no else f"{self.source}: {message}"
            for line_no, _, message in sorted(self.problems)
        ]

    def read(self, data: bytes) -> list[BankResult]:
        lines = self._decoded_lines(data)
        if lines is None:
            return []
        layout = self.layout
        first, last = 0, len(lines)
        header_values: dict[str, Any] = {}
        if layout.header:
            header_values = self._frame_line(lines[0], layout.header, "header")
            first = 1
        trailer_values: dict[str, Any] = {}
        if layout.trailer:
            if last > first and self._matches(lines[-1][1], layout.trailer):
                trailer_values = self._frame_line(lines[-1], layout.trailer, "trailer")
                last -= 1
            else:
                self.error(lines[-1][0], f"missing trailer {layout.trailer!r} after this line (file truncated?)")
        details = lines[first:last]
        found = [(n, self._detail(n, text, header_values)) for n, text in details]
        results = [(n, r) for n, r in found if r is not None]
        for what, values in (("header", header_values), ("trailer", trailer_values)):
            self._check_count(what, values, details, results)
        self._check_duplicates(results)
        return [r for _, r in results]

    def _decoded_lines(self, data: bytes) -> list[tuple[int, str]] | None:
        if len(data) > RETURN_FILE_BYTES_MAX:
            self.error(None, f"larger than {RETURN_FILE_BYTES_MAX} bytes")
            return None
        if self.layout.encoding == "utf-8" and data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8) :]
        # LF (0x0A) and CR (0x0D) never occur inside a multi-byte GB18030, GBK or UTF-8 character, so
        # splitting the bytes first lets a decoding error name its line. CRLF and LF are both accepted.
        raw_lines = data.split(b"\n")
        while raw_lines and raw_lines[-1].strip(b"\r") == b"":
            raw_lines.pop()  # the line ending after the last line, and any blank lines after it
        if not raw_lines:
            self.error(None, "empty file")
            return None
        if len(raw_lines) > RETURN_FILE_LINES_MAX:
            self.error(None, f"more than {RETURN_FILE_LINES_MAX} lines")
            return None
        lines: list[tuple[int, str]] = []
        for number, raw in enumerate(raw_lines, start=1):
            raw = raw.removesuffix(b"\r")
            try:
                lines.append((number, raw.decode(self.layout.encoding)))
            except UnicodeDecodeError as e:
                bad = raw[e.start : e.end].hex(" ")
                self.error(number, f"not valid {self.layout.encoding.upper()}: bytes {bad} at byte {e.start + 1}")
        if len(lines) != len(raw_lines):
            return None
        if lines[0][1].startswith("\ufeff"):
            lines[0] = (lines[0][0], lines[0][1][1:])
        return lines

    def _matches(self, text: str, template: str) -> bool:
        return _line_pattern(template, self.profile.delimiter).regex.match(text) is not None

    def _fields_of(self, line_no: int, text: str, template: str, what: str) -> dict[str, str] | None:
        pattern = _line_pattern(template, self.profile.delimiter)
        match = pattern.regex.match(text)
        if match is None:
            self.error(line_no, f"{shown(text)} does not match the {what} layout {template!r}")
            return None
        return {field: match.group(group).strip() for group, field, _ in pattern.groups if field != "skip"}

    def _frame_line(self, line: tuple[int, str], template: str, what: str) -> dict[str, Any]:
        line_no, text = line
        fields = self._fields_of(line_no, text, template, what)
        if fields is None:
            return {}
        values: dict[str, Any] = {"line_no": line_no}
        specs = {field: spec for _, field, spec in _line_pattern(template, self.profile.delimiter).groups}
        for field, value in fields.items():
            values[field] = self._convert(line_no, field, value, specs.get(field, ""))
        return values

    def _convert(self, line_no: int, field: str, value: str, spec: str) -> Any:
        """A field's text as its type, or None after reporting why it cannot be read."""
        if field in _INT_FIELDS or field in _FEN_FIELDS:
            if not (value.isascii() and _DIGITS.fullmatch(value)):
                self.error(line_no, f"{field} {shown(value)} is not a whole number")
                return None
            if len(value) > NUMBER_DIGITS_MAX:
                self.error(line_no, f"{field} {shown(value)} has more than {NUMBER_DIGITS_MAX} digits")
                return None
            return int(value)
        if field in _YUAN_FIELDS:
            try:
                return parse_yuan(value)
            except BadAmount as e:
                self.error(line_no, f"{field}: {e}")
                return None
        if field in _DATE_FIELDS:
            try:
                return datetime.strptime(value, spec).date() if spec else date.fromisoformat(value)
            except ValueError:
                self.error(line_no, f"{field} {shown(value)} is not a date as {spec or '%Y-%m-%d'}")
                return None
        return value

    def _detail(self, line_no: int, text: str, file_values: Mapping[str, Any]) -> BankResult | None:
        pattern = _line_pattern(self.layout.detail, self.profile.delimiter)
        fields = self._fields_of(line_no, text, self.layout.detail, "detail")
        if fields is None:
            return None
        specs = {field: spec for _, field, spec in pattern.groups}
        before = len(self.problems)
        values = {field: self._convert(line_no, field, value, specs[field]) for field, value in fields.items()}
        status = self._status(line_no, values["status"])
        if len(self.problems) != before or status is None:
            return None
        amount_fen = values.get("amount_fen", values.get("amount_yuan"))
        reason = ""
        if status == "returned":
            reason = self.layout.reason_iso(values.get("reason", "")) or REASON_UNSTATED
        return BankResult(
            payment_id=values["payment_id"].lower(),
            status=status,
            reason_code=reason,
            amount_fen=amount_fen,
            source=f"{self.source} line {line_no}",
            batch_hint=file_values.get("batch_id") or file_values.get("message_id") or file_values.get("batch8") or "",
            settled_on=values.get("settled_on") or file_values.get("settled_on"),
        )

    def _status(self, line_no: int, value: str) -> str | None:
        if value in self.layout.status_paid:
            return "paid"
        if value in self.layout.status_returned:
            return "returned"
        self.error(
            line_no,
            f"status {shown(value)} is neither paid ({', '.join(self.layout.status_paid)}) "
            f"nor returned ({', '.join(self.layout.status_returned)})",
        )
        return None

    def _check_count(
        self,
        what: str,
        values: Mapping[str, Any],
        details: list[tuple[int, str]],
        results: list[tuple[int, BankResult]],
    ) -> None:
        """The count and total a header or trailer states against the detail lines (a truncated file)."""
        line_no = values.get("line_no")
        count = values.get("count")
        if count is not None and count != len(details):
            self.error(
                line_no,
                f"{what} says {count} payments, the file has {len(details)} detail lines (truncated or padded?)",
            )
        stated = values.get("total_fen", values.get("total_yuan"))
        amounts = [r.amount_fen for _, r in results]
        if stated is None or len(results) != len(details) or not amounts or None in amounts:
            return  # no total to compare, or lines already reported as unreadable
        total = sum(a for a in amounts if a is not None)
        if total != stated:
            self.error(line_no, f"{what} says {format_yuan(stated)} yuan, the detail lines sum to {format_yuan(total)}")

    def _check_duplicates(self, results: list[tuple[int, BankResult]]) -> None:
        first_line: dict[str, int] = {}
        for line_no, result in results:
            if result.payment_id in first_line:
                self.error(
                    line_no, f"payment {result.payment_id} again (first on line {first_line[result.payment_id]})"
                )
            else:
                first_line[result.payment_id] = line_no
