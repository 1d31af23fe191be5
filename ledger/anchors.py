"""Anchors: the log's seals, signed and kept outside the store, so that someone who can write to the
database cannot rewrite history and re-seal it unnoticed (the way Certificate Transparency and immudb
make a log checkable by a party that does not trust its operator; docs/audit.md, "Anchors").

What this module guarantees:
- The signing key. Each ledger has one Ed25519 key (the `cryptography` package), created by `yikatong
  init` beside the data key (ledger.keys): `<data key file>.sign`, or `$YIKATONG_SIGNING_KEY_FILE`; PKCS#8
  PEM, mode 0600, created exclusively, never overwritten, refused when group or others may read it, and
  never the data key's file. Its public half (`ed25519:<base64>`) and the ledger's id are recorded in the
  registry log (domain.signing.SigningKey), where the log's seals cover them.
- An anchor (`write_anchor`, `yikatong audit anchor`) is written only for a log that verifies (an anchor
  never vouches for a changed log), after sealing. For each event table it records the last sealed
  position S and the chain h(S); the end of the log E (the seals just written lie in (S, E]), the number
  of events at ids ≤ E, the chain h(E) (the head), the runs of ids absent below E, and the digest of each
  event in (S, E], which no seal covers yet. The whole is canonical JSON (sorted keys, no whitespace,
  ASCII), signed over those bytes; the signature sits in the file beside them.
- Verifying (`verify_against`, `yikatong audit verify --anchor FILE`) needs only SELECT. An anchor whose
  signature does not verify is not used; its key must equal the key the log records and its ledger id the
  log's. Then, for each table: every id present at the anchor must still be there (the first missing id
  is named: a deletion, or for a truncation the first id cut off), no id absent then may hold an event
  now (named), each event in (S, E] must hash as recorded (named), and h(S) and h(E) must be as recorded.
  When a changed prefix cannot be located (rewritten and consistently re-sealed), the failure says so
  without a position. When the anchor proves positions 1…S unchanged, a seal's claim that one of them
  changed is false: it is reported at the seal that makes it (a changed seal), not at the intact event.

What an anchor does not prove: anything recorded after it (the next anchor covers that); that the key in
the log is the office's (compare it with the key `init` printed and earlier anchors); and it cannot stop a
change, only show one. Someone holding the signing key can sign an anchor of a rewritten log: the
auditor's own earlier copies still detect the rewrite.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import os
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError

from domain.errors import RuleBroken
from domain.signing import SIGNING_KEY_ID, SigningKey
from ledger.audit import (
    FAILURES_MAX,
    AnchoredTable,
    AnchorResult,
    Failure,
    VerifyResult,
    log_row_sha256,
    verify_log,
)
from ledger.keys import key_path_for, read_private_file, write_private_file
from ledger.storage import Database, log_rows

ANCHOR_FORMAT = "yikatong-anchor/1"
SIGNING_KEY_FILE_ENV = "YIKATONG_SIGNING_KEY_FILE"
SIGNING_KEY_SUFFIX = ".sign"  # beside the data key: <data key file>.sign
SIGNING_KEY_FILE_BYTES_MAX = 4096  # a PEM Ed25519 key is ≈ 120 bytes
PUBLIC_KEY_PREFIX = "ed25519:"
ANCHOR_BYTES_MAX = 4 * 1024 * 1024  # an anchor is a few hundred bytes, more only with many absent-id runs
ANCHOR_TAIL_MAX = 1_000  # events after the last seal an anchor records one by one (normally its 1–2 seals)
ANCHOR_ABSENT_RUNS_MAX = 10_000  # = ledger.audit.ABSENT_RUNS_MAX: absent-id runs an anchor records per table
SHA256_HEX = 64
POSITION_MAX = 2**63 - 1  # notification ids are 64-bit signed integers in both stores


class NoSigningKey(RuleBroken):
    """An anchor needs the ledger's signing key, recorded in its log and present in its key file."""


class SigningKeyIsDataKey(RuleBroken):
    """The signing key never shares a file (or a value) with the key that encrypts the data."""


class SigningKeyFileExists(RuleBroken):
    """A signing key file is never overwritten: the anchors it signed would no longer check."""


class BadSigningKey(RuleBroken):
    """The signing key file is not a PEM Ed25519 private key."""


class AnchorRefused(RuleBroken):
    """An anchor is written only for a log that verifies, to a file that does not exist yet."""


class AnchorUnreadable(RuleBroken):
    """The file given as an anchor is not one `yikatong audit anchor` wrote (or is damaged past reading)."""


# --- the signing key --------------------------------------------------------------------------------


def signing_key_path_for(db: Database) -> Path:
    """`$YIKATONG_SIGNING_KEY_FILE`, else the data key's file (ledger.keys.key_path_for) + `.sign`."""
    override = os.environ.get(SIGNING_KEY_FILE_ENV)
    if override:
        return Path(override)
    return Path(str(key_path_for(db)) + SIGNING_KEY_SUFFIX)


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode("ascii")


def create_signing_key(path: Path) -> Ed25519PrivateKey:
    """A new Ed25519 key written to `path` as PKCS#8 PEM, mode 0600 from the first byte, created exclusively."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_private_file(path, pem, SigningKeyFileExists, "a signing key file")
    return key


def load_signing_key(path: Path) -> Ed25519PrivateKey | None:
    """The key in `path`, or None when there is no such file."""
    data = read_private_file(path, SIGNING_KEY_FILE_BYTES_MAX, BadSigningKey, "a signing key file")
    if data is None:
        return None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise BadSigningKey(f"{path} is not a PEM Ed25519 private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BadSigningKey(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def recorded_signing_key(registry: Application[UUID]) -> SigningKey | None:
    """The signing key this ledger's log records (None: a ledger of a release before anchors)."""
    try:
        return registry.repository.get(SIGNING_KEY_ID)  # type: ignore[no-any-return]
    except AggregateNotFoundError:
        return None


@dataclass(frozen=True, slots=True)
class SigningKeyStatus:
    """What `init_signing_key` found or did, for `yikatong init` to print."""

    path: Path
    public_key: str
    ledger_id: str
    created: bool  # the key file was created now
    recorded: bool  # the public key was recorded in the log now (a new ledger, or one of an earlier release)

    def message(self) -> str:
        verb = "created" if self.created else "using"
        line = f"anchors signed: {verb} signing key file {self.path} (keep it beside the data key, never the same)"
        recorded = "recorded in the log now" if self.recorded else "as the log records"
        return f"{line}\npublic key {self.public_key} ({recorded}); ledger id {self.ledger_id}"


def init_signing_key(db: Database, registry: Application[UUID], actor: str) -> SigningKeyStatus:
    """The ledger's signing key: load its file or create it, and record its public half in the log once.

    A ledger of an earlier release has no signing key: `init` run on it creates one and records it. A key
    file whose key differs from the one the log records is refused, and so is a missing key file for a
    ledger whose log records one (restore it: a new key would not match the anchors already given out).
    """
    path = signing_key_path_for(db)
    _check_not_data_key(db, path)
    recorded = recorded_signing_key(registry)
    key = load_signing_key(path)
    created = False
    if key is None:
        if recorded is not None:
            raise NoSigningKey(
                f"this ledger's log records signing key {recorded.public_key}, and its key file {path} is missing "
                "(restore it from the offline copy)"
            )
        key = create_signing_key(path)
        created = True
    public_key = public_key_text(key)
    if recorded is not None:
        recorded.check_same(public_key)
        return SigningKeyStatus(path, public_key, recorded.ledger_id, created, recorded=False)
    # One id per ledger: the charter's when it has one (ledgers of this release), else a new one.
    charter = registry.charter() if hasattr(registry, "charter") else None
    ledger_id = str(charter.ledger_id) if charter is not None else str(uuid4())
    entry = SigningKey(ledger_id=ledger_id, public_key=public_key, actor=actor)
    try:
        registry.save(entry)
    except IntegrityError:  # another `init` recorded its key at the same moment: that one stands
        winner = recorded_signing_key(registry)
        assert winner is not None  # the store refused ours because it holds one
        winner.check_same(public_key)
        return SigningKeyStatus(path, public_key, winner.ledger_id, created, recorded=False)
    return SigningKeyStatus(path, public_key, entry.ledger_id, created, recorded=True)


def _check_not_data_key(db: Database, path: Path) -> None:
    data_key = key_path_for(db)
    if path.resolve() == data_key.resolve():
        raise SigningKeyIsDataKey(
            f"{path} is the data key's file; the signing key lives in its own file (${SIGNING_KEY_FILE_ENV})"
        )


def _signing_key_for_anchor(db: Database, registry: Application[UUID]) -> tuple[Ed25519PrivateKey, SigningKey]:
    recorded = recorded_signing_key(registry)
    if recorded is None:
        raise NoSigningKey(
            "this ledger's log records no signing key (it was created by a release before anchors): "
            "run `yikatong init` once to create one and record it"
        )
    path = signing_key_path_for(db)
    key = load_signing_key(path)
    if key is None:
        raise NoSigningKey(
            f"no signing key file at {path} (${SIGNING_KEY_FILE_ENV}); the log records {recorded.public_key}"
        )
    recorded.check_same(public_key_text(key))
    return key, recorded


# --- the anchor -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TableAnchor:
    """One event table as an anchor records it (see the module docstring)."""

    table: str
    application: str
    sealed_position: int  # S: the last position the log's seals covered
    sealed_chain_sha256: str  # h(S), as `audit verify` prints it
    position: int  # E: the end of the log when anchored (its last seals lie in (S, E])
    events: int  # stored events at ids ≤ E
    chain_sha256: str  # h(E): the chain head
    absent: tuple[tuple[int, int], ...]  # runs (first id, count) of ids ≤ E that held no event
    tail: tuple[tuple[int, str], ...]  # (id, sha256 hex) of each event in (S, E]

    def as_json(self) -> dict[str, Any]:
        return {
            "application": self.application,
            "sealed_position": self.sealed_position,
            "sealed_chain_sha256": self.sealed_chain_sha256,
            "position": self.position,
            "events": self.events,
            "chain_sha256": self.chain_sha256,
            "absent": [list(run) for run in self.absent],
            "tail": [list(entry) for entry in self.tail],
        }


@dataclass(frozen=True, slots=True)
class Anchor:
    ledger_id: str
    anchored_at: str  # ISO 8601, UTC
    anchored_by: str
    public_key: str  # ed25519:<base64 of the 32 raw bytes>
    tables: tuple[TableAnchor, ...]
    signature: str  # base64 of the Ed25519 signature over `canonical_bytes(self.body())`
    source: str = ""  # the file it was read from or written to (not part of what is signed)

    def body(self) -> dict[str, Any]:
        """Everything that is signed: the anchor without its signature."""
        return {
            "format": ANCHOR_FORMAT,
            "ledger_id": self.ledger_id,
            "anchored_at": self.anchored_at,
            "anchored_by": self.anchored_by,
            "public_key": self.public_key,
            "tables": {t.table: t.as_json() for t in self.tables},
        }

    def as_json(self) -> dict[str, Any]:
        return {**self.body(), "signature": self.signature}

    def signature_valid(self) -> bool:
        """The signature checks against the anchor's own public key (whether that key is the ledger's is
        checked against the log by `verify_against`)."""
        try:
            raw = base64.b64decode(self.public_key[len(PUBLIC_KEY_PREFIX) :], validate=True)
            public = Ed25519PublicKey.from_public_bytes(raw)
            public.verify(base64.b64decode(self.signature, validate=True), canonical_bytes(self.body()))
        except (InvalidSignature, ValueError, binascii.Error):
            return False
        return True


def canonical_bytes(document: dict[str, Any]) -> bytes:
    """One byte string per document: sorted keys, no whitespace, ASCII only (integers and strings only)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def write_anchor(
    out: Path, db: Database, registry: Application[UUID], disbursement: Application[UUID], actor: str
) -> Anchor:
    """Verify both logs (already sealed by the caller), sign where they end, and write it to `out`."""
    key, recorded = _signing_key_for_anchor(db, registry)
    tables = tuple(_table_anchor(app) for app in (registry, disbursement))
    unsigned = Anchor(
        ledger_id=recorded.ledger_id,
        anchored_at=datetime.now(UTC).isoformat(timespec="seconds"),
        anchored_by=actor,
        public_key=recorded.public_key,
        tables=tables,
        signature="",
    )
    signature = base64.b64encode(key.sign(canonical_bytes(unsigned.body()))).decode("ascii")
    anchor = replace(unsigned, signature=signature, source=str(out))
    _write_new_file(out, canonical_bytes(anchor.as_json()) + b"\n")
    return anchor


def _table_anchor(app: Application[UUID]) -> TableAnchor:
    log = verify_log(app)
    if log.failures:
        raise AnchorRefused(
            f"{log.describe(log.failures[0])}; an anchor never vouches for a log that does not verify "
            "(run `yikatong audit verify`)"
        )
    if not log.absent_complete or len(log.absent) > ANCHOR_ABSENT_RUNS_MAX:
        raise AnchorRefused(f"{log.table}: more than {ANCHOR_ABSENT_RUNS_MAX} runs of absent ids to record")
    tail = log_rows(app.recorder, log.sealed_position + 1, log.position, ANCHOR_TAIL_MAX + 1)
    if len(tail) > ANCHOR_TAIL_MAX:
        raise AnchorRefused(
            f"{log.table}: more than {ANCHOR_TAIL_MAX} events after the last seal (another command is writing): "
            "run `audit anchor` again"
        )
    return TableAnchor(
        table=log.table,
        application=log.application,
        sealed_position=log.sealed_position,
        sealed_chain_sha256=log.chain_sha256,
        position=log.position,
        events=log.events,
        chain_sha256=log.head_sha256,
        absent=log.absent,
        tail=tuple((row.id, log_row_sha256(row).hex()) for row in tail),
    )


def _write_new_file(path: Path, data: bytes) -> None:
    """An anchor is evidence: written once, never over another file."""
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise AnchorRefused(f"{path} exists; an anchor is never written over another file") from None
    except OSError as e:
        raise AnchorRefused(f"{path}: cannot write: {e.strerror}") from None
    with os.fdopen(handle, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


# --- reading an anchor file -------------------------------------------------------------------------


def read_anchor(path: Path) -> Anchor:
    """An anchor file, checked for shape (not yet for its signature: that is a finding of verify)."""
    try:
        with path.open("rb") as f:
            data = f.read(ANCHOR_BYTES_MAX + 1)
    except OSError as e:
        raise AnchorUnreadable(f"{path}: cannot read: {e.strerror}") from None
    if len(data) > ANCHOR_BYTES_MAX:
        raise AnchorUnreadable(f"{path}: not an anchor (larger than {ANCHOR_BYTES_MAX} bytes)")
    try:
        document = json.loads(data.decode("utf-8"))
        return replace(_anchor_from(document), source=str(path))
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise AnchorUnreadable(f"{path}: not a yikatong anchor: {e}") from None


def _anchor_from(document: Any) -> Anchor:
    if not isinstance(document, dict) or document.get("format") != ANCHOR_FORMAT:
        raise ValueError(f"format is not {ANCHOR_FORMAT}")
    if set(document) != {"format", "ledger_id", "anchored_at", "anchored_by", "public_key", "tables", "signature"}:
        raise ValueError(f"unexpected fields {sorted(document)}")
    tables = document["tables"]
    if not isinstance(tables, dict) or not tables:
        raise ValueError("tables: not an object of tables")
    return Anchor(
        ledger_id=_text(document, "ledger_id"),
        anchored_at=_text(document, "anchored_at"),
        anchored_by=_text(document, "anchored_by"),
        public_key=_text(document, "public_key"),
        tables=tuple(_table_from(name, tables[name]) for name in sorted(tables)),
        signature=_text(document, "signature"),
    )


def _table_from(name: str, t: Any) -> TableAnchor:
    if not isinstance(t, dict):
        raise ValueError(f"{name}: not an object")
    sealed, end, events = _count(t, "sealed_position"), _count(t, "position"), _count(t, "events")
    absent = tuple((_id(run, 0), _id(run, 1)) for run in _list(t, "absent"))
    tail = tuple((_id(entry, 0), _sha(entry[1])) for entry in _list(t, "tail"))
    if sealed > end:
        raise ValueError(f"{name}: sealed_position {sealed} after position {end}")
    cursor = 1
    for first, count in absent:
        if first < cursor or first + count - 1 > end:
            raise ValueError(f"{name}: absent ids out of order or past position {end}")
        cursor = first + count + 1
    if events != end - sum(count for _, count in absent):
        raise ValueError(f"{name}: {events} events do not fit positions 1–{end} less the absent ids")
    positions = [p for p, _ in tail]
    absent_after_sealed = sum(max(0, f + c - 1 - max(f, sealed + 1) + 1) for f, c in absent)
    if (
        positions != sorted(set(positions))
        or any(p <= sealed or p > end or _in_runs(absent, p) for p in positions)
        or len(positions) != end - sealed - absent_after_sealed
    ):
        raise ValueError(f"{name}: the tail is not every event in ({sealed}, {end}]")
    return TableAnchor(
        table=name,
        application=_text(t, "application"),
        sealed_position=sealed,
        sealed_chain_sha256=_sha(t["sealed_chain_sha256"]),
        position=end,
        events=events,
        chain_sha256=_sha(t["chain_sha256"]),
        absent=absent,
        tail=tail,
    )


def _text(d: dict[str, Any], key: str) -> str:
    value = d[key]
    if not isinstance(value, str):
        raise ValueError(f"{key}: not a string")
    return value


def _count(d: dict[str, Any], key: str) -> int:
    value = d[key]
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= POSITION_MAX:
        raise ValueError(f"{key}: not a count")
    return value


def _id(pair: Any, index: int) -> int:
    if not isinstance(pair, list) or len(pair) != 2:
        raise ValueError("not a pair")
    value = pair[index]
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= POSITION_MAX:
        raise ValueError(f"{value!r}: not a position")
    return value


def _list(d: dict[str, Any], key: str) -> list[Any]:
    value = d[key]
    if not isinstance(value, list):
        raise ValueError(f"{key}: not a list")
    return value


def _sha(value: Any) -> str:
    if not isinstance(value, str) or len(value) != SHA256_HEX or value.strip("0123456789abcdef"):
        raise ValueError(f"{value!r}: not a SHA-256 in hex")
    return value


def _in_runs(runs: tuple[tuple[int, int], ...] | list[tuple[int, int]], position: int) -> bool:
    index = bisect.bisect_right([first for first, _ in runs], position) - 1
    return index >= 0 and position < runs[index][0] + runs[index][1]


# --- verifying the log against anchors ------------------------------------------------------------


def verify_against(
    registry: Application[UUID], disbursement: Application[UUID], anchors: list[Anchor]
) -> tuple[tuple[VerifyResult, ...], tuple[AnchorResult, ...]]:
    """Both logs verified (ledger.audit.verify_log) and shown to extend each anchor; what each anchor
    locates is added to its table's failures, in position order. Reads only."""
    apps = {app.recorder.events_table_name: app for app in (registry, disbursement)}  # type: ignore[attr-defined]
    marks: dict[str, set[int]] = {table: set() for table in apps}
    for anchor in anchors:
        for t in anchor.tables:
            if t.table in marks:
                marks[t.table] |= {t.sealed_position, t.position}
    logs = {table: verify_log(app, marks[table]) for table, app in apps.items()}
    failures = {table: list(log.failures) for table, log in logs.items()}
    recorded, key_problem = _recorded_key(registry)
    proven = _proven_prefixes(anchors, logs)
    results = []
    for anchor in anchors:
        problems = _anchor_problems(anchor, recorded, key_problem)
        checked = []
        if anchor.signature_valid():
            for t in anchor.tables:
                if t.table not in apps:
                    problems.append(f"records table {t.table}, which this ledger does not have")
                    continue
                log = logs[t.table]
                found, failures[t.table] = _check_table(t, log, apps[t.table], anchor, failures[t.table], proven)
                failures[t.table].extend(found)
                # h(E) as recorded: every event at ids ≤ E is still there, unchanged, and nothing was added.
                extended = log.at[t.position][1] == t.chain_sha256
                checked.append(AnchoredTable(t.table, t.sealed_position, t.position, t.events, extended=extended))
        results.append(
            AnchorResult(
                source=anchor.source,
                anchored_at=anchor.anchored_at,
                ledger_id=anchor.ledger_id,
                public_key=anchor.public_key,
                signature_valid=anchor.signature_valid(),
                tables=tuple(checked),
                failures=tuple(problems),
            )
        )
    verified = tuple(replace(log, failures=_in_order(failures[table])) for table, log in logs.items())
    return verified, tuple(results)


def _recorded_key(registry: Application[UUID]) -> tuple[SigningKey | None, str]:
    try:
        return recorded_signing_key(registry), ""
    except Exception as e:  # a recorded key that no longer decodes was changed; the chain locates where
        return None, f"the signing key recorded in the log cannot be read ({type(e).__name__}: {e})"


def _anchor_problems(anchor: Anchor, recorded: SigningKey | None, key_problem: str) -> list[str]:
    problems = []
    if not anchor.signature_valid():
        problems.append(
            "its signature does not verify against its own public key: the file was changed after it was "
            "signed, or not written by yikatong; its contents are not used"
        )
    if key_problem:
        problems.append(key_problem)
    elif recorded is None:
        problems.append("this ledger's log records no signing key, so no anchor can be checked against it")
    else:
        if anchor.public_key != recorded.public_key:
            problems.append(f"signed with {anchor.public_key}; this ledger's log records {recorded.public_key}")
        if anchor.ledger_id != recorded.ledger_id:
            problems.append(f"is of ledger {anchor.ledger_id}; this ledger is {recorded.ledger_id}")
    return problems


def _proven_prefixes(anchors: list[Anchor], logs: dict[str, VerifyResult]) -> dict[str, list[tuple[int, str]]]:
    """Per table, the positions up to which a validly signed anchor proves the log unchanged, with the anchor."""
    proven: dict[str, list[tuple[int, str]]] = {table: [] for table in logs}
    for anchor in anchors:
        if not anchor.signature_valid():
            continue
        for t in anchor.tables:
            log = logs.get(t.table)
            if log is not None and log.at[t.sealed_position][1] == t.sealed_chain_sha256:
                proven[t.table].append((t.sealed_position, anchor.anchored_at))
    return proven


def _check_table(
    t: TableAnchor,
    log: VerifyResult,
    app: Application[UUID],
    anchor: Anchor,
    current: list[Failure],
    proven: dict[str, list[tuple[int, str]]],
) -> tuple[list[Failure], list[Failure]]:
    """(what this anchor finds in the table, the log's own failures with the claims it refutes moved to
    the seal that made them)."""
    label = f"the anchor of {anchor.anchored_at}"
    found = _ids_differ(t, log, label)
    found.extend(_tail_changed(t, app, label))
    prefix_intact = log.at[t.sealed_position][1] == t.sealed_chain_sha256
    located = [f.position for f in (*current, *found) if f.position is not None]
    if not prefix_intact and not any(p <= t.sealed_position for p in located):
        earlier = max((p for p in proven[t.table] if p[0] < t.sealed_position), default=(0, ""))
        since = f" after position {earlier[0]} (the anchor of {earlier[1]} proves 1–{earlier[0]})" if earlier[0] else ""
        found.append(
            Failure(
                None,
                "anchor",
                f"the chain at position {t.sealed_position} is not the {t.sealed_chain_sha256[:16]}… {label} "
                f"records: events at or before it{since} were rewritten and the log re-sealed to match",
                within=t.sealed_position,
            )
        )
    elif log.at[t.position][1] != t.chain_sha256 and not any(p <= t.position for p in located) and not found:
        found.append(Failure(None, "anchor", f"the chain head at position {t.position} is not the one {label} records"))
    if log.sealed_position < t.sealed_position and not found:
        found.append(
            Failure(
                None,
                "anchor",
                f"the log's seals end at position {log.sealed_position}, before position {t.sealed_position} "
                f"that {label} records as sealed: seals were deleted",
            )
        )
    if not prefix_intact:
        return found, current
    return found, [_refuted(f, t, label) for f in current]


def _refuted(f: Failure, t: TableAnchor, label: str) -> Failure:
    """A seal's claim about a position the anchor proves unchanged is the seal's own change."""
    if f.position is None or f.position > t.sealed_position or f.sealed_by is None:
        return f
    detail = (
        f"this seal claims position {f.position} is {f.kind}, but {label} proves positions 1–{t.sealed_position} "
        "unchanged: the seal was changed after it was written"
    )
    return Failure(f.sealed_by, "checkpoint", detail)


def _ids_differ(t: TableAnchor, log: VerifyResult, label: str) -> list[Failure]:
    """The first id where the anchor and the log disagree on whether an event is there."""
    if not log.absent_complete:
        return [Failure(None, "anchor", f"too many runs of absent ids to compare with {label}")]
    now = [(first, min(count, t.position - first + 1)) for first, count in log.absent if first <= t.position]
    if log.position < t.position:
        now.append((log.position + 1, t.position - log.position))
    position = _first_difference(t.absent, tuple(now), t.position)
    if position is None:
        return []
    if _in_runs(t.absent, position):
        return [Failure(position, "inserted", f"no event was here when {label} was written")]
    if position > log.position:
        detail = f"{label} records events through position {t.position}; the log now ends at {log.position} (truncated)"
    else:
        detail = f"{label} records an event here; it is no longer in the log (deleted)"
    return [Failure(position, "missing", detail)]


def _first_difference(a: tuple[tuple[int, int], ...], b: tuple[tuple[int, int], ...], limit: int) -> int | None:
    """The smallest id in 1…limit inside one set of runs and not the other (membership changes only at a
    run's first id or just after its last, so those are the only places to look)."""
    candidates = sorted({1, *(f for f, _ in a), *(f + c for f, c in a), *(f for f, _ in b), *(f + c for f, c in b)})
    for position in candidates:
        if position > limit:
            return None
        if _in_runs(a, position) != _in_runs(b, position):
            return position
    return None


def _tail_changed(t: TableAnchor, app: Application[UUID], label: str) -> list[Failure]:
    """The first event after the anchor's last seal (its own seals) that no longer hashes as recorded."""
    if not t.tail:
        return []
    rows = log_rows(app.recorder, t.tail[0][0], t.position, len(t.tail) + ANCHOR_TAIL_MAX)
    now = {row.id: log_row_sha256(row).hex() for row in rows}
    for position, sha in t.tail:
        if position in now and now[position] != sha:
            return [Failure(position, "changed", f"the event here differs from the one {label} records")]
    return []


def _in_order(failures: list[Failure]) -> tuple[Failure, ...]:
    """Position order, one failure per position (an unreadable seal is said once, as a checkpoint); a
    failure known only to lie at or before a position comes before those located after it."""

    def key(f: Failure) -> tuple[bool, int, int]:
        where = f.position if f.position is not None else f.within
        return (where is None, where or 0, 0 if f.position is None else 1 if f.kind == "checkpoint" else 2)

    ordered = sorted(failures, key=key)
    kept = [f for i, f in enumerate(ordered) if f.position is None or i == 0 or ordered[i - 1].position != f.position]
    return tuple(kept[:FAILURES_MAX])
