"""Bank profiles in the ledger: registered by content, approved by a second person, used by hash.

Which log: the disbursement log. A profile lays out the bank files of batches and reads the bank's
return files, and both of those are recorded in the disbursement log (`Batch.Exported`,
`BankFile.Imported`); keeping the profile's text in the same log means
- the first use of a shipped profile is recorded in the same transaction as the export or import that
  used it (a refused import leaves the log as it was, the shipped text is never recorded without use);
- `audit verify` regenerates every export from the disbursement log alone (the policy apart), finding
  the profile text by the SHA-256 the `Exported` event records;
- the registry log stays what it is: the people and the rules that decide what they are owed.

Rules (issue 13, item 4; DESIGN.md "Identity, roles and integrity"):
- `add_profile` checks the file completely (exporters.onecard: keys, templates, and where the money
  goes) before anything is recorded; a refused file names its line, key and rule and records nothing.
  The name is the file's name without `.toml`. Shipped names (generic, bank-p, bank-date) are reserved:
  they are the reviewed files of `exporters/profiles/`.
- `approve_profile` approves the version awaiting approval, by anyone but who added it.
- `profile_in_use` is the only way an export or an import gets a profile: a shipped name gives the
  shipped text (recorded with the use when the ledger does not hold it yet); any other name gives the
  ledger's version in force, which must be approved; a path to a `.toml` file is accepted only when its
  bytes are that approved version (the text used is the ledger's, never the file's).
- Every recorded text is checked again whenever it is loaded, so a text recorded before a rule existed
  is refused at use and reported by verify.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventsourcing.persistence import IntegrityError

from domain.bank_profiles import (
    PROFILE_REGISTER_ID,
    BankProfile,
    ProfileAlreadyApproved,
    ProfileNotApproved,
    ProfileRegister,
    ProfileVersion,
    bank_profile_id,
)
from domain.errors import FileRejected, RuleBroken
from exporters.onecard import PROFILE_BYTES_MAX, Profile, profile_from_bytes, profile_names, shipped_profile_bytes
from exporters.rows import ExportRefused
from ledger.apps import ConcurrentChange
from ledger.disbursement import Disbursement

PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
PROFILES_MAX = 1_000  # profile names one ledger may hold (a province's branches stay well below)


class ProfileRejected(FileRejected):
    """A profile file broke one or more rules (its lines name the file, line, key and rule); nothing recorded.
    `broken` is the first rule broken (`ProfileInvalid`, `AccountNotFromPayment`, `LiteralCouldCarryAccount`…)."""

    def __init__(self, errors: list[str], message: str, broken: str = "ProfileInvalid") -> None:
        super().__init__(errors, message)
        self.broken = broken


class UnknownProfile(RuleBroken):
    """No profile of that name is shipped or recorded in the ledger."""


class ProfileNameReserved(RuleBroken):
    """generic, bank-p and bank-date are the shipped profiles: a registered profile takes another name."""


class ProfileNameInvalid(RuleBroken):
    """A profile's name (its file name without .toml) is letters, digits, '.', '_' and '-', at most 64."""


class TooManyProfiles(RuleBroken):
    """A ledger holds at most PROFILES_MAX profile names."""


@dataclass(frozen=True, slots=True)
class ProfileInUse:
    """A checked profile ready to lay out or read a file, the SHA-256 of its text, and what to save with
    the export or import that uses it (the first use of a shipped profile)."""

    profile: Profile
    sha256: str
    pending: tuple[Any, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class ProfileChange:
    """What `profile add` or `profile approve` did."""

    name: str
    version: ProfileVersion
    recorded: bool  # False: the same text was already in force, nothing new recorded
    title: str = ""


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_path(ref: str) -> bool:
    return ref.endswith(".toml") or "/" in ref or "\\" in ref


# --- recording --------------------------------------------------------------------------------------


def read_profile_file(path: Path) -> bytes:
    """A profile file's bytes, refused (naming the file) when missing or larger than PROFILE_BYTES_MAX."""
    try:
        size = path.stat().st_size
        if size > PROFILE_BYTES_MAX:
            raise ProfileRejected([f"{path}: larger than {PROFILE_BYTES_MAX} bytes"], f"{path}: too large")
        return path.read_bytes()
    except FileNotFoundError:
        raise UnknownProfile(f"{path}: no such profile file") from None


def add_profile(disbursement: Disbursement, data: bytes, source: str, *, actor: str) -> ProfileChange:
    """Record a profile file's text as a new version awaiting approval (or nothing, if already in force)."""
    name = Path(source).name.removesuffix(".toml")
    if not PROFILE_NAME.fullmatch(name):
        raise ProfileNameInvalid(f"{source}: profile name {name!r}: use letters, digits, '.', '_' and '-' (≤ 64)")
    if name in profile_names():
        raise ProfileNameReserved(
            f"{source}: {name} is a shipped profile (exporters/profiles/{name}.toml); give yours another name"
        )
    profile = _checked(data, name, source)
    text = data.decode("utf-8")  # checked: UTF-8
    record = disbursement.find(bank_profile_id(name))
    register = None
    if record is None:
        register = disbursement.find(PROFILE_REGISTER_ID) or ProfileRegister()
        if len(register.names) >= PROFILES_MAX:
            raise TooManyProfiles(f"this ledger holds {PROFILES_MAX} profiles already")
        record = BankProfile(name=name)
        register.register(name)
    recorded = record.add(toml_text=text, sha256=sha256_of(data), source=source, actor=actor)
    if recorded:
        _save(disbursement, *([register] if register is not None else []), record)
    assert record.current is not None
    return ProfileChange(name, record.current, recorded, profile.title)


def approve_profile(disbursement: Disbursement, name: str, *, actor: str, sha256: str = "") -> ProfileChange:
    """Approve the version of `name` awaiting approval (maker-checker: not by who added it)."""
    if name in profile_names():
        raise ProfileAlreadyApproved(f"{name} is a shipped profile: the release that shipped it approved it")
    record = _recorded(disbursement, name)
    version = record.approve(actor=actor, sha256=sha256)
    _save(disbursement, record)
    return ProfileChange(name, version, True, _title(version))


def _checked(data: bytes, name: str, source: str) -> Profile:
    if len(data) > PROFILE_BYTES_MAX:
        raise ProfileRejected([f"{source}: larger than {PROFILE_BYTES_MAX} bytes"], f"{source}: too large")
    try:
        return profile_from_bytes(data, name, source)
    except ExportRefused as e:
        lines = str(e).splitlines()
        raise ProfileRejected(lines, "\n".join((*lines, f"{e.rule}: nothing recorded")), e.rule) from None


def _recorded(disbursement: Disbursement, name: str) -> BankProfile:
    record = disbursement.find(bank_profile_id(name))
    if not isinstance(record, BankProfile):
        shipped = ", ".join(profile_names())
        raise UnknownProfile(f"profile {name!r}: none recorded in this ledger (shipped: {shipped}); `profile add` it")
    return record


def _save(disbursement: Disbursement, *aggregates: Any) -> None:
    try:
        disbursement.save(*aggregates)
    except IntegrityError:
        raise ConcurrentChange("someone else changed the same profile at the same time; nothing recorded") from None


# --- using ------------------------------------------------------------------------------------------


def profile_in_use(disbursement: Disbursement, ref: str, *, actor: str) -> ProfileInUse:
    """The profile an export or import may use for `ref` (a name, or a path whose bytes are the approved
    version of the profile named by its file name), checked and with its text's SHA-256."""
    if is_path(ref):
        return _by_path(disbursement, ref)
    if ref in profile_names():
        return _shipped(disbursement, ref, actor)
    version = _recorded(disbursement, ref).in_force()
    return ProfileInUse(_loaded(version, ref), version.sha256)


def _shipped(disbursement: Disbursement, name: str, actor: str) -> ProfileInUse:
    data = shipped_profile_bytes(name)
    sha = sha256_of(data)
    profile = _checked(data, name, f"{name}.toml")
    record = disbursement.find(bank_profile_id(name))
    pending: list[Any] = []
    if record is None:
        register = disbursement.find(PROFILE_REGISTER_ID) or ProfileRegister()
        register.register(name)
        record = BankProfile(name=name)
        pending.append(register)
    source = f"exporters/profiles/{name}.toml"
    if record.ship(toml_text=data.decode("utf-8"), sha256=sha, source=source, actor=actor):
        pending.append(record)
    return ProfileInUse(profile, sha, tuple(pending))


def _by_path(disbursement: Disbursement, ref: str) -> ProfileInUse:
    path = Path(ref)
    if not path.is_file():
        raise UnknownProfile(f"{ref}: no such profile file")
    if path.stat().st_size > PROFILE_BYTES_MAX:
        raise ProfileRejected([f"{ref}: larger than {PROFILE_BYTES_MAX} bytes"], f"{ref}: too large")
    sha = sha256_of(path.read_bytes())
    name = path.name.removesuffix(".toml")
    if name in profile_names():
        raise ProfileNameReserved(f"{ref}: {name} is a shipped profile: use --profile {name}")
    version = _recorded(disbursement, name).in_force()
    if version.sha256 != sha:
        raise ProfileNotApproved(
            f"{ref} (SHA-256 {sha[:16]}…) is not the approved version of profile {name} ({version.sha256[:16]}…): "
            "`profile add` it and have it approved, or use --profile NAME for the approved one"
        )
    return ProfileInUse(_loaded(version, name), version.sha256)


def _loaded(version: ProfileVersion, name: str) -> Profile:
    """A recorded text, checked again under today's rules (a text that breaks them is refused at use)."""
    return _checked(version.toml_text.encode("utf-8"), name, f"{name}.toml (recorded {version.sha256[:12]})")


# --- reading ----------------------------------------------------------------------------------------


def recorded_profiles(disbursement: Disbursement) -> list[BankProfile]:
    register = disbursement.find(PROFILE_REGISTER_ID)
    if register is None:
        return []
    return [disbursement.repository.get(bank_profile_id(name)) for name in register.names]


def versions_by_sha256(disbursement: Disbursement) -> dict[str, tuple[str, ProfileVersion]]:
    """Every recorded profile text by its SHA-256: (profile name, version). What verify regenerates from."""
    found: dict[str, tuple[str, ProfileVersion]] = {}
    for record in recorded_profiles(disbursement):
        for version in record.versions:
            previous = found.get(version.sha256)
            if previous is None or (version.approved and not previous[1].approved):
                found[version.sha256] = (record.name, version)
    return found


def profile_from_version(name: str, version: ProfileVersion) -> Profile:
    """A recorded version as a checked profile (raises ExportRefused when today's rules refuse it)."""
    return profile_from_bytes(version.toml_text.encode("utf-8"), name, f"{name}.toml (recorded {version.sha256[:12]})")


def profile_rows(disbursement: Disbursement) -> list[dict[str, Any]]:
    """`profile list`: every recorded profile's version in force, and the shipped ones not used yet."""
    rows = []
    recorded = {record.name: record for record in recorded_profiles(disbursement)}
    for name in sorted(set(recorded) | set(profile_names())):
        record = recorded.get(name)
        version = record.current if record is not None else None
        if version is None:
            data = shipped_profile_bytes(name)
            text, sha = data.decode("utf-8"), sha256_of(data)
            rows.append(_row(name, sha, "shipped, not used yet", True, "", "release", 0, _title_of(text, name)))
            continue
        assert record is not None
        status = ("shipped" if version.shipped else "approved") if version.approved else "awaiting approval"
        approved_earlier = [v for v in record.versions[:-1] if v.approved]
        row = _row(
            name,
            version.sha256,
            status,
            version.shipped,
            version.added_by,
            version.approved_by,
            len(record.versions),
            _title(version, name),
        )
        row["source"] = version.source
        row["previous_approved_sha256"] = approved_earlier[-1].sha256 if approved_earlier else ""
        rows.append(row)
    return rows


def profile_text(disbursement: Disbursement, name: str, sha256: str = "") -> tuple[ProfileVersion, str]:
    """A recorded version's text (the one in force, or the one whose SHA-256 starts with `sha256`)."""
    if name in profile_names() and disbursement.find(bank_profile_id(name)) is None:
        data = shipped_profile_bytes(name)
        version = ProfileVersion(sha256_of(data), data.decode("utf-8"), f"exporters/profiles/{name}.toml", "", "", True)
        return version, version.toml_text
    record = _recorded(disbursement, name)
    chosen = record.current
    if sha256:
        matches = [v for v in record.versions if v.sha256.startswith(sha256.lower())]
        if len({v.sha256 for v in matches}) != 1:
            raise UnknownProfile(f"profile {name}: no single version whose SHA-256 starts with {sha256}")
        chosen = matches[-1]
    assert chosen is not None
    return chosen, chosen.toml_text


def _row(
    name: str,
    sha: str,
    status: str,
    shipped: bool,
    added_by: str,
    approved_by: str,
    versions: int,
    title: str,
) -> dict[str, Any]:
    return {
        "name": name,
        "sha256": sha,
        "status": status,
        "shipped": shipped,
        "added_by": added_by,
        "approved_by": approved_by,
        "versions": versions,
        "title": title,
    }


def _title(version: ProfileVersion, name: str = "") -> str:
    return _title_of(version.toml_text, name)


def _title_of(text: str, name: str) -> str:
    """The profile's title, or why it no longer loads (a text recorded before a rule existed)."""
    try:
        return profile_from_bytes(text.encode("utf-8"), name or "profile", f"{name}.toml").title
    except ExportRefused as e:
        return f"(refused today: {e.rule})"
