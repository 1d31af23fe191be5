"""Who acts: accounts in the ledger, their roles, and the text rules for names and reasons.

DESIGN.md ("Identity, roles and integrity"): who acts is an account in the ledger, authenticated by its
password, the same for the command line and the web application; roles (clerk 经办, checker 复核/审批,
auditor 审计, admin 管理员) are assigned in the ledger by an admin, as events; an unknown account has no
rights. This module holds the pure part:

- `normalised_name` and `normalised_reason`: NFKC, trimmed; empty text, control and format characters
  (C0/C1 controls, bidirectional overrides, zero-width characters) refused with `BadName` / `BadReason`.
  Every actor name and every reason is checked by them before it is recorded, so "alice " is alice and
  no recorded text can move an auditor's cursor or reorder what a terminal shows.
- `Account`: one aggregate per person, its id derived from the case-folded normalised name, so two
  accounts of one name (or of names differing only in case or width) cannot both exist: the event
  store's uniqueness of (originator id, version 1) decides, not a check-then-insert. Events: `Added`,
  `RoleChanged`, `PasswordChanged`, `Disabled`, `Enabled`, each recording the acting account's name.
  The password is stored only as a hash computed outside the domain (ledger.accounts, argon2).
- `AccountDirectory`: the list of account names, and the moment the ledger began authenticating
  (`Opened`, with the disbursement log's position then): `audit verify` states from which positions on
  the recorded identities were authenticated. A ledger written before accounts has no directory.
- `Identity`: who a command acts as. `authenticated` is False only for a ledger with no accounts yet,
  where the typed name is taken on trust as in earlier releases.

Pure: no clock, no I/O, no randomness (hashes and positions are passed in).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.eligibility import NAMESPACE
from domain.errors import RuleBroken

CLERK, CHECKER, AUDITOR, ADMIN = "clerk", "checker", "auditor", "admin"
ROLES = (CLERK, CHECKER, AUDITOR, ADMIN)
ROLE_NAMES_ZH = {CLERK: "经办", CHECKER: "复核/审批", AUDITOR: "审计", ADMIN: "管理员"}
# The roles file of earlier releases called the checker "approver"; both words name one role.
ROLE_ALIASES = {"approver": CHECKER}

NAME_CHARS_MAX = 64  # an account name: a person's name or login, never a paragraph
REASON_CHARS_MAX = 500  # a decision document number and a few words on why
PASSWORD_CHARS_MIN = 10  # ISSUE 13, item 5: at least 10 characters
PASSWORD_CHARS_MAX = 1024  # argon2 hashes anything; the bound keeps a pasted file from being a password
ACCOUNTS_MAX = 1_000  # accounts in one ledger: one office has 2–20 people (examples/web.md)

# Unicode general categories refused anywhere in a name or a reason: controls (Cc: C0, DEL, C1 such as
# CSI), format characters (Cf: bidirectional overrides, zero-width joiners), surrogates, private use,
# unassigned, and the line and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})

DIRECTORY_ID = uuid5(NAMESPACE, "account-directory")


class BadName(RuleBroken):
    """An account or actor name must be 1–64 printable characters after NFKC and trimming."""


class BadReason(RuleBroken):
    """A reason must be 1–500 printable characters after NFKC and trimming (no control characters)."""


class BadRole(RuleBroken):
    """A role is one of clerk, checker, auditor, admin."""


class PasswordTooShort(RuleBroken):
    """A password has at least 10 characters (and at most 1024)."""


class AccountDisabled(RuleBroken):
    """A disabled account has no rights."""


def _refused_character(text: str) -> str | None:
    for ch in text:
        if unicodedata.category(ch) in _REFUSED_CATEGORIES:
            return f"U+{ord(ch):04X}"
    return None


def _normalised(text: str, what: str, chars_max: int, error: type[RuleBroken]) -> str:
    if not isinstance(text, str):
        raise error(f"{what} must be text")
    cleaned = unicodedata.normalize("NFKC", text).strip()
    if not cleaned:
        raise error(f"{what} is empty")
    bad = _refused_character(cleaned)
    if bad is not None:
        raise error(f"{what} {escaped(cleaned[:NAME_CHARS_MAX])} holds a control or format character ({bad})")
    if len(cleaned) > chars_max:
        raise error(f"{what} has {len(cleaned)} characters, more than {chars_max}")
    return cleaned


def normalised_name(text: str) -> str:
    """An actor or account name as it is recorded: NFKC, trimmed, printable, 1–64 characters."""
    return _normalised(text, "name", NAME_CHARS_MAX, BadName)


def normalised_reason(text: str) -> str:
    """A reason (decision document number, why) as it is recorded: NFKC, trimmed, printable, ≤ 500."""
    return _normalised(text, "reason", REASON_CHARS_MAX, BadReason)


def escaped(text: str) -> str:
    """`text` with every character a terminal would act on (controls, format characters) written as an
    escape (\\x1b, \\u202e), for showing text recorded before these rules existed."""
    return "".join(ch if unicodedata.category(ch) not in _REFUSED_CATEGORIES else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def role_named(text: str) -> str:
    """The role `text` names (an earlier release's "approver" is the checker)."""
    word = text.strip().lower()
    role = ROLE_ALIASES.get(word, word)
    if role not in ROLES:
        raise BadRole(f"{text!r} is not a role: use one of {', '.join(ROLES)}")
    return role


def check_password_rule(password: str) -> None:
    """At least PASSWORD_CHARS_MIN characters (ISSUE 13 item 5), at most PASSWORD_CHARS_MAX."""
    if len(password) < PASSWORD_CHARS_MIN:
        raise PasswordTooShort(f"a password has at least {PASSWORD_CHARS_MIN} characters; this one has {len(password)}")
    if len(password) > PASSWORD_CHARS_MAX:
        raise PasswordTooShort(f"a password has at most {PASSWORD_CHARS_MAX} characters")


def account_id(name: str) -> UUID:
    """The account id of a normalised name: case and width do not make a second account."""
    return uuid5(NAMESPACE, f"account|{name.casefold()}")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a command acts as. `role` is "" when `authenticated` is False (a ledger with no accounts,
    where the earlier releases' roles file decides)."""

    name: str
    role: str
    authenticated: bool = True


class Account(Aggregate):
    """One person's account: name, role, password hash, enabled or not. Decide, then record: every
    command method checks before it triggers its event, and the events only set state."""

    @staticmethod
    def create_id(name: str, **_: Any) -> UUID:  # type: ignore[override]
        return account_id(name)

    @event("Added")
    def __init__(self, name: str, role: str, password_hash: str, actor: str) -> None:
        self.name = name
        self.role = role
        self.password_hash = password_hash
        self.enabled = True

    @classmethod
    def add(cls, *, name: str, role: str, password_hash: str, actor: str) -> Account:
        return cls(name=normalised_name(name), role=role_named(role), password_hash=password_hash, actor=actor)

    def change_role(self, *, role: str, actor: str) -> bool:
        """Record the new role; False (nothing recorded) when it is the role the account has."""
        role = role_named(role)
        if role == self.role:
            return False
        self._role_changed(role=role, actor=actor)
        return True

    @event("RoleChanged")
    def _role_changed(self, role: str, actor: str) -> None:
        self.role = role

    def change_password(self, *, password_hash: str, actor: str) -> None:
        self._password_changed(password_hash=password_hash, actor=actor)

    @event("PasswordChanged")
    def _password_changed(self, password_hash: str, actor: str) -> None:
        self.password_hash = password_hash

    def disable(self, *, actor: str) -> bool:
        if not self.enabled:
            return False
        self._disabled(actor=actor)
        return True

    @event("Disabled")
    def _disabled(self, actor: str) -> None:
        self.enabled = False

    def enable(self, *, actor: str) -> bool:
        if self.enabled:
            return False
        self._enabled(actor=actor)
        return True

    @event("Enabled")
    def _enabled(self, actor: str) -> None:
        self.enabled = True

    def identity(self) -> Identity:
        """The identity this account acts as; a disabled account has none (fail closed)."""
        if not self.enabled:
            raise AccountDisabled(f"account {self.name} is disabled")
        return Identity(self.name, self.role, authenticated=True)


class AccountDirectory(Aggregate):
    """Every account's name, and when the ledger began authenticating who acts.

    `Opened` is recorded with the first admin: `actor` is whoever created it (on a ledger of an earlier
    release, the name typed with --as), `disbursement_position` the disbursement log's last position
    before it. Events recorded after `Opened` (in the registry log) and after that position (in the
    disbursement log) name authenticated accounts.
    """

    @staticmethod
    def create_id(**_: Any) -> UUID:  # type: ignore[override]
        return DIRECTORY_ID

    @event("Opened")
    def __init__(self, actor: str, disbursement_position: int) -> None:
        self.names: list[str] = []
        self.disbursement_position = disbursement_position

    def list_account(self, name: str) -> None:
        if len(self.names) >= ACCOUNTS_MAX:
            raise TooManyAccounts(f"a ledger holds at most {ACCOUNTS_MAX} accounts")
        self._listed(name=name)

    @event("Listed")
    def _listed(self, name: str) -> None:
        self.names.append(name)


class TooManyAccounts(RuleBroken):
    """A ledger holds at most ACCOUNTS_MAX accounts."""
