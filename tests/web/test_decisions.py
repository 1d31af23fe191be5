"""决定 and 临时救助 over HTTP (TestClient, SQLite): finding a person, their page by role, every decision
previewed before it is recorded and recorded as the CLI records it, aid granted and approved under
maker-checker. Every POST: no CSRF token → 403, a role that may not act → 403, bad input → the page with
the rule in place; nothing recorded in any of those, checked through `yikatong audit history --json` and
`aid list --json`, not through the page."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from domain.identity import mask_id, mask_name
from tests.helpers.ledgers import yikatong
from tests.helpers.web import OfficeLedger, build_office_ledger, client_for, copy_office_ledger, log_in

LI_ID = "152601198001011239"  # 李建华, 城镇低保 from 2017-01-01: 2 members, income 300.00 → 810.00 元 a month
LI_ACCOUNT = "6228480045001122337"
NEW_ACCOUNT = "6228480045001122345"  # Luhn-valid
SMALL_GRANT = {"id_number": LI_ID, "amount": "500", "reason": "集民发〔2017〕11号", "on": "2017-01-03"}
SUSPEND = {"kind": "suspend", "programme": "urban_dibao", "on": "2017-01-03", "reason": "集民发〔2017〕9号"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> OfficeLedger:
    return build_office_ledger(tmp_path_factory.mktemp("web-decisions"))


@pytest.fixture
def office(built: OfficeLedger, tmp_path: Path) -> OfficeLedger:
    return copy_office_ledger(built, tmp_path / "office")


@pytest.fixture
def client(office: OfficeLedger) -> TestClient:
    return client_for(office)


def history(office: OfficeLedger, id_number: str = LI_ID) -> list[dict[str, Any]]:
    done = yikatong(office.url, "audit", "history", id_number, "--json", as_="auditor")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["events"]  # type: ignore[no-any-return]


def recorded_by_person(office: OfficeLedger) -> list[dict[str, Any]]:
    """The person's own events after the roster's registration: decisions, account changes."""
    return [e for e in history(office) if e["event"] in ("decision", "account_changed", "renamed", "enrolled")]


def grants(office: OfficeLedger) -> list[dict[str, Any]]:
    done = yikatong(office.url, "aid", "list", "--json", as_="auditor")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def texts(html: str, name: str, until: str = "</") -> list[str]:
    """The text of each element marked `data-test=name`, up to `until` (the first closing tag, or "</tr>")."""
    found = re.findall(rf'data-test="{name}"[^>]*>(.*?){until}', html, re.S)
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", m)).strip() for m in found]


# --- finding a person and reading their page -------------------------------------------------------------


def test_search_by_id_number_masks_for_the_checker_and_not_for_the_clerk(
    client: TestClient, office: OfficeLedger
) -> None:
    log_in(client, office, "clerk")
    found = client.get("/persons", params={"id_number": LI_ID.lower()})
    assert found.status_code == 200
    assert texts(found.text, "search-id") == [LI_ID] and texts(found.text, "search-name") == ["李建华"]
    assert f'href="/persons/{LI_ID}"' in found.text
    none = client.get("/persons", params={"id_number": "110101199003076110"})
    assert texts(none.text, "search-none") == ["台账中没有身份证号为 110101199003076110 的人员"]

    checker = client_for(office)
    log_in(checker, office, "checker")
    masked = checker.get("/persons", params={"id_number": LI_ID})
    assert texts(masked.text, "search-id") == [mask_id(LI_ID)] and texts(masked.text, "search-name") == ["李*华"]
    shown = re.sub(r'(href="/persons/|value=")\d+X?"', "", masked.text)  # what the checker typed, echoed
    assert LI_ID not in shown and "李建华" not in shown


def test_the_person_page_lists_enrolments_payments_and_decisions(client: TestClient, office: OfficeLedger) -> None:
    batch = next(r["id"] for r in json.loads(yikatong(office.url, "batch", "list", "--json").stdout)
                 if r["programme"] == "urban_dibao")  # fmt: skip
    log_in(client, office, "clerk")
    page = client.get(f"/persons/{LI_ID}")
    assert page.status_code == 200
    assert texts(page.text, "person-id") == [LI_ID] and texts(page.text, "person-name") == ["李建华"]
    assert texts(page.text, "enrolment-state") == ["正常发放"]
    assert "城镇低保" in page.text and "urban_dibao</td>" not in page.text
    assert "810.00 元" in page.text and f'href="/batches/{batch}"' in page.text
    assert texts(page.text, "decision-kind") == ["登记并纳入"] and texts(page.text, "decision-basis") == [
        "集民发〔2017〕2号"
    ]
    assert 'data-test="decide-form"' in page.text and 'data-test="account-form"' in page.text


@pytest.mark.parametrize("role", ["checker", "auditor"])
def test_readers_see_the_page_without_actions_and_ids_as_their_role_may(office: OfficeLedger, role: str) -> None:
    client = client_for(office)
    log_in(client, office, role)
    page = client.get(f"/persons/{LI_ID}")
    assert page.status_code == 200
    for form in ("decide-form", "account-form", "person-actions", "person-aid-link"):
        assert f'data-test="{form}"' not in page.text
    if role == "auditor":  # reads everything unmasked, as `audit history` does
        assert texts(page.text, "person-id") == [LI_ID] and LI_ACCOUNT in page.text
    else:
        assert texts(page.text, "person-id") == [mask_id(LI_ID)] and texts(page.text, "person-name") == [
            mask_name("李建华")
        ]
        assert LI_ACCOUNT not in page.text


def test_an_unknown_person_is_a_page_saying_so(client: TestClient, office: OfficeLedger) -> None:
    log_in(client, office, "clerk")
    missing = client.get("/persons/110101199003076110")
    assert missing.status_code == 400 and "（UnknownEnrolment）" in missing.text


# --- every POST: CSRF, roles -------------------------------------------------------------------------------


def _posts(grant: str) -> list[tuple[str, dict[str, str]]]:
    return [
        (f"/persons/{LI_ID}/preview", SUSPEND),
        (f"/persons/{LI_ID}/decide", SUSPEND),
        (
            f"/persons/{LI_ID}/decide",
            {"kind": "account", "bank": "103191000012", "account": NEW_ACCOUNT, "reason": "换卡"},
        ),
        ("/aid/preview", SMALL_GRANT),
        ("/aid/grant", SMALL_GRANT),
        (f"/aid/{grant}/approve", {}),
    ]


def _big_grant(office: OfficeLedger) -> str:
    """A grant of 1,500.00 元 by the clerk: above the 1,000.00 元 threshold, so it awaits a checker."""
    done = yikatong(office.url, "aid", "grant", LI_ID, "--amount", "1500", "--reason", "集民发〔2017〕10号",
                    "--on", "2017-01-03", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["grant"]  # type: ignore[no-any-return]


def test_every_post_without_its_csrf_token_is_refused_and_records_nothing(
    client: TestClient, office: OfficeLedger
) -> None:
    grant = _big_grant(office)
    before, grants_before = recorded_by_person(office), grants(office)
    for name, role in (("clerk", "clerk"), ("checker", "checker")):
        log_in(client, office, name)
        for path, data in _posts(grant):
            if (role == "checker") != path.endswith("/approve"):
                continue
            for token in ({}, {"csrf_token": "0" * 64}):
                refused = client.post(path, data={**data, **token})
                assert refused.status_code == 403, (path, token)
                assert "CSRF" in refused.text
    assert recorded_by_person(office) == before and grants(office) == grants_before


@pytest.mark.parametrize("role", ["checker", "auditor", "admin"])
def test_roles_other_than_the_clerk_are_refused_every_clerk_action(office: OfficeLedger, role: str) -> None:
    grant = _big_grant(office)
    before, grants_before = recorded_by_person(office), grants(office)
    client = client_for(office)
    csrf = log_in(client, office, role)
    for path, data in _posts(grant):
        if path.endswith("/approve"):
            continue
        for kind in ("suspend", "resume", "terminate", "phase-out", "change", "account", "no-such-kind"):
            if "kind" in data:
                data = {**data, "kind": kind}
            refused = client.post(path, data={**data, "csrf_token": csrf})
            assert refused.status_code == 403, (path, kind)
            rule = "AuditorIsReadOnly" if role == "auditor" else "OnlyClerksRecord"
            assert f"（{rule}）" in refused.text
    assert recorded_by_person(office) == before and grants(office) == grants_before


@pytest.mark.parametrize("role", ["clerk", "auditor"])
def test_only_a_checker_may_approve_aid(office: OfficeLedger, role: str) -> None:
    grant = _big_grant(office)
    client = client_for(office)
    csrf = log_in(client, office, role)
    page = client.get("/aid")
    assert page.status_code == 200 and 'data-test="aid-approve-submit"' not in page.text
    refused = client.post(f"/aid/{grant}/approve", data={"csrf_token": csrf})
    assert refused.status_code == 403
    assert grants(office)[0]["approved_by"] == ""


# --- bad input: the page again, the rule in place, nothing recorded -----------------------------------------


@pytest.mark.parametrize(
    ("data", "rule", "words"),
    [
        ({**SUSPEND, "on": "2017-1-3"}, "BadDate", "日期须为 YYYY-MM-DD 格式"),
        ({**SUSPEND, "on": ""}, "BadDate", "日期须为 YYYY-MM-DD 格式"),
        ({**SUSPEND, "reason": "  "}, "BadReason", "依据须为 1–500 字的文字"),
        ({**SUSPEND, "kind": "resume"}, "DecisionNotAllowed", "该决定不适用于生效日当天的状态"),
        ({**SUSPEND, "on": "2016-12-31"}, "DecisionBeforeEnrolment", "生效日期早于纳入日期"),
        ({**SUSPEND, "programme": "rural_dibao"}, "UnknownEnrolment", "该人员在该项目没有记录"),
        ({**SUSPEND, "programme": "no_such"}, "UnknownProgramme", "政策中没有该项目"),
        ({**SUSPEND, "kind": "change"}, "DecisionNotAllowed", "该决定不适用"),
        ({**SUSPEND, "kind": "change", "members": "0"}, "HouseholdInvalid", "家庭情况超出允许范围"),
        ({**SUSPEND, "kind": "change", "members": "two"}, "BadCount", "人数须为整数"),
        ({**SUSPEND, "kind": "change", "income": "3.001"}, "BadAmount", "金额格式有误"),
        (
            {"kind": "account", "bank": "103191000012", "account": "62284800", "reason": "换卡"},
            "BadAccount",
            "账号须为",
        ),
        ({"kind": "account", "bank": "10319A", "account": NEW_ACCOUNT, "reason": "换卡"}, "BankCodeNotDigits", "行号"),
        (
            {"kind": "account", "bank": "1" * 36, "account": NEW_ACCOUNT, "reason": "换卡"},
            "FieldRefused",
            "银行行号或账号超出银行文件格式的限制",
        ),
        ({"kind": "account", "bank": "103191000012", "account": NEW_ACCOUNT, "reason": ""}, "BadReason", "依据"),
    ],
)
@pytest.mark.parametrize("step", ["preview", "decide"])
def test_bad_input_shows_the_rule_in_place_and_records_nothing(
    client: TestClient, office: OfficeLedger, data: dict[str, str], rule: str, words: str, step: str
) -> None:
    before = recorded_by_person(office)
    csrf = log_in(client, office, "clerk")
    again = client.post(f"/persons/{LI_ID}/{step}", data={**data, "csrf_token": csrf})
    assert again.status_code == 400
    [error] = texts(again.text, "person-error")
    assert words in error and error.endswith(f"（{rule}）")
    assert 'data-test="decide-form"' in again.text  # the person's page, the form as typed
    if data["kind"] != "account" and data["on"]:
        assert f'value="{data["on"]}"' in again.text
    assert recorded_by_person(office) == before


# --- decisions: the preview records nothing, the confirmation records what it showed ------------------------


def test_suspend_is_previewed_then_recorded_with_the_clerk_as_actor(client: TestClient, office: OfficeLedger) -> None:
    before = recorded_by_person(office)
    csrf = log_in(client, office, "clerk")
    preview = client.post(f"/persons/{LI_ID}/preview", data={**SUSPEND, "csrf_token": csrf})
    assert preview.status_code == 200
    assert texts(preview.text, "preview-state") == ["生效日 2017年1月3日 的状态：正常发放 → 暂停"]
    assert texts(preview.text, "preview-months") == ["发放月份：2017-01 起 → 仅 2017-01"]
    assert texts(preview.text, "preview-accrued") == ["已月结的期间（2017-01）应发不变"]
    assert recorded_by_person(office) == before  # a preview records nothing
    done = client.post(f"/persons/{LI_ID}/decide", data={**SUSPEND, "csrf_token": csrf}, follow_redirects=False)
    assert done.status_code == 303
    [decision] = [e for e in recorded_by_person(office) if e not in before]
    assert (decision["kind"], decision["effective_on"], decision["reason"], decision["actor"]) == (
        "suspend", "2017-01-03", "集民发〔2017〕9号", "clerk",
    )  # fmt: skip
    page = client.get(done.headers["location"])
    assert texts(page.text, "person-notice") == ["已记录：暂停（城镇低保，2017年1月3日起）"]
    assert texts(page.text, "enrolment-state") == ["暂停"]
    assert "暂停" in texts(page.text, "decision-kind") and "clerk" in texts(page.text, "decision-actor")


def test_a_future_decision_shows_on_the_enrolment_before_it_takes_effect(
    client: TestClient, office: OfficeLedger
) -> None:
    csrf = log_in(client, office, "clerk")
    data = {**SUSPEND, "kind": "terminate", "on": "2017-03-01", "csrf_token": csrf}
    assert client.post(f"/persons/{LI_ID}/decide", data=data, follow_redirects=False).status_code == 303
    page = client.get(f"/persons/{LI_ID}")
    assert texts(page.text, "enrolment-state") == ["正常发放（2017-03-01 起终止）"]
    assert texts(page.text, "enrolment-to") == ["2017-03-01"]


def test_a_change_that_lowers_an_accrued_month_previews_the_recovery_the_month_end_then_makes(
    client: TestClient, office: OfficeLedger
) -> None:
    """Income 300 → 500 from January, already paid 810.00: January is due 610.00, so 200.00 is recovered;
    `run 2017-02` then records exactly that recovery (offset against February's payment)."""
    csrf = log_in(client, office, "clerk")
    change = {"kind": "change", "programme": "urban_dibao", "on": "2017-01-01", "reason": "集民发〔2017〕12号",
              "income": "500"}  # fmt: skip
    preview = client.post(f"/persons/{LI_ID}/preview", data={**change, "csrf_token": csrf})
    assert preview.status_code == 200
    assert texts(preview.text, "preview-month-amount") == ["2017-01 应发：810.00 元 → 610.00 元"]
    [accrued] = texts(preview.text, "preview-accrued")
    assert accrued.startswith("已月结期间应发减少 200.00 元：下次月结将追回 200.00 元")
    assert client.post(f"/persons/{LI_ID}/decide", data={**change, "csrf_token": csrf},
                       follow_redirects=False).status_code == 303  # fmt: skip
    [decision] = [e for e in history(office) if e["event"] == "decision"]
    assert (decision["kind"], decision["monthly_income_fen"], decision["members"], decision["actor"]) == (
        "change", 50000, 2, "clerk",
    )  # fmt: skip
    ran = yikatong(office.url, "run", "2017-02", "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["recovery_due_fen"] == 20000


def test_a_change_above_the_standard_previews_and_records_the_phase_out(
    client: TestClient, office: OfficeLedger
) -> None:
    csrf = log_in(client, office, "clerk")
    change = {"kind": "change", "programme": "urban_dibao", "on": "2017-02-01", "reason": "集民发〔2017〕13号",
              "income": "1200"}  # fmt: skip
    preview = client.post(f"/persons/{LI_ID}/preview", data={**change, "csrf_token": csrf})
    rows = texts(preview.text, "preview-recorded-row", "</tr>")
    assert len(rows) == 2 and rows[1].startswith("渐退") and "渐退期至 2017年8月1日 止" in rows[1]
    assert texts(preview.text, "preview-months") == ["发放月份：2017-01 起 → 2017-01 至 2017-07"]
    assert client.post(f"/persons/{LI_ID}/decide", data={**change, "csrf_token": csrf},
                       follow_redirects=False).status_code == 303  # fmt: skip
    kinds = [(e["kind"], e["ends_on"]) for e in history(office) if e["event"] == "decision"]
    assert kinds == [("change", ""), ("phase-out", "2017-08-01")]


def test_the_same_change_again_records_nothing_and_says_so(client: TestClient, office: OfficeLedger) -> None:
    csrf = log_in(client, office, "clerk")
    change = {"kind": "change", "programme": "urban_dibao", "on": "2017-02-01", "reason": "r", "members": "3",
              "csrf_token": csrf}  # fmt: skip
    assert client.post(f"/persons/{LI_ID}/decide", data=change, follow_redirects=False).status_code == 303
    before = recorded_by_person(office)
    preview = client.post(f"/persons/{LI_ID}/preview", data=change)
    assert texts(preview.text, "preview-nothing") == ["与台账现有内容相同：确认后不会记录任何内容"]
    done = client.post(f"/persons/{LI_ID}/decide", data=change)
    assert texts(done.text, "person-notice") == ["与台账现有内容相同，未记录任何内容"]
    assert recorded_by_person(office) == before


def test_the_account_is_previewed_then_changed(client: TestClient, office: OfficeLedger) -> None:
    csrf = log_in(client, office, "clerk")
    reason = "换卡 集民发〔2017〕14号"
    data = {
        "kind": "account",
        "bank": "103191000012",
        "account": f" {NEW_ACCOUNT} ",
        "reason": reason,
        "csrf_token": csrf,
    }
    preview = client.post(f"/persons/{LI_ID}/preview", data=data)
    assert texts(preview.text, "preview-account") == [
        f"一卡通账户：103191000012 / {LI_ACCOUNT} → 103191000012 / {NEW_ACCOUNT}"
    ]
    assert [e for e in history(office) if e["event"] == "account_changed"] == []
    done = client.post(f"/persons/{LI_ID}/decide", data=data)
    assert texts(done.text, "person-notice") == ["已记录：更换账户"]
    [changed] = [e for e in history(office) if e["event"] == "account_changed"]
    assert (changed["account"], changed["reason"], changed["actor"]) == (
        NEW_ACCOUNT,
        "换卡 集民发〔2017〕14号",
        "clerk",
    )


# --- 临时救助 -------------------------------------------------------------------------------------------------


def test_the_clerk_grants_aid_and_a_checker_approves_it(client: TestClient, office: OfficeLedger) -> None:
    csrf = log_in(client, office, "clerk")
    form = client.get("/aid", params={"id_number": LI_ID})
    assert 'data-test="aid-form"' in form.text and f'value="{LI_ID}"' in form.text
    assert texts(form.text, "aid-threshold") == ["每户 200.00 元–30,000.00 元；超过 1,000.00 元 的须由复核人批准后发放"]
    data = {"id_number": LI_ID, "amount": "1,500", "reason": "集民发〔2017〕10号", "on": "2017-01-03",
            "kind": "expense", "csrf_token": csrf}  # fmt: skip
    for step in ("preview", "grant"):
        bad = client.post(f"/aid/{step}", data=data)
        assert bad.status_code == 400 and texts(bad.text, "aid-error")[0].endswith("（BadAmount）")
        assert f'value="{LI_ID}"' in bad.text and 'value="集民发〔2017〕10号"' in bad.text  # the form as typed
        high = client.post(f"/aid/{step}", data={**data, "amount": "30000.01"})
        assert high.status_code == 400 and texts(high.text, "aid-error") == [
            "超过每户临时救助的上限（AidAboveMaximum）"
        ]
        stranger = client.post(f"/aid/{step}", data={**data, "amount": "1500", "id_number": "110101199003076110"})
        assert texts(stranger.text, "aid-error") == ["台账中没有该人员：请先导入名册（PersonNotInLedger）"]
    preview = client.post("/aid/preview", data={**data, "amount": "1500"})
    assert preview.status_code == 200 and texts(preview.text, "aid-preview-amount") == ["1,500.00 元"]
    assert texts(preview.text, "aid-preview-approval") == [
        "超过审批额度 1,000.00 元：记录后须由另一名复核人批准，批准后的月结才发放"
    ]
    assert grants(office) == []  # neither a refusal nor a preview recorded anything
    granted = client.post("/aid/grant", data={**data, "amount": "1500"})
    assert granted.status_code == 200 and texts(granted.text, "aid-state") == ["待审批"]
    assert texts(granted.text, "aid-total")[0].startswith("共 1 笔，待审批 1 笔；显示 1 笔")
    again = client.post("/aid/preview", data={**data, "amount": "1500"})
    assert "已记录过：确认后不会记录新内容" in again.text
    [grant] = grants(office)
    assert (grant["amount_fen"], grant["kind"], grant["granted_by"], grant["state"]) == (
        150000, "expense", "clerk", "awaiting approval",
    )  # fmt: skip
    assert texts(granted.text, "aid-notice") == [f"已记录救助 {grant['grant'][:12]}：1,500.00 元，待审批"]
    assert 'data-test="aid-approve-submit"' not in granted.text

    checker = client_for(office)
    token = log_in(checker, office, "checker")
    page = checker.get("/aid")
    assert 'data-test="aid-approve-submit"' in page.text and 'data-test="aid-form"' not in page.text
    assert mask_id(LI_ID) in page.text and LI_ID not in re.sub(r'href="/persons/\d+"', "", page.text)
    approved = checker.post(f"/aid/{grant['grant']}/approve", data={"csrf_token": token})
    assert approved.status_code == 200 and texts(approved.text, "aid-approved-by") == ["checker"]
    assert grants(office)[0]["approved_by"] == "checker"
    twice = checker.post(f"/aid/{grant['grant']}/approve", data={"csrf_token": token})
    assert twice.status_code == 409 and texts(twice.text, "aid-error") == ["该救助已经批准过（AidAlreadyApproved）"]


def test_the_granter_cannot_approve_their_own_grant_even_as_a_checker(office: OfficeLedger) -> None:
    """Maker-checker in the domain, not only in the roles: the clerk who granted it becomes a checker
    (`user role`) and is still refused, with the rule in Chinese."""
    grant = _big_grant(office)
    assert yikatong(office.url, "user", "role", "clerk", "checker", as_="admin").returncode == 0
    client = client_for(office)
    csrf = log_in(client, office, "clerk")
    refused = client.post(f"/aid/{grant}/approve", data={"csrf_token": csrf})
    assert refused.status_code == 409
    assert texts(refused.text, "aid-error") == [
        "记录该救助的人不能批准它：须由另一名复核人批准（AidApproverMustDifferFromGranter）"
    ]
    assert grants(office)[0]["approved_by"] == ""


def test_an_unknown_grant_is_refused_in_place(office: OfficeLedger) -> None:
    client = client_for(office)
    csrf = log_in(client, office, "checker")
    refused = client.post("/aid/ffffffffffff/approve", data={"csrf_token": csrf})
    assert refused.status_code == 409 and texts(refused.text, "aid-error") == ["找不到该救助（UnknownGrant）"]


@pytest.mark.parametrize("kind", ["resume", "terminate", "phase-out"])
def test_each_kind_is_recorded_as_the_clis_decide_command_records_it(
    client: TestClient, office: OfficeLedger, kind: str
) -> None:
    if kind == "resume":
        suspended = yikatong(office.url, "decide", "suspend", LI_ID, "urban_dibao", "--on", "2017-01-02",
                             "--reason", "集民发〔2017〕8号")  # fmt: skip
        assert suspended.returncode == 0, suspended.stderr
    csrf = log_in(client, office, "clerk")
    data = {**SUSPEND, "kind": kind, "csrf_token": csrf}
    preview = client.post(f"/persons/{LI_ID}/preview", data=data)
    assert preview.status_code == 200 and texts(preview.text, "preview-recorded-row", "</tr>")[0].startswith(
        {"resume": "恢复", "terminate": "终止", "phase-out": "渐退"}[kind]
    )
    assert client.post(f"/persons/{LI_ID}/decide", data=data, follow_redirects=False).status_code == 303
    last = [e for e in history(office) if e["event"] == "decision"][-1]
    assert (last["kind"], last["effective_on"], last["actor"]) == (kind, "2017-01-03", "clerk")


def test_every_catalogue_key_the_pages_use_exists() -> None:
    """The templates' literal keys and the keys built from kinds and states: a missing one would show
    the key itself on the page."""
    from domain.eligibility import ACTIVE, DECISION_KINDS, ENDED, PENDING, SUSPENDED, TERMINATED
    from domain.oneoffs import AID_KINDS
    from ledger.persons import DECISION_EVENTS, PAYMENT_EVENTS
    from ledger.web.decisions import KINDS
    from ledger.web.messages import ZH_CN

    folder = Path(__file__).resolve().parents[2] / "ledger" / "web" / "templates"
    used = set()
    for name in ("persons.html", "person.html", "decision_preview.html", "aid.html"):
        used |= set(re.findall(r"\bt\('([^']+)'", (folder / name).read_text(encoding="utf-8")))
    used |= {f"dec.kind.{k}" for k in (*KINDS, *DECISION_KINDS)}
    used |= {f"dec.enrolment.{s}" for s in (ACTIVE, SUSPENDED, TERMINATED, ENDED, PENDING)}
    used |= {f"dec.event.{e}" for e in (*DECISION_EVENTS, *PAYMENT_EVENTS) if e != "decision"}
    used |= {f"aid.kind.{k}" for k in AID_KINDS} | {"aid.state.payable", "aid.state.awaiting approval"}
    assert sorted(k for k in used if k not in ZH_CN and not k.endswith(".")) == []  # "x." ~ k: built above


def test_a_grant_at_or_below_the_threshold_is_payable_without_approval(
    client: TestClient, office: OfficeLedger
) -> None:
    csrf = log_in(client, office, "clerk")
    preview = client.post("/aid/preview", data={**SMALL_GRANT, "csrf_token": csrf})
    assert texts(preview.text, "aid-preview-approval") == ["未超过审批额度 1,000.00 元：记录后即可发放，下次月结入账"]
    granted = client.post("/aid/grant", data={**SMALL_GRANT, "csrf_token": csrf})
    assert texts(granted.text, "aid-state") == ["可发放"]
    assert [(g["amount_fen"], g["state"], g["granted_by"]) for g in grants(office)] == [(50000, "payable", "clerk")]
    again = client.post("/aid/grant", data={**SMALL_GRANT, "csrf_token": csrf})
    assert texts(again.text, "aid-notice") == ["同一救助已记录过：未记录新内容"] and len(grants(office)) == 1
