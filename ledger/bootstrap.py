"""Wiring, in one direction: a URL → storage settings (ledger.storage) → the key (ledger.keys) → the
applications (ledger.apps, ledger.disbursement). Everything that opens a ledger starts here: the CLI, the
demo, the benchmarks, the tests; nothing below imports this module, so there is no import cycle to
dodge (tests/test_architecture.py checks the whole graph).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from domain.charter import Charter
from domain.errors import RuleBroken
from ledger.anchors import SigningKeyStatus, init_signing_key
from ledger.apps import Registry
from ledger.audit import record_checkpoint
from ledger.disbursement import Disbursement
from ledger.keys import (
    KEY_ENV,
    KeyStatus,
    check_key,
    configured_key,
    create_key,
    id_scheme_of,
    key_path_for,
    load_key,
    with_cipher,
)
from ledger.protection import Protection, protection_of
from ledger.roles import read_only_env
from ledger.service import LedgerService
from ledger.storage import (
    DEFAULT_DB,
    Database,
    ensure_schema,
    holds_events,
    parse_database_url,
    schema_lock,
    tables_exist,
)

# The event table of each application (eventsourcing names it NAME_events).
APP_TABLES = tuple(f"{app_class.name.lower()}_events" for app_class in (Registry, Disbursement))


class NoLedgerHere(RuleBroken):
    """A command that changes the ledger was given a store that holds none: `yikatong init` creates a
    ledger (encrypted; `--plaintext` on purpose), so a fresh or mistyped `--db` never becomes a
    plain-text ledger without a word (issue 13, item 3)."""


class PlaintextButKeyConfigured(RuleBroken):
    """`init --plaintext` while a key is configured: the ledger would be encrypted after all."""


class LedgerNotPlaintext(RuleBroken):
    """`init --plaintext` on a ledger that is encrypted: a ledger is encrypted wholly or not at all."""


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
    # The ids the ledger derives from ID numbers: keyed when its charter says so (ledger.keys.id_key).
    ids = id_scheme_of(registry.charter(), db.env)
    registry.ids = disbursement.ids = ids
    return registry, disbursement


def check_store(db: Database, *, writing: bool) -> None:
    """Refuse, before anything is opened or created, a command on a store that holds no ledger.

    A command that changes the ledger needs a store holding events (a ledger `init` made, or one an
    earlier release wrote); on a fresh or mistyped `--db` it is refused, and no file, schema or table is
    created. What a key must match is checked on opening (ledger.keys.check_key): a ledger whose charter
    says encrypted opens only with its key; a plain-text one only without. A read of a SQLite file
    that does not exist is refused too, rather than leaving an empty file behind.

    The one gate of every entry point (the CLI's Context, `open_service`); `open_apps` itself opens
    whatever it is given, for tests and tools that build plain-text ledgers in-process.
    """
    if writing:
        if not holds_events(db):
            raise NoLedgerHere(
                f"{db.url} holds no ledger: run `yikatong init` first (it creates the ledger and its key; "
                "`init --plaintext` for a plain-text ledger on purpose), or check --db / $YIKATONG_DB; "
                "nothing was written"
            )
        return
    if db.kind == "sqlite" and not Path(db.env["SQLITE_DBNAME"]).exists():
        raise NoLedgerHere(f"{db.url}: no such database file (check --db / $YIKATONG_DB, or run `yikatong init`)")


def open_service(db: Database, *, read_only: bool = False) -> LedgerService:
    """The use cases (ledger.service) on both applications of `db`, once `check_store` lets it open."""
    db = with_cipher(db)
    check_store(db, writing=not read_only)
    registry, disbursement = open_apps(db, read_only=read_only)
    return LedgerService(db, registry, disbursement)


# --- `yikatong init` ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LedgerInit:
    """What `init_ledger` found or did, for `yikatong init` to print."""

    key: KeyStatus
    protection: Protection
    created: bool  # this call recorded the ledger's charter
    signing: SigningKeyStatus | None = None  # the signing key this call created and recorded with the charter

    def messages(self) -> list[tuple[str, bool]]:
        """(line, is a warning) pairs, key first."""
        lines = [(self.key.message(), self.key.source == "none")]
        if self.created:
            lines.append((f"charter recorded: {self.protection.line()}", False))
        else:
            lines.append((self.protection.line(), not self.protection.encrypted))
        return lines


def init_ledger(db: Database, *, ledger_id: UUID, actor: str, plaintext: bool = False) -> LedgerInit:
    """Create the ledger on `db`: its key (unless `plaintext`), its tables and its charter, sealed.

    On a store that already holds a ledger, nothing is recorded (the charter is written once, at
    creation): it reports what the ledger is. `ledger_id` is the caller's random choice (the domain
    draws none); it is used only when this call creates the ledger.
    """
    if holds_events(db):
        return _init_existing(db, plaintext=plaintext)
    if plaintext:
        if configured_key(db) is not None:
            raise PlaintextButKeyConfigured(
                f"--plaintext, but a key is configured (${KEY_ENV} or {key_path_for(db)}): remove it, or drop "
                "--plaintext to create an encrypted ledger"
            )
        status = KeyStatus("plaintext", None, created=False)
    else:
        status = init_key(db)
    registry, disbursement = open_apps(db)
    try:
        charter = registry.found_ledger(ledger_id=ledger_id, plaintext=plaintext, actor=actor)
        # The signing key of its anchors (ledger.anchors), its public half recorded beside the charter.
        signing = init_signing_key(with_cipher(db), registry, actor)
        record_checkpoint(registry)
        created = charter.ledger_id == ledger_id
        if not created:  # another `init` created it a moment before this one
            status = _key_status_of(db, charter)
        return LedgerInit(status, protection_of(registry), created, signing if created else None)
    finally:
        registry.close()
        disbursement.close()


def _init_existing(db: Database, *, plaintext: bool) -> LedgerInit:
    registry, disbursement = open_apps(db)
    try:
        charter = registry.charter()
        if plaintext and registry.mapper.cipher is not None:
            raise LedgerNotPlaintext(
                "this ledger is encrypted; --plaintext applies only when a ledger is created, and a ledger is "
                "encrypted wholly or not at all"
            )
        return LedgerInit(_key_status_of(db, charter), protection_of(registry), created=False)
    finally:
        registry.close()
        disbursement.close()


def _key_status_of(db: Database, charter: Charter | None) -> KeyStatus:
    if charter is not None and charter.plaintext:
        return KeyStatus("plaintext", None, created=False)
    return init_key(db)


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
