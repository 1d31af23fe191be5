"""Who did what when: access records (logins, logouts, failed logins, refusals) and the actions log
(操作日志) read back from the event logs themselves.

Guarantees:
- `record_access` appends one `domain.access.AccessRecord` to the registry log and seals that log
  (ledger.audit), so `audit verify` covers it like any other event. Nothing else changes: no account
  event (a session names its account's version; ledger.sessions), no read model (the projections read
  the disbursement log). Each record is its own aggregate with a random id, so concurrent accesses never
  conflict.
- `operations` reads the actions log from the logs alone, newest first: every stored event that names
  its `actor` (every decision, import, export, approval, month-end, account change, …) and every access
  record. Consecutive person events of one kind by one actor in one log (a roster import's persons)
  are one row with a count (only the fields they share are shown). Events that name no actor are
  parts of an operation whose own event does (the payments and batch drafts of a month-end whose
  `RunCompleted` names who ran it; the audit seals), and are skipped by topic without being decoded.
- Bounded: at most `limit` rows a page, at most `SCAN_EVENTS_MAX` events looked at per log per page;
  a page says where the next (earlier) one starts in each log, so the whole log can be read page by page.
- Read-only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from domain.access import ACCESS_KINDS, AccessRecord
from ledger.audit import record_checkpoint
from ledger.storage import LogRow, log_rows
from projections.codec import datetime_text

SCAN_PAGE = 2_000  # stored events read per query, from the end backwards
SCAN_EVENTS_MAX = 200_000  # events looked at per log for one page of the actions log
ROWS_MAX = 500  # rows a page of the actions log may ask for
ACCESS_TOPIC = "domain.access:AccessRecord.Recorded"
# Topics that never name an actor: parts of an operation that another event names (the month-end's
# `RunCompleted`, a batch's export), or the audit chain's own seals. Skipped before decoding.
NO_ACTOR_TOPICS = (
    "domain.disbursement:Payment.",
    "domain.disbursement:Batch.Drafted",
    "domain.disbursement:Batch.PaymentsAdded",
    "domain.disbursement:BatchRegister.",
    "domain.disbursement:RunLog.Opened",
    "domain.accounts:AccountDirectory.Listed",
    "domain.policy_log:PolicyLog.Started",
    "domain.eligibility:MemberLists.",
    "ledger.audit:AuditChain.",
)
# Events one command records in bulk (a roster import: one per person), shown as one row with a count.
GROUPED_TOPICS = ("domain.eligibility:Person.",)
# The fields an actions-log row shows, when its event has them (never a password hash or a key).
SHOWN_FIELDS = (
    "kind",
    "channel",
    "name_tried",
    "role",
    "action",
    "method",
    "path",
    "rule",
    "address",
    "name",
    "id_number",
    "programme",
    "period",
    "month",
    "source",
    "format",
    "reason",
    "payments",
    "total_fen",
)


@dataclass(frozen=True, slots=True)
class Access:
    """One access to record. `name` is the account (for `login_failed`: the name tried)."""

    kind: str
    channel: str
    name: str
    role: str = ""
    action: str = ""
    method: str = ""
    path: str = ""
    rule: str = ""
    address: str = ""


def record_access(registry: Any, access: Access) -> UUID:
    """Append the access record and seal the registry log; returns the record's id."""
    record_id = uuid4()  # no natural key: two identical accesses at one moment are two accesses
    record = AccessRecord.record(
        record_id=record_id,
        kind=access.kind,
        channel=access.channel,
        name=access.name,
        role=access.role,
        action=access.action,
        method=access.method,
        path=access.path,
        rule=access.rule,
        address=access.address,
    )
    registry.save(record)
    record_checkpoint(registry, reseal=False)
    return record_id


# --- the actions log ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Operation:
    """One row of the actions log: `count` consecutive events of one kind by one actor in one log."""

    recorded_at: str  # ISO 8601, of the latest event of the row
    actor: str
    log: str  # "registry" | "disbursement"
    event: str  # `Class.Event`, e.g. "Person.Registered", "AccessRecord.Recorded"
    first_position: int
    last_position: int
    count: int
    fields: dict[str, Any] = field(default_factory=dict)  # SHOWN_FIELDS of the latest event

    @property
    def access(self) -> bool:
        return self.event == "AccessRecord.Recorded"

    def as_json(self) -> dict[str, Any]:
        return {
            "recorded_at": self.recorded_at,
            "actor": self.actor,
            "log": self.log,
            "event": self.event,
            "first_position": self.first_position,
            "last_position": self.last_position,
            "count": self.count,
            "fields": dict(self.fields),
        }


@dataclass(frozen=True, slots=True)
class OperationsPage:
    rows: tuple[Operation, ...]
    before: dict[str, int]  # where this page started, per log (exclusive)
    next_before: dict[str, int] | None  # where the next, earlier page starts; None: nothing earlier
    ends: dict[str, int]  # each log's last position when read


def operations(
    apps: dict[str, Any],
    *,
    before: dict[str, int] | None = None,
    limit: int = 100,
    actor: str | None = None,
    access_only: bool = False,
) -> OperationsPage:
    """A page of the actions log, newest first, from `apps` ({"registry": …, "disbursement": …}).

    `before`: per log, the position this page starts below (default: each log's end + 1). `actor`: only
    rows of that account (and failed logins that tried that name). `access_only`: only access records.
    """
    limit = max(1, min(limit, ROWS_MAX))
    ends = {name: app.recorder.max_notification_id() or 0 for name, app in apps.items()}
    start = {name: (before or {}).get(name, ends[name] + 1) for name in apps}
    scanned: dict[str, tuple[list[Operation], int]] = {}
    for name, app in apps.items():
        scanned[name] = _scan(app, name, start[name], limit, actor, access_only)
    merged = sorted(
        (op for ops, _ in scanned.values() for op in ops),
        key=lambda op: (datetime.fromisoformat(op.recorded_at), op.last_position),
        reverse=True,
    )
    shown = merged[:limit]
    next_before: dict[str, int] = {}
    for name, (ops, lowest) in scanned.items():
        taken = [op for op in shown if op.log == name]
        if len(taken) == len(ops):
            next_before[name] = lowest  # everything this log's scan found is on the page
        else:
            next_before[name] = min(op.first_position for op in taken) if taken else start[name]
    more = any(next_before[name] > 1 for name in apps)
    return OperationsPage(tuple(shown), start, next_before if more else None, ends)


def _scan(
    app: Any, log: str, below: int, limit: int, actor: str | None, access_only: bool
) -> tuple[list[Operation], int]:
    """Up to `limit` rows of one log below `below`, newest first, and the lowest position looked at."""
    found: list[Operation] = []
    high = below - 1
    looked = 0
    while high >= 1 and looked < SCAN_EVENTS_MAX:
        low = max(1, high - SCAN_PAGE + 1)
        rows = log_rows(app.recorder, low, high, SCAN_PAGE)
        for row in reversed(rows):
            looked += 1
            entry = _entry(app, log, row, actor, access_only)
            if entry is None:
                continue
            last = found[-1] if found else None
            if last is not None and _same_operation(last, entry, row.topic):
                last.count += 1
                last.first_position = entry.first_position
                # What differs between the events (each person's name) is not the operation's.
                last.fields = {k: v for k, v in last.fields.items() if entry.fields.get(k) == v}
                continue
            if len(found) >= limit:
                return found, row.id + 1
            found.append(entry)
        high = low - 1
    return found, high + 1


def _same_operation(last: Operation, entry: Operation, topic: str) -> bool:
    """One row for a run of one bulk kind (`GROUPED_TOPICS`) by one actor; every other event its own row."""
    return topic.startswith(GROUPED_TOPICS) and (last.actor, last.event) == (entry.actor, entry.event)


def _entry(app: Any, log: str, row: LogRow, actor: str | None, access_only: bool) -> Operation | None:
    topic = row.topic
    if topic.startswith(NO_ACTOR_TOPICS):
        return None
    is_access = topic == ACCESS_TOPIC
    if access_only and not is_access:
        return None
    data = app.codec.payload(row.state)
    if not is_access and "actor" not in data:
        return None
    who = str(data.get("actor", ""))
    if actor is not None and actor not in (who, data.get("name_tried")):
        return None
    event = topic.split(":", 1)[-1]
    shown = {key: data[key] for key in SHOWN_FIELDS if key in data and data[key] not in ("", None)}
    if is_access and shown.get("kind") not in ACCESS_KINDS:
        shown["kind"] = "unknown"
    return Operation(datetime_text(data.get("timestamp")), who, log, event, row.id, row.id, 1, shown)
