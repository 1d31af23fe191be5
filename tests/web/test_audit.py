"""审计 over HTTP (TestClient, SQLite): the auditor reads a person's history, the anomalies, the verify
result (against uploaded anchors too) and the actions log; nothing on these pages changes the ledger;
the clerk and the checker are refused (and each refusal is recorded); logins, logouts, failed logins
and refused requests are recorded in the ledger as sealed events and shown in 操作日志."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from lxml import html

from ledger.access import ACCESS_TOPIC
from ledger.bootstrap import database_from_url, open_service
from ledger.storage import log_rows
from ledger.web.context import FailedLoginBudget
from tests.helpers.ledgers import yikatong
from tests.helpers.web import OfficeLedger, build_office_ledger, client_for, copy_office_ledger, csrf_of, log_in

LI_ID, WANG_ID = "152601198001011239", "152621197505052342"
TERMINATION_REF = "集民发〔2017〕31号"
AUDIT_PAGES = ("/audit", f"/audit/person?id_number={LI_ID}", "/audit/anomalies", "/audit/verify", "/audit/log")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> OfficeLedger:
    """The office ledger, 李建华 terminated back to 2017-01-01 after January was paid (超范围发放), and an
    anchor the admin wrote (kept in the folder, as an auditor keeps it outside the server)."""
    folder = tmp_path_factory.mktemp("web-audit")
    office = build_office_ledger(folder)
    done = yikatong(office.url, "decide", "terminate", LI_ID, "urban_dibao", "--on", "2017-01-01",
                    "--reason", TERMINATION_REF)  # fmt: skip
    assert done.returncode == 0, done.stderr
    anchored = yikatong(office.url, "audit", "anchor", "--out", str(folder / "anchor.json"), as_="admin")
    assert anchored.returncode == 0, anchored.stderr
    return office


@pytest.fixture
def office(built: OfficeLedger, tmp_path: Path) -> OfficeLedger:
    return copy_office_ledger(built, tmp_path / "office")


def logged_in(office: OfficeLedger, name: str) -> tuple[TestClient, str]:
    client = client_for(office)
    done = client.post("/login", data={"username": name, "password": office.passwords[name]}, follow_redirects=False)
    assert done.status_code == 303, done.text
    return client, csrf_of(client.get("/reports").text)


def positions(office: OfficeLedger) -> tuple[int, int]:
    service = open_service(database_from_url(office.url), read_only=True)
    try:
        at = service.log_positions()
    finally:
        service.registry.close()
        service.disbursement.close()
    return at["registry_events"], at["disbursement_events"]


def access_records(office: OfficeLedger) -> list[dict[str, Any]]:
    """Every access record in the registry log, read from the stored events themselves, with its position."""
    service = open_service(database_from_url(office.url), read_only=True)
    try:
        rows = log_rows(service.registry.recorder, 1, None, 100_000)
        return [{**service.registry.payload(r.state), "position": r.id} for r in rows if r.topic == ACCESS_TOPIC]
    finally:
        service.registry.close()
        service.disbursement.close()


def cli_json(office: OfficeLedger, *args: str) -> Any:
    done = yikatong(office.url, *args, "--json", as_="auditor")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def text_of(answer: Any) -> str:
    return str(html.fromstring(answer.text).text_content())


# --- the auditor reads ------------------------------------------------------------------------------------


def test_the_auditor_reads_every_audit_page_and_the_menu_leads_there(office: OfficeLedger) -> None:
    client, _ = logged_in(office, "auditor")
    home = client.get("/")
    assert 'data-test="nav-audit"' in home.text
    for url in AUDIT_PAGES:
        answer = client.get(url)
        assert answer.status_code == 200, (url, answer.text)
        assert "审计页面只读" in answer.text


def test_the_person_history_shows_every_event_with_both_dates_who_and_why(office: OfficeLedger) -> None:
    expected = cli_json(office, "audit", "history", LI_ID)["events"]
    client, _ = logged_in(office, "auditor")
    doc = html.fromstring(client.get(f"/audit/person?id_number={LI_ID}").text)
    rows = doc.xpath("//tr[@data-test='history-row']")
    assert len(rows) == len(expected) >= 3  # registered, paid for January, terminated
    for tr, e in zip(rows, expected, strict=True):
        cells = {c.get("data-test"): c.text_content().strip() for c in tr.xpath("./td[@data-test]")}
        assert tr.get("data-event") == e["event"]
        assert cells["recorded-at"] == e["recorded_at"][:19].replace("T", " ")
        assert cells["effective-on"] == (e["effective_on"] or "—")
        assert cells["actor"] == (e["actor"] or "—")
    grounds = [tr.xpath("./td[@data-test='grounds']")[0].text_content() for tr in rows]
    assert TERMINATION_REF in grounds[-1] and "集民发〔2017〕2号" in grounds[0]
    assert "李建华" in doc.text_content() and "6228480045001122337" in doc.text_content()  # the auditor: whole


def test_the_admin_reads_the_history_masked_and_the_clerk_and_checker_are_refused(office: OfficeLedger) -> None:
    admin, _ = logged_in(office, "admin")
    page = admin.get(f"/audit/person?id_number={LI_ID}")
    assert page.status_code == 200 and "李*华" in page.text and "6228480045001122337" not in page.text
    assert LI_ID not in text_of(page).replace(f'value="{LI_ID}"', "")
    for name in ("clerk", "checker"):
        client, _ = logged_in(office, name)
        assert 'data-test="nav-audit"' not in client.get("/").text
        for url in AUDIT_PAGES:
            answer = client.get(url)
            assert answer.status_code == 403, (name, url)
            assert "审计页面与操作日志仅供审计与管理员查看" in answer.text
    refused = [r for r in access_records(office) if r["kind"] == "refused"]
    assert {(r["actor"], r["path"], r["rule"]) for r in refused} == {
        (name, url.split("?")[0], "OnlyAuditorsAudit") for name in ("clerk", "checker") for url in AUDIT_PAGES
    }


def test_an_unknown_or_malformed_id_number_is_said_in_place(office: OfficeLedger) -> None:
    client, _ = logged_in(office, "auditor")
    unknown = client.get("/audit/person?id_number=110101199003070011")
    assert unknown.status_code == 404 and 'data-test="error-message"' in unknown.text
    assert "台账中没有该身份证号的人员" in unknown.text
    bad = client.get("/audit/person?id_number=12345")
    assert bad.status_code == 400 and "格式不对" in bad.text


def test_the_anomalies_page_shows_audit_anomalies_with_their_rules(office: OfficeLedger) -> None:
    expected = cli_json(office, "audit", "anomalies")["findings"]
    client, _ = logged_in(office, "auditor")
    doc = html.fromstring(client.get("/audit/anomalies").text)
    rows = doc.xpath("//tr[@data-test='anomaly-row']")
    assert [tr.get("data-kind") for tr in rows] == [f["kind"] for f in expected] == ["paid_while_not_payable"]
    assert "超范围发放" in rows[0].text_content() and LI_ID in rows[0].text_content()
    assert "发放期间首日没有有效的保障资格" in rows[0].xpath("./td[@class='rule']")[0].text_content()


def test_the_verify_page_shows_the_positions_audit_verify_finds(office: OfficeLedger) -> None:
    client, _ = logged_in(office, "auditor")
    doc = html.fromstring(client.get("/audit/verify").text)
    expected = cli_json(office, "audit", "verify")
    assert expected["ok"] and doc.xpath("//*[@data-test='verify-verdict']")[0].get("data-ok") == "1"
    shown = {
        tr.get("data-table"): (
            int(tr.xpath(".//*[@data-test='sealed-position']")[0].text),
            int(tr.xpath(".//*[@data-test='position']")[0].text),
        )
        for tr in doc.xpath("//tr[@data-test='verify-log']")
    }
    assert shown == {log["table"]: (log["sealed_position"], log["position"]) for log in expected["logs"]}


def test_verify_against_an_uploaded_anchor_names_its_positions_and_changes_nothing(office: OfficeLedger) -> None:
    anchor = (office.folder / "anchor.json").read_bytes()
    client, csrf = logged_in(office, "auditor")
    before = positions(office)
    done = client.post("/audit/verify", data={"csrf_token": csrf}, files={"anchor": ("anchor.json", anchor)})
    assert done.status_code == 200, done.text
    doc = html.fromstring(done.text)
    (block,) = doc.xpath("//*[@data-test='verify-anchor']")
    assert block.get("data-ok") == "1" and block.xpath(".//*[@data-test='anchor-file']")[0].text == "anchor.json"
    anchored = {table: fields["position"] for table, fields in json.loads(anchor)["tables"].items()}
    shown = {
        tr.get("data-table"): int(tr.xpath(".//*[@data-test='anchored-position']")[0].text)
        for tr in block.xpath(".//tr[@data-test='anchor-table']")
    }
    assert shown == anchored
    assert positions(office) == before


def test_a_forged_anchor_shows_an_invalid_signature_and_a_bad_file_is_said_in_place(office: OfficeLedger) -> None:
    document = json.loads((office.folder / "anchor.json").read_text(encoding="utf-8"))
    signature = document["signature"]
    document["signature"] = ("0" if signature[0] != "0" else "1") + signature[1:]
    client, csrf = logged_in(office, "auditor")
    forged = client.post(
        "/audit/verify", data={"csrf_token": csrf}, files={"anchor": ("forged.json", json.dumps(document).encode())}
    )
    (block,) = html.fromstring(forged.text).xpath("//*[@data-test='verify-anchor']")
    assert block.get("data-ok") == "0" and "签名无效" in block.text_content()
    bad = client.post("/audit/verify", data={"csrf_token": csrf}, files={"anchor": ("notes.json", b"{not json")})
    assert bad.status_code == 400 and "AnchorUnreadable" in bad.text and "notes.json" in bad.text
    none = client.post("/audit/verify", data={"csrf_token": csrf})
    assert none.status_code == 400 and "请选择锚点文件" in none.text


def test_the_verify_post_needs_its_csrf_token_and_an_audit_role(office: OfficeLedger) -> None:
    anchor = (office.folder / "anchor.json").read_bytes()
    auditor, _ = logged_in(office, "auditor")
    clerk, clerk_csrf = logged_in(office, "clerk")
    before = len(access_records(office))
    no_token = auditor.post("/audit/verify", files={"anchor": ("anchor.json", anchor)})
    assert no_token.status_code == 403
    by_clerk = clerk.post("/audit/verify", data={"csrf_token": clerk_csrf}, files={"anchor": ("anchor.json", anchor)})
    assert by_clerk.status_code == 403
    recorded = access_records(office)[before:]
    assert [(r["actor"], r["rule"], r["path"], r["method"]) for r in recorded] == [
        ("auditor", "CsrfTokenRefused", "/audit/verify", "POST"),
        ("clerk", "OnlyAuditorsAudit", "/audit/verify", "POST"),
    ]


def test_nothing_on_the_audit_pages_changes_the_ledger(office: OfficeLedger) -> None:
    client, csrf = logged_in(office, "auditor")  # the login itself is recorded: before the count starts
    before = positions(office)
    for url in (*AUDIT_PAGES, "/audit/person", "/audit/log?only=access", "/audit/log?actor=clerk"):
        assert client.get(url).status_code == 200
    anchor = (office.folder / "anchor.json").read_bytes()
    client.post("/audit/verify", data={"csrf_token": csrf}, files={"anchor": ("anchor.json", anchor)})
    assert positions(office) == before
    forms = html.fromstring(client.get("/audit/verify").text).xpath("//main//form[@method='post']")
    assert [f.get("action") for f in forms] == ["/audit/verify"]  # the only form that posts: a read
    for url in AUDIT_PAGES:
        posting = html.fromstring(client.get(url).text).xpath("//main//form[@method='post']/@action")
        assert set(posting) <= {"/audit/verify"}


# --- access recorded in the ledger ------------------------------------------------------------------------


def test_logins_logouts_failures_and_refusals_are_recorded_sealed_and_shown(office: OfficeLedger) -> None:
    client = client_for(office)
    wrong = client.post("/login", data={"username": "clerk", "password": "not-the-password"})
    assert wrong.status_code == 401
    csrf = log_in(client, office, "clerk")
    batch = json.loads(yikatong(office.url, "batch", "list", "--json").stdout)[0]["id"]
    forged = client.post(f"/batches/{batch}/approve", data={"csrf_token": csrf})
    assert forged.status_code == 403
    assert client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    recorded = access_records(office)
    assert [(r["kind"], r["actor"], r["name_tried"], r["channel"]) for r in recorded] == [
        ("login_failed", "", "clerk", "web"),
        ("login", "clerk", "", "web"),
        ("refused", "clerk", "", "web"),
        ("logout", "clerk", "", "web"),
    ]
    assert recorded[0]["rule"] == "WrongNameOrPassword" and "not-the-password" not in json.dumps(recorded)
    assert (recorded[2]["path"], recorded[2]["rule"], recorded[2]["action"]) == (
        f"/batches/{batch}/approve", "OnlyCheckersApprove", "batch approve",
    )  # fmt: skip
    verified = cli_json(office, "audit", "verify")
    (registry,) = [log for log in verified["logs"] if log["table"] == "registry_events"]
    assert verified["ok"] and registry["sealed_position"] >= recorded[-1]["position"]  # sealed, not pending
    auditor, _ = logged_in(office, "auditor")
    doc = html.fromstring(auditor.get("/audit/log?only=access").text)
    rows = [(tr.get("data-kind"), tr.get("data-actor")) for tr in doc.xpath("//tr[@data-test='audit-log-row']")]
    assert rows == [("login", "auditor"), ("logout", "clerk"), ("refused", "clerk"), ("login", "clerk"),
                    ("login_failed", "clerk")]  # fmt: skip
    assert f"/batches/{batch}/approve" in doc.text_content() and "OnlyCheckersApprove" in doc.text_content()


def test_the_actions_log_shows_who_did_what_from_the_log_itself(office: OfficeLedger) -> None:
    client, _ = logged_in(office, "admin")
    doc = html.fromstring(client.get("/audit/log").text)
    rows = [
        (tr.get("data-actor"), tr.xpath(".//*[@data-test='log-what']")[0].text)
        for tr in doc.xpath("//tr[@data-test='audit-log-row']")
    ]
    for done in (("clerk", "记录决定"), ("clerk", "月结"), ("clerk", "登记人员（名册导入）"), ("admin", "加载政策"),
                 ("admin", "新增账户"), ("admin", "创建台账"), ("admin", "登录")):  # fmt: skip
        assert done in rows
    imports = doc.xpath("//tr[@data-test='audit-log-row'][.//*[@data-test='log-what'][text()='登记人员（名册导入）']]")
    assert imports[0].xpath("./td[@class='num']")[0].text == "2"  # one row for the roster's two persons
    assert WANG_ID not in doc.text_content()  # the admin reads it masked


def test_the_actions_log_pages_through_the_whole_log(office: OfficeLedger) -> None:
    service = open_service(database_from_url(office.url), read_only=True)
    try:
        whole = service.operations(limit=500)
        assert whole.next_before is None
        paged, before = [], None
        for _ in range(100):
            found = service.operations(before=before, limit=3)
            paged.extend(found.rows)
            if found.next_before is None:
                break
            before = found.next_before
        assert [(o.log, o.first_position, o.count) for o in paged] == [
            (o.log, o.first_position, o.count) for o in whole.rows
        ]
        assert len(whole.rows) > 6
    finally:
        service.registry.close()
        service.disbursement.close()


def test_the_command_lines_login_and_logout_are_recorded_too(office: OfficeLedger, tmp_path: Path) -> None:
    env = {"YIKATONG_SESSION_FILE": str(tmp_path / "session")}
    password = office.folder / "auditor.password"
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n", encoding="utf-8")
    os.chmod(wrong, 0o600)
    assert yikatong(office.url, "login", "auditor", "--password-file", str(wrong), as_=None, env=env).returncode == 1
    assert yikatong(office.url, "login", "auditor", "--password-file", str(password), as_=None, env=env).returncode == 0
    assert yikatong(office.url, "logout", as_=None, env=env).returncode == 0
    recorded = access_records(office)
    assert [(r["kind"], r["actor"] or r["name_tried"], r["channel"], r["action"]) for r in recorded] == [
        ("login_failed", "auditor", "cli", "login"),
        ("login", "auditor", "cli", "login"),
        ("logout", "auditor", "cli", "logout"),
    ]
    assert yikatong(office.url, "audit", "verify", as_="auditor").returncode == 0


def test_failed_logins_recorded_are_bounded_per_minute_and_still_refused(office: OfficeLedger) -> None:
    client = client_for(office)
    client.app.state.web.failed_logins = FailedLoginBudget(per_minute=2)  # type: ignore[attr-defined]
    for name in ("a-name", "another", "a-third"):
        assert client.post("/login", data={"username": name, "password": "not-the-password"}).status_code == 401
    assert [r["name_tried"] for r in access_records(office)] == ["a-name", "another"]


def test_the_actions_log_page_equals_audit_log_json_and_the_clerk_may_run_neither(office: OfficeLedger) -> None:
    client, _ = logged_in(office, "auditor")
    doc = html.fromstring(client.get("/audit/log").text)
    expected = cli_json(office, "audit", "log")["rows"]
    shown = [
        (tr.get("data-actor"), tr.xpath("./td/code")[0].text.split()[-1].split("–")[0])
        for tr in doc.xpath("//tr[@data-test='audit-log-row']")
    ]
    assert shown == [(r["actor"] or r["fields"].get("name_tried", ""), str(r["first_position"])) for r in expected]
    refused = yikatong(office.url, "audit", "log", as_="clerk")
    assert refused.returncode == 1 and "OnlyAuditorsAudit" in refused.stderr
