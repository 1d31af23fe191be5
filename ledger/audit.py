"""`audit verify`: prove that the event logs were not edited, that the read models equal a rebuild, and
that every exported file regenerates byte-for-byte.

What a checkpoint guarantees (docs/audit.md gives the reasoning and the trade-offs):
- Each application log (registry_events, disbursement_events) has its own hash chain. Every stored event
  hashes to sha256(notification id, originator id, originator version, topic, state bytes), and
  h(n) = sha256(h(n-1) ‖ event hash n), starting from a genesis hash named after the application.
- `record_checkpoint(app)` seals the events recorded since the previous checkpoint, in the same
  application's log, as `AuditChain.Sealed` events: the chain hash at the last sealed position and, for
  each sealed event, the first 8 bytes of its hash (its digest). It reads only the new events and the
  chain's last event, so it costs O(new events). The seal itself lands after the position it seals;
  the next checkpoint covers it.
- `verify_log(app)` re-hashes the whole log from position 1, page by page, and compares every event
  with its digest and every seal with the chain. Because each event has its own digest, the first
  changed byte is reported at the position of the event that holds it; a deleted event is reported at
  its own position (its digest has no row); an event that appears where the seal saw none (a
  notification id that was a gap) is reported as inserted; a reordered pair is two changed events, and
  the first is named. Gaps in notification ids are not evidence by themselves (PostgreSQL sequences skip
  ids of rolled-back transactions): the seal records which ids were absent when it was made.
- A seal that was itself edited is caught by the next seal, which covers it; its own claims are then
  set aside, so an edited digest is reported at the seal's position, not at the event it describes.
  The last seal is covered by nothing until the next checkpoint: events after it are counted as
  unsealed, never reported as verified. An anchor (ledger.anchors) covers it meanwhile.
- Every command that appends ends sealed (ledger.service), so a log holding events and no seal fails.
- Verification only reads: it runs as a SELECT-only auditor.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.utils import get_topic

from domain.eligibility import NAMESPACE
from domain.errors import RuleBroken
from ledger.accounts import IdentitiesStatus, identities_status
from ledger.protection import Protection, protection_of
from ledger.storage import (
    LogRow,
    log_row_pages,
    log_rows,
    originator_rows,
    parse_database_url,
    scratch_copy_of_disbursement_log,
)

if TYPE_CHECKING:
    from eventsourcing.application import Application

    from domain.policy import Policy
    from ledger.disbursement import Disbursement
    from ledger.storage import Database

AUDIT_PAGE = 10_000  # notifications per query when hashing a log
SEGMENT_EVENTS_MAX = 16_384  # digests per Sealed event (≈ 175 KB of base64, under ledger.storage.EVENT_BYTES_MAX)
SEGMENT_SKIPPED_RUNS_MAX = 1_000  # absent-id runs per Sealed event (≈ 25 KB at most)
SEGMENT_EVENTS_MAX_V1 = 100_000  # what release 88ba6cb and earlier sealed per event (≈ 1.1 MB), still verified
DIGEST_BYTES = 8  # per-event digest kept in the seal: enough to tell which event changed (see docs/audit.md)
SEALS_ALONE_MAX = 64  # seal events after the last sealed position that a no-op seal looks through
CHECKPOINT_ATTEMPTS_MAX = 20  # concurrent checkpoints tolerated before giving up loudly
FAILURES_MAX = 100  # failures kept per check; the first is the one that matters
EXPORT_FILES_SCANNED_MAX = 100_000  # files looked at under --exports DIR
ABSENT_RUNS_MAX = 10_000  # runs of absent ids kept per log scan (an anchor records them; PostgreSQL has few)

_HEAD = struct.Struct(">qq16sI")  # notification id, originator version, originator id, topic length


class CheckpointConflict(RuleBroken):
    """Other checkpoints kept being recorded at the same moment; nothing was recorded, run it again."""


class AuditChainUnreadable(RuleBroken):
    """The log's last checkpoint cannot be read, so no new checkpoint can extend it: run `audit verify`."""


class AuditFailed(RuleBroken):
    """`audit verify` found a log, read model or export that is not what was recorded."""


# --- the chain aggregate --------------------------------------------------------------------------


def audit_chain_id(application_name: str) -> UUID:
    return uuid5(NAMESPACE, f"audit-chain|{application_name.lower()}")


def genesis_sha256(application_name: str) -> bytes:
    """h(0): names the application, so one log's chain never verifies as another's."""
    return hashlib.sha256(f"yikatong audit chain|{application_name.lower()}".encode()).digest()


class AuditChain(Aggregate):
    """The checkpoints of one application's log, recorded in that same log.

    Each `Sealed` event covers the positions (after_position, position]: `events` stored events, the
    ids in `skipped` runs (first id, count) being absent when it was sealed; `digests` is the base64 of
    each event's first DIGEST_BYTES hash bytes in position order; `chain_sha256` is h(position).
    """

    @staticmethod
    def create_id(application: str, **_: Any) -> UUID:  # type: ignore[override]
        return audit_chain_id(application)

    @event("Started")
    def __init__(self, application: str, genesis_sha256: str) -> None:
        self.application = application
        self.position = 0
        self.chain_sha256 = genesis_sha256

    class Sealed(Aggregate.Event):
        """Format 2 (this release): at most `events_max` digests, so every seal is a bounded event.

        Format 1 (release 88ba6cb and earlier) had no `events_max` and up to 100 000 digests; it is read
        as format 2 with that bound (eventsourcing's upcasting), and verifies as it always did.
        """

        class_version = 2

        after_position: int
        position: int
        events: int
        skipped: tuple[tuple[int, int], ...]
        digests: str
        chain_sha256: str
        events_max: int

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["events_max"] = SEGMENT_EVENTS_MAX_V1

    @event(Sealed)
    def _sealed(
        self,
        after_position: int,
        position: int,
        events: int,
        skipped: tuple[tuple[int, int], ...],
        digests: str,
        chain_sha256: str,
        events_max: int,
    ) -> None:
        self.position = position
        self.chain_sha256 = chain_sha256


_STARTED_TOPIC = "ledger.audit:AuditChain.Started"
_SEALED_TOPIC = "ledger.audit:AuditChain.Sealed"


def _row_sha256(position: int, originator: bytes, originator_version: int, topic: str, state: bytes) -> bytes:
    """The hash of one stored event as it sits in the table: every column, the position included."""
    topic_bytes = topic.encode()
    head = _HEAD.pack(position, originator_version, originator, len(topic_bytes))
    return hashlib.sha256(head + topic_bytes + state).digest()


def log_row_sha256(row: LogRow) -> bytes:
    return _row_sha256(row.id, row.originator, row.originator_version, row.topic, row.state)


# --- recording a checkpoint -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    application: str
    position: int  # the last notification id the chain covers
    chain_sha256: str  # h(position), hex: write it down outside the database to anchor the log
    version: int  # the AuditChain version of the last seal (0: no checkpoint yet)
    events_sealed: int  # events this call sealed (0: nothing new, nothing recorded)


def record_checkpoint(app: Application[UUID], *, reseal: bool = True) -> Checkpoint:
    """Seal every event recorded since the last checkpoint; a no-op when there is none.

    `reseal=False`: also a no-op when nothing but the last checkpoint's own seal events is new, so a
    command that appended nothing leaves the log as it was (ledger.service seals after every command;
    the last seal stays uncovered until the next command appends, and an anchor covers it meanwhile).

    Two checkpoints at once both try to append the chain's next version; the store refuses one, which
    starts again from the winner's seal (so it hashes only what the winner did not cover).
    """
    for _ in range(CHECKPOINT_ATTEMPTS_MAX):
        last = last_checkpoint(app)
        if not reseal and _only_seals_since(app, last):
            return last
        stored, checkpoint = _seal_new_events(app, last)
        if not stored:
            return checkpoint
        try:
            app.recorder.insert_events(stored)
        except IntegrityError:
            continue
        return checkpoint
    raise CheckpointConflict(f"{app.name}: gave up after {CHECKPOINT_ATTEMPTS_MAX} concurrent checkpoints")


def last_checkpoint(app: Application[UUID]) -> Checkpoint:
    """The chain's state from its last event only (never a replay of every seal: those hold MBs)."""
    chain_id = audit_chain_id(app.name)
    found = app.recorder.select_events(chain_id, desc=True, limit=1)
    if not found:
        return Checkpoint(app.name, 0, genesis_sha256(app.name).hex(), 0, 0)
    try:
        last = app.mapper.to_domain_event(found[0])
        position = last.position if isinstance(last, AuditChain.Sealed) else 0  # type: ignore[attr-defined]
        chain = last.chain_sha256 if isinstance(last, AuditChain.Sealed) else last.genesis_sha256  # type: ignore[attr-defined]
    except Exception as e:  # any decoding failure means the stored seal is not what was written
        raise AuditChainUnreadable(f"{app.name}: the last checkpoint cannot be read ({e})") from None
    return Checkpoint(app.name, position, chain, found[0].originator_version, 0)


def _only_seals_since(app: Application[UUID], last: Checkpoint) -> bool:
    """Every event after the last sealed position is one of the chain's own seals (a few at most)."""
    rows = log_rows(app.recorder, last.position + 1, None, SEALS_ALONE_MAX + 1)
    chain = audit_chain_id(app.name).bytes
    return len(rows) <= SEALS_ALONE_MAX and all(row.originator == chain for row in rows)


def _seal_new_events(app: Application[UUID], last: Checkpoint) -> tuple[list[StoredEvent], Checkpoint]:
    """The stored events that seal everything after `last`, up to the log's end when this began."""
    stop = app.recorder.max_notification_id() or 0
    if stop <= last.position:
        return [], last
    chain_id = audit_chain_id(app.name)
    version = last.version
    pending: list[Any] = []
    if version == 0:
        version = 1
        pending.append(
            AuditChain.Started(  # type: ignore[attr-defined]
                originator_id=chain_id,
                originator_version=1,
                timestamp=_now(),
                originator_topic=get_topic(AuditChain),
                application=app.name,
                genesis_sha256=last.chain_sha256,
            )
        )
    sealer = _Sealer(last.position, bytes.fromhex(last.chain_sha256))
    for page in _pages(app, last.position + 1, stop):
        for n in page:
            sealer.add(n)
            if sealer.events >= SEGMENT_EVENTS_MAX or len(sealer.skipped) >= SEGMENT_SKIPPED_RUNS_MAX:
                version += 1
                pending.append(sealer.sealed(chain_id, version))
                sealer = sealer.next()
    if sealer.events:
        version += 1
        pending.append(sealer.sealed(chain_id, version))
    total = sum(e.events for e in pending if isinstance(e, AuditChain.Sealed))  # type: ignore[attr-defined]
    checkpoint = Checkpoint(app.name, sealer.position, sealer.chain.hex(), version, total)
    return [app.mapper.to_stored_event(e) for e in pending], checkpoint


class _Sealer:
    """One segment being sealed: its digests, its absent ids, the chain so far."""

    def __init__(self, after: int, chain: bytes) -> None:
        self.after = after
        self.position = after
        self.chain = chain
        self.events = 0
        self.digests = bytearray()
        self.skipped: list[tuple[int, int]] = []

    def add(self, n: Any) -> None:
        if n.id != self.position + 1:
            self.skipped.append((self.position + 1, n.id - self.position - 1))
        digest = log_row_sha256(n)
        self.chain = hashlib.sha256(self.chain + digest).digest()
        self.digests += digest[:DIGEST_BYTES]
        self.position = n.id
        self.events += 1

    def sealed(self, chain_id: UUID, version: int) -> Any:
        return AuditChain.Sealed(  # type: ignore[attr-defined]
            originator_id=chain_id,
            originator_version=version,
            timestamp=_now(),
            after_position=self.after,
            position=self.position,
            events=self.events,
            skipped=tuple(self.skipped),
            digests=base64.b64encode(bytes(self.digests)).decode(),
            chain_sha256=self.chain.hex(),
            events_max=SEGMENT_EVENTS_MAX,
        )

    def next(self) -> _Sealer:
        return _Sealer(self.position, self.chain)


def _now() -> datetime:
    return datetime.now(UTC)


def _pages(app: Application[UUID], start: int, stop: int | None = None) -> Iterator[Sequence[LogRow]]:
    """The log's stored events from `start` (to `stop`), AUDIT_PAGE at a time."""
    return log_row_pages(app.recorder, AUDIT_PAGE, start, stop)


# --- verifying a log --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Failure:
    """One thing that is not as recorded. `position` is the notification id (None: not locatable)."""

    position: int | None
    kind: str  # changed | missing | inserted | chain | checkpoint | unsealed | anchor
    detail: str
    sealed_by: int | None = None  # where the seal that makes this claim is stored (None: no seal's claim)
    within: int | None = None  # not locatable, but at or before this position (an anchor's proof): ordered there


@dataclass(frozen=True, slots=True)
class VerifyResult:
    application: str
    table: str
    events: int  # stored events read and hashed
    sealed_position: int  # the last position a readable checkpoint covers
    checkpoints: int  # Sealed events read
    unsealed: int  # events after sealed_position: not yet covered, so not verified
    unverifiable: int  # events inside a range whose seal cannot be read
    chain_sha256: str  # the recomputed h(sealed_position), hex
    failures: tuple[Failure, ...]  # first failure first; at most FAILURES_MAX
    position: int = 0  # the last notification id read (0: an empty log)
    head_sha256: str = ""  # the chain over every stored event read, h(position), hex
    absent: tuple[tuple[int, int], ...] = ()  # runs (first id, count) of ids below `position` holding no event
    absent_complete: bool = True  # False: more than ABSENT_RUNS_MAX runs, the rest not kept
    at: dict[int, tuple[int, str]] = field(default_factory=dict)  # mark → (events at ids ≤ mark, h(mark) hex)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failure(self) -> Failure | None:
        return self.failures[0] if self.failures else None

    def describe(self, failure: Failure) -> str:
        where = f"{self.table} position {failure.position}" if failure.position is not None else self.table
        return f"{where}: {failure.kind}: {failure.detail}"


@dataclass(slots=True)
class _Segment:
    version: int
    notification_id: int  # where the seal itself is stored
    readable: bool = False
    problem: str = ""
    after: int = 0
    position: int = 0
    events: int = 0
    skipped: tuple[tuple[int, int], ...] = ()
    digests: bytes = b""
    chain: bytes = b""
    first_failure: Failure | None = None
    failed_seals: set[int] = field(default_factory=set)  # seal positions this segment found changed
    chain_matches: bool | None = None


def verify_log(app: Application[UUID], marks: Iterable[int] = ()) -> VerifyResult:
    """Re-hash the whole log from position 1 and name the first event that is not as sealed.

    Every command that appends ends sealed (ledger.service), so a log holding events and no seal at all
    is a failure: its seals were deleted, or it was written around the application. Which event changed
    cannot be told without a seal; an anchor (ledger.anchors) names the first missing or changed one.
    `marks`: positions at which to note the chain and the event count (an anchor's).
    """
    segments, structural = _load_segments(app)
    readable = [s for s in segments if s.readable]
    scan = _Scan(app, readable, {s.notification_id for s in segments}, marks)
    scan.run()
    failures = _first_failures(segments, structural)
    if scan.events and not segments:
        detail = (
            f"{scan.events} events and no seal: every command that appends ends sealed, so the seals were "
            "deleted or the events written around the application"
        )
        failures.append(Failure(None, "unsealed", detail))
    sealed_position = readable[-1].position if readable else 0
    return VerifyResult(
        application=app.name,
        table=app.recorder.events_table_name,  # type: ignore[attr-defined]
        events=scan.events,
        sealed_position=sealed_position,
        checkpoints=len(segments),
        unsealed=scan.unsealed,
        unverifiable=scan.unverifiable,
        chain_sha256=scan.chain_at_sealed.hex(),
        failures=tuple(failures[:FAILURES_MAX]),
        position=scan.position,
        head_sha256=scan.chain.hex(),
        absent=tuple(scan.absent),
        absent_complete=scan.absent_complete,
        at=scan.at,
    )


def _load_segments(app: Application[UUID]) -> tuple[list[_Segment], list[Failure]]:
    """Every seal of the log's chain, decoded and checked for shape; problems of the chain itself."""
    rows = _chain_rows(app)
    segments: list[_Segment] = []
    problems: list[Failure] = []
    expected_version = 1
    for notification_id, version, topic, state in rows:
        if version != expected_version:
            problems.append(
                Failure(None, "checkpoint", f"checkpoint versions {expected_version}–{version - 1} are missing")
            )
        expected_version = version + 1
        if version == 1 and topic == _STARTED_TOPIC:
            continue
        segment = _Segment(version=version, notification_id=notification_id)
        _decode_segment(app, segment, topic, state)
        segments.append(segment)
    problems.extend(_joins(segments))
    return segments, problems


def _joins(segments: list[_Segment]) -> list[Failure]:
    """Each readable seal must start where the one before it ended.

    A seal that starts before its predecessor ended overlaps it and cannot be trusted (it is set
    aside). One that starts later leaves positions no readable seal covers: they are counted as
    unverifiable and reported without a position, because the seal that covered them is gone or
    unreadable, and the seal covering *that* seal names its position.
    """
    problems = []
    previous_end = 0
    for segment in segments:
        if not segment.readable:
            continue
        if segment.after < previous_end:
            segment.readable = False
            segment.problem = (
                f"checkpoint (audit chain version {segment.version}) seals ({segment.after}, {segment.position}], "
                f"overlapping the previous seal, which ended at {previous_end}"
            )
            continue
        if segment.after > previous_end:
            problems.append(
                Failure(None, "checkpoint", f"positions {previous_end + 1}–{segment.after} are under no readable seal")
            )
        previous_end = segment.position
    return problems


def _decode_segment(app: Application[UUID], segment: _Segment, topic: str, state: bytes) -> None:
    try:
        sealed = app.mapper.to_domain_event(
            StoredEvent(
                originator_id=audit_chain_id(app.name),
                originator_version=segment.version,
                topic=topic,
                state=bytes(state),
            )
        )
        if not isinstance(sealed, AuditChain.Sealed):  # type: ignore[attr-defined]
            raise ValueError(f"topic {topic}")
        digests = base64.b64decode(sealed.digests, validate=True)
        skipped = tuple((int(a), int(b)) for a, b in sealed.skipped)
        span = sealed.position - sealed.after_position
        if len(digests) != DIGEST_BYTES * sealed.events or span - sum(b for _, b in skipped) != sealed.events:
            raise ValueError("digests, skipped ids and the range disagree")
        if sealed.events > sealed.events_max:
            raise ValueError(f"{sealed.events} digests, more than the {sealed.events_max} its format allows")
        if not _runs_in_order(skipped, sealed.after_position, sealed.position):
            raise ValueError("skipped ids out of order or outside the sealed range")
        chain = bytes.fromhex(sealed.chain_sha256)
    except Exception as e:  # a seal that does not decode was changed: say how, keep going
        segment.problem = f"checkpoint (audit chain version {segment.version}) cannot be read: {e}"
        return
    segment.readable = True
    segment.after = sealed.after_position
    segment.position = sealed.position
    segment.events = sealed.events
    segment.skipped = skipped
    segment.digests = digests
    segment.chain = chain


def _runs_in_order(runs: tuple[tuple[int, int], ...], after: int, position: int) -> bool:
    """Absent-id runs must be ascending, disjoint, non-empty and strictly inside (after, position]."""
    cursor = after + 1
    for first, count in runs:
        if count < 1 or first < cursor or first + count > position:
            return False
        cursor = first + count + 1
    return True


def _chain_rows(app: Application[UUID]) -> list[tuple[int, int, str, bytes]]:
    """The chain's stored events with their notification ids (the recorder's API omits the ids)."""
    return originator_rows(app.recorder, audit_chain_id(app.name))


class _Scan:
    """One pass over the log, merging stored events with the ids and digests the seals expect."""

    def __init__(
        self, app: Application[UUID], segments: list[_Segment], seal_positions: set[int], marks: Iterable[int] = ()
    ) -> None:
        self.app = app
        self.segments = segments
        self.ends = [s.position for s in segments]
        self.seal_positions = seal_positions
        self.sealed_position = segments[-1].position if segments else 0
        self.chain = genesis_sha256(app.name)
        self.chain_at_sealed = self.chain
        self.events = self.unsealed = self.unverifiable = 0
        self.position = 0
        self.absent: list[tuple[int, int]] = []
        self.absent_complete = True
        self.marks = sorted(set(marks))
        self.at: dict[int, tuple[int, str]] = {}

    def run(self) -> None:
        expected = self._expected()
        due = next(expected, None)
        for page in _pages(self.app, 1):
            for n in page:
                self._pass(n.id)
                while due is not None and due[0] < n.id:
                    self._fail(due[2], Failure(due[0], "missing", "sealed here, no longer in the log (deleted)"))
                    self._after(due)
                    due = next(expected, None)
                digest = log_row_sha256(n)
                self.chain = hashlib.sha256(self.chain + digest).digest()
                self.events += 1
                if due is not None and due[0] == n.id:
                    if digest[:DIGEST_BYTES] != due[1]:
                        self._fail(due[2], Failure(n.id, "changed", f"{_what(n)} differs from what was sealed"))
                    self._after(due)
                    due = next(expected, None)
                else:
                    self._unexpected(n)
        while due is not None:
            self._fail(due[2], Failure(due[0], "missing", "sealed here, no longer in the log (deleted)"))
            self._after(due)
            due = next(expected, None)
        self._pass(None)

    def _pass(self, upcoming: int | None) -> None:
        """Before the event at `upcoming` (None: the end) is hashed: note the marks it passes, and the
        ids absent before it."""
        while self.marks and (upcoming is None or self.marks[0] < upcoming):
            self.at[self.marks.pop(0)] = (self.events, self.chain.hex())
        if upcoming is None:
            return
        if upcoming != self.position + 1:
            if len(self.absent) < ABSENT_RUNS_MAX:
                self.absent.append((self.position + 1, upcoming - self.position - 1))
            else:
                self.absent_complete = False
        self.position = upcoming

    def _expected(self) -> Iterator[tuple[int, bytes, _Segment]]:
        """(position, digest, seal) for every event the readable seals recorded, in position order.

        Walks the present ids run by run, so a long gap (a sequence that jumped) costs nothing.
        """
        for s in self.segments:
            index = 0
            cursor = s.after + 1
            for first, count in (*s.skipped, (s.position + 1, 0)):
                for position in range(cursor, first):
                    yield position, s.digests[index : index + DIGEST_BYTES], s
                    index += DIGEST_BYTES
                cursor = first + count

    def _after(self, due: tuple[int, bytes, _Segment]) -> None:
        segment = due[2]
        if due[0] == segment.position:
            segment.chain_matches = self.chain == segment.chain
            if segment is self.segments[-1]:
                self.chain_at_sealed = self.chain

    def _unexpected(self, n: Any) -> None:
        """An event at an id no readable seal expected: inserted into a seal's range, or simply newer."""
        if n.id > self.sealed_position:
            self.unsealed += 1
            return
        index = bisect.bisect_left(self.ends, n.id)
        if index < len(self.segments) and self.segments[index].after < n.id:
            detail = f"{_what(n)} was not in the log when it was sealed (the id was absent)"
            self._fail(self.segments[index], Failure(n.id, "inserted", detail))
        else:
            self.unverifiable += 1

    def _fail(self, segment: _Segment, failure: Failure) -> None:
        failure = replace(failure, sealed_by=segment.notification_id)
        if segment.first_failure is None:
            segment.first_failure = failure
        if failure.position in self.seal_positions:
            segment.failed_seals.add(failure.position)  # type: ignore[arg-type]


def _what(n: LogRow) -> str:
    topic = n.topic.rsplit(":", 1)[-1]
    return f"{topic} of {n.originator.hex()} version {n.originator_version}"


def _first_failures(segments: list[_Segment], structural: list[Failure]) -> list[Failure]:
    """Failures in position order, counting only seals that no later, trusted seal contradicts."""
    readable = [s for s in segments if s.readable]
    ends = [s.position for s in readable]
    trusted: dict[int, bool] = {}
    for segment in reversed(readable):
        index = bisect.bisect_left(ends, segment.notification_id)
        cover = readable[index] if index < len(readable) and readable[index].after < segment.notification_id else None
        contradicted = (
            cover is not None and trusted.get(cover.version, True) and segment.notification_id in cover.failed_seals
        )
        trusted[segment.version] = not contradicted
    failures = list(structural)
    for segment in segments:
        if not segment.readable:
            failures.append(Failure(segment.notification_id, "checkpoint", segment.problem))
        elif trusted[segment.version] and segment.first_failure is not None:
            failures.append(segment.first_failure)
    located = [f.position for f in failures if f.position is not None]
    for segment in readable:
        if not trusted[segment.version] or segment.chain_matches is not False:
            continue
        if any(p <= segment.position for p in located):
            break  # an earlier event failure already explains every later chain value
        detail = (
            f"the chain at {segment.position} differs from the seal, though every event in "
            f"({segment.after}, {segment.position}] matches its digest (a forged digest collision)"
        )
        failures.append(Failure(segment.after + 1, "chain", detail, sealed_by=segment.notification_id))
        break
    ordered = sorted(failures, key=lambda f: (f.position is None, f.position or 0, f.kind != "checkpoint"))
    # An unreadable seal is also a changed event to the seal covering it: say it once, as a checkpoint.
    return [f for i, f in enumerate(ordered) if f.position is None or i == 0 or ordered[i - 1].position != f.position]


# --- verifying exports ------------------------------------------------------------------------------


PolicyAt = Callable[[datetime], "Policy"]


@dataclass(frozen=True, slots=True)
class ExportsResult:
    batches: int  # batches with at least one recorded export
    exports: int  # Exported events checked
    files_regenerated: int  # recorded files regenerated and compared
    files_on_disk: int  # files found under --exports DIR and hashed
    files_absent: int  # recorded file names not found under --exports DIR
    failures: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.failures


def verify_exports(
    disbursement: Disbursement, policy: Policy | PolicyAt, exports_dir: Path | None = None
) -> ExportsResult:
    """Regenerate every recorded export from the ledger and compare SHA-256s; hash files on disk too.

    Each export is regenerated from the batch as it stood when it was exported (its events up to the
    `Exported` event), so a batch exported while drafted and given more payments later still checks.
    A one-card export is laid out with the profile text the ledger recorded under the SHA-256 its
    `Exported` event names (ledger.profiles), never with a file on disk, and that version must have been
    approved (or shipped); an export of an earlier release, which names no hash, with the shipped
    profile (or the file) its label names, as those releases did.
    `policy` is the policy in force, or a function from the export's recorded time to the policy then
    (`policy_history(registry)`), since payer names and accounts in the files come from the policy.
    """
    from domain.policy import Policy

    policy_at: PolicyAt = (lambda _when: policy) if isinstance(policy, Policy) else policy  # type: ignore[assignment,return-value]
    checker = _ExportChecker(disbursement, policy_at)
    for batch in disbursement.batches():
        if not batch.exports:
            continue
        try:
            checker.check_batch(batch)
        except Exception as e:  # a log that no longer decodes is a finding here, not a crash of the audit
            checker.failures.append(f"batch {batch.id.hex}: its exports cannot be regenerated: {type(e).__name__}: {e}")
    on_disk = absent = 0
    if exports_dir is not None:
        on_disk, absent = checker.check_folder(exports_dir)
    return ExportsResult(
        batches=checker.batches,
        exports=checker.exports,
        files_regenerated=checker.files,
        files_on_disk=on_disk,
        files_absent=absent,
        failures=tuple(checker.failures[:FAILURES_MAX]),
    )


class _ExportChecker:
    def __init__(self, disbursement: Disbursement, policy_at: PolicyAt) -> None:
        from ledger.profiles import versions_by_sha256

        self.disbursement = disbursement
        self.policy_at = policy_at
        self.batches = self.exports = self.files = 0
        self.failures: list[str] = []
        self.recorded: dict[str, set[str]] = {}  # file name → every SHA-256 recorded under it
        self.profiles = versions_by_sha256(disbursement)  # profile text SHA-256 → (name, recorded version)

    def check_batch(self, batch: Any) -> None:
        from domain.disbursement import Batch

        self.batches += 1
        views = self.disbursement.payment_views(batch.payment_ids)
        rendered: dict[tuple[int, str, int], list[tuple[str, bytes]] | None] = {}
        state: Any = None
        for domain_event in self.disbursement.repository.event_store.get(batch.id):
            if isinstance(domain_event, Batch.Exported):  # type: ignore[attr-defined]
                self._check_export(state, domain_event, views, rendered)
            state = domain_event.mutate(state)

    def _check_export(self, state: Any, exported: Any, views: dict[str, Any], rendered: dict[Any, Any]) -> None:
        self.exports += 1
        for name, sha in exported.files:
            self.recorded.setdefault(name, set()).add(sha)
        when = f"{exported.timestamp:%Y-%m-%d %H:%M}"
        where = f"batch {state.id.hex} export {exported.format} by {exported.actor} at {when}"
        if (exported.count, exported.total_fen) != (state.count, state.total_fen):
            self._fail(
                f"{where}: records {exported.count} payments, {exported.total_fen} fen; the batch then had "
                f"{state.count}, {state.total_fen} fen"
            )
            return
        policy = self.policy_at(exported.timestamp)
        profile_sha256 = getattr(exported, "profile_sha256", "")
        key = (state.count, exported.format, id(policy), profile_sha256)
        if key not in rendered:
            rendered[key] = self._regenerate(state, exported.format, views, policy, where, profile_sha256)
        files = rendered[key]
        if files is None:
            return
        recorded = list(exported.files)
        if [name for name, _ in files] != [name for name, _ in recorded]:
            self._fail(f"{where}: regenerates files {[n for n, _ in files]}, recorded {[n for n, _ in recorded]}")
            return
        for (name, data), (_, sha) in zip(files, recorded, strict=True):
            self.files += 1
            again = hashlib.sha256(data).hexdigest()
            if again != sha:
                self._fail(f"{where}: {name} regenerates with SHA-256 {again}, recorded {sha}")

    def _regenerate(
        self, state: Any, label: str, views: dict[str, Any], policy: Policy, where: str, profile_sha256: str = ""
    ) -> list[tuple[str, bytes]] | None:
        from exporters.rows import ExportRefused
        from ledger.exports import ExportFailed, batch_header, payment_rows, render
        from ledger.profiles import profile_from_version, sha256_of

        missing = [pid for pid in state.payment_ids if pid not in views]
        if missing:
            self._fail(f"{where}: payment {missing[0]} is no longer in the log ({len(missing)} missing)")
            return None
        if sum(views[pid].net_fen for pid in state.payment_ids) != state.total_fen:
            self._fail(f"{where}: the stored payments no longer add up to the batch total {state.total_fen} fen")
            return None
        fmt, profile_name, version = _format_of(label)
        profile: Any = profile_name
        if profile_sha256:
            found = self.profiles.get(profile_sha256)
            if found is None:
                self._fail(f"{where}: its profile (SHA-256 {profile_sha256}) is not recorded in the ledger")
                return None
            name, recorded = found
            if sha256_of(recorded.toml_text.encode("utf-8")) != profile_sha256:
                self._fail(f"{where}: profile {name}'s recorded text does not hash to {profile_sha256}")
                return None
            if not recorded.approved:
                self._fail(f"{where}: profile {name} version {profile_sha256[:16]}… was never approved")
                return None
            try:
                profile = profile_from_version(name, recorded)
            except ExportRefused as e:
                self._fail(f"{where}: its profile {name} is refused today: {e.rule}: {e}")
                return None
        header = batch_header(policy, state)
        try:
            return render(fmt, header, payment_rows(header, state, views), profile, version)
        except ExportFailed as e:
            self._fail(f"{where}: cannot be regenerated: {e.rule}: {e}")
            return None

    def check_folder(self, folder: Path) -> tuple[int, int]:
        """Hash each file under `folder` whose name an export recorded; it must match one recorded hash."""
        found: dict[str, list[Path]] = {}
        for scanned, path in enumerate(sorted(folder.rglob("*"))):
            if scanned >= EXPORT_FILES_SCANNED_MAX:
                self._fail(f"{folder}: more than {EXPORT_FILES_SCANNED_MAX} files; point --exports at one folder")
                break
            if path.is_file() and path.name in self.recorded:
                found.setdefault(path.name, []).append(path)
        hashed = 0
        for name, paths in sorted(found.items()):
            for path in paths:
                hashed += 1
                sha = hashlib.sha256(path.read_bytes()).hexdigest()
                if sha not in self.recorded[name]:
                    self._fail(f"{path}: SHA-256 {sha} matches no export recorded as {name} (edited after export)")
        return hashed, len(set(self.recorded) - set(found))

    def _fail(self, message: str) -> None:
        self.failures.append(message)


def _format_of(label: str) -> tuple[str, str, str]:
    """(format, profile, pain.001 version) from a recorded label: `pain.001.001.09`, `onecard:generic`…"""
    if label.startswith("pain."):
        return "pain001", "generic", label[len("pain.") :]
    if label.startswith("onecard:"):
        return "onecard", label[len("onecard:") :], "001.001.09"
    return label, "generic", "001.001.09"


def policy_history(registry: Any) -> PolicyAt:
    """The policy in force at a moment: the last `PolicyLog.Loaded` recorded at or before it."""
    from domain.policy_log import POLICY_ID, PolicyLog
    from ledger.apps import parse_policy_text

    loaded = [
        (e.timestamp, e.toml_text)
        for e in registry.repository.event_store.get(POLICY_ID)
        if isinstance(e, PolicyLog.Loaded)  # type: ignore[attr-defined]
    ]
    if not loaded:
        registry.policy()  # raises NoPolicy, the rule that explains it
    parsed: dict[int, Policy] = {}

    def policy_at(when: datetime) -> Policy:
        index = max(0, bisect.bisect_right([t for t, _ in loaded], when) - 1)
        if index not in parsed:
            parsed[index] = parse_policy_text(loaded[index][1], "loaded policy")
        return parsed[index]

    return policy_at


# --- read models --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadModelsResult:
    checked: bool
    differences: tuple[str, ...] = ()
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.differences


def verify_read_models(db: Database) -> ReadModelsResult:
    """Compare the live read models with a rebuild, from the same log, up to the same position."""
    differences = compare_with_rebuild(db)
    if differences is None:
        return ReadModelsResult(False, note="read models not built yet: nothing to compare")
    return ReadModelsResult(True, tuple(differences)[:FAILURES_MAX])


def compare_with_rebuild(db: Database) -> list[str] | None:
    """Differences between the live read models and a rebuild (one line each; empty when equal;
    None when no read models have been built yet).

    The rebuild runs on a scratch copy of the disbursement log cut at the live read models' tracked
    position (a SQLite backup, or a temporary PostgreSQL schema), so the live tables are never touched
    and events recorded since the last catch-up do not count as differences.
    """
    from projections.read_models import (
        all_read_model_rows,
        open_engine,
        read_models_current,
        read_models_exist,
        tracked_position,
    )
    from projections.runner import rebuild

    with open_engine(db) as engine, engine.connect() as conn:
        # Read models an earlier release built (without this release's columns and tables) are rebuilt
        # from the log by the next catch-up; until then there is nothing of this release's to compare.
        if not read_models_exist(conn) or not read_models_current(conn):
            return None
        live = all_read_model_rows(conn)
        position = tracked_position(conn)
    with _scratch_copy(db, position) as scratch:
        rebuild(scratch)
        with open_engine(scratch) as engine, engine.connect() as conn:
            rebuilt = all_read_model_rows(conn)
    return _row_differences(live, rebuilt)


@contextmanager
def _scratch_copy(db: Database, position: int) -> Iterator[Database]:
    """The disbursement log up to `position` as a scratch SQLite ledger, read with `db`'s key."""
    from ledger.keys import with_key_of

    with scratch_copy_of_disbursement_log(db, position) as path:
        yield with_key_of(parse_database_url(f"sqlite:///{path}"), db)


def _row_differences(live: dict[str, list[dict[str, Any]]], rebuilt: dict[str, list[dict[str, Any]]]) -> list[str]:
    differences = []
    for table in sorted(set(live) | set(rebuilt)):
        if table.endswith("tracking"):
            continue
        ours = {_row_key(r): r for r in live.get(table, [])}
        theirs = {_row_key(r): r for r in rebuilt.get(table, [])}
        for key in sorted(set(ours) | set(theirs), key=str):
            a, b = ours.get(key), theirs.get(key)
            if a is None:
                differences.append(f"{table} {key}: missing from the live read model")
                continue
            if b is None:
                differences.append(f"{table} {key}: in the live read model, not in a rebuild from the log")
                continue
            for column in sorted(set(a) | set(b)):
                if a.get(column) != b.get(column):
                    differences.append(
                        f"{table} {key}: {column} is {a.get(column)!r}, a rebuild from the log gives {b.get(column)!r}"
                    )
    return differences


def _row_key(row: dict[str, Any]) -> str:
    for column in ("offset_id", "recovery_id", "payment_id", "batch_id"):
        if column in row:
            return str(row[column])
    return "/".join(str(row.get(c)) for c in ("region", "programme", "period"))


# --- everything at once -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnchoredTable:
    """What an anchor recorded for one event table (ledger.anchors), and whether the log still extends it."""

    table: str
    sealed_position: int
    position: int
    events: int
    extended: bool  # the log still holds every anchored event, unchanged


@dataclass(frozen=True, slots=True)
class AnchorResult:
    """One `--anchor FILE` checked: its signature and key, and each table against the log.

    `failures` are the anchor's own (signature, key, ledger); a position the log no longer has or holds
    changed is reported among that log's failures, where it is located.
    """

    source: str
    anchored_at: str
    ledger_id: str
    public_key: str
    signature_valid: bool
    tables: tuple[AnchoredTable, ...]
    failures: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.signature_valid and not self.failures and all(t.extended for t in self.tables)

    def line(self) -> str:
        tables = ", ".join(f"{t.table} through position {t.position} ({t.events} events)" for t in self.tables)
        verdict = "the log extends it" if self.ok else "NOT extended by the log"
        signature = "signature valid" if self.signature_valid else "signature INVALID"
        return f"anchor {self.source} of {self.anchored_at} ({signature}): {tables}; {verdict}"

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.source,
            "anchored_at": self.anchored_at,
            "ledger_id": self.ledger_id,
            "public_key": self.public_key,
            "signature_valid": self.signature_valid,
            "ok": self.ok,
            "tables": [
                {
                    "table": t.table,
                    "sealed_position": t.sealed_position,
                    "position": t.position,
                    "events": t.events,
                    "extended": t.extended,
                }
                for t in self.tables
            ],
            "failures": list(self.failures),
        }


@dataclass(frozen=True, slots=True)
class AuditReport:
    logs: tuple[VerifyResult, ...]
    read_models: ReadModelsResult
    exports: ExportsResult
    protection: Protection | None = None  # encrypted or plain text (on purpose / legacy), id scheme
    identities: IdentitiesStatus | None = None  # whether the recorded actors were authenticated (ledger.accounts)
    anchors: tuple[AnchorResult, ...] = ()

    @property
    def failures(self) -> list[str]:
        """Every failure found, logs first (a changed log explains the rest), each on one line."""
        found = [log.describe(f) for log in self.logs for f in log.failures]
        found.extend(f"anchor {a.source}: {f}" for a in self.anchors for f in a.failures)
        found.extend(f"read models: {d}" for d in self.read_models.differences)
        found.extend(f"exports: {f}" for f in self.exports.failures)
        return found

    @property
    def first_failure(self) -> str | None:
        failures = self.failures
        return failures[0] if failures else None

    @property
    def ok(self) -> bool:
        return self.first_failure is None

    def lines(self) -> list[str]:
        """What was checked, in counts, then the verdict: what `audit verify` prints."""
        out = []
        for log in self.logs:
            out.append(
                f"{log.table}: {log.events} events hashed, sealed through position {log.sealed_position} by "
                f"{log.checkpoints} checkpoints, chain {log.chain_sha256[:16]}…; {log.unsealed} not yet sealed"
                + (f", {log.unverifiable} under an unreadable checkpoint" if log.unverifiable else "")
                + (f"; {len(log.failures)} failures" if log.failures else "; intact")
            )
        out.extend(a.line() for a in self.anchors)
        rm = self.read_models
        if rm.checked:
            out.append(f"read models: {'equal to a rebuild' if rm.ok else f'{len(rm.differences)} differences'}")
        else:
            out.append(f"read models: skipped: {rm.note}")
        ex = self.exports
        disk = (
            f", {ex.files_on_disk} files on disk hashed, {ex.files_absent} recorded names not found"
            if (ex.files_on_disk or ex.files_absent)
            else ""
        )
        out.append(
            f"exports: {ex.exports} exports of {ex.batches} batches, {ex.files_regenerated} files regenerated{disk}"
            + (f"; {len(ex.failures)} failures" if ex.failures else "; all match")
        )
        if self.protection is not None:
            out.append(self.protection.line())
        if self.identities is not None:
            out.append(self.identities.line())
        first = self.first_failure
        out.append(f"FAILED: {first}" if first else "verified")
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "first_failure": self.first_failure,
            "logs": [
                {
                    "application": log.application,
                    "table": log.table,
                    "events": log.events,
                    "sealed_position": log.sealed_position,
                    "checkpoints": log.checkpoints,
                    "unsealed": log.unsealed,
                    "unverifiable": log.unverifiable,
                    "chain_sha256": log.chain_sha256,
                    "failures": [{"position": f.position, "kind": f.kind, "detail": f.detail} for f in log.failures],
                    "position": log.position,
                    "head_sha256": log.head_sha256,
                }
                for log in self.logs
            ],
            "anchors": [a.as_json() for a in self.anchors],
            "read_models": {
                "checked": self.read_models.checked,
                "differences": list(self.read_models.differences),
                "note": self.read_models.note,
            },
            "exports": {
                "batches": self.exports.batches,
                "exports": self.exports.exports,
                "files_regenerated": self.exports.files_regenerated,
                "files_on_disk": self.exports.files_on_disk,
                "files_absent": self.exports.files_absent,
                "failures": list(self.exports.failures),
            },
            "protection": self.protection.as_json() if self.protection is not None else None,
            "identities": self.identities.as_json() if self.identities is not None else None,
        }

    def raise_for_failure(self) -> None:
        """For the CLI: exit 1 naming the first failure (after printing `lines()`)."""
        first = self.first_failure
        if first is not None:
            raise AuditFailed(first)


def audit_verify(
    db: Database,
    registry: Any,
    disbursement: Disbursement,
    exports_dir: Path | None = None,
    *,
    logs: tuple[VerifyResult, ...] | None = None,
    anchors: tuple[AnchorResult, ...] = (),
) -> AuditReport:
    """Both logs, the read models and every export; read-only throughout. `logs`, when given, are both
    logs already verified (against anchors: ledger.anchors), with `anchors` the result of each. Also
    states how the ledger is protected (ledger.protection) and whether the recorded actors were
    authenticated accounts, and from which positions on (ledger.accounts)."""
    from ledger.keys import StoredEventDamaged

    if logs is None:
        logs = (verify_log(registry), verify_log(disbursement))
    try:
        read_models = verify_read_models(db)
        exports = verify_exports(disbursement, policy_history(registry), exports_dir)
    except StoredEventDamaged as e:  # an encrypted log with a changed event cannot be read past it
        if any(log.failures for log in logs):
            read_models = ReadModelsResult(False, note=f"not checked: {e.rule}")
            exports = ExportsResult(0, 0, 0, 0, 0, ())
        else:
            raise
    return AuditReport(
        logs=logs,
        read_models=read_models,
        exports=exports,
        protection=protection_of(registry),
        identities=identities_status(registry),
        anchors=anchors,
    )
