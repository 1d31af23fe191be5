"""名册导入 and 回盘 over HTTP (TestClient, SQLite): preview then apply all or nothing, the same file twice
changes nothing, bad files shown line by line with the rule in Chinese and the CLI's rule name, and every
POST refused without its CSRF token or for a role that may not import (issue 15)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from exporters.rows import REASONS_ZH
from ledger.web.messages import ZH_CN
from tests.helpers.ledgers import LI, yikatong
from tests.helpers.uploads import (
    BAD_ROWS,
    ZHAO,
    ZHAO_ID,
    batches,
    enrolled,
    february_urban_batch,
    roster_csv,
    roster_xlsx,
    submitted_with_reply,
)
from tests.helpers.web import OfficeLedger, build_office_ledger, client_for, copy_office_ledger, log_in

_SHA = re.compile(r'name="sha256" value="([0-9a-f]{64})"')


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> OfficeLedger:
    return build_office_ledger(tmp_path_factory.mktemp("uploads-office"))


@pytest.fixture
def office(built: OfficeLedger, tmp_path: Path) -> OfficeLedger:
    return copy_office_ledger(built, tmp_path / "office")


@pytest.fixture
def client(office: OfficeLedger) -> TestClient:
    return client_for(office)


def upload(client: TestClient, url: str, path: Path, csrf: str | None, **fields: str) -> Response:
    data = fields | ({"csrf_token": csrf} if csrf is not None else {})
    return client.post(url, data=data, files={"file": (path.name, path.read_bytes())})


def sha_of(html: str) -> str:
    found = _SHA.search(html)
    assert found is not None, "no staged file on the page"
    return found.group(1)


# --- 名册导入 ---------------------------------------------------------------------------------------------


def test_the_clerk_previews_a_roster_then_imports_it_and_the_same_file_again_changes_nothing(
    client: TestClient, office: OfficeLedger, tmp_path: Path
) -> None:
    csrf = log_in(client, office, "clerk")
    form = client.get("/roster")
    assert form.status_code == 200 and 'data-test="roster-upload-form"' in form.text
    assert 'enctype="multipart/form-data"' in form.text
    path = roster_csv(tmp_path, "zhao.csv", ZHAO)
    preview = upload(client, "/roster/preview", path, csrf)
    assert preview.status_code == 200, preview.text
    assert 'data-test="roster-rows">1<' in preview.text and 'data-test="roster-enrolled">1<' in preview.text
    assert 'data-test="roster-persons">2<' in preview.text
    # 2 members × 城镇低保 555.00 a month (Ulanqab 2017) − 100.00 income = 1,010.00, at January 2017's standard.
    assert "每月应发（按2017年1月标准）" in preview.text and "1,010.00 元" in preview.text
    assert not enrolled(office, ZHAO_ID)  # a preview records nothing
    dry = yikatong(office.url, "roster", "import", str(path), "--dry-run", "--json")  # the same use case
    assert dry.returncode == 0, dry.stderr
    assert {k: v for k, v in json.loads(dry.stdout).items() if k in ("enrolled", "persons", "dry_run")} == {
        "enrolled": 1,
        "persons": 2,
        "dry_run": True,
    }
    assert not enrolled(office, ZHAO_ID)
    imported = client.post("/roster/import", data={"csrf_token": csrf, "sha256": sha_of(preview.text)})
    assert imported.status_code == 200, imported.text
    assert "已导入 zhao.csv：新增 1 条（1 户，2 人）" in imported.text
    assert enrolled(office, ZHAO_ID)
    history = yikatong(office.url, "audit", "history", ZHAO_ID, "--json", as_="auditor")
    assert history.returncode == 0 and '"actor": "clerk"' in history.stdout.replace('":"', '": "')
    again = upload(client, "/roster/preview", path, csrf)
    assert 'data-test="roster-changes-nothing"' in again.text and "无变化" in again.text
    second = client.post("/roster/import", data={"csrf_token": csrf, "sha256": sha_of(again.text)})
    assert second.status_code == 200 and "已导入，无变化" in second.text


def test_the_preview_counts_rows_the_ledger_holds_and_prices_every_row_a_month(
    client: TestClient, office: OfficeLedger
) -> None:
    """李建华 is enrolled already with the same terms (unchanged), 赵淑芬 is new; 应发 a month prices both:
    2 × 555.00 − 300.00 = 810.00 and 2 × 555.00 − 100.00 = 1,010.00."""
    csrf = log_in(client, office, "clerk")
    path = roster_csv(office.folder, "both.csv", LI, ZHAO)
    page = upload(client, "/roster/preview", path, csrf).text
    assert 'data-test="roster-enrolled">1<' in page and 'data-test="roster-unchanged">1<' in page
    assert re.findall(r'data-test="roster-due">([^<]+)<', page) == ["1,820.00 元"]
    assert 'data-test="roster-changes-nothing"' not in page
    imported = client.post("/roster/import", data={"csrf_token": csrf, "sha256": sha_of(page)})
    assert "新增 1 条（2 户，4 人）；1 条已在台账中，未变" in imported.text


def test_an_xlsx_roster_imports_like_its_csv(client: TestClient, office: OfficeLedger, tmp_path: Path) -> None:
    csrf = log_in(client, office, "clerk")
    path = roster_xlsx(tmp_path, "zhao.xlsx", ZHAO)
    preview = upload(client, "/roster/preview", path, csrf)
    assert preview.status_code == 200, preview.text
    assert "1,010.00 元" in preview.text
    imported = client.post("/roster/import", data={"csrf_token": csrf, "sha256": sha_of(preview.text)})
    assert "新增 1 条（1 户，2 人）" in imported.text and enrolled(office, ZHAO_ID)
    csv_again = upload(client, "/roster/preview", roster_csv(tmp_path, "zhao.csv", ZHAO), csrf)
    assert "无变化" in csv_again.text  # the workbook recorded exactly what the CSV says


@pytest.mark.parametrize("make", [roster_csv, roster_xlsx], ids=["csv", "xlsx"])
def test_a_bad_roster_is_shown_line_by_line_with_the_rule_and_nothing_is_imported(
    client: TestClient, office: OfficeLedger, tmp_path: Path, make: object
) -> None:
    csrf = log_in(client, office, "clerk")
    suffix = "csv" if make is roster_csv else "xlsx"
    path = make(tmp_path, f"bad.{suffix}", *BAD_ROWS)  # type: ignore[operator]
    refused = upload(client, "/roster/preview", path, csrf)
    assert refused.status_code == 422
    assert "名册有 2 行不合格，未导入任何内容" in refused.text
    lines = re.findall(r'data-test="roster-problem" data-line="(\d+)"', refused.text)
    assert lines == ["3", "4"]  # the header is line 1, in a workbook as in a CSV
    assert "家庭人口数无效（members）" in refused.text and "身份证号无效（id_number）" in refused.text
    assert f"bad.{suffix} line 3: members 0: not a positive integer" in refused.text  # the CLI's own line
    assert 'data-test="roster-import-form"' not in refused.text
    assert not enrolled(office, ZHAO_ID)  # the good row on line 2 is not imported either
    cli = yikatong(office.url, "roster", "import", str(path))
    assert cli.returncode == 1 and f"bad.{suffix} line 3: members 0: not a positive integer" in cli.stderr


def test_a_row_the_ledger_refuses_names_the_domain_rule(client: TestClient, office: OfficeLedger) -> None:
    """李建华 is held in the ledger under another account: RowDiffersFromLedger, as the CLI names it."""
    csrf = log_in(client, office, "clerk")
    li = "152601198001011239,李建华,150902,urban_dibao,2017-01-01,2,300.00,0,103191000012,6228480045001122345,集民发〔2017〕2号\n"  # noqa: E501
    refused = upload(client, "/roster/preview", roster_csv(office.folder, "li.csv", li), csrf)
    assert refused.status_code == 422
    assert "与台账记录不一致，须用相应的决定或账户变更办理（RowDiffersFromLedger）" in refused.text
    assert re.findall(r'data-test="roster-problem" data-line="(\d+)"', refused.text) == ["2"]


def test_a_file_that_is_no_roster_is_refused_in_place(client: TestClient, office: OfficeLedger, tmp_path: Path) -> None:
    csrf = log_in(client, office, "clerk")
    junk = tmp_path / "photo.xlsx"
    junk.write_bytes(b"PK\x03\x04 not really a workbook")
    refused = upload(client, "/roster/preview", junk, csrf)
    assert refused.status_code == 422 and "名册文件有误，未导入任何内容" in refused.text
    assert "not a readable xlsx workbook" in refused.text
    empty = client.post("/roster/preview", data={"csrf_token": csrf})
    assert empty.status_code == 400 and "请选择要上传的文件" in empty.text


@pytest.mark.parametrize("sha", ["0" * 64, "../../etc/passwd", ""])
def test_an_import_names_only_a_staged_file_by_its_hash(client: TestClient, office: OfficeLedger, sha: str) -> None:
    csrf = log_in(client, office, "clerk")
    refused = client.post("/roster/import", data={"csrf_token": csrf, "sha256": sha})
    assert refused.status_code == 400 and "请重新上传" in refused.text
    refused_bank = client.post("/bank/import", data={"csrf_token": csrf, "sha256": sha})
    assert refused_bank.status_code == 400 and "请重新上传" in refused_bank.text


def test_a_staged_file_changed_on_the_server_is_not_imported(
    client: TestClient, office: OfficeLedger, tmp_path: Path
) -> None:
    from ledger.web.uploads import _staged

    csrf = log_in(client, office, "clerk")
    preview = upload(client, "/roster/preview", roster_csv(tmp_path, "zhao.csv", ZHAO), csrf)
    sha = sha_of(preview.text)
    staged = _staged(client.app.state.web, sha)  # type: ignore[attr-defined]
    staged.path.write_bytes(staged.path.read_bytes() + b"\n")
    refused = client.post("/roster/import", data={"csrf_token": csrf, "sha256": sha})
    assert refused.status_code == 400 and not enrolled(office, ZHAO_ID)


# --- CSRF and roles on every POST --------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["checker", "auditor", "admin"])
def test_only_the_clerk_sees_the_upload_pages(client: TestClient, office: OfficeLedger, who: str) -> None:
    log_in(client, office, who)
    for url in ("/roster", "/bank"):
        refused = client.get(url)
        assert refused.status_code == 403 and "操作被拒绝" in refused.text
        assert "OnlyClerksRecord" in refused.text or "AuditorIsReadOnly" in refused.text
    assert 'href="/roster"' not in client.get("/batches").text


@pytest.mark.parametrize("who", ["checker", "auditor"])
def test_a_role_that_may_not_import_is_refused_403_and_nothing_changes(
    client: TestClient, office: OfficeLedger, tmp_path: Path, who: str
) -> None:
    path = roster_csv(tmp_path, "zhao.csv", ZHAO)
    clerk_csrf = log_in(client, office, "clerk")
    sha = sha_of(upload(client, "/roster/preview", path, clerk_csrf).text)
    csrf = log_in(client, office, who)
    assert upload(client, "/roster/preview", path, csrf).status_code == 403
    assert client.post("/roster/import", data={"csrf_token": csrf, "sha256": sha}).status_code == 403
    assert not enrolled(office, ZHAO_ID)
    reply_path = tmp_path / "reply.xml"
    reply_path.write_bytes(b"<Document/>")
    assert upload(client, "/bank/preview", reply_path, csrf, kind="pain002").status_code == 403
    assert client.post("/bank/import", data={"csrf_token": csrf, "sha256": "0" * 64}).status_code == 403


@pytest.mark.parametrize("csrf", ["missing", "wrong"])
def test_every_upload_post_without_its_csrf_token_is_refused_403(
    client: TestClient, office: OfficeLedger, tmp_path: Path, csrf: str
) -> None:
    path = roster_csv(tmp_path, "zhao.csv", ZHAO)
    good = log_in(client, office, "clerk")
    sha = sha_of(upload(client, "/roster/preview", path, good).text)
    token = None if csrf == "missing" else "0" * 64
    assert upload(client, "/roster/preview", path, token).status_code == 403
    refused = client.post("/roster/import", data={"sha256": sha} | ({"csrf_token": token} if token else {}))
    assert refused.status_code == 403 and "CSRF" in refused.text
    assert not enrolled(office, ZHAO_ID)
    assert upload(client, "/bank/preview", path, token).status_code == 403
    assert (
        client.post("/bank/import", data={"sha256": sha} | ({"csrf_token": token} if token else {})).status_code == 403
    )


# --- 回盘 -------------------------------------------------------------------------------------------------


def test_the_clerk_previews_a_pain002_then_applies_it_and_the_same_file_again_changes_nothing(
    client: TestClient, office: OfficeLedger, tmp_path: Path
) -> None:
    batch = february_urban_batch(office, tmp_path)
    reply = submitted_with_reply(office, tmp_path, batch)
    csrf = log_in(client, office, "clerk")
    form = client.get("/bank")
    assert form.status_code == 200 and 'value="pain002"' in form.text and 'value="generic"' in form.text
    preview = upload(client, "/bank/preview", reply.path, csrf, kind="pain002")
    assert preview.status_code == 200, preview.text
    (paid_fen,) = reply.paid.values()
    (returned_fen,) = reply.returned.values()
    assert f'data-test="bank-paid">1 笔，{paid_fen // 100:,}.{paid_fen % 100:02d} 元<' in preview.text
    assert f'data-test="bank-returned">1 笔，{returned_fen // 100:,}.{returned_fen % 100:02d} 元<' in preview.text
    assert "AC04 账户已销户" in preview.text and "李建华" in preview.text and "赵淑芬" in preview.text
    dry = json.loads(yikatong(office.url, "bank", "import", str(reply.path), "--dry-run", "--json").stdout)
    assert (dry["paid"], dry["returned"], dry["batches"], dry["already_imported"]) == (1, 1, [batch], False)
    assert [b["status"] for b in batches(office) if b["id"] == batch] == ["submitted"]  # nothing recorded yet
    applied = client.post("/bank/import", data={"csrf_token": csrf, "sha256": sha_of(preview.text), "kind": "pain002"})
    assert applied.status_code == 200, applied.text
    assert f"已入账 {reply.path.name}：实发 1 笔，退回 1 笔，更新 1 个批次" in applied.text
    (row,) = [b for b in batches(office) if b["id"] == batch]
    assert (row["status"], row["paid"], row["returned"]) == ("settled", 1, 1)
    page = client.get(f"/batches/{batch}").text
    assert "已回盘" in page and "退回" in page
    again = upload(client, "/bank/preview", reply.path, csrf, kind="pain002")
    assert (
        again.status_code == 200 and "已导入，无变化" in again.text and 'data-test="bank-import-form"' not in again.text
    )
    cli = yikatong(office.url, "bank", "import", str(reply.path), "--json")
    assert cli.returncode == 0 and '"already_imported": true' in cli.stdout


def test_a_bank_file_the_ledger_cannot_match_is_refused_in_place_and_nothing_applies(
    client: TestClient, office: OfficeLedger, tmp_path: Path
) -> None:
    """A reply for a batch not yet approved: ResultForUnapprovedBatch, the whole file refused."""
    batch = february_urban_batch(office, tmp_path)
    reply = submitted_with_reply(office, tmp_path, batch)
    (january,) = [b for b in batches(office) if b["run_month"] == "2017-01" and b["programme"] == "rural_dibao"]
    from exporters.pain002 import render_pain002
    from ledger.bootstrap import database_from_url, open_service

    service = open_service(database_from_url(office.url), read_only=True)
    try:
        _, views = service.batch_payments(january["id"])
    finally:
        service.registry.close()
        service.disbursement.close()
    message = f"YKT{january['id'][:28]}"
    from datetime import UTC, datetime

    unapproved = tmp_path / "unapproved.xml"
    unapproved.write_bytes(
        render_pain002(
            message,
            message,
            [(views[0].payment_id, "ACSC", "", views[0].net_fen)],
            created_at=datetime(2017, 1, 9, tzinfo=UTC),
        )
    )
    csrf = log_in(client, office, "clerk")
    refused = upload(client, "/bank/preview", unapproved, csrf, kind="pain002")
    assert refused.status_code == 422 and "回盘文件有误，整份未入账" in refused.text
    assert "ResultForUnapprovedBatch" in refused.text and 'data-test="bank-import-form"' not in refused.text
    broken = tmp_path / "broken.xml"
    broken.write_bytes(reply.path.read_bytes()[:200])
    assert upload(client, "/bank/preview", broken, csrf, kind="pain002").status_code == 422
    unknown = tmp_path / "return.txt"
    unknown.write_text("H|nothing|\n", encoding="utf-8")
    assert upload(client, "/bank/preview", unknown, csrf, kind="generic").status_code == 422
    assert upload(client, "/bank/preview", unknown, csrf, kind="no-such-bank").status_code == 422
    assert {b["status"] for b in batches(office) if b["id"] in (batch, january["id"])} == {"submitted", "drafted"}


def test_the_catalogue_words_every_reason_code_the_exporters_know() -> None:
    assert {code: ZH_CN[f"bank.reason.{code}"] for code in REASONS_ZH} == REASONS_ZH


def test_a_profiles_return_file_is_previewed_and_applied_like_a_pain002(
    client: TestClient, office: OfficeLedger, tmp_path: Path
) -> None:
    """The generic profile's 回盘文件 for the same batch (as its bank would send it): 赵淑芬 returned AC04."""
    from exporters.onecard import load_profile, render_return_file
    from ledger.bootstrap import database_from_url, open_service
    from ledger.exports import batch_header, payment_rows

    batch = february_urban_batch(office, tmp_path)
    reply = submitted_with_reply(office, tmp_path, batch)
    service = open_service(database_from_url(office.url), read_only=True)
    try:
        found = service.batch(batch)
        views = service.disbursement.payment_views(found.payment_ids)
        header = batch_header(service.policy(), found)
        rows = payment_rows(header, found, views)
    finally:
        service.registry.close()
        service.disbursement.close()
    zhao = next(v.payment_id for v in views.values() if v.name == "赵淑芬")
    path = tmp_path / "return.txt"
    path.write_bytes(render_return_file(header, rows, {zhao: ("returned", "AC04")}, load_profile("generic")))
    csrf = log_in(client, office, "clerk")
    preview = upload(client, "/bank/preview", path, csrf, kind="generic")
    assert preview.status_code == 200, preview.text
    assert 'data-test="bank-format">onecard:generic<' in preview.text and "AC04 账户已销户" in preview.text
    (returned_fen,) = reply.returned.values()
    assert f'data-test="bank-returned">1 笔，{returned_fen // 100:,}.{returned_fen % 100:02d} 元<' in preview.text
    applied = client.post("/bank/import", data={"csrf_token": csrf, "sha256": sha_of(preview.text), "kind": "generic"})
    assert "实发 1 笔，退回 1 笔" in applied.text
    (row,) = [b for b in batches(office) if b["id"] == batch]
    assert (row["status"], row["paid"], row["returned"]) == ("settled", 1, 1)
