"""One storage suite, two backends (STYLE.md 12): every test that takes `db` runs on SQLite and on
PostgreSQL over a real connection. Each PostgreSQL test gets its own schema, dropped afterwards.

Under CI (CI=true) a PostgreSQL that cannot be reached fails the run instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.bootstrap import database_from_url
from ledger.storage import Database

PG_URL = os.environ.get("YIKATONG_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
POLICY = Path(__file__).resolve().parent.parent / "ledger" / "data" / "ulanqab-2017.toml"


def _pg_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=3):
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
    yield database_from_url(f"{PG_URL}?schema={schema}")
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
        # The test's schema and any it derived from it (e.g. a second, clean ledger).
        names = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (schema + "%",)).fetchall()
        for (name,) in names:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def policy_text() -> str:
    return POLICY.read_text(encoding="utf-8")
