"""Who is acting: the one place the command line learns it.

Two cases, decided by the ledger itself (ledger.accounts.accounts_exist), never by a flag or a file:
- The ledger has accounts (every ledger `init --admin` created, and an earlier release's ledger once its
  first admin exists): a command acts as an account only after its password. From a session
  (`yikatong login NAME`; ledger.sessions), or `--as NAME` with the password from `--password-file F`,
  `$YIKATONG_PASSWORD_FILE`, or a prompt without echo when standard input is a terminal. With none of
  these and no terminal, the command is refused at once (`PasswordNeeded`), never left waiting on a prompt.
- The ledger has no accounts yet (an earlier release's): the name given with `--as` (default: the
  login name), taken on trust as in those releases; ledger.roles checks it against the roles file.
Either way the name is normalised (NFKC, trimmed; empty names and control characters refused:
domain.accounts.normalised_name), so `--as "alice "` is alice. Every command, role check and
recorded event asks `Context.identity` / `Context.actor`, which ask here once per command.
"""

from __future__ import annotations

import getpass
import os
import sys
import time
from pathlib import Path

import click

from domain.accounts import PASSWORD_CHARS_MAX, Identity, account_id, normalised_name
from domain.errors import RuleBroken
from ledger.accounts import authenticate, identity_of, read_password_file
from ledger.apps import Registry
from ledger.sessions import check_token, ledger_ref, read_session, session_path_for, session_secret
from ledger.storage import Database

PASSWORD_FILE_ENV = "YIKATONG_PASSWORD_FILE"


class PasswordNeeded(RuleBroken):
    """A ledger with accounts acts only after a password, and there is none to read and no terminal to ask on."""


class WhoActs(RuleBroken):
    """A ledger with accounts needs to know who acts: log in, or give --as NAME."""


class PasswordsDiffer(RuleBroken):
    """A new password is typed twice, the same both times."""


def login_name() -> str:
    """The default for `--as` on a ledger without accounts: $USER, else the operating system's name."""
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (ImportError, KeyError, OSError):  # no pwd module, no passwd entry for this uid
        return "unknown"


# `--as NAME`: who claims to act, passed to the root command group as `claimed_actor`.
as_option = click.option(
    "--as",
    "claimed_actor",
    default=None,
    help="who is acting (an account; its password from --password-file, $YIKATONG_PASSWORD_FILE or a "
    "prompt). Default: the account logged in; on a ledger without accounts, $USER",
)
password_file_option = click.option(
    "--password-file",
    "password_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="the acting account's password: the first line of this private file",
)


def legacy_identity(claimed_actor: str | None) -> Identity:
    """A ledger without accounts: the typed name (default: the login name), normalised, not authenticated."""
    return Identity(normalised_name(login_name() if claimed_actor is None else claimed_actor), "", False)


def acting_identity(
    db: Database, registry: Registry, claimed_actor: str | None, password_file: Path | None
) -> Identity:
    """A ledger with accounts: the session's account, or the `--as` account after its password."""
    name = normalised_name(claimed_actor) if claimed_actor is not None else None
    from_session, problem = _session_identity(db, registry)
    if from_session is not None and (name is None or account_id(name) == account_id(from_session.name)):
        return from_session
    if name is None:
        raise WhoActs(
            (f"{problem}; " if problem else "") + "log in with `yikatong login NAME`, or give --as NAME with a password"
        )
    return authenticate(registry, name, actor_password(name, password_file))


def _session_identity(db: Database, registry: Registry) -> tuple[Identity | None, str]:
    token = read_session(session_path_for(db))
    if token is None:
        return None, ""
    try:
        session = check_token(session_secret(db), ledger_ref(db), token, time.time())
        return identity_of(registry, session.name, session.version), ""
    except RuleBroken as e:  # SessionInvalid, AccountChanged, AccountDisabled, UnknownAccount
        return None, str(e)


def actor_password(name: str, password_file: Path | None) -> str:
    """The acting account's password: the file given, else $YIKATONG_PASSWORD_FILE, else a prompt
    without echo when standard input is a terminal; else refused at once (no prompt to hang on)."""
    path = password_file or (Path(os.environ[PASSWORD_FILE_ENV]) if os.environ.get(PASSWORD_FILE_ENV) else None)
    if path is not None:
        return read_password_file(path)
    if _on_a_terminal():
        return getpass.getpass(f"password for {name}: ")
    raise PasswordNeeded(
        f"{name}: no password: standard input is not a terminal to ask on; use --password-file FILE, "
        f"${PASSWORD_FILE_ENV}, or `yikatong login {name}` first"
    )


def new_password(password_file: Path | None, whose: str) -> str:
    """A new account's password: from `password_file`, else typed twice at a terminal, else the first
    line of standard input (`printf '%s\\n' "$PW" | yikatong user add …`)."""
    if password_file is not None:
        return read_password_file(password_file)
    if _on_a_terminal():
        first = getpass.getpass(f"new password for {whose}: ")
        if getpass.getpass("the same again: ") != first:
            raise PasswordsDiffer(f"the two passwords typed for {whose} differ; nothing was recorded")
        return first
    line = sys.stdin.readline(4 * PASSWORD_CHARS_MAX + 2).removesuffix("\n").removesuffix("\r")
    if not line:
        raise PasswordNeeded(
            f"no password for {whose} on standard input (one line), and no terminal to ask on; or use --password-file"
        )
    return line


def _on_a_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):  # a closed standard input
        return False
