"""Accounts: log in and out, add, disable, re-enable, change a role or a password, list (ledger.accounts).

Each command acts as an account (identity.py) and calls one service method; the service checks that
the acting identity may do it (only an admin manages accounts; anyone changes their own password) and
seals the log. A new password is read from a terminal (typed twice), else one line of standard input,
or `--password-file`; it is never an option's value (a command line is visible to other users).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import click
from eventsourcing.persistence import PersistenceError

from domain.access import LOGIN, LOGIN_FAILED, LOGOUT
from domain.accounts import ROLE_ALIASES, ROLES, AccountDisabled, escaped
from domain.errors import RuleBroken
from ledger.access import Access
from ledger.accounts import AccountView, WrongNameOrPassword
from ledger.cli.context import Context, pass_context
from ledger.cli.identity import actor_password, new_password
from ledger.cli.output import Grid, render
from ledger.service import LedgerService
from ledger.sessions import (
    SESSION_S_DEFAULT,
    check_token,
    ledger_ref,
    parse_duration,
    read_session,
    remove_session,
    session_path_for,
    session_secret,
    write_session,
)

ROLE_CHOICE = click.Choice([*ROLES, *ROLE_ALIASES], case_sensitive=False)
ACCOUNT_HEADINGS = ("账户", "角色", "状态", "版本")
new_password_option = click.option(
    "--password-file",
    "new_password_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="the new password: the first line of this private file (else typed twice, or one line of stdin)",
)


@click.command()
@click.argument("name")
@click.option("--password-file", "login_password_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--for", "duration", default=f"{SESSION_S_DEFAULT // 3600}h", show_default=True, help="e.g. 30m, 8h, 2d")
@pass_context
def login(c: Context, name: str, login_password_file: Path | None, duration: str) -> None:
    """Prove NAME's password once and keep a session (a private token file) for this ledger."""
    seconds = parse_duration(duration)
    service = c.service()
    password = actor_password(name, login_password_file or c.password_file)
    try:
        identity, token, expires_at = service.open_session(name, password, seconds=seconds)
    except (WrongNameOrPassword, AccountDisabled) as e:
        _recorded(service, Access(LOGIN_FAILED, "cli", name, action="login", rule=e.rule))
        raise
    path = session_path_for(c.db)
    write_session(path, token)
    _recorded(service, Access(LOGIN, "cli", identity.name, role=identity.role, action="login"))
    until = datetime.fromtimestamp(expires_at, UTC).astimezone().isoformat(timespec="minutes")
    render([f"logged in as {identity.name} ({identity.role}) until {until}; session in {path}"])


@click.command()
@pass_context
def logout(c: Context) -> None:
    """End this ledger's session: remove its token file (and record the logout, when the session held)."""
    path = session_path_for(c.db)
    token = read_session(path)
    if token is not None:
        try:
            session = check_token(session_secret(c.db), ledger_ref(c.db), token, time.time())
        except RuleBroken:
            session = None  # expired or of another ledger: nothing to record, the file goes anyway
        if session is not None:
            _recorded(c.service(), Access(LOGOUT, "cli", session.name, action="logout"))
    render(["logged out" if remove_session(path) else f"no session to end ({path} does not exist)"])


def _recorded(service: LedgerService, access: Access) -> None:
    """Record a login, logout or failed login in the ledger (ledger.access), as the web does. A store
    that refuses the write (an auditor's SELECT-only PostgreSQL role) does not stop the command: a note
    says the access was not recorded."""
    try:
        service.record_access(access)
    except PersistenceError as e:
        click.echo(f"note: this {access.kind} was not recorded in the ledger: {e}", err=True)


@click.group()
def user() -> None:
    """Accounts (admins add and change them; everyone changes their own password)."""


@user.command("add")
@click.argument("name")
@click.option("--role", required=True, type=ROLE_CHOICE)
@new_password_option
@pass_context
def user_add(c: Context, name: str, role: str, new_password_file: Path | None) -> None:
    """Add an account NAME with a role: clerk 经办, checker 复核/审批, auditor 审计, admin 管理员."""
    service = c.service()
    added = service.add_account(name, role, new_password(new_password_file, name), actor=c.identity)
    render([f"account {added.name} added: {added.role}"])


@user.command("disable")
@click.argument("name")
@pass_context
def user_disable(c: Context, name: str) -> None:
    """Disable an account: it has no rights, and its sessions end."""
    changed, done = c.service().disable_account(name, actor=c.identity)
    render([f"account {changed.name} disabled" if done else f"account {changed.name} was disabled already"])


@user.command("enable")
@click.argument("name")
@pass_context
def user_enable(c: Context, name: str) -> None:
    """Enable a disabled account again."""
    changed, done = c.service().enable_account(name, actor=c.identity)
    render([f"account {changed.name} enabled" if done else f"account {changed.name} was enabled already"])


@user.command("passwd")
@click.argument("name")
@new_password_option
@pass_context
def user_passwd(c: Context, name: str, new_password_file: Path | None) -> None:
    """Change NAME's password: your own, or (an admin) anyone's. Its sessions end."""
    service = c.service()
    changed = service.change_password(name, new_password(new_password_file, name), actor=c.identity)
    render([f"password of {changed.name} changed"])


@user.command("role")
@click.argument("name")
@click.argument("role", type=ROLE_CHOICE)
@pass_context
def user_role(c: Context, name: str, role: str) -> None:
    """Give NAME another role."""
    changed, done = c.service().change_role(name, role, actor=c.identity)
    render([f"account {changed.name} is now {changed.role}" if done else f"account {changed.name} is {changed.role}"])


@user.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def user_list(c: Context, as_json: bool) -> None:
    """Every account with its role and whether it is enabled."""
    found = c.service().accounts()
    table = Grid(ACCOUNT_HEADINGS, [_cells(a) for a in found], title=f"{len(found)} accounts")
    render([table], as_json=as_json, data={"accounts": [a.as_json() for a in found]})


def _cells(a: AccountView) -> tuple[str, ...]:
    return (escaped(a.name), a.role, "启用" if a.enabled else "停用", str(a.version))
