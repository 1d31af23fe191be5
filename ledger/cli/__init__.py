"""The `yikatong` command (also `python -m ledger`). Contract: ../shared/DESIGN.md, Interfaces.

Exit 0 on success, 1 on a refused command or bad input (one line per problem, naming the rule or the
file line), 2 on usage errors (click's own). A user's file never produces a traceback.

One module per command group: ledger (the day-to-day ledger: init, policy, roster, decide, account, run,
demo), batches, bank, profiles, reports, audit, admin (db, projections), users (login, logout, user), web
(serve). Every command runs inside the one error boundary (errors.py), learns who acts from
`Context.actor` (identity.py: an account after its password) and prints through one helper that writes
either its JSON or its lines and tables (output.py).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import click

from ledger.cli import admin, aid, audit, bank, batches, profiles, recoveries, reports, users, web
from ledger.cli import ledger as day_to_day
from ledger.cli.context import Context
from ledger.cli.errors import RefusingGroup, refusals
from ledger.cli.identity import as_option, password_file_option
from ledger.cli.ledger import read_text as _read_text

__all__ = ["Context", "_read_text", "main", "refusals"]


@click.group(cls=RefusingGroup)
@click.option("--db", "db_url", envvar="YIKATONG_DB", help="sqlite:///PATH (default ./yikatong.db) or postgresql://…")
@as_option
@password_file_option
@click.pass_context
def main(ctx: click.Context, db_url: str | None, claimed_actor: str | None, password_file: Path | None) -> None:
    """yikatong: the 一卡通 disbursement ledger."""
    ctx.obj = Context(db_url, claimed_actor, password_file)
    ctx.call_on_close(partial(_close, ctx.obj))


def _close(c: Context) -> None:
    """When the command has ended, however it ended: the read models follow, the applications close.
    After a refused command, a failure here is that refusal again (a role that may not write the read
    models either): exit 1 without a second message."""
    with refusals(quiet=c.refused):
        c.close()


main.add_command(day_to_day.init)
main.add_command(day_to_day.policy)
main.add_command(day_to_day.roster)
main.add_command(day_to_day.decide)
main.add_command(day_to_day.account)
main.add_command(day_to_day.run)
main.add_command(aid.aid)
main.add_command(day_to_day.demo)
main.add_command(batches.batch)
main.add_command(bank.bank)
main.add_command(profiles.profile)
main.add_command(reports.report)
main.add_command(recoveries.recovery)
main.add_command(audit.audit)
main.add_command(admin.db_group)
main.add_command(admin.projections_group)
main.add_command(users.login)
main.add_command(users.logout)
main.add_command(users.user)
main.add_command(web.serve)
