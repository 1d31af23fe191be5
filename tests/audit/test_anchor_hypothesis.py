"""Hypothesis (issue 13, "Done when"): random single-byte edits of a stored state, row edits (topic,
originator version, originator id), deletions and truncations of a sealed, anchored ledger are every one
detected, at the right position: the first failure reported for the attacked table is at the edited or
deleted position, or for a truncation at the first position cut off; the other table stays intact.

One small encrypted ledger is built once per store (SQLite and PostgreSQL), and a plain-text one on SQLite
(where a changed byte in a seal often still decodes, as a false claim), EXAMPLES examples each; each
example changes it with raw SQL, verifies it against the anchor (ledger.anchors.verify_against, what
`audit verify --anchor` runs), then puts the changed rows back exactly (ids included) and checks that the
table is as it was, so every example starts from the same sealed ledger.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.anchors import Anchor, read_anchor, verify_against
from ledger.bootstrap import database_from_url
from ledger.service import LedgerService
from tests.conftest import PG_ADMIN, POLICY, pg_url
from tests.helpers.tamper import (
    Row,
    all_rows,
    close,
    delete,
    delete_from,
    keys_in,
    restore,
    set_column,
    set_state,
    small_ledger,
)

EXAMPLES = int(os.environ.get("YIKATONG_HYPOTHESIS_EXAMPLES", "200"))  # per store
ATTACKS = ("byte", "byte", "byte", "topic", "version", "originator", "delete", "truncate")  # byte edits weighted


@dataclass
class Sealed:
    service: LedgerService
    anchor: Anchor
    rows: dict[str, list[Row]]  # table → every stored row when anchored

    def app(self, table: str) -> Any:
        return next(
            a for a in (self.service.registry, self.service.disbursement) if a.recorder.events_table_name == table
        )


@pytest.fixture(scope="module", params=["sqlite", "postgres", "sqlite-plaintext"])
def sealed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sealed]:
    folder = tmp_path_factory.mktemp(f"anchored-{request.param}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    if request.param == "postgres":
        request.getfixturevalue("pg_reachable")
        url = pg_url(schema)
    else:
        url = f"sqlite:///{folder / 'ledger.db'}"
    with keys_in(folder, encrypted=request.param != "sqlite-plaintext"):
        service = small_ledger(database_from_url(url), folder, POLICY.read_text(encoding="utf-8"), households=3)
        service.anchor(folder / "anchor.json", actor="admin")
        apps = (service.registry, service.disbursement)
        rows = {app.recorder.events_table_name: all_rows(app) for app in apps}  # type: ignore[attr-defined]
        yield Sealed(service, read_anchor(folder / "anchor.json"), rows)
        close(service)
    if request.param == "postgres":
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_the_untouched_ledger_extends_its_anchor(sealed: Sealed) -> None:
    logs, results = verify_against(sealed.service.registry, sealed.service.disbursement, [sealed.anchor])
    assert [log.failures for log in logs] == [(), ()]
    assert [r.ok for r in results] == [True]
    assert all(len(rows) >= 10 for rows in sealed.rows.values()), {t: len(r) for t, r in sealed.rows.items()}


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_edit_deletion_and_truncation_is_detected_at_its_position(sealed: Sealed, data: st.DataObject) -> None:
    table = data.draw(st.sampled_from(sorted(sealed.rows)), label="table")
    app = sealed.app(table)
    rows = sealed.rows[table]
    index = data.draw(st.integers(0, len(rows) - 1), label="row")
    target = rows[index]
    position = target[0]
    attack = data.draw(st.sampled_from(ATTACKS), label="attack")
    changed = rows[index:] if attack == "truncate" else [target]
    try:
        _attack(app, attack, target, data)
        logs, results = verify_against(sealed.service.registry, sealed.service.disbursement, [sealed.anchor])
    finally:
        restore(app, changed)
    assert all_rows(app) == rows  # the next example starts from the same ledger

    attacked = next(log for log in logs if log.table == table)
    assert attacked.failures, f"{attack} at {table} position {position} not detected"
    first = attacked.failures[0]
    assert first.position == position, f"{attack} at {position}: first failure {first}"
    assert all(not log.failures for log in logs if log.table != table)
    assert not results[0].ok


def _attack(app: Any, attack: str, target: Row, data: st.DataObject) -> None:
    position, _originator, version, topic, state = target
    if attack == "byte":
        state = bytes(state)
        at = data.draw(st.integers(0, len(state) - 1), label="byte")
        flip = data.draw(st.integers(1, 255), label="xor")
        set_state(app, position, state[:at] + bytes([state[at] ^ flip]) + state[at + 1 :])
    elif attack == "topic":
        set_column(app, position, "topic", topic + "X")
    elif attack == "version":
        set_column(app, position, "originator_version", version + 1000)
    elif attack == "originator":
        set_column(app, position, "originator_id", uuid.uuid4())
    elif attack == "delete":
        delete(app, position)
    else:
        delete_from(app, position)


def test_the_attacks_are_exercised_on_every_kind_of_row(sealed: Sealed) -> None:
    """The rows attacked include ordinary events, the signing key, and seals inside and after the sealed
    range (the anchor's own tail), so the examples above reach every kind of evidence."""
    registry_rows = sealed.rows["registry_events"]
    topics = {str(r[3]).rsplit(":", 1)[-1] for r in registry_rows}
    assert {"SigningKey.Recorded", "AuditChain.Started", "AuditChain.Sealed", "Person.Registered"} <= topics
    tail = next(t for t in sealed.anchor.tables if t.table == "registry_events").tail
    assert tail and all(str(r[3]).endswith("AuditChain.Sealed") for r in registry_rows if r[0] in dict(tail))
    assert Path(sealed.anchor.source).exists()
