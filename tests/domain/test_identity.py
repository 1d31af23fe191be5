"""Resident IDs, 一卡通 accounts and masking (DESIGN.md, Roster and The event log)."""

from __future__ import annotations

from datetime import date

import pytest
from stdnum.cn import ric

from domain.errors import RuleBroken
from domain.identity import (
    BadAccount,
    BadResidentId,
    ResidentId,
    age_on,
    check_account,
    check_resident_id,
    mask_id,
    mask_name,
)

# From examples/walkthrough.md; both pass python-stdnum's full validation.
LI_JIANHUA = "152601198001011239"
WANG_GUIYING = "152621197505052342"


def with_check_digit(first_17: str) -> str:
    """An 18-character ID with the correct check digit, computed the way stdnum does."""
    return first_17 + ric.calc_check_digit(first_17 + "0")


def test_walkthrough_ids_are_valid_and_give_the_birth_date() -> None:
    assert check_resident_id(LI_JIANHUA) == ResidentId(LI_JIANHUA, date(1980, 1, 1), ())
    assert check_resident_id(WANG_GUIYING) == ResidentId(WANG_GUIYING, date(1975, 5, 5), ())


def test_wrong_check_digit_is_an_error_naming_the_expected_digit() -> None:
    with pytest.raises(BadResidentId) as caught:
        check_resident_id("152621197505052341")
    assert str(caught.value) == "id_number 152621197505052341: check digit should be 2"
    assert caught.value.problem == "check digit should be 2"


def test_bad_resident_id_is_a_broken_rule_named_after_itself() -> None:
    with pytest.raises(RuleBroken) as caught:
        check_resident_id("152621197505052341")
    assert caught.value.rule == "BadResidentId"


def test_impossible_birth_date_is_an_error_even_with_a_matching_check_digit() -> None:
    number = with_check_digit("15260119800230123")
    with pytest.raises(BadResidentId, match=r"birth date 19800230 is not a date$"):
        check_resident_id(number)


def test_impossible_birth_date_and_wrong_check_digit_are_both_reported() -> None:
    good = with_check_digit("15260119800230123")
    wrong_digit = "0" if good[-1] != "0" else "1"
    with pytest.raises(BadResidentId) as caught:
        check_resident_id(good[:-1] + wrong_digit)
    assert caught.value.problem == f"birth date 19800230 is not a date; check digit should be {good[-1]}"


def test_year_zero_is_not_a_date() -> None:
    with pytest.raises(BadResidentId, match="birth date 00000101 is not a date"):
        check_resident_id(with_check_digit("15260100000101123"))


@pytest.mark.parametrize("text", ["", "15260119800101123", "1526011980010112390", "152601800101123"])
def test_anything_but_18_characters_is_an_error(text: str) -> None:
    with pytest.raises(BadResidentId, match=f"must be 18 characters, not {len(text)}"):
        check_resident_id(text)


@pytest.mark.parametrize(
    "text",
    [
        "15260119800101123A",  # a letter other than X as check digit
        "X52601198001011239",  # a letter among the first 17
        "１５２６０１１９８００１０１１２３９"[:17] + "9",  # full-width digits count as 18 characters
        "152601-98001011239",
    ],
)
def test_non_digits_outside_the_check_digit_are_a_format_error(text: str) -> None:
    with pytest.raises(BadResidentId, match="must be 17 digits and a check digit 0-9 or X"):
        check_resident_id(text)


def test_lowercase_x_check_digit_is_normalised_to_uppercase() -> None:
    number = next(
        with_check_digit(f"11010119900101{n:03d}")
        for n in range(1000)
        if with_check_digit(f"11010119900101{n:03d}").endswith("X")
    )
    resident = check_resident_id(number[:-1] + "x")
    assert resident.number == number
    assert resident.number.endswith("X")


def test_surrounding_blanks_are_ignored() -> None:
    assert check_resident_id(f" {LI_JIANHUA}\t").number == LI_JIANHUA


def test_birth_place_retired_before_the_birth_year_is_a_warning_not_an_error() -> None:
    # 152621 (武川县, 乌兰察布盟) is in stdnum's table only until 1996.
    number = with_check_digit("15262119980505234")
    resident = check_resident_id(number)
    assert resident.birth_date == date(1998, 5, 5)
    assert resident.warnings == ("birth-place code 152621 not known to python-stdnum for 1998",)


def test_birth_place_not_yet_created_in_the_birth_year_is_a_warning() -> None:
    # 150902 (集宁区) dates from 2003; someone born in 1980 carries the older 152601.
    resident = check_resident_id(with_check_digit("15090219800101123"))
    assert resident.warnings == ("birth-place code 150902 not known to python-stdnum for 1980",)


def test_unknown_county_in_a_known_province_is_a_warning_not_a_crash() -> None:
    # python-stdnum 2.2 raises KeyError for this case inside get_birth_place.
    resident = check_resident_id(with_check_digit("15999919800101123"))
    assert resident.warnings == ("birth-place code 159999 not known to python-stdnum for 1980",)


def test_current_birth_place_gives_no_warning() -> None:
    assert check_resident_id(with_check_digit("15090220050101123")).warnings == ()


@pytest.mark.parametrize(
    ("birth", "day", "age"),
    [
        (date(1946, 5, 5), date(2021, 5, 4), 74),
        (date(1946, 5, 5), date(2021, 5, 5), 75),
        (date(1980, 1, 1), date(1980, 1, 1), 0),
        (date(1920, 12, 31), date(2021, 1, 1), 100),
    ],
)
def test_age_counts_whole_years_reached_on_the_birthday(birth: date, day: date, age: int) -> None:
    assert age_on(birth, day) == age


def test_a_29_february_birthday_counts_on_1_march_in_non_leap_years() -> None:
    birth = date(1944, 2, 29)
    assert age_on(birth, date(2021, 2, 28)) == 76
    assert age_on(birth, date(2021, 3, 1)) == 77


def test_a_29_february_birthday_counts_on_the_day_in_leap_years() -> None:
    birth = date(1944, 2, 29)
    assert age_on(birth, date(2024, 2, 28)) == 79
    assert age_on(birth, date(2024, 2, 29)) == 80


def test_age_before_birth_is_refused() -> None:
    with pytest.raises(ValueError, match="before the birth date"):
        age_on(date(1980, 1, 1), date(1979, 12, 31))


def test_walkthrough_accounts_pass_without_warnings() -> None:
    assert check_account("6228480045001122337") == ("6228480045001122337", ())
    assert check_account("6217002050123456789") == ("6217002050123456789", ())


def test_account_failing_luhn_is_accepted_with_a_warning() -> None:
    account, warnings = check_account("6228480045001122338")
    assert account == "6228480045001122338"
    assert warnings == ("account 6228480045001122338 fails the Luhn check (some real cards do)",)


@pytest.mark.parametrize("text", ["12AB", "", "12345678901", "12345678901234567890", "６２２８４８００４５００１"])
def test_account_that_is_not_12_to_19_digits_is_an_error(text: str) -> None:
    with pytest.raises(BadAccount, match="must be 12-19 digits"):
        check_account(text)


def test_account_error_names_the_account() -> None:
    with pytest.raises(BadAccount) as caught:
        check_account("12AB")
    assert str(caught.value) == "account 12AB: must be 12-19 digits"


@pytest.mark.parametrize("length", [12, 19])
def test_account_lengths_12_and_19_are_accepted(length: int) -> None:
    assert check_account("1" * length)[0] == "1" * length


@pytest.mark.parametrize(
    ("name", "masked"),
    [("张三", "张*"), ("张小三", "张*三"), ("欧阳小明", "欧**明"), ("李", "*"), ("", "")],
)
def test_names_keep_only_the_first_and_last_character_for_notices(name: str, masked: str) -> None:
    assert mask_name(name) == masked


def test_id_numbers_keep_the_first_6_and_last_4_characters_for_notices() -> None:
    assert mask_id("150602198001011234") == "150602********1234"
    assert mask_id("15060219800101123X") == "150602********123X"


def test_short_numbers_are_masked_entirely() -> None:
    assert mask_id("1234567890") == "**********"
