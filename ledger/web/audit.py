"""审计 (auditor, read-only): a person's history, anomalies, verify against an anchor, and the actions
log with logins (examples/web.md).

URLs: /audit (the index), /audit/person?id_number=…, /audit/anomalies, /audit/verify (GET runs the
verification; POST runs it against uploaded anchor files), /audit/log (操作日志).

Who: the auditor, and the admin who manages the accounts whose logins the actions log shows (the
action `audit log`, ledger.roles.AUDIT_READER_ACTIONS); the clerk and the checker are refused (403,
recorded in the ledger like every refusal). The admin sees names and ID numbers masked, as on every
page (formats.shown_name); the auditor sees them whole, as `yikatong audit history` prints them.

Nothing here changes the ledger: every page opens it read-only and calls the CLI's read-only use cases
(`audit history`, `audit anomalies`, `audit verify`); the verify POST carries a CSRF token like every
form but writes nothing (its action is `audit verify`, a read). Reads are not recorded; refusals are.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse

from domain.errors import RuleBroken
from ledger.anchors import ANCHOR_BYTES_MAX
from ledger.audit import AuditReport
from ledger.web import formats
from ledger.web.context import Refused, Visit, visit
from ledger.web.messages import rule_text, t
from ledger.web.pages import BadInput, page, visit_context

router = APIRouter()
AUDIT_ACTION = "audit log"
ANCHORS_MAX = 10  # anchor files one verification checks
LOG_ROWS = 100
_ID_NUMBER = re.compile(r"^[0-9]{17}[0-9Xx]$")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
# Fields of a history entry that say why (the decision document, the reason), shown as 依据.
_GROUNDS = ("decision_ref", "reason")


def _context(v: Visit, **more: Any) -> dict[str, Any]:
    return visit_context(v, full_data=formats.sees_personal_data(v.identity), **more)


# --- the index ------------------------------------------------------------------------------------------


@router.get("/audit", response_class=HTMLResponse)
def audit_index(request: Request) -> HTMLResponse:
    with visit(request, AUDIT_ACTION) as v:
        return page(request, "audit.html", _context(v))


# --- 个人历史 -------------------------------------------------------------------------------------------


@router.get("/audit/person", response_class=HTMLResponse)
def audit_person(request: Request, id_number: str = "") -> HTMLResponse:
    """`audit history ID_NUMBER`: every event touching one person, with 记录时间, 生效日期, 经办, 依据."""
    with visit(request, AUDIT_ACTION) as v:
        wanted = id_number.strip().upper()
        if not wanted:
            return page(request, "audit_person.html", _context(v, id_number="", events=None, error=None))
        if not _ID_NUMBER.match(wanted):
            error = t("audit.person.bad_id", id_number=wanted[:40])
            return page(request, "audit_person.html", _context(v, id_number=wanted, events=None, error=error), 400)
        try:
            entries = v.service.history(wanted)
        except RuleBroken as e:
            error = rule_text(e.rule, str(e))
            return page(request, "audit_person.html", _context(v, id_number=wanted, events=None, error=error), 404)
        events = [_history_row(e, v) for e in entries]
        shown_id = formats.shown_id(wanted, v.identity)
        context = _context(v, id_number=wanted, shown_id=shown_id, events=events, error=None)
        return page(request, "audit_person.html", context)


def _history_row(entry: dict[str, Any], v: Visit) -> dict[str, Any]:
    """One event as the page shows it: its two time axes, who, why, and what in the office's words."""
    pname = v.service.policy().payment_name
    grounds = "；".join(str(entry[k]) for k in _GROUNDS if entry.get(k))
    return {
        "recorded_at": entry["recorded_at"][:19].replace("T", " "),
        "effective_on": entry["effective_on"],
        "event": entry["event"],
        "event_word": t(f"audit.event.{entry['event']}"),
        "actor": entry["actor"],
        "programme": pname(entry["programme"]) if entry["programme"] else "",
        "period": entry["period"],
        "grounds": grounds,
        "detail": _history_detail(entry, v),
    }


def _history_detail(e: dict[str, Any], v: Visit) -> str:
    me = v.identity
    event = e["event"]
    household = ""
    if event in ("registered", "enrolled") or (event == "decision" and e.get("members") is not None):
        income = formats.yuan(int(e.get("monthly_income_fen") or 0))
        household = t("audit.detail.household", members=e.get("members", ""), income=income,
                      special=e.get("special_members", ""), region=e.get("region", ""))  # fmt: skip
    if event == "registered":
        person = t("audit.detail.registered", name=formats.shown_name(e["name"], me), birth=e["birth_date"],
                   bank=e["bank_code"], account=formats.shown_id(e["account"], me))  # fmt: skip
        return f"{person}；{household}" if e.get("programme") else person
    if event == "enrolled":
        return household
    if event == "decision":
        kind = t(f"audit.decision.{e['kind']}")
        amount = t("audit.detail.amount", amount=formats.yuan(e["amount_fen"])) if e.get("amount_fen") else ""
        ends = t("audit.detail.ends", day=e["ends_on"]) if e.get("ends_on") else ""
        return "；".join(x for x in (f"{kind}{amount}{ends}", household) if x)
    if event == "account_changed":
        return t("audit.detail.account", bank=e["bank_code"], account=formats.shown_id(e["account"], me))
    if event == "renamed":
        return t("audit.detail.renamed", old=formats.shown_name(e["previous_name"], me),
                 new=formats.shown_name(e["name"], me))  # fmt: skip
    if event in ("payment_accrued", "reissued"):
        text = t("audit.detail.payment", amount=formats.yuan(e["amount_fen"]), batch=e["batch_id"][:12],
                 run=e["run_month"], due=e["due_date"], account=formats.shown_id(e["account"], me))  # fmt: skip
        return text + (t("audit.detail.late") if e.get("late") else "")
    if event == "batch_exported":
        files = "，".join(f"{f['name']}（SHA-256 {f['sha256'][:16]}…）" for f in e["files"])
        return t("audit.detail.exported", batch=e["batch_id"][:12], format=e["format"], files=files)
    if event in ("batch_approved", "batch_submitted", "batch_names_corrected"):
        return t("audit.detail.batch", batch=e["batch_id"][:12])
    if event == "bank_result":
        reason = f" {e['reason_code']} {e['reason_zh']}" if e.get("reason_code") else ""
        status = t(f"result.{'paid' if e['status'] == 'paid' else 'returned'}")
        return t("audit.detail.bank", status=status, reason=reason, file=e.get("bank_file_name") or "")
    return ""


# --- 异常 -----------------------------------------------------------------------------------------------


@router.get("/audit/anomalies", response_class=HTMLResponse)
def audit_anomalies(request: Request) -> HTMLResponse:
    """`audit anomalies`: each finding with the rule it breaks (its kind, title and the seed)."""
    with visit(request, AUDIT_ACTION) as v:
        me = v.identity
        pname = v.service.policy().payment_name
        findings = [
            {
                **f,
                "rule_words": t(f"audit.rule.{f['kind']}"),
                "shown_ids": [formats.shown_id(i, me) for i in f["id_numbers"]],
                "programme_names": [pname(p) for p in f["programmes"]],
                "detail": f["detail"] if formats.sees_personal_data(me) else t("audit.anomaly.detail_masked"),
            }
            for f in v.service.anomalies()
        ]
        return page(request, "audit_anomalies.html", _context(v, findings=findings))


# --- 校验 -----------------------------------------------------------------------------------------------


@router.get("/audit/verify", response_class=HTMLResponse)
def audit_verify_page(request: Request) -> HTMLResponse:
    """`audit verify` (with the server's exports folder when it keeps one): run now, read-only."""
    with visit(request, AUDIT_ACTION) as v:
        report = v.service.verify(v.web.exports_dir)
        return page(request, "audit_verify.html", _context(v, **_verify_view(report, v), error=None))


@router.post("/audit/verify", response_class=HTMLResponse)
async def audit_verify_anchor(
    request: Request,
    csrf_token: str = Form(""),
    anchor: list[UploadFile] = File(default=[]),  # noqa: B008 (FastAPI's way to declare an upload)
) -> HTMLResponse:
    """`audit verify --anchor FILE…`: the uploaded anchors checked against the log. Writes nothing."""
    uploads = [(u.filename or "anchor.json", await u.read(ANCHOR_BYTES_MAX + 1)) for u in anchor if u.filename]
    with visit(request, "audit verify", csrf_token=csrf_token) as v:
        _auditors_only(request, v)
        error = None
        if not uploads:
            error = t("audit.verify.no_anchor")
        elif len(uploads) > ANCHORS_MAX:
            error = t("audit.verify.too_many", count=ANCHORS_MAX)
        elif any(len(data) > ANCHOR_BYTES_MAX for _, data in uploads):
            error = t("audit.verify.too_large")
        if error is not None:
            report = v.service.verify(v.web.exports_dir)
            return page(request, "audit_verify.html", _context(v, **_verify_view(report, v), error=error), 400)
        with tempfile.TemporaryDirectory(prefix="yikatong-anchor-") as scratch:
            paths = []
            for index, (name, data) in enumerate(uploads):
                path = Path(scratch) / f"{index}-{_SAFE_NAME.sub('_', Path(name).name)[:80]}"
                path.write_bytes(data)
                paths.append(path)
            names = {str(p): name for p, (name, _) in zip(paths, uploads, strict=True)}
            try:
                report = v.service.verify(v.web.exports_dir, paths)
            except RuleBroken as e:
                report = v.service.verify(v.web.exports_dir)
                detail = _unscratched(str(e), scratch, names)
                context = _context(v, **_verify_view(report, v), error=f"{rule_text(e.rule, detail)}：{detail}")
                return page(request, "audit_verify.html", context, 400)
        return page(request, "audit_verify.html", _context(v, **_verify_view(report, v, names), error=None))


def _auditors_only(request: Request, v: Visit) -> None:
    """The verify POST runs as `audit verify` (a read every role may run on the command line); these
    pages are the auditor's and the admin's all the same."""
    if not v.may(AUDIT_ACTION):
        raise Refused(t("error.forbidden"), "OnlyAuditorsAudit", account=v.identity.name, role=v.identity.role,
                      action=AUDIT_ACTION)  # fmt: skip


def _unscratched(text: str, scratch: str, names: dict[str, str]) -> str:
    """A message naming an uploaded file by its temporary path, naming it as it was uploaded."""
    for path, name in names.items():
        text = text.replace(path, name)
    return text.replace(scratch + "/", "")


def _verify_view(report: AuditReport, v: Visit, names: dict[str, str] | None = None) -> dict[str, Any]:
    names = names or {}
    anchors = [{**a.as_json(), "file": names.get(a.source, Path(a.source).name), "ok": a.ok} for a in report.anchors]
    data = report.as_json()
    return {
        "ok": report.ok,
        "failures": report.failures,
        "logs": data["logs"],
        "anchors": anchors,
        "read_models": data["read_models"],
        "exports": data["exports"],
        "exports_dir": str(v.web.exports_dir) if v.web.exports_dir else "",
        "protection": data["protection"],
        "identities": data["identities"],
        "lines": report.lines(),
    }


# --- 操作日志 --------------------------------------------------------------------------------------------


@router.get("/audit/log", response_class=HTMLResponse)
def audit_log(
    request: Request,
    before_registry: int | None = Query(None, ge=1),
    before_disbursement: int | None = Query(None, ge=1),
    actor: str = "",
    only: str = "",
) -> HTMLResponse:
    """操作日志: who did what when, newest first, from the log itself (ledger.access.operations)."""
    with visit(request, AUDIT_ACTION) as v:
        if only not in ("", "access"):
            raise BadInput(f"only {only!r}: access or nothing")
        before = {}
        if before_registry is not None:
            before["registry"] = before_registry
        if before_disbursement is not None:
            before["disbursement"] = before_disbursement
        found = v.service.operations(
            before=before or None, limit=LOG_ROWS, actor=actor.strip() or None, access_only=only == "access"
        )
        rows = [_operation_row(op.as_json(), v) for op in found.rows]
        earlier = None
        if found.next_before is not None:
            query = {
                "before_registry": found.next_before["registry"],
                "before_disbursement": found.next_before["disbursement"],
                **({"actor": actor.strip()} if actor.strip() else {}),
                **({"only": only} if only else {}),
            }
            earlier = "/audit/log?" + urlencode(query)
        context = _context(v, rows=rows, earlier=earlier, chosen={"actor": actor.strip(), "only": only},
                           ends=found.ends, paged=bool(before))  # fmt: skip
        return page(request, "audit_log.html", context)


def _operation_row(op: dict[str, Any], v: Visit) -> dict[str, Any]:
    fields = dict(op["fields"])
    me = v.identity
    access = op["event"] == "AccessRecord.Recorded"
    kind = fields.pop("kind", "") if access else ""
    if "name" in fields and op["event"].startswith("Person."):
        fields["name"] = formats.shown_name(str(fields["name"]), me)
    if "id_number" in fields:
        fields["id_number"] = formats.shown_id(str(fields["id_number"]), me)
    if "total_fen" in fields:
        fields["total_fen"] = formats.yuan(int(fields["total_fen"]))
    if "kind" in fields and op["event"] == "Person.DecisionRecorded":
        fields["kind"] = t(f"audit.decision.{fields['kind']}")
    if "role" in fields:
        fields["role"] = t(f"role.{fields['role']}")
    if "programme" in fields:
        fields["programme"] = v.service.policy().payment_name(str(fields["programme"]))
    what = t(f"audit.access.{kind}") if access else t(f"audit.op.{op['event']}")
    if what.startswith("audit."):  # an event this page has no words for: its own name, never hidden
        what = op["event"]
    who = op["actor"] or fields.get("name_tried", "")
    details = [(t(f"audit.field.{k}"), str(val)) for k, val in fields.items() if k != "name_tried" or op["actor"]]
    return {
        "recorded_at": op["recorded_at"][:19].replace("T", " "),
        "actor": who,
        "tried": not op["actor"],
        "what": what,
        "kind": kind or "operation",
        "count": op["count"],
        "log": op["log"],
        "positions": (op["first_position"], op["last_position"]),
        "details": details,
    }
