"""The command line's one error boundary: a refused command ends in a clear message and exit code 1.

What the user reads, by the error's type (STYLE.md 5 and 19; DESIGN.md, Interfaces):
- `FileRejected` (a roster, a policy, a bank file): its lines as they are, one per problem, each naming
  the file and the line;
- any other `RuleBroken`: `error: Rule: message`;
- the event store's failures and the storage libraries' own errors (psycopg, sqlite3, SQLAlchemy):
  `error: storage: reason`, where a wait that timed out names the setting that bounds it and a
  PostgreSQL refusal names the tables the role may not write;
- `OSError` (a full disk, a file that cannot be read): `error: message`;
- `OverflowError` (an amount beyond an int64 column, in a ledger written before the bounds): `error: storage: …`.
Anything else is our own mistake and keeps its traceback. Usage errors are click's: exit code 2.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click
from eventsourcing.persistence import OperationalError, PersistenceError

from domain.errors import FileRejected, RuleBroken
from ledger.cli.context import Context
from ledger.roles import tables_not_writable
from ledger.storage import DRIVER_ERRORS, waited_too_long


@contextmanager
def refusals(*, quiet: bool = False) -> Iterator[None]:
    """Turn broken rules and storage failures into one clear message and exit code 1 (`quiet`: exit 1
    without the message, when the command has printed its own error already)."""
    refuse = _exit_quietly if quiet else _refuse
    try:
        yield
    except FileRejected as e:
        refuse(str(e))
    except RuleBroken as e:
        refuse(f"error: {e.rule}: {e}")
    except (OperationalError, PersistenceError) as e:
        refuse(f"error: storage: {_storage_reason(e)}")
    except OSError as e:
        refuse(f"error: {e}")
    except OverflowError as e:
        # An amount beyond the int64 columns (the read models, PostgreSQL BIGINT): only a ledger written
        # before the bounds of docs/policy.md can hold one; said in one line rather than a traceback.
        refuse(f"error: storage: {e}: an amount beyond what the database columns hold (docs/policy.md, Bounds)")
    except storage_library_errors() as e:
        refuse(f"error: storage: {_storage_reason(e)}")


class RefusingGroup(click.Group):
    """The root command group: every command under it runs inside `refusals()`, so no command repeats it."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with refusals():
                return super().invoke(ctx)
        except SystemExit:
            if isinstance(ctx.obj, Context):
                ctx.obj.refused = True  # its closing catch-up, if it fails too, adds no second message
            raise


def storage_library_errors() -> tuple[type[Exception], ...]:
    """The storage libraries' own errors, raised outside eventsourcing's wrappers: psycopg from direct
    connections (schema, grants, a read-only role), sqlite3 from the connection pool (a read-only file
    system, a full disk), SQLAlchemy from the read models."""
    # SQLAlchemy is imported here, when an error is being handled, not at start-up: only the commands
    # that use the read models load it (ledger.reports), and an error of its type implies it is loaded.
    from sqlalchemy.exc import SQLAlchemyError

    return (*DRIVER_ERRORS, SQLAlchemyError)


def _refuse(message: str) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(1)


def _exit_quietly(_message: str) -> NoReturn:
    sys.exit(1)


def _storage_reason(e: Exception) -> str:
    """The storage error's first line. When PostgreSQL refused something ("permission denied for
    database/schema/table …", or a bare "pipeline aborted": a statement before it was refused and
    psycopg does not always say which), the reason asked of the database: the ledger tables this role
    may not write, i.e. a SELECT-only auditor's role trying to change the ledger."""
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    ctx = click.get_current_context(silent=True)
    c = ctx.find_object(Context) if ctx is not None else None
    waited = _deadline_reason(reason, c)
    if waited is not None:
        return waited
    if "pipeline aborted" not in reason and "permission denied" not in reason:
        return reason
    if c is None:
        return reason
    try:
        user, tables = tables_not_writable(c.db)
    except (RuleBroken, OSError, OperationalError, PersistenceError, *storage_library_errors()):
        return reason  # the diagnosis is a courtesy: when it fails, the error it explains is the one to report
    if tables:
        return f"permission denied for table {', '.join(tables)}: role {user} may only read this ledger"
    return reason


def _deadline_reason(reason: str, c: Context | None) -> str | None:
    """What a wait that ran out of time waited for (ledger.storage.waited_too_long)."""
    try:
        db = c.db if c is not None else None
    except RuleBroken:  # a URL that does not parse has no settings to quote
        db = None
    return waited_too_long(reason, db)
