"""Shared test helpers, in one place: builders of ledgers, rosters, histories and bank files that
several test modules use. Test modules import helpers only from here (and fixtures from tests/conftest.py)."""
