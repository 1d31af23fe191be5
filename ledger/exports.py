"""Batches out to the bank and results back in: the ledger side of `exporters/`.

Guarantees:
- Deterministic exports: rows come from the payments' stored events in batch order, the file time from
  the batch's `Drafted` event, never the clock; the same batch exports to the same bytes.
- A file is written to a temporary name in the target folder and renamed when complete, so no half
  file ever carries the final name (a full disk leaves nothing under that name); the temporary file of
  a writer that was killed is removed by the next export of the same name.
- Every export is recorded on the batch with format, file names and SHA-256; a one-card export also with
  the SHA-256 of the bank profile text it used, which the ledger holds (ledger.profiles): only an
  approved profile (or a shipped one) lays out a bank file or reads a bank's return file.
- An exported file is never silently overwritten (issue 13, item 6): a file of the same name with other
  bytes refuses the export, naming it, unless `force`; `force` is refused for a batch already approved
  (or submitted, or settled), whose files are what the checker approved. A file already there with the
  very same bytes is left as it is: nothing is overwritten. The final rename refuses to replace a file
  that appeared meanwhile (a hard link, which fails when the name exists), so no race overwrites one.
- A bank result file applies whole or not at all: unknown payments, amounts that disagree with the
  ledger, results for unapproved batches and results that contradict earlier ones are all reported and
  nothing is applied. The file's SHA-256 names a `BankFile` aggregate, so importing the same file twice,
  even at the same moment, changes nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from domain.disbursement import APPROVED, SETTLED, SUBMITTED, BankFile, Batch, bank_file_id
from domain.errors import FileRejected, RuleBroken
from domain.policy import Policy
from exporters.limits import FieldRule, export_field_rules
from exporters.onecard import Profile
from exporters.rows import BankResult, BatchHeader, ExportRefused, PaymentRow, ResultFileRejected
from ledger.apps import ConcurrentChange
from ledger.disbursement import Disbursement, PaymentView
from ledger.history import payments_of
from ledger.profiles import ProfileInUse, profile_in_use

FORMATS = ("onecard", "pain001", "xlsx", "notice")
PAIN001_VERSIONS = ("001.001.09", "001.001.03")
PAIN001_ROWS_MAX = 50_000  # payments per pain.001 file; a larger batch splits, each file with its own sum


class ExportFailed(RuleBroken):
    """An export the exporters refused (names the rule and the row or profile key)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule_name = rule

    @property
    def rule(self) -> str:
        return self.rule_name


class ExportWouldOverwrite(RuleBroken):
    """An exported file is never silently overwritten: a file of that name with other bytes is in the way."""


class ApprovedBatchFilesAreKept(RuleBroken):
    """`--force` cannot replace the files of a batch already approved: they are what the checker approved."""


class ResultsRefused(FileRejected):
    """A bank result file was refused whole; `errors` lists every problem found."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__(errors, "\n".join((*errors, "nothing applied")))


def message_id(batch: Batch) -> str:
    """ISO 20022 MsgId (≤ 35 characters): derived from the batch id, so it is stable and traceable."""
    return f"YKT{batch.id.hex[:28]}"


def batch_header(policy: Policy, batch: Batch) -> BatchHeader:
    return BatchHeader(
        batch_id=batch.id.hex,
        message_id=message_id(batch),
        created_at=batch.created_on.replace(microsecond=0),
        region=batch.region,
        region_name=policy.region_name,
        programme=batch.programme,
        programme_name=policy.payment_name(batch.programme),  # a programme's, 临时救助's or a holiday payment's
        period=batch.period,
        due_date=batch.due_date,
        payer_name=policy.settings.get("payer_name", policy.region_name),
        payer_account=policy.settings.get("payer_account", ""),
        payer_bank_code=policy.settings.get("payer_bank_code", ""),
        count=batch.count,
        total_fen=batch.total_fen,
    )


# The longest remark a payment of a programme carries: its name, the longest period name, the re-issue mark.
_REMARK_SAMPLE = "{name} 2017-01 补发"


def policy_field_problems(policy: Policy, rules: Mapping[str, FieldRule] | None = None) -> list[str]:
    """The policy's texts that go into bank files and workbooks (`batch_header`, `payment_rows`), each
    against what every configured export format can carry (exporters.limits), by TOML key path: a
    programme name with the delimiter, or too long for pain.001's remark, is refused at `policy load`
    rather than when the first batch of that programme is exported."""
    chosen = export_field_rules() if rules is None else rules
    texts = [
        ("region.name", "region_name", policy.region_name),
        ("settings.payer_name", "payer_name", policy.settings.get("payer_name", policy.region_name)),
        ("settings.payer_account", "payer_account", policy.settings.get("payer_account", "")),
        ("settings.payer_bank_code", "payer_bank_code", policy.settings.get("payer_bank_code", "")),
    ]
    for key, programme in policy.programmes.items():
        texts.append((f"programmes.{key}.name", "programme_name", programme.name))
        texts.append((f"programmes.{key}.name", "remark", _REMARK_SAMPLE.format(name=programme.name)))
    one_offs = [(f"oneoffs.{key}.name", o.name) for key, o in policy.oneoffs.items()]
    if policy.temporary_aid is not None:
        one_offs.append(("programmes.temporary_aid.name", policy.temporary_aid.name))
    for path, name in one_offs:
        texts.append((path, "programme_name", name))
        texts.append((path, "remark", _REMARK_SAMPLE.format(name=name)))
    problems = []
    for path, field, value in texts:
        rule = chosen.get(field)
        if rule is not None and value:
            problems.extend(f"{path}: {problem}" for problem in rule.problems(value))
    return problems


def payment_rows(header: BatchHeader, batch: Batch, views: dict[str, PaymentView]) -> list[PaymentRow]:
    rows = []
    for serial, pid in enumerate(batch.payment_ids, start=1):
        view = views[pid]
        # 补发: a returned payment paid again; 补差: an adjustment, the difference now due for its period.
        mark = " 补发" if view.reissue_of else " 补差" if view.adjusts else ""
        remark = f"{header.programme_name} {view.period}{mark}"
        rows.append(
            PaymentRow(
                serial=serial,
                payment_id=pid,
                id_number=view.id_number,
                name=batch.payee_name(pid, view.name),
                account=view.account,
                bank_code=view.bank_code,
                amount_fen=view.net_fen,  # the bank line: less what was settled by offset (recoveries)
                region=view.region,
                persons=view.persons,
                remark=remark,
            )
        )
    assert sum(r.amount_fen for r in rows) == batch.total_fen, "a batch's total is the sum of its payments"
    return rows


def render(
    fmt: str, header: BatchHeader, rows: list[PaymentRow], profile: Profile | str, version: str
) -> list[tuple[str, bytes]]:
    """(file name, bytes) for one format; the exporters decide layout, the ledger decides content.

    `profile` is a checked profile (ledger.profiles), or, for exports recorded by earlier releases
    (no profile hash), the name or path they recorded, loaded as those releases did."""
    try:
        if fmt == "onecard":
            from exporters.onecard import load_profile, render_onecard

            return render_onecard(header, rows, profile if isinstance(profile, Profile) else load_profile(profile))
        if fmt == "pain001":
            from exporters.pain001 import render_pain001_files

            return render_pain001_files(header, rows, version=version, limit=PAIN001_ROWS_MAX)
        if fmt == "xlsx":
            from exporters.xlsx import render_roster

            return [(f"{header.message_id}-roster.xlsx", render_roster(header, rows))]
        if fmt == "notice":
            from exporters.xlsx import render_notice

            return [(f"{header.message_id}-notice.xlsx", render_notice(header, rows))]
    except ExportRefused as e:
        raise ExportFailed(e.rule, str(e)) from None
    raise ExportFailed("UnknownFormat", f"format {fmt!r}: use one of {', '.join(FORMATS)}")


TEMPORARY_SUFFIX = ".part"


def write_atomically(folder: Path, name: str, data: bytes, *, replace: bool = True) -> Path:
    """Write to a temporary file beside the target, fsync, then rename over the final name.

    The temporary name carries the writer's host and process id (`.NAME.HOST-PID.xxxx.part`). A process
    killed between writing and renaming leaves its temporary file behind; the next export of the same
    name on the same host removes the ones whose writer is gone, so a rerun after a crash leaves the
    folder as a clean run would. Another host's temporary files are never touched (its pids are not
    ours to judge).

    With `replace=False` an existing file is never replaced: the temporary file is hard-linked to the
    final name, which fails when the name exists (a file that appeared since the caller looked), and
    `ExportWouldOverwrite` is raised unless that file holds the very same bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    remove_abandoned_temporaries(folder, name)
    handle, temporary = tempfile.mkstemp(prefix=f".{name}.{temporary_writer()}.", suffix=TEMPORARY_SUFFIX, dir=folder)
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(temporary, target)
        else:
            _link_unless_present(Path(temporary), target, data)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return target


def _link_unless_present(temporary: Path, target: Path, data: bytes) -> None:
    try:
        os.link(temporary, target)
        return
    except FileExistsError:
        pass
    except OSError:  # a file system without hard links: check, then rename (a race may still replace)
        if not target.exists():
            os.replace(temporary, target)
            return
    overwrite_problem = _overwrite_problem(target, data)
    if overwrite_problem:
        raise ExportWouldOverwrite(overwrite_problem)


def _overwrite_problem(target: Path, data: bytes) -> str:
    """Why writing `data` to `target` would overwrite something ("" when nothing or the same bytes are there)."""
    if not target.exists() and not target.is_symlink():
        return ""
    if target.is_file() and not target.is_symlink():
        there = hashlib.sha256(target.read_bytes()).hexdigest()
        if there == hashlib.sha256(data).hexdigest():
            return ""
        what = f"holds other bytes (SHA-256 {there[:16]}…)"
    else:
        what = "is not a regular file"
    return f"{target} exists and {what}: nothing written; --force replaces it (not for an approved batch)"


def temporary_writer(pid: int | None = None) -> str:
    host = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname()) or "host"
    return f"{host}-{os.getpid() if pid is None else pid}"


def remove_abandoned_temporaries(folder: Path, name: str) -> list[Path]:
    """Delete this host's `.NAME.HOST-PID.xxxx.part` files in `folder` whose process no longer runs."""
    removed = []
    host = temporary_writer().rsplit("-", 1)[0]
    for path in folder.glob(f".{glob_escape(name)}.{host}-*{TEMPORARY_SUFFIX}"):
        writer = path.name[len(name) + 2 :].split(".", 1)[0]
        pid_text = writer.rsplit("-", 1)[-1]
        if pid_text.isdigit() and writer == temporary_writer(int(pid_text)) and not _process_alive(int(pid_text)):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


@dataclass(frozen=True, slots=True)
class ExportedFile:
    path: Path
    sha256: str
    size: int
    unchanged: bool = False  # the file was already there with the very same bytes, and was left as it was


def export_batch(
    disbursement: Disbursement,
    policy: Policy,
    batch_ref: str,
    *,
    fmt: str,
    out: Path,
    profile: str = "generic",
    version: str = "001.001.09",
    actor: str,
    force: bool = False,
) -> tuple[Batch, list[ExportedFile]]:
    """Write a batch's files and record the export (module docstring: overwriting, profiles)."""
    if fmt not in FORMATS:
        raise ExportFailed("UnknownFormat", f"format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "pain001" and version not in PAIN001_VERSIONS:
        raise ExportFailed("UnknownVersion", f"pain.001 version {version!r}: use {' or '.join(PAIN001_VERSIONS)}")
    batch = disbursement.batch(batch_ref)
    if force and batch.status in (APPROVED, SUBMITTED, SETTLED):
        raise ApprovedBatchFilesAreKept(
            f"batch {batch.id.hex} is {batch.status} (approved by {batch.approved_by}): --force cannot replace "
            "its files; export to another folder"
        )
    header = batch_header(policy, batch)
    rows = payment_rows(header, batch, disbursement.payment_views(batch.payment_ids))
    used = _profile_for(disbursement, fmt, profile, actor)
    files = render(fmt, header, rows, used.profile if used else profile, version)
    label = _label(fmt, used, version)
    batch.check_export(format_name=label, files=tuple((n, hashlib.sha256(d).hexdigest()) for n, d in files))
    if not force:
        problems = [p for name, data in files if (p := _overwrite_problem(out / name, data))]
        if problems:
            raise ExportWouldOverwrite("\n".join(problems))
    written = []
    for name, data in files:
        there = not force and (out / name).is_file()
        path = write_atomically(out, name, data, replace=force)
        written.append(ExportedFile(path, hashlib.sha256(data).hexdigest(), len(data), there))
    recorded_files = tuple((f.path.name, f.sha256) for f in written)
    return _record_export(disbursement, batch, label, recorded_files, used, profile, actor), written


def _profile_for(disbursement: Disbursement, fmt: str, profile: str, actor: str) -> ProfileInUse | None:
    """The approved (or shipped) profile a one-card file is laid out with; None for other formats."""
    if fmt != "onecard":
        return None
    return profile_in_use(disbursement, profile, actor=actor)


def _label(fmt: str, used: ProfileInUse | None, version: str) -> str:
    if fmt == "onecard":
        assert used is not None
        return f"onecard:{used.profile.name}"
    return f"pain.{version}" if fmt == "pain001" else fmt


def _record_export(
    disbursement: Disbursement,
    batch: Batch,
    label: str,
    files: tuple[tuple[str, str], ...],
    used: ProfileInUse | None,
    profile: str,
    actor: str,
) -> Batch:
    """Record the export, with the first use of a shipped profile in the same transaction. When another
    export recorded that shipped profile at the same moment, the store refuses ours; it is recorded again
    on the batch as it now stands, the profile being in the ledger by then."""
    sha = used.sha256 if used else ""
    batch.record_export(format_name=label, files=files, actor=actor, profile_sha256=sha)
    pending = used.pending if used else ()
    try:
        disbursement.save(*pending, batch)
        return batch
    except IntegrityError:
        if not pending:
            raise ConcurrentChange("someone else changed the same batch at the same time; nothing recorded") from None
    again = disbursement.batch_by_id(batch.id.hex)
    used = _profile_for(disbursement, "onecard", profile, actor)
    assert used is not None
    if used.sha256 != sha:
        raise ConcurrentChange(f"profile {profile} changed while exporting; nothing recorded, export again")
    again.record_export(format_name=label, files=files, actor=actor, profile_sha256=sha)
    _save(disbursement, *used.pending, again)
    return again


def correct_payee_names(disbursement: Disbursement, id_number: str, name: str, *, reason: str, actor: str) -> int:
    """After `decide rename`: every batch not yet approved that holds a payment to `id_number` under
    another name records the correction (`Batch.NamesCorrected`), so its next export writes `name`;
    returns how many batches changed. Idempotent, so a rename interrupted between the two logs completes
    when run again. Approved batches keep what was approved (a return is re-issued under the new name)."""
    by_batch: dict[str, dict[str, str]] = {}
    for pid, data in payments_of(disbursement, id_number).items():
        by_batch.setdefault(data["batch_id"], {})[pid] = data["name"]
    changed = 0
    for batch_hex, accrued in by_batch.items():
        batch = disbursement.repository.get(UUID(batch_hex))
        names = {pid: name for pid, old in accrued.items() if batch.payee_name(pid, old) != name}
        if names and batch.correct_names(names=names, reason=reason, actor=actor):
            _save(disbursement, batch)
            changed += 1
    return changed


def approve_batch(disbursement: Disbursement, batch_ref: str, actor: str) -> Batch:
    batch = disbursement.batch(batch_ref)
    batch.approve(actor=actor)
    _save(disbursement, batch)
    return batch


def submit_batch(disbursement: Disbursement, batch_ref: str, actor: str) -> Batch:
    batch = disbursement.batch(batch_ref)
    batch.submit(actor=actor)
    _save(disbursement, batch)
    return batch


@dataclass(frozen=True, slots=True)
class ImportOutcome:
    already_imported: bool
    paid: int
    returned: int
    batches: int  # batches that gained results
    batch_ids: tuple[str, ...] = ()  # every batch the file answers for, in the file's order


def import_bank_file(disbursement: Disbursement, path: Path, *, actor: str, profile: str = "generic") -> ImportOutcome:
    data = _read_bank_file(path)
    sha = hashlib.sha256(data).hexdigest()
    if disbursement.find(bank_file_id(sha)) is not None:
        return ImportOutcome(True, 0, 0, 0)
    checked = _checked_results(disbursement, data, path.name, profile, actor)
    results, batches = checked.results, checked.batches
    changed = []
    for batch_hex, batch_results in checked.per_batch.items():
        if batches[batch_hex].record_results(bank_file=sha, results=tuple(batch_results), actor=actor):
            changed.append(batches[batch_hex])
    paid = sum(1 for r in results if r.status == "paid")
    used = checked.used
    record = BankFile(
        sha256=sha,
        name=path.name,
        file_format=checked.file_format,
        message_id=checked.original_message,
        paid=paid,
        returned=len(results) - paid,
        actor=actor,
        profile_sha256=used.sha256 if used else "",
    )
    pending = used.pending if used else ()
    try:
        disbursement.save(*pending, record, *changed)  # one transaction: the file and every batch's results
    except IntegrityError:
        if disbursement.find(bank_file_id(sha)) is not None:
            return ImportOutcome(True, 0, 0, 0)
        raise ResultsRefused(
            [f"{path.name}: a batch changed while importing; nothing applied, import it again"]
        ) from None
    return ImportOutcome(False, paid, len(results) - paid, len(changed), tuple(checked.per_batch))


@dataclass(frozen=True, slots=True)
class ResultLine:
    """One payment's result as a bank file states it, beside what the ledger holds for it."""

    payment_id: str
    batch_id: str
    name: str  # as the batch's file carried it
    id_number: str
    account: str
    amount_fen: int  # the bank line's amount (the payment's `net_fen`)
    status: str  # "paid" | "returned"
    reason_code: str  # ISO 20022 (AC04…) when returned
    known: bool  # the ledger holds this result already (an earlier file said the same)


@dataclass(frozen=True, slots=True)
class BatchResults:
    """What a bank file says of one batch."""

    batch_id: str
    programme: str
    period: str
    region: str
    status: str  # the batch's state now
    paid: int
    paid_fen: int
    returned: int
    returned_fen: int
    settles: bool  # after the file every payment of the batch has a result: 已回盘


@dataclass(frozen=True, slots=True)
class BankPreview:
    """What importing a bank result file would record, read and matched to the ledger, recording nothing
    (the web's 回盘 preview before 确认入账). `already_imported`: the ledger holds this very file (by its
    SHA-256), and importing it again changes nothing."""

    file: str
    sha256: str
    already_imported: bool
    file_format: str = ""
    message_id: str = ""
    lines: tuple[ResultLine, ...] = ()
    batches: tuple[BatchResults, ...] = ()

    @property
    def paid(self) -> int:
        return sum(1 for line in self.lines if line.status == "paid")

    @property
    def returned(self) -> int:
        return len(self.lines) - self.paid

    @property
    def paid_fen(self) -> int:
        return sum(line.amount_fen for line in self.lines if line.status == "paid")

    @property
    def returned_fen(self) -> int:
        return sum(line.amount_fen for line in self.lines if line.status != "paid")


def preview_bank_file(disbursement: Disbursement, path: Path, *, actor: str, profile: str = "generic") -> BankPreview:
    """The file read and checked exactly as `import_bank_file` checks it (the same ResultsRefused, the same
    rules), with nothing saved: which payments it marks paid and which returned, batch by batch."""
    data = _read_bank_file(path)
    sha = hashlib.sha256(data).hexdigest()
    if disbursement.find(bank_file_id(sha)) is not None:
        return BankPreview(path.name, sha, True)
    checked = _checked_results(disbursement, data, path.name, profile, actor)
    lines = []
    for result in checked.results:
        view = checked.views[result.payment_id]
        batch = checked.batches[view.batch_id]
        lines.append(
            ResultLine(
                payment_id=result.payment_id,
                batch_id=view.batch_id,
                name=batch.payee_name(view.payment_id, view.name),
                id_number=view.id_number,
                account=view.account,
                amount_fen=view.net_fen,
                status=result.status,
                reason_code=result.reason_code,
                known=result.payment_id in batch.results,
            )
        )
    per_batch = [_batch_results(checked.batches[b], [x for x in lines if x.batch_id == b]) for b in checked.per_batch]
    return BankPreview(
        path.name, sha, False, checked.file_format, checked.original_message, tuple(lines), tuple(per_batch)
    )


def _batch_results(batch: Batch, lines: list[ResultLine]) -> BatchResults:
    paid = [line for line in lines if line.status == "paid"]
    returned = [line for line in lines if line.status != "paid"]
    answered = set(batch.results) | {line.payment_id for line in lines}
    return BatchResults(
        batch_id=batch.id.hex,
        programme=batch.programme,
        period=batch.period,
        region=batch.region,
        status=batch.status,
        paid=len(paid),
        paid_fen=sum(line.amount_fen for line in paid),
        returned=len(returned),
        returned_fen=sum(line.amount_fen for line in returned),
        settles=len(answered) >= len(batch.payment_ids),
    )


@dataclass(frozen=True, slots=True)
class _CheckedResults:
    """A bank file read, matched to the ledger's payments and batches, and found to apply whole."""

    used: ProfileInUse | None
    file_format: str
    original_message: str
    results: list[BankResult]
    views: dict[str, PaymentView]
    batches: dict[str, Batch]
    per_batch: dict[str, list[tuple[str, str, str, str]]]  # batch → (payment, status, reason, settled_on)


def _read_bank_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ResultsRefused([f"{path}: cannot read: {e.strerror}"]) from None


def _checked_results(disbursement: Disbursement, data: bytes, name: str, profile: str, actor: str) -> _CheckedResults:
    """Every rule a result file must meet before any of it applies (module docstring); ResultsRefused
    listing each problem otherwise."""
    used = None if _is_xml(data) else profile_in_use(disbursement, profile, actor=actor)
    file_format, original_message, results = _read_results(data, name, used.profile if used else profile)
    views = disbursement.payment_views(r.payment_id for r in results)
    errors = _check_against_ledger(name, results, views, original_message)
    batches: dict[str, Batch] = {}
    for result in results:
        view = views.get(result.payment_id)
        if view is not None and view.batch_id not in batches:
            batches[view.batch_id] = disbursement.batch_by_id(view.batch_id)
    per_batch: dict[str, list[tuple[str, str, str, str]]] = {}
    for result in results:
        view = views.get(result.payment_id)
        if view is None:
            continue
        settled = result.settled_on.isoformat() if result.settled_on else ""
        per_batch.setdefault(view.batch_id, []).append((result.payment_id, result.status, result.reason_code, settled))
    for batch_hex, batch_results in per_batch.items():
        errors.extend(f"{name}: {problem}" for problem in batches[batch_hex].check_results(batch_results))
    if errors:
        raise ResultsRefused(errors)
    return _CheckedResults(used, file_format, original_message, results, views, batches, per_batch)


def _is_xml(data: bytes) -> bool:
    return data.lstrip()[:1] == b"<" or data.startswith(b"\xef\xbb\xbf<")


def _read_results(data: bytes, name: str, profile: Profile | str) -> tuple[str, str, list[BankResult]]:
    """A pain.002 or a one-card return file read with `profile` (a checked profile; a name is loaded as a
    shipped profile, for callers that hold no ledger)."""
    try:
        if _is_xml(data):
            from exporters.pain002 import read_pain002

            original, results = read_pain002(data, name)
            return "pain.002", original, results
        from exporters.onecard import load_profile, read_return_file

        checked = profile if isinstance(profile, Profile) else load_profile(profile)
        return f"onecard:{checked.name}", "", read_return_file(data, name, checked)
    except ResultFileRejected as e:
        raise ResultsRefused(e.errors) from None
    except ExportRefused as e:
        raise ResultsRefused([f"{name}: {e.rule}: {e}"]) from None


def _check_against_ledger(
    name: str, results: list[BankResult], views: dict[str, PaymentView], original_message: str
) -> list[str]:
    errors = []
    seen: dict[str, str] = {}
    for result in results:
        view = views.get(result.payment_id)
        if result.payment_id in seen:
            errors.append(
                f"{result.source}: payment {result.payment_id} appears twice (also {seen[result.payment_id]})"
            )
            continue
        seen[result.payment_id] = result.source
        if view is None:
            errors.append(f"{result.source}: unknown payment {result.payment_id}")
            continue
        if result.amount_fen is not None and result.amount_fen != view.net_fen:
            errors.append(
                f"{result.source}: payment {result.payment_id} amount {result.amount_fen} fen disagrees with the "
                f"ledger's {view.net_fen} fen"
            )
        if original_message and not original_message.startswith(f"YKT{view.batch_id[:28]}"):
            errors.append(
                f"{result.source}: the file answers message {original_message}, but payment {result.payment_id} "
                f"was sent in YKT{view.batch_id[:28]}"
            )
    return errors


def _save(disbursement: Disbursement, *aggregates: Any) -> None:

    try:
        disbursement.save(*aggregates)
    except IntegrityError:
        raise ConcurrentChange("someone else changed the same batch at the same time; nothing recorded") from None
