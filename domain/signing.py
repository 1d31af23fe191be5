"""The ledger's identity for anchors: its id and the public half of the Ed25519 key that signs them.

An anchor (ledger.anchors) is a signed statement of how far the log went, kept outside the store. A
verifier checks its signature against the public key recorded here, in the registry log, where it is
covered by the log's own seals like every other event: replacing the recorded key changes the log, which
every anchor written before the change detects. Recorded once, by `yikatong init` (DESIGN.md, "Identity,
roles and integrity"); the key itself never enters the log.

One aggregate per ledger, at a fixed id. A second, different key is refused: a ledger has one signing
key, so every anchor it ever wrote stays checkable (rotation is not supported; docs/audit.md).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.eligibility import NAMESPACE
from domain.errors import RuleBroken

SIGNING_KEY_ID = uuid5(NAMESPACE, "ledger-signing-key")


class SigningKeyAlreadyRecorded(RuleBroken):
    """A ledger has one signing key: a different key than the one its log records is refused."""


class SigningKey(Aggregate):
    """The ledger's id (chosen when its key is recorded) and its anchors' public key (`ed25519:<base64>`)."""

    @staticmethod
    def create_id(**_: Any) -> UUID:  # type: ignore[override]
        return SIGNING_KEY_ID

    @event("Recorded")
    def __init__(self, ledger_id: str, public_key: str, actor: str) -> None:
        self.ledger_id = ledger_id
        self.public_key = public_key
        self.actor = actor

    def check_same(self, public_key: str) -> None:
        """Decide before recording: the same key again records nothing, another key is refused."""
        if public_key != self.public_key:
            raise SigningKeyAlreadyRecorded(
                f"this ledger's log records signing key {self.public_key}; the key file holds {public_key} "
                "(restore the ledger's own signing key file)"
            )
