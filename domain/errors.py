"""Typed errors, each named after the rule it enforces (STYLE.md 5).

The CLI turns any `RuleBroken` into one line and exit code 1. `rule` is the class name unless a
subclass names a more specific rule (an exclusion names both programmes).
"""

from __future__ import annotations


class RuleBroken(Exception):
    """A command or an input broke a stated rule; nothing was applied."""

    @property
    def rule(self) -> str:
        return type(self).__name__


class BadAmount(RuleBroken):
    """A yuan amount that is not a number, has more than two decimals, or is negative."""


class BadPeriod(RuleBroken):
    """A period name that is not YYYY-MM, YYYY-Qn, YYYY-Hn or YYYY."""
