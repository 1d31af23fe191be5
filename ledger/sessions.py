"""Sessions for the command line: `yikatong login NAME` proves the password once and keeps a token.

Guarantees:
- A token is checkable without trusting the file it sits in: it is HMAC-SHA256, under the ledger's
  session secret, of (format, ledger, account name, account version, expiry). Editing any of them
  (another name, a later expiry) breaks the MAC; a token of another ledger names another ledger.
- The session secret is derived from the ledger's data key with HKDF-SHA256 when the ledger is
  encrypted (ledger.keys), so it lives wherever the key lives and nothing new is stored; a plain-text
  ledger gets a random secret in a private file beside where its key file would be
  (`<database>.sessions-key`, mode 0600, never overwritten). Whoever holds either can mint tokens, as
  whoever holds the data key can forge events: items 1–2 of issue 13 detect that, not this.
- The token names the account's version (the number of its events): changing its password or role,
  disabling it, ends every session it had. A session is refused after its expiry (default 8 hours,
  at most 7 days).
- The token file is private: created 0600 (and its folder 0700), replaced atomically, and refused when
  group or others may read it. Where: `$YIKATONG_SESSION_FILE`, else `$XDG_RUNTIME_DIR/yikatong/`
  (a per-user folder the system empties at logout), else `~/.config/yikatong/sessions/`, one file per
  ledger named by a hash of the ledger's location.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
from base64 import b64decode
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from domain.errors import RuleBroken
from ledger.keys import key_path_for, with_cipher
from ledger.storage import Database

SESSION_FILE_ENV = "YIKATONG_SESSION_FILE"
SESSION_S_DEFAULT = 8 * 3600
SESSION_S_MAX = 7 * 24 * 3600
SESSION_FILE_BYTES_MAX = 4096
SECRET_BYTES = 32
TOKEN_FORMAT = "yikatong-session-1"
_DURATION = re.compile(r"^([1-9][0-9]{0,6})([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class SessionInvalid(RuleBroken):
    """The session token is expired, altered, of another ledger or of an account that changed: log in again."""


class SessionFileNotPrivate(RuleBroken):
    """A session file that group or others may read is refused (its token acts as the account)."""


class BadDuration(RuleBroken):
    """A session lasts a whole number of s, m, h or d, at most 7 days: 30m, 8h, 2d."""


@dataclass(frozen=True, slots=True)
class Session:
    name: str
    version: int
    expires_at: int  # Unix seconds


def ledger_ref(db: Database) -> str:
    """Where the ledger is, the same however its URL is spelled (relative path, user, options)."""
    env = db.env
    if db.kind == "sqlite":
        return "sqlite:" + str(Path(env["SQLITE_DBNAME"]).resolve())
    schema = env.get("POSTGRES_SCHEMA") or "public"
    return f"postgresql://{env['POSTGRES_HOST']}:{env['POSTGRES_PORT']}/{env['POSTGRES_DBNAME']}?schema={schema}"


def parse_duration(text: str) -> int:
    match = _DURATION.match(text.strip())
    if match is None:
        raise BadDuration(f"{text!r}: write a whole number and s, m, h or d, e.g. 8h")
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds > SESSION_S_MAX:
        raise BadDuration(f"{text}: a session lasts at most {SESSION_S_MAX // 86400} days")
    return seconds


# --- the secret ---------------------------------------------------------------------------------------


def session_secret(db: Database) -> bytes:
    """HKDF of the data key when the ledger has one; else the private secret file, created if absent."""
    key = with_cipher(db).env.get("CIPHER_KEY")
    if key:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=SECRET_BYTES, salt=None, info=b"yikatong session tokens 1")
        return hkdf.derive(b64decode(key))
    return _secret_file(secret_path_for(db))


def secret_path_for(db: Database) -> Path:
    key_path = str(key_path_for(db))
    return Path(key_path.removesuffix(".key") + ".sessions-key")


def _secret_file(path: Path) -> bytes:
    try:
        return _read_private(path, SessionFileNotPrivate)
    except FileNotFoundError:
        pass
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another login created it a moment ago
        return _read_private(path, SessionFileNotPrivate)
    secret = secrets.token_bytes(SECRET_BYTES)
    with os.fdopen(handle, "wb") as f:
        f.write(base64.b64encode(secret) + b"\n")
    return secret


def _read_private(path: Path, error: type[RuleBroken]) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise error(f"{path} has mode {stat.S_IMODE(mode):03o}; it must be 600 (chmod 600 {path})")
    data = path.read_bytes()[:SESSION_FILE_BYTES_MAX]
    try:
        return b64decode(data.strip(), validate=True)
    except ValueError:
        raise error(f"{path} is not a session secret") from None


# --- tokens -------------------------------------------------------------------------------------------


def issue_token(secret: bytes, ledger: str, session: Session) -> str:
    body = json.dumps(
        {"f": TOKEN_FORMAT, "l": ledger, "n": session.name, "v": session.version, "e": session.expires_at},
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    mac = hmac.new(secret, body, hashlib.sha256).digest()
    return _b64(body) + "." + _b64(mac)


def check_token(secret: bytes, ledger: str, token: str, now_s: float) -> Session:
    """The session a token holds, when its MAC verifies, it names this ledger and it has not expired."""
    try:
        body_text, mac_text = token.strip().split(".")
        body, mac = _unb64(body_text), _unb64(mac_text)
    except ValueError:
        raise SessionInvalid("the session token is not a token: log in again") from None
    if not hmac.compare_digest(mac, hmac.new(secret, body, hashlib.sha256).digest()):
        raise SessionInvalid("the session token does not verify (altered, or of another ledger): log in again")
    fields = json.loads(body)
    if fields.get("f") != TOKEN_FORMAT or fields.get("l") != ledger:
        raise SessionInvalid("the session token is of another ledger: log in again")
    session = Session(str(fields["n"]), int(fields["v"]), int(fields["e"]))
    if now_s >= session.expires_at:
        raise SessionInvalid(f"the session of {session.name} has expired: log in again (`yikatong login NAME`)")
    return session


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- the token file -----------------------------------------------------------------------------------


def session_path_for(db: Database) -> Path:
    override = os.environ.get(SESSION_FILE_ENV)
    if override:
        return Path(override)
    name = hashlib.sha256(ledger_ref(db).encode()).hexdigest()[:24] + ".session"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "yikatong" / name
    return Path.home() / ".config" / "yikatong" / "sessions" / name


def write_session(path: Path, token: str) -> None:
    """Replace the session file atomically; mode 0600 from the first byte, its folder 0700 when created."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    handle = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(handle, "w", encoding="ascii") as f:
            f.write(token + "\n")
        os.replace(scratch, path)
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise


def read_session(path: Path) -> str | None:
    """The token in the session file, or None when there is none."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SessionFileNotPrivate(f"{path} has mode {stat.S_IMODE(mode):03o}; it must be 600 (or log in again)")
    return path.read_bytes()[:SESSION_FILE_BYTES_MAX].decode("ascii", errors="replace").strip()


def remove_session(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
