"""The benchmarks use the test suite's two-backend `db` fixture (SQLite and PostgreSQL)."""

from tests.conftest import db, pg_reachable, policy_text  # noqa: F401
