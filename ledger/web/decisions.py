"""决定: find a person by ID number and record a decision (暂停/恢复/终止/渐退/变更家庭情况/更换账户) or
one-off aid (临时救助), each previewed before it is recorded (examples/web.md).

URLs: /persons (search), /persons/{id_number} (the person), POST /persons/{id_number}/preview (what the
decision will change, recording nothing), POST /persons/{id_number}/decide (record it), /aid (grants),
POST /aid/preview (the grant as it will be recorded), POST /aid/grant, POST /aid/{grant}/approve.

Each POST checks the role with the CLI's action name of the same command (`decide suspend`, `decide
change`, `account set`, `aid grant`, `aid approve`), so a hidden button is not the control: the server
refuses. The preview is the domain command applied and not saved (ledger.persons), so a rule the domain
refuses is shown at the preview already, in place, with the rule's name as the CLI prints it.

Search is by ID number only: names are stored encrypted in the log (ledger.keys) and no read model holds
them, so a name search would fold the whole registry on every request."""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from domain.eligibility import UnknownEnrolment
from domain.errors import RuleBroken
from domain.money import parse_yuan
from domain.oneoffs import AID_KINDS, BadStage
from ledger.web import formats
from ledger.web.context import Visit, visit
from ledger.web.messages import rule_text, t
from ledger.web.pages import page, visit_context

router = APIRouter()

KINDS = ("suspend", "resume", "terminate", "phase-out", "change", "account")
ACTIONS = {
    "suspend": "decide suspend",
    "resume": "decide resume",
    "terminate": "decide terminate",
    "phase-out": "decide phase-out",
    "change": "decide change",
    "account": "account set",
}
UNKNOWN_KIND_ACTION = "decide"  # a kind no command has: still a change to the ledger, so the clerk's only
FORM_FIELDS = ("kind", "programme", "on", "reason", "members", "income", "special", "bank", "account")
AID_ROWS_SHOWN = 500  # grants listed on /aid: every one awaiting approval comes first
AID_FIELDS = ("id_number", "amount", "reason", "on", "kind", "decision", "stage", "region")


class BadDate(RuleBroken):
    """A date field that is not YYYY-MM-DD (the CLI's --on)."""


class BadCount(RuleBroken):
    """A count of household members that is not a whole number."""


class UnknownDecisionKind(RuleBroken):
    """A decision the CLI has no `decide` command for."""


# --- search and the person's page ------------------------------------------------------------------------


@router.get("/persons", response_class=HTMLResponse)
def persons(request: Request, id_number: str = "") -> HTMLResponse:
    with visit(request, "audit history") as v:
        wanted = id_number.strip().upper()
        found = None
        if wanted:
            try:
                view = v.service.person_view(wanted, v.web.today())
            except UnknownEnrolment:
                view = None
            if view is not None:
                found = {
                    "id_number": view.id_number,
                    "shown_id": formats.shown_id(view.id_number, v.identity),
                    "name": formats.shown_name(view.name, v.identity),
                    "enrolments": [e for e in view.enrolments if e.current],
                    "payments": len(view.payments),
                }
        context = visit_context(v, query=wanted, found=found, searched=bool(wanted))
        return page(request, "persons.html", context)


def _blank_form(**values: str) -> dict[str, str]:
    return {name: "" for name in FORM_FIELDS} | values


def _person_context(v: Visit, id_number: str, **more: Any) -> dict[str, Any]:
    view = v.service.person_view(id_number, v.web.today())
    me = v.identity
    may_decide = v.may("decide suspend")
    decisions = [_decision_row(e, me) for e in view.decisions]
    payments = [
        {
            "period": p["period"],
            "programme": p["programme"],
            "amount_fen": p["amount_fen"] - p.get("offset_fen", 0),
            "batch_id": p["batch_id"],
            "run_month": p["run_month"],
            "due_date": p["due_date"],
            "late": p["late"],
            "event": "adjustment" if p.get("adjusts") else p["event"],
            "result": p["result"],
            "reason_zh": p["reason_zh"],
        }
        for p in view.payments
    ]
    return visit_context(
        v,
        person=view,
        shown_id=formats.shown_id(view.id_number, me),
        shown_name=formats.shown_name(view.name, me),
        shown_account=formats.shown_id(view.account, me),
        enrolments=view.enrolments,
        programmes=[e.programme for e in view.enrolments if e.current],
        payments=payments,
        decisions=decisions,
        may_decide=may_decide and view.in_registry,
        may_account=v.may("account set") and view.in_registry,
        may_grant=v.may("aid grant") and view.in_registry,
        kinds=[k for k in KINDS if k != "account"],
        **({"notice": None, "error": None, "form": _blank_form()} | more),
    )


def _decision_row(e: dict[str, Any], me: Any) -> dict[str, Any]:
    """One of the person's own events as the page lists it: kind, 依据, 经办, and what it set."""
    event = e["event"]
    detail = ""
    basis = e.get("reason") or e.get("decision_ref") or ""
    if event == "decision":
        label = t(f"dec.kind.{e['kind']}")
        parts = []
        if e.get("members") is not None:
            parts.append(_household(e["members"], e["monthly_income_fen"], e["special_members"]))
        if e.get("amount_fen") is not None:
            parts.append(t("dec.decision.amount", amount=formats.yuan(e["amount_fen"])))
        if e.get("ends_on"):
            parts.append(t("dec.decision.ends", day=formats.date_text(e["ends_on"])))
        detail = "；".join(parts)
    elif event in ("registered", "enrolled"):
        label = t(f"dec.event.{event}")
        if e.get("programme"):
            detail = _household(e["members"], e["monthly_income_fen"], e["special_members"])
    elif event == "account_changed":
        label = t("dec.event.account_changed")
        detail = f"{e['bank_code']} / {formats.shown_id(e['account'], me)}"
    elif event == "renamed":
        label = t("dec.event.renamed")
        detail = f"{formats.shown_name(e['previous_name'], me)} → {formats.shown_name(e['name'], me)}"
    else:
        label = event
    return {
        "recorded_at": e["recorded_at"][:19].replace("T", " "),
        "effective_on": e["effective_on"],
        "programme": e.get("programme", ""),
        "label": label,
        "kind": e.get("kind", event),
        "detail": detail,
        "basis": basis,
        "actor": e["actor"],
    }


def _household(members: int, income_fen: int, special: int) -> str:
    return t("dec.household", members=members, income=formats.yuan(income_fen), special=special)


@router.get("/persons/{id_number}", response_class=HTMLResponse)
def person_page(request: Request, id_number: str, done: str = "", programme: str = "", on: str = "") -> HTMLResponse:
    with visit(request, "audit history") as v:
        context = _person_context(v, id_number.strip().upper())
        if done == "unchanged":
            context["notice"] = t("person.unchanged")
        elif done == "account":
            context["notice"] = t("person.done_account")
        elif done in KINDS:
            name = v.service.policy().payment_name(programme) if programme else ""
            context["notice"] = t("person.done", kind=t(f"dec.kind.{done}"), programme=name, on=formats.date_text(on))
        return page(request, "person.html", context)


def _refused_in_place(request: Request, v: Visit, id_number: str, form: dict[str, str], e: RuleBroken) -> Response:
    """The person's page again with the rule that refused, in Chinese and by name, the form as typed (400)."""
    try:
        context = _person_context(v, id_number, error=rule_text(e.rule, str(e)), form=form)
    except UnknownEnrolment:
        raise e from None
    return page(request, "person.html", context, 400)


# --- a decision: preview, then record -------------------------------------------------------------------


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise BadDate(f"date {text!r}: YYYY-MM-DD") from None


def _count(text: str) -> int | None:
    if not text.strip():
        return None
    try:
        return int(text.strip())
    except ValueError:
        raise BadCount(f"{text!r} is not a whole number") from None


def _decision_args(form: dict[str, str]) -> dict[str, Any]:
    """The form as the service's arguments, parsed as the CLI parses its options."""
    kind = form["kind"]
    if kind not in KINDS:
        raise UnknownDecisionKind(f"kind {kind!r}: one of {', '.join(KINDS)}")
    if kind == "account":
        return {"bank_code": form["bank"], "account": form["account"], "reason": form["reason"]}
    args: dict[str, Any] = {
        "kind": kind,
        "programme": form["programme"],
        "on": _date(form["on"]),
        "reason": form["reason"],
    }
    if kind == "change":
        income = form["income"].strip()
        args.update(
            members=_count(form["members"]),
            monthly_income_fen=parse_yuan(income) if income else None,
            special_members=_count(form["special"]),
        )
    return args


def _form(**fields: str) -> dict[str, str]:
    return {name: fields.get(name, "").strip() if name != "reason" else fields.get(name, "") for name in FORM_FIELDS}


@router.post("/persons/{id_number}/preview", response_model=None)
def decision_preview(
    request: Request,
    id_number: str,
    csrf_token: str = Form(""),
    kind: str = Form(""),
    programme: str = Form(""),
    on: str = Form(""),
    reason: str = Form(""),
    members: str = Form(""),
    income: str = Form(""),
    special: str = Form(""),
    bank: str = Form(""),
    account: str = Form(""),
) -> Response:
    """What the decision will record and change; records nothing (so it reads the ledger only)."""
    id_number = id_number.strip().upper()
    form = _form(kind=kind, programme=programme, on=on, reason=reason, members=members, income=income,
                 special=special, bank=bank, account=account)  # fmt: skip
    with visit(request, ACTIONS.get(kind, UNKNOWN_KIND_ACTION), csrf_token=csrf_token) as v:
        try:
            args = _decision_args(form)
            if kind == "account":
                shown: Any = v.service.preview_account(id_number=id_number, **args)
            else:
                shown = v.service.preview_decision(id_number=id_number, actor=v.identity.name, **args)
        except RuleBroken as e:
            return _refused_in_place(request, v, id_number, form, e)
        me = v.identity
        context = visit_context(
            v,
            id_number=id_number,
            shown_id=formats.shown_id(id_number, me),
            shown_name=formats.shown_name(shown.name, me),
            kind=kind,
            preview=shown,
            form=form,
            account_before=formats.shown_id(shown.account_before, me) if kind == "account" else "",
            account_after=formats.shown_id(shown.account_after, me) if kind == "account" else "",
        )
        return page(request, "decision_preview.html", context)


@router.post("/persons/{id_number}/decide", response_model=None)
def decision_record(
    request: Request,
    id_number: str,
    csrf_token: str = Form(""),
    kind: str = Form(""),
    programme: str = Form(""),
    on: str = Form(""),
    reason: str = Form(""),
    members: str = Form(""),
    income: str = Form(""),
    special: str = Form(""),
    bank: str = Form(""),
    account: str = Form(""),
) -> Response:
    """Record the decision, with the logged-in account as actor, as the CLI's command records it."""
    id_number = id_number.strip().upper()
    form = _form(kind=kind, programme=programme, on=on, reason=reason, members=members, income=income,
                 special=special, bank=bank, account=account)  # fmt: skip
    actor_action = ACTIONS.get(kind, UNKNOWN_KIND_ACTION)
    with visit(request, actor_action, csrf_token=csrf_token, writing=True) as v:
        actor = v.identity.name
        try:
            args = _decision_args(form)
            if kind == "account":
                changed = v.service.set_account(id_number=id_number, actor=actor, **args)
            elif kind == "change":
                changed = v.service.change_household(
                    id_number=id_number,
                    programme=args["programme"],
                    on=args["on"],
                    actor=actor,
                    reason=args["reason"],
                    members=args["members"],
                    monthly_income_fen=args["monthly_income_fen"],
                    special_members=args["special_members"],
                ).recorded
            else:
                v.service.decide(id_number=id_number, actor=actor, amount_fen=None, **args)
                changed = True
        except RuleBroken as e:
            return _refused_in_place(request, v, id_number, form, e)
    if not changed:
        query = {"done": "unchanged"}
    elif kind == "account":
        query = {"done": "account"}
    else:
        query = {"done": kind, "programme": form["programme"], "on": form["on"]}
    return RedirectResponse(f"/persons/{id_number}?{urlencode(query)}", status_code=303)


# --- 临时救助 ------------------------------------------------------------------------------------------


def _aid_context(v: Visit, **more: Any) -> dict[str, Any]:
    """Grants awaiting approval first, then the newest, at most AID_ROWS_SHOWN (a year of a city's grants
    would make a page no one reads; `aid list --json` has them all)."""
    me = v.identity
    every = v.service.grants()
    waiting = [r for r in every if r["state"] == "awaiting approval"]
    shown = (waiting + [r for r in reversed(every) if r["state"] != "awaiting approval"])[:AID_ROWS_SHOWN]
    rows = [
        {
            **r,
            "shown_id": formats.shown_id(r["id_number"], me),
            "may_approve": v.may("aid approve") and r["state"] == "awaiting approval" and r["granted_by"] != me.name,
        }
        for r in shown
    ]
    return visit_context(
        v,
        rows=rows,
        total=len(every),
        waiting=len(waiting),
        aid=v.service.policy().temporary_aid,
        aid_kinds=AID_KINDS,
        may_grant=v.may("aid grant"),
        today=v.web.today().isoformat(),
        **({"notice": None, "error": None, "form": {name: "" for name in AID_FIELDS}} | more),
    )


@router.get("/aid", response_class=HTMLResponse)
def aid(request: Request, id_number: str = "", granted: str = "", approved: str = "", again: str = "") -> HTMLResponse:
    with visit(request, "aid list") as v:
        form = {name: "" for name in AID_FIELDS} | {"id_number": id_number.strip().upper()}
        context = _aid_context(v, form=form)
        done = next((r for r in context["rows"] if granted and r["grant"] == granted), None)
        if done is not None:
            state = t(f"aid.state.{done['state']}")
            context["notice"] = (
                t("aid.already")
                if again
                else t("aid.granted", grant=granted[:12], amount=formats.yuan(done["amount_fen"]), state=state)
            )
        ok = next((r for r in context["rows"] if approved and r["grant"] == approved), None)
        if ok is not None:
            context["notice"] = t("aid.approved", grant=approved[:12], name=ok["approved_by"])
        return page(request, "aid.html", context)


def _aid_refused(request: Request, v: Visit, form: dict[str, str], e: RuleBroken, status: int) -> HTMLResponse:
    return page(request, "aid.html", _aid_context(v, error=rule_text(e.rule, str(e)), form=form), status)


def _aid_form(**fields: str) -> dict[str, str]:
    form = {name: fields.get(name, "").strip() for name in AID_FIELDS}
    return form | {"id_number": form["id_number"].upper(), "reason": fields.get("reason", "")}


def _grant_args(v: Visit, form: dict[str, str]) -> dict[str, Any]:
    """The form as `grant_aid`'s arguments, parsed as `aid grant` parses its options."""
    try:
        stage = int(form["stage"] or "1")
    except ValueError:
        raise BadStage(f"stage {form['stage']!r} is not a whole number") from None
    return {
        "id_number": form["id_number"],
        "amount_fen": parse_yuan(form["amount"]),
        "reason": form["reason"],
        "on": _date(form["on"]) if form["on"] else v.web.today(),
        "kind": form["kind"] or "emergency",
        "decision_ref": form["decision"] or None,
        "stage": stage,
        "region": form["region"] or None,
        "actor": v.identity.name,
    }


@router.post("/aid/preview", response_model=None)
def aid_preview(
    request: Request,
    csrf_token: str = Form(""),
    id_number: str = Form(""),
    amount: str = Form(""),
    reason: str = Form(""),
    on: str = Form(""),
    kind: str = Form("emergency"),
    decision: str = Form(""),
    stage: str = Form("1"),
    region: str = Form(""),
) -> Response:
    """The grant as it will be recorded, and whether it waits for a checker; records nothing."""
    form = _aid_form(id_number=id_number, amount=amount, reason=reason, on=on, kind=kind, decision=decision,
                     stage=stage, region=region)  # fmt: skip
    with visit(request, "aid grant", csrf_token=csrf_token) as v:
        try:
            outcome = v.service.preview_aid(**_grant_args(v, form))
        except RuleBroken as e:
            return _aid_refused(request, v, form, e, 400)
        grant = outcome.grant
        context = visit_context(
            v,
            grant=grant,
            new=outcome.recorded,
            shown_id=formats.shown_id(grant.id_number, v.identity),
            aid=v.service.policy().temporary_aid,
            form=form,
        )
        return page(request, "aid_preview.html", context)


@router.post("/aid/grant", response_model=None)
def aid_grant(
    request: Request,
    csrf_token: str = Form(""),
    id_number: str = Form(""),
    amount: str = Form(""),
    reason: str = Form(""),
    on: str = Form(""),
    kind: str = Form("emergency"),
    decision: str = Form(""),
    stage: str = Form("1"),
    region: str = Form(""),
) -> Response:
    """`aid grant`: one grant; above the policy's threshold it waits for a checker's 批准."""
    form = _aid_form(id_number=id_number, amount=amount, reason=reason, on=on, kind=kind, decision=decision,
                     stage=stage, region=region)  # fmt: skip
    with visit(request, "aid grant", csrf_token=csrf_token, writing=True) as v:
        try:
            done = v.service.grant_aid(**_grant_args(v, form))
        except RuleBroken as e:
            return _aid_refused(request, v, form, e, 400)
    query = {"granted": done.grant.grant_id.hex} | ({} if done.recorded else {"again": "1"})
    return RedirectResponse(f"/aid?{urlencode(query)}", status_code=303)


@router.post("/aid/{grant}/approve", response_model=None)
def aid_approve(request: Request, grant: str, csrf_token: str = Form("")) -> Response:
    """`aid approve`: a checker, not the account that granted it (maker-checker, domain.oneoffs)."""
    with visit(request, "aid approve", csrf_token=csrf_token, writing=True) as v:
        try:
            approved = v.service.approve_aid(grant, actor=v.identity.name)
        except RuleBroken as e:
            return _aid_refused(request, v, {name: "" for name in AID_FIELDS}, e, 409)
    return RedirectResponse(f"/aid?{urlencode({'approved': approved.grant_id.hex})}", status_code=303)
