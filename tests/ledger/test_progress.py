"""The progress bar shows only on a terminal and never disturbs piped output."""

from __future__ import annotations

import pytest

from ledger.progress import format_rate, progress


def test_piped_output_shows_nothing_and_advance_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    with progress("accrue 2017-01", 30_000) as advance:
        for _ in range(3):
            advance(10_000)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ""


def test_disabled_shows_nothing_even_with_an_unknown_total(capsys: pytest.CaptureFixture[str]) -> None:
    with progress("import roster", None, enabled=False) as advance:
        advance(5)
    assert capsys.readouterr() == ("", "")


def test_enabled_writes_the_count_to_stderr_only(capsys: pytest.CaptureFixture[str]) -> None:
    with progress("accrue 2017-01", 10, enabled=True) as advance:
        advance(3)
        advance(4)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "accrue 2017-01" in captured.err
    assert "7/10" in captured.err


def test_enabled_with_an_unknown_total_counts_without_one(capsys: pytest.CaptureFixture[str]) -> None:
    with progress("read bank file", None, enabled=True) as advance:
        advance(5)
    assert "5/?" in capsys.readouterr().err


def test_an_error_inside_the_bar_propagates() -> None:
    with pytest.raises(ValueError), progress("export", 1, enabled=True) as advance:
        advance(1)
        raise ValueError("boom")


def test_rates_read_as_people_write_them() -> None:
    assert format_rate(950) == "950"
    assert format_rate(12_345) == "12.3k"
    assert format_rate(2_500_000) == "2.5M"
