"""How the pages write money, dates, states and personal data (examples/web.md, Words).

- Money: integer fen inside; `1,234.56 元` on pages (thousands separators), exact, no float.
- Dates: `2021年1月10日` in text; ISO `2021-01-10` in tables and files.
- Programmes by their policy names (城镇低保), never their keys.
- Names and ID numbers masked (王*英, 152621********2342) for roles that need not see them
  (`sees_personal_data`): the clerk prepares payments and the auditor reads everything unmasked (as
  `audit history` does); the checker approves totals and the admin manages accounts, so both see them
  masked. Account numbers follow the ID numbers' rule.
"""

from __future__ import annotations

from datetime import date

from domain.accounts import AUDITOR, CLERK, Identity
from domain.identity import mask_id, mask_name
from ledger.web.messages import t

FULL_DATA_ROLES = frozenset({CLERK, AUDITOR})


def yuan(amount_fen: int) -> str:
    """55500 → '555.00 元'; 123456789 → '1,234,567.89 元'; -5 → '-0.05 元'."""
    sign = "-" if amount_fen < 0 else ""
    whole, fen = divmod(abs(amount_fen), 100)
    return f"{sign}{whole:,}.{fen:02d} 元"


def date_text(day: date | str | None) -> str:
    """2021-01-10 → '2021年1月10日' (a date in running text); None → '—'."""
    if day is None or day == "":
        return t("none")
    found = date.fromisoformat(day) if isinstance(day, str) else day
    return f"{found.year}年{found.month}月{found.day}日"


def state_word(status: str) -> str:
    """A batch state as the office says it: 待导出 / 已导出 / 已批准 / 已提交银行 / 已回盘."""
    return t(f"state.{status}")


def sees_personal_data(identity: Identity) -> bool:
    return identity.role in FULL_DATA_ROLES


def shown_name(name: str, identity: Identity) -> str:
    return name if sees_personal_data(identity) else mask_name(name)


def shown_id(number: str, identity: Identity) -> str:
    return number if sees_personal_data(identity) else mask_id(number)
