"""Bank result files: a pain.002 or a profile's return file, applied whole or not at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ledger.cli.context import Context, pass_context
from ledger.cli.output import render
from ledger.exports import BankPreview, ImportOutcome


@click.group()
def bank() -> None:
    """Bank result files."""


@bank.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--profile", default="generic", show_default=True, help="profile of a one-card return file")
@click.option("--json", "as_json", is_flag=True)
@click.option("--dry-run", is_flag=True, help="read and match the file, record nothing")
@pass_context
def bank_import(c: Context, file: Path, profile: str, as_json: bool, dry_run: bool) -> None:
    """Import a pain.002 or a profile's return file (回盘文件): the whole file applies or nothing does.
    --dry-run checks it by the same rules and records nothing (the web's preview)."""
    if dry_run:
        preview = c.service().preview_bank_file(file, actor=c.actor, profile=profile)
        render([_preview_line(file, preview)], as_json=as_json, data=_preview_json(preview))
        return
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


def _preview_line(file: Path, preview: BankPreview) -> str:
    if preview.already_imported:
        return f"{file.name} was imported before: importing it again changes nothing"
    return (
        f"dry run, nothing recorded: {file.name} would mark {preview.paid} paid, {preview.returned} returned "
        f"in {len(preview.batches)} batches"
    )


def _preview_json(preview: BankPreview) -> dict[str, Any]:
    return {
        "dry_run": True,
        "already_imported": preview.already_imported,
        "paid": preview.paid,
        "returned": preview.returned,
        "paid_fen": preview.paid_fen,
        "returned_fen": preview.returned_fen,
        "batches": [b.batch_id for b in preview.batches],
        "results": [
            {"payment_id": x.payment_id, "batch": x.batch_id, "status": x.status, "reason_code": x.reason_code}
            for x in preview.lines
        ],
    }
