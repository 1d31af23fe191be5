"""Personal data at rest, on both stores: with a key, no ID number, account number or name is found in
the raw SQLite file (and its WAL) or in a pg_dump of the schema, while the ledger still reads all of it
back; without a key the same search finds them (so the search is real). Plus the key file's rules."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from domain.disbursement import payment_id
from domain.periods import Month
from ledger.anomalies import find_anomalies
from ledger.bootstrap import database_from_url, init_key, open_apps
from ledger.exports import approve_batch, export_batch, import_bank_file
from ledger.history import person_history
from ledger.keys import (
    CIPHER_TOPIC,
    KEY_ENV,
    KEY_FILE_ENV,
    BadKey,
    KeyDoesNotOpenLedger,
    KeyFileExists,
    KeyFileNotPrivate,
    LedgerIsEncrypted,
    StoredEventDamaged,
    check_key,
    create_key,
    env_with_cipher,
    key_path_for,
    load_key,
    new_key,
    with_cipher,
)
from ledger.storage import Database
from tests.conftest import PG_ADMIN
from tests.helpers.anomalies import city, person, roster_row, run

NEW_ACCOUNT = "6217002050123456797"


@pytest.fixture(autouse=True)
def _no_key_from_outside(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test configures its own key; none leaks in from the environment or the working directory."""
    for name in (KEY_ENV, KEY_FILE_ENV, "CIPHER_KEY", "CIPHER_TOPIC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def _keyed(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Database, str]:
    """`db` with a new key file where the ledger looks for it (PostgreSQL: $YIKATONG_KEY_FILE)."""
    if db.kind == "postgres":
        monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "pg.key"))
    key = create_key(key_path_for(db))
    keyed = with_cipher(db)
    assert keyed.env["CIPHER_KEY"] == key and keyed.env["CIPHER_TOPIC"] == CIPHER_TOPIC
    return keyed, key


def _a_months_work(db: Database, policy_text: str, tmp_path: Path) -> tuple[Any, Any, list[Any]]:
    """A generated city, three month-ends, one batch exported, approved and returned, an account corrected."""
    registry, disbursement = open_apps(db)
    registry.load_policy(policy_text, "ulanqab-2017.toml", "clerk")
    rows = city(registry)
    subject = roster_row(person(1), "urban_dibao", members=2, name="李建华")
    registry.import_roster([subject], "extra.csv", "clerk")
    run(registry, disbursement, Month(2017, 1))
    january = payment_id(subject.id_number, "urban_dibao", "2017-01").hex
    batch = disbursement.payment_views([january])[january].batch_id
    export_batch(disbursement, registry.policy(), batch, fmt="pain001", out=tmp_path / "out", actor="maker")
    approve_batch(disbursement, batch, "checker")
    from exporters.pain002 import render_pain002

    message = f"YKT{batch[:28]}"
    result = tmp_path / "result.xml"
    outcomes = [(january, "RJCT", "AC04", 111_000)]
    result.write_bytes(render_pain002(message, message, outcomes, created_at=datetime(2017, 1, 6, tzinfo=UTC)))
    import_bank_file(disbursement, result, actor="clerk")
    registry.set_account(
        id_number=subject.id_number, bank_code="103191000012", account=NEW_ACCOUNT, reason="AC04", actor="clerk"
    )
    run(registry, disbursement, Month(2017, 2), Month(2017, 3))
    return registry, disbursement, [*rows, subject]


def _personal_data(rows: list[Any]) -> list[str]:
    return sorted({v for r in rows for v in (r.id_number, r.account, r.name)} | {NEW_ACCOUNT})


def _raw_store(db: Database) -> bytes:
    """Every byte the store holds: the SQLite file with its WAL, or a pg_dump of the test's schema."""
    if db.kind == "sqlite":
        base = db.env["SQLITE_DBNAME"]
        return b"".join(Path(base + suffix).read_bytes() for suffix in ("", "-wal") if Path(base + suffix).exists())
    schema = db.env["POSTGRES_SCHEMA"]
    if shutil.which("pg_dump"):
        dump = ["pg_dump", "-d", PG_ADMIN, "-n", schema]
        return subprocess.run(dump, check=True, capture_output=True, timeout=120).stdout
    import psycopg  # no pg_dump on PATH: every stored state, as the server prints it

    with psycopg.connect(PG_ADMIN) as conn:
        return b"".join(
            bytes(row[0])
            for table in ("registry_events", "disbursement_events")
            for row in conn.execute(f'SELECT state FROM "{schema}".{table}').fetchall()
        )


def _found(raw: bytes, values: list[str]) -> list[str]:
    """Values present as UTF-8 text, or hex-encoded the way pg_dump prints bytea (\\x…)."""
    return [v for v in values if v.encode() in raw or v.encode().hex().encode() in raw]


def test_with_a_key_no_id_number_account_or_name_is_stored_in_plain_text_and_all_reads_back(
    db: Database, policy_text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyed, key = _keyed(db, tmp_path, monkeypatch)
    registry, disbursement, rows = _a_months_work(keyed, policy_text, tmp_path)
    secrets = _personal_data(rows)
    assert len(secrets) > 100

    assert _found(_raw_store(keyed), [*secrets, key]) == []

    # Everything reads back through the key: the registry fold, balances, payment views, the audit.
    snapshot = registry.read_registry()
    assert {r.id_number for r in snapshot.persons.values()} == {r.id_number for r in rows}
    total = sum(r["accrued_fen"] for r in disbursement.balances().rows())
    assert total > 0
    january = payment_id(rows[-1].id_number, "urban_dibao", "2017-01").hex
    assert disbursement.payment_views([january])[january].account == rows[-1].account
    events = [e["event"] for e in person_history(registry, disbursement, rows[-1].id_number)]
    assert {"registered", "bank_result", "account_changed", "reissued"} <= set(events)
    assert find_anomalies(registry, disbursement) == []
    # The projection runner reads the key from the same database settings.
    from projections.runner import rebuild

    assert rebuild(keyed).position == disbursement.recorder.max_notification_id()
    assert _found(_raw_store(keyed), secrets) == []
    # A second opening, as the next command would, with the key found where the ledger keeps it.
    registry.close()
    disbursement.close()
    again, _ = open_apps(with_cipher(database_from_url(db.url)))
    assert len(again.read_registry().persons) == len(snapshot.persons)
    again.close()


def test_without_a_key_the_same_search_finds_the_personal_data(db: Database, policy_text: str, tmp_path: Path) -> None:
    registry, disbursement, rows = _a_months_work(db, policy_text, tmp_path)
    secrets = _personal_data(rows)
    assert _found(_raw_store(db), secrets) == secrets
    registry.close()
    disbursement.close()


def test_a_wrong_key_or_a_missing_one_is_refused_on_opening(
    db: Database, policy_text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyed, _ = _keyed(db, tmp_path, monkeypatch)
    registry, _ = open_apps(keyed)
    registry.load_policy(policy_text, "ulanqab-2017.toml", "clerk")
    check_key(registry)
    with pytest.raises(KeyDoesNotOpenLedger):
        check_key(open_apps(replace(db, env=env_with_cipher(db.env, new_key())))[0])
    key_path_for(db).unlink()  # the key is lost
    with pytest.raises(LedgerIsEncrypted):
        check_key(open_apps(db)[0])


def test_a_plain_ledger_opened_with_a_key_is_refused(db: Database, policy_text: str) -> None:
    registry, _ = open_apps(db)
    registry.load_policy(policy_text, "ulanqab-2017.toml", "clerk")
    check_key(registry)
    with pytest.raises(KeyDoesNotOpenLedger):
        check_key(open_apps(replace(db, env=env_with_cipher(db.env, new_key())))[0])


# --- the key file -------------------------------------------------------------------------------------------


def test_a_key_file_is_private_never_overwritten_and_checked_when_read(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "ledger.db.key"
    key = create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(path) == key
    with pytest.raises(KeyFileExists):
        create_key(path)
    assert load_key(path) == key
    assert load_key(tmp_path / "absent.key") is None
    path.chmod(0o644)
    with pytest.raises(KeyFileNotPrivate, match="chmod 600"):
        load_key(path)
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key\n")
    garbage.chmod(0o600)
    with pytest.raises(BadKey):
        load_key(garbage)


def test_the_key_lives_beside_the_sqlite_file_or_per_postgres_schema_unless_the_environment_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert key_path_for(database_from_url(f"sqlite:///{tmp_path}/y.db")) == Path(f"{tmp_path}/y.db.key")
    pg = database_from_url("postgresql://postgres@127.0.0.1:5432/test?schema=city")
    assert key_path_for(pg) == Path("yikatong-test-city.key")
    assert key_path_for(database_from_url("postgresql://postgres@127.0.0.1:5432/test")) == Path(
        "yikatong-test-public.key"
    )
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "elsewhere.key"))
    assert key_path_for(pg) == tmp_path / "elsewhere.key"


def test_the_key_in_the_environment_wins_and_with_cipher_is_idempotent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = database_from_url(f"sqlite:///{tmp_path}/y.db")
    assert with_cipher(db) is db  # no key anywhere: plain text, unchanged
    create_key(key_path_for(db))
    from_file = with_cipher(db)
    assert with_cipher(from_file) is from_file
    key = new_key()
    monkeypatch.setenv(KEY_ENV, key)
    assert with_cipher(db).env["CIPHER_KEY"] == key
    monkeypatch.setenv(KEY_ENV, "c2hvcnQ=")
    with pytest.raises(BadKey, match="16, 24 or 32 bytes"):
        with_cipher(db)


def test_init_creates_a_key_for_a_new_ledger_only(tmp_path: Path, policy_text: str) -> None:
    new = database_from_url(f"sqlite:///{tmp_path}/new.db")
    status = init_key(new)
    assert status.created and status.path == key_path_for(new)
    assert stat.S_IMODE(os.stat(key_path_for(new)).st_mode) == 0o600
    assert init_key(new) == replace(status, created=False)

    old = database_from_url(f"sqlite:///{tmp_path}/old.db")
    registry, _ = open_apps(old)
    registry.load_policy(policy_text, "ulanqab-2017.toml", "clerk")
    status = init_key(old)
    assert (status.source, status.created) == ("none", False)
    assert not key_path_for(old).exists()
    assert "plain text" in status.message()


def test_the_cipher_reads_and_writes_eventsourcings_pycryptodome_aes_format_both_ways() -> None:
    from eventsourcing.cipher import AESCipher
    from eventsourcing.utils import Environment

    from ledger.keys import AESGCMCipher

    env = Environment("Registry", {"CIPHER_KEY": new_key()})
    ours, theirs = AESGCMCipher(env), AESCipher(env)
    for size in (0, 1, 620, 70_000):
        plaintext = os.urandom(size)
        assert theirs.decrypt(ours.encrypt(plaintext)) == plaintext
        assert ours.decrypt(theirs.encrypt(plaintext)) == plaintext
    assert ours.encrypt(b"same") != ours.encrypt(b"same")  # a fresh nonce every time
    damaged = bytearray(ours.encrypt(b"x" * 50))
    damaged[30] ^= 1
    with pytest.raises(StoredEventDamaged, match="changed after it was written"):
        ours.decrypt(bytes(damaged))
    with pytest.raises(ValueError):  # what eventsourcing's callers expect of a cipher
        ours.decrypt(bytes(damaged[:20]))
