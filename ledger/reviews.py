"""`report reviews`: households whose review (复核) is due (docs/entitlement.md, "Reviews").

004_f2a082fc87a827a6.txt 二.7: "对特困人员、短期内经济状况变化不大的低保家庭,每年核查一次;对收入来源不固定、家庭成员
有劳动能力的低保家庭,每半年核查一次。复核期内救助对象家庭经济状况没有明显变化的,不再调整救助水平". The policy states the
cycle per programme (`review_months`); a programme without it is never listed.

An enrolment's last review is the latest of its start and its latest `change` decision (the recorded result
of a 复核, `decide change`, whatever its date); its review is due `review_months` after that (the same day of
the month, clamped to the month's end). Enrolments that have ended (terminated, phase-out over) by the date
asked are not listed; suspended ones are (a suspension is often what a review must settle).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from domain.eligibility import ENDED, TERMINATED, Enrolment
from domain.periods import Month
from ledger.apps import RegistrySnapshot


def review_due_on(enrolment: Enrolment, review_months: int) -> date:
    """The day the next review of `enrolment` falls due: its last review plus `review_months` months."""
    last = enrolment.last_review()
    return Month.of(last).plus(review_months).day(last.day)


def review_rows(snapshot: RegistrySnapshot, due_by: date) -> list[dict[str, Any]]:
    """One row per enrolment whose review is due on or before `due_by`, earliest due first."""
    programmes = snapshot.policy.programmes
    rows = []
    for record in snapshot.persons.values():
        for enrolment in record.enrolments.values():
            rules = programmes.get(enrolment.programme)
            if rules is None or rules.review_months is None:
                continue
            if enrolment.status_on(due_by) in (TERMINATED, ENDED):
                continue
            due = review_due_on(enrolment, rules.review_months)
            if due > due_by:
                continue
            rows.append(
                {
                    "id_number": record.id_number,
                    "name": record.name,
                    "programme": enrolment.programme,
                    "region": enrolment.region,
                    "last_review": enrolment.last_review().isoformat(),
                    "due_date": due.isoformat(),
                    "review_months": rules.review_months,
                }
            )
    rows.sort(key=lambda r: (r["due_date"], r["region"], r["programme"], r["id_number"]))
    return rows
