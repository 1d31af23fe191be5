"""Bank result files: a pain.002 or a profile's return file, applied whole or not at all."""

from __future__ import annotations

from pathlib import Path

import click

from ledger.cli.context import Context, pass_context
from ledger.cli.output import render
from ledger.exports import ImportOutcome


@click.group()
def bank() -> None:
    """Bank result files."""


@bank.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--profile", default="generic", show_default=True, help="profile of a one-card return file")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def bank_import(c: Context, file: Path, profile: str, as_json: bool) -> None:
    """Import a pain.002 or a profile's return file (回盘文件): the whole file applies or nothing does."""
    outcome = c.service().import_bank_file(file, actor=c.actor, profile=profile)
    data = {
        "already_imported": outcome.already_imported,
        "paid": outcome.paid,
        "returned": outcome.returned,
        "batches": outcome.batches,
    }
    render([_outcome_line(file, outcome)], as_json=as_json, data=data)


def _outcome_line(file: Path, outcome: ImportOutcome) -> str:
    if outcome.already_imported:
        return f"{file.name} was imported before: nothing changed"
    return f"{file.name}: {outcome.paid} paid, {outcome.returned} returned, {outcome.batches} batches updated"
