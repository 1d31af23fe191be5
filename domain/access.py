"""Access to the ledger, recorded in its own log: logins, logouts, failed logins and refused requests.

Why an aggregate of its own, one per access: a session token names its account's version
(ledger.sessions), so an event on the `Account` aggregate would end every session of that account; and
one aggregate per access never conflicts with another access at the same moment (each is version 1 of
its own id), so two people logging in together both get recorded.

- `kind` is one of `ACCESS_KINDS`: `login` (a password proved, a session begun), `logout`,
  `login_failed` (a wrong name or password; the name tried is kept, the password never) and `refused`
  (a request the account's role or a missing CSRF token refused: 403).
- `actor` is the authenticated account for every kind but `login_failed`, whose `actor` is empty: a
  name typed at a failed login is not an identity, so it is kept apart as `name_tried`, escaped and cut
  to `NAME_CHARS_MAX` (it may be anything, a password typed in the wrong field included).
- Texts from a request (path, rule, action, address) are escaped and cut to their limits: a request
  never puts control characters or a megabyte into the log.

Pure: the id is passed in (ledger.access draws it), the library stamps the time.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.accounts import NAME_CHARS_MAX, escaped, normalised_name
from domain.errors import RuleBroken

LOGIN, LOGOUT, LOGIN_FAILED, REFUSED = "login", "logout", "login_failed", "refused"
ACCESS_KINDS = (LOGIN, LOGOUT, LOGIN_FAILED, REFUSED)
CHANNELS = ("web", "cli")
TEXT_CHARS_MAX = 200  # a path, an action, a rule's name, an address


class BadAccess(RuleBroken):
    """An access record names a kind or channel this release does not know."""


def clipped(text: str, chars_max: int = TEXT_CHARS_MAX) -> str:
    """`text` with control and format characters escaped, at most `chars_max` characters."""
    return escaped(str(text))[:chars_max]


class AccessRecord(Aggregate):
    """One access: who, what kind, through which channel, and for a refusal the request and the rule."""

    @staticmethod
    def create_id(record_id: str, **_: Any) -> UUID:  # type: ignore[override]
        return UUID(record_id)

    @classmethod
    def record(
        cls,
        *,
        record_id: UUID,
        kind: str,
        channel: str,
        name: str,
        role: str = "",
        action: str = "",
        method: str = "",
        path: str = "",
        rule: str = "",
        address: str = "",
    ) -> AccessRecord:
        """Check the kind and channel, clean every text, then record (decide, then record)."""
        if kind not in ACCESS_KINDS:
            raise BadAccess(f"access kind {kind!r}: one of {', '.join(ACCESS_KINDS)}")
        if channel not in CHANNELS:
            raise BadAccess(f"access channel {channel!r}: one of {', '.join(CHANNELS)}")
        failed = kind == LOGIN_FAILED
        return cls(
            record_id=record_id.hex,
            kind=kind,
            channel=channel,
            actor="" if failed else normalised_name(name),
            name_tried=clipped(name, NAME_CHARS_MAX) if failed else "",
            role=clipped(role, 16),
            action=clipped(action),
            method=clipped(method, 16),
            path=clipped(path),
            rule=clipped(rule),
            address=clipped(address, 64),
        )

    @event("Recorded")
    def __init__(
        self,
        record_id: str,
        kind: str,
        channel: str,
        actor: str,
        name_tried: str,
        role: str,
        action: str,
        method: str,
        path: str,
        rule: str,
        address: str,
    ) -> None:
        self.kind = kind
        self.actor = actor
