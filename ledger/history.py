"""One person's history, for auditors: every event that touches an ID number, in order of recording.

Guarantees:
- Complete from the log alone. The registry's events are the person's own aggregate. Payments are
  found by their deterministic ids, not by scanning: a payment is `payment_id(ID number, programme,
  period)` under the ledger's id scheme (domain.ids) and lies in a batch of that programme and
  period, so the candidates are that id for every (programme, period) any batch was drafted for;
  every candidate is looked up by primary key in bulk (ledger.storage.first_event_states). This finds
  payments the person's enrolments would not explain (planted, or imported before a rule existed),
  which is what an auditor looks for. Re-issues (补发) are found the same way,
  `reissue_id(returned payment)`, until a generation has none.
- Batch events (exports with file names and SHA-256, approval, submission, bank results) are read from
  the batches those payments belong to; results are reported for this person's payments only.
- Full data: names, ID numbers and accounts unmasked, since auditors must see what was paid where.
  Public outputs mask (exporters); this module is for `yikatong audit history`.
- Two time axes side by side: `recorded_at` is when the event was stored (its timestamp), and
  `effective_on` is the date it takes effect (an enrolment's start, a decision's date, a payment's
  period start, a bank's settlement date), or "" when the event has none.

Each entry is a dict of JSON primitives with at least `recorded_at`, `effective_on`, `event`, `actor`,
`programme` and `period`, plus the fields of its kind (see `_entry_*`). `describe(entry)` renders one
line for people.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.disbursement import BATCH_REGISTER_ID, bank_file_id, reissue_id
from domain.eligibility import UnknownEnrolment
from domain.money import format_yuan
from domain.periods import Period
from exporters.rows import reason_zh
from ledger.disbursement import PaymentView
from ledger.storage import first_event_states
from projections.codec import datetime_text

REISSUE_GENERATIONS_MAX = 100  # a payment returned and re-issued more often than this is our mistake

_PERSON = "domain.eligibility:Person."
_BATCH = "domain.disbursement:Batch."


def person_history(registry: Any, disbursement: Any, id_number: str) -> list[dict[str, Any]]:
    """Every event touching `id_number`, ordered by recorded time (ties keep log order)."""
    id_number = id_number.strip().upper()
    entries = _person_entries(registry, id_number)
    payments = payments_of(disbursement, id_number)
    if not entries and not payments:
        raise UnknownEnrolment(f"no person with id_number {id_number} in the registry and no payment to them")
    entries.extend(_entry_payment(pid, data) for pid, data in payments.items())
    entries.extend(_batch_entries(disbursement, payments))
    # Stable sort: events with equal timestamps keep the order in which they were gathered (the
    # person's own versions, then payments, then batch events in each batch's version order).
    entries.sort(key=lambda e: datetime.fromisoformat(e["recorded_at"]))
    return entries


# --- the registry: the person's own aggregate ----------------------------------------------------------


def _person_entries(registry: Any, id_number: str) -> list[dict[str, Any]]:
    entries = []
    for stored in registry.recorder.select_events(registry.ids.person_id(id_number)):
        name = stored.topic[len(_PERSON) :] if stored.topic.startswith(_PERSON) else stored.topic
        data = registry.payload(stored.state)
        entry = _PERSON_ENTRIES[name](data) if name in _PERSON_ENTRIES else _entry_unknown(name, data)
        entry["version"] = stored.originator_version
        entries.append(entry)
    return entries


def _base(data: dict[str, Any], event: str, *, effective_on: str = "", programme: str = "", period: str = "") -> dict:
    return {
        "recorded_at": _recorded_at(data),
        "effective_on": effective_on,
        "event": event,
        "actor": data.get("actor", ""),
        "programme": programme,
        "period": period,
    }


def _recorded_at(data: dict[str, Any]) -> str:
    return datetime_text(data.get("timestamp"))


def _enrolment(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "region": fields["region"],
        "members": fields["members"],
        "monthly_income_fen": fields["monthly_income_fen"],
        "special_members": fields["special_members"],
        "decision_ref": fields["decision_ref"],
        **({"member_ids": list(fields["member_ids"])} if fields.get("member_ids") else {}),
    }


def _entry_registered(data: dict[str, Any]) -> dict[str, Any]:
    first = data.get("enrolment") or {}
    entry = _base(
        data, "registered", effective_on=first.get("effective_from", ""), programme=first.get("programme", "")
    )
    entry.update(
        id_number=data["id_number"],
        name=data["name"],
        birth_date=data["birth_date"],
        bank_code=data["bank_code"],
        account=data["account"],
    )
    if first:
        entry.update(_enrolment(first))
    return entry


def _entry_enrolled(data: dict[str, Any]) -> dict[str, Any]:
    entry = _base(data, "enrolled", effective_on=data["effective_from"], programme=data["programme"])
    entry.update(_enrolment(data))
    return entry


def _entry_decision(data: dict[str, Any]) -> dict[str, Any]:
    entry = _base(data, "decision", effective_on=data["effective_on"], programme=data["programme"])
    entry.update(
        kind=data["kind"],
        reason=data["reason"],
        amount_fen=data.get("amount_fen"),
        ends_on=data.get("ends_on") or "",
    )
    if data.get("members") is not None:  # `decide change`: the household facts from its month
        entry.update(
            members=data["members"],
            monthly_income_fen=data["monthly_income_fen"],
            special_members=data["special_members"],
            phase_out=bool(data.get("phase_out")),
        )
    return entry


def _entry_account(data: dict[str, Any]) -> dict[str, Any]:
    entry = _base(data, "account_changed")
    entry.update(bank_code=data["bank_code"], account=data["account"], reason=data["reason"])
    return entry


def _entry_renamed(data: dict[str, Any]) -> dict[str, Any]:
    entry = _base(data, "renamed", effective_on=data["effective_on"])
    entry.update(name=data["name"], previous_name=data["previous_name"], reason=data["reason"])
    return entry


def _entry_unknown(name: str, data: dict[str, Any]) -> dict[str, Any]:
    """An event class this module does not know yet: shown with its raw fields, never dropped."""
    entry = _base(data, name)
    entry["fields"] = {k: v for k, v in data.items() if k not in ("timestamp", "originator_topic")}
    return entry


_PERSON_ENTRIES = {
    "Registered": _entry_registered,
    "Enrolled": _entry_enrolled,
    "DecisionRecorded": _entry_decision,
    "AccountChanged": _entry_account,
    "Renamed": _entry_renamed,
}


# --- payments, found by their ids ----------------------------------------------------------------------


def payments_of(disbursement: Any, id_number: str) -> dict[str, dict[str, Any]]:
    """Payment id (hex) → `Payment.Accrued` payload, first attempts and every re-issue."""
    recorder = disbursement.recorder
    payment_id = disbursement.ids.payment_id  # the ledger's id scheme (domain.ids)
    candidates = {payment_id(id_number, programme, period) for programme, period in batch_keys(disbursement)}
    found = _decoded(disbursement, first_event_states(recorder, candidates))
    generation = list(found)
    for _ in range(REISSUE_GENERATIONS_MAX):
        if not generation:
            break
        reissues = _decoded(disbursement, first_event_states(recorder, [reissue_id(p) for p in generation]))
        found.update(reissues)
        generation = list(reissues)
    else:
        raise AssertionError(f"more than {REISSUE_GENERATIONS_MAX} re-issues of one payment")
    return found


def batch_keys(disbursement: Any) -> set[tuple[str, str]]:
    """Every (programme, period) a batch was drafted for: from the batch register and each batch's
    `Drafted` event (version 1, read in bulk)."""
    return {(data["programme"], data["period"]) for data in drafted_batches(disbursement).values()}


def drafted_batches(disbursement: Any) -> dict[str, dict[str, Any]]:
    """Batch id (hex) → its `Drafted` payload, for every batch in the register."""
    ids = []
    for stored in disbursement.recorder.select_events(BATCH_REGISTER_ID):
        if stored.topic.endswith(".Registered"):
            ids.append(UUID(disbursement.payload(stored.state)["batch_id"]))
    return _decoded(disbursement, first_event_states(disbursement.recorder, ids))


def _decoded(disbursement: Any, states: dict[UUID, bytes]) -> dict[str, dict[str, Any]]:
    return {pid.hex: disbursement.payload(state) for pid, state in states.items()}


def _entry_payment(pid: str, data: dict[str, Any]) -> dict[str, Any]:
    """A payment as `PaymentView` reads it (the one reading of a `Payment.Accrued` payload), with the
    event's time and actor; the person's own id is the history's subject, not repeated per entry."""
    entry = _base(
        data,
        "reissued" if data.get("reissue_of") else "payment_accrued",
        effective_on=Period.parse(data["period"]).first_day.isoformat(),
        programme=data["programme"],
        period=data["period"],
    )
    view = asdict(PaymentView.from_payload(pid, data))
    entry.update((k, v) for k, v in view.items() if k not in ("id_number", "programme", "period"))
    return entry


# --- the batches those payments are in ------------------------------------------------------------------


def _batch_entries(disbursement: Any, payments: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    by_batch: dict[str, list[str]] = {}
    for pid, data in payments.items():
        if data["batch_id"]:  # "" : settled whole by offset, in no batch (docs/entitlement.md "Recoveries")
            by_batch.setdefault(data["batch_id"], []).append(pid)
    entries: list[dict[str, Any]] = []
    bank_files: set[str] = set()
    for batch_hex, pids in by_batch.items():
        entries.extend(_one_batch(disbursement, batch_hex, pids, bank_files))
    names = _bank_file_names(disbursement, bank_files)
    for entry in entries:
        if entry["event"] == "bank_result":
            entry["bank_file_name"] = names.get(entry["bank_file_sha256"], "")
    return entries


def _one_batch(disbursement: Any, batch_hex: str, pids: list[str], bank_files: set[str]) -> list[dict[str, Any]]:
    mine = set(pids)
    programme = period = ""
    entries = []
    for stored in disbursement.recorder.select_events(UUID(batch_hex)):
        name = stored.topic[len(_BATCH) :]
        if name == "PaymentsAdded":
            continue  # the payments' own `Accrued` events say when each joined the batch
        data = disbursement.payload(stored.state)
        if name == "Drafted":
            programme, period = data["programme"], data["period"]
            continue
        common = {"batch_id": batch_hex, "payment_ids": sorted(mine)}
        if name == "Exported":
            entry = _base(data, "batch_exported", programme=programme, period=period)
            entry.update(
                common,
                format=data["format"],
                files=[{"name": f, "sha256": sha} for f, sha in data["files"]],
                count=data["count"],
                total_fen=data["total_fen"],
            )
            entries.append(entry)
        elif name == "NamesCorrected":
            corrected = [(pid, new) for pid, new in data["names"] if pid in mine]
            if corrected:
                entry = _base(data, "batch_names_corrected", programme=programme, period=period)
                entry.update(common, names=[list(pair) for pair in corrected], reason=data["reason"])
                entries.append(entry)
        elif name in ("Approved", "Submitted"):
            entry = _base(data, f"batch_{name.lower()}", programme=programme, period=period)
            entry.update(common)
            entries.append(entry)
        elif name == "ResultsRecorded":
            bank_files.add(data["bank_file"])
            entries.extend(_results(data, mine, programme, period, batch_hex))
    return entries


def _results(data: dict[str, Any], mine: set[str], programme: str, period: str, batch_hex: str) -> list[dict]:
    entries = []
    for pid, status, reason_code, settled_on in data["results"]:
        if pid not in mine:
            continue
        entry = _base(data, "bank_result", effective_on=settled_on, programme=programme, period=period)
        entry.update(
            payment_id=pid,
            batch_id=batch_hex,
            status=status,
            reason_code=reason_code,
            reason_zh=reason_zh(reason_code),
            settled_on=settled_on,
            bank_file_sha256=data["bank_file"],
        )
        entries.append(entry)
    return entries


def _bank_file_names(disbursement: Any, shas: Iterable[str]) -> dict[str, str]:
    ids = {bank_file_id(sha): sha for sha in shas}
    states = first_event_states(disbursement.recorder, ids)
    return {ids[i]: disbursement.payload(state)["name"] for i, state in states.items()}


# --- for people --------------------------------------------------------------------------------------------


def describe(entry: dict[str, Any]) -> str:
    """One line saying what happened, for the CLI's table."""
    event = entry["event"]
    if event == "registered":
        account = f"{entry['bank_code']}/{entry['account']}"
        text = f"{entry['name']} {entry['id_number']} born {entry['birth_date']}, account {account}"
        if entry["programme"]:
            text += f"; enrolled {_enrolment_text(entry)}"
        return text
    if event == "enrolled":
        return f"enrolled {_enrolment_text(entry)}"
    if event == "decision":
        amount = f" {format_yuan(entry['amount_fen'])} 元/月" if entry.get("amount_fen") is not None else ""
        ends = f", ends {entry['ends_on']}" if entry.get("ends_on") else ""
        facts = ""
        if entry.get("members") is not None:
            facts = (
                f" {entry['members']} members, income {format_yuan(entry['monthly_income_fen'])} 元/月, "
                f"{entry['special_members']} special" + (", starts the phase-out" if entry.get("phase_out") else "")
            )
        return f"{entry['kind']}{facts}{amount}{ends} ({entry['reason']})"
    if event == "account_changed":
        return f"account → {entry['bank_code']}/{entry['account']} ({entry['reason']})"
    if event == "renamed":
        return f"name {entry['previous_name']} → {entry['name']} ({entry['reason']})"
    if event in ("payment_accrued", "reissued"):
        late = " late" if entry["late"] else ""
        again = f" re-issue of {entry['reissue_of'][:12]}" if entry["reissue_of"] else ""
        return (
            f"{format_yuan(entry['amount_fen'])} 元 to {entry['bank_code']}/{entry['account']}, batch "
            f"{entry['batch_id'][:12]} of month-end {entry['run_month']}, due {entry['due_date']}{late}{again} "
            f"[{entry['payment_id'][:12]}]"
        )
    if event == "batch_exported":
        files = ", ".join(f"{f['name']} sha256 {f['sha256'][:16]}…" for f in entry["files"])
        return f"batch {entry['batch_id'][:12]} exported as {entry['format']}: {files}"
    if event == "batch_names_corrected":
        names = ", ".join(sorted({new for _, new in entry["names"]}))
        return f"batch {entry['batch_id'][:12]} will export the name {names} ({entry['reason']})"
    if event in ("batch_approved", "batch_submitted"):
        return f"batch {entry['batch_id'][:12]} {event.split('_')[1]}"
    if event == "bank_result":
        reason = f" {entry['reason_code']} {entry['reason_zh']}" if entry["reason_code"] else ""
        return (
            f"{entry['status']}{reason} [{entry['payment_id'][:12]}] in "
            f"{entry.get('bank_file_name') or entry['bank_file_sha256'][:16]}"
        )
    return json.dumps(entry.get("fields", {}), ensure_ascii=False)


def _enrolment_text(entry: dict[str, Any]) -> str:
    return (
        f"{entry['programme']} in {entry['region']}, {entry['members']} members, income "
        f"{format_yuan(entry['monthly_income_fen'])} 元/月, {entry['special_members']} special "
        f"({entry['decision_ref']})"
    )
