"""Sessions, CSRF tokens and login throttling for the web application.

Guarantees:
- The session cookie (`yikatong_session`) holds a ledger.sessions token: HMAC-SHA256 under the ledger's
  session secret of (ledger, account name, account version, expiry), the same token `yikatong login`
  keeps. Altering it breaks the MAC; a change to the account (password, role, disabled) ends it, since
  the token names the account's version; it expires after `seconds` (default 8 hours). The cookie is
  HttpOnly, SameSite=Strict, Path=/, with Max-Age, and Secure whenever the request came over https.
- Logging out forgets the token in this process (`revoke`): a copy of the cookie kept elsewhere is
  refused by this server process until the token expires. A restart forgets the revocations, and other
  processes serving the same ledger do not share them; a token still ends at its expiry and with any
  change to its account. (Revocation across processes needs a store of its own: not in this slice.)
- CSRF: every form but /login carries `csrf_token`, an HMAC of the session token under the same secret
  with its own label: only a page served to that session can hold it; it is compared in constant time.
- Throttling, in memory per process (`LoginThrottle`): after `FAILURES_MAX` (5) wrong passwords in a
  row for one name, that name waits `WAIT_S` (5 minutes) during which no password, even the right
  one, is tried. Unknown names are throttled the same way, so throttling tells no names apart. A
  success clears the count. A restart clears every count; several server processes count apart. At
  most `NAMES_MAX` names are tracked; beyond that the oldest are forgotten.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from ledger.sessions import Session, SessionInvalid, check_token

COOKIE = "yikatong_session"
CSRF_FIELD = "csrf_token"
FAILURES_MAX = 5
WAIT_S = 5 * 60
NAMES_MAX = 10_000
_CSRF_LABEL = b"yikatong-web-csrf-1\x00"


@dataclass
class WebSessions:
    """Checks session tokens and their CSRF tokens for one ledger, in one server process."""

    secret: bytes
    ledger: str
    clock: Callable[[], float] = time.time
    _revoked: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, token: str) -> Session:
        """The session of a cookie's token: verified, of this ledger, not expired, not logged out."""
        now = self.clock()
        session = check_token(self.secret, self.ledger, token, now)
        with self._lock:
            if token in self._revoked:
                raise SessionInvalid("this session was ended (logged out): log in again")
        return session

    def revoke(self, token: str, expires_at: int) -> None:
        now = self.clock()
        with self._lock:
            for old in [k for k, until in self._revoked.items() if until <= now]:
                del self._revoked[old]
            self._revoked[token] = expires_at

    def csrf_for(self, token: str) -> str:
        return hmac.new(self.secret, _CSRF_LABEL + token.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, token: str, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf_for(token), str(given))


@dataclass
class LoginThrottle:
    """Consecutive failed logins per name; after `failures_max` the name waits `wait_s` seconds."""

    failures_max: int = FAILURES_MAX
    wait_s: float = WAIT_S
    clock: Callable[[], float] = time.monotonic
    names_max: int = NAMES_MAX
    _failures: OrderedDict[str, tuple[int, float]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def key(name: str) -> str:
        return unicodedata.normalize("NFKC", name).strip().casefold()

    def waiting(self, name: str) -> float:
        """Seconds this name must still wait before a password is tried again (0: it may try now)."""
        with self._lock:
            _, until = self._failures.get(self.key(name), (0, 0.0))
        return max(0.0, until - self.clock())

    def failed(self, name: str) -> None:
        key = self.key(name)
        with self._lock:
            count, _ = self._failures.pop(key, (0, 0.0))
            count += 1
            if count >= self.failures_max:
                self._failures[key] = (0, self.clock() + self.wait_s)
            else:
                self._failures[key] = (count, 0.0)
            while len(self._failures) > self.names_max:
                self._failures.popitem(last=False)

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(self.key(name), None)
