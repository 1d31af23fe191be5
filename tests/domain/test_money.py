"""Money is integer fen inside; yuan text only at the edges (domain.money, DESIGN.md The event log)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import BadAmount
from domain.money import format_yuan, parse_yuan, part_fen, round_half_up_fen, split_fen

# --- parse_yuan / format_yuan --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "amount_fen"),
    [
        ("555.00", 55500),
        ("3906", 390600),
        ("5078.00", 507800),
        ("0.01", 1),
        ("0.1", 10),
        ("  792.78 ", 79278),
        ("0", 0),
    ],
)
def test_parse_yuan_turns_yuan_text_into_whole_fen(text: str, amount_fen: int) -> None:
    assert parse_yuan(text) == amount_fen


@pytest.mark.parametrize("text", ["0.001", "555.005", "1.234", "0.000"])
def test_parse_yuan_rejects_more_than_two_decimals(text: str) -> None:
    with pytest.raises(BadAmount, match="more than 2 decimals"):
        parse_yuan(text)


@pytest.mark.parametrize("text", ["-0.01", "-555.00", "-1"])
def test_parse_yuan_rejects_negative_amounts_unless_allowed(text: str) -> None:
    with pytest.raises(BadAmount, match="negative"):
        parse_yuan(text)


def test_parse_yuan_accepts_a_negative_amount_when_allowed() -> None:
    assert parse_yuan("-220.00", allow_negative=True) == -22000
    assert parse_yuan("-0.05", allow_negative=True) == -5


@pytest.mark.parametrize(
    "text",
    [
        "abc",
        "5元",
        "1,000.00",
        "12.3.4",
        "NaN",
        "nan",
        "sNaN",
        "inf",
        "-inf",
        "Infinity",
        "1e-3",
        "1E2",
        "1_000",
    ],
)
def test_parse_yuan_rejects_text_that_is_not_a_finite_number(text: str) -> None:
    with pytest.raises(BadAmount, match="not a number"):
        parse_yuan(text, allow_negative=True)


@pytest.mark.parametrize("text", ["", "   ", "\t\n"])
def test_parse_yuan_rejects_an_empty_amount(text: str) -> None:
    with pytest.raises(BadAmount, match="empty"):
        parse_yuan(text)


def test_parse_yuan_never_silently_rounds_a_very_long_amount() -> None:
    text = "1234567890123456789012345678.99"
    try:
        amount_fen = parse_yuan(text)
    except BadAmount:
        return  # refusing an absurd amount is also correct
    assert amount_fen == 123456789012345678901234567899


@pytest.mark.parametrize(
    ("amount_fen", "text"),
    [
        (55500, "555.00"),
        (1, "0.01"),
        (10, "0.10"),
        (0, "0.00"),
        (79278, "792.78"),
        (-5, "-0.05"),
        (-22000, "-220.00"),
    ],
)
def test_format_yuan_prints_fen_as_yuan_with_two_decimals(amount_fen: int, text: str) -> None:
    assert format_yuan(amount_fen) == text


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_format_yuan_and_parse_yuan_are_inverse(amount_fen: int) -> None:
    assert parse_yuan(format_yuan(amount_fen), allow_negative=True) == amount_fen


# --- split_fen -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total_fen", "parts", "expected"),
    [
        (507800, 4, (126950, 126950, 126950, 126950)),  # 特困 5078 元/年, quarterly
        (1, 12, (0,) * 11 + (1,)),
        (11, 4, (2, 3, 3, 3)),
        (390600, 12, (32550,) * 12),  # rural dibao 3906 元/年 = 325.50 a month
        (0, 3, (0, 0, 0)),
    ],
)
def test_split_fen_gives_floor_differences_of_the_running_share(
    total_fen: int, parts: int, expected: tuple[int, ...]
) -> None:
    assert split_fen(total_fen, parts) == expected


@pytest.mark.parametrize("total_fen", [507800, 1, 11, 7, 97, 7919, 104729, 999983])
@pytest.mark.parametrize("parts", [1, 2, 3, 4, 6, 7, 12])
def test_split_fen_parts_sum_exactly_to_awkward_totals(total_fen: int, parts: int) -> None:
    assert sum(split_fen(total_fen, parts)) == total_fen
    assert len(split_fen(total_fen, parts)) == parts


@given(st.integers(min_value=0, max_value=10**12), st.sampled_from([2, 4, 12]))
def test_split_fen_sums_to_the_total_and_parts_differ_by_at_most_one_fen(total_fen: int, parts: int) -> None:
    split = split_fen(total_fen, parts)
    assert sum(split) == total_fen
    assert max(split) - min(split) <= 1


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=1, max_value=24), st.data())
def test_part_fen_is_the_kth_part_of_split_fen(total_fen: int, parts: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(min_value=1, max_value=parts))
    assert part_fen(total_fen, parts, k) == split_fen(total_fen, parts)[k - 1]


@pytest.mark.parametrize("parts", [0, -1])
def test_split_fen_refuses_a_non_positive_number_of_parts(parts: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        split_fen(100, parts)


# --- round_half_up_fen ---------------------------------------------------------------------------


def test_round_half_up_fen_rounds_the_walkthrough_household_amount_792_775_up_to_792_78() -> None:
    assert round_half_up_fen(Fraction(792775, 10)) == 79278


@pytest.mark.parametrize(
    ("exact", "rounded"),
    [
        (Fraction(5, 2), 3),
        (Fraction(7, 2), 4),  # half-up, not half-even
        (Fraction(249, 100), 2),
        (Fraction(251, 100), 3),
        (Fraction(55500), 55500),
        (Fraction(0), 0),
        (Fraction(-5, 2), -3),  # away from zero at .5
        (Fraction(-249, 100), -2),
    ],
)
def test_round_half_up_fen_rounds_halves_away_from_zero(exact: Fraction, rounded: int) -> None:
    assert round_half_up_fen(exact) == rounded


@given(st.fractions())
def test_round_half_up_fen_is_within_half_a_fen_of_the_exact_amount(exact: Fraction) -> None:
    rounded = round_half_up_fen(exact)
    assert abs(rounded - exact) <= Fraction(1, 2)
    assert round_half_up_fen(-exact) == -rounded
