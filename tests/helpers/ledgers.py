"""Shared builders for ledger tests: a ledger with the shipped policy and roster rows, and the command
line acting as real accounts with passwords (`with_accounts`, then `yikatong(url, ..., as_=NAME)`)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path
from uuid import uuid4

from click.testing import CliRunner, Result

from domain.errors import RuleBroken
from ledger.accounts import read_password_file
from ledger.apps import Registry
from ledger.bootstrap import database_from_url, init_ledger, open_apps, open_service
from ledger.cli import main
from ledger.disbursement import Disbursement
from ledger.roster import read_roster
from ledger.sessions import ledger_ref
from ledger.storage import Database, holds_events, parse_database_url

HEADER = (
    "id_number,name,region,programme,effective_from,members,monthly_income,special_members,"
    "bank_code,account,decision_ref\n"
)
LI = "152601198001011239,李建华,150902,urban_dibao,2017-01-01,2,300.00,0,103191000012,6228480045001122337,集民发〔2017〕2号\n"  # noqa: E501
WANG = "152621197505052342,王桂英,150921,rural_dibao,2017-01-01,3,200.00,1,402191000034,6217002050123456789,卓民发〔2017〕5号\n"  # noqa: E501


def check_digit(first17: str) -> str:
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, weights, strict=True)) % 11]


def resident_id(region: str, birth: str, serial: int) -> str:
    body = f"{region}{birth}{serial:03d}"
    return body + check_digit(body)


def ledger(db: Database, policy_text: str) -> tuple[Registry, Disbursement]:
    registry, disbursement = open_apps(db)
    registry.load_policy(policy_text, "ulanqab-2017.toml", "clerk")
    return registry, disbursement


def import_rows(registry: Registry, tmp: Path, *rows: str, name: str = "r.csv") -> None:
    path = tmp / name
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    policy = registry.policy()
    registry.import_roster(read_roster(path, region=policy.region_code, programmes=policy.programmes), name, "clerk")


def row(
    id_number: str,
    programme: str,
    *,
    region: str = "150902",
    start: str = "2017-01-01",
    members: int = 1,
    income: str = "0.00",
    special: int = 0,
    name: str = "张三",
) -> str:
    return (
        f"{id_number},{name},{region},{programme},{start},{members},{income},{special},"
        f"103191000012,6228480045001122337,集民发〔2017〕9号\n"
    )


# The password file of each account `with_accounts` created, by ledger (however its URL is spelled).
PASSWORD_FILES: dict[str, dict[str, Path]] = {}
OFFICE = (("clerk", "clerk"), ("checker", "checker"), ("auditor", "auditor"))  # name, role


def password_file(folder: Path, name: str, password: str | None = None) -> Path:
    """A private (0600) file holding `password` (default: a fresh random one) on its first line."""
    path = folder / f"{name}.password"
    path.write_text((password or secrets.token_urlsafe(15)) + "\n", encoding="utf-8")
    os.chmod(path, 0o600)
    return path


def with_accounts(url: str, folder: Path, accounts: tuple[tuple[str, str], ...] = OFFICE) -> dict[str, Path]:
    """`init --admin admin` and `user add` for each (name, role), each with its own password file in
    `folder`; afterwards `yikatong(url, …, as_=name)` acts as that account with its password."""
    files = {"admin": password_file(folder, "admin")}
    PASSWORD_FILES[_ref(url)] = files
    created = yikatong(url, "init", "--admin", "admin", "--password-file", str(files["admin"]), as_=None)
    assert created.returncode == 0, created.stderr
    # The other accounts in this process, through the service `user add` calls (tests/audit and
    # tests/ledger/test_accounts.py run `user add` itself): one child process per test instead of five.
    service = open_service(database_from_url(url))
    try:
        admin = service.authenticate("admin", read_password_file(files["admin"]))
        for name, role in accounts:
            files[name] = password_file(folder, name)
            service.add_account(name, role, read_password_file(files[name]), actor=admin)
    finally:
        service.registry.close()
        service.disbursement.close()
    return files


def yikatong(
    db: str, *args: str, as_: str | None = "clerk", stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m ledger --db DB --as AS_ ARGS…` in a child process whose standard input is not a terminal.
    On a ledger `with_accounts` set up, `as_` acts with its password file; else `as_` is a typed name."""
    acting: list[str] = []
    if as_ is not None:
        acting = ["--as", as_]
        files = PASSWORD_FILES.get(_ref(db), {})
        if as_ in files:
            acting += ["--password-file", str(files[as_])]
    return subprocess.run(
        [sys.executable, "-m", "ledger", "--db", db, *acting, *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )


def _ref(url: str) -> str:
    try:
        return ledger_ref(parse_database_url(url))
    except RuleBroken:  # a URL the test means to be refused
        return url


def new_ledger(url: str) -> None:
    """A ledger as `init` makes it (key, tables, charter, sealed) before its first admin: commands act by
    typed names, as on a ledger of an earlier release. For tests about anything but identity; the
    identity tests create accounts (`with_accounts`) and act through their passwords."""
    init_ledger(database_from_url(url), ledger_id=uuid4(), actor="admin")


# --- the command line as an office runs it, for tests of other things than identity ------------------
# A new ledger's `init` names its admin ("admin"), who adds a clerk and a checker; each command then acts
# as the account whose role runs it (ledger.roles), with its password file. On a ledger without accounts
# (one an earlier release wrote, or built through open_apps) the same names are typed names.

OFFICE_PASSWORDS = Path(tempfile.mkdtemp(prefix="yikatong-office-"))
OFFICE_FILES = {name: password_file(OFFICE_PASSWORDS, name) for name in ("admin", "clerk", "checker")}
ADMIN_COMMANDS = (("policy", "load"), ("audit", "anchor"), ("user",), ("db",))
CHECKER_COMMANDS = (
    ("batch", "approve"),
    ("profile", "approve"),
    ("aid", "approve"),
    ("recovery", "write-off"),
)


def office_account(args: tuple[str, ...]) -> str:
    """The office account that runs `args`: the admin, the checker or the clerk."""
    if any(args[: len(c)] == c for c in ADMIN_COMMANDS):
        return "admin"
    if any(args[: len(c)] == c for c in CHECKER_COMMANDS):
        return "checker"
    return "clerk"


def office_command(url: str, args: tuple[str, ...]) -> tuple[list[str], bool]:
    """(the command line after `python -m ledger`, whether it creates a ledger and its accounts)."""
    if args[:1] == ("init",):
        if not holds_events(database_from_url(url)):
            return [
                "--db",
                url,
                "init",
                "--admin",
                "admin",
                "--password-file",
                str(OFFICE_FILES["admin"]),
                *args[1:],
            ], True
        name = "admin"
    else:
        name = office_account(args)
    return ["--db", url, "--as", name, "--password-file", str(OFFICE_FILES[name]), *args], False


def office_accounts_added(url: str, env: dict[str, str] | None = None) -> None:
    """The clerk and the checker, added by the admin (in a child process: the environment as given)."""
    for name in ("clerk", "checker"):
        added = subprocess.run(
            [
                sys.executable,
                "-m",
                "ledger",
                "--db",
                url,
                "--as",
                "admin",
                "--password-file",
                str(OFFICE_FILES["admin"]),
                "user",
                "add",
                name,
                "--role",
                name,
                "--password-file",
                str(OFFICE_FILES[name]),
            ],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **(env or {})},
            timeout=300,
        )
        assert added.returncode == 0, added.stderr


def office_cli(url: str, *args: str, env: dict[str, str] | None = None) -> Result:
    """`yikatong ARGS` in this process (click's runner) as the office account whose role runs it."""
    line, creates = office_command(url, args)
    done = CliRunner().invoke(main, line, env=env)
    if creates and done.exit_code == 0:
        office_accounts_added(url, env)
    return done


def office_yikatong(url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m ledger ARGS` in a child process (the environment as given, else this process's), as the
    office account whose role runs it."""
    line, creates = office_command(url, args)
    done = subprocess.run(
        [sys.executable, "-m", "ledger", *line],
        capture_output=True,
        text=True,
        check=False,
        env=env if env is not None else dict(os.environ),
        timeout=300,
    )
    if creates and done.returncode == 0:
        office_accounts_added(url, {} if env is None else {k: v for k, v in env.items()})
    return done
