"""临时救助 (temporary aid): grant (a clerk), approve above the policy's threshold (a checker, not the
granter), list. The month-end (`run`) pays every payable grant once (docs/entitlement.md, One-off payments)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import click

from domain.money import format_yuan, parse_yuan
from domain.oneoffs import AID_KINDS
from ledger.cli.context import Context, pass_context
from ledger.cli.output import Grid, render

GRANT_HEADINGS = ("救助", "身份证号", "区划", "金额(元)", "日期", "类型", "决定", "阶段", "到账日", "状态", "已入账")


@click.group()
def aid() -> None:
    """临时救助: one-off aid to a household, within the policy's bounds."""


@aid.command("grant")
@click.argument("id_number")
@click.option("--amount", required=True, help="yuan, within the policy's min and max per grant")
@click.option("--reason", required=True, help="why, e.g. the approval document number")
@click.option("--on", "on", type=click.DateTime(["%Y-%m-%d"]), help="the grant's date (default today)")
@click.option("--kind", type=click.Choice(AID_KINDS), default="emergency", show_default=True, help="急难型 or 支出型")
@click.option("--decision", "decision_ref", help="decision reference (default: the reason); stages share it")
@click.option("--stage", default=1, show_default=True, type=int, help="stage under one decision (分阶段救助)")
@click.option("--region", help="division code to pay in (default: the person's enrolment region)")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def aid_grant(
    c: Context,
    id_number: str,
    amount: str,
    reason: str,
    on: datetime | None,
    kind: str,
    decision_ref: str | None,
    stage: int,
    region: str | None,
    as_json: bool,
) -> None:
    """Record one grant; above the policy's `approval_above` it awaits `aid approve` by another account.
    The same grant (ID number, decision, stage) again records nothing."""
    done = c.service().grant_aid(
        id_number=id_number.upper(),
        amount_fen=parse_yuan(amount),
        reason=reason,
        on=on.date() if on else date.today(),
        kind=kind,
        decision_ref=decision_ref,
        stage=stage,
        region=region,
        actor=c.actor,
    )
    g = done.grant
    verb = "recorded" if done.recorded else "already recorded: nothing new"
    line = (
        f"grant {g.grant_id.hex[:12]} {verb}: {format_yuan(g.amount_fen)} 元 to {g.id_number} on "
        f"{g.granted_on.isoformat()}, {g.state}"
    )
    render([line], as_json=as_json, data={**g.as_json(), "recorded": done.recorded})


@aid.command("approve")
@click.argument("grant_ref", metavar="GRANT")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def aid_approve(c: Context, grant_ref: str, as_json: bool) -> None:
    """Approve a grant above the policy's threshold (a checker, not the account that granted it)."""
    g = c.service().approve_aid(grant_ref, actor=c.actor)
    render([f"grant {g.grant_id.hex[:12]} approved by {g.approved_by}: payable"], as_json=as_json, data=g.as_json())


@aid.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def aid_list(c: Context, as_json: bool) -> None:
    """Every grant with its state and whether a month-end has accrued it."""
    rows = c.service().grants()
    table = Grid(GRANT_HEADINGS, [_cells(r) for r in rows], right=frozenset({"金额(元)", "阶段"}))
    render([table], as_json=as_json, data=rows)


def _cells(r: dict[str, Any]) -> tuple[str, ...]:
    return (
        r["grant"][:12],
        r["id_number"],
        r["region"],
        format_yuan(r["amount_fen"]),
        r["on"],
        r["kind"],
        r["decision"],
        str(r["stage"]),
        r["due_date"],
        r["state"],
        "yes" if r["accrued"] else "no",
    )
