"""ledger.anchors and the sealing rule of ledger.service: the signing key's file and record, the anchor's
format and signature, what `audit verify --anchor` refuses, and that every write use case ends sealed."""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from psycopg import sql

from domain.accounts import Identity
from domain.periods import Month
from ledger.anchors import SIGNING_KEY_FILE_ENV, canonical_bytes, read_anchor, verify_against
from ledger.audit import audit_chain_id, verify_log
from ledger.bootstrap import database_from_url, init_ledger, open_apps, open_service
from ledger.cli import main
from ledger.keys import KEY_ENV, with_cipher
from ledger.roles import grant_auditor
from ledger.service import LedgerService
from ledger.storage import Database
from tests.conftest import PG_ADMIN, POLICY, pg_url
from tests.helpers.ledgers import HEADER, LI, WANG, office_cli
from tests.helpers.tamper import (
    all_rows,
    close,
    delete_from,
    edit_payload,
    keys_in,
    payload,
    set_state,
    small_ledger,
    state,
    topic_positions,
)


def yikatong(url: str, *args: str, env: dict[str, str] | None = None) -> Result:
    return office_cli(url, *args, env=env)


@pytest.fixture
def ledger_url(tmp_path: Path) -> Iterator[str]:
    """A new SQLite ledger made by `init` and a policy, keys beside it (no key in the environment)."""
    saved = {name: os.environ.pop(name, None) for name in (KEY_ENV, SIGNING_KEY_FILE_ENV)}
    url = f"sqlite:///{tmp_path / 'l.db'}"
    assert yikatong(url, "init").exit_code == 0
    assert yikatong(url, "policy", "load", str(POLICY)).exit_code == 0
    yield url
    os.environ.update({k: v for k, v in saved.items() if v is not None})


# --- the signing key -------------------------------------------------------------------------------


def test_init_creates_the_signing_key_beside_the_data_key_private_and_records_its_public_half_once(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    first = yikatong(url, "init")
    assert first.exit_code == 0, first.output
    data_key, signing_key = tmp_path / "l.db.key", tmp_path / "l.db.key.sign"
    assert data_key.stat().st_mode & 0o777 == 0o600 and signing_key.stat().st_mode & 0o777 == 0o600
    assert signing_key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert data_key.read_bytes() not in signing_key.read_bytes()
    assert f"created signing key file {signing_key}" in first.output
    assert "public key ed25519:" in first.output and "(recorded in the log now)" in first.output
    again = yikatong(url, "init")
    assert again.exit_code == 0 and "(as the log records)" in again.output
    service = open_service(database_from_url(url))
    assert len(topic_positions(service.registry, "SigningKey.Recorded")) == 1
    public = first.output.split("public key ")[1].split()[0]
    assert public in again.output and public.startswith("ed25519:")
    close(service)


def test_the_signing_key_is_never_the_data_keys_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    refused = yikatong(url, "init", env={SIGNING_KEY_FILE_ENV: str(tmp_path / "l.db.key")})
    assert refused.exit_code == 1
    assert "SigningKeyIsDataKey" in refused.output and "Traceback" not in refused.output
    assert not (tmp_path / "l.db.key.sign").exists()


def test_a_signing_key_file_others_may_read_or_that_holds_no_ed25519_key_is_refused(
    ledger_url: str, tmp_path: Path
) -> None:
    signing_key = tmp_path / "l.db.key.sign"
    signing_key.chmod(0o640)
    loose = yikatong(ledger_url, "audit", "anchor", "--out", str(tmp_path / "a.json"))
    assert loose.exit_code == 1 and "must be 600" in loose.output
    signing_key.chmod(0o600)
    signing_key.write_bytes((tmp_path / "l.db.key").read_bytes())  # the data key's bytes in its place
    wrong = yikatong(ledger_url, "audit", "anchor", "--out", str(tmp_path / "a.json"))
    assert wrong.exit_code == 1 and "BadSigningKey" in wrong.output and "not a PEM Ed25519 private key" in wrong.output


def test_a_key_file_that_is_not_the_key_the_log_records_is_refused_and_a_lost_one_is_not_replaced(
    ledger_url: str, tmp_path: Path
) -> None:
    signing_key = tmp_path / "l.db.key.sign"
    signing_key.rename(tmp_path / "kept.sign")
    lost = yikatong(ledger_url, "init")
    assert lost.exit_code == 1 and "is missing (restore it" in lost.output
    assert not signing_key.exists()  # no new key was made in its place
    other = tmp_path / "other"
    other.mkdir()
    assert yikatong(f"sqlite:///{other / 'o.db'}", "init").exit_code == 0
    (other / "o.db.key.sign").rename(signing_key)  # another ledger's signing key
    for args in (("init",), ("audit", "anchor", "--out", str(tmp_path / "a.json"))):
        refused = yikatong(ledger_url, *args)
        assert refused.exit_code == 1 and "SigningKeyAlreadyRecorded" in refused.output
    assert not (tmp_path / "a.json").exists()


# --- the anchor file -------------------------------------------------------------------------------


def test_an_anchor_is_canonical_json_signed_with_the_key_the_log_records(ledger_url: str, tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    written = yikatong(ledger_url, "audit", "anchor", "--out", str(out), "--json")
    assert written.exit_code == 0, written.output
    text = out.read_bytes()
    document = json.loads(text)
    assert text == canonical_bytes(document) + b"\n"  # sorted keys, no whitespace
    assert set(document["tables"]) == {"registry_events", "disbursement_events"}
    registry = document["tables"]["registry_events"]
    assert {"sealed_position", "events", "chain_sha256", "position", "sealed_chain_sha256"} <= set(registry)
    assert registry["events"] == registry["position"] > registry["sealed_position"] > 0
    signature = base64.b64decode(document.pop("signature"))
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(document["public_key"].removeprefix("ed25519:")))
    public.verify(signature, canonical_bytes(document))  # raises if it does not verify
    assert json.loads(written.output)["signature"] == base64.b64encode(signature).decode()
    init_again = yikatong(ledger_url, "init")
    assert document["public_key"] in init_again.output and document["ledger_id"] in init_again.output
    overwrite = yikatong(ledger_url, "audit", "anchor", "--out", str(out))
    assert overwrite.exit_code == 1 and "never written over another file" in overwrite.output
    assert out.read_bytes() == text


def test_an_edited_anchor_fails_its_signature_and_junk_is_a_one_line_error(ledger_url: str, tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    assert yikatong(ledger_url, "audit", "anchor", "--out", str(out)).exit_code == 0
    assert yikatong(ledger_url, "audit", "verify", "--anchor", str(out)).exit_code == 0
    edited = tmp_path / "edited.json"
    edited.write_text(out.read_text(encoding="utf-8").replace('"anchored_by":"admin"', '"anchored_by":"mallory"'))
    refused = yikatong(ledger_url, "audit", "verify", "--anchor", str(edited))
    assert refused.exit_code == 1
    assert "FAILED: anchor" in refused.output and "signature does not verify" in refused.output
    junk = tmp_path / "junk.json"
    for content in ("not json", '{"format": "yikatong-anchor/1"}', "[]"):
        junk.write_text(content, encoding="utf-8")
        unreadable = yikatong(ledger_url, "audit", "verify", "--anchor", str(junk))
        assert unreadable.exit_code == 1 and "not a yikatong anchor" in unreadable.output
        assert "Traceback" not in unreadable.output and unreadable.output.count("\n") == 1


def test_an_anchor_of_another_ledger_does_not_verify_this_one(ledger_url: str, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    other_url = f"sqlite:///{other / 'o.db'}"
    assert yikatong(other_url, "init").exit_code == 0
    assert yikatong(other_url, "audit", "anchor", "--out", str(other / "a.json")).exit_code == 0
    refused = yikatong(ledger_url, "audit", "verify", "--anchor", str(other / "a.json"), "--json")
    assert refused.exit_code == 1
    (result,) = json.loads(refused.stdout)["anchors"]
    assert result["signature_valid"] and not result["ok"]
    assert any("this ledger's log records" in f for f in result["failures"])
    assert any("is of ledger" in f for f in result["failures"])


def test_no_anchor_is_written_for_a_log_that_does_not_verify(ledger_url: str, tmp_path: Path) -> None:
    service = open_service(database_from_url(ledger_url))
    loaded = topic_positions(service.registry, "PolicyLog.Loaded")[0]
    set_state(service.registry, loaded, state(service.registry, loaded)[:-1] + b"?")
    refused = yikatong(ledger_url, "audit", "anchor", "--out", str(tmp_path / "a.json"))
    assert refused.exit_code == 1
    assert f"registry_events position {loaded}: changed" in refused.output and "never vouches" in refused.output
    assert not (tmp_path / "a.json").exists()
    close(service)


def test_verify_json_keeps_every_key_it_had_and_adds_the_anchors(ledger_url: str, tmp_path: Path) -> None:
    assert yikatong(ledger_url, "audit", "anchor", "--out", str(tmp_path / "a.json")).exit_code == 0
    plain = json.loads(yikatong(ledger_url, "audit", "verify", "--json").stdout)
    anchored = json.loads(
        yikatong(ledger_url, "audit", "verify", "--json", "--anchor", str(tmp_path / "a.json")).stdout
    )
    old_log_keys = {"application", "table", "events", "sealed_position", "checkpoints", "unsealed", "unverifiable"}
    for report in (plain, anchored):
        assert {"ok", "first_failure", "logs", "read_models", "exports", "anchors"} <= set(report)
        assert all(old_log_keys | {"chain_sha256", "failures"} <= set(log) for log in report["logs"])
    assert plain["anchors"] == [] and [a["ok"] for a in anchored["anchors"]] == [True]


# --- what verify finds ------------------------------------------------------------------------------


def test_an_empty_ledger_verifies_and_a_log_with_events_and_no_seal_does_not(db: Database, policy_text: str) -> None:
    service = LedgerService(db, *open_apps(db))  # an empty store: the entry points' gate would refuse it
    assert [verify_log(app).ok for app in (service.registry, service.disbursement)] == [True, True]
    service.registry.load_policy(policy_text, "ulanqab-2017.toml", "clerk")  # around the service: no seal
    report = service.verify()
    assert not report.ok and "registry_events: unsealed: 2 events and no seal" in str(report.first_failure)
    service.seal()
    assert service.verify().ok
    close(service)


def test_a_changed_last_seal_is_named_at_the_seal_not_at_the_event_it_lies_about(
    db: Database, tmp_path: Path, policy_text: str
) -> None:
    """Plain text: a seal whose digest was edited still decodes and claims an intact event changed. With no
    later seal to contradict it, verify alone names the intact event; the anchor proves that event
    unchanged and names the seal."""
    with keys_in(tmp_path, encrypted=False):
        service = small_ledger(db, tmp_path, policy_text, households=2)
        service.anchor(tmp_path / "a.json", actor="admin")
        registry = service.registry
        last_seal = topic_positions(registry, "AuditChain.Sealed")[-1]
        sealed = payload(registry, last_seal)
        digests = bytearray(base64.b64decode(sealed["digests"]))
        digests[0] ^= 0xFF
        edit_payload(registry, last_seal, digests=base64.b64encode(bytes(digests)).decode())

        alone = verify_log(registry)
        assert alone.failure is not None and alone.failure.position == sealed["after_position"] + 1
        logs, (result,) = verify_against(registry, service.disbursement, [read_anchor(tmp_path / "a.json")])
        first = logs[0].failures[0]
        assert (first.position, first.kind) == (last_seal, "checkpoint") and "the seal was changed" in first.detail
        assert not result.ok
        close(service)


def test_the_auditors_select_only_role_verifies_against_an_anchor(
    pg_reachable: None, tmp_path: Path, policy_text: str
) -> None:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    role = f"auditor_{uuid.uuid4().hex[:10]}"
    try:
        with keys_in(tmp_path):
            db = database_from_url(pg_url(schema))
            service = small_ledger(db, tmp_path, policy_text, households=2)
            anchor = tmp_path / "a.json"
            service.anchor(anchor, actor="admin")
            grant_auditor(db, role)
            as_auditor = pg_url(schema, user=role)
            verified = CliRunner().invoke(
                main, ["--db", as_auditor, "--as", "auditor", "audit", "verify", "--anchor", str(anchor)]
            )
            assert verified.exit_code == 0, verified.output
            assert "the log extends it" in verified.output
            delete_from(service.disbursement, topic_positions(service.disbursement, "Batch.Approved")[0])
            failed = CliRunner().invoke(
                main, ["--db", as_auditor, "--as", "auditor", "audit", "verify", "--anchor", str(anchor)]
            )
            assert failed.exit_code == 1 and "(truncated)" in failed.output
            close(service)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


# --- every write use case ends sealed -----------------------------------------------------------------


def _ends_sealed(app: Any) -> bool:
    """Nothing but seals after the last sealed position: no event waits for a later command's seal."""
    chain = str(audit_chain_id(app.name).hex)
    after = [r for r in all_rows(app) if r[0] > verify_log(app).sealed_position]
    return all(str(r[1]).replace("-", "") == chain for r in after)


PASSWORD = "a long enough password"
EXPORTER_PROFILES = Path(__file__).resolve().parents[2] / "exporters" / "profiles"


def _write_use_cases(service: LedgerService, folder: Path, policy_text: str) -> list[tuple[str, Callable[[], Any]]]:
    roster = folder / "r.csv"
    roster.write_text(HEADER + LI + WANG, encoding="utf-8")
    li, wang = LI.split(",")[0], WANG.split(",")[0]
    profile = folder / "branch-0472.toml"
    profile.write_text((EXPORTER_PROFILES / "generic.toml").read_text(encoding="utf-8"), encoding="utf-8")

    def chief() -> Identity:
        return service.authenticate("chief", PASSWORD)

    def batch(status: str) -> str:
        return next(b.id.hex for b in service.batches() if b.programme == "urban_dibao" and b.status == status)

    return [
        ("policy load", lambda: service.load_policy(policy_text, "p.toml", actor="clerk")),
        ("roster import", lambda: service.import_roster(roster, actor="clerk")),
        (
            "decide",
            lambda: service.decide(
                kind="suspend",
                id_number=wang,
                programme="rural_dibao",
                on=Month(2017, 6).day(1),
                actor="clerk",
                reason="x",
                amount_fen=None,
            ),
        ),
        (
            "account set",
            lambda: service.set_account(
                id_number=li, bank_code="102191000031", account="6222020602012345678", reason="换卡", actor="clerk"
            ),
        ),
        ("run", lambda: service.month_end(Month(2017, 1), actor="clerk")),
        (
            "batch export",
            lambda: service.export_batch(batch("drafted"), fmt="pain001", out=folder / "out", actor="clerk"),
        ),
        ("batch approve", lambda: service.approve_batch(batch("exported"), actor="checker")),
        ("batch submit", lambda: service.submit_batch(batch("approved"), actor="clerk")),
        (
            "decide rename",
            lambda: service.rename(
                id_number=li, name="李建國", reason="户籍更正", actor="clerk", on=Month(2017, 2).day(1)
            ),
        ),
        ("profile add", lambda: service.add_profile(profile, actor="clerk")),
        ("profile approve", lambda: service.approve_profile("branch-0472", actor="checker")),
        ("init --admin", lambda: service.create_first_admin("chief", PASSWORD, actor="chief")),
        ("user add", lambda: service.add_account("wu", "clerk", PASSWORD, actor=chief())),
        ("user role", lambda: service.change_role("wu", "checker", actor=chief())),
        ("user passwd", lambda: service.change_password("wu", PASSWORD + "!", actor=chief())),
        ("user disable", lambda: service.disable_account("wu", actor=chief())),
        ("user enable", lambda: service.enable_account("wu", actor=chief())),
    ]


@pytest.mark.parametrize("sealing", ["off", "on"])
def test_every_write_use_case_ends_sealed(
    db: Database, tmp_path: Path, policy_text: str, sealing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if sealing == "off":  # sensitivity: without the rule, the writes leave events unsealed
        monkeypatch.setattr(LedgerService, "seal", lambda self: None)
    init_ledger(with_cipher(db), ledger_id=uuid4(), actor="admin")
    service = open_service(with_cipher(db))
    unsealed = []
    for name, use_case in _write_use_cases(service, tmp_path, policy_text):
        use_case()
        if not all(_ends_sealed(app) for app in (service.registry, service.disbursement)):
            unsealed.append(name)
    if sealing == "on":
        assert unsealed == []
        before = [len(all_rows(app)) for app in (service.registry, service.disbursement)]
        service.load_policy(policy_text, "p.toml", actor="clerk")  # appends nothing: seals nothing either
        assert [len(all_rows(app)) for app in (service.registry, service.disbursement)] == before
    else:
        assert unsealed == [name for name, _ in _write_use_cases(service, tmp_path, policy_text)]
    close(service)
