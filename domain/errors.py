"""Typed errors, each named after the rule it enforces (STYLE.md 5).

The CLI turns any `RuleBroken` into one line and exit code 1. `rule` is the class name unless a
subclass names a more specific rule (an exclusion names both programmes). A `FileRejected` is the
exception: the CLI prints its message as it is, one line per problem in the user's file.
"""

from __future__ import annotations

from collections.abc import Iterable


class RuleBroken(Exception):
    """A command or an input broke a stated rule; nothing was applied."""

    @property
    def rule(self) -> str:
        return type(self).__name__


class BadAmount(RuleBroken):
    """A yuan amount that is not a number, has more than two decimals, or is negative."""


class BadPeriod(RuleBroken):
    """A period name that is not YYYY-MM, YYYY-Qn, YYYY-Hn or YYYY."""


class FileRejected(RuleBroken):
    """A user's file (a roster, a policy, a bank result file) broke one or more rules; nothing in it applied.

    `errors` has one line per problem, each pointing at the input: the file and its line, key path or XML
    element (STYLE.md 7). The message is those lines and what was not done, ready to show as it is.
    """

    def __init__(self, errors: Iterable[str], message: str) -> None:
        self.errors = tuple(errors)
        super().__init__(message)
