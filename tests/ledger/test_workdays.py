"""The official Chinese calendar (chinesecalendar) behind the deadline rules, on real dates."""

from __future__ import annotations

from datetime import date, timedelta

import chinese_calendar
import pytest

from domain.deadlines import WorkdayCalendar, last_safe_day
from ledger.workdays import ChineseWorkdays, DayBothHolidayAndWorkday, package_covered_years


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(n) for n in range((last - first).days + 1)]


def test_chinese_workdays_is_a_workday_calendar() -> None:
    assert isinstance(ChineseWorkdays(), WorkdayCalendar)


def test_the_package_covers_2004_to_at_least_2026() -> None:
    covered = package_covered_years()
    assert covered.start == 2004
    assert covered.stop - 1 >= 2026


def test_urban_dibao_due_2017_01_10_with_two_lead_days_must_reach_the_bank_on_friday_the_6th() -> None:
    # 000_a883bdda05437b65.txt 一: urban dibao in the account by the 10th of the month.
    assert last_safe_day(ChineseWorkdays(), date(2017, 1, 10), 2) == date(2017, 1, 6)


def test_spring_festival_2017_rests_27_january_to_2_february() -> None:
    calendar = ChineseWorkdays()
    for day in days(date(2017, 1, 27), date(2017, 2, 2)):
        assert calendar.is_workday(day) is False, day
        assert chinese_calendar.is_workday(day) is False


def test_spring_festival_2017_makes_up_on_sunday_22_january_and_saturday_4_february() -> None:
    calendar = ChineseWorkdays()
    for day in (date(2017, 1, 22), date(2017, 2, 4)):
        assert day.weekday() >= 5
        assert calendar.is_workday(day) is True
        assert chinese_calendar.is_workday(day) is True


def test_a_due_date_after_spring_festival_counts_back_over_the_holiday() -> None:
    # Friday 2017-02-03 is the first working day after the holiday; one lead day lands on Thursday
    # 26 January, the last working day before it.
    assert last_safe_day(ChineseWorkdays(), date(2017, 2, 3), 1) == date(2017, 1, 26)


def test_rural_dibao_due_2024_10_10_counts_over_national_day() -> None:
    # 000_a883bdda05437b65.txt 一: by the 10th of the quarter's first month. 1–7 October 2024 rest,
    # Sunday 29 September is a make-up workday.
    calendar = ChineseWorkdays()
    assert all(calendar.is_workday(day) is False for day in days(date(2024, 10, 1), date(2024, 10, 7)))
    assert calendar.is_workday(date(2024, 9, 29)) is True
    assert last_safe_day(calendar, date(2024, 10, 10), 2) == date(2024, 10, 8)
    assert last_safe_day(calendar, date(2024, 10, 10), 3) == date(2024, 9, 30)
    assert last_safe_day(calendar, date(2024, 10, 10), 4) == date(2024, 9, 29)


def test_a_year_beyond_the_package_is_unknown_and_never_guessed() -> None:
    beyond = package_covered_years().stop
    calendar = ChineseWorkdays()
    monday = date(beyond, 3, 2) - timedelta(date(beyond, 3, 2).weekday())
    assert calendar.is_workday(monday) is None
    assert last_safe_day(calendar, date(beyond, 3, 10), 0) is None
    assert not calendar.knows_year(beyond)


def test_a_year_before_the_package_is_unknown() -> None:
    assert ChineseWorkdays().is_workday(date(2003, 6, 2)) is None


def test_overrides_in_an_undeclared_unknown_year_do_not_make_it_known() -> None:
    beyond = package_covered_years().stop
    calendar = ChineseWorkdays(extra_holidays=[date(beyond, 1, 1)])
    assert calendar.is_workday(date(beyond, 1, 1)) is None


def test_a_declared_year_follows_the_policys_holidays_and_make_up_saturday() -> None:
    year = package_covered_years().stop + 1
    holiday = date(year, 5, 1)
    while holiday.weekday() >= 5:
        holiday += timedelta(1)
    saturday = holiday + timedelta(5 - holiday.weekday())
    calendar = ChineseWorkdays(extra_holidays=[holiday], extra_workdays=[saturday], declared_years=[year])
    assert calendar.knows_year(year)
    assert calendar.is_workday(holiday) is False
    assert calendar.is_workday(saturday) is True
    assert calendar.is_workday(saturday + timedelta(1)) is False
    assert calendar.is_workday(holiday - timedelta(7)) is True


def test_a_declared_2027_with_new_year_rest_and_a_make_up_saturday() -> None:
    # Friday 1 January 2027 rests; suppose Saturday 9 January is a make-up day.
    calendar = ChineseWorkdays(
        extra_holidays=[date(2027, 1, 1)], extra_workdays=[date(2027, 1, 9)], declared_years=[2027]
    )
    assert calendar.is_workday(date(2027, 1, 1)) is False
    assert calendar.is_workday(date(2027, 1, 9)) is True
    assert calendar.is_workday(date(2027, 1, 10)) is False
    # Due Monday 11 January, three lead days: Sat 9th, Fri 8th, Thu 7th.
    assert last_safe_day(calendar, date(2027, 1, 11), 3) == date(2027, 1, 7)
    # Due Monday 4 January, one lead day: the walk reaches 2026, which the package knows.
    assert last_safe_day(calendar, date(2027, 1, 4), 1) == date(2026, 12, 31)


def test_a_local_holiday_overrides_a_covered_year() -> None:
    # Tuesday 2017-01-10 made a local rest day; Saturday 2017-01-14 made a local workday.
    calendar = ChineseWorkdays(extra_holidays=[date(2017, 1, 10)], extra_workdays=[date(2017, 1, 14)])
    assert calendar.is_workday(date(2017, 1, 10)) is False
    assert calendar.is_workday(date(2017, 1, 14)) is True
    assert calendar.is_workday(date(2017, 1, 11)) is True
    assert last_safe_day(calendar, date(2017, 1, 10), 0) == date(2017, 1, 9)


def test_a_day_listed_as_both_holiday_and_workday_is_refused() -> None:
    with pytest.raises(DayBothHolidayAndWorkday, match="2017-01-10"):
        ChineseWorkdays(extra_holidays=[date(2017, 1, 10)], extra_workdays=[date(2017, 1, 10)])


def test_the_calendar_agrees_with_the_package_for_every_day_of_2017_and_2024() -> None:
    calendar = ChineseWorkdays()
    for day in days(date(2017, 1, 1), date(2017, 12, 31)) + days(date(2024, 1, 1), date(2024, 12, 31)):
        assert calendar.is_workday(day) is chinese_calendar.is_workday(day), day


def test_answers_are_cached_per_day(monkeypatch: pytest.MonkeyPatch) -> None:
    calendar = ChineseWorkdays()
    assert calendar.is_workday(date(2017, 1, 27)) is False
    monkeypatch.setattr(chinese_calendar, "is_workday", lambda day: pytest.fail("asked twice"))
    assert calendar.is_workday(date(2017, 1, 27)) is False
