"""Bank profiles in the ledger (ledger.profiles): add a file's text, approve it as a second person, list,
show the recorded text a checker approves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ledger.cli.context import Context, pass_context
from ledger.cli.output import Grid, render
from ledger.profiles import ProfileChange

PROFILE_HEADINGS = ("名称", "状态", "SHA-256", "登记", "批准", "版本", "说明")


@click.group()
def profile() -> None:
    """One-card bank profiles: registered by content, approved by a second person before use."""


@profile.command("add")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@pass_context
def profile_add(c: Context, file: Path, as_json: bool) -> None:
    """Record FILE's text as a new version of the profile named after it; a second person approves it."""
    changed = c.service().add_profile(file, actor=c.actor)
    v = changed.version
    line = (
        f"profile {changed.name} version {v.sha256} added by {c.actor}: awaits approval by a second person"
        if changed.recorded
        else f"profile {changed.name}: this text ({v.sha256[:16]}…) is already the version in force; nothing recorded"
    )
    render([line], as_json=as_json, data=_change_json(changed))


@profile.command("approve")
@click.argument("name")
@click.option("--sha256", default="", help="the version you reviewed (its SHA-256 or a prefix): refused if another")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def profile_approve(c: Context, name: str, sha256: str, as_json: bool) -> None:
    """Approve the version of NAME awaiting approval: by anyone but the person who added it."""
    changed = c.service().approve_profile(name, actor=c.actor, sha256=sha256)
    render(
        [f"profile {name} version {changed.version.sha256} approved by {c.actor}"],
        as_json=as_json,
        data=_change_json(changed),
    )


@profile.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def profile_list(c: Context, as_json: bool) -> None:
    """Every profile with the version in force, who added and who approved it."""
    rows = c.service().profiles()
    render([Grid(PROFILE_HEADINGS, [_cells(r) for r in rows])], as_json=as_json, data=rows)


@profile.command("show")
@click.argument("name")
@click.option("--sha256", default="", help="a version by its SHA-256 or a prefix (default: the latest)")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def profile_show(c: Context, name: str, sha256: str, as_json: bool) -> None:
    """The recorded text of a profile version: what an approval approves and an export uses."""
    version, text = c.service().profile_text(name, sha256)
    data = {
        "name": name,
        "sha256": version.sha256,
        "source": version.source,
        "added_by": version.added_by,
        "approved_by": version.approved_by,
        "shipped": version.shipped,
        "toml_text": text,
    }
    render([f"# {name} {version.sha256}", text.rstrip("\n")], as_json=as_json, data=data)


def _change_json(changed: ProfileChange) -> dict[str, Any]:
    v = changed.version
    return {
        "name": changed.name,
        "sha256": v.sha256,
        "recorded": changed.recorded,
        "added_by": v.added_by,
        "approved_by": v.approved_by,
        "title": changed.title,
    }


def _cells(r: dict[str, Any]) -> tuple[str, ...]:
    return (
        r["name"],
        r["status"],
        r["sha256"][:16],
        r["added_by"],
        r["approved_by"],
        str(r["versions"]),
        r["title"],
    )
