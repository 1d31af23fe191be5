"""A ledger's charter: what it was created as, stated once in its own log at `yikatong init`.

One `Charter` aggregate per ledger, with a fixed id in the registry log, holding one event
(`LedgerCreated`): the ledger's id (chosen by the caller: the domain draws no random number), whether
it was created plain text on purpose (`init --plaintext`), its id scheme (domain.ids) and who created
it. Nothing changes a charter: a ledger is encrypted wholly or not at all and keeps its ids for life.

A ledger without a charter was written by a release before charters existed: its ids are uuid5
(`LEGACY_ID_SCHEME`), and whether it is encrypted is what its events show (ledger.keys.check_key).

Which id scheme a new ledger gets (`id_scheme_for`): keyed (`hmac-sha256`) when it is encrypted, so
an id reveals nothing without the key; uuid5 when it is plain text on purpose, since its events hold
every ID number in clear and keying the ids would hide nothing (docs/personal-data.md).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.eligibility import NAMESPACE
from domain.errors import RuleBroken
from domain.ids import HMAC_SHA256, ID_SCHEMES, UUID5

CHARTER_ID = uuid5(NAMESPACE, "charter")
LEGACY_ID_SCHEME = UUID5  # every ledger written before charters existed


class UnknownIdScheme(RuleBroken):
    """A charter names an id scheme this release does not know."""


def id_scheme_for(*, plaintext: bool) -> str:
    """A new ledger's id scheme: keyed when encrypted, uuid5 when plain text on purpose."""
    return UUID5 if plaintext else HMAC_SHA256


class Charter(Aggregate):
    """What a ledger was created as: its id, plain text on purpose or encrypted, its id scheme."""

    @staticmethod
    def create_id(**_: Any) -> UUID:  # type: ignore[override]
        return CHARTER_ID

    @classmethod
    def found(cls, *, ledger_id: UUID, plaintext: bool, actor: str) -> Charter:
        """The charter of a new ledger, with the id scheme its encryption calls for."""
        scheme = id_scheme_for(plaintext=plaintext)
        return cls(ledger_id=ledger_id.hex, plaintext=plaintext, id_scheme=scheme, actor=actor)

    @event("LedgerCreated")
    def __init__(self, ledger_id: str, plaintext: bool, id_scheme: str, actor: str) -> None:
        self.ledger_id = UUID(ledger_id)
        self.plaintext = plaintext
        self.id_scheme = id_scheme
        self.created_by = actor

    def check_id_scheme(self) -> str:
        """The id scheme, refused when this release does not know it (a ledger from a later release)."""
        if self.id_scheme not in ID_SCHEMES:
            raise UnknownIdScheme(
                f"this ledger's charter names id scheme {self.id_scheme!r}, which this release does not know "
                f"({', '.join(ID_SCHEMES)}): open it with the release that created it"
            )
        return self.id_scheme
