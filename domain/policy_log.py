"""The policy files a ledger has loaded, verbatim, as one aggregate: which rules were in force when.

One ledger serves one region (DESIGN.md): a policy for another region is refused. Loading the same
bytes again records nothing.

Stored topic: events written before this class moved here carry `ledger.apps:PolicyLog.…`; those
topics are registered to this class in ledger.topics, so every ledger reads the same.
"""

from __future__ import annotations

import hashlib
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.eligibility import NAMESPACE
from domain.errors import RuleBroken


class RegionMismatch(RuleBroken):
    """One ledger serves one region: a policy for another region is refused."""


POLICY_ID = uuid5(NAMESPACE, "policy")


class PolicyLog(Aggregate):
    """Every policy file loaded, verbatim, so an auditor can see which rules were in force when."""

    @staticmethod
    def create_id(**_: Any) -> UUID:  # type: ignore[override]
        return POLICY_ID

    @event("Started")
    def __init__(self) -> None:
        self.toml_text = ""
        self.region_code = ""
        self.sha256 = ""

    def load(self, *, toml_text: str, source: str, region_code: str, actor: str) -> None:
        if self.region_code and region_code != self.region_code:
            raise RegionMismatch(f"this ledger serves region {self.region_code}; {source} is for {region_code}")
        sha = hashlib.sha256(toml_text.encode()).hexdigest()
        if sha == self.sha256:
            return  # the same file again: nothing new to record
        self._loaded(toml_text=toml_text, source=source, sha256=sha, region_code=region_code, actor=actor)

    @event("Loaded")
    def _loaded(self, toml_text: str, source: str, sha256: str, region_code: str, actor: str) -> None:
        self.toml_text = toml_text
        self.region_code = region_code
        self.sha256 = sha256
