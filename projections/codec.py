"""Event payloads as they are stored, read the one way both the ledger and the read models read them.

The applications' mapper turns an event into JSON (eventsourcing's transcoder, which writes a datetime as
`{"_type_": "datetime_iso", "_data_": "…"}`), compresses it if a compressor is configured, and encrypts
it if a cipher is. Bulk readers (the registry fold, payment views, the projection runner, an auditor's
history) skip building event objects: they undo the cipher and the compressor with the application's own
objects, then read the JSON, whose fields are primitives by design. This module is that reading, written
once; `projections/` holds it because the ledger may import the projections and not the reverse.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.persistence import Cipher, Compressor
from eventsourcing.utils import Environment, resolve_topic

DATETIME_TYPE = "datetime_iso"  # eventsourcing.persistence.DatetimeAsISO's name in the JSON
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class PayloadCodec:
    """An application's cipher and compressor (either may be None), undone in the mapper's order."""

    cipher: Cipher | None = None
    compressor: Compressor | None = None

    @classmethod
    def of_mapper(cls, mapper: Any) -> PayloadCodec:
        return cls(mapper.cipher, mapper.compressor)

    @classmethod
    def from_env(cls, application_name: str, env: Mapping[str, str]) -> PayloadCodec:
        """Configured as eventsourcing configures an application (CIPHER_TOPIC / CIPHER_KEY /
        COMPRESSOR_TOPIC, application-prefixed or not, from the process environment overlaid with `env`)."""
        environment = Environment(application_name, {**os.environ, **env})
        cipher_topic = environment.get("CIPHER_TOPIC")
        if not cipher_topic and environment.get("CIPHER_KEY"):
            cipher_topic = "eventsourcing.cipher:AESCipher"
        cipher = resolve_topic(cipher_topic)(environment) if cipher_topic else None
        compressor_topic = environment.get("COMPRESSOR_TOPIC")
        compressor = None
        if compressor_topic:
            found = resolve_topic(compressor_topic)
            compressor = found() if isinstance(found, type) else found
        return cls(cipher, compressor)

    @property
    def is_plain(self) -> bool:
        return self.cipher is None and self.compressor is None

    def plaintext(self, state: bytes) -> bytes:
        if self.cipher is not None:
            state = self.cipher.decrypt(state)
        if self.compressor is not None:
            state = self.compressor.decompress(state)
        return bytes(state)

    def payload(self, state: bytes) -> dict[str, Any]:
        """The event's fields. Decoding to str first skips json's pure-Python encoding detection on bytes."""
        return json.loads(self.plaintext(state).decode())  # type: ignore[no-any-return]


def datetime_text(value: Any) -> str:
    """The ISO text of a datetime field as the transcoder stored it ("" when absent)."""
    if isinstance(value, dict):
        return str(value.get("_data_", ""))
    return str(value or "")


def stored_datetime(value: Any) -> datetime:
    return datetime.fromisoformat(datetime_text(value))


def datetime_json(moment: datetime) -> str:
    """A datetime as the transcoder writes it, for writers that build a payload's bytes directly."""
    return _ENCODER.encode({"_type_": DATETIME_TYPE, "_data_": moment.isoformat()})


def json_string(text: str) -> str:
    """`text` as a JSON string, as the transcoder writes it (UTF-8, not escaped to ASCII)."""
    return _ENCODER.encode(text)
