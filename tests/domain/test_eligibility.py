"""The Person aggregate: enrolments, exclusions (000_… 四), decisions and their timeline, phase-out (004_…).

Given the events a person has, when a command is given, then the events (or the refusal) that follow.
"""

from __future__ import annotations

import tomllib
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from eventsourcing.application import Application

from domain.eligibility import (
    ACTIVE,
    ENDED,
    PENDING,
    SUSPENDED,
    TERMINATED,
    AlreadyEnrolled,
    DecisionBeforeEnrolment,
    DecisionNotAllowed,
    Person,
    PersonRecord,
    ProgrammesExclude,
    UnknownEnrolment,
    apply_person_event,
    person_id,
)
from domain.periods import Month
from domain.policy import HouseholdFacts, parse_policy

POLICY = Path(__file__).resolve().parents[2] / "ledger" / "data" / "ulanqab-2017.toml"
with POLICY.open("rb") as _f:
    PAIRS = parse_policy(tomllib.load(_f)).excluded_pairs()

LI = "152601198001011239"
URBAN_HOUSEHOLD = HouseholdFacts(members=2, monthly_income_fen=30000, special_members=0)
SINGLE = HouseholdFacts(members=1, monthly_income_fen=0, special_members=0)


def registered(id_number: str = LI) -> Person:
    return Person(
        id_number=id_number,
        name="李建华",
        birth_date="1980-01-01",
        bank_code="103191000012",
        account="6228480045001122337",
        actor="clerk",
    )


def enrol(
    person: Person,
    programme: str,
    effective_from: date,
    household: HouseholdFacts = SINGLE,
    decision_ref: str = "集民发〔2017〕2号",
) -> bool:
    return person.enrol(
        programme=programme,
        region="150902",
        effective_from=effective_from,
        household=household,
        decision_ref=decision_ref,
        actor="clerk",
        excluded_pairs=PAIRS,
    )


def decide(person: Person, kind: str, programme: str, on: date, amount_fen: int | None = None) -> None:
    person.decide(
        kind=kind,
        programme=programme,
        on=on,
        actor="clerk",
        reason="集民发〔2017〕9号",
        amount_fen=amount_fen,
        excluded_pairs=PAIRS,
    )


def enrolled_in_urban_dibao(effective_from: date = date(2017, 1, 1)) -> Person:
    person = registered()
    enrol(person, "urban_dibao", effective_from, URBAN_HOUSEHOLD)
    return person


def event_names(person: Person) -> list[str]:
    return [type(e).__name__ for e in person.collect_events()]


# --- enrolment -----------------------------------------------------------------------------------


def test_a_registered_person_has_a_deterministic_id_from_the_id_number() -> None:
    person = registered()
    assert person.id == person_id(LI)
    assert registered().id == person.id
    assert registered("152621197505052342").id != person.id


def test_enrolling_records_an_enrolled_event_with_the_terms() -> None:
    person = registered()
    person.collect_events()
    assert enrol(person, "urban_dibao", date(2017, 1, 1), URBAN_HOUSEHOLD) is True
    events = person.collect_events()
    assert [type(e).__name__ for e in events] == ["Enrolled"]
    enrolment = person.enrolments["urban_dibao"]
    assert (enrolment.region, enrolment.effective_from, enrolment.household) == (
        "150902",
        date(2017, 1, 1),
        URBAN_HOUSEHOLD,
    )


def test_an_identical_re_enrolment_returns_false_and_records_nothing() -> None:
    person = enrolled_in_urban_dibao()
    person.collect_events()
    assert enrol(person, "urban_dibao", date(2017, 1, 1), URBAN_HOUSEHOLD) is False
    assert event_names(person) == []


@pytest.mark.parametrize(
    "change",
    [
        {"effective_from": date(2017, 2, 1)},
        {"household": HouseholdFacts(3, 30000, 0)},
        {"decision_ref": "集民发〔2017〕3号"},
    ],
)
def test_a_re_enrolment_with_other_terms_raises_already_enrolled(change: dict) -> None:
    person = enrolled_in_urban_dibao()
    person.collect_events()
    terms = {
        "effective_from": date(2017, 1, 1),
        "household": URBAN_HOUSEHOLD,
        "decision_ref": "集民发〔2017〕2号",
    }
    with pytest.raises(AlreadyEnrolled, match="decide adjust"):
        enrol(person, "urban_dibao", **(terms | change))
    assert event_names(person) == []


# --- exclusions (000_a883bdda05437b65.txt 四) ------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "new"),
    [
        ("rural_dibao", "tekun_rural_dispersed"),
        ("tekun_rural_dispersed", "rural_dibao"),
        ("orphan_dispersed", "tekun_rural_dispersed"),
        ("tekun_rural_dispersed", "orphan_dispersed"),
    ],
)
def test_an_enrolment_that_breaks_an_exclusion_is_refused_naming_both_programmes(held: str, new: str) -> None:
    person = registered()
    enrol(person, held, date(2017, 1, 1))
    person.collect_events()
    with pytest.raises(ProgrammesExclude) as refused:
        enrol(person, new, date(2017, 3, 1))
    assert held in refused.value.rule
    assert new in refused.value.rule
    assert new not in person.enrolments
    assert event_names(person) == []


def test_an_enrolment_in_an_excluded_programme_is_refused_while_the_other_ends_later() -> None:
    person = registered()
    enrol(person, "rural_dibao", date(2017, 1, 1))
    decide(person, "terminate", "rural_dibao", date(2017, 6, 1))
    with pytest.raises(ProgrammesExclude):
        enrol(person, "tekun_rural_dispersed", date(2017, 5, 1))


@pytest.mark.parametrize("new_from", [date(2017, 6, 1), date(2017, 7, 1)])
def test_an_enrolment_in_an_excluded_programme_is_allowed_once_the_other_has_ended(new_from: date) -> None:
    # Given rural dibao terminated from 2017-06-01
    person = registered()
    enrol(person, "rural_dibao", date(2017, 1, 1))
    decide(person, "terminate", "rural_dibao", date(2017, 6, 1))
    person.collect_events()
    # When 特困 starts on or after that day, then it is recorded
    assert enrol(person, "tekun_rural_dispersed", new_from) is True
    assert event_names(person) == ["Enrolled"]


def test_an_enrolment_in_an_excluded_programme_is_allowed_after_the_other_phased_out() -> None:
    person = registered()
    enrol(person, "rural_dibao", date(2017, 1, 1))
    decide(person, "phase-out", "rural_dibao", date(2017, 3, 1))  # ends 2017-09-01
    with pytest.raises(ProgrammesExclude):
        enrol(person, "tekun_rural_dispersed", date(2017, 8, 1))
    assert enrol(person, "tekun_rural_dispersed", date(2017, 9, 1)) is True


def test_programmes_that_do_not_exclude_each_other_can_be_held_together() -> None:
    person = registered()
    enrol(person, "urban_dibao", date(2017, 1, 1))
    assert enrol(person, "youfu_topup", date(2017, 1, 1)) is True


# --- decisions and the status timeline -----------------------------------------------------------


def test_suspend_resume_and_terminate_make_a_status_timeline_by_effective_date() -> None:
    person = enrolled_in_urban_dibao()
    person.collect_events()
    decide(person, "suspend", "urban_dibao", date(2017, 2, 1))
    decide(person, "resume", "urban_dibao", date(2017, 4, 1))
    decide(person, "terminate", "urban_dibao", date(2017, 8, 15))
    assert event_names(person) == ["DecisionRecorded"] * 3
    enrolment = person.enrolments["urban_dibao"]
    assert enrolment.status_on(date(2016, 12, 31)) == PENDING
    assert enrolment.status_on(date(2017, 1, 1)) == ACTIVE
    assert enrolment.status_on(date(2017, 1, 31)) == ACTIVE
    assert enrolment.status_on(date(2017, 2, 1)) == SUSPENDED
    assert enrolment.status_on(date(2017, 3, 31)) == SUSPENDED
    assert enrolment.status_on(date(2017, 4, 1)) == ACTIVE
    assert enrolment.status_on(date(2017, 8, 14)) == ACTIVE
    assert enrolment.status_on(date(2017, 8, 15)) == TERMINATED
    assert enrolment.status_on(date(2030, 1, 1)) == TERMINATED


def test_a_decision_recorded_late_still_applies_from_its_effective_date() -> None:
    person = enrolled_in_urban_dibao()
    decide(person, "suspend", "urban_dibao", date(2017, 6, 1))
    decide(person, "suspend", "urban_dibao", date(2017, 3, 1))  # recorded later, effective earlier
    decide(person, "resume", "urban_dibao", date(2017, 4, 1))
    enrolment = person.enrolments["urban_dibao"]
    assert [d.effective_on for d in enrolment.decisions] == [
        date(2017, 3, 1),
        date(2017, 4, 1),
        date(2017, 6, 1),
    ]
    assert enrolment.status_on(date(2017, 3, 15)) == SUSPENDED
    assert enrolment.status_on(date(2017, 5, 1)) == ACTIVE
    assert enrolment.status_on(date(2017, 6, 1)) == SUSPENDED


def test_adjust_records_the_approved_monthly_amount_from_its_date() -> None:
    person = enrolled_in_urban_dibao()
    decide(person, "adjust", "urban_dibao", date(2017, 3, 1), amount_fen=50000)
    enrolment = person.enrolments["urban_dibao"]
    assert enrolment.override_fen_on(date(2017, 2, 28)) is None
    assert enrolment.override_fen_on(date(2017, 3, 1)) == 50000
    assert enrolment.status_on(date(2017, 3, 1)) == ACTIVE


def test_adjust_without_an_amount_is_not_allowed() -> None:
    person = enrolled_in_urban_dibao()
    with pytest.raises(DecisionNotAllowed, match="amount"):
        decide(person, "adjust", "urban_dibao", date(2017, 3, 1))
    with pytest.raises(DecisionNotAllowed, match="amount"):
        decide(person, "adjust", "urban_dibao", date(2017, 3, 1), amount_fen=-1)


@pytest.mark.parametrize(
    ("before", "kind"),
    [
        ((), "resume"),  # active: nothing to resume
        ((("suspend", date(2017, 2, 1)),), "suspend"),  # already suspended
        ((("suspend", date(2017, 2, 1)),), "phase-out"),  # phase-out is for an active enrolment
        ((("terminate", date(2017, 2, 1)),), "resume"),
        ((("terminate", date(2017, 2, 1)),), "suspend"),
        ((("terminate", date(2017, 2, 1)),), "terminate"),
        ((("terminate", date(2017, 2, 1)),), "adjust"),
        ((("phase-out", date(2017, 2, 1)),), "resume"),
    ],
)
def test_a_decision_from_the_wrong_status_is_not_allowed(before: tuple, kind: str) -> None:
    person = enrolled_in_urban_dibao()
    for earlier_kind, on in before:
        decide(person, earlier_kind, "urban_dibao", on)
    person.collect_events()
    with pytest.raises(DecisionNotAllowed):
        decide(person, kind, "urban_dibao", date(2017, 9, 1), amount_fen=100)
    assert event_names(person) == []


def test_a_decision_before_the_enrolment_starts_is_refused() -> None:
    person = enrolled_in_urban_dibao(date(2017, 3, 1))
    person.collect_events()
    with pytest.raises(DecisionBeforeEnrolment):
        decide(person, "suspend", "urban_dibao", date(2017, 2, 28))
    assert event_names(person) == []


def test_a_decision_on_a_programme_without_enrolment_is_refused() -> None:
    person = enrolled_in_urban_dibao()
    with pytest.raises(UnknownEnrolment, match="rural_dibao"):
        decide(person, "suspend", "rural_dibao", date(2017, 3, 1))


def test_resuming_is_refused_while_an_excluded_programme_is_held() -> None:
    # Given rural dibao and 特困 both held under an earlier policy that did not exclude them,
    # and rural dibao suspended
    person = registered()
    for programme in ("rural_dibao", "tekun_rural_dispersed"):
        person.enrol(
            programme=programme,
            region="150902",
            effective_from=date(2017, 1, 1),
            household=SINGLE,
            decision_ref="集民发〔2017〕2号",
            actor="clerk",
            excluded_pairs=frozenset(),
        )
    decide(person, "suspend", "rural_dibao", date(2017, 2, 1))
    person.collect_events()
    # When rural dibao is resumed under the policy that excludes them, then it is refused
    with pytest.raises(ProgrammesExclude) as refused:
        decide(person, "resume", "rural_dibao", date(2017, 4, 1))
    assert refused.value.rule == "rural_dibao_excludes_tekun_rural_dispersed"
    assert event_names(person) == []


def test_resuming_is_allowed_once_the_excluded_programme_has_ended() -> None:
    person = registered()
    for programme in ("rural_dibao", "tekun_rural_dispersed"):
        person.enrol(
            programme=programme,
            region="150902",
            effective_from=date(2017, 1, 1),
            household=SINGLE,
            decision_ref="集民发〔2017〕2号",
            actor="clerk",
            excluded_pairs=frozenset(),
        )
    decide(person, "suspend", "rural_dibao", date(2017, 2, 1))
    decide(person, "terminate", "tekun_rural_dispersed", date(2017, 3, 1))
    decide(person, "resume", "rural_dibao", date(2017, 4, 1))
    assert person.enrolments["rural_dibao"].status_on(date(2017, 4, 1)) == ACTIVE


def test_a_person_whose_enrolment_ended_can_be_enrolled_again_later() -> None:
    person = enrolled_in_urban_dibao()
    decide(person, "terminate", "urban_dibao", date(2017, 6, 1))
    assert enrol(person, "urban_dibao", date(2018, 3, 1), URBAN_HOUSEHOLD, "集民发〔2018〕7号") is True


# --- payability and phase-out --------------------------------------------------------------------


def _payable_months(
    person: Person, programme: str, first: Month, last: Month, *, starts: str = "same_month", stops: str = "next_month"
) -> list[str]:
    """The months the enrolment pays (Enrolment.active_spans) between `first` and `last`."""
    spans = person.enrolments[programme].active_spans(starts, stops)
    months = []
    month = first
    while month <= last:
        if any(a <= month.ordinal < b for a, b in spans):
            months.append(str(month))
        month = month.plus(1)
    return months


def test_an_enrolment_from_the_15th_pays_its_own_month_by_default() -> None:
    person = enrolled_in_urban_dibao(date(2017, 1, 15))
    assert _payable_months(person, "urban_dibao", Month(2016, 12), Month(2017, 2)) == ["2017-01", "2017-02"]


def test_an_enrolment_from_the_15th_pays_from_the_next_month_when_the_programme_starts_next_month() -> None:
    person = enrolled_in_urban_dibao(date(2017, 1, 15))
    assert _payable_months(person, "urban_dibao", Month(2016, 12), Month(2017, 2), starts="next_month") == ["2017-02"]


def test_a_termination_on_the_start_day_pays_nothing() -> None:
    """Found by the model test (tests/reliability/test_model.py): enrolled from 2017-01-28 and terminated
    from 2017-01-28, the enrolment is never active for a day, so there is no "month of the last active
    day" to pay; January was paid."""
    person = enrolled_in_urban_dibao(date(2017, 1, 28))
    decide(person, "terminate", "urban_dibao", date(2017, 1, 28))
    assert _payable_months(person, "urban_dibao", Month(2016, 12), Month(2017, 3)) == []


def test_a_suspension_on_the_day_of_the_resumption_pays_nothing_of_that_month() -> None:
    """Suspended from 2017-01-15, resumed and suspended again (recorded after) from 2017-03-15: not
    active a day of March, so March is not paid; January is (active 1–14)."""
    person = enrolled_in_urban_dibao()
    decide(person, "suspend", "urban_dibao", date(2017, 1, 15))
    decide(person, "resume", "urban_dibao", date(2017, 3, 15))
    decide(person, "suspend", "urban_dibao", date(2017, 3, 15))
    assert _payable_months(person, "urban_dibao", Month(2016, 12), Month(2017, 5)) == ["2017-01"]


def test_a_suspension_from_the_1st_of_april_pays_march_not_april_under_either_stop_rule() -> None:
    for stops in ("next_month", "same_month"):
        person = enrolled_in_urban_dibao()
        decide(person, "suspend", "urban_dibao", date(2017, 4, 1))
        assert _payable_months(person, "urban_dibao", Month(2017, 2), Month(2017, 5), stops=stops) == [
            "2017-02",
            "2017-03",
        ]


def test_a_death_on_the_10th_of_february_pays_february_by_default_and_not_with_same_month() -> None:
    person = enrolled_in_urban_dibao(date(2021, 1, 1))
    decide(person, "terminate", "urban_dibao", date(2021, 2, 10))
    assert _payable_months(person, "urban_dibao", Month(2021, 1), Month(2021, 4)) == ["2021-01", "2021-02"]
    assert _payable_months(person, "urban_dibao", Month(2021, 1), Month(2021, 4), stops="same_month") == ["2021-01"]


def test_a_suspension_and_resumption_inside_one_month_pays_every_month() -> None:
    person = enrolled_in_urban_dibao()
    decide(person, "suspend", "urban_dibao", date(2017, 3, 10))
    decide(person, "resume", "urban_dibao", date(2017, 3, 20))
    assert _payable_months(person, "urban_dibao", Month(2017, 2), Month(2017, 4)) == ["2017-02", "2017-03", "2017-04"]


def test_a_suspension_for_april_and_may_pays_from_june_again() -> None:
    person = enrolled_in_urban_dibao()
    decide(person, "suspend", "urban_dibao", date(2017, 4, 1))
    decide(person, "resume", "urban_dibao", date(2017, 6, 1))
    assert _payable_months(person, "urban_dibao", Month(2017, 3), Month(2017, 7)) == ["2017-03", "2017-06", "2017-07"]


def test_the_earlier_payability_rule_still_reads_old_ledgers() -> None:
    enrolment = enrolled_in_urban_dibao(date(2017, 1, 15)).enrolments["urban_dibao"]
    assert enrolment.payable_in(Month(2017, 1)) is False
    assert enrolment.payable_in(Month(2017, 2)) is True


def test_a_phase_out_decided_on_the_1st_of_march_pays_march_to_august_then_ends_by_itself() -> None:
    # Given an active enrolment, when phase-out is decided effective 2017-03-01
    person = enrolled_in_urban_dibao()
    decide(person, "phase-out", "urban_dibao", date(2017, 3, 1))
    enrolment = person.enrolments["urban_dibao"]
    # Then it is paid March to August (6 months) and ENDED from 2017-09-01 without another decision
    assert enrolment.decisions[-1].ends_on == date(2017, 9, 1)
    assert _payable_months(person, "urban_dibao", Month(2017, 1), Month(2018, 2)) == [
        "2017-01",
        "2017-02",
        "2017-03",
        "2017-04",
        "2017-05",
        "2017-06",
        "2017-07",
        "2017-08",
    ]
    assert enrolment.status_on(date(2017, 8, 31)) == ACTIVE
    assert enrolment.status_on(date(2017, 9, 1)) == ENDED
    assert enrolment.status_on(date(2019, 1, 1)) == ENDED
    assert enrolment.end_date() == date(2017, 9, 1)


def test_a_phase_out_decided_mid_march_pays_march_to_august_as_its_six_months() -> None:
    person = enrolled_in_urban_dibao()
    decide(person, "phase-out", "urban_dibao", date(2017, 3, 15))
    enrolment = person.enrolments["urban_dibao"]
    assert enrolment.decisions[-1].ends_on == date(2017, 9, 1)
    # The six months m … m+5 of D's month (DESIGN.md "Entitlement over time"), whatever the stop rule.
    for stops in ("next_month", "same_month"):
        assert _payable_months(person, "urban_dibao", Month(2017, 1), Month(2017, 12), stops=stops) == [
            "2017-01",
            "2017-02",
            "2017-03",
            "2017-04",
            "2017-05",
            "2017-06",
            "2017-07",
            "2017-08",
        ]


def test_a_phase_out_recorded_by_an_earlier_release_keeps_the_end_it_stored() -> None:
    person = enrolled_in_urban_dibao()
    decide(person, "phase-out", "urban_dibao", date(2017, 3, 15))
    enrolment = person.enrolments["urban_dibao"]
    stored = replace(enrolment.decisions[-1], ends_on=date(2017, 10, 1))  # six months from April
    old = replace(enrolment, decisions=(*enrolment.decisions[:-1], stored))
    assert old.active_spans() == ((Month(2017, 1).ordinal, Month(2017, 10).ordinal),)


def test_a_suspended_month_is_not_payable() -> None:
    person = enrolled_in_urban_dibao()
    decide(person, "suspend", "urban_dibao", date(2017, 2, 1))
    decide(person, "resume", "urban_dibao", date(2017, 4, 1))
    assert _payable_months(person, "urban_dibao", Month(2017, 1), Month(2017, 5)) == [
        "2017-01",
        "2017-04",
        "2017-05",
    ]


def test_a_suspension_from_mid_month_stops_payment_from_the_next_month() -> None:
    person = enrolled_in_urban_dibao()
    decide(person, "suspend", "urban_dibao", date(2017, 2, 15))
    assert _payable_months(person, "urban_dibao", Month(2017, 1), Month(2017, 4)) == ["2017-01", "2017-02"]


# --- account -------------------------------------------------------------------------------------


def test_set_account_records_a_corrected_account() -> None:
    person = registered()
    person.collect_events()
    assert person.set_account(bank_code="402191000034", account="6217002050123456789", reason="销户", actor="clerk")
    assert event_names(person) == ["AccountChanged"]
    assert (person.bank_code, person.account) == ("402191000034", "6217002050123456789")


def test_set_account_to_the_same_account_returns_false_and_records_nothing() -> None:
    person = registered()
    person.collect_events()
    assert (
        person.set_account(bank_code="103191000012", account="6228480045001122337", reason="核对", actor="clerk")
        is False
    )
    assert event_names(person) == []


# --- replay: the stored events rebuild the same person ---------------------------------------------


def a_person_with_history() -> Person:
    person = registered()
    enrol(person, "rural_dibao", date(2017, 1, 1), HouseholdFacts(3, 20000, 1))
    enrol(person, "youfu_topup", date(2017, 1, 15))
    decide(person, "suspend", "rural_dibao", date(2017, 2, 1))
    decide(person, "resume", "rural_dibao", date(2017, 4, 1))
    decide(person, "adjust", "rural_dibao", date(2017, 5, 1), amount_fen=70000)
    decide(person, "phase-out", "youfu_topup", date(2017, 3, 15))
    decide(person, "terminate", "rural_dibao", date(2017, 6, 1))
    enrol(person, "tekun_rural_dispersed", date(2017, 7, 1))
    person.set_account(bank_code="402191000034", account="6217002050123456789", reason="销户", actor="clerk")
    return person


def test_replaying_the_stored_events_gives_the_same_person() -> None:
    # Given a person with enrolments, decisions and a changed account, saved in an event store
    person = a_person_with_history()
    app = Application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.save(person)
    # When the aggregate is rebuilt from its stored events
    replayed = app.repository.get(person.id)
    # Then it holds the same enrolments, decisions and account
    assert replayed.enrolments == person.enrolments
    assert (replayed.bank_code, replayed.account) == (person.bank_code, person.account)
    assert replayed.version == person.version


def test_the_bulk_fold_of_the_stored_events_gives_the_same_enrolments_as_the_aggregate() -> None:
    person = a_person_with_history()
    app = Application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.save(person)
    records: dict = {}
    notifications = app.recorder.select_notifications(start=1, limit=100)
    for notification in notifications:
        domain_event = app.mapper.to_domain_event(notification)
        apply_person_event(
            records,
            notification.originator_id,
            type(domain_event).__name__,
            vars(domain_event),
            notification.id,
        )
    record = records[person.id]
    assert isinstance(record, PersonRecord)
    assert record.enrolments == person.enrolments
    assert (record.id_number, record.name, record.birth_date) == (LI, "李建华", date(1980, 1, 1))
    assert (record.bank_code, record.account) == (person.bank_code, person.account)
    assert record.last_position == notifications[-1].id
