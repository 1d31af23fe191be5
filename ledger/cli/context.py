"""What every command shares: the ledger it works on, who acts, and both applications, opened once.

A command asks `c.apps()` for the applications; that checks the roles file first (ledger.roles), so no
command reaches the ledger without its action being allowed to the actor. `close()` runs when the
command ends, whatever happened.
"""

from __future__ import annotations

from functools import cached_property

import click

from ledger.apps import Registry
from ledger.bootstrap import check_store, database_from_url, open_apps
from ledger.cli.identity import acting_identity
from ledger.disbursement import Disbursement
from ledger.roles import READ_ONLY, command_action, load_roles, require, roles_path_for
from ledger.service import LedgerService
from ledger.storage import Database


class Context:
    def __init__(self, db_url: str | None, claimed_actor: str) -> None:
        self.db_url = db_url
        self.claimed_actor = claimed_actor
        self._apps: tuple[Registry, Disbursement] | None = None
        self.read_only = False  # set by `authorise`: the command changes nothing in the ledger
        self.refused = False  # set by the error boundary: the command's one error line has been printed

    @property
    def db(self) -> Database:
        return database_from_url(self.db_url)

    @cached_property
    def actor(self) -> str:
        """Who acts in this command: every command, role check and recorded event learns it here."""
        return acting_identity(self.claimed_actor)

    def authorise(self) -> str:
        """Refuse the command being run when the roles file does not allow it to the actor (ledger.roles);
        returns the command's path, e.g. "batch approve". No roles file: everything is allowed."""
        action = command_action(click.get_current_context())
        require(load_roles(roles_path_for(self.db)), self.actor, action)
        self.read_only = action in READ_ONLY
        return action

    def apps(self) -> tuple[Registry, Disbursement]:
        """Both applications, once the roles file allows the command and the store holds a ledger (a
        command that changes the ledger on a store no `init` made is refused: ledger.bootstrap)."""
        if self._apps is None:
            self.authorise()
            db = self.db
            check_store(db, writing=not self.read_only)
            self._apps = open_apps(db, read_only=self.read_only)
        return self._apps

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
