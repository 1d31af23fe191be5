"""One storage suite, two backends (STYLE.md 12): every test that takes `db` runs on SQLite and on
PostgreSQL over a real connection. Each PostgreSQL test gets its own schema, dropped afterwards.

Under CI (CI=true) a PostgreSQL that cannot be reached fails the run instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest

from ledger.bootstrap import database_from_url
from ledger.storage import Database, parse_database_url, postgres_conninfo

# The one place the tests learn where PostgreSQL is: $YIKATONG_TEST_PG, a URL without ?schema= (tests add
# their own schemas). PG_ADMIN is the same server as a libpq conninfo, for tests that connect directly.
PG_URL = os.environ.get("YIKATONG_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
PG_ADMIN = postgres_conninfo(parse_database_url(PG_URL))


def pg_url(schema: str, *, user: str | None = None) -> str:
    """PG_URL with `?schema=` (and another login role, when `user` is given)."""
    url = PG_URL
    if user is not None:
        parsed = urlparse(url)
        url = urlunparse(parsed._replace(netloc=f"{user}@{parsed.hostname}:{parsed.port or 5432}"))
    return f"{url}?schema={schema}"


POLICY = Path(__file__).resolve().parent.parent / "ledger" / "data" / "ulanqab-2017.toml"


def _pg_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return None
    except Exception as e:  # any failure to connect is the reason
        return str(e)


@pytest.fixture(scope="session")
def pg_reachable() -> None:
    reason = _pg_available()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required under CI and is not reachable: {reason}")
    pytest.skip(f"PostgreSQL not reachable: {reason}")


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh, empty event store on each backend."""
    if request.param == "sqlite":
        yield database_from_url(f"sqlite:///{tmp_path / 'ledger.db'}")
        return
    request.getfixturevalue("pg_reachable")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield database_from_url(pg_url(schema))
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        # The test's schema and any it derived from it (e.g. a second, clean ledger).
        names = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (schema + "%",)).fetchall()
        for (name,) in names:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def policy_text() -> str:
    return POLICY.read_text(encoding="utf-8")
