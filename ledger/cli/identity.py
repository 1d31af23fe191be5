"""Who is acting: the one place the command line learns it.

Today the acting identity is the name given with `--as` (default: the login name), taken on trust as in
every release so far; ledger.roles checks that name against the roles file, and the events record it.
DESIGN.md ("Identity, roles and integrity") replaces the typed name with an account authenticated by its
password. That change is made here and nowhere else: `--as` is declared here, and every command, role
check and recorded event asks `Context.actor`, which asks `acting_identity` once per command.
"""

from __future__ import annotations

import getpass
import os

import click


def login_name() -> str:
    """The default for `--as`: $USER, else the operating system's name for this process's user."""
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (ImportError, KeyError, OSError):  # no pwd module, no passwd entry for this uid
        return "unknown"


# `--as NAME`: who claims to act, passed to the root command group as `claimed_actor`.
as_option = click.option("--as", "claimed_actor", default=login_name, show_default="$USER", help="who is acting")


def acting_identity(claimed_actor: str) -> str:
    """The identity a command acts as, given the name it claims. Before accounts exist: that name."""
    return claimed_actor
