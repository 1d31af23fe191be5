"""Batches of payments: list, export, approve (maker-checker) and submit to the bank."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from domain.disbursement import ADJUSTMENTS, Batch
from domain.money import format_yuan
from domain.periods import Month
from ledger.cli.context import Context, pass_context
from ledger.cli.output import Grid, render
from ledger.service import LedgerService
from ledger.views import batch_row

BATCH_HEADINGS = ("批次", "区划", "项目", "期间", "月结", "笔数", "金额(元)", "状态")


@click.group()
def batch() -> None:
    """Batches of payments."""


@batch.command("list")
@click.option("--month", help="only batches of this run month (YYYY-MM)")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def batch_list(c: Context, month: str | None, as_json: bool) -> None:
    """Batches with their count, total and status."""
    if month:
        Month.parse(month)
    rows = [batch_row(b) for b in c.service().batches(month)]
    table = Grid(BATCH_HEADINGS, [_batch_cells(r) for r in rows], right=frozenset({"笔数", "金额(元)"}))
    render([table], as_json=as_json, data=rows)


def _batch_cells(r: dict[str, Any]) -> tuple[str, ...]:
    return (
        r["id"][:12],
        r["region"],
        r["programme"],
        r["period"] + (" 补差" if r["kind"] == ADJUSTMENTS else ""),
        r["run_month"],
        str(r["payments"]),
        format_yuan(r["total_fen"]),
        r["status"],
    )


@batch.command("export")
@click.argument("batch_ref", metavar="BATCH")
@click.option("--format", "fmt", required=True, type=click.Choice(["onecard", "pain001", "xlsx", "notice"]))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path), help="folder")
@click.option(
    "--profile",
    default="generic",
    show_default=True,
    help="one-card bank profile (onecard format): a shipped one or one approved in the ledger (`profile list`)",
)
@click.option("--force", is_flag=True, help="replace files of the same name with other bytes (not once approved)")
@click.option(
    "--pain-version",
    "version",
    default="001.001.09",
    show_default=True,
    type=click.Choice(["001.001.09", "001.001.03"]),
)
@click.option("--json", "as_json", is_flag=True)
@pass_context
def batch_export(
    c: Context, batch_ref: str, fmt: str, out: Path, profile: str, force: bool, version: str, as_json: bool
) -> None:
    """Write a batch's bank file, roster or public notice; the export is recorded with its SHA-256.
    A file already there with other bytes is not overwritten unless --force (refused once approved)."""
    exported, files = c.service().export_batch(
        batch_ref, fmt=fmt, out=out, profile=profile, version=version, actor=c.actor, force=force
    )
    lines = [
        *(f"{f.path}  sha256 {f.sha256}" + ("  (already there, same bytes)" if f.unchanged else "") for f in files),
        f"batch {exported.id.hex[:12]}: {exported.count} payments, {format_yuan(exported.total_fen)} 元, "
        f"{exported.status}",
    ]
    data = {
        "batch": exported.id.hex,
        "format": fmt,
        "files": [{"path": str(f.path), "sha256": f.sha256, "bytes": f.size, "unchanged": f.unchanged} for f in files],
    }
    render(lines, as_json=as_json, data=data, escape_non_ascii=True)


@batch.command("approve")
@click.argument("batch_ref", metavar="BATCH")
@click.option("--json", "as_json", is_flag=True, help="the approved batch as `batch list --json` shows it")
@pass_context
def batch_approve(c: Context, batch_ref: str, as_json: bool) -> None:
    """Approve an exported batch: by anyone but the person who exported it. Approval freezes it."""
    _batch_step(c, batch_ref, as_json, LedgerService.approve_batch, "approved")


@batch.command("submit")
@click.argument("batch_ref", metavar="BATCH")
@click.option("--json", "as_json", is_flag=True, help="the submitted batch as `batch list --json` shows it")
@pass_context
def batch_submit(c: Context, batch_ref: str, as_json: bool) -> None:
    """Mark an approved batch as handed to the bank."""
    _batch_step(c, batch_ref, as_json, LedgerService.submit_batch, "submitted")


def _batch_step(c: Context, batch_ref: str, as_json: bool, step: Callable[..., Batch], done: str) -> None:
    changed = step(c.service(), batch_ref, actor=c.actor)
    render([f"batch {changed.id.hex[:12]} {done} by {c.actor}"], as_json=as_json, data=batch_row(changed))
