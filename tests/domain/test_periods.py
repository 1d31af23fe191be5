"""Payment periods: names, due dates and the periods a run covers (domain.periods)."""

from __future__ import annotations

from datetime import date

import pytest

from domain.errors import BadPeriod
from domain.periods import Month, Period, periods_starting_between


@pytest.mark.parametrize(
    ("name", "start", "months"),
    [
        ("2021-01", Month(2021, 1), 1),
        ("2021-12", Month(2021, 12), 1),
        ("2021-Q1", Month(2021, 1), 3),
        ("2021-Q4", Month(2021, 10), 3),
        ("2021-H1", Month(2021, 1), 6),
        ("2021-H2", Month(2021, 7), 6),
        ("2021", Month(2021, 1), 12),
    ],
)
def test_a_period_name_parses_to_its_first_month_and_length_and_prints_back(
    name: str, start: Month, months: int
) -> None:
    period = Period.parse(name)
    assert period == Period(start, months)
    assert period.name == name
    assert str(period) == name


@pytest.mark.parametrize(
    "name",
    [
        "2021-13",
        "2021-00",
        "2021-1",
        "2021-Q0",
        "2021-Q5",
        "2021-H0",
        "2021-H3",
        "21",
        "2021-",
        "",
        "2021/01",
        "2021-q1",
        "2021-01-01",
        "Q1-2021",
    ],
)
def test_a_bad_period_name_raises_bad_period(name: str) -> None:
    with pytest.raises(BadPeriod):
        Period.parse(name)


@pytest.mark.parametrize("name", ["2021-13", "2021-00", "2021-Q1", "2021", "abc", ""])
def test_a_bad_month_name_raises_bad_period(name: str) -> None:
    with pytest.raises(BadPeriod):
        Month.parse(name)


def test_a_month_in_year_zero_raises_bad_period() -> None:
    with pytest.raises(BadPeriod):
        Month.parse("0000-01")


def test_a_month_prints_as_year_dash_two_digit_month() -> None:
    assert str(Month.parse("2017-03")) == "2017-03"
    assert str(Month(2017, 3)) == "2017-03"


def test_months_step_across_a_year_end() -> None:
    assert Month(2017, 12).plus(1) == Month(2018, 1)
    assert Month(2018, 1).plus(-1) == Month(2017, 12)
    assert Month(2017, 1).plus(14) == Month(2018, 3)


@pytest.mark.parametrize(
    ("name", "due_day", "due_date"),
    [
        ("2017-01", 10, date(2017, 1, 10)),
        ("2017-02", 10, date(2017, 2, 10)),
        ("2017-Q1", 10, date(2017, 1, 10)),
        ("2017-Q2", 10, date(2017, 4, 10)),
        ("2017-Q4", 10, date(2017, 10, 10)),
        ("2017-H2", 10, date(2017, 7, 10)),
        ("2017", 5, date(2017, 1, 5)),
        ("2017-02", 28, date(2017, 2, 28)),
    ],
)
def test_a_period_falls_due_on_due_day_of_its_first_month(name: str, due_day: int, due_date: date) -> None:
    assert Period.parse(name).due_date(due_day) == due_date


def test_a_due_day_beyond_the_month_end_is_the_last_day_of_the_month() -> None:
    assert Period.parse("2017-02").due_date(31) == date(2017, 2, 28)
    assert Period.parse("2020-02").due_date(31) == date(2020, 2, 29)


@pytest.mark.parametrize(
    ("month", "cadence", "name"),
    [
        (Month(2017, 5), "monthly", "2017-05"),
        (Month(2017, 5), "quarterly", "2017-Q2"),
        (Month(2017, 6), "quarterly", "2017-Q2"),
        (Month(2017, 7), "quarterly", "2017-Q3"),
        (Month(2017, 6), "half-yearly", "2017-H1"),
        (Month(2017, 7), "half-yearly", "2017-H2"),
        (Month(2017, 12), "yearly", "2017"),
    ],
)
def test_the_period_containing_a_month_is_of_the_cadence_and_inside_the_year(
    month: Month, cadence: str, name: str
) -> None:
    assert Period.containing(month, cadence).name == name


def _names(cadence: str, first: str, last: str) -> list[str]:
    return [p.name for p in periods_starting_between(cadence, Month.parse(first), Month.parse(last))]


def test_monthly_periods_starting_between_two_months_include_both_ends() -> None:
    assert _names("monthly", "2017-11", "2018-02") == ["2017-11", "2017-12", "2018-01", "2018-02"]


def test_quarterly_periods_starting_between_skip_a_quarter_that_started_before_the_first_month() -> None:
    assert _names("quarterly", "2017-01", "2017-12") == ["2017-Q1", "2017-Q2", "2017-Q3", "2017-Q4"]
    assert _names("quarterly", "2017-02", "2017-04") == ["2017-Q2"]
    assert _names("quarterly", "2017-02", "2017-03") == []


def test_half_yearly_periods_starting_between_follow_the_half_years() -> None:
    assert _names("half-yearly", "2017-01", "2018-07") == ["2017-H1", "2017-H2", "2018-H1", "2018-H2"]
    assert _names("half-yearly", "2017-02", "2017-12") == ["2017-H2"]


def test_yearly_periods_starting_between_start_in_january() -> None:
    assert _names("yearly", "2017-01", "2019-01") == ["2017", "2018", "2019"]
    assert _names("yearly", "2017-02", "2018-12") == ["2018"]


def test_no_period_starts_between_a_first_month_after_the_last() -> None:
    assert _names("monthly", "2017-05", "2017-04") == []


@pytest.mark.parametrize("cadence", ["monthly", "quarterly", "half-yearly", "yearly"])
def test_no_period_crosses_a_year_end(cadence: str) -> None:
    for period in periods_starting_between(cadence, Month(2017, 1), Month(2019, 12)):
        assert period.month_list()[-1].year == period.year
