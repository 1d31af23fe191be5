"""The ledger's charter and its keyed ids, on both stores: `init_ledger` records the charter once, the
applications take their id scheme from it, and the id key is HKDF-SHA256 of the data key."""

from __future__ import annotations

import hashlib
import hmac
from base64 import b64decode
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from domain.charter import Charter
from domain.ids import HMAC_SHA256, UUID5, KeyedIds
from ledger.bootstrap import database_from_url, init_ledger, open_apps
from ledger.keys import ID_KEY_INFO, KEY_ENV, KEY_FILE_ENV, KeyedIdsNeedTheKey, id_key, id_scheme_of, new_key
from ledger.protection import LEGACY, ON_PURPOSE, protection_of
from ledger.storage import Database


@pytest.fixture(autouse=True)
def _key_file_of_the_test(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (KEY_ENV, KEY_FILE_ENV, "CIPHER_KEY", "CIPHER_TOPIC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "ledger.key"))


def _hkdf_rfc5869(ikm: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 written out with hmac: extract with an all-zero salt, then expand."""
    prk = hmac.new(bytes(32), ikm, hashlib.sha256).digest()
    out, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
    return out[:length]


def test_the_id_key_is_hkdf_sha256_of_the_data_key_and_never_the_data_key_itself() -> None:
    key = new_key()
    derived = id_key(key)
    assert derived == _hkdf_rfc5869(b64decode(key), ID_KEY_INFO, 32)
    assert derived == id_key(key) and derived != id_key(new_key()) and derived != b64decode(key)


def test_the_id_scheme_comes_from_the_charter_and_keyed_ids_need_the_key() -> None:
    key = new_key()
    keyed = Charter.found(ledger_id=uuid4(), plaintext=False, actor="admin")
    plain = Charter.found(ledger_id=uuid4(), plaintext=True, actor="admin")
    assert id_scheme_of(None, {"CIPHER_KEY": key}).name == UUID5  # a ledger of an earlier release
    assert id_scheme_of(plain, {}).name == UUID5
    scheme = id_scheme_of(keyed, {"CIPHER_KEY": key})
    assert isinstance(scheme, KeyedIds) and scheme.person_id("X") == KeyedIds(id_key(key)).person_id("X")
    with pytest.raises(KeyedIdsNeedTheKey):
        id_scheme_of(keyed, {})


def test_init_records_the_charter_once_and_the_applications_take_keyed_ids_from_it(db: Database) -> None:
    ledger_id = uuid4()
    made = init_ledger(db, ledger_id=ledger_id, actor="admin")
    assert made.created and made.key.created and made.protection.ledger_id == ledger_id.hex
    again = init_ledger(db, ledger_id=uuid4(), actor="admin")
    assert not again.created and not again.key.created and again.protection == made.protection
    registry, disbursement = open_apps(database_from_url(db.url))
    try:
        charter = registry.charter()
        assert charter is not None and charter.ledger_id == ledger_id and charter.created_by == "admin"
        assert registry.ids.name == disbursement.ids.name == HMAC_SHA256
        # A second `init` racing the first: the store keeps the first charter, by its fixed id.
        assert registry.found_ledger(ledger_id=uuid4(), plaintext=False, actor="x").ledger_id == ledger_id
        protection = protection_of(registry)
        assert (protection.encrypted, protection.plaintext, protection.id_scheme) == (True, None, HMAC_SHA256)
    finally:
        registry.close()
        disbursement.close()


def test_a_plain_text_ledger_on_purpose_and_a_legacy_one_say_which_they_are(db: Database, policy_text: str) -> None:
    made = init_ledger(db, ledger_id=UUID(int=3), actor="admin", plaintext=True)
    assert made.created and made.key.source == "plaintext"
    assert (made.protection.encrypted, made.protection.plaintext, made.protection.id_scheme) == (
        False,
        ON_PURPOSE,
        UUID5,
    )
    if db.kind == "sqlite":
        other = database_from_url(db.url.replace("ledger.db", "legacy.db"))
    else:
        other = database_from_url(db.url + "_legacy")
    registry, disbursement = open_apps(other)  # what an earlier release did: no charter, no key
    try:
        registry.load_policy(policy_text, "p.toml", "clerk")
        protection = protection_of(registry)
        assert (protection.charter, protection.encrypted, protection.plaintext) == (False, False, LEGACY)
    finally:
        registry.close()
        disbursement.close()
    reported = init_ledger(other, ledger_id=uuid4(), actor="admin")
    assert not reported.created and reported.key.source == "none" and reported.protection.plaintext == LEGACY


def test_the_charters_stored_topic_and_fields_are_pinned() -> None:
    """Stored topics are never renamed (ledger.topics): a ledger's first event must read in every release."""
    from eventsourcing.utils import get_topic

    assert get_topic(Charter.LedgerCreated) == "domain.charter:Charter.LedgerCreated"  # type: ignore[attr-defined]
    (created,) = Charter.found(ledger_id=UUID(int=9), plaintext=False, actor="admin").collect_events()
    fields = set(vars(created)) - {"originator_id", "originator_version", "timestamp", "originator_topic"}
    assert fields == {"ledger_id", "plaintext", "id_scheme", "actor"}
