"""Auditors: verify the log and the exports, trace one person, find anomalies."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ledger.cli.context import Context, pass_context
from ledger.cli.errors import refusals


@click.group()
def audit() -> None:
    """Auditors: verify the log and the exports, trace a person, find anomalies."""


@audit.command("verify")
@click.option(
    "--exports",
    "exports_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="also check the exported files found in this folder against their recorded SHA-256",
)
@click.option("--json", "as_json", is_flag=True)
@pass_context
def audit_verify_command(c: Context, exports_dir: Path | None, as_json: bool) -> None:
    """Prove the log is intact, the read models equal a rebuild, and every export regenerates byte-for-byte."""
    from ledger.audit import audit_verify

    with refusals():
        registry, disbursement = c.apps()
        result = audit_verify(c.db, registry, disbursement, exports_dir)
        if as_json:
            click.echo(json.dumps(result.as_json(), ensure_ascii=False))
        else:
            for line in result.lines():
                click.echo(line)
        result.raise_for_failure()


@audit.command("history")
@click.argument("id_number")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def audit_history_command(c: Context, id_number: str, as_json: bool) -> None:
    """Every event touching one person, in order of recording, with effective dates (full, unmasked data)."""
    from ledger.history import describe, person_history

    with refusals():
        registry, disbursement = c.apps()
        events = person_history(registry, disbursement, id_number)
        if as_json:
            click.echo(json.dumps({"id_number": id_number.strip().upper(), "events": events}, ensure_ascii=False))
            return
        # One line per event, recorded time first: the history reads as a log, at any terminal width.
        for e in events:
            recorded = e["recorded_at"][:19].replace("T", " ")
            effective = f"effective {e['effective_on']}" if e["effective_on"] else ""
            click.echo(
                f"{recorded}  {effective:20}  {e['event']:16}  {e['actor']:10}  "
                f"{e['programme']} {e['period']}  {describe(e)}"
            )


@audit.command("anomalies")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def audit_anomalies_command(c: Context, as_json: bool) -> None:
    """Findings the seeds name: 超范围发放, 重复发放, 擅自升降发放标准, shared 一卡通 accounts, two regions."""
    from ledger.anomalies import find_anomalies

    with refusals():
        registry, disbursement = c.apps()
        findings = find_anomalies(registry, disbursement)
        if as_json:
            click.echo(json.dumps({"count": len(findings), "findings": findings}, ensure_ascii=False))
            return
        table = Table(title=f"{len(findings)} findings")
        for heading in ("类别", "身份证号", "项目", "期间", "说明"):
            table.add_column(heading)
        for f in findings:
            table.add_row(
                f"{f['title_zh']} {f['kind']}",
                "\n".join(f["id_numbers"]),
                ", ".join(f["programmes"]),
                ", ".join(f["periods"]),
                f["detail"],
            )
        Console().print(table)
