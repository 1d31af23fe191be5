"""Accounts in the registry log: who may act, proved by a password (DESIGN.md, "Identity, roles and
integrity"). What the command line, the demo and the web application call.

Guarantees:
- A password is kept only as an argon2id hash (argon2-cffi's `PasswordHasher`, RFC 9106 low-memory
  parameters: 3 passes over 64 MiB, 4 lanes), recorded in the account's `Added`/`PasswordChanged` events.
  The rule (≥ 10 characters) is checked before hashing (domain.accounts.check_password_rule).
- `authenticate(registry, name, password)` returns the account's `Identity` only for an existing,
  enabled account whose password verifies. Every failure before the disabled check is the same
  `WrongNameOrPassword`, never saying which of the two was wrong, and an unknown name costs the same
  argon2 verification as a known one (against a dummy hash), so timing does not tell names apart.
- Account management (`add_account`, `change_role`, `change_password`, `disable_account`,
  `enable_account`) checks the acting identity itself, so a web handler calling it directly is held to
  the same rules as the command line: only an admin manages accounts; anyone may change their own
  password; the last enabled admin can be neither disabled nor given another role (the ledger would
  have nobody to manage it).
- The first admin (`add_first_admin`) is recorded with the `AccountDirectory`'s `Opened` event in the
  same transaction: from that position on, the ledger authenticates everyone (`accounts_exist`).
- Two accounts of one name cannot both be added, even at the same moment: both write version 1 of the
  same aggregate id and the store refuses the second (`AccountExists`).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from domain.accounts import (
    ADMIN,
    DIRECTORY_ID,
    PASSWORD_CHARS_MAX,
    Account,
    AccountDirectory,
    Identity,
    account_id,
    check_password_rule,
    normalised_name,
    role_named,
)
from domain.errors import RuleBroken
from ledger.apps import ConcurrentChange, Registry
from ledger.storage import log_rows, originator_rows

PASSWORD_FILE_BYTES_MAX = 4 * PASSWORD_CHARS_MAX  # a password file is one line; UTF-8 takes ≤ 4 bytes a character
# What an unknown name's password is verified against, so it costs what a real account's does: the
# argon2id hash, with the hasher's parameters, of a random password nobody kept.
_DUMMY_HASH = "$argon2id$v=19$m=65536,t=3,p=4$VzlZMz2Ett0jhIEFtizhgg$1e07OKtWeOLjjuZguO2RdqPzc6Tse8yXefo0/SCNx70"


class WrongNameOrPassword(RuleBroken):
    """The name or the password is wrong; which of the two is never said (examples/web.md, Login)."""


class NoAccountsYet(RuleBroken):
    """This ledger has no accounts yet: create the first admin with `yikatong init --admin NAME`."""


class AccountsExist(RuleBroken):
    """The first admin is created once; later accounts are added by an admin (`yikatong user add`)."""


class AccountExists(RuleBroken):
    """An account of this name (ignoring case and width) exists already."""


class UnknownAccount(RuleBroken):
    """No account of this name in the ledger."""


class OnlyAdminsManageAccounts(RuleBroken):
    """Adding, disabling and changing the role of an account, or another's password, needs the admin role."""


class LastAdminStays(RuleBroken):
    """The last enabled admin can be neither disabled nor given another role."""


class PasswordFileRejected(RuleBroken):
    """A password file must be a private (chmod 600), readable file whose first line is the password."""


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()


def hash_password(password: str) -> str:
    """The argon2id hash of a password that keeps the rule (≥ 10 characters)."""
    check_password_rule(password)
    return _hasher().hash(password)


def _verifies(password_hash: str, password: str) -> bool:
    try:
        return bool(_hasher().verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


# --- reading -------------------------------------------------------------------------------------------


def directory(registry: Registry) -> AccountDirectory | None:
    try:
        return registry.repository.get(DIRECTORY_ID)  # type: ignore[no-any-return]
    except AggregateNotFoundError:
        return None


def accounts_exist(registry: Registry) -> bool:
    """Whether the ledger authenticates who acts (an admin has been created): one look-up by id."""
    return directory(registry) is not None


def find_account(registry: Registry, name: str) -> Account | None:
    try:
        return registry.repository.get(account_id(normalised_name(name)))  # type: ignore[no-any-return]
    except AggregateNotFoundError:
        return None


def account(registry: Registry, name: str) -> Account:
    found = find_account(registry, name)
    if found is None:
        raise UnknownAccount(f"no account {normalised_name(name)} in this ledger")
    return found


def all_accounts(registry: Registry) -> list[Account]:
    """Every account, in the order they were added (bounded by domain.accounts.ACCOUNTS_MAX)."""
    listed = directory(registry)
    if listed is None:
        return []
    return [account(registry, name) for name in listed.names]


def authenticate(registry: Registry, name: str, password: str) -> Identity:
    """The identity of the enabled account `name` whose password is `password`; else `WrongNameOrPassword`
    (or `AccountDisabled`, said only to whoever knows the password). Callable from a web handler."""
    try:
        clean = normalised_name(name)
    except RuleBroken:
        _verifies(_DUMMY_HASH, password)
        raise WrongNameOrPassword("wrong name or password") from None
    found = find_account(registry, clean)
    if found is None:
        _verifies(_DUMMY_HASH, password)  # the same work as for a real account
        raise WrongNameOrPassword("wrong name or password")
    if not _verifies(found.password_hash, password):
        raise WrongNameOrPassword("wrong name or password")
    return found.identity()


def identity_of(registry: Registry, name: str, version: int | None = None) -> Identity:
    """The identity of the enabled account `name`, as it is now (a session token names the account and
    the version it was issued at: with `version`, any change to the account since refuses it)."""
    found = find_account(registry, name)
    if found is None:
        raise UnknownAccount(f"no account {name} in this ledger")
    if version is not None and found.version != version:
        raise AccountChanged(f"account {found.name} changed since this session began (password, role or status)")
    return found.identity()


class AccountChanged(RuleBroken):
    """A session ends when its account changes (password, role, disabled)."""


# --- writing -------------------------------------------------------------------------------------------


def add_first_admin(registry: Registry, name: str, password: str, *, actor: str, disbursement_position: int) -> Account:
    """The ledger's first admin and the directory that starts authentication, in one transaction."""
    if accounts_exist(registry):
        raise AccountsExist("this ledger has accounts already: an admin adds more with `yikatong user add`")
    # The admin account records itself as its actor (it chose its password); the directory records who
    # ran the command, on a ledger of an earlier release a name typed with --as.
    clean = normalised_name(name)
    admin = Account.add(name=clean, role=ADMIN, password_hash=hash_password(password), actor=clean)
    listed = AccountDirectory(actor=normalised_name(actor), disbursement_position=disbursement_position)
    listed.list_account(admin.name)
    _save(registry, admin.name, listed, admin)
    return admin


def add_account(registry: Registry, name: str, role: str, password: str, *, actor: Identity) -> Account:
    _require_admin(actor, "add an account")
    listed = _directory(registry)
    clean, role = normalised_name(name), role_named(role)
    existing = find_account(registry, clean)
    if existing is not None:
        raise AccountExists(f"an account {existing.name} exists already")
    added = Account.add(name=clean, role=role, password_hash=hash_password(password), actor=actor.name)
    listed.list_account(added.name)
    _save(registry, added.name, listed, added)
    return added


def change_role(registry: Registry, name: str, role: str, *, actor: Identity) -> tuple[Account, bool]:
    _require_admin(actor, "change a role")
    changed = account(registry, name)
    if changed.role == ADMIN and role_named(role) != ADMIN:
        _keep_an_admin(registry, changed)
    done = changed.change_role(role=role, actor=actor.name)
    if done:
        _save(registry, changed.name, changed)
    return changed, done


def change_password(registry: Registry, name: str, password: str, *, actor: Identity) -> Account:
    """Anyone changes their own password; an admin may reset anyone's."""
    changed = account(registry, name)
    if account_id(changed.name) != account_id(actor.name):
        _require_admin(actor, f"change the password of {changed.name}")
    changed.change_password(password_hash=hash_password(password), actor=actor.name)
    _save(registry, changed.name, changed)
    return changed


def disable_account(registry: Registry, name: str, *, actor: Identity) -> tuple[Account, bool]:
    _require_admin(actor, "disable an account")
    changed = account(registry, name)
    if changed.role == ADMIN and changed.enabled:
        _keep_an_admin(registry, changed)
    done = changed.disable(actor=actor.name)
    if done:
        _save(registry, changed.name, changed)
    return changed, done


def enable_account(registry: Registry, name: str, *, actor: Identity) -> tuple[Account, bool]:
    _require_admin(actor, "enable an account")
    changed = account(registry, name)
    done = changed.enable(actor=actor.name)
    if done:
        _save(registry, changed.name, changed)
    return changed, done


def _directory(registry: Registry) -> AccountDirectory:
    listed = directory(registry)
    if listed is None:
        raise NoAccountsYet("this ledger has no accounts yet: create the first admin with `yikatong init --admin NAME`")
    return listed


def _require_admin(actor: Identity, what: str) -> None:
    if not actor.authenticated or actor.role != ADMIN:
        role = actor.role or "no account"
        raise OnlyAdminsManageAccounts(f"{actor.name} ({role}) may not {what}: it needs the admin role")


def _keep_an_admin(registry: Registry, leaving: Account) -> None:
    others = [a for a in all_accounts(registry) if a.role == ADMIN and a.enabled and a.id != leaving.id]
    if not others:
        raise LastAdminStays(f"{leaving.name} is the last enabled admin: add another admin first")


def _save(registry: Registry, name: str, *aggregates: Aggregate) -> None:
    try:
        registry.save(*aggregates)
    except IntegrityError:
        if any(isinstance(a, Account) and a.version == 1 for a in aggregates):
            raise AccountExists(f"an account {name} was added at the same moment; nothing was recorded") from None
        raise ConcurrentChange(
            f"account {name} was changed by someone else at the same moment; nothing was recorded, run it again"
        ) from None


# --- password files ----------------------------------------------------------------------------------


def read_password_file(path: Path) -> str:
    """The first line of a private file (no group or other permission bits), without its line ending.

    A pipe (`--password-file <(pass show yikatong)`) is read as it is; a regular file that others may
    read is refused, as ssh refuses a private key, since whoever reads it can act as the account."""
    try:
        mode = path.stat().st_mode
        if stat.S_ISREG(mode) and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PasswordFileRejected(
                f"{path} has mode {stat.S_IMODE(mode):03o}; a password file must be private (chmod 600 {path})"
            )
        with path.open("rb") as f:
            data = f.read(PASSWORD_FILE_BYTES_MAX + 1)
    except OSError as e:
        raise PasswordFileRejected(f"{path}: cannot read: {e.strerror}") from None
    if len(data) > PASSWORD_FILE_BYTES_MAX:
        raise PasswordFileRejected(f"{path}: larger than {PASSWORD_FILE_BYTES_MAX} bytes; not a password file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PasswordFileRejected(f"{path}: not UTF-8 text") from None
    line = text.split("\n", 1)[0].removesuffix("\r")
    if not line:
        raise PasswordFileRejected(f"{path}: the first line is empty")
    return line


def write_password_file(path: Path, password: str) -> None:
    """Write `password` to a new private file (mode 0600 from the first byte), e.g. for the demo."""
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(handle, "w", encoding="utf-8") as f:
        f.write(password + "\n")


# --- plain results, and what `audit verify` states --------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountView:
    """An account as the command line and the web show it (never its password hash)."""

    name: str
    role: str
    enabled: bool
    version: int

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "enabled": self.enabled, "version": self.version}


def view(found: Account) -> AccountView:
    return AccountView(found.name, found.role, found.enabled, found.version)


@dataclass(frozen=True, slots=True)
class IdentitiesStatus:
    """Whether the log's `actor` names were authenticated, and from which position of each log on."""

    accounts: int
    registry_position: int | None  # the registry log's position of the directory's `Opened` event
    disbursement_position: int | None  # the first disbursement position recorded after it
    typed_before: bool = True  # events before those positions record typed names (not only `init`'s own)

    @property
    def authenticated(self) -> bool:
        return self.registry_position is not None

    def line(self) -> str:
        if self.registry_position is None or self.disbursement_position is None:
            return (
                "identities: not authenticated: this ledger has no accounts, so its events record names typed "
                "with --as, taken on trust (create the first admin with `yikatong init --admin NAME`)"
            )
        earlier = self.typed_before
        return (
            f"identities: {self.accounts} accounts; actors authenticated by password from registry_events "
            f"position {self.registry_position} and disbursement_events position {self.disbursement_position} on"
            + ("; events before those record names typed with --as, not authenticated" if earlier else "")
        )

    def as_json(self) -> dict[str, Any]:
        since = (
            {"registry_events": self.registry_position, "disbursement_events": self.disbursement_position}
            if self.authenticated
            else None
        )
        return {
            "authenticated": self.authenticated,
            "accounts": self.accounts,
            "authenticated_from": since,
            # events before those positions that record names typed with --as (not only `init`'s own)
            "typed_names_before": self.typed_before if self.authenticated else None,
        }


def identities_status(registry: Registry) -> IdentitiesStatus:
    """Read-only: the directory's `Opened` position and the disbursement position it recorded."""
    listed = directory(registry)
    if listed is None:
        return IdentitiesStatus(0, None, None)
    rows = originator_rows(registry.recorder, DIRECTORY_ID)
    opened_at = rows[0][0]
    before = log_rows(registry.recorder, 1, opened_at - 1, CREATION_EVENTS_MAX + 1)
    only_creation = len(before) <= CREATION_EVENTS_MAX and all(
        row.topic.startswith(CREATION_TOPIC_PREFIXES) for row in before
    )
    typed_before = listed.disbursement_position > 0 or not only_creation
    return IdentitiesStatus(len(listed.names), opened_at, listed.disbursement_position + 1, typed_before)


# What `init` records before its first admin: the charter, the signing key and their seal. Events of
# these kinds carry no typed name a person chose, so a ledger whose log begins with them alone was
# authenticated from its first recorded decision.
CREATION_TOPIC_PREFIXES = ("domain.charter:", "domain.signing:", "ledger.audit:AuditChain.")
CREATION_EVENTS_MAX = 16
