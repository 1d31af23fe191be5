"""The ids derived from a resident ID number, under a ledger's id scheme.

A person's id and a payment's id are deterministic functions of their natural key (`person|ID number`,
`payment|ID number|programme|period`): the store's primary key then refuses a second payment for the
same enrolment and period, which is what makes a second month-end, or two at once, pay nobody twice
(DESIGN.md, The event log). How the key becomes an id is the ledger's id scheme, recorded in its
charter (domain.charter) and never changed for that ledger:

- `uuid5` (`UUID5_IDS`): uuid5 of the natural key under a namespace that is in the source code. Every
  ledger written before charters existed uses it, and so does a ledger created plain text on purpose
  (whose events hold the ID numbers in clear anyway). Anyone can recompute it, so an id reveals its ID
  number to whoever tries the ~10⁷ plausible ID numbers of a county (docs/personal-data.md).
- `hmac-sha256` (`KeyedIds`): HMAC-SHA256 of the same natural key under the ledger's id key (derived
  from its data key by ledger.keys.id_key), its first 128 bits as a UUID (version 8, RFC 9562's
  custom layout). Deterministic for the ledger, so every uniqueness guarantee holds exactly as with
  uuid5; without the key an id cannot be recomputed, so it reveals nothing.

Pure: the id key is passed in; nothing here reads a file or draws a random number.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Protocol
from uuid import UUID

from domain.eligibility import NAMESPACE, person_id

UUID5, HMAC_SHA256 = "uuid5", "hmac-sha256"
ID_SCHEMES = (UUID5, HMAC_SHA256)
ID_KEY_BYTES = 32  # an HMAC-SHA256 key as long as its output

_PAYMENT_KEY_PREFIX = hashlib.sha1(NAMESPACE.bytes + b"payment|")


def payment_id(id_number: str, programme: str, period: str) -> UUID:
    """One payment per enrolment per period: uuid5 of the natural key (DESIGN.md, The event log).

    Bit-identical to `uuid.uuid5(NAMESPACE, f"payment|{id_number}|{programme}|{period}")` (a test
    checks it); the namespace and prefix are hashed once, since a month-end computes a million of these.
    """
    digest = _PAYMENT_KEY_PREFIX.copy()
    digest.update(f"{id_number}|{programme}|{period}".encode())
    raw = bytearray(digest.digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return UUID(bytes=bytes(raw))


class IdScheme(Protocol):
    """How a ledger turns natural keys holding an ID number into ids."""

    @property
    def name(self) -> str: ...

    def person_id(self, id_number: str) -> UUID: ...

    def payment_id(self, id_number: str, programme: str, period: str) -> UUID: ...


class Uuid5Ids:
    """uuid5 of the natural key: every ledger without a charter, and plain-text ledgers."""

    name = UUID5

    def person_id(self, id_number: str) -> UUID:
        return person_id(id_number)

    def payment_id(self, id_number: str, programme: str, period: str) -> UUID:
        return payment_id(id_number, programme, period)

    def __repr__(self) -> str:
        return "Uuid5Ids()"


UUID5_IDS = Uuid5Ids()


class IdKeyTooShort(ValueError):
    """An id key shorter than ID_KEY_BYTES: our mistake, never input (ledger.keys derives it)."""


class KeyedIds:
    """HMAC-SHA256(id key, natural key), truncated to 128 bits with the UUID version 8 and variant bits.

    `person_id(n)` is HMAC(key, "person|n"); `payment_id(n, p, q)` is HMAC(key, "payment|n|p|q"): the
    same natural keys as uuid5, so the same uniqueness. The keyed prefix is hashed once and copied per
    id, as `payment_id` does for uuid5: a month-end computes a million of them.
    """

    name = HMAC_SHA256

    def __init__(self, id_key: bytes) -> None:
        if len(id_key) < ID_KEY_BYTES:
            raise IdKeyTooShort(f"an id key is at least {ID_KEY_BYTES} bytes, this one is {len(id_key)}")
        self._person = hmac.new(id_key, b"person|", "sha256")
        self._payment = hmac.new(id_key, b"payment|", "sha256")

    def person_id(self, id_number: str) -> UUID:
        mac = self._person.copy()
        mac.update(id_number.encode())
        return _uuid8(mac.digest())

    def payment_id(self, id_number: str, programme: str, period: str) -> UUID:
        mac = self._payment.copy()
        mac.update(f"{id_number}|{programme}|{period}".encode())
        return _uuid8(mac.digest())

    def __repr__(self) -> str:
        return "KeyedIds(<id key>)"  # never the key itself, in a traceback or a log


def _uuid8(digest: bytes) -> UUID:
    raw = bytearray(digest[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80  # version 8 (RFC 9562: custom)
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return UUID(bytes=bytes(raw))
