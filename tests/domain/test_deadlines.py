"""Deadlines against a plain Monday-to-Friday calendar (000_a883bdda05437b65.txt 一: by the 10th)."""

from __future__ import annotations

from datetime import date

import pytest

from domain.deadlines import (
    AT_RISK,
    BANK_LEAD_DAYS_MAX,
    DEADLINE_STATES,
    ON_TIME,
    OVERDUE,
    PAID,
    PAID_LATE,
    UNKNOWN,
    BankLeadDaysOutOfRange,
    NoWorkdayWithinReach,
    WorkdayCalendar,
    deadline_state,
    last_safe_day,
    year_end_breach,
)
from domain.periods import Month, Period


class WeekdayCalendar:
    """Monday to Friday are working days; years outside `known_years` are unknown."""

    def __init__(self, known_years: range = range(2000, 2100)) -> None:
        self.known_years = known_years
        self.asked: list[date] = []

    def is_workday(self, day: date) -> bool | None:
        self.asked.append(day)
        if day.year not in self.known_years:
            return None
        return day.weekday() < 5


class NeverWorks:
    def is_workday(self, day: date) -> bool | None:
        return False


def test_a_plain_weekday_calendar_is_a_workday_calendar() -> None:
    assert isinstance(WeekdayCalendar(), WorkdayCalendar)


def test_with_no_lead_time_a_working_due_date_is_its_own_safe_day() -> None:
    # 2017-01-10 is a Tuesday.
    assert last_safe_day(WeekdayCalendar(), date(2017, 1, 10), 0) == date(2017, 1, 10)


def test_lead_days_count_working_days_strictly_before_a_working_due_date() -> None:
    calendar = WeekdayCalendar()
    assert last_safe_day(calendar, date(2017, 1, 10), 1) == date(2017, 1, 9)
    # Two working days before Tuesday the 10th skips the weekend: Friday the 6th.
    assert last_safe_day(calendar, date(2017, 1, 10), 2) == date(2017, 1, 6)
    assert last_safe_day(calendar, date(2017, 1, 10), 5) == date(2017, 1, 3)


def test_with_no_lead_time_a_due_date_on_a_rest_day_falls_back_to_the_working_day_before() -> None:
    # 2021-01-10 is a Sunday: the money can land on Friday the 8th at the latest.
    assert last_safe_day(WeekdayCalendar(), date(2021, 1, 10), 0) == date(2021, 1, 8)


def test_a_due_date_on_a_rest_day_counts_lead_days_from_the_last_working_day_before_it() -> None:
    # A file handed over on Friday the 8th with one lead day would land on Monday the 11th, too late.
    assert last_safe_day(WeekdayCalendar(), date(2021, 1, 10), 1) == date(2021, 1, 7)
    assert last_safe_day(WeekdayCalendar(), date(2021, 1, 10), 2) == date(2021, 1, 6)


def test_safe_day_is_unknown_when_the_walk_reaches_an_unknown_year() -> None:
    calendar = WeekdayCalendar(known_years=range(2017, 2018))
    # 2017-01-03 is a Tuesday; two working days back lands in 2016, which the calendar does not know.
    assert last_safe_day(calendar, date(2017, 1, 3), 2) is None
    assert last_safe_day(calendar, date(2018, 1, 10), 0) is None


def test_safe_day_is_known_when_only_days_it_does_not_need_are_unknown() -> None:
    calendar = WeekdayCalendar(known_years=range(2017, 2018))
    assert last_safe_day(calendar, date(2017, 1, 3), 1) == date(2017, 1, 2)
    assert all(day.year == 2017 for day in calendar.asked)


def test_a_negative_or_absurd_bank_lead_time_is_refused() -> None:
    with pytest.raises(BankLeadDaysOutOfRange):
        last_safe_day(WeekdayCalendar(), date(2017, 1, 10), -1)
    with pytest.raises(BankLeadDaysOutOfRange):
        last_safe_day(WeekdayCalendar(), date(2017, 1, 10), BANK_LEAD_DAYS_MAX + 1)
    assert last_safe_day(WeekdayCalendar(), date(2017, 1, 10), BANK_LEAD_DAYS_MAX) is not None


def test_a_calendar_without_working_days_is_refused_instead_of_walked_forever() -> None:
    with pytest.raises(NoWorkdayWithinReach):
        last_safe_day(NeverWorks(), date(2017, 1, 10), 0)


def test_the_safe_day_of_a_quarterly_period_uses_the_quarters_first_month() -> None:
    # 000_a883bdda05437b65.txt 一: rural dibao by the 10th of the quarter's first month.
    due = Period.containing(Month(2017, 5), "quarterly").due_date(10)
    assert due == date(2017, 4, 10)  # a Monday
    assert last_safe_day(WeekdayCalendar(), due, 1) == date(2017, 4, 7)


DUE = date(2017, 1, 10)
SAFE = date(2017, 1, 6)


def state(*, today: date, settled_on: date | None = None, submitted: bool = False, safe: date | None = SAFE) -> str:
    return deadline_state(due_date=DUE, safe_day=safe, today=today, settled_on=settled_on, submitted=submitted)


def test_settled_on_or_before_the_due_date_is_paid() -> None:
    assert state(today=date(2017, 2, 1), settled_on=DUE) == PAID
    assert state(today=date(2017, 2, 1), settled_on=date(2017, 1, 5)) == PAID


def test_settled_after_the_due_date_is_paid_late() -> None:
    assert state(today=date(2017, 2, 1), settled_on=date(2017, 1, 11)) == PAID_LATE


def test_settlement_decides_even_without_a_safe_day() -> None:
    assert state(today=date(2017, 1, 3), settled_on=date(2017, 1, 3), safe=None) == PAID


def test_unsettled_after_the_due_date_is_overdue_submitted_or_not() -> None:
    assert state(today=date(2017, 1, 11)) == OVERDUE
    assert state(today=date(2017, 1, 11), submitted=True) == OVERDUE
    assert state(today=date(2017, 1, 11), safe=None) == OVERDUE


def test_unsubmitted_after_the_safe_day_is_at_risk_up_to_the_due_date() -> None:
    assert state(today=date(2017, 1, 7)) == AT_RISK
    assert state(today=DUE) == AT_RISK


def test_unsubmitted_on_or_before_the_safe_day_is_on_time() -> None:
    assert state(today=SAFE) == ON_TIME
    assert state(today=date(2017, 1, 2)) == ON_TIME


def test_submitted_to_the_bank_is_on_time_until_the_due_date_passes() -> None:
    assert state(today=date(2017, 1, 9), submitted=True) == ON_TIME
    assert state(today=DUE, submitted=True, safe=None) == ON_TIME


def test_an_unknown_safe_day_makes_an_unsubmitted_payment_unknown() -> None:
    assert state(today=date(2017, 1, 2), safe=None) == UNKNOWN


def test_every_state_is_one_of_the_named_states() -> None:
    assert len(set(DEADLINE_STATES)) == 6
    for today in (date(2017, 1, 1), SAFE, DUE, date(2017, 1, 11)):
        for settled_on in (None, DUE, date(2017, 1, 12)):
            for submitted in (False, True):
                for safe in (SAFE, None):
                    answer = state(today=today, settled_on=settled_on, submitted=submitted, safe=safe)
                    assert answer in DEADLINE_STATES


def test_paid_inside_the_year_is_no_year_end_breach() -> None:
    assert not year_end_breach(period_year=2017, today=date(2018, 3, 1), settled_on=date(2017, 12, 31))


def test_paid_after_the_year_end_breaks_no_cross_year_payment() -> None:
    # 000_a883bdda05437b65.txt 一: 不得跨年发放.
    assert year_end_breach(period_year=2017, today=date(2018, 3, 1), settled_on=date(2018, 1, 1))


def test_unsettled_on_new_years_eve_is_not_yet_a_breach() -> None:
    assert not year_end_breach(period_year=2017, today=date(2017, 12, 31), settled_on=None)


def test_unsettled_after_the_year_end_is_a_breach() -> None:
    assert year_end_breach(period_year=2017, today=date(2018, 1, 1), settled_on=None)
