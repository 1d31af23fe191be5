"""Attacks on bank profiles and exported files (issue 13, items 4 and 6), on SQLite and PostgreSQL.

Each protection is first switched off to show the attack succeeds (sensitivity), then shown to refuse it:
- a profile whose detail template hard-codes an account redirects the money and verifies clean, unless
  the template rule (exporters.onecard.check_money_columns) refuses it at `profile add` and at every load;
- a profile approved by the person who added it (maker-checker);
- an export with a profile nobody approved;
- a profile file edited on disk after approval: exports and verify use the text the ledger recorded;
- every `Exported` event records the profile's SHA-256;
- an exported file overwritten silently; `--force` after approval.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import exporters.onecard as onecard
from domain.bank_profiles import BankProfile, ProfileApproverMustDifferFromAdder, ProfileNotApproved
from domain.disbursement import Batch
from domain.periods import Month
from exporters.onecard import PROFILES_DIR, load_profile, render_onecard
from ledger.exports import (
    ApprovedBatchFilesAreKept,
    ExportWouldOverwrite,
    batch_header,
    payment_rows,
    write_atomically,
)
from ledger.profiles import ProfileRejected, UnknownProfile
from ledger.service import LedgerService
from ledger.storage import Database
from tests.conftest import POLICY
from tests.helpers.ledgers import HEADER, LI, WANG, import_rows, ledger, new_ledger

THIEF_ACCOUNT = "6217000000009999"
LI_ACCOUNT = "6228480045001122337"
BANK_P = (PROFILES_DIR / "bank-p.toml").read_text(encoding="utf-8")
BANK_P_DETAIL = '"{serial}|{account}|{name}|{amount_yuan}|{payment_id}|"'
# The payee's account pushed to a column the bank ignores; the account column is the thief's.
HARD_CODED = BANK_P.replace(
    BANK_P_DETAIL, f'"{{serial}}|{THIEF_ACCOUNT}|{{name}}|{{amount_yuan}}|{{payment_id}}|{{account}}|"'
)


def detail_line_number(text: str) -> int:
    """The line of `detail = …` under [batch_file] in a profile's text."""
    lines = text.splitlines()
    start = lines.index("[batch_file]")
    return next(n for n, line in enumerate(lines, start=1) if n > start and line.startswith("detail"))


@pytest.fixture
def service(db: Database, policy_text: str, tmp_path: Path) -> Any:
    """A ledger with January run: an urban dibao batch (李建华) and a rural one, both drafted."""
    registry, disbursement = ledger(db, policy_text)
    import_rows(registry, tmp_path, LI, WANG)
    service = LedgerService(db, registry, disbursement)
    service.month_end(Month(2017, 1), actor="clerk")
    yield service
    registry.close()
    disbursement.close()


def urban(service: LedgerService) -> Batch:
    (found,) = [b for b in service.batches() if b.programme == "urban_dibao"]
    return found


def profile_file(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def positions(service: LedgerService) -> tuple[int, int]:
    return (
        service.registry.recorder.max_notification_id() or 0,
        service.disbursement.recorder.max_notification_id() or 0,
    )


def exported_events(service: LedgerService, batch: Batch) -> list[Any]:
    events = service.disbursement.repository.event_store.get(batch.id)
    return [e for e in events if isinstance(e, Batch.Exported)]  # type: ignore[attr-defined]


def columns(path: Path) -> list[list[str]]:
    """The detail lines of a bank-p style file, split into columns."""
    lines = path.read_bytes().decode("gb18030").split("\r\n")
    return [line.split("|") for line in lines[1:-2]]  # header, details, trailer, the final line ending


# --- a hard-coded account ------------------------------------------------------------------------------


def test_a_hard_coded_account_redirects_the_money_and_verifies_clean_when_the_template_rule_is_off(
    service: LedgerService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onecard, "check_money_columns", lambda _profile, _problems: None)
    path = profile_file(tmp_path / "profiles", "branch-0472", HARD_CODED)
    service.add_profile(path, actor="wang")
    service.approve_profile("branch-0472", actor="li")  # a second name approves: maker-checker is satisfied
    batch = urban(service)
    _, (written,) = service.export_batch(
        batch.id.hex, fmt="onecard", out=tmp_path / "out", profile="branch-0472", actor="wang"
    )
    service.approve_batch(batch.id.hex, actor="li")
    (line,) = columns(written.path)
    assert line[1] == THIEF_ACCOUNT and line[5] == LI_ACCOUNT  # the bank pays the account column: the thief's
    report = service.verify(tmp_path / "out")
    assert report.ok, report.first_failure  # the attack of the issue: approved, verified, nothing found

    # With the rule on, the same text recorded in the ledger is refused at its next use and by verify.
    monkeypatch.undo()
    before = positions(service)
    with pytest.raises(ProfileRejected) as refused:
        service.export_batch(batch.id.hex, fmt="onecard", out=tmp_path / "again", profile="branch-0472", actor="wang")
    assert refused.value.broken == "LiteralCouldCarryAccount"
    assert positions(service) == before and not (tmp_path / "again").exists()
    found = service.verify(tmp_path / "out")
    assert not found.ok
    assert "its profile branch-0472 is refused today: LiteralCouldCarryAccount" in str(found.first_failure)


def test_a_profile_that_hard_codes_an_account_is_refused_at_add_naming_line_key_and_rule(
    service: LedgerService, tmp_path: Path
) -> None:
    before = positions(service)
    path = profile_file(tmp_path / "profiles", "branch-0472", HARD_CODED)
    with pytest.raises(ProfileRejected) as refused:
        service.add_profile(path, actor="wang")
    line = detail_line_number(HARD_CODED)
    assert refused.value.broken == "LiteralCouldCarryAccount"
    assert (
        f"{path} line {line}: batch_file.detail: LiteralCouldCarryAccount: column 2 is literal text "
        f"'{THIEF_ACCOUNT}' with 16 digits" in str(refused.value)
    )
    assert positions(service) == before  # nothing recorded
    with pytest.raises(UnknownProfile):
        service.export_batch(urban(service).id.hex, fmt="onecard", out=tmp_path / "o", profile="branch-0472", actor="x")


@pytest.mark.parametrize(
    ("detail", "rule"),
    [
        ('"{serial}|62{account}|{name}|{amount_yuan}|{payment_id}|"', "LiteralCouldCarryAccount"),
        ('"{serial}|{payer_account}|{name}|{amount_yuan}|{payment_id}|{account}|"', "AccountNotFromPayment"),
        ('"{serial}|{account}|{name}|1{amount_yuan}|{payment_id}|"', "LiteralCouldCarryAccount"),
        ('"{serial}|{account}|{name}|{amount_yuan:.1}|{payment_id}|"', "FormatSpecCouldAlterValue"),
        ('"{serial:9>19}|{account}|{name}|{amount_yuan}|{payment_id}|"', "FormatSpecCouldAlterValue"),
        ('"{date:6217000000009999}|{account}|{name}|{amount_yuan}|{payment_id}|"', "LiteralCouldCarryAccount"),
        ('"{serial}|{account}|{name}|{amount_yuan}|{amount_fen}|{payment_id}|"', "AmountNotFromPayment"),
        ('"{serial}|{account}|{name}|{amount_yuan}|{batch_total_yuan}|{payment_id}|"', "ProfileInvalid"),
        (
            '"{serial}|６２１７００００００００９９９９|{name}|{amount_yuan}|{payment_id}|{account}|"',
            "LiteralCouldCarryAccount",
        ),
        ('"{serial}|6217 0000 0000 9999|{name}|{amount_yuan}|{payment_id}|{account}|"', "LiteralCouldCarryAccount"),
        ('"{serial}|{acct}|{name}|{amount_yuan}|{payment_id}|{account}|"', "ProfileInvalid"),  # unknown placeholder
    ],
)
def test_every_way_of_writing_an_account_or_amount_from_elsewhere_is_refused(
    service: LedgerService, tmp_path: Path, detail: str, rule: str
) -> None:
    path = profile_file(tmp_path, "branch", BANK_P.replace(BANK_P_DETAIL, detail))
    before = positions(service)
    with pytest.raises(ProfileRejected) as refused:
        service.add_profile(path, actor="wang")
    assert refused.value.broken == rule, str(refused.value)
    assert positions(service) == before


# --- maker-checker -----------------------------------------------------------------------------------


def test_a_profile_approved_by_the_person_who_added_it_is_refused(
    service: LedgerService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = urban(service)
    path = profile_file(tmp_path, "branch-a", BANK_P.replace("P|{count}", "A|{count}"))
    service.add_profile(path, actor="wang")

    # Sensitivity: without the maker-checker rule one person adds, approves and uses their own profile.
    def approve_unchecked(self: BankProfile, *, actor: str, sha256: str = "") -> Any:
        assert self.current is not None
        self._approved(sha256=self.current.sha256, actor=actor)
        return self.current

    with monkeypatch.context() as off:
        off.setattr(BankProfile, "approve", approve_unchecked)
        service.add_profile(
            profile_file(tmp_path / "b", "branch-b", BANK_P.replace("P|{count}", "B|{count}")), actor="wang"
        )
        service.approve_profile("branch-b", actor="wang")
        service.export_batch(batch.id.hex, fmt="onecard", out=tmp_path / "b-out", profile="branch-b", actor="wang")

    before = positions(service)
    with pytest.raises(ProfileApproverMustDifferFromAdder):
        service.approve_profile("branch-a", actor="wang")
    assert positions(service) == before
    with pytest.raises(ProfileNotApproved):
        service.export_batch(batch.id.hex, fmt="onecard", out=tmp_path / "a-out", profile="branch-a", actor="wang")
    assert service.approve_profile("branch-a", actor="li").version.approved_by == "li"
    rows = {r["name"]: r for r in service.profiles()}
    assert (rows["branch-a"]["added_by"], rows["branch-a"]["approved_by"], rows["branch-a"]["status"]) == (
        "wang",
        "li",
        "approved",
    )


def test_an_export_or_import_with_an_unapproved_profile_is_refused(
    service: LedgerService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = urban(service)
    path = profile_file(tmp_path, "branch-u", BANK_P.replace("P|{count}", "U|{count}"))
    service.add_profile(path, actor="wang")

    # Sensitivity: were the version in force not required to be approved, the export would go out.
    with monkeypatch.context() as off:
        off.setattr(BankProfile, "in_force", lambda self: self.current)
        service.export_batch(batch.id.hex, fmt="onecard", out=tmp_path / "off", profile="branch-u", actor="wang")

    before = positions(service)
    with pytest.raises(ProfileNotApproved, match="awaits approval by a second person"):
        service.export_batch(batch.id.hex, fmt="onecard", out=tmp_path / "on", profile="branch-u", actor="wang")
    with pytest.raises(ProfileNotApproved):  # by path too: the file's bytes are not an approved version
        service.export_batch(batch.id.hex, fmt="onecard", out=tmp_path / "on", profile=str(path), actor="wang")
    return_file = tmp_path / "back.txt"
    return_file.write_bytes(b"P|1|810.00|\r\n########\r\n")
    with pytest.raises(ProfileNotApproved):
        service.import_bank_file(return_file, actor="wang", profile="branch-u")
    with pytest.raises(UnknownProfile):
        service.export_batch(batch.id.hex, fmt="onecard", out=tmp_path / "on", profile="nowhere", actor="wang")
    assert positions(service) == before and not (tmp_path / "on").exists()

    # A new version withdraws the approved one until it is approved in turn.
    service.approve_profile("branch-u", actor="li")
    service.export_batch(batch.id.hex, fmt="onecard", out=tmp_path / "ok", profile="branch-u", actor="wang")
    service.add_profile(
        profile_file(tmp_path / "v2", "branch-u", BANK_P.replace("P|{count}", "V|{count}")), actor="wang"
    )
    with pytest.raises(ProfileNotApproved):
        service.export_batch(batch.id.hex, fmt="onecard", out=tmp_path / "v2-out", profile="branch-u", actor="wang")


# --- content from the ledger ----------------------------------------------------------------------------


def test_a_profile_file_changed_on_disk_after_approval_changes_neither_exports_nor_verify(
    service: LedgerService, tmp_path: Path
) -> None:
    batch = urban(service)
    path = profile_file(tmp_path / "profiles", "branch-0472", BANK_P.replace("P|{count}", "Q|{count}"))
    service.add_profile(path, actor="wang")
    service.approve_profile("branch-0472", actor="li")
    _, (first,) = service.export_batch(
        batch.id.hex, fmt="onecard", out=tmp_path / "out", profile="branch-0472", actor="wang"
    )
    approved_bytes = first.path.read_bytes()

    path.write_text(BANK_P.replace("P|{count}", "Z|{count}"), encoding="utf-8")  # edited after approval
    # Sensitivity: a profile read from the file, as profiles were before, gives other bytes.
    header = batch_header(service.policy(), batch)
    rows = payment_rows(header, batch, service.disbursement.payment_views(batch.payment_ids))
    ((_, from_disk),) = render_onecard(header, rows, load_profile(str(path)))
    assert from_disk != approved_bytes

    _, (again,) = service.export_batch(
        batch.id.hex, fmt="onecard", out=tmp_path / "again", profile="branch-0472", actor="wang"
    )
    assert again.path.read_bytes() == approved_bytes  # the ledger's text, not the file's
    with pytest.raises(ProfileNotApproved, match="is not the approved version"):
        service.export_batch(batch.id.hex, fmt="onecard", out=tmp_path / "path", profile=str(path), actor="wang")
    path.unlink()  # verify needs no file at all: the text is in the ledger
    report = service.verify(tmp_path / "out")
    assert report.ok, report.first_failure
    assert report.exports.files_regenerated == 2 and report.exports.files_on_disk == 1


def test_every_export_records_its_profile_hash_and_the_ledger_holds_that_text(
    service: LedgerService, tmp_path: Path
) -> None:
    batch = urban(service)
    path = profile_file(tmp_path, "branch-h", BANK_P.replace("P|{count}", "H|{count}"))
    service.add_profile(path, actor="wang")
    service.approve_profile("branch-h", actor="li")
    service.export_batch(batch.id.hex, fmt="onecard", out=tmp_path / "h", profile="branch-h", actor="wang")
    service.export_batch(batch.id.hex, fmt="onecard", out=tmp_path / "g", actor="wang")  # shipped generic
    service.export_batch(batch.id.hex, fmt="pain001", out=tmp_path / "p", actor="wang")
    recorded = [(e.format, e.profile_sha256) for e in exported_events(service, batch)]
    generic_sha = hashlib.sha256((PROFILES_DIR / "generic.toml").read_bytes()).hexdigest()
    assert recorded == [
        ("onecard:branch-h", hashlib.sha256(path.read_bytes()).hexdigest()),
        ("onecard:generic", generic_sha),
        ("pain.001.001.09", ""),
    ]
    # The shipped profile's text was recorded with its first use, approved by the release.
    generic = {r["name"]: r for r in service.profiles()}["generic"]
    assert (generic["sha256"], generic["status"], generic["added_by"]) == (generic_sha, "shipped", "wang")
    version, text = service.profile_text("generic")
    assert text.encode() == (PROFILES_DIR / "generic.toml").read_bytes() and version.approved_by == "release"
    assert service.verify().ok


# --- exported files are never silently overwritten ----------------------------------------------------


def test_an_exported_file_is_not_overwritten_without_force_and_force_is_refused_once_approved(
    service: LedgerService, tmp_path: Path
) -> None:
    batch, out = urban(service), tmp_path / "out"
    _, (first,) = service.export_batch(batch.id.hex, fmt="onecard", out=out, actor="wang")
    exports_before = len(exported_events(service, batch))
    hand_edited = first.path.read_bytes().replace(b"810.00", b"910.00")

    # Sensitivity: the writer without the no-overwrite rule replaces whatever is there.
    first.path.write_bytes(hand_edited)
    write_atomically(out, first.path.name, b"replaced")
    assert first.path.read_bytes() == b"replaced"

    first.path.write_bytes(hand_edited)
    with pytest.raises(ExportWouldOverwrite) as refused:
        service.export_batch(batch.id.hex, fmt="onecard", out=out, actor="wang")
    assert str(first.path) in str(refused.value)
    assert first.path.read_bytes() == hand_edited and len(exported_events(service, batch)) == exports_before
    with pytest.raises(ExportWouldOverwrite):  # a file that appears between the check and the rename
        write_atomically(out, first.path.name, b"other bytes", replace=False)
    assert first.path.read_bytes() == hand_edited and not list(out.glob(".*"))

    _, (forced,) = service.export_batch(batch.id.hex, fmt="onecard", out=out, actor="wang", force=True)
    assert forced.path.read_bytes() != hand_edited and forced.sha256 == first.sha256
    _, (same,) = service.export_batch(batch.id.hex, fmt="onecard", out=out, actor="wang")
    assert same.unchanged  # the very same bytes are there: nothing is overwritten, the export is recorded

    service.approve_batch(batch.id.hex, actor="li")
    with pytest.raises(ApprovedBatchFilesAreKept):
        service.export_batch(batch.id.hex, fmt="onecard", out=out, actor="wang", force=True)
    with pytest.raises(ApprovedBatchFilesAreKept):
        service.export_batch(batch.id.hex, fmt="onecard", out=tmp_path / "elsewhere", actor="wang", force=True)
    assert forced.path.read_bytes() == first.path.read_bytes()


# --- the command line ----------------------------------------------------------------------------------


def yikatong(url: str, actor: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "YIKATONG_KEY_FILE": str(cwd / "ledger.key")}
    env.pop("YIKATONG_ROLES", None)
    return subprocess.run(
        [sys.executable, "-m", "ledger", "--db", url, "--as", actor, *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def test_the_command_line_refuses_each_attack_with_exit_1_naming_file_line_and_rule(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = db.url if db.kind == "postgres" else f"sqlite:///{tmp_path / 'cli.db'}"
    roster = tmp_path / "r.csv"
    roster.write_text(HEADER + LI, encoding="utf-8")
    monkeypatch.setenv("YIKATONG_KEY_FILE", str(tmp_path / "ledger.key"))  # where `yikatong` below looks
    new_ledger(url)
    for step in (("policy", "load", str(POLICY)), ("roster", "import", str(roster)), ("run", "2017-01")):
        done = yikatong(url, "clerk", tmp_path, *step)
        assert done.returncode == 0, done.stderr
    (batch,) = json.loads(yikatong(url, "clerk", tmp_path, "batch", "list", "--json").stdout)

    evil = profile_file(tmp_path / "profiles", "branch-0472", HARD_CODED)
    refused = yikatong(url, "wang", tmp_path, "profile", "add", str(evil))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"branch-0472.toml line {detail_line_number(HARD_CODED)}: batch_file.detail: LiteralCouldCarryAccount" in (
        refused.stderr
    )

    good = profile_file(tmp_path / "profiles", "branch-0473", BANK_P.replace("P|{count}", "G|{count}"))
    added = json.loads(yikatong(url, "wang", tmp_path, "profile", "add", str(good), "--json").stdout)
    assert added["sha256"] == hashlib.sha256(good.read_bytes()).hexdigest() and added["recorded"]
    export = ["batch", "export", batch["id"], "--format", "onecard", "--profile", "branch-0473", "--out"]
    unapproved = yikatong(url, "wang", tmp_path, *export, str(tmp_path / "out"))
    assert unapproved.returncode == 1 and "ProfileNotApproved" in unapproved.stderr
    self_approval = yikatong(url, "wang", tmp_path, "profile", "approve", "branch-0473")
    assert self_approval.returncode == 1 and "ProfileApproverMustDifferFromAdder" in self_approval.stderr
    approved = yikatong(url, "li", tmp_path, "profile", "approve", "branch-0473", "--sha256", added["sha256"][:12])
    assert approved.returncode == 0, approved.stderr
    listed = {r["name"]: r for r in json.loads(yikatong(url, "zhao", tmp_path, "profile", "list", "--json").stdout)}
    assert listed["branch-0473"]["status"] == "approved" and listed["generic"]["status"] == "shipped, not used yet"

    exported = yikatong(url, "wang", tmp_path, *export, str(tmp_path / "out"), "--json")
    assert exported.returncode == 0, exported.stderr
    (file,) = json.loads(exported.stdout)["files"]
    Path(file["path"]).write_bytes(b"edited by hand")
    again = yikatong(url, "wang", tmp_path, *export, str(tmp_path / "out"))
    assert again.returncode == 1 and "ExportWouldOverwrite" in again.stderr and file["path"] in again.stderr
    forced = yikatong(url, "wang", tmp_path, *export, str(tmp_path / "out"), "--force")
    assert forced.returncode == 0, forced.stderr
    assert yikatong(url, "li", tmp_path, "batch", "approve", batch["id"]).returncode == 0
    after = yikatong(url, "wang", tmp_path, *export, str(tmp_path / "out"), "--force")
    assert after.returncode == 1 and "ApprovedBatchFilesAreKept" in after.stderr
    verified = yikatong(url, "auditor", tmp_path, "audit", "verify", "--exports", str(tmp_path / "out"))
    assert verified.returncode == 0 and "verified" in verified.stdout, verified.stdout + verified.stderr
