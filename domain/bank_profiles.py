"""Bank profiles in the ledger, by content, under maker-checker (issue 13, item 4; DESIGN.md, "Identity,
roles and integrity": whoever registered a bank profile cannot approve it).

A one-card profile (exporters/onecard.py, docs/bank-files.md) decides what every line of a bank file
says, so it is as much a part of a payment as the batch: a profile is recorded here with its full text
and SHA-256, and a version is used only after a second person approved that very text.

- One `BankProfile` aggregate per name, its id uuid5 of the name. Each version is an event holding the
  whole TOML text and its SHA-256: `Added` (a clerk's file: needs an approval, by someone else than who
  added it, compared exactly as a batch's exporter and approver are) or `Shipped` (a profile shipped in
  `exporters/profiles/`, reviewed with the code and approved by the release; recorded on its first use
  so that the ledger holds every text an export used).
- The version in force is the latest one; it is usable once approved (a shipped one always is). Adding
  a new version of a name withdraws the old one until the new one is approved: what the checker saw is
  what is used. Adding the text already in force records nothing.
- `ProfileRegister` lists every profile name recorded, so that the ledger's profiles are read without a
  scan of the log.

This module records and decides; it does not read TOML. The ledger checks a profile's text
(exporters.onecard) before it reaches `add`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.eligibility import NAMESPACE
from domain.errors import RuleBroken

SHIPPED_APPROVER = "release"  # who approved a shipped profile: the release that shipped it (code review)


def bank_profile_id(name: str) -> UUID:
    return uuid5(NAMESPACE, f"bank-profile|{name}")


PROFILE_REGISTER_ID = uuid5(NAMESPACE, "bank-profile-register")


class ProfileNotApproved(RuleBroken):
    """A profile version nobody else approved cannot lay out a bank file or read a bank's return file."""


class ProfileApproverMustDifferFromAdder(RuleBroken):
    """Maker-checker: the person who added a profile version cannot approve it."""


class ProfileAlreadyApproved(RuleBroken):
    """The version in force is already approved: there is nothing to approve."""


class ProfileVersionChanged(RuleBroken):
    """The approver named a version (by SHA-256) that is not the one awaiting approval."""


@dataclass(frozen=True, slots=True)
class ProfileVersion:
    """One recorded text of a profile."""

    sha256: str
    toml_text: str
    source: str  # the file it was added from, or the shipped file
    added_by: str
    approved_by: str  # "" until approved; SHIPPED_APPROVER for a shipped profile
    shipped: bool

    @property
    def approved(self) -> bool:
        return bool(self.approved_by)


class BankProfile(Aggregate):
    """Every version of one bank profile, in the order recorded."""

    @staticmethod
    def create_id(name: str, **_: Any) -> UUID:  # type: ignore[override]
        return bank_profile_id(name)

    @event("Opened")
    def __init__(self, name: str) -> None:
        self.name = name
        self.versions: list[ProfileVersion] = []

    @property
    def current(self) -> ProfileVersion | None:
        return self.versions[-1] if self.versions else None

    def version_of(self, sha256: str) -> ProfileVersion | None:
        for version in reversed(self.versions):
            if version.sha256 == sha256:
                return version
        return None

    def in_force(self) -> ProfileVersion:
        """The version a bank file may be laid out with: the latest, once approved."""
        current = self.current
        if current is None:
            raise ProfileNotApproved(f"profile {self.name} has no version recorded")
        if not current.approved:
            raise ProfileNotApproved(
                f"profile {self.name} version {current.sha256[:16]}… added by {current.added_by} awaits approval "
                "by a second person (`yikatong profile approve "
                f"{self.name}`); until then it cannot be used"
            )
        return current

    # --- deciding ----------------------------------------------------------------------------------

    def add(self, *, toml_text: str, sha256: str, source: str, actor: str) -> bool:
        """A clerk's version; False (nothing recorded) when it is the text already in force."""
        current = self.current
        if current is not None and current.sha256 == sha256:
            return False
        self._added(toml_text=toml_text, sha256=sha256, source=source, actor=actor)
        return True

    def ship(self, *, toml_text: str, sha256: str, source: str, actor: str) -> bool:
        """The shipped text, on its first use (`actor` is who used it); False when already in force."""
        current = self.current
        if current is not None and current.sha256 == sha256 and current.approved:
            return False
        self._shipped(toml_text=toml_text, sha256=sha256, source=source, actor=actor)
        return True

    def approve(self, *, actor: str, sha256: str = "") -> ProfileVersion:
        """Approve the version awaiting approval (the one named by `sha256` or a prefix of it, when given)."""
        current = self.current
        if current is None:
            raise ProfileNotApproved(f"profile {self.name} has no version recorded")
        if current.approved:
            raise ProfileAlreadyApproved(
                f"profile {self.name} version {current.sha256[:16]}… was approved by {current.approved_by}"
            )
        if sha256 and not current.sha256.startswith(sha256.lower()):
            raise ProfileVersionChanged(
                f"profile {self.name}: the version awaiting approval is {current.sha256}, not {sha256}"
            )
        if actor == current.added_by:
            raise ProfileApproverMustDifferFromAdder(
                f"{actor} added profile {self.name} version {current.sha256[:16]}… and cannot approve it: "
                "a second person must"
            )
        self._approved(sha256=current.sha256, actor=actor)
        assert self.current is not None
        return self.current

    # --- recording (state changes only: STYLE.md 3) -------------------------------------------------

    @event("Added")
    def _added(self, toml_text: str, sha256: str, source: str, actor: str) -> None:
        self.versions.append(ProfileVersion(sha256, toml_text, source, actor, "", False))

    @event("Shipped")
    def _shipped(self, toml_text: str, sha256: str, source: str, actor: str) -> None:
        self.versions.append(ProfileVersion(sha256, toml_text, source, actor, SHIPPED_APPROVER, True))

    @event("Approved")
    def _approved(self, sha256: str, actor: str) -> None:
        for i in range(len(self.versions) - 1, -1, -1):
            version = self.versions[i]
            if version.sha256 == sha256 and not version.approved:
                self.versions[i] = ProfileVersion(
                    version.sha256, version.toml_text, version.source, version.added_by, actor, version.shipped
                )
                return


class ProfileRegister(Aggregate):
    """Every profile name recorded, in order: `profile list` and `audit verify` read this one aggregate."""

    @staticmethod
    def create_id(**_: Any) -> UUID:  # type: ignore[override]
        return PROFILE_REGISTER_ID

    @event("Opened")
    def __init__(self) -> None:
        self.names: list[str] = []

    def register(self, name: str) -> None:
        if name not in self.names:
            self._registered(name=name)

    @event("Registered")
    def _registered(self, name: str) -> None:
        self.names.append(name)
