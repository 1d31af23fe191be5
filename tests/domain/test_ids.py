"""Id schemes (domain.ids) and the ledger's charter (domain.charter): uuid5 stays bit-identical for every
existing ledger; keyed ids are HMAC-SHA256 of the same natural keys, deterministic per key, and the
month-end's accrual and a person's registration use whichever scheme they are given."""

from __future__ import annotations

import hashlib
import hmac
import tomllib
from datetime import date
from pathlib import Path
from typing import Any
from uuid import RFC_4122, UUID, uuid5

import pytest

from domain.charter import CHARTER_ID, Charter, UnknownIdScheme, id_scheme_for
from domain.disbursement import Accrual, payment_id
from domain.eligibility import NAMESPACE, Person, apply_person_event, person_id
from domain.ids import HMAC_SHA256, UUID5, UUID5_IDS, IdKeyTooShort, KeyedIds
from domain.periods import Month
from domain.policy import HouseholdFacts, parse_policy

KEY = bytes(range(32))
LI = "152601198001011239"  # the walkthrough's urban dibao household, 150902
WANG = "152621197505052342"
POLICY = Path(__file__).resolve().parents[2] / "ledger" / "data" / "ulanqab-2017.toml"


def _li(**extra: Any) -> Person:
    return Person.register(
        id_number=LI, name="李建华", birth_date=date(1980, 1, 1), bank_code="103191000012",
        account="6228480045001122337", actor="clerk", programme="urban_dibao", region="150902",
        effective_from=date(2017, 1, 1), household=HouseholdFacts(2, 30000, 0), decision_ref="集民发〔2017〕2号",
        **extra,
    )  # fmt: skip


def _records(person: Person) -> dict:
    records: dict = {}
    for position, domain_event in enumerate(person.collect_events(), start=1):
        name = type(domain_event).__name__
        apply_person_event(records, domain_event.originator_id, name, vars(domain_event), position)
    return records


def test_uuid5_ids_are_the_ids_every_existing_ledger_holds() -> None:
    assert UUID5_IDS.person_id(LI) == uuid5(NAMESPACE, f"person|{LI}") == person_id(LI)
    assert UUID5_IDS.payment_id(LI, "urban_dibao", "2017-01") == uuid5(NAMESPACE, f"payment|{LI}|urban_dibao|2017-01")
    assert payment_id(WANG, "rural_dibao", "2017-Q1") == uuid5(NAMESPACE, f"payment|{WANG}|rural_dibao|2017-Q1")


def test_keyed_ids_are_hmac_sha256_of_the_natural_key_as_a_version_8_uuid() -> None:
    ids = KeyedIds(KEY)
    expected = bytearray(hmac.new(KEY, f"person|{LI}".encode(), hashlib.sha256).digest()[:16])
    expected[6] = (expected[6] & 0x0F) | 0x80
    expected[8] = (expected[8] & 0x3F) | 0x80
    assert ids.person_id(LI) == UUID(bytes=bytes(expected))
    mac = hmac.new(KEY, f"payment|{LI}|urban_dibao|2017-01".encode(), hashlib.sha256).digest()
    assert ids.payment_id(LI, "urban_dibao", "2017-01").bytes[:6] == mac[:6]
    assert ids.person_id(LI).version == 8 and ids.payment_id(LI, "urban_dibao", "2017-01").variant == RFC_4122
    assert ids.name == HMAC_SHA256 and "KEY" not in repr(ids) and str(KEY) not in repr(ids)


def test_keyed_ids_are_deterministic_per_key_and_differ_between_keys_and_from_uuid5() -> None:
    one, same, other = KeyedIds(KEY), KeyedIds(bytes(KEY)), KeyedIds(bytes(32))
    assert one.person_id(LI) == same.person_id(LI)
    assert one.payment_id(LI, "a", "2017-01") == same.payment_id(LI, "a", "2017-01")
    assert one.person_id(LI) != other.person_id(LI) != person_id(LI)
    assert one.payment_id(LI, "urban_dibao", "2017-01") != payment_id(LI, "urban_dibao", "2017-01")
    # The natural keys stay apart: person and payment, programme and period.
    distinct = {
        one.person_id(LI),
        one.person_id(WANG),
        one.payment_id(LI, "urban_dibao", "2017-01"),
        one.payment_id(LI, "urban_dibao", "2017-02"),
        one.payment_id(LI, "sanmin", "2017-01"),
    }
    assert len(distinct) == 5


def test_an_id_key_shorter_than_32_bytes_is_our_mistake() -> None:
    with pytest.raises(IdKeyTooShort):
        KeyedIds(b"short")


def test_the_accrual_names_payments_by_the_scheme_it_is_given() -> None:
    with POLICY.open("rb") as f:
        policy = parse_policy(tomllib.load(f))
    records = list(_records(_li()).items())
    plain = list(Accrual(policy, Month(2017, 2)).due(records, "150900", None, 0))
    keyed = list(Accrual(policy, Month(2017, 2), KeyedIds(KEY)).due(records, "150900", None, 0))
    assert [d.payment_id for d in plain] == [payment_id(LI, "urban_dibao", p) for p in ("2017-01", "2017-02")]
    keyed_ids = KeyedIds(KEY)
    assert [d.payment_id for d in keyed] == [keyed_ids.payment_id(LI, "urban_dibao", p) for p in ("2017-01", "2017-02")]
    assert [(d.amount_fen, d.period) for d in plain] == [(d.amount_fen, d.period) for d in keyed]


def test_a_person_registered_under_a_keyed_id_folds_the_same_as_under_uuid5() -> None:
    plain = _li()
    keyed = _li(person_id=KeyedIds(KEY).person_id(LI))
    assert plain.id == person_id(LI) and keyed.id == KeyedIds(KEY).person_id(LI)
    assert [type(e).__qualname__ for e in keyed.pending_events] == ["Person.Registered"]  # the same stored topic
    plain_records, keyed_records = _records(plain), _records(keyed)
    assert plain_records[plain.id] == keyed_records[keyed.id]


def test_a_charter_states_the_ledger_id_and_picks_keyed_ids_unless_plain_text() -> None:
    ledger = UUID(int=7)
    encrypted = Charter.found(ledger_id=ledger, plaintext=False, actor="admin")
    plain = Charter.found(ledger_id=ledger, plaintext=True, actor="admin")
    assert encrypted.id == plain.id == CHARTER_ID
    assert (encrypted.ledger_id, encrypted.plaintext, encrypted.id_scheme) == (ledger, False, HMAC_SHA256)
    assert (plain.plaintext, plain.id_scheme) == (True, UUID5)
    assert id_scheme_for(plaintext=False) == HMAC_SHA256 and encrypted.check_id_scheme() == HMAC_SHA256
    (created,) = encrypted.collect_events()
    assert type(created).__qualname__ == "Charter.LedgerCreated" and created.ledger_id == ledger.hex


def test_a_charter_naming_an_unknown_id_scheme_is_refused() -> None:
    later = Charter(ledger_id=UUID(int=1).hex, plaintext=False, id_scheme="blake3", actor="admin")
    with pytest.raises(UnknownIdScheme):
        later.check_id_scheme()
