"""Issue 13, item 3, attacked on SQLite and PostgreSQL: encryption by default, private files, keyed ids.

Each protection is first switched off to show the attack works (sensitivity), then shown refused:
- a write to a store no `init` made a ledger of (a fresh or mistyped `--db`) used to create a plain-text
  ledger without a word; now it is refused with exit 1 and nothing is created, while the same write
  through `open_apps` (the gate bypassed) still lands in plain text;
- a ledger is plain text only on purpose (`init --plaintext`, stated in its log), and `audit verify`
  says which: encrypted, plain text on purpose, or a legacy plain-text ledger of an earlier release;
- new database and key files are 0600 (with the pre-creation switched off, the umask's 0644);
- the key lives where `$YIKATONG_KEY_FILE` says, for `init` and every command after it;
- a new ledger's person and payment ids are keyed: trying ID numbers recovers none of them (it recovers
  every one from a uuid5 ledger), and they are stable, so a second month-end still pays nobody twice
  (with non-deterministic ids the same month-end pays twice).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID, uuid4

import psycopg
import pytest
from click.testing import Result

from domain.charter import CHARTER_ID
from domain.disbursement import payment_id
from domain.eligibility import person_id
from domain.ids import HMAC_SHA256, UUID5, KeyedIds
from domain.periods import Month
from ledger import storage
from ledger.bootstrap import NoLedgerHere, database_from_url, open_apps, open_service
from ledger.cli import context
from ledger.keys import KEY_ENV, KEY_FILE_ENV, id_key, load_key
from ledger.storage import Database, log_rows
from tests.conftest import PG_ADMIN, POLICY, pg_url
from tests.helpers.ledgers import HEADER, LI, WANG, import_rows, ledger, office_cli, office_yikatong, resident_id

LI_ID, WANG_ID = LI.split(",")[0], WANG.split(",")[0]
MONTHS = ("2017-01", "2017-02", "2017-03")


@pytest.fixture(autouse=True)
def _key_file_of_the_test(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No key leaks in from outside; PostgreSQL ledgers keep their key in the test's folder."""
    for name in (KEY_ENV, KEY_FILE_ENV, "CIPHER_KEY", "CIPHER_TOPIC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "keys" / "ledger.key"))


def cli(url: str, *args: str) -> Result:
    return office_cli(url, *args)


def yikatong(url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real command in a child process (the environment as given, else this process's)."""
    return office_yikatong(url, *args, env=env)


def other_store(db: Database, tmp_path: Path, name: str) -> Database:
    """A second fresh store beside `db` (another file; another schema, dropped with `db`'s)."""
    if db.kind == "sqlite":
        return database_from_url(f"sqlite:///{tmp_path / (name + '.db')}")
    return database_from_url(pg_url(f"{db.env['POSTGRES_SCHEMA']}_{name}"))


def store_exists(db: Database) -> bool:
    if db.kind == "sqlite":
        return Path(db.env["SQLITE_DBNAME"]).exists()
    with psycopg.connect(PG_ADMIN) as conn:
        found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (db.env["POSTGRES_SCHEMA"],))
        return found.fetchone() is not None


def first_states(db: Database) -> Iterator[bytes]:
    """The stored state of every registry event, as the table holds it (read without the cipher)."""
    registry, disbursement = open_apps(database_from_url(db.url))
    try:
        yield from (row.state for row in log_rows(registry.recorder, 1, None, 1000))
    finally:
        registry.close()
        disbursement.close()


def roster(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "roster.csv"
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    return path


def verify_json(url: str) -> dict:
    done = cli(url, "audit", "verify", "--json")
    assert done.exit_code == 0, done.output
    return json.loads(done.output)


# --- writes to a store without a ledger ----------------------------------------------------------------


def test_a_write_through_the_applications_directly_lands_in_plain_text_without_a_word(
    db: Database, policy_text: str
) -> None:
    """Sensitivity: with the gate bypassed (`open_apps`, what every write went through before), loading a
    policy into a fresh store creates a plain-text ledger: the attack the gate stops."""
    assert not store_exists(db) or not storage.holds_events(db)
    registry, disbursement = ledger(db, policy_text)
    registry.close()
    disbursement.close()
    assert storage.holds_events(db)
    states = list(first_states(db))
    assert states and all(bytes(s[:1]) == b"{" for s in states)  # JSON: readable by whoever holds the store
    assert "乌兰察布市".encode() in b"".join(states)


def test_with_the_gate_switched_off_the_same_command_makes_a_plain_text_ledger(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sensitivity of the next test: the CLI's `policy load` on a fresh store, with `check_store` a no-op,
    does what it did before this issue: a plain-text ledger, no key, exit 0."""
    monkeypatch.setattr(context, "check_store", lambda db, writing: None)
    done = cli(db.url, "policy", "load", str(POLICY))
    assert done.exit_code == 0, done.output
    assert storage.holds_events(db) and all(bytes(s[:1]) == b"{" for s in first_states(db))
    assert verify_json(db.url)["protection"]["plaintext"] == "legacy"


@pytest.mark.parametrize(
    "command",
    [
        ("policy", "load", str(POLICY)),
        ("roster", "import", "roster.csv"),
        ("decide", "suspend", LI_ID, "urban_dibao", "--on", "2017-04-01", "--reason", "集民发〔2017〕31号"),
        ("account", "set", LI_ID, "--bank", "103191000012", "--account", "6217002050123456797", "--reason", "x"),
        ("run", "2017-01"),
        ("projections", "rebuild"),
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_a_write_to_a_store_without_a_ledger_is_refused_and_creates_nothing(
    db: Database, tmp_path: Path, command: tuple[str, ...]
) -> None:
    roster(tmp_path, LI)
    refused = cli(db.url, *command)
    assert refused.exit_code == 1, refused.output
    assert refused.output.startswith("error: NoLedgerHere: ") and "run `yikatong init` first" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    assert not store_exists(db), "no database file, no schema: a mistyped --db leaves nothing behind"
    assert not (tmp_path / "keys" / "ledger.key").exists()


def test_the_service_refuses_writes_to_a_store_without_a_ledger_but_opens_one_after_init(db: Database) -> None:
    with pytest.raises(NoLedgerHere):
        open_service(db)
    assert not store_exists(db)
    assert cli(db.url, "init").exit_code == 0
    service = open_service(db)
    try:
        charter = service.charter()
        assert charter is not None and not charter.plaintext and charter.id_scheme == HMAC_SHA256
        assert service.registry.ids.name == HMAC_SHA256 and service.disbursement.ids.name == HMAC_SHA256
    finally:
        service.registry.close()
        service.disbursement.close()


def test_a_read_of_a_missing_sqlite_file_is_refused_without_creating_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'typo.db'}"
    for command in (("batch", "list"), ("audit", "verify"), ("report", "balances")):
        refused = cli(url, *command)
        assert refused.exit_code == 1 and "NoLedgerHere" in refused.output, refused.output
    assert not (tmp_path / "typo.db").exists()


def test_a_legacy_plain_text_ledger_keeps_working_and_verify_says_it_is_unencrypted(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    """A ledger an earlier release wrote without a key (no charter, plain-text events) takes new writes."""
    registry, disbursement = ledger(db, policy_text)
    import_rows(registry, tmp_path, LI, WANG)
    registry.close()
    disbursement.close()
    ran = cli(db.url, "run", "2017-01", "--json")
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.output)["payments"] == 2
    report = verify_json(db.url)
    assert report["ok"] is True
    assert report["protection"] == {
        "ledger_id": None,
        "charter": False,
        "encrypted": False,
        "plaintext": "legacy",
        "id_scheme": UUID5,
    }
    text = cli(db.url, "audit", "verify").output
    assert "no charter (a ledger from an earlier release): personal data NOT encrypted (a legacy plain-text" in text


# --- plain text only on purpose -----------------------------------------------------------------------


def test_init_plaintext_makes_a_plain_text_ledger_on_purpose_stated_in_its_log(db: Database, tmp_path: Path) -> None:
    made = cli(db.url, "init", "--plaintext")
    assert made.exit_code == 0, made.output
    assert "NOT encrypted, on purpose (init --plaintext)" in made.output
    assert not (tmp_path / "keys" / "ledger.key").exists()
    assert cli(db.url, "policy", "load", str(POLICY)).exit_code == 0
    assert cli(db.url, "roster", "import", str(roster(tmp_path, LI))).exit_code == 0
    assert cli(db.url, "run", "2017-01").exit_code == 0
    states = list(first_states(db))
    assert all(bytes(s[:1]) == b"{" for s in states)
    assert b'"plaintext":true' in states[0] and b"LedgerCreated" not in states[0]  # the charter's own payload
    report = verify_json(db.url)
    protection = report["protection"]
    assert protection["charter"] is True and protection["encrypted"] is False
    assert protection["plaintext"] == "on-purpose" and protection["id_scheme"] == UUID5
    UUID(protection["ledger_id"])
    assert "plain text on purpose (init --plaintext, stated in its log)" in cli(db.url, "audit", "verify").output
    # Its ids are uuid5: the ID numbers are in clear in its events anyway (docs/personal-data.md).
    registry, disbursement = open_apps(database_from_url(db.url))
    try:
        assert registry.person(LI_ID).id == person_id(LI_ID)
    finally:
        registry.close()
        disbursement.close()


def test_init_plaintext_is_refused_when_a_key_is_configured_or_the_ledger_is_encrypted(
    db: Database, tmp_path: Path
) -> None:
    key_file = tmp_path / "keys" / "ledger.key"
    key_file.parent.mkdir()
    assert cli(other_store(db, tmp_path, "spare").url, "init").exit_code == 0  # writes a key where this one looks
    assert key_file.exists()
    refused = cli(db.url, "init", "--plaintext")
    assert refused.exit_code == 1 and "PlaintextButKeyConfigured" in refused.output, refused.output
    assert not storage.holds_events(db)
    assert cli(db.url, "init").exit_code == 0
    again = cli(db.url, "init", "--plaintext")
    assert again.exit_code == 1 and "LedgerNotPlaintext" in again.output, again.output


def test_a_ledger_whose_charter_says_encrypted_refuses_writes_without_its_key(db: Database, tmp_path: Path) -> None:
    assert cli(db.url, "init").exit_code == 0
    assert cli(db.url, "policy", "load", str(POLICY)).exit_code == 0  # sensitivity: with its key, writes go in
    before = len(list(first_states(db)))
    key_file = tmp_path / "keys" / "ledger.key"
    key_file.rename(tmp_path / "elsewhere.key")
    refused = cli(db.url, "policy", "load", str(POLICY))
    assert refused.exit_code == 1 and refused.output.startswith("error: LedgerIsEncrypted"), refused.output
    (tmp_path / "elsewhere.key").rename(key_file)
    assert len(list(first_states(db))) == before, "nothing was written"


# --- files: modes and where the key is -----------------------------------------------------------------


def _modes(folder: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir() if p.is_file()}


def test_new_database_and_key_files_are_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_FILE_ENV)  # the key beside the database, as without configuration
    previous = os.umask(0o022)
    try:
        # Sensitivity: without the pre-created 0600 file, SQLite creates the database with the umask's 0644.
        with monkeypatch.context() as patched:
            patched.setattr(storage.sqlite, "create_private_file", lambda path: None)
            loose = tmp_path / "loose"
            loose.mkdir()
            assert cli(f"sqlite:///{loose / 'l.db'}", "init").exit_code == 0
            assert _modes(loose)["l.db"] == 0o644
        folder = tmp_path / "ledger"
        folder.mkdir()
        url = f"sqlite:///{folder / 'l.db'}"
        assert cli(url, "init").exit_code == 0
        registry, disbursement = open_apps(database_from_url(url))  # holds the WAL open while we look
        try:
            registry.load_policy(POLICY.read_text(encoding="utf-8"), "p.toml", "clerk")
            modes = _modes(folder)
        finally:
            registry.close()
            disbursement.close()
    finally:
        os.umask(previous)
    assert {"l.db", "l.db.key", "l.db-wal", "l.db-shm"} <= modes.keys()
    assert all(mode == 0o600 for mode in modes.values()), {k: oct(v) for k, v in modes.items()}


def test_the_key_file_lives_where_yikatong_key_file_says_for_init_and_every_command(
    db: Database, tmp_path: Path
) -> None:
    away = tmp_path / "another-disk" / "ledger.key"
    env = {**os.environ, KEY_FILE_ENV: str(away)}
    steps = [
        ("init",),
        ("policy", "load", str(POLICY)),
        ("roster", "import", str(roster(tmp_path, LI, WANG))),
        ("run", "2017-01"),
        ("account", "set", LI_ID, "--bank", "103191000012", "--account", "6217002050123456797", "--reason", "x"),
        ("audit", "history", LI_ID),
        ("audit", "verify"),
    ]
    for step in steps:
        done = yikatong(db.url, *step, env=env)
        assert done.returncode == 0, (step, done.stderr)
    assert stat.S_IMODE(away.stat().st_mode) == 0o600 and load_key(away)
    beside = [p for p in tmp_path.rglob("*.key") if p != away]
    assert beside == [], "no key beside the database or in the working directory"
    # Sensitivity: the key really came from there: without it the ledger does not open.
    without = {k: v for k, v in env.items() if k != KEY_FILE_ENV}
    refused = yikatong(db.url, "run", "2017-02", env=without)
    assert refused.returncode == 1 and "LedgerIsEncrypted" in refused.stderr, refused.stderr


# --- keyed ids ----------------------------------------------------------------------------------------


def _ids_of(db: Database) -> tuple[set[UUID], set[UUID]]:
    """(person ids, payment ids) as the store holds them."""
    registry, disbursement = open_apps(database_from_url(db.url))
    try:
        rows = log_rows(registry.recorder, 1, None, 10_000)
        persons = {UUID(bytes=r.originator) for r in rows if r.topic.startswith("domain.eligibility:Person.")}
        assert CHARTER_ID in {UUID(bytes=r.originator) for r in rows} or not any("Charter" in r.topic for r in rows)
        payments = {UUID(pid) for batch in disbursement.batches() for pid in batch.payment_ids}
        return persons, payments
    finally:
        registry.close()
        disbursement.close()


def _try_id_numbers(ids: set[UUID], candidates: list[str], schemes: list) -> set[str]:
    """The attack: recompute ids for every candidate ID number under every guessable scheme."""
    found = set()
    for number in candidates:
        for scheme in schemes:
            if scheme.person_id(number) in ids or any(
                scheme.payment_id(number, programme, month) in ids
                for programme in ("urban_dibao", "rural_dibao")
                for month in (*MONTHS, "2017-Q1")
            ):
                found.add(number)
    return found


def _candidates() -> list[str]:
    """What an attacker who knows each payee's county and birth date tries: every serial number."""
    return [resident_id(region, birth, serial) for region, birth in (("152601", "19800101"), ("152621", "19750505"))
            for serial in range(1000)]  # fmt: skip


class _Uuid5:
    person_id = staticmethod(person_id)
    payment_id = staticmethod(payment_id)


def test_ids_of_a_uuid5_ledger_give_away_its_id_numbers_to_anyone_who_tries(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    """Sensitivity: on a ledger without a charter (uuid5 ids) the attack recovers both payees."""
    registry, disbursement = ledger(db, policy_text)
    import_rows(registry, tmp_path, LI, WANG)
    disbursement.run_month_end(registry.read_registry(), Month(2017, 3), scope="150900", actor="clerk")
    registry.close()
    disbursement.close()
    persons, payments = _ids_of(db)
    assert len(persons) == 2 and len(payments) == 4  # Li: January to March; Wang: the first quarter
    assert _try_id_numbers(persons | payments, _candidates(), [_Uuid5]) == {LI_ID, WANG_ID}


def test_a_new_ledgers_ids_are_keyed_and_trying_id_numbers_recovers_none(db: Database, tmp_path: Path) -> None:
    assert cli(db.url, "init").exit_code == 0
    assert cli(db.url, "policy", "load", str(POLICY)).exit_code == 0
    assert cli(db.url, "roster", "import", str(roster(tmp_path, LI, WANG))).exit_code == 0
    assert cli(db.url, "run", "2017-03").exit_code == 0
    persons, payments = _ids_of(db)
    assert len(persons) == 2 and len(payments) == 4
    assert person_id(LI_ID) not in persons and all(p.version == 8 for p in persons | payments)
    # Without the key: uuid5 and HMAC under guessed keys recover nothing.
    guesses = [_Uuid5, KeyedIds(bytes(32)), KeyedIds(id_key("A" * 43 + "="))]
    assert _try_id_numbers(persons | payments, _candidates(), guesses) == set()
    # With the key, they are exactly HMAC-SHA256 of the natural keys under the derived id key.
    key = load_key(tmp_path / "keys" / "ledger.key")
    assert key is not None
    keyed = KeyedIds(id_key(key))
    assert persons == {keyed.person_id(LI_ID), keyed.person_id(WANG_ID)}
    assert keyed.payment_id(LI_ID, "urban_dibao", "2017-02") in payments
    assert _try_id_numbers(persons | payments, _candidates(), [keyed]) == {LI_ID, WANG_ID}


def test_keyed_ids_are_stable_across_commands_and_a_second_month_end_pays_nobody_twice(
    db: Database, tmp_path: Path
) -> None:
    assert cli(db.url, "init").exit_code == 0
    assert cli(db.url, "policy", "load", str(POLICY)).exit_code == 0
    assert cli(db.url, "roster", "import", str(roster(tmp_path, LI, WANG))).exit_code == 0
    # The region's first run covers one county; the whole region's run then meets Li's payments again
    # (no watermark of its own) and the store's primary key refuses them: the ids are the same.
    first = json.loads(cli(db.url, "run", "2017-03", "--region", "150902", "--json").output)
    assert first["payments"] == 3
    second = json.loads(cli(db.url, "run", "2017-03", "--json").output)
    assert (second["payments"], second["already_accrued"]) == (1, 3)
    again = json.loads(cli(db.url, "run", "2017-03", "--json").output)
    assert again["payments"] == 0
    # Later commands find the person by the same keyed id: a decision, an account, the history.
    assert cli(db.url, "roster", "import", str(roster(tmp_path, LI, WANG))).exit_code == 0  # unchanged
    decided = cli(db.url, "decide", "suspend", LI_ID, "urban_dibao", "--on", "2017-05-01", "--reason", "x")
    assert decided.exit_code == 0, decided.output
    moved = cli(db.url, "account", "set", WANG_ID, "--bank", "103191000012", "--account", "6217002050123456797",
                "--reason", "换卡")  # fmt: skip
    assert moved.exit_code == 0, moved.output
    history = json.loads(cli(db.url, "audit", "history", LI_ID, "--json").output)["events"]
    assert [e["event"] for e in history].count("payment_accrued") == 3
    assert [e["event"] for e in history][-1] == "decision"
    after = json.loads(cli(db.url, "run", "2017-06", "--json").output)
    assert after["payments"] == 2  # Li: April only (suspended from May); Wang: the second quarter
    persons, payments = _ids_of(db)
    assert len(persons) == 2 and len(payments) == 6
    report = verify_json(db.url)
    assert report["ok"] is True and report["protection"]["id_scheme"] == HMAC_SHA256
    assert report["protection"]["encrypted"] is True and report["protection"]["plaintext"] is None
    assert json.loads(cli(db.url, "audit", "anomalies", "--json").output)["count"] == 0


def test_with_ids_that_are_not_deterministic_the_same_month_end_pays_twice(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    """Sensitivity of the test above: what makes a second month-end pay nobody twice is that the id is
    a function of the natural key; with random ids the store sees new payments and keeps them."""

    class RandomIds:
        name = "random"

        def person_id(self, id_number: str) -> UUID:
            return uuid4()

        def payment_id(self, id_number: str, programme: str, period: str) -> UUID:
            return uuid4()

    registry, disbursement = ledger(db, policy_text)
    try:
        import_rows(registry, tmp_path, LI)
        disbursement.ids = RandomIds()
        snapshot = registry.read_registry()
        disbursement.run_month_end(snapshot, Month(2017, 3), scope="150902", actor="clerk")
        twice = disbursement.run_month_end(snapshot, Month(2017, 3), scope="150900", actor="clerk")
        assert twice.payments == 3 and twice.already_accrued == 0  # Li paid January to March twice
    finally:
        registry.close()
        disbursement.close()


def test_a_ledger_of_an_earlier_release_keeps_its_uuid5_ids_and_verify_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = Path(__file__).resolve().parent.parent / "fixtures" / "release-88ba6cb"
    folder = tmp_path / "old"
    shutil.copytree(release, folder)
    key_file = folder / "ledger.db.key"
    key_file.chmod(0o600)
    monkeypatch.setenv(KEY_FILE_ENV, str(key_file))
    url = f"sqlite:///{folder / 'ledger.db'}"
    report = verify_json(url)
    assert report["ok"] is True
    assert report["protection"] == {
        "ledger_id": None,
        "charter": False,
        "encrypted": True,
        "plaintext": None,
        "id_scheme": UUID5,
    }
    registry, disbursement = open_apps(database_from_url(url))
    try:
        assert registry.charter() is None and registry.ids.name == UUID5
        id_number = next(iter(registry.read_registry().persons.values())).id_number
        assert registry.person(id_number).id == person_id(id_number)
    finally:
        registry.close()
        disbursement.close()
    assert cli(url, "audit", "history", id_number).exit_code == 0
    ran = cli(url, "run", "2018-01", "--json")
    assert ran.exit_code == 0 and json.loads(ran.output)["payments"] > 0, ran.output
