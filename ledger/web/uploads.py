"""名册导入 and 回盘: upload a roster (CSV or xlsx) or a bank result file (pain.002 or a profile's
return file), preview what it will change, then apply all or nothing (examples/web.md).

URLs: GET /roster, POST /roster/preview, POST /roster/import; GET /bank, POST /bank/preview,
POST /bank/import. The CLI's actions decide who may: `roster import` and `bank import` (the clerk); a
preview is refused to anyone the import would be refused to, since it shows the file's personal data.

Both previews are use cases of the application layer (`LedgerService.preview_roster`,
`LedgerService.preview_bank_file`): the file is read and checked by the same code and rules as the
import, and nothing is recorded (the CLI's `roster import --dry-run` and `bank import --dry-run` call
the same two). The import checks everything again, so a ledger changed between the preview and the
import is never applied past a rule. The handlers are plain functions, which FastAPI runs in its thread
pool: checking a large file never holds up the other pages.

Between the preview and the import the uploaded file stays on the server, not in the browser: the
preview writes it to a private folder (mode 0700, under the system's temporary folder and this ledger)
named by its SHA-256, and the import form carries only that SHA-256 in a hidden field. Why not upload
it twice: the clerk would have to pick the same file again, and could pick another one than the one
previewed. Why a hash and not a path: the client names no path at all; the hash is checked to be 64 hex
digits, the file under it is hashed again before use, so what is imported is byte for byte what was
previewed, whoever asks. The file's name (kept, sanitised, as the import's `source` for the roster
and the bank file's record) is chosen on the server too. A staged file is removed after its import, and
any left over (previewed, never imported) after STAGED_SECONDS_MAX.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse

from domain.errors import RuleBroken
from domain.periods import Month
from ledger.exports import BankPreview
from ledger.roster import RosterRejected, RowProblem
from ledger.sessions import ledger_ref
from ledger.web import formats
from ledger.web.context import Visit, Web, visit
from ledger.web.messages import RULES_ZH_CN, ZH_CN, rule_text, t
from ledger.web.pages import page, visit_context

router = APIRouter()

# A roster of ROSTER_ROWS_MAX rows is some hundreds of MB; one a browser sends is a county's or a city's.
UPLOAD_BYTES_MAX = 256 * 1024 * 1024
UPLOAD_CHUNK_BYTES = 1 << 20
STAGED_SECONDS_MAX = 24 * 3600  # a preview never imported: its file is removed after a day
NAME_CHARS_MAX = 100
PROBLEMS_SHOWN_MAX = 1000  # a page lists this many problems; the rest are counted (the CLI lists them all)
LINES_SHOWN_MAX = 1000  # a bank preview lists this many payments; the batch totals count every one
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_UNSAFE = re.compile(r"[^\w.\-]+")
PAIN002 = "pain002"


class UploadRefused(Exception):
    """No file, too large, or a staged file that is gone: the form again with the reason in place."""


# --- the staged files ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Staged:
    sha256: str
    path: Path


def _staging_root(web: Web) -> Path:
    """This ledger's private folder for uploads awaiting their import."""
    ledger = hashlib.sha256(ledger_ref(web.db).encode()).hexdigest()[:16]
    mine = Path(tempfile.gettempdir()) / f"yikatong-uploads-{os.getuid()}"
    mine.mkdir(mode=0o700, exist_ok=True)
    found = mine.lstat()
    if stat.S_ISLNK(found.st_mode) or found.st_uid != os.getuid():
        # Someone else made it first in a shared temporary folder: it could be read or swapped by them.
        raise PermissionError(f"{mine} is not this server's own folder; remove it and try again")
    os.chmod(mine, 0o700)
    root = mine / ledger
    root.mkdir(mode=0o700, exist_ok=True)
    return root


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(UPLOAD_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _safe_name(filename: str | None, default: str) -> str:
    """The base name a browser sent, reduced to letters, digits, `.`, `-` and `_` (no path, no dot-file)."""
    base = re.split(r"[\\/]", filename or "")[-1]
    cleaned = _UNSAFE.sub("_", base).lstrip(".")[-NAME_CHARS_MAX:]
    return cleaned or default


def _stage(web: Web, upload: UploadFile | None, default_name: str) -> Staged:
    """The upload written under its SHA-256, streamed and bounded; an old, never imported one removed."""
    if upload is None or not upload.filename:
        raise UploadRefused(t("upload.no_file"))
    root = _staging_root(web)
    _remove_stale(root)
    digest = hashlib.sha256()
    size = 0
    with tempfile.NamedTemporaryFile(dir=root, prefix=".part-", delete=False) as part:
        try:
            while chunk := upload.file.read(UPLOAD_CHUNK_BYTES):
                size += len(chunk)
                if size > UPLOAD_BYTES_MAX:
                    raise UploadRefused(t("upload.too_large", mb=UPLOAD_BYTES_MAX // (1024 * 1024)))
                digest.update(chunk)
                part.write(chunk)
        except BaseException:
            Path(part.name).unlink(missing_ok=True)
            raise
    if size == 0:
        Path(part.name).unlink(missing_ok=True)
        raise UploadRefused(t("upload.no_file"))
    sha = digest.hexdigest()
    folder = root / sha
    folder.mkdir(mode=0o700, exist_ok=True)
    target = folder / _safe_name(upload.filename, default_name)
    for earlier in folder.iterdir():
        if earlier != target:
            earlier.unlink(missing_ok=True)  # the same bytes staged before under another name: this upload's
    os.replace(part.name, target)
    return Staged(sha, target)


def _staged(web: Web, sha256: str) -> Staged:
    """The file staged under `sha256`, hashed again: exactly the bytes that were previewed."""
    if not _SHA256.match(sha256):
        raise UploadRefused(t("upload.gone"))
    folder = _staging_root(web) / sha256
    files = [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
    if len(files) != 1 or _sha256_of(files[0]) != sha256:
        raise UploadRefused(t("upload.gone"))
    return Staged(sha256, files[0])


def _unstage(staged: Staged) -> None:
    shutil.rmtree(staged.path.parent, ignore_errors=True)


def _remove_stale(root: Path) -> None:
    cutoff = time.time() - STAGED_SECONDS_MAX
    for entry in root.iterdir():
        try:
            if entry.stat().st_mtime < cutoff:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        except OSError:
            continue  # removed meanwhile by another request


# --- 名册导入 ---------------------------------------------------------------------------------------------


def _problem_row(problem: RowProblem) -> dict[str, Any]:
    """A problem as the page lists it: line, the rule in Chinese beside its name as the CLI prints it,
    and the CLI's own line."""
    words = ZH_CN.get(f"roster.rule.{problem.rule_kind}") or RULES_ZH_CN.get(problem.rule_kind)
    return {
        "line": problem.line,
        "rule": f"{words}（{problem.rule}）" if words else problem.rule,
        "detail": problem.message,
    }


def _rejected(e: RosterRejected) -> dict[str, Any]:
    rows = [_problem_row(p) for p in e.problems[:PROBLEMS_SHOWN_MAX]]
    heading = t("roster.rejected", rows=e.bad_rows) if e.bad_rows else t("roster.rejected_file")
    return {"heading": heading, "rows": rows, "more": max(0, len(e.problems) - PROBLEMS_SHOWN_MAX)}


def _roster_page(request: Request, v: Visit, status: int = 200, **more: Any) -> HTMLResponse:
    defaults: dict[str, Any] = {"preview": None, "problems": None, "error": None, "notice": None, "warnings": ()}
    context = visit_context(v, **(defaults | more))
    return page(request, "roster.html", context, status)


@router.get("/roster", response_class=HTMLResponse)
def roster_form(request: Request) -> HTMLResponse:
    with visit(request, "roster import") as v:
        return _roster_page(request, v)


@router.post("/roster/preview", response_class=HTMLResponse)
def roster_preview(
    request: Request, csrf_token: str = Form(""), file: Annotated[UploadFile | None, File()] = None
) -> HTMLResponse:
    """The roster checked as the import checks it, against the ledger, with 应发 a month per programme at
    this month's standards; every bad row with its line and rule otherwise. Nothing is recorded."""
    with visit(request, "roster import", csrf_token=csrf_token) as v:
        try:
            staged = _stage(v.web, file, "roster.csv")
        except UploadRefused as e:
            return _roster_page(request, v, 400, error=str(e))
        month = Month.of(v.web.today())
        try:
            preview = v.service.preview_roster(staged.path, month=month)
        except RosterRejected as e:
            _unstage(staged)
            return _roster_page(request, v, 422, problems=_rejected(e))
        except RuleBroken as e:
            _unstage(staged)
            return _roster_page(request, v, 409, error=rule_text(e.rule, str(e)))
        return _roster_page(
            request,
            v,
            preview=preview,
            sha256=staged.sha256,
            month_text=f"{month.year}年{month.month}月",
            warnings=preview.summary.warnings[:PROBLEMS_SHOWN_MAX],
        )


@router.post("/roster/import", response_class=HTMLResponse)
def roster_import(request: Request, csrf_token: str = Form(""), sha256: str = Form("")) -> HTMLResponse:
    """导入: the previewed file, all rows or none; the same file again records nothing (无变化)."""
    with visit(request, "roster import", csrf_token=csrf_token, writing=True) as v:
        try:
            staged = _staged(v.web, sha256)
        except UploadRefused as e:
            return _roster_page(request, v, 400, error=str(e))
        try:
            summary = v.service.import_roster(staged.path, actor=v.identity.name)
        except RosterRejected as e:
            return _roster_page(request, v, 422, problems=_rejected(e))
        except RuleBroken as e:
            return _roster_page(request, v, 409, error=rule_text(e.rule, str(e)))
        _unstage(staged)
        name = staged.path.name
        if summary.enrolled == 0:
            notice = t("roster.nothing_changed", file=name, rows=summary.unchanged)
        else:
            notice = t(
                "roster.imported",
                file=name,
                enrolled=summary.enrolled,
                households=summary.households,
                persons=summary.persons,
            ) + (t("roster.imported_unchanged", unchanged=summary.unchanged) if summary.unchanged else "")
        return _roster_page(request, v, notice=notice, done=True)


# --- 回盘 -------------------------------------------------------------------------------------------------


def _kinds(v: Visit) -> list[dict[str, str]]:
    """What the clerk may say the file is: a pain.002, or the return file of one of the ledger's bank
    profiles (shipped, or recorded and approved: one awaiting approval is listed as such and refused)."""
    kinds = [{"value": PAIN002, "label": t("bank.kind.pain002")}]
    for row in v.service.profiles():
        label = t("bank.kind.profile", title=row["title"], name=row["name"])
        if row["status"] == "awaiting approval":
            label += f"（{t('bank.kind.awaiting')}）"
        kinds.append({"value": row["name"], "label": label})
    return kinds


def _reason(code: str) -> str:
    if not code:
        return ""
    return f"{code} {ZH_CN.get(f'bank.reason.{code}', t('bank.reason.other'))}"


def _preview_context(v: Visit, preview: BankPreview) -> dict[str, Any]:
    me = v.identity
    lines = [
        {
            "name": formats.shown_name(line.name, me),
            "id_number": formats.shown_id(line.id_number, me),
            "account": formats.shown_id(line.account, me),
            "amount_fen": line.amount_fen,
            "status": line.status,
            "reason": _reason(line.reason_code),
            "batch_id": line.batch_id,
            "known": line.known,
        }
        for line in preview.lines[:LINES_SHOWN_MAX]
    ]
    return {"preview": preview, "lines": lines, "more_lines": max(0, len(preview.lines) - LINES_SHOWN_MAX)}


def _bank_page(request: Request, v: Visit, status: int = 200, **more: Any) -> HTMLResponse:
    context = visit_context(
        v,
        kinds=_kinds(v),
        **({"preview": None, "lines": (), "problems": None, "error": None, "notice": None, "kind": PAIN002} | more),
    )
    return page(request, "bank.html", context, status)


def _profile_of(kind: str) -> str:
    """The profile a return file is read with; a pain.002 needs none (the import reads XML as pain.002)."""
    return "generic" if kind == PAIN002 else kind


@router.get("/bank", response_class=HTMLResponse)
def bank_form(request: Request) -> HTMLResponse:
    with visit(request, "bank import") as v:
        return _bank_page(request, v)


@router.post("/bank/preview", response_class=HTMLResponse)
def bank_preview(
    request: Request,
    csrf_token: str = Form(""),
    kind: str = Form(PAIN002),
    file: Annotated[UploadFile | None, File()] = None,
) -> HTMLResponse:
    """Which payments the file marks 实发 and which 退回 (with the bank's reason), batch by batch, checked
    as the import checks it; the file's problems otherwise. Nothing is recorded."""
    with visit(request, "bank import", csrf_token=csrf_token) as v:
        try:
            staged = _stage(v.web, file, "result")
        except UploadRefused as e:
            return _bank_page(request, v, 400, error=str(e), kind=kind)
        try:
            preview = v.service.preview_bank_file(staged.path, actor=v.identity.name, profile=_profile_of(kind))
        except RuleBroken as e:
            _unstage(staged)
            return _bank_page(request, v, 422, kind=kind, **_refusal(e))
        if preview.already_imported:
            _unstage(staged)
            return _bank_page(request, v, notice=t("bank.already", file=preview.file), kind=kind)
        return _bank_page(request, v, sha256=staged.sha256, kind=kind, **_preview_context(v, preview))


def _refusal(e: RuleBroken) -> dict[str, Any]:
    """A refused bank file: its problems as the CLI lists them under the rule in Chinese."""
    errors = getattr(e, "errors", ())
    if errors:
        return {"problems": {"heading": t("bank.rejected"), "rows": list(errors[:PROBLEMS_SHOWN_MAX])}}
    return {"error": rule_text(e.rule, str(e))}


@router.post("/bank/import", response_class=HTMLResponse)
def bank_import(
    request: Request, csrf_token: str = Form(""), sha256: str = Form(""), kind: str = Form(PAIN002)
) -> HTMLResponse:
    """确认入账: the previewed file, whole or not at all; the same file again: 已导入，无变化."""
    with visit(request, "bank import", csrf_token=csrf_token, writing=True) as v:
        try:
            staged = _staged(v.web, sha256)
        except UploadRefused as e:
            return _bank_page(request, v, 400, error=str(e), kind=kind)
        try:
            outcome = v.service.import_bank_file(staged.path, actor=v.identity.name, profile=_profile_of(kind))
        except RuleBroken as e:
            return _bank_page(request, v, 422, kind=kind, **_refusal(e))
        _unstage(staged)
        name = staged.path.name
        if outcome.already_imported:
            notice = t("bank.already", file=name)
        else:
            notice = t(
                "bank.imported", file=name, paid=outcome.paid, returned=outcome.returned, batches=outcome.batches
            )
        return _bank_page(request, v, notice=notice, kind=kind, done=True, batch_ids=outcome.batch_ids)
