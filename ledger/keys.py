"""Personal data at rest: the key that switches on eventsourcing's AES cipher, and where it lives.

Guarantees:
- With a key configured, the whole state of every stored event (names, ID numbers, 一卡通 accounts and
  every other field) is AES-256-GCM ciphertext in the format of eventsourcing's `AESCipher` (a fresh
  96-bit nonce per event, authenticated, so a changed byte fails to decrypt instead of reading as other
  data), computed by `AESGCMCipher` below (the `cryptography` package when installed). The
  application's mapper applies it, and so do the ledger's fast paths, which go through `mapper.cipher`:
  the month-end's payload writer (ledger.disbursement `_ChunkWriter._accrued`), the bulk registry fold
  (`Registry._payload`), payment views and balances (`Disbursement._payload`) and the projection runner
  (projections.runner `plaintext_reader`, which reads the same settings from `Database.env`).
- Where the key comes from, first match wins: `$YIKATONG_KEY` (the base64 key itself); else the key
  file `$YIKATONG_KEY_FILE`; else beside a SQLite database, `<database file>.key`; else for PostgreSQL
  `./yikatong-<dbname>-<schema>.key`. The key is never stored in the database.
- A key file is created with mode 0600 and never overwritten (overwriting it would make the ledger
  unreadable); a key file that group or others may read is refused, as ssh refuses a private key.
- A ledger is encrypted wholly or not at all: `init_key` creates a key only for a store with no events
  yet, and `check_key` refuses to open a ledger whose first event the configured key cannot read (a
  wrong key, or a plain-text ledger opened with a key), naming the problem instead of failing later.

- The id key (`id_key`): a ledger created encrypted (its charter's id scheme `hmac-sha256`) derives its
  person and payment ids from ID numbers under a second key, HKDF-SHA256 of the data key with the fixed
  info string ID_KEY_INFO (domain.ids.KeyedIds). Nothing more to keep: the data key yields it, and an
  id cannot be recomputed without it. Ledgers without a charter (every earlier release) and plain-text
  ledgers keep uuid5 ids, which can be reversed by trying ID numbers (docs/personal-data.md).
"""

from __future__ import annotations

import binascii
import os
import stat
from base64 import b64decode
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eventsourcing.cryptography import AESCipher

from domain.charter import Charter
from domain.errors import RuleBroken
from domain.ids import HMAC_SHA256, ID_KEY_BYTES, UUID5_IDS, IdScheme, KeyedIds
from ledger.storage import Database

CIPHER_TOPIC = "ledger.keys:AESGCMCipher"  # eventsourcing's AESCipher, with a faster backend when installed
KEY_BYTES = 32  # AES-256
KEY_ENV = "YIKATONG_KEY"  # the base64 key itself
KEY_FILE_ENV = "YIKATONG_KEY_FILE"  # where the key file is
KEY_FILE_MODE = 0o600
KEY_FILE_BYTES_MAX = 1024  # a key file is one line of base64; anything larger is not a key file
ID_KEY_INFO = b"yikatong id key v1: HMAC-SHA256 of person and payment natural keys"  # never change it


class KeyFileExists(RuleBroken):
    """A key file is never overwritten: the ledger it opens would become unreadable."""


class KeyFileNotPrivate(RuleBroken):
    """A key file that group or others may read is refused (chmod 600 it)."""


class BadKey(RuleBroken):
    """The configured key is not base64 of 16, 24 or 32 bytes."""


class StoredEventDamaged(RuleBroken, ValueError):
    """A stored event fails its AES-GCM authentication: its bytes changed after it was written, or it was
    written with another key. A ValueError too, as eventsourcing's cipher raises, so callers catching that
    keep working."""


class KeyDoesNotOpenLedger(RuleBroken):
    """The configured key cannot read this ledger's events (another ledger's key, or a plain-text ledger)."""


class LedgerIsEncrypted(RuleBroken):
    """This ledger's events are encrypted and no key is configured."""


class KeyedIdsNeedTheKey(RuleBroken):
    """The ledger's charter says its ids are keyed, and no key is configured to derive the id key from."""


class AESGCMCipher(AESCipher):
    """eventsourcing's AES-GCM cipher on the `cryptography` package (`eventsourcing.cryptography`), the
    same stored format as its pycryptodome `eventsourcing.cipher.AESCipher` (nonce ‖ tag ‖ ciphertext,
    a fresh 96-bit nonce per message), so a ledger written by either reads with the other
    (tests/ledger/test_keys.py). pycryptodome builds a GCM object in Python for every message
    (≈ 60 µs per event each way here, an encrypted month-end 4× slower); `cryptography` takes ≈ 2 µs.
    What this adds: a damaged event is reported as the ledger's own `StoredEventDamaged`.
    """

    def decrypt(self, ciphertext: bytes) -> bytes:
        try:
            return super().decrypt(bytes(ciphertext))
        except ValueError as e:
            reason = "MAC check failed" if "tag" in str(e) and "length" not in str(e) else str(e)
            raise StoredEventDamaged(_DAMAGED + f" ({reason})") from None


_DAMAGED = (
    "a stored event fails its authentication tag: it was changed after it was written, or written with another "
    "key (run `yikatong audit verify`)"
)


def key_path_for(db: Database) -> Path:
    """The key file for `db`: `$YIKATONG_KEY_FILE`, else beside the SQLite file, else per PostgreSQL schema."""
    override = os.environ.get(KEY_FILE_ENV)
    if override:
        return Path(override)
    if db.kind == "sqlite":
        return Path(db.env["SQLITE_DBNAME"] + ".key")
    schema = db.env.get("POSTGRES_SCHEMA") or "public"
    return Path(f"yikatong-{db.env['POSTGRES_DBNAME']}-{schema}.key")


def new_key() -> str:
    return AESCipher.create_key(num_bytes=KEY_BYTES)


def create_key(path: Path) -> str:
    """Write a new AES-256 key to `path` (mode 0600, created exclusively) and return it."""
    key = new_key()
    # O_EXCL: two `init`s at once cannot both write a key; the mode applies from the first byte.
    write_private_file(path, (key + "\n").encode("ascii"), KeyFileExists, "a key file")
    return key


def write_private_file(path: Path, data: bytes, exists: type[RuleBroken], what: str) -> None:
    """`data` as the new file `path`: mode 0600 from its first byte, created exclusively (an existing file
    is never overwritten: `exists` is raised, naming `what` it is), flushed to disk before returning."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    except FileExistsError:
        raise exists(f"{path} exists; {what} is never overwritten") from None
    with os.fdopen(handle, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def read_private_file(path: Path, bytes_max: int, too_large: type[RuleBroken], what: str) -> bytes | None:
    """The bytes of the key-like file `path`, or None when there is no such file. Refused when group or
    others may read it (as ssh refuses a private key), or when it is larger than `bytes_max` (`too_large`,
    naming `what` it is not)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileNotPrivate(f"{path} has mode {stat.S_IMODE(mode):03o}; it must be 600 (chmod 600 {path})")
    data = path.read_bytes()[: bytes_max + 1]
    if len(data) > bytes_max:
        raise too_large(f"{path} is not {what} (larger than {bytes_max} bytes)")
    return data


def load_key(path: Path) -> str | None:
    """The key in `path`, or None when there is no such file."""
    data = read_private_file(path, KEY_FILE_BYTES_MAX, BadKey, "a key file")
    if data is None:
        return None
    return check_key_text(data.decode("ascii", errors="replace").strip(), str(path))


def check_key_text(key: str, source: str) -> str:
    try:
        raw = b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise BadKey(f"{source}: not a base64 key") from None
    if len(raw) not in (16, 24, 32):
        raise BadKey(f"{source}: a key is 16, 24 or 32 bytes, this one is {len(raw)}")
    return key


def configured_key(db: Database) -> str | None:
    """The key for `db`: `$YIKATONG_KEY`, else its key file, else None (the ledger is plain text)."""
    from_env = os.environ.get(KEY_ENV)
    if from_env:
        return check_key_text(from_env.strip(), f"${KEY_ENV}")
    return load_key(key_path_for(db))


def env_with_cipher(env: dict[str, str], key: str) -> dict[str, str]:
    """eventsourcing's settings for the AES cipher (read by `InfrastructureFactory.cipher()`)."""
    return {**env, "CIPHER_TOPIC": CIPHER_TOPIC, "CIPHER_KEY": key}


def with_cipher(db: Database) -> Database:
    """`db` with the cipher settings in its env when a key is configured; unchanged otherwise.

    Idempotent. The settings go into `Database.env` rather than into the applications only, so that
    everything reading the events table through the database's settings (the projection runner) reads
    it with the same key.
    """
    if db.env.get("CIPHER_KEY"):
        return db
    key = configured_key(db)
    if key is None:
        return db
    return replace(db, env=env_with_cipher(db.env, key))


def with_key_of(target: Database, source: Database) -> Database:
    """`target` (a scratch copy of `source`, another schema of it) read and written with `source`'s key:
    a copy's own key file does not exist, and its events are `source`'s ciphertext."""
    cipher = {name: source.env[name] for name in ("CIPHER_TOPIC", "CIPHER_KEY") if name in source.env}
    return replace(target, env={**target.env, **cipher}) if cipher else target


# --- `yikatong init` and opening a ledger -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """What `init_key` found or did, for `yikatong init` to print."""

    source: str  # "environment" | "file" | "plaintext" (on purpose: `init --plaintext`) | "none"
    path: Path | None
    created: bool

    def message(self) -> str:
        if self.source == "environment":
            return f"personal data encrypted with the key in ${KEY_ENV}"
        if self.source == "file":
            verb = "created" if self.created else "using"
            return (
                f"personal data encrypted: {verb} key file {self.path} "
                "(keep a copy offline: without it the ledger cannot be read)"
            )
        if self.source == "plaintext":
            return (
                "no key: personal data NOT encrypted, on purpose (init --plaintext); whoever can read the "
                "database reads every name, ID number and account (docs/personal-data.md)"
            )
        return (
            "warning: this ledger already holds events in plain text; no key created, personal data stays "
            "unencrypted (docs/personal-data.md)"
        )


def check_key(app: Any) -> None:
    """Refuse to go on when the configured key (or its absence) does not fit the ledger's first event.

    One stored event is read; AES-GCM authenticates it, so a wrong key cannot read as data.
    """
    page = app.recorder.select_notifications(start=1, limit=1)
    if not page:
        return
    state = page[0].state
    cipher = app.mapper.cipher
    if cipher is not None:
        try:
            cipher.decrypt(state)
        except ValueError:
            raise KeyDoesNotOpenLedger(
                f"the configured key cannot read this ledger's {app.name} events: it is another ledger's key, "
                "or the ledger was written without one"
            ) from None
        return
    # Without a cipher or compressor, a stored state is the JSON transcoder's output: an object.
    if app.mapper.compressor is None and bytes(state[:1]) != b"{":
        raise LedgerIsEncrypted(
            f"this ledger's {app.name} events are encrypted and no key is configured "
            f"(${KEY_ENV}, ${KEY_FILE_ENV} or the key file beside the database)"
        )


# --- keyed ids ---------------------------------------------------------------------------------------


def id_key(data_key: str) -> bytes:
    """The id key of a ledger whose data key is `data_key` (base64): HKDF-SHA256 (RFC 5869), no salt,
    info ID_KEY_INFO. A separate key, so the HMAC of ID numbers never uses the AES key itself."""
    raw = b64decode(check_key_text(data_key, "the data key").encode("ascii"))
    return HKDF(algorithm=hashes.SHA256(), length=ID_KEY_BYTES, salt=None, info=ID_KEY_INFO).derive(raw)


def id_scheme_of(charter: Charter | None, env: dict[str, str]) -> IdScheme:
    """The ids a ledger uses: keyed under its id key when its charter says so, else uuid5 (no charter:
    a ledger from an earlier release; or a plain-text one). `env` holds the cipher settings (`with_cipher`)."""
    if charter is None or charter.check_id_scheme() != HMAC_SHA256:
        return UUID5_IDS
    key = env.get("CIPHER_KEY")
    if not key:
        raise KeyedIdsNeedTheKey(
            f"this ledger's ids are keyed ({HMAC_SHA256}) and no key is configured "
            f"(${KEY_ENV}, ${KEY_FILE_ENV} or the key file beside the database)"
        )
    return KeyedIds(id_key(key))
