"""GB/T 2260 division codes: which region lies inside which (DESIGN.md, Roster)."""

from __future__ import annotations

import pytest

from domain.regions import is_region_code, region_contains


@pytest.mark.parametrize("inner", ["150000", "150900", "150902", "151002"])
def test_a_province_contains_every_code_with_its_first_two_digits(inner: str) -> None:
    assert region_contains("150000", inner)


def test_a_province_does_not_contain_another_province() -> None:
    assert not region_contains("150000", "110101")


@pytest.mark.parametrize("inner", ["150900", "150902", "150921"])
def test_a_city_contains_itself_and_its_counties(inner: str) -> None:
    assert region_contains("150900", inner)


@pytest.mark.parametrize("inner", ["151000", "151002", "150000", "150800"])
def test_a_city_does_not_contain_a_neighbour_or_its_province(inner: str) -> None:
    assert not region_contains("150900", inner)


def test_a_county_contains_only_itself() -> None:
    assert region_contains("150902", "150902")
    assert not region_contains("150902", "150921")
    assert not region_contains("150902", "150900")


@pytest.mark.parametrize("text", ["150902", "000000"])
def test_six_ascii_digits_are_a_region_code(text: str) -> None:
    assert is_region_code(text)


@pytest.mark.parametrize("text", ["15090", "1509021", "15090X", "１５０９０２", "", 150902, None])
def test_anything_else_is_not_a_region_code(text: object) -> None:
    assert not is_region_code(text)


@pytest.mark.parametrize(("outer", "inner"), [("15090", "150902"), ("150900", "15090X")])
def test_containment_of_a_non_code_is_a_programming_error(outer: str, inner: str) -> None:
    with pytest.raises(ValueError, match="not a six-digit division code"):
        region_contains(outer, inner)
