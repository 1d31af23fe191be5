"""Administration: database roles and the read models.

`projections.runner` is imported inside the commands that use it, not at start-up: it loads SQLAlchemy
and the read models (~0.2 s), which the other commands do not need.
"""

from __future__ import annotations

import click

from ledger.cli.context import Context, pass_context
from ledger.cli.output import Line, render
from ledger.roles import APP_ROLE, AUDITOR_ROLE, OWNER_ROLE, grant_auditor, setup_database


@click.group("db")
def db_group() -> None:
    """Database administration."""


@db_group.command("grant-auditor")
@click.argument("role")
@pass_context
def db_grant_auditor(c: Context, role: str) -> None:
    """PostgreSQL: create ROLE that can log in and SELECT from the ledger's schema, and nothing else."""
    c.authorise()
    statements = grant_auditor(c.db, role)
    render([*statements, f"role {role}: SELECT only; connect as postgresql://{role}@HOST:PORT/DB"])


@db_group.command("setup")
@click.option("--owner", default=OWNER_ROLE, show_default=True, help="owns the schema and event tables (NOLOGIN)")
@click.option("--app", default=APP_ROLE, show_default=True, help="the role the ledger connects as")
@click.option("--auditor", default=AUDITOR_ROLE, show_default=True, help="SELECT only")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def db_setup(c: Context, owner: str, app: str, auditor: str, as_json: bool) -> None:
    """PostgreSQL, as a superuser: the owner, application and auditor roles, the event tables owned by
    the owner with a trigger refusing UPDATE, DELETE and TRUNCATE, and the grants (docs/deploy.md)."""
    c.authorise()
    result = setup_database(c.db, owner, app, auditor)
    done = result.setup
    data = {
        "schema": done.schema,
        "owner": owner,
        "app": app,
        "auditor": auditor,
        "created_roles": done.created_roles,
        "event_tables": done.tables,
        "read_models": done.read_models,
        "statements": done.statements,
        "app_url": result.app_url,
        "auditor_url": result.auditor_url,
    }
    created = ", ".join(done.created_roles) or "none (all three existed)"
    lines = [
        *done.statements,
        f"roles created: {created}",
        f"schema {done.schema} and event tables {', '.join(done.tables)}: owned by {owner} (NOLOGIN; migrations only)",
        "stored events are append-only: UPDATE, DELETE and TRUNCATE are refused to every role but the owner",
        f"application: {result.app_url}",
        f"auditor:     {result.auditor_url}",
        "set the two roles' passwords or pg_hba.conf entries; nobody logs in as the owner",
    ]
    render(lines, as_json=as_json, data=data)


# --- projections ------------------------------------------------------------------------------------


@click.group("projections")
def projections_group() -> None:
    """Read models built from the event log (docs/projections.md)."""


@projections_group.command("rebuild")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def projections_rebuild(c: Context, as_json: bool) -> None:
    """Drop the read models and rebuild them from the first event."""
    from projections.runner import rebuild

    c.apps()  # the event tables exist before the read models are built from them
    stats = rebuild(c.db)
    figures = {
        "events": stats.events,
        "position": stats.position,
        "seconds": round(stats.seconds, 2),
        "events_per_s": round(stats.events_per_s),
    }
    line = (
        f"read models rebuilt: {stats.events} events to position {stats.position} in {stats.seconds:.1f} s "
        f"({stats.events_per_s:,.0f} events/s)"
    )
    render([line], as_json=as_json, data=figures)


@projections_group.command("follow")
@click.option("--stop-after", type=float, help="seconds to follow, then exit (default: until interrupted)")
@pass_context
def projections_follow(c: Context, stop_after: float | None) -> None:
    """Keep the read models current as events are recorded (PostgreSQL: LISTEN/NOTIFY; SQLite: polling)."""
    from projections.runner import follow

    c.apps()
    try:
        stats = follow(c.db, stop_after)
    except KeyboardInterrupt:  # the way to stop following: the read models are as far as they got
        render([Line("stopped", err=True)])
        return
    render([f"followed: {stats.events} events, at position {stats.position}"])
