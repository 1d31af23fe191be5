"""What every request shares: the ledger it works on, who is acting, and the rule that a request reaches
a use case only as an account whose role allows it — the web's counterpart of ledger/cli/context.py.

A handler opens a `visit(request, action, …)`: the session cookie is checked (ledger.sessions token, see
auth.py), a POST's CSRF token too, the ledger is opened (read-only for reads, as the CLI opens its
read-only commands), the account is looked up as it is now (a changed account ends its sessions), and
`ledger.roles.require_account(identity, action)` refuses what the role may not do — with the CLI's own
action names ("batch approve", "report balances"), so the web and the command line share one table of
rights. A refusal is a 403 and is logged with the account, the action and the rule. After a write, the
read models are caught up before the applications close, as the CLI does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

from eventsourcing.persistence import PersistenceError
from fastapi import Request
from fastapi.templating import Jinja2Templates

from domain.access import LOGIN_FAILED
from domain.accounts import Identity
from domain.errors import RuleBroken
from ledger.access import Access
from ledger.accounts import identity_of
from ledger.bootstrap import open_service
from ledger.reports import ServedReads
from ledger.roles import require_account
from ledger.service import LedgerService
from ledger.storage import Database
from ledger.web import formats
from ledger.web.auth import COOKIE, LoginThrottle, WebSessions
from ledger.web.messages import LANGUAGE, t

log = logging.getLogger("yikatong.web")
HERE = Path(__file__).resolve().parent
SESSION_S_DEFAULT = 8 * 3600


class NotLoggedIn(Exception):
    """No session, or one that no longer holds (expired, altered, logged out, account changed)."""


class Refused(Exception):
    """The request may not go on: a role that may not act, or a POST without its CSRF token (403)."""

    def __init__(self, message: str, rule: str = "", *, account: str = "", role: str = "", action: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.rule = rule
        # Who was refused, when known (a session's account): the refusal is recorded in the ledger.
        self.account = account
        self.role = role
        self.action = action


FAILED_LOGINS_RECORDED_PER_MINUTE = 60


@dataclass
class FailedLoginBudget:
    """How many failed logins one server process records in the ledger per minute. Why a bound: a
    failed login is the one event anyone can cause without an account, and the throttle (auth.py) bounds
    attempts per name, not names; without it, a script trying names would grow the append-only log
    without end. Beyond the bound the attempt is still refused and logged, only not recorded."""

    per_minute: int = FAILED_LOGINS_RECORDED_PER_MINUTE
    _recent: deque[float] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, now: float) -> bool:
        with self._lock:
            while self._recent and self._recent[0] <= now - 60:
                self._recent.popleft()
            if len(self._recent) >= self.per_minute:
                return False
            self._recent.append(now)
            return True


@dataclass
class Web:
    """One server process's view of one ledger."""

    db: Database
    sessions: WebSessions
    throttle: LoginThrottle
    templates: Jinja2Templates
    session_seconds: int = SESSION_S_DEFAULT
    exports_dir: Path | None = None
    today: Callable[[], date] = date.today
    clock: Callable[[], float] = time.time
    failed_logins: FailedLoginBudget = field(default_factory=FailedLoginBudget)

    served: ServedReads = field(default_factory=ServedReads)  # reports under load (ledger.reports)

    def open(self, *, writing: bool) -> LedgerService:
        service = open_service(self.db, read_only=not writing)
        service.served = self.served
        return service

    def record_access(self, request: Request, access: Access) -> None:
        """Record a login, logout, failed login or refusal in the ledger (ledger.access), with the
        request's method, path and client address. A store that refuses the write (a SELECT-only role)
        is logged and the response stays what it was: a refusal is still a 403."""
        client = request.client.host if request.client else ""
        access = replace(access, method=request.method, path=request.url.path, address=client)
        if access.kind == LOGIN_FAILED and not self.failed_logins.take(time.monotonic()):
            log.warning("failed login for %r not recorded in the ledger: more than %d a minute",
                        access.name[:64], self.failed_logins.per_minute)  # fmt: skip
            return
        service = self.open(writing=True)
        try:
            service.record_access(access)
        except (PersistenceError, RuleBroken) as e:
            log.error("could not record %s of %s in the ledger: %s", access.kind, access.name, e)
        finally:
            service.registry.close()
            service.disbursement.close()


def web_of(request: Request) -> Web:
    return request.app.state.web  # type: ignore[no-any-return]


@dataclass
class Visit:
    """One request on the ledger, as one account."""

    web: Web
    service: LedgerService
    identity: Identity
    csrf: str

    def may(self, action: str) -> bool:
        """Whether this account's role allows `action`: what a page shows (the POST checks it again)."""
        try:
            require_account(self.identity, action)
        except RuleBroken:
            return False
        return True


@contextmanager
def visit(request: Request, action: str, *, csrf_token: str | None = None, writing: bool = False) -> Iterator[Visit]:
    web = web_of(request)
    token = request.cookies.get(COOKIE)
    if not token:
        raise NotLoggedIn(t("error.login_first"))
    try:
        session = web.sessions.check(token)
    except RuleBroken as e:
        raise NotLoggedIn(t("login.expired")) from e
    if request.method == "POST" and not web.sessions.csrf_ok(token, csrf_token):
        log.warning("refused %s %s by %s: CSRF token missing or wrong", request.method, request.url.path, session.name)
        raise Refused(t("error.csrf"), "CsrfTokenRefused", account=session.name, action=action)
    service = web.open(writing=writing)
    try:
        try:
            identity = identity_of(service.registry, session.name, session.version)
        except RuleBroken as e:
            raise NotLoggedIn(t("login.expired")) from e
        try:
            require_account(identity, action)
        except RuleBroken as e:
            log.warning(
                "refused %s %s by %s (%s): %s: %s",
                request.method, request.url.path, identity.name, identity.role, e.rule, e,
            )  # fmt: skip
            raise Refused(t("error.forbidden"), e.rule, account=identity.name, role=identity.role, action=action) from e
        yield Visit(web, service, identity, web.sessions.csrf_for(token))
        if writing:
            from ledger.reports import catch_up

            catch_up(web.db)
    finally:
        service.registry.close()
        service.disbursement.close()


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.globals.update(t=t, lang=LANGUAGE)
    env.filters.update(yuan=formats.yuan, date_text=formats.date_text, state_word=formats.state_word)
    return templates
