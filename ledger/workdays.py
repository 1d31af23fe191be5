"""China's official working-day calendar, behind domain.deadlines.WorkdayCalendar.

Deadlines are counted in working days back from the due date (000_a883bdda05437b65.txt 一: in the
account by the 10th), and around Spring Festival or National Day the official calendar moves rest days
and adds make-up working days (调休) on weekends, so "Monday to Friday" is wrong there.

Guarantees:
- A day of a year covered by the `chinesecalendar` package (`covered_years`, 2004–2026 in 1.11; read
  from the package's own data, so a newer release extends it) is answered from the State Council's
  published calendar, with the policy's own overrides (a local holiday, an extra workday) on top.
- A year the policy declares (`declared_years`) is answered from the policy alone: a day is a workday if
  it is in `extra_workdays`, or a Monday to Friday not in `extra_holidays`. A declared year replaces the
  package's data for that year, so a policy can state the official calendar before a release has it.
- Any other year is unknown: `is_workday` returns None and never guesses from the weekday. Overrides
  that fall in such a year do not make it known; declare the year to use them.
- The same day is never both an extra holiday and an extra workday: the constructor refuses it.
- Answers are cached per day; the cache holds at most CACHE_DAYS_MAX days.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import chinese_calendar

from domain.errors import RuleBroken

# Fifty years of days: far more than one run asks about, small enough to never matter in memory.
CACHE_DAYS_MAX = 366 * 50
_SATURDAY = 5


class DayBothHolidayAndWorkday(RuleBroken):
    """A calendar override lists the same day as an extra holiday and as an extra workday."""


def package_covered_years() -> range:
    """The years chinesecalendar has official data for (it raises NotImplementedError outside them)."""
    # chinese_calendar.utils._validate_date accepts exactly min..max year of its `holidays` table.
    years = [day.year for day in chinese_calendar.holidays]
    return range(min(years), max(years) + 1)


class ChineseWorkdays:
    """Official Chinese working days, with a policy's declared years and local overrides."""

    def __init__(
        self,
        extra_holidays: Iterable[date] = (),
        extra_workdays: Iterable[date] = (),
        declared_years: Iterable[int] = (),
    ) -> None:
        self._extra_holidays = frozenset(extra_holidays)
        self._extra_workdays = frozenset(extra_workdays)
        both = sorted(self._extra_holidays & self._extra_workdays)
        if both:
            listed = ", ".join(day.isoformat() for day in both)
            raise DayBothHolidayAndWorkday(f"listed both as extra holiday and extra workday: {listed}")
        self.declared_years = frozenset(declared_years)
        self.covered_years = package_covered_years()
        self._cache: dict[date, bool | None] = {}

    def is_workday(self, day: date) -> bool | None:
        """True on a working day, False on a rest day, None for a year with no calendar data."""
        try:
            return self._cache[day]
        except KeyError:
            pass
        answer = self._decide(day)
        if len(self._cache) >= CACHE_DAYS_MAX:
            self._cache.clear()
        self._cache[day] = answer
        return answer

    def knows_year(self, year: int) -> bool:
        return year in self.declared_years or year in self.covered_years

    def _decide(self, day: date) -> bool | None:
        if day.year in self.declared_years:
            return self._declared_is_workday(day)
        if day.year not in self.covered_years:
            return None
        if day in self._extra_workdays:
            return True
        if day in self._extra_holidays:
            return False
        try:
            return bool(chinese_calendar.is_workday(day))
        except NotImplementedError:
            # The package refuses years it has no data for; covered_years should have caught it, and
            # unknown is the only safe answer if its table has a gap.
            return None

    def _declared_is_workday(self, day: date) -> bool:
        if day in self._extra_workdays:
            return True
        return day.weekday() < _SATURDAY and day not in self._extra_holidays
