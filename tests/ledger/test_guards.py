"""Eligibility guards at roster import and at `decide resume`, on both stores (docs/entitlement.md,
"Eligibility guards"): each refusal names its rule and line and applies nothing; each row is accepted when
the guard's policy key is absent (sensitivity); a re-imported row that differs names the command."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from domain.eligibility import AgeAboveMaximum, RequiredProgrammeMissing
from ledger.apps import Registry
from ledger.bootstrap import database_from_url
from ledger.roster import RosterRejected
from ledger.storage import Database
from tests.helpers.ledgers import LI, WANG, import_rows, ledger, resident_id, row

CHILD = resident_id("150902", "20100304", 1)  # born 2010: 6 on 2017-01-01
ELDER = resident_id("152601", "19400506", 2)  # born 1940: 76
OLD = resident_id("152601", "19380101", 3)


def _without(policy_text: str, programme: str, key: str) -> str:
    """The policy with one guard key of one programme removed (the sensitivity case)."""
    head, _, tail = policy_text.partition(f"[programmes.{programme}]")
    body, sep, rest = tail.partition("\n[")
    lines = [line for line in body.splitlines(keepends=True) if not re.match(rf"{key}\s*=", line)]
    assert len(lines) < len(body.splitlines(keepends=True)), f"{programme} has no {key}"
    return head + f"[programmes.{programme}]" + "".join(lines) + sep + rest


def _refused(registry: Registry, tmp_path: Path, *rows: str) -> tuple[str, ...]:
    before = registry.recorder.max_notification_id()
    with pytest.raises(RosterRejected) as refused:
        import_rows(registry, tmp_path, *rows)
    assert registry.recorder.max_notification_id() == before  # nothing imported, the good rows neither
    return refused.value.errors


def _decide(registry: Registry, kind: str, id_number: str, programme: str, on: date) -> None:
    registry.decide(
        kind=kind,
        id_number=id_number,
        programme=programme,
        on=on,
        actor="clerk",
        reason="集民发〔2017〕50号",
        amount_fen=None,
    )


def test_a_child_born_2010_enrolled_in_tekun_is_refused_with_its_line(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, _ = ledger(db, policy_text)
    errors = _refused(registry, tmp_path, LI, row(CHILD, "tekun_rural_dispersed"))
    assert errors == (
        f"r.csv line 3: AgeBelowMinimum: {CHILD}: aged 6 on 2017-01-01, tekun_rural_dispersed starts at 16 "
        "(policy key age_min)",
    )


def test_the_child_is_accepted_when_the_policy_has_no_age_min(db: Database, policy_text: str, tmp_path: Path) -> None:
    registry, _ = ledger(db, _without(policy_text, "tekun_rural_dispersed", "age_min"))
    import_rows(registry, tmp_path, LI, row(CHILD, "tekun_rural_dispersed"))
    assert "tekun_rural_dispersed" in registry.person(CHILD).enrolments


def test_a_person_born_1940_as_a_dispersed_orphan_is_refused(db: Database, policy_text: str, tmp_path: Path) -> None:
    registry, _ = ledger(db, policy_text)
    errors = _refused(registry, tmp_path, row(ELDER, "orphan_dispersed"), WANG)
    assert errors == (
        f"r.csv line 2: AgeAboveMaximum: {ELDER}: aged 76 on 2017-01-01, orphan_dispersed ends at 17 "
        "(policy key age_max)",
    )
    registry, _ = ledger(_fresh(db), _without(policy_text, "orphan_dispersed", "age_max"))
    import_rows(registry, tmp_path, row(ELDER, "orphan_dispersed"), WANG)


def test_a_care_subsidy_without_basic_tekun_is_refused_and_with_it_accepted_in_any_order(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, _ = ledger(db, policy_text)
    errors = _refused(registry, tmp_path, LI, row(OLD, "tekun_care_partial"))
    assert len(errors) == 1
    assert errors[0].startswith(f"r.csv line 3: RequiredProgrammeMissing: {OLD}: tekun_care_partial requires one of ")
    # The basic form on a later line of the same import satisfies it.
    import_rows(registry, tmp_path, row(OLD, "tekun_care_partial"), row(OLD, "tekun_rural_dispersed"))
    assert set(registry.person(OLD).enrolments) == {"tekun_care_partial", "tekun_rural_dispersed"}


def test_a_care_subsidy_counts_basic_tekun_already_in_the_ledger_only_while_active(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, _ = ledger(db, policy_text)
    import_rows(registry, tmp_path, row(OLD, "tekun_rural_dispersed"))
    _decide(registry, "terminate", OLD, "tekun_rural_dispersed", date(2017, 3, 1))
    errors = _refused(registry, tmp_path, row(OLD, "tekun_care_full", start="2017-04-01"))
    assert "RequiredProgrammeMissing" in errors[0]
    import_rows(registry, tmp_path, row(OLD, "tekun_care_full", start="2017-02-01"), name="before-the-end.csv")


def test_the_care_subsidy_is_accepted_alone_when_the_policy_has_no_requires(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, _ = ledger(db, _without(policy_text, "tekun_care_partial", "requires"))
    import_rows(registry, tmp_path, row(OLD, "tekun_care_partial"))


def test_an_above_line_household_is_refused_and_accepted_without_the_income_test(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, _ = ledger(db, policy_text)
    # Urban dibao 555 元 (000_… 一.1): two members with 1200 元 are 600 a head, above the line.
    above = LI.replace(",2,300.00,", ",2,1200.00,")
    errors = _refused(registry, tmp_path, WANG, above)
    assert errors == (
        "r.csv line 3: IncomeAtOrAboveStandard: 152601198001011239: per-capita income 600.00 元 a month is at or "
        "above the urban_dibao standard 555.00 元 on 2017-01-01 (policy key income_test)",
    )
    registry, _ = ledger(_fresh(db), _without(policy_text, "urban_dibao", "income_test"))
    import_rows(registry, tmp_path, WANG, above)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("6228480045001122337", "6228480045001122345"),
            "account 6228480045001122345 differs from 6228480045001122337 recorded in the ledger; use `account set`",
        ),
        (("103191000012", "103191000099"), "bank_code 103191000099 differs from 103191000012 recorded in the ledger"),
        (("李建华", "李建华华"), "name 李建华华 differs from 李建华 recorded in the ledger; use `decide rename`"),
        (
            (",2,300.00,", ",2,310.00,"),
            "urban_dibao: monthly_income 310.00 differs from 300.00 in the ledger; use `decide change`",
        ),
        ((",2,300.00,0,", ",3,300.00,0,"), "members 3 differs from 2 in the ledger"),
        ((",2,300.00,0,", ",2,300.00,1,"), "special_members 1 differs from 0 in the ledger"),
    ],
)
def test_a_reimported_row_that_differs_is_refused_naming_the_field_and_the_command(
    db: Database, policy_text: str, tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    registry, _ = ledger(db, policy_text)
    import_rows(registry, tmp_path, LI, WANG)
    errors = _refused(registry, tmp_path, WANG, LI.replace(*change))
    assert len(errors) == 1 and errors[0].startswith("r.csv line 3: RowDiffersFromLedger: "), errors
    assert message in errors[0]
    person = registry.person("152601198001011239")
    assert (person.name, person.account) == ("李建华", "6228480045001122337")


def test_two_rows_of_one_person_in_one_import_must_agree_on_the_account(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, _ = ledger(db, policy_text)
    basic = row(OLD, "tekun_rural_dispersed")
    care = row(OLD, "tekun_care_partial").replace("6228480045001122337", "6228480045001122345")
    errors = _refused(registry, tmp_path, basic, care)
    assert "recorded in line 2; use `account set`" in errors[0]


def test_an_identical_reimport_is_still_unchanged(db: Database, policy_text: str, tmp_path: Path) -> None:
    registry, _ = ledger(db, policy_text)
    import_rows(registry, tmp_path, LI, WANG)
    before = registry.recorder.max_notification_id()
    import_rows(registry, tmp_path, LI, WANG)
    assert registry.recorder.max_notification_id() == before


def test_resume_is_refused_when_the_required_programme_ended_meanwhile(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    registry, _ = ledger(db, policy_text)
    import_rows(registry, tmp_path, row(OLD, "tekun_rural_dispersed"), row(OLD, "tekun_care_partial"))
    _decide(registry, "suspend", OLD, "tekun_care_partial", date(2017, 2, 1))
    _decide(registry, "terminate", OLD, "tekun_rural_dispersed", date(2017, 3, 1))
    before = registry.recorder.max_notification_id()
    with pytest.raises(RequiredProgrammeMissing):
        _decide(registry, "resume", OLD, "tekun_care_partial", date(2017, 4, 1))
    assert registry.recorder.max_notification_id() == before
    # Before the basic subsidy ended, resuming is fine.
    _decide(registry, "resume", OLD, "tekun_care_partial", date(2017, 2, 15))


def test_resume_is_refused_past_the_age_maximum_and_accepted_without_it(
    db: Database, policy_text: str, tmp_path: Path
) -> None:
    teen = resident_id("150902", "20020601", 4)  # 14 on 2017-01-01, 18 on 2020-06-01
    cases = ((policy_text, True, "with"), (_without(policy_text, "orphan_dispersed", "age_max"), False, "without"))
    for text, refused, suffix in cases:
        registry, _ = ledger(_fresh(db, suffix), text)
        import_rows(registry, tmp_path, row(teen, "orphan_dispersed"))
        _decide(registry, "suspend", teen, "orphan_dispersed", date(2017, 2, 1))
        if refused:
            with pytest.raises(AgeAboveMaximum, match="aged 18 on 2020-07-01"):
                _decide(registry, "resume", teen, "orphan_dispersed", date(2020, 7, 1))
        else:
            _decide(registry, "resume", teen, "orphan_dispersed", date(2020, 7, 1))


def _fresh(db: Database, suffix: str = "clean") -> Database:
    """An empty store of the same kind, for another ledger in the same test (dropped with the test's)."""
    if db.kind == "sqlite":
        return database_from_url(db.url.replace("ledger.db", f"{suffix}.db"))
    return database_from_url(f"{db.url}_{suffix}")
