"""Money is integer fen inside; yuan text only at the edges (DESIGN.md, The event log).

Guarantees:
- `parse_yuan` accepts at most two decimals and refuses non-numbers and (unless allowed) negatives.
- `format_yuan` is the exact inverse on valid input.
- `split_fen(total, n)` gives n parts that sum to `total` exactly: part k = ⌊A·k/n⌋ − ⌊A·(k−1)/n⌋.
- `round_half_up_fen` is the one rounding rule for amounts computed from rates (a household's monthly
  amount, walkthrough.md: 792.775 → 792.78).
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

from domain.errors import BadAmount

FEN_PER_YUAN = 100

# The ledger-wide maximum of one payment, checked before the month-end writes anything and on every
# approved amount (`decide adjust --amount`). The largest payment a policy within its bounds
# (domain.policy: a standard of at most 20 000 元 a month per person, 20 members, an uplift of 0.2, a
# yearly period) can produce is 20 × 20 000 × 1.2 × 12 = 5 760 000 元, below this. It is ~10^10 times
# below the int64 columns (9.2 × 10^18 fen) the read models and PostgreSQL keep amounts in, and a batch of
# ROWS_PER_BATCH_MAX (2 × 10^6) such payments totals 2 × 10^15 fen, inside int64 and inside the 18 digits
# of pain.001's amounts (exporters/xsd). A payment above it is a wrong figure, never a real one.
PAYMENT_FEN_MAX = 1_000_000_000  # 10 000 000.00 元
# A period pays at most 12 months (a yearly cadence), so an approved monthly amount above this could not
# be paid for a year without breaking PAYMENT_FEN_MAX.
MONTHS_PER_PAYMENT_MAX = 12
MONTH_AMOUNT_FEN_MAX = PAYMENT_FEN_MAX // MONTHS_PER_PAYMENT_MAX  # 833 333.33 元


# Plain decimal notation only: no exponent, no underscores, no NaN/inf. More than 2 decimals is
# matched here so that it gets its own message below.
_YUAN = re.compile(r"^([+-]?)(\d{1,15})(?:\.(\d+))?$")
AMOUNT_YUAN_DIGITS_MAX = 15  # up to 999 trillion yuan: far above any standard, far below overflow


def parse_yuan(text: str, *, allow_negative: bool = False) -> int:
    """'555.00' → 55500, exactly. Raises BadAmount naming what is wrong."""
    raw = text.strip()
    if not raw:
        raise BadAmount("empty amount")
    m = _YUAN.match(raw)
    if not m:
        if re.match(r"^[+-]?\d{16,}(\.\d*)?$", raw):
            raise BadAmount(f"{text!r} has more than {AMOUNT_YUAN_DIGITS_MAX} digits before the point")
        raise BadAmount(f"{text!r} is not a number")
    sign, whole, decimals = m.group(1), m.group(2), m.group(3) or ""
    if len(decimals) > 2:
        raise BadAmount(f"{text!r} has more than 2 decimals")
    fen = int(whole) * FEN_PER_YUAN + int(decimals.ljust(2, "0"))
    if sign == "-" and fen != 0:
        if not allow_negative:
            raise BadAmount(f"{text!r} is negative")
        return -fen
    return fen


def format_yuan(amount_fen: int) -> str:
    """55500 → '555.00'; -5 → '-0.05'."""
    sign = "-" if amount_fen < 0 else ""
    whole, fen = divmod(abs(amount_fen), FEN_PER_YUAN)
    return f"{sign}{whole}.{fen:02d}"


_RATIO = re.compile(r"^\d{1,6}(?:\.\d{1,12})?$")


def parse_ratio(text: str) -> Fraction:
    """A factor or share such as '1.3' or '0.05', held exactly: plain decimal notation, no exponent."""
    raw = text.strip()
    if not _RATIO.match(raw):
        raise BadAmount(f"{text!r} is not a non-negative decimal such as 1.3 or 0.05")
    return Fraction(Decimal(raw))


def split_fen(total_fen: int, parts: int) -> tuple[int, ...]:
    """Split an amount into `parts` instalments that sum to it exactly (DESIGN.md, The event log)."""
    if parts <= 0:
        raise ValueError("parts must be positive")
    return tuple((total_fen * k) // parts - (total_fen * (k - 1)) // parts for k in range(1, parts + 1))


def part_fen(total_fen: int, parts: int, k: int) -> int:
    """Instalment k (1-based) of `split_fen(total_fen, parts)` without building the tuple."""
    return (total_fen * k) // parts - (total_fen * (k - 1)) // parts


def round_half_up_fen(amount_fen: Fraction) -> int:
    """Round an exact fen amount half-up (away from zero at .5) to whole fen, exactly."""
    if amount_fen < 0:
        return -round_half_up_fen(-amount_fen)
    return int((2 * amount_fen.numerator + amount_fen.denominator) // (2 * amount_fen.denominator))
