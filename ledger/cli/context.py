"""What every command shares: the ledger it works on, who acts, and both applications, opened once.

A command asks `c.apps()` (or `c.service()`) for the applications; opening them also establishes who
acts (identity.py: an account after its password, or on a ledger without accounts the typed name) and
refuses the command when that identity's role does not allow it (ledger.roles), so no command reaches
a use case unauthorised. `close()` runs when the command ends, whatever happened.
"""

from __future__ import annotations

from pathlib import Path

import click

from domain.accounts import Identity
from ledger.accounts import accounts_exist
from ledger.apps import Registry
from ledger.bootstrap import check_store, database_from_url, open_apps
from ledger.cli.identity import acting_identity, legacy_identity
from ledger.disbursement import Disbursement
from ledger.roles import (
    AUDIT_READER_ACTIONS,
    READ_ONLY,
    command_action,
    legacy_roles,
    require,
    require_account,
    roles_file_ignored,
)
from ledger.service import LedgerService
from ledger.storage import Database

# Commands that need no acting identity: `login` proves one itself, `logout` removes a file.
UNIDENTIFIED = frozenset({"login", "logout"})
# Opened as the read-only commands are (no DDL, no read-model catch-up, so an auditor's SELECT-only role
# runs them): `login` and `logout` append only an access record to the registry log (ledger.access),
# which no read model reads, and go on with a note where the database refuses even that.
OPENED_READ_ONLY = READ_ONLY | AUDIT_READER_ACTIONS | {"login", "logout"}
# Commands that prepare a PostgreSQL database, before any ledger may be in it: they open no ledger and
# act as no account; the database itself decides (`db setup` needs a superuser's URL, `db grant-auditor`
# a role that may create roles), and nothing they do is an event in the log.
STORE_SETUP = frozenset({"db setup", "db grant-auditor"})


class Context:
    def __init__(self, db_url: str | None, claimed_actor: str | None, password_file: Path | None = None) -> None:
        self.db_url = db_url
        self.claimed_actor = claimed_actor
        self.password_file = password_file
        self._apps: tuple[Registry, Disbursement] | None = None
        self._identity: Identity | None = None
        self.read_only = False  # set when the apps open: the command changes nothing in the ledger
        self.refused = False  # set by the error boundary: the command's one error line has been printed

    @property
    def db(self) -> Database:
        return database_from_url(self.db_url)

    @property
    def identity(self) -> Identity:
        """Who acts in this command (opening the ledger first if it is not open yet)."""
        self.apps()
        assert self._identity is not None, "a command that needs no identity asked for one"
        return self._identity

    @property
    def actor(self) -> str:
        """The name recorded as `actor` on every event this command writes: an account's normalised name."""
        return self.identity.name

    def authorise(self) -> str:
        """Open the ledger, establish who acts and refuse the command if their role does not allow it;
        returns the command's path, e.g. "batch approve". A command that prepares the database
        (`STORE_SETUP`) opens no ledger: the database's own roles authorise it."""
        action = command_action(click.get_current_context())
        if action not in STORE_SETUP:
            self.apps()
        return action

    def apps(self) -> tuple[Registry, Disbursement]:
        """Both applications, once the store holds a ledger (a command that changes the ledger on a store
        no `init` made is refused: ledger.bootstrap) and who acts may run the command (ledger.roles)."""
        if self._apps is None:
            action = command_action(click.get_current_context())
            self.read_only = action in OPENED_READ_ONLY
            db = self.db
            check_store(db, writing=not self.read_only)
            apps = open_apps(db, read_only=self.read_only)
            try:
                self._identity = self._identify(apps[0], action)
            except BaseException:
                for app in apps:
                    app.close()
                raise
            self._apps = apps
        return self._apps

    def _identify(self, registry: Registry, action: str) -> Identity | None:
        if action in UNIDENTIFIED:
            return None
        if accounts_exist(registry):
            notice = roles_file_ignored(self.db)
            if notice:
                click.echo(notice, err=True)
            identity = acting_identity(self.db, registry, self.claimed_actor, self.password_file)
            require_account(identity, action)
            return identity
        identity = legacy_identity(self.claimed_actor)
        require(legacy_roles(self.db), identity.name, action)
        return identity

    def service(self) -> LedgerService:
        """The use cases (ledger.service) on this command's applications."""
        registry, disbursement = self.apps()
        return LedgerService(self.db, registry, disbursement)

    def close(self) -> None:
        """Every command that opened the ledger leaves the read models caught up (docs/projections.md);
        a read-only command (an auditor's SELECT-only role) writes no read model either."""
        if self._apps is None:
            return
        try:
            if not self.read_only:
                # SQLAlchemy and the read models load here, not at start-up (~0.2 s the read-only commands skip).
                from ledger.reports import catch_up

                catch_up(self.db)
        finally:
            for app in self._apps:
                app.close()


pass_context = click.make_pass_decorator(Context)
