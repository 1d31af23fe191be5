"""A database URL turned into eventsourcing persistence settings, and the bounds every store keeps.

`sqlite:///PATH` (default `./yikatong.db`) uses eventsourcing.sqlite; `postgresql://USER@HOST:PORT/DB`
uses eventsourcing.postgres through psycopg 3, with the ledger's recorder (ledger.storage.postgres). An
optional `?schema=NAME` on a PostgreSQL URL puts the tables in that schema (created if missing), which
is how tests isolate themselves. Deadlines on waits: `?lock_timeout=S` (both stores, default 60 s) and
`?statement_timeout=S` (PostgreSQL, default 600 s); docs/deployment-postgres.md.

Each application gets its own events table (`registry_events`, `disbursement_events`), so the month-end
reads the registry without scanning millions of payments.

Every stored event is at most EVENT_BYTES_MAX (256 KiB) as stored: events that could grow with a
ledger (audit seals, a bank file's results, a batch's payment ids) are cut into several bounded events
by their aggregates, and a write of a larger event is refused before anything is sent.

This module knows nothing of keys: ledger.bootstrap adds the cipher settings (ledger.keys).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlparse

from eventsourcing.persistence import StoredEvent

from domain.errors import RuleBroken

DEFAULT_DB = "sqlite:///yikatong.db"
EVENT_BYTES_MAX = 256 * 1024  # one stored event's state, as stored (encrypted)
EVENT_TABLES = ("registry_events", "disbursement_events")  # one per application (eventsourcing: NAME_events)
TIMEOUT_S_MAX = 7 * 24 * 3600

SQLITE_LOCK_TIMEOUT_S = 60  # how long a write waits for another command's write to the same file
STATEMENT_TIMEOUT_S = 600  # PostgreSQL: one statement may run this long (a chunk's COPY takes about a second)
LOCK_TIMEOUT_S = 60  # PostgreSQL: one lock wait may last this long (writers hold the lock for one chunk)

# Settings the ledger reads from the environment of its applications (put there by `parse_database_url`).
STATEMENT_TIMEOUT_ENV = "YIKATONG_STATEMENT_TIMEOUT"
LOCK_TIMEOUT_ENV = "YIKATONG_LOCK_TIMEOUT"


class BadDatabaseUrl(RuleBroken):
    """The --db / YIKATONG_DB value is not a sqlite:/// or postgresql:// URL."""


class EventTooLarge(RuleBroken):
    """A stored event larger than EVENT_BYTES_MAX; nothing of the write was recorded."""


def check_event_sizes(stored_events: Iterable[StoredEvent]) -> None:
    """Refuse the whole write when one of its events is larger than EVENT_BYTES_MAX."""
    for e in stored_events:
        if len(e.state) > EVENT_BYTES_MAX:
            raise EventTooLarge(
                f"{e.topic} of {e.originator_id} version {e.originator_version} is {len(e.state)} bytes, "
                f"more than the {EVENT_BYTES_MAX} a stored event may hold; nothing was recorded"
            )


@dataclass(frozen=True, slots=True)
class Database:
    url: str
    kind: str  # "sqlite" | "postgres"
    env: dict[str, str] = field(repr=False)  # may hold the cipher key: never in a traceback

    def env_for(self, app_name: str) -> dict[str, str]:
        env = dict(self.env)
        if self.kind == "sqlite":
            env["APPLICATION_RECORDER_TOPIC"] = f"ledger.storage.sqlite:{app_name}SQLiteRecorder"
        else:
            env["APPLICATION_RECORDER_TOPIC"] = "ledger.storage.postgres:LedgerPostgresRecorder"
        return env

    @property
    def lock_timeout_s(self) -> int:
        if self.kind == "sqlite":
            return int(self.env.get("SQLITE_LOCK_TIMEOUT") or SQLITE_LOCK_TIMEOUT_S)
        return int(self.env.get(LOCK_TIMEOUT_ENV) or LOCK_TIMEOUT_S)

    @property
    def statement_timeout_s(self) -> int:
        return int(self.env.get(STATEMENT_TIMEOUT_ENV) or STATEMENT_TIMEOUT_S)


def parse_database_url(url: str) -> Database:
    """The settings a URL names, without a key (ledger.bootstrap.database_from_url adds it)."""
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    if parsed.scheme == "sqlite":
        path = unquote(parsed.path)
        if url.startswith("sqlite:///"):
            path = url[len("sqlite:///") :].split("?")[0]
        if not path:
            raise BadDatabaseUrl(f"{url}: no file path (use sqlite:///yikatong.db)")
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": path,
            "SQLITE_LOCK_TIMEOUT": str(_timeout(url, query, "lock_timeout", SQLITE_LOCK_TIMEOUT_S)),
        }
        return Database(url=url, kind="sqlite", env=env)
    if parsed.scheme in ("postgresql", "postgres"):
        dbname = parsed.path.lstrip("/")
        if not dbname:
            raise BadDatabaseUrl(f"{url}: no database name (postgresql://USER@HOST:PORT/DB)")
        lock_timeout = _timeout(url, query, "lock_timeout", LOCK_TIMEOUT_S)
        statement_timeout = _timeout(url, query, "statement_timeout", STATEMENT_TIMEOUT_S)
        env = {
            "PERSISTENCE_MODULE": "ledger.storage.postgres:Factory",
            "POSTGRES_DBNAME": dbname,
            "POSTGRES_HOST": parsed.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parsed.port or 5432),
            "POSTGRES_USER": unquote(parsed.username or os.environ.get("USER", "postgres")),
            "POSTGRES_PASSWORD": unquote(parsed.password or ""),
            "POSTGRES_LOCK_TIMEOUT": str(lock_timeout),
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": str(statement_timeout),
            "POSTGRES_POOL_SIZE": "4",
            LOCK_TIMEOUT_ENV: str(lock_timeout),
            STATEMENT_TIMEOUT_ENV: str(statement_timeout),
        }
        if "schema" in query:
            env["POSTGRES_SCHEMA"] = query["schema"][0]
        return Database(url=url, kind="postgres", env=env)
    raise BadDatabaseUrl(f"{url}: use sqlite:///PATH or postgresql://USER@HOST:PORT/DB")


def _timeout(url: str, query: dict[str, list[str]], name: str, default: int) -> int:
    """A deadline in whole seconds from the URL's query (`?lock_timeout=60`), or the default."""
    if name not in query:
        return default
    text = query[name][0]
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= TIMEOUT_S_MAX):
        raise BadDatabaseUrl(f"{url}: {name}={text!r} is not a whole number of seconds from 1 to {TIMEOUT_S_MAX}")
    return int(text)


def url_for_role(db: Database, role: str) -> str:
    """`db`'s PostgreSQL URL connecting as `role` instead, without a password (the role's own comes from
    the server's authentication: pg_hba.conf, a password file, a certificate), query kept."""
    parsed = urlparse(db.url)
    host = parsed.hostname or "127.0.0.1"
    netloc = f"{role}@{f'[{host}]' if ':' in host else host}:{parsed.port or 5432}"
    return parsed._replace(netloc=netloc).geturl()


def postgres_conninfo(db: Database) -> str:
    e = db.env
    parts = [
        f"dbname={e['POSTGRES_DBNAME']}",
        f"host={e['POSTGRES_HOST']}",
        f"port={e['POSTGRES_PORT']}",
        f"user={e['POSTGRES_USER']}",
    ]
    if e.get("POSTGRES_PASSWORD"):
        parts.append(f"password={e['POSTGRES_PASSWORD']}")
    return " ".join(parts)


def waited_too_long(reason: str, db: Database | None) -> str | None:
    """What a wait that ran out of time waited for, with the setting that bounds it, from a storage error's
    first line (SQLite's busy timeout, PostgreSQL's lock and statement timeouts); None for other errors.
    The one wording of these messages: ledger.storage.postgres.deadlines and the CLI both use it."""
    if "database is locked" in reason:
        seconds = db.lock_timeout_s if db is not None else SQLITE_LOCK_TIMEOUT_S
        return (
            f"waited {seconds} s for another command's write to this ledger to finish (lock_timeout); "
            "nothing was recorded, run it again when that command has finished"
        )
    if "lock timeout" in reason:
        return lock_wait_message(db.lock_timeout_s if db is not None else LOCK_TIMEOUT_S)
    if "statement timeout" in reason:
        return statement_wait_message(db.statement_timeout_s if db is not None else STATEMENT_TIMEOUT_S)
    return None


def lock_wait_message(seconds: int) -> str:
    return (
        f"waited {seconds} s for a lock another command holds (lock_timeout); nothing was recorded, "
        "run it again when that command has finished"
    )


def statement_wait_message(seconds: int) -> str:
    return f"the database did not finish within {seconds} s (statement_timeout); nothing was recorded"
