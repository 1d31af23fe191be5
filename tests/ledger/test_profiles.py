"""Bank profiles in the ledger (ledger.profiles), on both stores: versions, names, paths, first use of a
shipped profile, and exports of earlier releases. The attacks are in tests/audit/test_tamper_profiles.py."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from domain.bank_profiles import ProfileAlreadyApproved, ProfileVersionChanged
from domain.disbursement import Batch
from domain.periods import Month
from exporters.onecard import PROFILES_DIR
from ledger.bootstrap import open_apps
from ledger.exports import _record_export, batch_header, payment_rows, render
from ledger.profiles import ProfileNameInvalid, ProfileNameReserved, profile_in_use
from ledger.service import LedgerService
from ledger.storage import Database
from tests.helpers.ledgers import LI, import_rows, ledger

BANK_P = (PROFILES_DIR / "bank-p.toml").read_text(encoding="utf-8")


@pytest.fixture
def service(db: Database, policy_text: str, tmp_path: Path) -> Any:
    registry, disbursement = ledger(db, policy_text)
    import_rows(registry, tmp_path, LI)
    service = LedgerService(db, registry, disbursement)
    service.month_end(Month(2017, 1), actor="clerk")
    yield service
    registry.close()
    disbursement.close()


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_same_text_again_records_nothing_and_a_new_text_is_a_new_version(
    service: LedgerService, tmp_path: Path
) -> None:
    path = write(tmp_path, "branch", BANK_P)
    first = service.add_profile(path, actor="wang")
    assert first.recorded and first.version.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not service.add_profile(path, actor="zhao").recorded
    service.approve_profile("branch", actor="li")
    with pytest.raises(ProfileAlreadyApproved):
        service.approve_profile("branch", actor="zhao")
    second = service.add_profile(
        write(tmp_path / "v2", "branch", BANK_P.replace("P|{count}", "Q|{count}")), actor="wang"
    )
    with pytest.raises(ProfileVersionChanged):
        service.approve_profile("branch", actor="li", sha256=first.version.sha256[:12])
    assert service.approve_profile("branch", actor="li", sha256=second.version.sha256[:12]).version.approved_by == "li"
    (row,) = [r for r in service.profiles() if r["name"] == "branch"]
    assert (row["versions"], row["previous_approved_sha256"]) == (2, first.version.sha256)
    assert service.profile_text("branch", first.version.sha256[:10])[1] == BANK_P


def test_shipped_names_are_reserved_and_names_are_plain(service: LedgerService, tmp_path: Path) -> None:
    with pytest.raises(ProfileNameReserved):
        service.add_profile(write(tmp_path, "generic", BANK_P), actor="wang")
    with pytest.raises(ProfileAlreadyApproved):
        service.approve_profile("bank-p", actor="li")
    with pytest.raises(ProfileNameInvalid):
        service.add_profile(write(tmp_path, "银行", BANK_P), actor="wang")
    assert {r["name"] for r in service.profiles()} == {"generic", "bank-p", "bank-date"}


def test_a_path_is_accepted_when_its_bytes_are_the_approved_version(service: LedgerService, tmp_path: Path) -> None:
    path = write(tmp_path, "branch", BANK_P.replace("P|{count}", "R|{count}"))
    service.add_profile(path, actor="wang")
    service.approve_profile("branch", actor="li")
    batch = service.batches()[0]
    _, (by_path,) = service.export_batch(batch.id.hex, fmt="onecard", out=tmp_path / "a", profile=str(path), actor="w")
    _, (by_name,) = service.export_batch(batch.id.hex, fmt="onecard", out=tmp_path / "b", profile="branch", actor="w")
    assert by_path.sha256 == by_name.sha256
    assert {e.format for e in _exports(service, batch)} == {"onecard:branch"}


def test_two_first_uses_of_a_shipped_profile_at_once_both_record_their_export(
    service: LedgerService, db: Database, tmp_path: Path
) -> None:
    other_registry, other = open_apps(db)
    try:
        batch = service.batches()[0]
        used = profile_in_use(service.disbursement, "generic", actor="wang")  # not recorded yet: pending
        assert used.pending
        stale = other.batch_by_id(batch.id.hex)  # loaded before the other export, as a concurrent process would
        service.export_batch(batch.id.hex, fmt="onecard", out=tmp_path / "first", actor="li")  # records generic
        header = batch_header(service.policy(), batch)
        rows = payment_rows(header, batch, service.disbursement.payment_views(batch.payment_ids))
        files = tuple((n, hashlib.sha256(d).hexdigest()) for n, d in render("onecard", header, rows, used.profile, ""))
        assert stale.exports == []
        recorded = _record_export(other, stale, "onecard:generic", files, used, "generic", "wang")
    finally:
        other_registry.close()
        other.close()
    assert [e.actor for e in _exports(service, recorded)] == ["li", "wang"]
    (generic,) = [r for r in service.profiles() if r["name"] == "generic"]
    assert generic["versions"] == 1 and generic["added_by"] == "li"


def test_an_export_of_an_earlier_release_without_a_profile_hash_verifies_against_the_shipped_profile(
    service: LedgerService, tmp_path: Path
) -> None:
    batch = service.batches()[0]
    header = batch_header(service.policy(), batch)
    rows = payment_rows(header, batch, service.disbursement.payment_views(batch.payment_ids))
    files = render("onecard", header, rows, "bank-p", "")
    batch.record_export(  # as earlier releases recorded it: no profile hash, and no profile in the ledger
        format_name="onecard:bank-p", files=tuple((n, hashlib.sha256(d).hexdigest()) for n, d in files), actor="w"
    )
    service.disbursement.save(batch)
    (event,) = _exports(service, batch)
    assert event.profile_sha256 == ""
    report = service.verify()
    assert report.ok and report.exports.files_regenerated == 1, report.first_failure


def _exports(service: LedgerService, batch: Batch) -> list[Any]:
    return [
        e
        for e in service.disbursement.repository.event_store.get(batch.id)
        if isinstance(e, Batch.Exported)  # type: ignore[attr-defined]
    ]
