"""Recoveries (多发追回) the month-end could not offset: collected by the office, or written off by a
checker who neither ran the month-end that made them nor collected on them (docs/entitlement.md
"Recoveries"). `report recoveries` lists them."""

from __future__ import annotations

import click

from domain.money import format_yuan, parse_yuan
from ledger.cli.context import Context, pass_context
from ledger.cli.output import render
from ledger.recoveries import RecoveryView


@click.group()
def recovery() -> None:
    """Recoveries due (多发追回): collect or write off."""


@recovery.command("collect")
@click.argument("recovery_ref", metavar="RECOVERY")
@click.option("--amount", required=True, help="collected, in yuan; at most what remains")
@click.option("--reason", required=True, help="receipt number, how it was collected")
@click.option("--json", "as_json", is_flag=True, help="the recovery as `report recoveries --json` shows it")
@pass_context
def recovery_collect(c: Context, recovery_ref: str, amount: str, reason: str, as_json: bool) -> None:
    """Record an amount the office collected from the payee (cash or transfer)."""
    changed = c.service().collect_recovery(recovery_ref, amount_fen=parse_yuan(amount), reason=reason, actor=c.actor)
    _show(changed, f"collected {format_yuan(parse_yuan(amount))} 元 by {c.actor}", as_json)


@recovery.command("write-off")
@click.argument("recovery_ref", metavar="RECOVERY")
@click.option("--reason", required=True, help="the decision to write it off")
@click.option("--json", "as_json", is_flag=True, help="the recovery as `report recoveries --json` shows it")
@pass_context
def recovery_write_off(c: Context, recovery_ref: str, reason: str, as_json: bool) -> None:
    """Write off what remains of a recovery: a checker, not whoever made or collected on it."""
    changed = c.service().write_off_recovery(recovery_ref, reason=reason, actor=c.actor)
    _show(changed, f"written off {format_yuan(changed.written_off_fen)} 元 by {c.actor}", as_json)


def _show(changed: RecoveryView, done: str, as_json: bool) -> None:
    line = (
        f"recovery {changed.id[:12]} {changed.id_number} {changed.programme} {changed.period}: {done}; "
        f"remaining {format_yuan(changed.remaining_fen)} 元"
    )
    render([line], as_json=as_json, data=changed.as_json())
