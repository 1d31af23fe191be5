"""Auditors: verify the log and the exports (against anchors kept outside the store), write an anchor,
trace one person, find anomalies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from domain.accounts import escaped
from ledger.cli.context import Context, pass_context
from ledger.cli.output import Grid, render
from ledger.history import describe

FINDING_HEADINGS = ("类别", "身份证号", "项目", "期间", "说明")
LOG_HEADINGS = ("记录时间", "账户", "操作", "次数", "日志位置", "说明")


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
@click.option(
    "--anchor",
    "anchors",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="an anchor file (`audit anchor`): the log must still extend it; repeatable",
)
@click.option("--json", "as_json", is_flag=True)
@pass_context
def audit_verify_command(c: Context, exports_dir: Path | None, anchors: tuple[Path, ...], as_json: bool) -> None:
    """Prove the log is intact (and extends each anchor), the read models equal a rebuild, and every export
    regenerates byte-for-byte."""
    result = c.service().verify(exports_dir, anchors)
    render(result.lines(), as_json=as_json, data=result.as_json())
    result.raise_for_failure()  # after the report: a failed audit shows everything it found, then exits 1


@audit.command("anchor")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="the anchor file to write")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def audit_anchor_command(c: Context, out: Path, as_json: bool) -> None:
    """Seal, verify, and write a signed anchor of where both logs end: the auditor's copy each month, and the
    copy attached to the monthly report to the 财政 department (docs/audit.md, "Anchors")."""
    anchor = c.service().anchor(out, actor=c.actor)
    lines = [f"anchor written to {out}: ledger {anchor.ledger_id}, {anchor.anchored_at}, key {anchor.public_key}"]
    lines.extend(
        f"  {t.table}: sealed through position {t.sealed_position}, {t.events} events through position "
        f"{t.position}, chain head {t.chain_sha256}"
        for t in anchor.tables
    )
    render(lines, as_json=as_json, data={"file": str(out), **anchor.as_json()})


@audit.command("history")
@click.argument("id_number")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def audit_history_command(c: Context, id_number: str, as_json: bool) -> None:
    """Every event touching one person, in order of recording, with effective dates (full, unmasked data)."""
    events = c.service().history(id_number)
    data = {"id_number": id_number.strip().upper(), "events": events}
    render((_history_line(e) for e in events), as_json=as_json, data=data)


def _history_line(e: dict[str, Any]) -> str:
    """One line per event, recorded time first: the history reads as a log, at any terminal width."""
    recorded = e["recorded_at"][:19].replace("T", " ")
    effective = f"effective {e['effective_on']}" if e["effective_on"] else ""
    what = f"{e['programme']} {e['period']}  {describe(e)}"
    line = f"{recorded}  {effective:20}  {e['event']:16}  {e['actor']:10}  {what}"
    # Events recorded before names and reasons were checked may hold control characters: shown escaped,
    # never sent raw to the auditor's terminal (domain.accounts.escaped).
    return escaped(line)


@audit.command("anomalies")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def audit_anomalies_command(c: Context, as_json: bool) -> None:
    """Findings the seeds name: 超范围发放, 重复发放, 擅自升降发放标准, shared 一卡通 accounts, two regions."""
    findings = c.service().anomalies()
    table = Grid(FINDING_HEADINGS, [_finding_cells(f) for f in findings], title=f"{len(findings)} findings")
    render([table], as_json=as_json, data={"count": len(findings), "findings": findings})


def _finding_cells(f: dict[str, Any]) -> tuple[str, ...]:
    return (
        f"{f['title_zh']} {f['kind']}",
        "\n".join(f["id_numbers"]),
        ", ".join(f["programmes"]),
        ", ".join(f["periods"]),
        f["detail"],
    )


@audit.command("log")
@click.option("--actor", help="only this account (and failed logins that tried this name)")
@click.option("--access-only", is_flag=True, help="only logins, logouts, failed logins and refusals")
@click.option("--before-registry", type=click.IntRange(min=1), help="start below this registry_events position")
@click.option("--before-disbursement", type=click.IntRange(min=1), help="start below this disbursement_events position")
@click.option("--limit", type=click.IntRange(1, 500), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_context
def audit_log_command(
    c: Context,
    actor: str | None,
    access_only: bool,
    before_registry: int | None,
    before_disbursement: int | None,
    limit: int,
    as_json: bool,
) -> None:
    """操作日志: who did what when, newest first, from the log itself (logins and refusals included); the
    auditor's and the admin's. `next_before` says where the next, earlier page starts."""
    before = {
        name: position
        for name, position in (("registry", before_registry), ("disbursement", before_disbursement))
        if position is not None
    }
    found = c.service().operations(before=before or None, limit=limit, actor=actor, access_only=access_only)
    rows = [op.as_json() for op in found.rows]
    table = Grid(LOG_HEADINGS, [_log_cells(r) for r in rows], title=f"{len(rows)} operations")
    render([table], as_json=as_json, data={"rows": rows, "next_before": found.next_before, "ends": found.ends})


def _log_cells(r: dict[str, Any]) -> tuple[str, ...]:
    fields = dict(r["fields"])
    who = r["actor"] or f"({fields.get('name_tried', '')})"
    where = f"{r['log']} {r['first_position']}" + (
        f"-{r['last_position']}" if r["last_position"] != r["first_position"] else ""
    )
    detail = " ".join(f"{k}={v}" for k, v in fields.items())
    recorded = r["recorded_at"][:19].replace("T", " ")
    return escaped(recorded), escaped(who), r["event"], str(r["count"]), where, escaped(detail)
