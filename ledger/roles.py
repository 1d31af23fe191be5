"""Who may do what: the rights of each role, for accounts and for ledgers of earlier releases.

With accounts (DESIGN.md, "Identity, roles and integrity"; ledger.accounts), the role comes only from the
ledger: `require_account(identity, action)` before a command runs. The rights, each refusal a typed
error named after its rule:
- every enabled account may run the read-only commands (`READ_ONLY`) and change its own password;
- `AuditorIsReadOnly`: an auditor (审计) runs nothing else;
- `OnlyCheckersApprove`: approving a batch, approving a bank profile or large aid, writing
  off a recovery (`CHECKER_ACTIONS`) needs the checker (复核/审批); maker-checker still refuses approving
  one's own export, and writing off a recovery one's own month-end made or one collected on;
- `OnlyAdminsAdminister`: accounts, the policy, `init` and the database's roles (`ADMIN_ACTIONS`) need
  the admin (管理员). An admin holds no clerk or checker rights (separation of duties: whoever creates
  accounts does not also record payments or approve them; an office that must combine them gives one
  person two accounts, and the log shows which acted);
- `OnlyAuditorsAudit`: the web's audit pages and actions log (`AUDIT_READER_ACTIONS`) need the auditor
  or the admin;
- `OnlyClerksRecord`: every other command that changes the ledger needs the clerk (经办), submitting an
  approved batch to the bank included (a roles file's approvers may still submit); rebuilding
  the read models (`OPERATIONS`) the clerk or the admin.
A command this module does not know is one that changes the ledger (least privilege when a command is
added); an unknown role has no rights (fail closed). The roles file below is then ignored.

A ledger of an earlier release has no accounts until its first admin is created; until then,
`require(config, actor, action)` checks the typed name (`--as USER`) against the roles file as before.
That keeps honest people in their lane and is not a security boundary, which `audit verify` says. A
`$YIKATONG_ROLES` naming a file that does not exist is an error (`RolesFileMissing`), not "everyone may
do everything"; with no roles file at the default place, everyone may (the single office's default of
those releases).

The roles file (`roles.toml` beside the SQLite database, `./roles.toml` for PostgreSQL, or
`$YIKATONG_ROLES`):

    [users]
    wang = "clerk"
    li = "approver"                 # "checker" means the same
    zhao = ["clerk", "approver"]    # a person may hold several roles; maker-checker still applies per batch
    sun = "auditor"

- An auditor holds no other role (separation of duties); the file is refused otherwise.
- `ActorHasNoRole`: with a roles file, an actor it does not list may run nothing.

The database's own roles, beside the accounts:
- `grant_auditor(db, role)` creates a PostgreSQL role that can read the ledger's schema and nothing
  else: an auditor connecting as that role cannot change the log however the command line is used,
  because the database refuses. SQLite has no users; a read-only auditor gets a read-only copy or
  file permissions, which is the operating system's job, and `grant_auditor` says so.
- `setup_database(db, owner, app, auditor)` (`yikatong db setup`, docs/deploy.md) gives a PostgreSQL
  ledger three roles: the owner of the schema and the event tables (migrations only), the application
  role the ledger connects as, which cannot change or remove a stored event (no UPDATE, DELETE or
  TRUNCATE, and a trigger refusing them to every role but the owner), and the auditor (SELECT only).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domain.accounts import ADMIN, AUDITOR, CHECKER, CLERK, ROLE_ALIASES, Identity
from domain.accounts import ROLES as ACCOUNT_ROLES
from domain.errors import RuleBroken
from ledger import storage
from ledger.storage import Database, DatabaseSetup, RoleNames
from ledger.storage import GrantNeedsPostgres as GrantNeedsPostgres  # re-exported: raised here
from ledger.storage import RoleHasMorePrivileges as RoleHasMorePrivileges
from ledger.storage import SetupNeedsPostgres as SetupNeedsPostgres
from ledger.storage import SetupRefused as SetupRefused

APPROVER = CHECKER  # the roles file's word for the checker
ROLES = (CLERK, CHECKER, AUDITOR)  # what a roles file may name (and "approver", read as the checker)
ROLES_ENV = "YIKATONG_ROLES"
ROLES_FILE = "roles.toml"
USERS_MAX = 10_000  # entries in one roles file
# `yikatong db setup`'s role names unless told otherwise (docs/deploy.md).
OWNER_ROLE, APP_ROLE, AUDITOR_ROLE = "yikatong_owner", "yikatong_app", "yikatong_auditor"

# Commands that change nothing in the ledger (writing a report file elsewhere is not a change).
READ_ONLY = frozenset(
    {
        "policy show",
        "batch list",
        "report balances",
        "report deadlines",
        "report summary",
        "report on-time",
        "report chart",
        "report recoveries",
        "report reviews",
        "audit verify",
        "audit history",
        "audit anomalies",
        "profile list",
        "profile show",
        "user list",
        "aid list",
    }
)
# A write-off of a recovery (issue 14) is a checker's, like an approval; `recovery collect` is a clerk's.
# Handing an approved batch to the bank (`batch submit`, 提交银行) is the clerk's, after the checker's
# approval (examples/web.md, "经办人 … submits"); the approval is the control, the submission a record of
# delivery. A roles file of an earlier release let its approvers submit: they still may (`require`).
SUBMIT = "batch submit"
APPROVER_ACTIONS = frozenset({"batch approve", "profile approve", "aid approve", "recovery write-off"})
CHECKER_ACTIONS = APPROVER_ACTIONS | {"profile approve", "aid approve"}
ADMIN_ACTIONS = frozenset(
    {
        "init",
        "policy load",
        "user add",
        "user disable",
        "user enable",
        "user role",
        "db grant-auditor",
        "db setup",
        "audit anchor",  # signed with the ledger's key on the server; the auditor keeps the file it writes
    }
)
OPERATIONS = frozenset({"projections rebuild", "projections follow"})  # the read models, not the log
# The web's 审计 pages (examples/web.md, "审计 (auditor)"): the actions log with every login, failed login
# and refusal, and persons' whole histories. For the auditor, and the admin who manages the accounts
# those logins are of; the clerk and the checker, whose work it audits, read the rest of the ledger.
AUDIT_READER_ACTIONS = frozenset({"audit log"})
OWN_ACCOUNT_ACTIONS = frozenset({"user passwd"})  # one's own password; ledger.accounts checks whose

# PostgreSQL role names this module creates: plain identifiers, so messages and docs can show them bare.
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class RolesFileRejected(RuleBroken):
    """The roles file is not valid: not TOML, or a role that is not clerk, approver or auditor."""


class ActorHasNoRole(RuleBroken):
    """With a roles file in place, an actor it does not list may run nothing."""


class AuditorIsReadOnly(RuleBroken):
    """An auditor may run read-only commands only."""


class OnlyApproversApprove(RuleBroken):
    """Approving or submitting a batch needs the approver role."""


class OnlyCheckersApprove(OnlyApproversApprove):
    """Approving or submitting a batch, a bank profile or large aid needs the checker role (复核/审批)."""


class OnlyAdminsAdminister(RuleBroken):
    """Accounts, the policy, `init` and the database's roles need the admin role (管理员)."""


class AccountHasNoRole(RuleBroken):
    """An account whose role is not clerk, checker, auditor or admin has no rights (fail closed)."""


class RolesFileMissing(RuleBroken):
    """$YIKATONG_ROLES names a roles file that does not exist: no rights are granted without it."""


class OnlyAuditorsAudit(RuleBroken):
    """The actions log and the audit pages (`AUDIT_READER_ACTIONS`) are for the auditor and the admin."""


class OnlyClerksRecord(RuleBroken):
    """Commands that change the ledger (other than approval) need the clerk role."""


class BadRoleName(RuleBroken):
    """A database role name must be a plain lower-case identifier."""


@dataclass(frozen=True, slots=True)
class RoleConfig:
    users: Mapping[str, frozenset[str]]
    source: str

    def roles_of(self, actor: str) -> frozenset[str]:
        return self.users.get(actor, frozenset())


def roles_path_for(db: Database) -> Path:
    override = os.environ.get(ROLES_ENV)
    if override:
        return Path(override)
    if db.kind == "sqlite":
        return Path(db.env["SQLITE_DBNAME"]).parent / ROLES_FILE
    return Path(ROLES_FILE)


def legacy_roles(db: Database) -> RoleConfig | None:
    """The roles file of a ledger without accounts; None when none is at the default place. A file that
    `$YIKATONG_ROLES` names must exist: a mistyped path must not switch the roles off."""
    path = roles_path_for(db)
    config = load_roles(path)
    if config is None and os.environ.get(ROLES_ENV):
        raise RolesFileMissing(f"${ROLES_ENV} names {path}, which does not exist; no rights are granted without it")
    return config


def roles_file_ignored(db: Database) -> str | None:
    """When the ledger has accounts, a roles file (or $YIKATONG_ROLES) changes nothing: the notice to show."""
    path = roles_path_for(db)
    if os.environ.get(ROLES_ENV) or path.exists():
        return f"note: {path} is ignored: this ledger has accounts, and roles come only from the ledger"
    return None


def load_roles(path: Path) -> RoleConfig | None:
    """The roles file at `path`, or None when there is none (everyone may do everything)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return parse_roles(text, str(path))


def parse_roles(text: str, source: str) -> RoleConfig:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RolesFileRejected(f"{source}: not valid TOML: {e}") from None
    users = doc.get("users", {})
    if not isinstance(users, dict):
        raise RolesFileRejected(f"{source}: [users] must be a table of user = role")
    if len(users) > USERS_MAX:
        raise RolesFileRejected(f"{source}: more than {USERS_MAX} users")
    errors = []
    parsed: dict[str, frozenset[str]] = {}
    for user, value in users.items():
        roles = [value] if isinstance(value, str) else value
        if isinstance(roles, list):
            roles = [ROLE_ALIASES.get(r, r) if isinstance(r, str) else r for r in roles]
        if not isinstance(roles, list) or not roles or not all(r in ROLES for r in roles):
            errors.append(f"{source}: users.{user} = {value!r}: use one of {', '.join(ROLES)} or a list of them")
            continue
        if AUDITOR in roles and len(set(roles)) > 1:
            errors.append(f"{source}: users.{user}: an auditor holds no other role (separation of duties)")
            continue
        parsed[user] = frozenset(roles)
    if errors:
        raise RolesFileRejected("\n".join(errors))
    return RoleConfig(parsed, source)


def require(config: RoleConfig | None, actor: str, action: str) -> None:
    """Refuse `action` (a command path such as "batch approve") for `actor` when its roles do not allow it."""
    if config is None:
        return
    roles = config.roles_of(actor)
    if not roles:
        raise ActorHasNoRole(f"{actor} is not listed in {config.source}; ask for a role (clerk, approver, auditor)")
    if action in AUDIT_READER_ACTIONS:
        if AUDITOR not in roles:
            raise OnlyAuditorsAudit(f"{actor} ({_listed(roles)}) may not {action}: it is for the auditor")
        return
    if action in READ_ONLY:
        return
    if action == SUBMIT and APPROVER in roles and AUDITOR not in roles:
        return  # approvers of earlier releases' roles files kept the right to submit
    if action in APPROVER_ACTIONS:
        if AUDITOR in roles:
            raise AuditorIsReadOnly(f"{actor} is an auditor and may only read; `{action}` changes the ledger")
        if APPROVER not in roles:
            raise OnlyApproversApprove(
                f"{actor} ({_listed(roles)}) may not {action}: it needs the approver (checker) role"
            )
        return
    if AUDITOR in roles:
        raise AuditorIsReadOnly(f"{actor} is an auditor and may only read; `{action}` changes the ledger")
    if CLERK not in roles:
        raise OnlyClerksRecord(f"{actor} ({_listed(roles)}) may not {action}: it needs the clerk role")


def require_account(identity: Identity, action: str) -> None:
    """Refuse `action` for an authenticated account whose role does not allow it (the rights above)."""
    role, name = identity.role, identity.name
    if not identity.authenticated or role not in ACCOUNT_ROLES:
        raise AccountHasNoRole(f"{name} has no role in this ledger and may run nothing")
    if action in AUDIT_READER_ACTIONS:
        if role not in (AUDITOR, ADMIN):
            raise OnlyAuditorsAudit(f"{name} ({role}) may not {action}: it is for the auditor and the admin")
        return
    if action in READ_ONLY or action in OWN_ACCOUNT_ACTIONS:
        return
    if role == AUDITOR:
        raise AuditorIsReadOnly(f"{name} is an auditor and may only read; `{action}` changes the ledger")
    if action in CHECKER_ACTIONS:
        if role != CHECKER:
            raise OnlyCheckersApprove(f"{name} ({role}) may not {action}: it needs the checker role")
        return
    if action in ADMIN_ACTIONS:
        if role != ADMIN:
            raise OnlyAdminsAdminister(f"{name} ({role}) may not {action}: it needs the admin role")
        return
    if action in OPERATIONS and role == ADMIN:
        return
    if role != CLERK:
        raise OnlyClerksRecord(f"{name} ({role}) may not {action}: it needs the clerk role")


def _listed(roles: frozenset[str]) -> str:
    return ", ".join(sorted(roles))


# --- PostgreSQL: a role the database holds to SELECT only --------------------------------------------------


def grant_auditor(db: Database, role: str) -> list[str]:
    """Create (or narrow) `role` so it can log in and SELECT from the ledger's schema, nothing else.

    - LOGIN, so an auditor can connect as it (authentication is the server's pg_hba.conf; no password
      is set here); NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS.
    - USAGE on the schema, SELECT on every table in it, and the same SELECT by default on tables
      created later in it by the role running this (the projections' tables, a new application's).
    - Any INSERT/UPDATE/DELETE/TRUNCATE/REFERENCES/TRIGGER an existing role held on those tables is
      revoked, so what it ends up with is SELECT.
    Returns the statements run, for the CLI to show. Idempotent.
    """
    _check_role_name(role)
    return storage.grant_auditor(db, role)


def _check_role_name(role: str) -> None:
    if not _ROLE_NAME.match(role):
        raise BadRoleName(f"{role!r}: use lower-case letters, digits and _ (at most 63), starting with a letter or _")


@dataclass(frozen=True, slots=True)
class SetupResult:
    """What `setup_database` did, and the URLs the application and the auditor connect with."""

    setup: DatabaseSetup
    app_url: str
    auditor_url: str


def setup_database(
    db: Database, owner: str = OWNER_ROLE, app: str = APP_ROLE, auditor: str = AUDITOR_ROLE
) -> SetupResult:
    """PostgreSQL, connected as a superuser: create (or narrow) the three roles and the schema, the event
    tables owned by `owner` with the append-only trigger, and the grants; idempotent.

    - `owner` (NOLOGIN) owns the schema, the event tables, their sequences and trigger: setup and
      migrations only, done by a superuser who `SET ROLE`s to it. The trigger lets only it change or
      remove a stored event.
    - `app` (LOGIN) is what the ledger connects as: SELECT, and INSERT of an event's four columns, on the
      event tables; the read models (`rm_` tables) are its own. Writers serialise on an advisory lock,
      so it needs no right that could rewrite the log (ledger.storage.postgres.LedgerPostgresRecorder).
    - `auditor` (LOGIN): SELECT only, as `grant_auditor` gives.
    An existing application or auditor role that is a superuser or may create roles or databases is
    refused (`RoleHasMorePrivileges`), and so is any membership between the three (`SetupRefused`).
    """
    for role in (owner, app, auditor):
        _check_role_name(role)
    done = storage.setup_database(db, RoleNames(owner=owner, app=app, auditor=auditor))
    return SetupResult(done, storage.url_for_role(db, app), storage.url_for_role(db, auditor))


def tables_not_writable(db: Database) -> tuple[str, list[str]]:
    """PostgreSQL: the connecting role and the ledger's event tables it may not INSERT into.

    Why this exists: eventsourcing's PostgreSQL recorder sends its LOCK and INSERT in one pipeline, and
    when a SELECT-only role tries to write, psycopg reports either the first refusal ("permission
    denied for table …") or only that the pipeline was aborted, at random. The CLI asks the database
    which it was, so an auditor always reads the same clear message."""
    return storage.tables_not_writable(db)


def command_action(ctx: Any) -> str:
    """The command being run, without the program name ("batch approve"), from a click context: the
    names of the context and its parents, so `yikatong …` and `python -m ledger …` give the same."""
    names = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name)
        ctx = ctx.parent
    return " ".join(reversed(names))


def read_only_env(env: Mapping[str, str]) -> dict[str, str]:
    """Persistence settings for a connection that may only read (an auditor's PostgreSQL role):
    eventsourcing must not try to create tables, which needs CREATE on the schema even when they exist."""
    return {**env, "CREATE_TABLE": "false"}
