"""What a roster would change before it is imported: the web's 名册导入 preview (examples/web.md).

Guarantees:
- A preview records nothing. It reads the file with the import's own reader (ledger.roster: CSV or
  xlsx, the same checks and line numbers) and checks it against the ledger with the import's own rules
  (`Registry.check_roster`), so a file the preview accepts is one the import accepts, unless the ledger
  changes in between — the import checks everything again, and applies all or nothing.
- 应发 is per month: each row's monthly amount at the policy's standard for the given month (the household
  formula of domain.policy, the age on the month's first day), summed per programme. It says what the
  enrolments cost a month at today's standards, not what the month-end will accrue (that also depends on
  effective dates, the start and stop rules and decisions).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from domain.identity import age_on
from domain.periods import Month
from domain.policy import HouseholdFacts, NoStandardInForce, Policy, month_amount_fen
from ledger.apps import ImportSummary
from ledger.roster import RosterRow


@dataclass(frozen=True, slots=True)
class ProgrammeDue:
    """One programme's rows in a roster and what they are due a month."""

    programme: str
    rows: int
    households: int  # rows of a household programme
    persons: int  # members of those households, and one per row of a person programme
    monthly_fen: int  # 应发 a month at the standard in force in the preview's month
    without_standard: int  # rows whose programme has no standard in force that month (not in monthly_fen)


@dataclass(frozen=True, slots=True)
class RosterPreview:
    """A roster checked and not imported: what `import_roster` would report, and 应发 per programme."""

    file: str
    rows: int
    summary: ImportSummary  # enrolled: rows the import would record; unchanged: rows the ledger holds already
    month: Month  # the month whose standards price `programmes`
    programmes: tuple[ProgrammeDue, ...]

    @property
    def changes_nothing(self) -> bool:
        return self.summary.enrolled == 0

    @property
    def monthly_fen(self) -> int:
        return sum(p.monthly_fen for p in self.programmes)


def roster_preview(
    policy: Policy, rows: tuple[RosterRow, ...], summary: ImportSummary, path: Path, month: Month
) -> RosterPreview:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])  # rows, households, persons, fen, none
    first_day = month.first_day
    for row in rows:
        programme = policy.programmes[row.programme]
        household = programme.unit == "household"
        due = counts[row.programme]
        due[0] += 1
        due[1] += 1 if household else 0
        due[2] += row.members if household else 1
        try:
            due[3] += month_amount_fen(
                policy,
                programme,
                month,
                age=age_on(row.birth_date, first_day),
                household=HouseholdFacts(row.members, row.monthly_income_fen, row.special_members),
                override_fen=None,
            )
        except NoStandardInForce:
            due[4] += 1
    programmes = tuple(ProgrammeDue(key, *counts[key]) for key in sorted(counts))
    return RosterPreview(path.name, len(rows), summary, month, programmes)
