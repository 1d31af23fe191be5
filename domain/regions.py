"""GB/T 2260 administrative division codes and which division lies inside which.

A code is six digits: two for the province, two for the prefecture-level city (00 for the province
itself), two for the county (00 for the city itself). So 150000 is 内蒙古自治区, 150900 乌兰察布市 and
150902 集宁区.

Guarantees:
- `region_contains(outer, inner)` is true exactly when `inner` is `outer` or lies under it by that
  layout: a province contains every code with its first two digits, a city every code with its first
  four, a county only itself. Batches and reports are by the policy's region and a roster row's county
  must lie inside it (DESIGN.md, Roster).
- It raises ValueError for text that is not a six-digit code: callers check input with
  `is_region_code` first, so reaching it with a non-code is our mistake, not the user's.
"""

from __future__ import annotations

REGION_CODE_DIGITS = 6


def is_region_code(text: object) -> bool:
    """Whether `text` is six ASCII digits (the shape of a GB/T 2260 code)."""
    return isinstance(text, str) and len(text) == REGION_CODE_DIGITS and text.isascii() and text.isdigit()


def region_level_prefix(code: str) -> str:
    """The leading digits every division inside `code` shares: 2 for a province, 4 for a city, else 6."""
    if not is_region_code(code):
        raise ValueError(f"{code!r} is not a six-digit division code")
    if code.endswith("0000"):
        return code[:2]
    if code.endswith("00"):
        return code[:4]
    return code


def region_contains(outer: str, inner: str) -> bool:
    """Whether division `inner` is `outer` or lies inside it (150900 contains 150902, not 151002)."""
    if not is_region_code(inner):
        raise ValueError(f"{inner!r} is not a six-digit division code")
    return inner.startswith(region_level_prefix(outer))
