"""Payment periods: month `2021-01`, quarter `2021-Q1`, half-year `2021-H1`, year `2021` (DESIGN.md).

A period is paid in advance: it falls due in its first month, on the programme's `due_day`
(000_a883bdda05437b65.txt 一: urban dibao by the 10th of the month, the others by the 10th of the
quarter's first month). Periods never cross a year end, which is what 不得跨年发放 relies on.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from domain.errors import BadPeriod

CADENCES = ("monthly", "quarterly", "half-yearly", "yearly")
MONTHS_PER_PERIOD = {"monthly": 1, "quarterly": 3, "half-yearly": 6, "yearly": 12}

YEAR_MIN = 1900  # no payment period precedes the modern calendar; also keeps dates in range
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")
_HALF = re.compile(r"^(\d{4})-H([12])$")
_YEAR = re.compile(r"^(\d{4})$")


@dataclass(frozen=True, order=True, slots=True)
class Month:
    """A calendar month; `ordinal` counts months from year 0 so months subtract cleanly."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        m = _MONTH.match(text.strip())
        if not m or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < YEAR_MIN:
            raise BadPeriod(f"{text!r} is not a month (YYYY-MM)")
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def of(cls, day: date) -> Month:
        return cls(day.year, day.month)

    @classmethod
    def from_ordinal(cls, ordinal: int) -> Month:
        return cls(ordinal // 12, ordinal % 12 + 1)

    @property
    def ordinal(self) -> int:
        return self.year * 12 + self.month - 1

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    def day(self, day_of_month: int) -> date:
        """That day of this month, clamped to the month's last day (a due_day of 31 in February)."""
        last = calendar.monthrange(self.year, self.month)[1]
        return date(self.year, self.month, min(day_of_month, last))

    def plus(self, months: int) -> Month:
        return Month.from_ordinal(self.ordinal + months)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


@dataclass(frozen=True, order=True, slots=True)
class Period:
    """`months` consecutive months starting at `start`, inside one calendar year."""

    start: Month
    months: int

    @classmethod
    def parse(cls, text: str) -> Period:
        raw = text.strip()
        if m := _MONTH.match(raw):
            return cls(Month.parse(raw), 1)
        if (m := _QUARTER.match(raw)) and int(m.group(1)) >= YEAR_MIN:
            return cls(Month(int(m.group(1)), 3 * int(m.group(2)) - 2), 3)
        if (m := _HALF.match(raw)) and int(m.group(1)) >= YEAR_MIN:
            return cls(Month(int(m.group(1)), 6 * int(m.group(2)) - 5), 6)
        if (m := _YEAR.match(raw)) and int(m.group(1)) >= YEAR_MIN:
            return cls(Month(int(m.group(1)), 1), 12)
        raise BadPeriod(f"{text!r} is not a period (YYYY-MM, YYYY-Qn, YYYY-Hn or YYYY)")

    @classmethod
    def containing(cls, month: Month, cadence: str) -> Period:
        size = MONTHS_PER_PERIOD[cadence]
        first = (month.month - 1) // size * size + 1
        return cls(Month(month.year, first), size)

    @property
    def name(self) -> str:
        return _period_name(self)

    @property
    def year(self) -> int:
        return self.start.year

    @property
    def first_day(self) -> date:
        return self.start.first_day

    @property
    def end(self) -> Month:
        """The first month after this period."""
        return self.start.plus(self.months)

    def month_list(self) -> tuple[Month, ...]:
        return _month_list(self)

    def due_date(self, due_day: int) -> date:
        """In the account by `due_day` of the period's first month (000_… 一)."""
        return self.start.day(due_day)

    def next(self) -> Period:
        return Period(self.end, self.months)

    def __str__(self) -> str:
        return self.name


@lru_cache(maxsize=4096)
def _period_name(period: Period) -> str:
    y = period.start.year
    index = (period.start.month - 1) // period.months + 1
    return {1: str(period.start), 3: f"{y}-Q{index}", 6: f"{y}-H{index}", 12: f"{y}"}[period.months]


@lru_cache(maxsize=4096)
def _month_list(period: Period) -> tuple[Month, ...]:
    return tuple(period.start.plus(i) for i in range(period.months))


@lru_cache(maxsize=65536)
def periods_starting_between(cadence: str, first: Month, last: Month) -> tuple[Period, ...]:
    """Every period of `cadence` whose first month lies in [first, last], in order (cached: a city's
    enrolments share a handful of start months)."""
    periods = []
    period = Period.containing(first, cadence)
    if period.start < first:
        period = period.next()
    while period.start <= last:
        periods.append(period)
        period = period.next()
    return tuple(periods)


@lru_cache(maxsize=65536)
def periods_overlapping(cadence: str, first: Month, last: Month) -> tuple[Period, ...]:
    """Every period of `cadence` holding a month in [first, ∞) and starting in a month up to `last`, in
    order: the period containing `first` (even when it started before it), then the following ones."""
    periods = []
    period = Period.containing(first, cadence)
    while period.start <= last:
        periods.append(period)
        period = period.next()
    return tuple(periods)
