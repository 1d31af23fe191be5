"""Payment deadlines: when the file must reach the bank, and whether a payment was on time.

The rule (000_a883bdda05437b65.txt 一): urban dibao must be in the account by the 10th of the month
(当月的10日前发放到位); rural dibao, 特困, 困境儿童, disability 两项 and 精简退职职工 by the 10th of the
quarter's first month (当季度首月10日前); 优抚, 高龄津贴 and 三民 half-yearly or quarterly as the locality
chooses, and never across a year end (不得跨年发放). The due date itself comes from
`Period.due_date(due_day)` in domain/periods.py; this module only reasons about it.

Guarantees:
- Pure: no clock, no I/O. `today` is always passed in, and so is the working-day calendar, behind the
  `WorkdayCalendar` protocol (ledger/workdays.py implements it on top of the official calendar).
- Never guesses a working day. A calendar answers `None` for a year it has no data for, and
  `last_safe_day` then answers `None`; `deadline_state` turns that into `UNKNOWN` only when the answer
  could change the state (unsettled, not submitted, not yet past due).
- Every walk over the calendar is bounded: at most `BANK_LEAD_DAYS_MAX` working days of bank lead time,
  at most `CALENDAR_WALK_DAYS_MAX` calendar days walked. Going beyond either raises a typed error.
- `deadline_state` returns exactly one of `DEADLINE_STATES`.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Protocol, runtime_checkable

from domain.errors import RuleBroken

# A bank that needs more than six weeks of working days to credit a batch is a data-entry mistake,
# not a bank; refusing it keeps the calendar walk short.
BANK_LEAD_DAYS_MAX = 30
# The longest official run of rest days is about nine calendar days (Spring Festival joined to a
# weekend); a year without one working day in reach means the calendar data is wrong.
CALENDAR_WALK_DAYS_MAX = 366

PAID = "paid"
PAID_LATE = "paid late"
OVERDUE = "overdue"
AT_RISK = "at risk"
ON_TIME = "on time"
UNKNOWN = "unknown"
DEADLINE_STATES = (PAID, PAID_LATE, OVERDUE, AT_RISK, ON_TIME, UNKNOWN)

_ONE_DAY = timedelta(days=1)


class BankLeadDaysOutOfRange(RuleBroken):
    """A bank lead time that is negative or longer than BANK_LEAD_DAYS_MAX working days."""


class NoWorkdayWithinReach(RuleBroken):
    """The calendar has no working day within CALENDAR_WALK_DAYS_MAX days: its data is wrong."""


@runtime_checkable
class WorkdayCalendar(Protocol):
    """Which days banks and offices work: weekends, official holidays and make-up workdays (调休)."""

    def is_workday(self, day: date) -> bool | None:
        """True or False for a day of a year the calendar knows; None when it has no data for the year."""
        ...


def last_safe_day(calendar: WorkdayCalendar, due_date: date, bank_lead_days: int) -> date | None:
    """The last day the payment file can reach the bank and still be in the accounts by `due_date`.

    The money can land at the latest on the last working day on or before `due_date` (the landing day);
    the bank needs `bank_lead_days` working days before it, so the file must be handed over that many
    working days before the landing day. With a lead of 0 the safe day is the landing day itself.
    When `due_date` is a working day this is exactly `bank_lead_days` working days strictly before it
    (2017-01-10, a Tuesday, with 2 lead days → Friday 2017-01-06). When `due_date` falls on a rest day
    the count starts from the working day before it, because a bank does not credit a batch on a rest
    day: a file handed over on Friday with 1 lead day lands on Monday, after a Sunday due date.

    Returns None when any day on the way is in a year the calendar does not know.
    """
    if not 0 <= bank_lead_days <= BANK_LEAD_DAYS_MAX:
        raise BankLeadDaysOutOfRange(f"bank lead time {bank_lead_days} working days is outside 0..{BANK_LEAD_DAYS_MAX}")
    # The landing day is the 1st working day counting back from due_date inclusive; the safe day is
    # bank_lead_days working days before it, i.e. the (bank_lead_days + 1)-th.
    workdays_to_find = bank_lead_days + 1
    day = due_date
    for _ in range(CALENDAR_WALK_DAYS_MAX):
        is_workday = calendar.is_workday(day)
        if is_workday is None:
            return None
        if is_workday:
            workdays_to_find -= 1
            if workdays_to_find == 0:
                return day
        day -= _ONE_DAY
    raise NoWorkdayWithinReach(
        f"fewer than {bank_lead_days + 1} working days in the {CALENDAR_WALK_DAYS_MAX} days up to {due_date}"
    )


def deadline_state(
    *,
    due_date: date,
    safe_day: date | None,
    today: date,
    settled_on: date | None,
    submitted: bool,
) -> str:
    """Where one payment stands against its due date (000_a883bdda05437b65.txt 一), as of `today`.

    - PAID: settled (credited) on or before the due date; PAID_LATE: settled after it.
    - OVERDUE: not settled and today is past the due date.
    - AT_RISK: not settled, not yet submitted to the bank, and today is past the last safe day.
    - UNKNOWN: as AT_RISK would be decided, but the safe day is unknown (no calendar data).
    - ON_TIME: otherwise. A file already with the bank is on time until the due date passes:
      whether it lands in time is the bank's part, and OVERDUE reports it if it does not.
    """
    if settled_on is not None:
        return PAID if settled_on <= due_date else PAID_LATE
    if today > due_date:
        return OVERDUE
    if submitted:
        return ON_TIME
    if safe_day is None:
        return UNKNOWN
    return AT_RISK if today > safe_day else ON_TIME


def year_end_breach(*, period_year: int, today: date, settled_on: date | None) -> bool:
    """True when a payment for `period_year` was, or can now only be, paid in a later year.

    000_a883bdda05437b65.txt 一: 不得跨年发放, a year's money is never paid across the year end. A payment
    settled after 31 December of its year breaks the rule, and so does one still unsettled after that
    day, since it can no longer be paid inside the year.
    """
    year_end = date(period_year, 12, 31)
    if settled_on is not None:
        return settled_on > year_end
    return today > year_end
