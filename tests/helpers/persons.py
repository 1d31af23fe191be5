"""Persons built through the `Person` aggregate and folded the way the month-end folds stored events, for
the accrual and entitlement tests (tests/domain)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from uuid import UUID

from domain.eligibility import Person, PersonRecord, apply_person_event
from domain.policy import HouseholdFacts, Policy

POLICY = Path(__file__).resolve().parents[2] / "ledger" / "data" / "ulanqab-2017.toml"

LI = "152601198001011239"  # walkthrough row 2: urban dibao, 150902
WANG = "152621197505052342"  # walkthrough row 3: rural dibao, 150921
URBAN = HouseholdFacts(members=2, monthly_income_fen=30000, special_members=0)
RURAL = HouseholdFacts(members=3, monthly_income_fen=20000, special_members=1)
SINGLE = HouseholdFacts(members=1, monthly_income_fen=0, special_members=0)


class Registry:
    """Persons built through the aggregate, folded the way the month-end folds stored events."""

    def __init__(self, policy: Policy) -> None:
        self.pairs = policy.excluded_pairs()
        self.persons: dict[str, Person] = {}
        self.records: dict[UUID, PersonRecord] = {}
        self.position = 0

    def register(self, id_number: str, name: str = "李建华") -> Person:
        person = Person(
            id_number=id_number,
            name=name,
            birth_date=f"{id_number[6:10]}-{id_number[10:12]}-{id_number[12:14]}",
            bank_code="103191000012",
            account="6228480045001122337",
            actor="clerk",
        )
        self.persons[id_number] = person
        self._fold(person)
        return person

    def enrol(
        self,
        id_number: str,
        programme: str,
        region: str,
        effective_from: date,
        household: HouseholdFacts = SINGLE,
    ) -> None:
        person = self.persons.get(id_number) or self.register(id_number)
        person.enrol(
            programme=programme,
            region=region,
            effective_from=effective_from,
            household=household,
            decision_ref="集民发〔2017〕2号",
            actor="clerk",
            excluded_pairs=self.pairs,
        )
        self._fold(person)

    def decide(self, id_number: str, kind: str, programme: str, on: date, amount_fen: int | None = None) -> None:
        person = self.persons[id_number]
        person.decide(
            kind=kind,
            programme=programme,
            on=on,
            actor="clerk",
            reason="集民发〔2017〕9号",
            amount_fen=amount_fen,
            excluded_pairs=self.pairs,
        )
        self._fold(person)

    def _fold(self, person: Person) -> None:
        for domain_event in person.collect_events():
            self.position += 1
            apply_person_event(
                self.records,
                domain_event.originator_id,
                type(domain_event).__name__,
                vars(domain_event),
                self.position,
            )

    def items(self) -> list[tuple[UUID, PersonRecord]]:
        return list(self.records.items())
