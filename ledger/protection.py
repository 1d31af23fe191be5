"""What protects a ledger's personal data, as `init` and `audit verify` state it.

Read from the ledger itself: its charter (domain.charter: its id, plain text on purpose or not, its id
scheme) and whether its events are encrypted (the application's cipher, which ledger.keys.check_key has
already matched against the stored events). Four cases:

- encrypted, with a charter: a ledger created by `yikatong init` since charters exist; ids keyed;
- plain text on purpose: created by `yikatong init --plaintext`, as its charter states; ids uuid5;
- no charter, encrypted: written by an earlier release, after its `init`; ids uuid5;
- no charter, plain text (legacy): written by an earlier release without a key (`policy load` on a
  fresh store used to do it silently); it keeps working, and verify says it is unencrypted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from domain.charter import LEGACY_ID_SCHEME
from domain.ids import HMAC_SHA256

ON_PURPOSE, LEGACY = "on-purpose", "legacy"


@dataclass(frozen=True, slots=True)
class Protection:
    ledger_id: str | None  # hex; None without a charter
    encrypted: bool
    plaintext: str | None  # None when encrypted; ON_PURPOSE or LEGACY
    id_scheme: str  # domain.ids: "uuid5" | "hmac-sha256"

    @property
    def charter(self) -> bool:
        return self.ledger_id is not None

    def line(self) -> str:
        """One line for `audit verify` and `init`."""
        who = f"ledger {self.ledger_id}" if self.ledger_id else "no charter (a ledger from an earlier release)"
        if self.encrypted:
            data = "personal data encrypted (AES-256-GCM)"
        elif self.plaintext == ON_PURPOSE:
            data = "personal data NOT encrypted: plain text on purpose (init --plaintext, stated in its log)"
        else:
            data = "personal data NOT encrypted (a legacy plain-text ledger)"
        if self.id_scheme == HMAC_SHA256:
            ids = f"ids keyed ({HMAC_SHA256})"
        else:
            ids = f"ids {self.id_scheme} of ID numbers (reversible by trying ID numbers)"
        return f"{who}: {data}; {ids}"

    def as_json(self) -> dict[str, Any]:
        return {
            "ledger_id": self.ledger_id,
            "charter": self.charter,
            "encrypted": self.encrypted,
            "plaintext": self.plaintext,
            "id_scheme": self.id_scheme,
        }


def protection_of(registry: Any) -> Protection:
    """The protection of the ledger `registry` belongs to (a ledger.apps.Registry, opened by bootstrap)."""
    charter = registry.charter()
    encrypted = registry.mapper.cipher is not None
    if charter is None:
        return Protection(None, encrypted, None if encrypted else LEGACY, LEGACY_ID_SCHEME)
    plaintext = ON_PURPOSE if charter.plaintext else None
    return Protection(charter.ledger_id.hex, encrypted, plaintext, charter.id_scheme)
