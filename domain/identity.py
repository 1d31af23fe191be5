"""Resident ID numbers, 一卡通 account numbers and their masking for public notices.

Guarantees:
- `check_resident_id` returns a `ResidentId` only for an 18-character number whose first 17 characters
  are ASCII digits, whose birth date (characters 7-14) is a real date and whose check digit (GB 11643,
  computed with python-stdnum `cn.ric`) matches. A lowercase `x` check digit is normalised to `X`. Anything
  else raises `BadResidentId`, whose message names the number and what is wrong with it.
- A birth-place code that python-stdnum does not know for the birth year is a warning on the result, never
  an error (DESIGN.md, Roster): real old IDs carry division codes retired long ago, and stdnum's table is
  not complete.
- `check_account` accepts 12-19 ASCII digits and raises `BadAccount` otherwise; a failed Luhn check is a
  warning, because some real 一卡通 cards fail it (DESIGN.md, Roster).
- `mask_name` and `mask_id` never return the full name or number (DESIGN.md, The event log: public
  notices show 张*三 and 150102********1234).

Pure: no I/O, no clock. The only state is two bounded caches (birth-place look-ups, birth dates).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from stdnum import luhn
from stdnum.cn import ric
from stdnum.exceptions import ValidationError

from domain.errors import RuleBroken

RESIDENT_ID_CHARS = 18
ACCOUNT_DIGITS_MIN = 12
ACCOUNT_DIGITS_MAX = 19
# Values echoed back in error messages are cut to this length, so a megabyte of junk in a field does
# not become a megabyte of error message.
SHOWN_CHARS_MAX = 40
# Distinct (birth-place code, birth year) pairs remembered; China has about 3,500 codes in use and
# retired, and a roster spans about a century of birth years.
BIRTH_PLACE_CACHE_MAX = 1 << 18
# About 150 years of days.
BIRTH_DATES_CACHE_MAX = 1 << 16


class BadResidentId(RuleBroken):
    """An ID number with the wrong length or format, an impossible birth date or a wrong check digit."""

    def __init__(self, number: str, problem: str) -> None:
        super().__init__(f"id_number {shown(number)}: {problem}")
        self.number = number
        self.problem = problem


class BadAccount(RuleBroken):
    """A 一卡通 account number that is not 12-19 digits."""

    def __init__(self, account: str, problem: str) -> None:
        super().__init__(f"account {shown(account)}: {problem}")
        self.account = account
        self.problem = problem


@dataclass(frozen=True, slots=True)
class ResidentId:
    """A checked 18-character resident ID number and what it says about its holder."""

    number: str
    birth_date: date
    warnings: tuple[str, ...]


def shown(text: str) -> str:
    """`text` as it may appear in a message: cut to SHOWN_CHARS_MAX, control characters escaped."""
    cut = text if len(text) <= SHOWN_CHARS_MAX else text[:SHOWN_CHARS_MAX] + "…"
    return cut if cut.isprintable() else repr(cut)


def _is_ascii_digits(text: str) -> bool:
    # str.isdigit alone accepts full-width and other Unicode digits, which int() would then read.
    return text.isascii() and text.isdigit()


def check_resident_id(text: str) -> ResidentId:
    """Check an 18-character resident ID (GB 11643-1999) with python-stdnum `cn.ric`.

    Length and format are checked first; then the birth date and the check digit, and both are reported
    if both are wrong. stdnum's own `validate` is not used as a whole because it raises the same
    `InvalidComponent` for an impossible date and for an unknown birth place, and DESIGN.md makes the
    first an error and the second a warning.
    """
    raw = text.strip()
    if len(raw) != RESIDENT_ID_CHARS:
        raise BadResidentId(text, f"must be {RESIDENT_ID_CHARS} characters, not {len(raw)}")
    number = raw[:-1] + raw[-1].upper()
    if not _is_ascii_digits(number[:-1]) or not (number[-1] == "X" or _is_ascii_digits(number[-1])):
        raise BadResidentId(text, "must be 17 digits and a check digit 0-9 or X")

    problems: list[str] = []
    birth_date = _birth_date(number[6:14])
    if birth_date is None:
        problems.append(f"birth date {number[6:14]} is not a date")
    expected = ric.calc_check_digit(number)
    if number[-1] != expected:
        problems.append(f"check digit should be {expected}")
    if problems:
        raise BadResidentId(text, "; ".join(problems))
    assert birth_date is not None  # No problems means the date parsed.

    warnings: tuple[str, ...] = ()
    place_code = number[:6]
    if not _birth_place_known(place_code, birth_date.year):
        warnings = (f"birth-place code {place_code} not known to python-stdnum for {birth_date.year}",)
    return ResidentId(number=number, birth_date=birth_date, warnings=warnings)


@lru_cache(maxsize=BIRTH_DATES_CACHE_MAX)
def _birth_date(yyyymmdd: str) -> date | None:
    """The date in characters 7-14, as `ric.get_birth_date` reads it, or None if there is no such day.

    Read here rather than with `ric.get_birth_date`, which first re-cleans the whole number character by
    character and was a third of the time spent checking an ID. Cached: birth dates repeat across a
    roster, and the cache hands out one date object per day instead of one per row.
    """
    try:
        return date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    except ValueError:
        return None


@lru_cache(maxsize=BIRTH_PLACE_CACHE_MAX)
def _birth_place_known(place_code: str, year: int) -> bool:
    """Whether stdnum's division table has `place_code` in use in `year`; cached, the look-up is slow.

    The number built here only carries the code and a valid date in that year, which is all
    `get_birth_place` reads.
    """
    probe = f"{place_code}{year:04d}0101000"
    try:
        ric.get_birth_place(probe + ric.calc_check_digit(probe + "0"))
    except ValidationError:
        return False
    except KeyError:
        # python-stdnum 2.2 raises KeyError('county') for a known province with an unknown county
        # (e.g. 159999): its table then has no 'county' entry. That is the same "not known" case.
        return False
    return True


def age_on(birth_date: date, day: date) -> int:
    """Age in whole years on `day`; someone born on 29 February turns a year older on 1 March in
    non-leap years (their birthday has not come while the date is still before 1 March).

    The 高龄津贴 bands (003_269d93830099df47.txt: 75-79, 80-99, 100+) are read from this age.
    """
    if day < birth_date:
        raise ValueError(f"{day} is before the birth date {birth_date}")
    before_birthday = (day.month, day.day) < (birth_date.month, birth_date.day)
    return day.year - birth_date.year - int(before_birthday)


def check_account(text: str) -> tuple[str, tuple[str, ...]]:
    """Check a 一卡通 account number: 12-19 digits is the rule; a failed Luhn check is only a warning.

    Returns the account (surrounding blanks removed) and its warnings.
    """
    account = text.strip()
    if not (ACCOUNT_DIGITS_MIN <= len(account) <= ACCOUNT_DIGITS_MAX and _is_ascii_digits(account)):
        raise BadAccount(text, f"must be {ACCOUNT_DIGITS_MIN}-{ACCOUNT_DIGITS_MAX} digits")
    if luhn.is_valid(account):
        return account, ()
    return account, (f"account {account} fails the Luhn check (some real cards do)",)


def mask_name(name: str) -> str:
    """Mask a name for a public notice (公示): keep the first and, from three characters, the last.

    张三 → 张*, 张小三 → 张*三, 欧阳小明 → 欧**明; a one-character name becomes *.
    """
    name = name.strip()
    if len(name) <= 1:
        return "*" * len(name)
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def mask_id(number: str) -> str:
    """Mask an ID number for a public notice: the first 6 (birth place) and last 4 characters stay.

    150602198001011234 → 150602********1234. A number of 10 characters or fewer is masked entirely,
    since keeping 10 of them would show all of it.
    """
    number = number.strip()
    if len(number) <= 10:
        return "*" * len(number)
    return number[:6] + "*" * (len(number) - 10) + number[-4:]


def is_bank_code(text: str) -> bool:
    """A bank code (CNAPS 行号) as the roster and the CLI accept it: ASCII digits only (`str.isdigit`
    alone would let full-width and other Unicode digits into a bank file)."""
    return bool(text) and text.isascii() and text.isdigit()
