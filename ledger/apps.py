"""The eventsourcing applications: `Registry` (policy, persons, enrolments, accounts) and `Disbursement`
(payments, batches, month-end runs), each with its own events table and notification log.

Guarantees:
- Every command either records all its events or none (one `save` per aggregate change; a roster
  import is validated whole before anything is written).
- A concurrent change to the same person is refused with `ConcurrentChange`, never merged silently.
- The registry can be read in bulk (`read_registry`) in pages of notifications, folded without building
  aggregate objects, for a month-end over a million enrolments.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from domain.charter import CHARTER_ID, Charter
from domain.eligibility import (
    Person,
    PersonRecord,
    UnknownEnrolment,
    apply_person_event,
    check_exclusions,
    check_reenrolment,
    enrolment_from_event,
)
from domain.errors import RuleBroken
from domain.ids import UUID5_IDS, IdScheme
from domain.policy import HouseholdFacts, Policy, PolicyRejected, parse_policy
from domain.policy_log import POLICY_ID, PolicyLog
from ledger import topics  # noqa: F401  (stored topics of moved classes)
from ledger.roster import RosterRejected, RosterRow
from ledger.storage import collector_paused, existing_originators, notification_pages
from projections.codec import PayloadCodec

REGISTRY_PAGE = 20_000  # notifications read per query when folding the registry
ROSTER_CHUNK = 2_000  # persons saved per transaction during an import (≈ 2 events each)


class ConcurrentChange(RuleBroken):
    """Someone else changed the same record at the same moment; nothing was recorded."""


class NoPolicy(RuleBroken):
    """No policy has been loaded into this ledger yet (`yikatong policy load FILE.toml`)."""


def parse_policy_text(toml_text: str, source: str) -> Policy:
    try:
        doc = tomllib.loads(toml_text)
    except (tomllib.TOMLDecodeError, ValueError) as e:  # ValueError: an integer too long to convert
        raise PolicyRejected(source, [f"not valid TOML: {e}"]) from None
    return parse_policy(doc, source)


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    """The registry as read at one notification position."""

    policy: Policy
    persons: dict[UUID, PersonRecord]
    position: int
    policy_position: int


@dataclass(frozen=True, slots=True)
class ImportSummary:
    enrolled: int
    unchanged: int
    households: int
    persons: int
    warnings: tuple[str, ...]


class Registry(Application[UUID]):
    name = "Registry"
    # How person ids derive from ID numbers (domain.ids): uuid5 unless the ledger's charter says keyed;
    # ledger.bootstrap.open_apps sets it from the charter.
    ids: IdScheme = UUID5_IDS

    # --- the ledger's charter (domain.charter) ----------------------------------------------------

    def charter(self) -> Charter | None:
        """What this ledger was created as, or None: a ledger written before charters existed."""
        try:
            return self.repository.get(CHARTER_ID)  # type: ignore[no-any-return]
        except AggregateNotFoundError:
            return None

    def found_ledger(self, *, ledger_id: UUID, plaintext: bool, actor: str) -> Charter:
        """Record the charter of a new ledger (`yikatong init`); the one already recorded when there is
        one (two `init`s at once: the store keeps the first, by the charter's fixed id)."""
        existing = self.charter()
        if existing is not None:
            return existing
        charter = Charter.found(ledger_id=ledger_id, plaintext=plaintext, actor=actor)
        try:
            self.save(charter)
        except IntegrityError:
            found = self.charter()
            assert found is not None  # the other writer's charter: the conflict was on its id
            return found
        return charter

    # --- policy --------------------------------------------------------------------------------

    def load_policy(self, toml_text: str, source: str, actor: str) -> Policy:
        policy = parse_policy_text(toml_text, source)
        log = self._policy_log() or PolicyLog()
        log.load(toml_text=toml_text, source=source, region_code=policy.region_code, actor=actor)
        self._save(log)
        return policy

    def policy(self) -> Policy:
        log = self._policy_log()
        if log is None or not log.toml_text:
            raise NoPolicy("no policy loaded: run `yikatong policy load FILE.toml` first")
        return parse_policy_text(log.toml_text, "loaded policy")

    def _policy_log(self) -> PolicyLog | None:
        try:
            return self.repository.get(POLICY_ID)  # type: ignore[no-any-return]
        except AggregateNotFoundError:
            return None

    # --- persons -------------------------------------------------------------------------------

    def person(self, id_number: str) -> Person:
        try:
            return self.repository.get(self.ids.person_id(id_number))  # type: ignore[no-any-return]
        except AggregateNotFoundError:
            raise UnknownEnrolment(f"no person with id_number {id_number} in the registry") from None

    def decide(
        self,
        *,
        kind: str,
        id_number: str,
        programme: str,
        on: date,
        actor: str,
        reason: str,
        amount_fen: int | None,
    ) -> Person:
        policy = self.policy()
        policy.programme(programme)
        person = self.person(id_number)
        person.decide(
            kind=kind,
            programme=programme,
            on=on,
            actor=actor,
            reason=reason,
            amount_fen=amount_fen,
            excluded_pairs=policy.excluded_pairs(),
        )
        self._save(person)
        return person

    def rename(self, *, id_number: str, name: str, on: date, reason: str, actor: str) -> bool:
        """Record a corrected name on the person (`Person.Renamed`); False when it is already the name."""
        person = self.person(id_number)
        changed = person.rename(name=name, effective_on=on, reason=reason, actor=actor)
        if changed:
            self._save(person)
        return changed

    def set_account(self, *, id_number: str, bank_code: str, account: str, reason: str, actor: str) -> bool:
        person = self.person(id_number)
        changed = person.set_account(bank_code=bank_code, account=account, reason=reason, actor=actor)
        if changed:
            self._save(person)
        return changed

    def import_roster(self, rows: Sequence[RosterRow], source: str, actor: str, advance: Any = None) -> ImportSummary:
        """All rows or none: every rule is checked for every row before the first write.

        Rows are grouped by person so that one person's enrolments are saved together. Existing persons
        are loaded and checked like new ones; an identical row re-imported is counted as unchanged.
        """
        with collector_paused():
            return self._import_roster(rows, source, actor, advance)

    def _import_roster(self, rows: Sequence[RosterRow], source: str, actor: str, advance: Any) -> ImportSummary:
        policy = self.policy()
        pairs = policy.excluded_pairs()
        by_person: dict[str, list[RosterRow]] = {}
        for row in rows:
            by_person.setdefault(row.id_number, []).append(row)
        existing = existing_originators(self.recorder, (self.ids.person_id(i) for i in by_person))
        errors: list[str] = []
        for id_number, person_rows in by_person.items():
            errors.extend(self._check_rows(id_number, person_rows, existing, pairs, source))
        if errors:
            raise RosterRejected(tuple(errors), len({e.split(":")[0] for e in errors}))
        enrolled = unchanged = 0
        batch: list[Person] = []
        for id_number, person_rows in by_person.items():
            if self.ids.person_id(id_number) in existing:
                person = self.person(id_number)
                remaining = person_rows
            else:
                person = self._register(person_rows[0], actor)
                enrolled += 1
                remaining = person_rows[1:]
            for row in remaining:
                if self._enrol(person, row, pairs, actor):
                    enrolled += 1
                else:
                    unchanged += 1
            batch.append(person)
            if len(batch) >= ROSTER_CHUNK:
                self._save(*batch)
                if advance:
                    advance(sum(len(by_person[p.id_number]) for p in batch))
                batch = []
        if batch:
            self._save(*batch)
            if advance:
                advance(sum(len(by_person[p.id_number]) for p in batch))
        households = sum(1 for r in rows if policy.programmes[r.programme].unit == "household")
        persons = sum(r.members if policy.programmes[r.programme].unit == "household" else 1 for r in rows)
        warnings = tuple(f"{source} line {r.line}: {w}" for r in rows for w in r.warnings)
        return ImportSummary(enrolled, unchanged, households, persons, warnings)

    def _check_rows(
        self,
        id_number: str,
        rows: list[RosterRow],
        existing: set[UUID],
        pairs: frozenset[frozenset[str]],
        source: str,
    ) -> list[str]:
        """Exclusions among a person's rows and against what the registry already holds."""
        errors = []
        held = {}
        if self.ids.person_id(id_number) in existing:
            held = dict(self.person(id_number).enrolments)
        for row in rows:
            current = held.get(row.programme)
            new = enrolment_from_event(_enrolment_fields(row))
            if current is not None and _same_terms(current, new):
                continue  # the same row again: nothing new, so nothing to check against later decisions
            try:
                check_exclusions(held, row.programme, row.effective_from, pairs, id_number)
            except RuleBroken as e:
                errors.append(f"{source} line {row.line}: {e.rule}: {e}")
                continue
            if current is not None:
                try:
                    check_reenrolment(
                        id_number, current, new.region, new.effective_from, new.household, new.decision_ref
                    )
                except RuleBroken as e:
                    errors.append(f"{source} line {row.line}: {e.rule}: {e}")
                    continue
            held[row.programme] = new
        return errors

    def _register(self, row: RosterRow, actor: str) -> Person:
        return Person.register(
            person_id=self.ids.person_id(row.id_number),
            id_number=row.id_number,
            name=row.name,
            birth_date=row.birth_date,
            bank_code=row.bank_code,
            account=row.account,
            actor=actor,
            programme=row.programme,
            region=row.region,
            effective_from=row.effective_from,
            household=HouseholdFacts(row.members, row.monthly_income_fen, row.special_members),
            decision_ref=row.decision_ref,
        )

    @staticmethod
    def _enrol(person: Person, row: RosterRow, pairs: frozenset[frozenset[str]], actor: str) -> bool:
        return person.enrol(
            programme=row.programme,
            region=row.region,
            effective_from=row.effective_from,
            household=HouseholdFacts(row.members, row.monthly_income_fen, row.special_members),
            decision_ref=row.decision_ref,
            actor=actor,
            excluded_pairs=pairs,
        )

    def _save(self, *aggregates: Aggregate) -> None:
        try:
            self.save(*aggregates)
        except IntegrityError:
            raise ConcurrentChange(
                "someone else changed the same record at the same time; nothing was recorded, run it again"
            ) from None

    # --- bulk read for the month-end --------------------------------------------------------------

    def read_registry(self, advance: Any = None) -> RegistrySnapshot:
        """Fold every registry event, page by page, into plain person records."""
        with collector_paused():
            return self._read_registry(advance)

    def _read_registry(self, advance: Any) -> RegistrySnapshot:
        policy = self.policy()
        persons: dict[UUID, PersonRecord] = {}
        position = policy_position = 0
        for page in notification_pages(self, REGISTRY_PAGE):
            for notification in page:
                topic = notification.topic
                if topic.startswith(_PERSON_TOPIC_PREFIX):
                    apply_person_event(
                        persons,
                        notification.originator_id,
                        topic[len(_PERSON_TOPIC_PREFIX) :],
                        self.payload(notification.state),
                        notification.id,
                    )
                elif topic.endswith(".Loaded"):
                    policy_position = notification.id
                position = notification.id
            if advance:
                advance(len(page))
        return RegistrySnapshot(policy, persons, position, policy_position)

    def payload(self, state: bytes) -> dict[str, Any]:
        """A stored event's fields (projections.codec), without building the event: a Person event's are
        JSON primitives by design (domain.eligibility)."""
        return self.codec.payload(state)

    @cached_property
    def codec(self) -> PayloadCodec:
        """The mapper's cipher and compressor, undone the mapper's way (projections.codec)."""
        return PayloadCodec.of_mapper(self.mapper)


_PERSON_TOPIC_PREFIX = "domain.eligibility:Person."


def _same_terms(a: Any, b: Any) -> bool:
    return (a.region, a.effective_from, a.household, a.decision_ref) == (
        b.region,
        b.effective_from,
        b.household,
        b.decision_ref,
    )


def _enrolment_fields(row: RosterRow) -> dict[str, Any]:
    return {
        "programme": row.programme,
        "region": row.region,
        "effective_from": row.effective_from.isoformat(),
        "members": row.members,
        "monthly_income_fen": row.monthly_income_fen,
        "special_members": row.special_members,
        "decision_ref": row.decision_ref,
    }


__all__ = ["Registry"]
