"""The attacker's tools for the tamper suites (tests/audit): raw access to the event tables, as someone
holding the database and its key would have, on either store; and a small anchored ledger to attack.

Nothing here goes through the application's rules: that is the point.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteDatastore

from domain.periods import Month
from ledger.anchors import SIGNING_KEY_FILE_ENV
from ledger.audit import DIGEST_BYTES, AuditChain, audit_chain_id, genesis_sha256, log_row_sha256
from ledger.bootstrap import init_ledger, open_service
from ledger.keys import KEY_ENV, new_key
from ledger.service import LedgerService
from ledger.storage import Database, log_rows, originator_rows
from tests.helpers.ledgers import HEADER, LI, WANG, resident_id, row

ROW_COLUMNS = "originator_id, originator_version, topic, state"
Row = tuple[Any, ...]  # (notification id, originator id as the driver holds it, version, topic, state)


@contextmanager
def keys_in(folder: Path, *, encrypted: bool = True) -> Iterator[None]:
    """A data key ($YIKATONG_KEY; none when not `encrypted`) and a signing key file in `folder`, for
    in-process and CLI use alike."""
    saved = {name: os.environ.get(name) for name in (KEY_ENV, SIGNING_KEY_FILE_ENV)}
    if encrypted:
        os.environ[KEY_ENV] = new_key()
    else:
        os.environ.pop(KEY_ENV, None)
    os.environ[SIGNING_KEY_FILE_ENV] = str(folder / "ledger.sign")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def small_ledger(
    db: Database, folder: Path, policy_text: str, households: int = 6, anchor_before_roster: Path | None = None
) -> LedgerService:
    """init (signing key), policy, a roster, January's month-end, one batch exported, approved, submitted:
    every step through the service, so every step ends sealed. `anchor_before_roster`: an anchor written
    there after the policy is loaded."""
    init_ledger(db, ledger_id=uuid4(), actor="admin")  # charter and signing key, as `init` records them
    service = open_service(db)
    service.load_policy(policy_text, "ulanqab-2017.toml", actor="clerk")
    if anchor_before_roster is not None:
        service.anchor(anchor_before_roster, actor="admin")
    roster = folder / "roster.csv"
    extra = [row(resident_id("150902", "19600101", n), "urban_dibao", members=2) for n in range(10, 10 + households)]
    roster.write_text(HEADER + LI + WANG + "".join(extra), encoding="utf-8")
    service.import_roster(roster, actor="clerk")
    service.month_end(Month(2017, 1), actor="clerk")
    urban = next(b for b in service.batches() if b.programme == "urban_dibao")
    service.export_batch(urban.id.hex, fmt="pain001", out=folder / "out", actor="clerk")
    service.approve_batch(urban.id.hex, actor="checker")
    service.submit_batch(urban.id.hex, actor="clerk")
    return service


def close(service: LedgerService) -> None:
    service.registry.close()
    service.disbursement.close()


# --- raw SQL on one application's events table -----------------------------------------------------------


def sql(app: Any, sqlite: str, postgres: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """One statement on `app`'s events table (`{table}` in the text), committed; rows as tuples."""
    datastore = app.recorder.datastore
    table = app.recorder.events_table_name
    if isinstance(datastore, SQLiteDatastore):
        with datastore.transaction(commit=True) as c:
            c.execute(sqlite.format(table=table), tuple(params))
            return [tuple(r) for r in c.fetchall()]
    with datastore.transaction(commit=True) as curs:
        curs.execute(postgres.format(table=f'"{datastore.schema}"."{table}"'), tuple(params))
        if not curs.description:
            return []
        return [tuple(r.values()) if isinstance(r, dict) else tuple(r) for r in curs.fetchall()]


def all_rows(app: Any) -> list[Row]:
    return sql(
        app,
        f"SELECT rowid, {ROW_COLUMNS} FROM {{table}} ORDER BY rowid",
        f"SELECT notification_id, {ROW_COLUMNS} FROM {{table}} ORDER BY notification_id",
    )


def positions(app: Any) -> list[int]:
    return [r[0] for r in all_rows(app)]


def state(app: Any, position: int) -> bytes:
    (found,) = sql(
        app,
        "SELECT state FROM {table} WHERE rowid = ?",
        "SELECT state FROM {table} WHERE notification_id = %s",
        (position,),
    )
    return bytes(found[0])


def set_state(app: Any, position: int, new_state: bytes) -> None:
    sql(
        app,
        "UPDATE {table} SET state = ? WHERE rowid = ?",
        "UPDATE {table} SET state = %s WHERE notification_id = %s",
        (new_state, position),
    )


def set_column(app: Any, position: int, column: str, value: Any) -> None:
    """Change one column of a stored event: `topic`, `originator_version` or `originator_id`."""
    assert column in ("topic", "originator_version", "originator_id")
    if column == "originator_id":
        value = value.hex if isinstance(app.recorder.datastore, SQLiteDatastore) else value
    sql(
        app,
        f"UPDATE {{table}} SET {column} = ? WHERE rowid = ?",
        f"UPDATE {{table}} SET {column} = %s WHERE notification_id = %s",
        (value, position),
    )


def new_originator() -> UUID:
    return uuid4()


def delete(app: Any, position: int) -> None:
    sql(
        app,
        "DELETE FROM {table} WHERE rowid = ?",
        "DELETE FROM {table} WHERE notification_id = %s",
        (position,),
    )


def delete_from(app: Any, position: int) -> None:
    """Truncate: every event at `position` and after."""
    sql(
        app,
        "DELETE FROM {table} WHERE rowid >= ?",
        "DELETE FROM {table} WHERE notification_id >= %s",
        (position,),
    )


def restore(app: Any, rows: Sequence[Row]) -> None:
    """Put `rows` back exactly as they were (ids included), in one transaction: undoes any edit above."""
    datastore = app.recorder.datastore
    table = app.recorder.events_table_name
    ids = [(r[0],) for r in rows]
    if isinstance(datastore, SQLiteDatastore):
        with datastore.transaction(commit=True) as c:
            c.executemany(f"DELETE FROM {table} WHERE rowid = ?", ids)
            c.executemany(f"INSERT INTO {table} (rowid, {ROW_COLUMNS}) VALUES (?, ?, ?, ?, ?)", rows)
        return
    target = f'"{datastore.schema}"."{table}"'
    with datastore.transaction(commit=True) as curs:
        curs.executemany(f"DELETE FROM {target} WHERE notification_id = %s", ids)
        curs.executemany(
            f"INSERT INTO {target} (notification_id, {ROW_COLUMNS}) VALUES (%s, %s, %s, %s, %s)", list(rows)
        )


def chain_positions(app: Any) -> list[int]:
    """Where the application's AuditChain events (its seals) are stored."""
    return [n for n, _version, _topic, _state in originator_rows(app.recorder, audit_chain_id(app.name))]


def topic_positions(app: Any, suffix: str) -> list[int]:
    return [r[0] for r in all_rows(app) if str(r[3]).endswith(suffix)]


def delete_every_seal(app: Any) -> None:
    for position in chain_positions(app):
        delete(app, position)


def edit_payload(app: Any, position: int, **fields: Any) -> None:
    """Decrypt a stored event with the key, change fields of its JSON, re-encrypt, UPDATE: what someone
    holding the database and the key beside it can do."""
    cipher = app.mapper.cipher
    raw = state(app, position)
    data = json.loads(cipher.decrypt(raw) if cipher else raw)
    data.update(fields)
    plain = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    set_state(app, position, cipher.encrypt(plain) if cipher else plain)


def payload(app: Any, position: int) -> dict[str, Any]:
    cipher = app.mapper.cipher
    raw = state(app, position)
    return json.loads(cipher.decrypt(raw) if cipher else raw)  # type: ignore[no-any-return]


def reseal_in_place(app: Any) -> None:
    """Forge the seals over the log as it is now, each in its own row (no id goes missing): the chain and
    every digest are recomputed, and each `Sealed` event that no longer matches is re-encoded with the key.
    Only an anchor kept outside the store can tell."""
    chain_id = audit_chain_id(app.name)
    current = {r.id: r for r in log_rows(app.recorder, 1, None, 1_000_000)}
    chain = genesis_sha256(app.name)
    for notification_id, version, topic, stored_state in originator_rows(app.recorder, chain_id):
        if version == 1:
            continue  # Started: nothing in it depends on the events
        sealed = app.mapper.to_domain_event(StoredEvent(chain_id, version, topic, bytes(stored_state)))
        digests = bytearray()
        for position in range(sealed.after_position + 1, sealed.position + 1):
            if position in current:
                digest = log_row_sha256(current[position])
                chain = hashlib.sha256(chain + digest).digest()
                digests += digest[:DIGEST_BYTES]
        if (sealed.chain_sha256, base64.b64decode(sealed.digests)) == (chain.hex(), bytes(digests)):
            continue  # before the rewrite: left as it is (re-encrypting would change its bytes for nothing)
        forged = AuditChain.Sealed(  # type: ignore[attr-defined]
            originator_id=chain_id,
            originator_version=version,
            timestamp=sealed.timestamp,
            after_position=sealed.after_position,
            position=sealed.position,
            events=sealed.events,
            skipped=sealed.skipped,
            digests=base64.b64encode(bytes(digests)).decode(),
            chain_sha256=chain.hex(),
            events_max=sealed.events_max,
        )
        new_state = app.mapper.to_stored_event(forged).state
        set_state(app, notification_id, new_state)
        current[notification_id] = current[notification_id]._replace(state=new_state)
