"""The web application over HTTP (TestClient), on SQLite: logins, CSRF, roles, maker-checker, downloads
equal to the CLI's files, and figures equal to `yikatong report … --json` (issue 15, first slice)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ledger.web.auth import LoginThrottle
from tests.helpers.ledgers import yikatong
from tests.helpers.web import (
    OfficeLedger,
    build_office_ledger,
    client_for,
    copy_office_ledger,
    csrf_of,
    log_in,
)

WANG_ID, LI_ID = "152621197505052342", "152601198001011239"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> OfficeLedger:
    return build_office_ledger(tmp_path_factory.mktemp("web-office"))


@pytest.fixture
def office(built: OfficeLedger, tmp_path: Path) -> OfficeLedger:
    return copy_office_ledger(built, tmp_path / "office")


@pytest.fixture
def client(office: OfficeLedger) -> TestClient:
    return client_for(office)


def batch_ids(office: OfficeLedger) -> dict[str, str]:
    rows = json.loads(yikatong(office.url, "batch", "list", "--json").stdout)
    return {r["programme"]: r["id"] for r in rows}


def export(client: TestClient, batch: str, csrf: str, fmt: str = "pain001") -> bytes:
    done = client.post(f"/batches/{batch}/export", data={"csrf_token": csrf, "format": fmt})
    assert done.status_code == 200, done.text
    assert done.headers["content-disposition"].startswith("attachment;")
    return done.content


# --- login, logout, sessions ------------------------------------------------------------------------------


def test_pages_need_a_login_and_the_api_answers_401(client: TestClient) -> None:
    page = client.get("/batches?month=2017-01", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/batches%3Fmonth%3D2017-01"
    assert client.get("/api/balances").status_code == 401
    login = client.get("/login")
    assert login.status_code == 200 and 'name="username"' in login.text and 'name="password"' in login.text
    assert "csrf_token" not in login.text  # DESIGN.md: no CSRF on the login form


def test_login_sets_a_strict_httponly_cookie_and_logout_ends_the_session(office: OfficeLedger) -> None:
    client = client_for(office)
    done = client.post("/login", data={"username": "clerk", "password": office.passwords["clerk"], "next": "/batches"},
                       follow_redirects=False)  # fmt: skip
    assert done.status_code == 303 and done.headers["location"] == "/batches"
    cookie = done.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=28800" in cookie
    assert "Secure" not in cookie  # plain http in this test; over https it is Secure (below)
    page = client.get("/batches")
    assert page.status_code == 200 and "当前账户：clerk（经办人）" in page.text
    token = client.cookies.get("yikatong_session")
    assert client.post("/logout", data={}).status_code == 403  # logout is a form like the others: CSRF
    out = client.post("/logout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    # The cookie copied before logout is refused by this server afterwards.
    assert client.get("/api/batches").status_code == 401
    assert TestClient(client.app, cookies={"yikatong_session": token}).get("/api/batches").status_code == 401


def test_over_https_the_cookie_is_secure(office: OfficeLedger) -> None:
    client = client_for(office, https=True)
    done = client.post("/login", data={"username": "clerk", "password": office.passwords["clerk"]},
                       follow_redirects=False)  # fmt: skip
    assert "Secure" in done.headers["set-cookie"]


def test_a_wrong_password_and_an_unknown_name_read_the_same(client: TestClient, office: OfficeLedger) -> None:
    wrong = client.post("/login", data={"username": "clerk", "password": "not-the-password"})
    unknown = client.post("/login", data={"username": "nobody", "password": "not-the-password"})
    assert wrong.status_code == unknown.status_code == 401
    assert "用户名或密码错误" in wrong.text and "用户名或密码错误" in unknown.text
    assert wrong.text.replace('value="clerk"', "") == unknown.text.replace('value="nobody"', "")
    assert "yikatong_session" not in client.cookies


def test_after_five_failures_the_account_waits_even_with_the_right_password(office: OfficeLedger) -> None:
    now = [1000.0]
    client = client_for(office, throttle=LoginThrottle(clock=lambda: now[0]))
    for _ in range(5):
        assert client.post("/login", data={"username": "clerk", "password": "wrong-password!"}).status_code == 401
    right = {"username": "CLERK ", "password": office.passwords["clerk"]}  # the same name, spelled otherwise
    waiting = client.post("/login", data=right, follow_redirects=False)
    assert waiting.status_code == 429 and "登录失败次数过多，请 5 分钟后再试" in waiting.text
    other = client.post("/login", data={"username": "checker", "password": office.passwords["checker"]},
                        follow_redirects=False)  # fmt: skip
    assert other.status_code == 303  # another account does not wait
    now[0] += 301
    assert client.post("/login", data=right, follow_redirects=False).status_code == 303


def test_a_session_ends_at_its_expiry_and_an_altered_cookie_is_refused(office: OfficeLedger) -> None:
    now = [time.time()]
    client = client_for(office, clock=lambda: now[0])
    log_in(client, office, "auditor")
    assert client.get("/api/batches").status_code == 200
    token = client.cookies.get("yikatong_session")
    body, mac = token.split(".")
    forged = TestClient(client.app, cookies={"yikatong_session": body + "." + mac[::-1]})
    assert forged.get("/api/batches").status_code == 401
    now[0] += 8 * 3600 + 120  # the token was issued (on the real clock) a moment after now[0]
    assert client.get("/api/batches").status_code == 401
    assert client.get("/batches", follow_redirects=False).headers["location"] == "/login?next=/batches"


def test_a_session_ends_when_its_account_changes(client: TestClient, office: OfficeLedger) -> None:
    log_in(client, office, "clerk")
    assert client.get("/api/batches").status_code == 200
    changed = yikatong(office.url, "user", "disable", "clerk", as_="admin")
    assert changed.returncode == 0, changed.stderr
    assert client.get("/api/batches").status_code == 401


# --- CSRF and roles: every POST --------------------------------------------------------------------------

POSTS = ("/batches/{id}/export", "/batches/{id}/approve", "/batches/{id}/submit", "/logout")


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize("csrf", ["missing", "wrong"])
def test_every_post_without_its_csrf_token_is_refused_403(
    client: TestClient, office: OfficeLedger, path: str, csrf: str
) -> None:
    log_in(client, office, "clerk")
    batch = batch_ids(office)["urban_dibao"]
    data = {"format": "pain001"} | ({"csrf_token": "0" * 64} if csrf == "wrong" else {})
    refused = client.post(path.format(id=batch), data=data, follow_redirects=False)
    assert refused.status_code == 403
    assert "CSRF" in refused.text
    assert [r["exported_by"] for r in json.loads(yikatong(office.url, "batch", "list", "--json").stdout)] == [[], []]


@pytest.mark.parametrize(
    ("who", "path"),
    [
        ("clerk", "/batches/{id}/approve"),
        ("checker", "/batches/{id}/submit"),
        ("auditor", "/batches/{id}/export"),
        ("auditor", "/batches/{id}/approve"),
        ("auditor", "/batches/{id}/submit"),
        ("checker", "/batches/{id}/export"),
        ("admin", "/batches/{id}/export"),
        ("admin", "/batches/{id}/approve"),
    ],
)
def test_a_role_that_may_not_act_is_refused_403_whatever_the_page_showed(
    client: TestClient, office: OfficeLedger, who: str, path: str
) -> None:
    batch = batch_ids(office)["urban_dibao"]
    clerk_csrf = log_in(client, office, "clerk")
    export(client, batch, clerk_csrf)  # exported, so approval would otherwise be possible
    csrf = log_in(client, office, who)
    refused = client.post(path.format(id=batch), data={"csrf_token": csrf, "format": "xlsx"}, follow_redirects=False)
    assert refused.status_code == 403, refused.text
    assert "操作被拒绝" in refused.text
    (row,) = [r for r in json.loads(yikatong(office.url, "batch", "list", "--json").stdout) if r["id"] == batch]
    assert (row["status"], row["exported_by"], row["approved_by"]) == ("exported", ["clerk"], "")


def test_pages_show_only_the_actions_the_role_may_take(client: TestClient, office: OfficeLedger) -> None:
    batch = batch_ids(office)["urban_dibao"]
    clerk_csrf = log_in(client, office, "clerk")
    clerk_page = client.get(f"/batches/{batch}").text
    assert 'data-test="export-form"' in clerk_page and 'data-test="approve-form"' not in clerk_page
    export(client, batch, clerk_csrf)
    assert 'data-test="approve-form"' not in client.get(f"/batches/{batch}").text  # the exporter: no 批准
    log_in(client, office, "checker")
    checker_page = client.get(f"/batches/{batch}").text
    assert 'data-test="approve-form"' in checker_page and 'data-test="export-form"' not in checker_page
    log_in(client, office, "auditor")
    auditor_page = client.get(f"/batches/{batch}").text
    assert '<form method="post" action="/batches' not in auditor_page


# --- the month-end's batches: export, 批准, 提交银行 ---------------------------------------------------------


def test_the_download_is_the_file_the_cli_exports(client: TestClient, office: OfficeLedger, tmp_path: Path) -> None:
    batches = batch_ids(office)
    csrf = log_in(client, office, "clerk")
    for programme, batch in batches.items():
        for fmt in ("pain001", "xlsx", "notice", "onecard"):
            downloaded = export(client, batch, csrf, fmt)
            out = tmp_path / f"cli-{programme}-{fmt}"
            done = yikatong(office.url, "batch", "export", batch, "--format", fmt, "--out", str(out), "--json")
            assert done.returncode == 0, done.stderr
            (file,) = json.loads(done.stdout)["files"]
            assert Path(file["path"]).read_bytes() == downloaded
    rows = json.loads(yikatong(office.url, "batch", "list", "--json").stdout)
    assert [(r["status"], r["exported_by"]) for r in rows] == [("exported", ["clerk"])] * 2


def test_the_exporter_cannot_approve_and_a_checker_can(client: TestClient, office: OfficeLedger) -> None:
    batch = batch_ids(office)["urban_dibao"]
    csrf = log_in(client, office, "clerk")
    unexported = log_in(client, office, "checker")
    not_yet = client.post(f"/batches/{batch}/approve", data={"csrf_token": unexported})
    assert not_yet.status_code == 409 and "批次尚未导出，不能批准（BatchNotExported）" in not_yet.text
    csrf = log_in(client, office, "clerk")
    export(client, batch, csrf)
    assert client.post(f"/batches/{batch}/approve", data={"csrf_token": csrf}).status_code == 403
    csrf = log_in(client, office, "checker")
    approved = client.post(f"/batches/{batch}/approve", data={"csrf_token": csrf}, follow_redirects=False)
    assert approved.status_code == 303 and approved.headers["location"] == f"/batches/{batch}?done=approved"
    page = client.get(approved.headers["location"]).text
    assert "批次已批准（checker）" in page and 'data-test="batch-state">已批准<' in page
    (row,) = [r for r in json.loads(yikatong(office.url, "batch", "list", "--json").stdout) if r["id"] == batch]
    assert (row["status"], row["approved_by"], row["exported_by"]) == ("approved", "checker", ["clerk"])
    history = yikatong(office.url, "audit", "history", LI_ID, "--json", as_="auditor")
    assert history.returncode == 0, history.stderr
    again = client.post(f"/batches/{batch}/approve", data={"csrf_token": csrf})
    assert again.status_code == 409 and "BatchAlreadyApproved" in again.text
    assert client.post(f"/batches/{batch}/submit", data={"csrf_token": csrf}).status_code == 403  # the clerk's
    csrf = log_in(client, office, "clerk")
    submitted = client.post(f"/batches/{batch}/submit", data={"csrf_token": csrf}, follow_redirects=False)
    assert submitted.status_code == 303
    (row,) = [r for r in json.loads(yikatong(office.url, "batch", "list", "--json").stdout) if r["id"] == batch]
    assert row["status"] == "submitted"
    assert "已提交银行" in client.get(f"/batches/{batch}").text


def test_an_unknown_batch_is_404(client: TestClient, office: OfficeLedger) -> None:
    log_in(client, office, "clerk")
    assert client.get("/batches/ffffffffffff").status_code == 404


# --- figures equal to the CLI's reports ----------------------------------------------------------------


def test_the_api_rows_are_the_clis_json(client: TestClient, office: OfficeLedger) -> None:
    log_in(client, office, "auditor")
    balances = client.get("/api/balances")
    assert balances.status_code == 200
    cli = json.loads(yikatong(office.url, "report", "balances", "--json").stdout)
    assert balances.json()["rows"] == cli["rows"]
    assert client.get("/api/batches").json() == json.loads(yikatong(office.url, "batch", "list", "--json").stdout)
    deadlines = client.get("/api/deadlines", params={"today": "2017-01-03"}).json()
    cli_deadlines = yikatong(office.url, "report", "deadlines", "--today", "2017-01-03", "--json").stdout
    assert deadlines == json.loads(cli_deadlines)
    assert client.get("/api/balances", params={"month": "2017-13"}).status_code == 400
    schema = client.get("/openapi.json").json()
    assert {"/api/balances", "/api/batches", "/api/deadlines"} <= set(schema["paths"])


def test_the_dashboard_figures_equal_report_balances(client: TestClient, office: OfficeLedger) -> None:
    log_in(client, office, "checker")
    home = client.get("/", params={"month": "2017-01", "today": "2017-01-03"})
    assert home.status_code == 200
    rows = json.loads(yikatong(office.url, "report", "balances", "--json").stdout)["rows"]
    names = {"urban_dibao": "城镇低保", "rural_dibao": "农村牧区低保"}
    for r in rows:
        shown = re.search(rf'data-programme="{names[r["programme"]]}">(.*?)</tr>', home.text, re.S)
        assert shown is not None, names[r["programme"]]
        cells = dict(re.findall(r'data-test="balance-(\w+)">([^<]*)<', shown.group(1)))
        assert cells["accrued"] == yuan(r["accrued_fen"]) and cells["outstanding"] == yuan(r["outstanding_fen"])
        assert cells["returned"] == yuan(r["returned_fen"]) and cells["paid"] == yuan(r["paid_fen"])
    assert re.search(r'data-test="strip-drafted-count">2<', home.text)
    total = sum(b["total_fen"] for b in json.loads(yikatong(office.url, "batch", "list", "--json").stdout))
    assert f'data-test="strip-drafted-amount">{yuan(total)}<' in home.text
    assert "2017年1月3日" in home.text and home.text.count('data-test="deadline-row"') == 2


def yuan(fen: int) -> str:
    return f"{fen // 100:,}.{fen % 100:02d} 元"


# --- what pages show -----------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["checker", "admin"])
def test_pages_show_no_programme_keys_and_no_unmasked_ids_to_roles_that_need_not_see_them(
    client: TestClient, office: OfficeLedger, who: str
) -> None:
    log_in(client, office, who)
    pages = [client.get("/", params={"month": "2017-01", "today": "2017-01-03"}).text, client.get("/batches").text]
    pages += [client.get(f"/batches/{b}").text for b in batch_ids(office).values()]
    for text in pages:
        for key in ("urban_dibao", "rural_dibao"):
            assert not re.search(rf">[^<]*{key}", text), key  # not in any text a person reads
        assert WANG_ID not in text and LI_ID not in text and "王桂英" not in text
    assert "王*英" in "".join(pages) and "152621********2342" in "".join(pages)
    assert "城镇低保" in pages[1] and "农村牧区低保" in pages[1]


def test_the_clerk_sees_whole_names_and_ids(client: TestClient, office: OfficeLedger) -> None:
    log_in(client, office, "clerk")
    page = client.get(f"/batches/{batch_ids(office)['rural_dibao']}").text
    assert "王桂英" in page and WANG_ID in page


def test_batches_filter_by_state_and_programme(client: TestClient, office: OfficeLedger) -> None:
    batches = batch_ids(office)
    csrf = log_in(client, office, "clerk")
    export(client, batches["urban_dibao"], csrf)
    exported = client.get("/batches", params={"month": "2017-01", "state": "exported"}).text
    assert exported.count('data-test="batch-row"') == 1 and batches["urban_dibao"] in exported
    rural = client.get("/batches", params={"programme": "rural_dibao"}).text
    assert rural.count('data-test="batch-row"') == 1 and batches["rural_dibao"] in rural
    assert client.get("/batches", params={"state": "nonsense"}).status_code == 400


def test_money_and_dates_are_written_as_offices_write_them() -> None:
    from ledger.web.formats import date_text, yuan

    assert yuan(123456789) == "1,234,567.89 元" and yuan(-5) == "-0.05 元" and yuan(0) == "0.00 元"
    assert date_text("2021-01-10") == "2021年1月10日"
