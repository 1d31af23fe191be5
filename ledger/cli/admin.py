"""Administration: database roles and the read models."""

from __future__ import annotations

import json

import click

from ledger.cli.context import Context, pass_context
from ledger.cli.errors import refusals


@click.group("db")
def db_group() -> None:
    """Database administration."""


@db_group.command("grant-auditor")
@click.argument("role")
@pass_context
def db_grant_auditor(c: Context, role: str) -> None:
    """PostgreSQL: create ROLE that can log in and SELECT from the ledger's schema, and nothing else."""
    from ledger.roles import grant_auditor

    with refusals():
        c.authorise()
        for statement in grant_auditor(c.db, role):
            click.echo(statement)
        click.echo(f"role {role}: SELECT only; connect as postgresql://{role}@HOST:PORT/DB")


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

    with refusals():
        c.apps()  # the event tables exist before the read models are built from them
        stats = rebuild(c.db)
        figures = {
            "events": stats.events,
            "position": stats.position,
            "seconds": round(stats.seconds, 2),
            "events_per_s": round(stats.events_per_s),
        }
        if as_json:
            click.echo(json.dumps(figures))
            return
        click.echo(
            f"read models rebuilt: {stats.events} events to position {stats.position} in {stats.seconds:.1f} s "
            f"({stats.events_per_s:,.0f} events/s)"
        )


@projections_group.command("follow")
@click.option("--stop-after", type=float, help="seconds to follow, then exit (default: until interrupted)")
@pass_context
def projections_follow(c: Context, stop_after: float | None) -> None:
    """Keep the read models current as events are recorded (PostgreSQL: LISTEN/NOTIFY; SQLite: polling)."""
    from projections.runner import follow

    with refusals():
        c.apps()
        try:
            stats = follow(c.db, stop_after)
        except KeyboardInterrupt:
            click.echo("stopped", err=True)
            return
        click.echo(f"followed: {stats.events} events, at position {stats.position}")
