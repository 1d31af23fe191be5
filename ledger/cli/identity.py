"""Who is acting: the one place the command line learns it.

Today the acting identity is the name given with `--as` (default: the login name), taken on trust as
every release before accounts took it; ledger.roles checks that name against the roles file, and the
events record it. DESIGN.md ("Identity, roles and integrity") replaces the typed name with an account
authenticated by its password. That change belongs here and nowhere else: the `--as` option is
declared here, and every command, check and recorded event asks `Context.actor`, which asks
`acting_identity` once per command.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def login_name() -> str:
    """The default for `--as`: $USER, else the operating system's name for this process's user."""
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (ImportError, KeyError, OSError):  # no pwd module, no passwd entry for this uid
        return "unknown"


def as_option(command: F) -> F:
    """`--as NAME`: who claims to act, passed to the command group as `claimed_actor`."""
    return click.option("--as", "claimed_actor", default=login_name, show_default="$USER", help="who is acting")(
        command
    )


def acting_identity(claimed_actor: str) -> str:
    """The identity a command acts as, given the name it claims. Before accounts exist, the name itself."""
    return claimed_actor
