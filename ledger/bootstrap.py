"""Wiring, in one direction: a URL → storage settings (ledger.storage) → the key (ledger.keys) → the
applications (ledger.apps, ledger.disbursement). Everything that opens a ledger starts here: the CLI, the
demo, the benchmarks, the tests; nothing below imports this module, so there is no import cycle to
dodge (tests/test_architecture.py checks the whole graph).
"""

from __future__ import annotations

import os

from ledger.apps import Registry
from ledger.disbursement import Disbursement
from ledger.keys import KEY_ENV, KeyStatus, check_key, configured_key, create_key, key_path_for, load_key, with_cipher
from ledger.roles import read_only_env
from ledger.service import LedgerService
from ledger.storage import DEFAULT_DB, Database, ensure_schema, parse_database_url, schema_lock, tables_exist

# The event table of each application (eventsourcing names it NAME_events).
APP_TABLES = tuple(f"{app_class.name.lower()}_events" for app_class in (Registry, Disbursement))


def database_from_url(url: str | None) -> Database:
    """The store `url` names (else `$YIKATONG_DB`, else ./yikatong.db), with its key when one is configured."""
    return with_cipher(parse_database_url(url or os.environ.get("YIKATONG_DB") or DEFAULT_DB))


def open_apps(db: Database, *, read_only: bool = False) -> tuple[Registry, Disbursement]:
    """Both applications on `db`, encrypted with its key when one is configured (ledger.keys).

    `read_only` opens without DDL (no CREATE SCHEMA, no CREATE TABLE): all a SELECT-only PostgreSQL
    auditor role (ledger.roles.grant_auditor) may do. The tables must exist already. A PostgreSQL ledger
    whose tables exist opens without DDL too: the application role of `db setup` (docs/deploy.md) may
    not run eventsourcing's CREATE … IF NOT EXISTS / OR REPLACE on the owner role's objects.
    """
    db = with_cipher(db)
    if read_only or tables_exist(db, APP_TABLES):
        registry = Registry(env=read_only_env(db.env_for("Registry")))
        disbursement = Disbursement(env=read_only_env(db.env_for("Disbursement")))
    else:
        with schema_lock(db):
            ensure_schema(db)
            registry = Registry(env=db.env_for("Registry"))
            disbursement = Disbursement(env=db.env_for("Disbursement"))
    check_key(registry)
    check_key(disbursement)
    return registry, disbursement


def open_service(db: Database, *, read_only: bool = False) -> LedgerService:
    """The use cases (ledger.service) on both applications of `db`."""
    registry, disbursement = open_apps(db, read_only=read_only)
    return LedgerService(with_cipher(db), registry, disbursement)


def init_key(db: Database) -> KeyStatus:
    """Make sure a new ledger is encrypted: create its key file when no key is configured and the store
    holds no events yet. A ledger that already holds plain-text events keeps running without a key."""
    if os.environ.get(KEY_ENV):
        configured_key(db)
        return KeyStatus("environment", None, created=False)
    path = key_path_for(db)
    if load_key(path) is not None:
        return KeyStatus("file", path, created=False)
    if store_has_events(db):
        return KeyStatus("none", None, created=False)
    create_key(path)
    return KeyStatus("file", path, created=True)


def store_has_events(db: Database) -> bool:
    existing = tables_exist(db, APP_TABLES)  # then no DDL, as in open_apps
    if not existing:
        ensure_schema(db)
    for app_class in (Registry, Disbursement):
        env = db.env_for(app_class.name)
        app = app_class(env=read_only_env(env) if existing else env)
        try:
            if app.recorder.max_notification_id():
                return True
        finally:
            app.close()
    return False
