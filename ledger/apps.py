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
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import date
from functools import cached_property
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from domain.charter import CHARTER_ID, Charter
from domain.eligibility import (
    MEMBER_LISTS_ID,
    ChangeOutcome,
    MemberLists,
    Person,
    PersonRecord,
    ProgrammesExclude,
    UnknownEnrolment,
    apply_person_event,
    check_exclusions,
    check_guards,
    check_reenrolment,
    enrolment_from_event,
)
from domain.errors import RuleBroken
from domain.ids import UUID5_IDS, IdScheme
from domain.money import format_yuan
from domain.oneoffs import GRANT_TOPIC_PREFIX, GrantRecord, apply_grant_event
from domain.policy import HouseholdFacts, Policy, PolicyRejected, parse_policy
from domain.policy_log import POLICY_ID, PolicyLog
from ledger import topics  # noqa: F401  (stored topics of moved classes)
from ledger.roster import RosterRejected, RosterRow, RowProblem
from ledger.storage import collector_paused, existing_originators, notification_pages
from projections.codec import PayloadCodec

REGISTRY_PAGE = 20_000  # notifications read per query when folding the registry
ROSTER_CHUNK = 2_000  # persons saved per transaction during an import (≈ 2 events each)


class ConcurrentChange(RuleBroken):
    """Someone else changed the same record at the same moment; nothing was recorded."""


class NoPolicy(RuleBroken):
    """No policy has been loaded into this ledger yet (`yikatong policy load FILE.toml`)."""


def parse_policy_text(toml_text: str, source: str, *, strict: bool = False) -> Policy:
    """`strict`: refuse unknown programme keys (`policy load`); a stored policy is read without it."""
    try:
        doc = tomllib.loads(toml_text)
    except (tomllib.TOMLDecodeError, ValueError) as e:  # ValueError: an integer too long to convert
        raise PolicyRejected(source, [f"not valid TOML: {e}"]) from None
    return parse_policy(doc, source, strict=strict)


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    """The registry as read at one notification position."""

    policy: Policy
    persons: dict[UUID, PersonRecord]
    position: int
    policy_position: int
    # Every policy file loaded, as (notification position, TOML text), in order: a run after a policy
    # load compares the policy its last run used with this one (domain.disbursement.PolicyChanges).
    policies: tuple[tuple[int, str], ...] = ()
    grants: dict[UUID, GrantRecord] = field(default_factory=dict)  # 临时救助 grants (domain.oneoffs)

    def policy_at(self, position: int) -> Policy | None:
        """The policy in force at notification `position` (the last one loaded at or before it), if any."""
        text = None
        for loaded_at, toml_text in self.policies:
            if loaded_at > position:
                break
            text = toml_text
        return None if text is None else parse_policy_text(text, f"policy at position {position}")


@dataclass(frozen=True, slots=True)
class ImportSummary:
    enrolled: int
    unchanged: int
    households: int
    persons: int
    warnings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _CheckedRoster:
    """A roster that passed every rule, and what applying it needs."""

    summary: ImportSummary  # what the import will report (enrolled: the rows not already in the ledger)
    pairs: frozenset[frozenset[str]]
    by_person: dict[str, list[RosterRow]]
    existing: set[UUID]
    first_member_lists: bool  # the first import to list household members: the exclusion check turns on


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
        policy = parse_policy_text(toml_text, source, strict=True)
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
        person = self.decided(
            kind=kind,
            id_number=id_number,
            programme=programme,
            on=on,
            actor=actor,
            reason=reason,
            amount_fen=amount_fen,
        )
        self._save(person)
        return person

    def decided(
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
        """The person with the decision applied and not saved: what `decide` records, under the same rules
        and refusals (the web's preview reads it instead of saving it, ledger.persons)."""
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
            policy=policy,
        )
        return person

    def change_household(
        self,
        *,
        id_number: str,
        programme: str,
        on: date,
        actor: str,
        reason: str,
        members: int | None,
        monthly_income_fen: int | None,
        special_members: int | None,
    ) -> ChangeOutcome:
        """`decide change`: the change and the phase-out it starts (if any) in one save of the person."""
        person, outcome = self.changed(
            id_number=id_number,
            programme=programme,
            on=on,
            actor=actor,
            reason=reason,
            members=members,
            monthly_income_fen=monthly_income_fen,
            special_members=special_members,
        )
        if outcome.recorded:
            self._save(person)
        return outcome

    def changed(
        self,
        *,
        id_number: str,
        programme: str,
        on: date,
        actor: str,
        reason: str,
        members: int | None,
        monthly_income_fen: int | None,
        special_members: int | None,
    ) -> tuple[Person, ChangeOutcome]:
        """The person with the household change applied and not saved (`change_household`'s preview)."""
        policy = self.policy()
        policy.programme(programme)
        person = self.person(id_number)
        outcome = person.change_household(
            programme=programme,
            on=on,
            actor=actor,
            reason=reason,
            members=members,
            monthly_income_fen=monthly_income_fen,
            special_members=special_members,
            policy=policy,
        )
        return person, outcome

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

    def check_roster(self, rows: Sequence[RosterRow], source: str) -> ImportSummary:
        """What `import_roster` would record for `rows`, checked by every rule it checks, recording nothing
        (the web's preview before 导入): the same RosterRejected, or the summary the import would return."""
        with collector_paused():
            return self._checked_roster(rows, source).summary

    def _checked_roster(self, rows: Sequence[RosterRow], source: str) -> _CheckedRoster:
        policy = self.policy()
        pairs = policy.excluded_pairs()
        by_person: dict[str, list[RosterRow]] = {}
        for row in rows:
            by_person.setdefault(row.id_number, []).append(row)
        existing = existing_originators(self.recorder, (self.ids.person_id(i) for i in by_person))
        problems: list[RowProblem] = []
        unchanged = 0
        for id_number, person_rows in by_person.items():
            found, same = self._check_rows(id_number, person_rows, existing, policy, source)
            problems.extend(found)
            unchanged += same
        lists_members = any(row.member_ids for row in rows)
        listed_before = bool(existing_originators(self.recorder, [MEMBER_LISTS_ID]))
        if not problems and (lists_members or listed_before):
            problems.extend(check_member_exclusions(self._read_registry(None).persons.values(), rows, pairs, source))
        if problems:
            raise RosterRejected.of(problems, len({p.line for p in problems}))
        households = sum(1 for r in rows if policy.programmes[r.programme].unit == "household")
        persons = sum(r.members if policy.programmes[r.programme].unit == "household" else 1 for r in rows)
        warnings = tuple(f"{source} line {r.line}: {w}" for r in rows for w in r.warnings)
        summary = ImportSummary(len(rows) - unchanged, unchanged, households, persons, warnings)
        return _CheckedRoster(summary, pairs, by_person, existing, lists_members and not listed_before)

    def _import_roster(self, rows: Sequence[RosterRow], source: str, actor: str, advance: Any) -> ImportSummary:
        checked = self._checked_roster(rows, source)
        by_person, existing, pairs = checked.by_person, checked.existing, checked.pairs
        if checked.first_member_lists:
            # Before the persons: a crash between leaves the check on, never off; another import may have
            # recorded it first.
            with suppress(IntegrityError):
                self.save(MemberLists(actor=actor))
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
        return replace(checked.summary, enrolled=enrolled, unchanged=unchanged)

    def _check_rows(
        self,
        id_number: str,
        rows: list[RosterRow],
        existing: set[UUID],
        policy: Policy,
        source: str,
    ) -> tuple[list[RowProblem], int]:
        """Each row against what the ledger holds and the rows before it: the person's name and account
        (a row never changes them silently), the enrolment's terms, exclusions and eligibility guards.
        Returns the problems, and how many rows the ledger holds already (an import leaves them unchanged)."""
        pairs = policy.excluded_pairs()
        errors: list[RowProblem] = []
        unchanged = 0
        held = {}
        person_fields = None
        if self.ids.person_id(id_number) in existing:
            person = self.person(id_number)
            held = dict(person.enrolments)
            person_fields = (person.name, person.bank_code, person.account), "the ledger"
        this_import = {row.programme: enrolment_from_event(_enrolment_fields(row)) for row in rows}
        for row in rows:
            if person_fields is None:
                person_fields = (row.name, row.bank_code, row.account), f"line {row.line}"
            current = held.get(row.programme)
            new = this_import[row.programme]  # one row per programme and person (roster.py: duplicates)
            rules = policy.programmes[row.programme]
            try:
                check_person_fields(row, *person_fields)
                if current is not None and _same_terms(current, new):
                    unchanged += 1
                    continue  # the same row again: nothing new, so nothing to check against later decisions
                if current is not None:
                    check_enrolment_fields(id_number, current, new)
                check_exclusions(held, row.programme, row.effective_from, pairs, id_number)
                if current is not None:
                    check_reenrolment(
                        id_number, current, new.region, new.effective_from, new.household, new.decision_ref
                    )
                check_guards(
                    policy,
                    row.programme,
                    id_number=id_number,
                    birth_date=row.birth_date,
                    on=row.effective_from,
                    # `requires` counts the person's other rows of this import, in whatever order.
                    held=_with_import(held, this_import, row.programme) if rules.requires else {},
                    household=new.household if rules.unit == "household" else None,
                )
            except RuleBroken as e:
                message = f"{source} line {row.line}: {e.rule}: {e}"
                errors.append(RowProblem(row.line, e.rule, message, type(e).__name__))
                continue
            if current is not None and current.effective_from == new.effective_from:
                unchanged += 1  # Person.enrol: the same spell again, whatever else the row says, records nothing
            held[row.programme] = new
        return errors, unchanged

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
            member_ids=row.member_ids,
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
            member_ids=row.member_ids,
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
        grants: dict[UUID, GrantRecord] = {}
        position = policy_position = 0
        policies: list[tuple[int, str]] = []
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
                elif topic.startswith(GRANT_TOPIC_PREFIX):
                    apply_grant_event(
                        grants,
                        notification.originator_id,
                        topic[len(GRANT_TOPIC_PREFIX) :],
                        self.payload(notification.state),
                        notification.id,
                    )
                elif topic.endswith(".Loaded"):
                    policy_position = notification.id
                    policies.append((notification.id, self.payload(notification.state)["toml_text"]))
                position = notification.id
            if advance:
                advance(len(page))
        return RegistrySnapshot(policy, persons, position, policy_position, tuple(policies), grants)

    def payload(self, state: bytes) -> dict[str, Any]:
        """A stored event's fields (projections.codec), without building the event: a Person event's are
        JSON primitives by design (domain.eligibility)."""
        return self.codec.payload(state)

    @cached_property
    def codec(self) -> PayloadCodec:
        """The mapper's cipher and compressor, undone the mapper's way (projections.codec)."""
        return PayloadCodec.of_mapper(self.mapper)


_PERSON_TOPIC_PREFIX = "domain.eligibility:Person."


class RowDiffersFromLedger(RuleBroken):
    """A re-imported row states a fact other than the one recorded; a roster never changes it silently,
    the command that records such a change must (docs/entitlement.md, "Eligibility guards")."""


# Field of a roster row → the command that changes it once recorded.
PERSON_FIELD_COMMANDS = {"name": "decide rename", "bank_code": "account set", "account": "account set"}
CHANGE_DECISION = "`decide change`"


def check_person_fields(row: RosterRow, recorded: tuple[str, str, str], where: str) -> None:
    """Refuse a row whose name, bank code or account differs from the person's recorded ones (`where`:
    the ledger, or the first row of the same person in this import)."""
    given = (row.name, row.bank_code, row.account)
    differing = [
        (field, old, new)
        for field, old, new in zip(("name", "bank_code", "account"), recorded, given, strict=True)
        if old != new
    ]
    if differing:
        fields = "; ".join(f"{field} {new} differs from {old} recorded in {where}" for field, old, new in differing)
        commands = sorted({PERSON_FIELD_COMMANDS[field] for field, _, _ in differing})
        raise RowDiffersFromLedger(f"{row.id_number}: {fields}; use {' and '.join(f'`{c}`' for c in commands)}")


def check_enrolment_fields(id_number: str, current: Any, new: Any) -> None:
    """The same enrolment (programme and start) sent again with other household facts: refused naming
    each field; changing them is a decision of its own, not a roster row."""
    if current.effective_from != new.effective_from or current.end_date() is not None:
        return  # another spell or an ended one: check_reenrolment decides
    old, given = current.latest_household(), new.household
    pairs = (
        ("members", str(old.members), str(given.members)),
        ("monthly_income", format_yuan(old.monthly_income_fen), format_yuan(given.monthly_income_fen)),
        ("special_members", str(old.special_members), str(given.special_members)),
    )
    differing = [
        f"{column} {new_text} differs from {old_text} in the ledger"
        for column, old_text, new_text in pairs
        if old_text != new_text
    ]
    if current.member_ids != new.member_ids:
        # No command changes the listed members yet: the enrolment keeps the ones it was recorded with.
        raise RowDiffersFromLedger(
            f"{id_number} {current.programme}: member_ids {';'.join(new.member_ids) or '(none)'} differs from "
            f"{';'.join(current.member_ids) or '(none)'} in the ledger; the members are recorded with the enrolment"
            + (f"; also {'; '.join(differing)}" if differing else "")
        )
    if differing:
        raise RowDiffersFromLedger(f"{id_number} {current.programme}: {'; '.join(differing)}; use {CHANGE_DECISION}")


@dataclass(frozen=True, slots=True)
class _Holding:
    """One person's share in an enrolment: as its payee, or listed in its `member_ids`."""

    programme: str
    enrolment: Any
    payee: str  # the enrolment's payee (ID number)
    line: int  # the import's line, 0 for the ledger's


def check_member_exclusions(
    records: Any, rows: Sequence[RosterRow], pairs: frozenset[frozenset[str]], source: str
) -> list[RowProblem]:
    """Exclusions across household members (000_a883bdda05437b65.txt 四; docs/entitlement.md): every person
    of a row (its payee and its `member_ids`) against what the same person holds elsewhere — as a payee,
    or listed as a member of another household — in the ledger (`records`, folded) or in this import. An
    enrolment ended on or before the row's start is no longer held. One message per row and rule, naming
    the file, the line and the rule (`PROGRAMME_excludes_OTHER`)."""
    held: dict[str, list[_Holding]] = {}
    for record in records:
        for enrolment in record.enrolments.values():
            for person in (record.id_number, *enrolment.member_ids):
                held.setdefault(person, []).append(_Holding(enrolment.programme, enrolment, record.id_number, 0))
    for row in rows:
        enrolment = enrolment_from_event(_enrolment_fields(row))
        for person in (row.id_number, *row.member_ids):
            held.setdefault(person, []).append(_Holding(row.programme, enrolment, row.id_number, row.line))
    errors: list[RowProblem] = []
    for row in rows:
        for person in dict.fromkeys((row.id_number, *row.member_ids)):
            for holding in held.get(person, ()):
                if holding.payee == row.id_number:
                    continue  # the row's own payee: checked person by person (check_exclusions)
                if frozenset((row.programme, holding.programme)) not in pairs or row.programme == holding.programme:
                    continue
                ends = holding.enrolment.end_date()
                if ends is not None and ends <= row.effective_from:
                    continue
                role = "as payee" if person == holding.payee else f"as a member of {holding.payee}'s household"
                where = f"line {holding.line}" if holding.line else "the ledger"
                who = "payee" if person == row.id_number else "member"
                rule = f"{row.programme}_excludes_{holding.programme}"
                message = (
                    f"{source} line {row.line}: {rule}: {row.id_number}: "
                    f"{who} {person} holds {holding.programme} {role} ({where}); {row.programme} and "
                    f"{holding.programme} exclude each other (000_a883bdda05437b65.txt 四)"
                )
                errors.append(RowProblem(row.line, rule, message, ProgrammesExclude.__name__))
                break
    return errors


def _with_import(held: dict[str, Any], this_import: dict[str, Any], programme: str) -> dict[str, Any]:
    """The person's enrolments other than `programme` as they will stand after the import: the ledger's
    spell (with its decisions) where a row re-sends it, the row's where it starts a new spell or programme."""
    merged = {key: enrolment for key, enrolment in held.items() if key != programme}
    for key, enrolment in this_import.items():
        current = merged.get(key)
        if key != programme and (current is None or current.effective_from < enrolment.effective_from):
            merged[key] = enrolment
    return merged


def _same_terms(a: Any, b: Any) -> bool:
    """`b` (a row) re-sends `a` (the ledger's enrolment): its household may be the one `a` was recorded with
    or the one last decided for it (`decide change`)."""
    return (a.region, a.effective_from, a.decision_ref, a.member_ids) == (
        b.region,
        b.effective_from,
        b.decision_ref,
        b.member_ids,
    ) and a.same_household(b.household)


def _enrolment_fields(row: RosterRow) -> dict[str, Any]:
    return {
        "programme": row.programme,
        "region": row.region,
        "effective_from": row.effective_from.isoformat(),
        "members": row.members,
        "monthly_income_fen": row.monthly_income_fen,
        "special_members": row.special_members,
        "decision_ref": row.decision_ref,
        "member_ids": list(row.member_ids),
    }


__all__ = ["Registry"]
