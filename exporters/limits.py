"""What every export format can carry in each field, gathered from the exporters themselves.

Each exporter declares its own constraints beside the code that enforces them (`pain001.field_limits`,
`xlsx.field_limits`, `onecard.field_limits(profile)`): how many characters a field may have, which
characters would break the file (a profile's delimiter, line breaks, characters XML cannot carry) and the
encoding the text must fit. `export_field_rules` combines them per field, so a roster import (ledger.roster),
a rename and a policy load refuse at the door what some configured format would refuse at export time,
after the money is already accrued. A new format or profile declares its limits and they apply at once.

Guarantees:
- `FieldRule.problems(value)` is empty exactly when every format that writes the field can carry the
  value's characters and length (the checks the exporters make at export time, nothing more).
- `FieldRule.warnings(value)` names the formats whose encoding cannot carry a character (a rare
  character in a name and a GBK profile): such a name is real and other profiles carry it, so it warns.
- The usual case costs one length comparison and one regex search per value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from domain.identity import shown
from exporters.rows import FieldLimit

if TYPE_CHECKING:
    from exporters.onecard import Profile

__all__ = ["FieldLimit", "FieldRule", "export_field_limits", "export_field_rules"]


class FieldRule:
    """Every format's limits for one field, combined: the tightest length and every forbidden character."""

    def __init__(self, field: str, limits: Sequence[FieldLimit]) -> None:
        self.field = field
        self.limits = tuple(limits)
        bounded = [limit.chars_max for limit in self.limits if limit.chars_max is not None]
        self.chars_max: int | None = min(bounded) if bounded else None
        classes = sorted({limit.forbidden for limit in self.limits if limit.forbidden})
        self._forbidden = re.compile("|".join(classes)) if classes else None
        self._encodings = tuple(sorted({limit.encoding for limit in self.limits if limit.encoding}))

    def problems(self, value: str) -> list[str]:
        """Why some format cannot carry `value` in this field: each message names the formats."""
        chars_max, forbidden = self.chars_max, self._forbidden
        too_long = chars_max is not None and len(value) > chars_max
        hit = forbidden.search(value) if forbidden is not None else None
        if not too_long and hit is None:
            return []  # the usual case: one comparison and one search
        found: list[str] = []
        if too_long:
            tightest = [f"{limit.fmt} {limit.where}" for limit in self.limits if limit.chars_max == chars_max]
            found.append(
                f"{self.field} {shown(value)}: {len(value)} characters, more than the {chars_max} "
                f"that {', '.join(tightest)} can carry"
            )
        if hit is not None:
            char = hit.group()
            breaks = [limit.fmt for limit in self.limits if limit.forbidden and re.search(limit.forbidden, char)]
            found.append(
                f"{self.field} {shown(value)}: contains {_char(char)}, which {', '.join(breaks)} "
                "cannot carry (it would break the file's columns or lines)"
            )
        return found

    def warnings(self, value: str) -> list[str]:
        """The formats whose encoding cannot write a character of `value` (the rest can)."""
        if value.isascii():
            return []
        found = []
        for encoding in self._encodings:
            try:
                value.encode(encoding)
            except UnicodeEncodeError as e:
                formats = ", ".join(limit.fmt for limit in self.limits if limit.encoding == encoding)
                found.append(
                    f"{self.field} {shown(value)}: {_char(value[e.start])} cannot be written in "
                    f"{encoding.upper()}, so {formats} cannot export it (a GB18030 profile can)"
                )
        return found


def export_field_limits(profiles: Iterable[Profile] | None = None) -> tuple[FieldLimit, ...]:
    """Every configured format's limits: pain.001, the xlsx roster and notice, and each one-card profile
    (`profiles`, default the shipped ones in exporters/profiles/)."""
    # The exporters load lxml and openpyxl; imported when limits are asked for, not when a command starts.
    from exporters import onecard, pain001, xlsx

    if profiles is None:
        profiles = [onecard.load_profile(name) for name in onecard.profile_names()]
    limits: list[FieldLimit] = [*pain001.field_limits(), *xlsx.field_limits()]
    for profile in profiles:
        limits.extend(onecard.field_limits(profile))
    return tuple(limits)


def export_field_rules(limits: Sequence[FieldLimit] | None = None) -> Mapping[str, FieldRule]:
    """Field name → its combined rule (fields no format writes have none)."""
    chosen = export_field_limits() if limits is None else limits
    by_field: dict[str, list[FieldLimit]] = {}
    for limit in chosen:
        by_field.setdefault(limit.field, []).append(limit)
    return {field: FieldRule(field, tuple(found)) for field, found in by_field.items()}


def _char(ch: str) -> str:
    return f"{ch!r} (U+{ord(ch):04X})" if not ch.isprintable() else f"'{ch}' (U+{ord(ch):04X})"
