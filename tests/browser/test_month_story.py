"""One month in the office, in Chromium, across every page (issue 15's "done when" as one story): the clerk
imports a roster (a bad file first), runs February with progress, exports pain.001 and downloads it, cannot
approve (no button, and a forged POST is refused 403); a checker approves; the clerk hands the batch to the
bank, uploads the bank's pain.002 and sees 实发 and 退回; an auditor reads 赵淑芬's history, sees the whole
month in the actions log and cannot change anything; the dashboard says what `report balances` says."""

from __future__ import annotations

import json
import re
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.helpers.ledgers import yikatong
from tests.helpers.uploads import BAD_ROWS, ZHAO, ZHAO_ID, bank_reply, roster_csv, roster_xlsx
from tests.helpers.web import OfficeLedger

RUN_TIMEOUT_MS = 120_000


def log_in(page: Page, server: str, office: OfficeLedger, name: str) -> None:
    page.goto(f"{server}/login")
    page.fill("[data-test=login-username]", name)
    page.fill("[data-test=login-password]", office.passwords[name])
    page.click("[data-test=login-submit]")
    expect(page.locator("[data-test=signed-in]")).to_contain_text(name)


def log_out(page: Page) -> None:
    page.click("[data-test=logout-submit]")
    expect(page.locator("[data-test=login-form]")).to_be_visible()


def csrf(page: Page) -> str:
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    return token


def test_a_month_from_roster_to_bank_result_by_three_accounts(
    page: Page, server: str, office: OfficeLedger, shots: Path, tmp_path: Path
) -> None:
    page.on("dialog", lambda dialog: dialog.accept())  # the confirm dialogs (导入, 批准, 提交银行, 确认入账)

    # 经办: the roster, a bad file first (its lines and rules, nothing imported), then the good one.
    log_in(page, server, office, "clerk")
    page.click("[data-test=nav-roster]")
    page.set_input_files("[data-test=roster-file]", str(roster_xlsx(tmp_path, "bad.xlsx", *BAD_ROWS)))
    page.click("[data-test=roster-preview-submit]")
    expect(page.locator("[data-test=problem-line]")).to_have_text(["3", "4"])
    page.screenshot(path=shots / "1-roster-bad.png", full_page=True)
    page.set_input_files("[data-test=roster-file]", str(roster_csv(tmp_path, "zhao.csv", ZHAO)))
    page.click("[data-test=roster-preview-submit]")
    page.click("[data-test=roster-import-submit]")
    expect(page.locator("[data-test=roster-notice]")).to_contain_text("新增 1 条")
    page.screenshot(path=shots / "2-roster-imported.png", full_page=True)

    # 月结 of February, in the background, followed to its end.
    page.click("[data-test=nav-month-end]")
    page.fill("[data-test=monthend-month]", "2017-02")
    page.click("[data-test=monthend-start]")
    expect(page.locator("[data-test=monthend-job]")).to_have_attribute("data-phase", "done", timeout=RUN_TIMEOUT_MS)
    expect(page.locator("[data-test=monthend-payments]")).to_have_text("2 笔，1,820.00 元")
    page.screenshot(path=shots / "3-month-end-done.png", full_page=True)

    # 批次: February's urban batch, exported as pain.001 and downloaded.
    page.click("[data-test=monthend-batches-link]")
    page.locator("[data-test=batch-row]").filter(has_text="城镇低保").locator("[data-test=batch-link]").click()
    expect(page.locator("[data-test=batch-payments]")).to_have_text("2")
    batch_url = page.url
    batch = batch_url.rsplit("/", 1)[1]
    page.select_option("[data-test=export-format]", "pain001")
    with page.expect_download() as download:
        page.click("[data-test=export-submit]")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert b"<CtrlSum>1820.00</CtrlSum>" in saved.read_bytes()
    page.goto(batch_url)
    expect(page.locator("[data-test=batch-state]")).to_have_text("已导出")
    expect(page.locator("[data-test=approve-submit]")).to_have_count(0)  # the clerk sees no 批准
    forged = page.request.post(f"{server}/batches/{batch}/approve", form={"csrf_token": csrf(page)})
    assert forged.status == 403  # and the server refuses it anyway
    page.goto(batch_url)
    expect(page.locator("[data-test=batch-state]")).to_have_text("已导出")
    page.screenshot(path=shots / "4-batch-exported.png", full_page=True)
    log_out(page)

    # 复核: a checker who did not export it approves.
    log_in(page, server, office, "checker")
    page.goto(batch_url)
    page.click("[data-test=approve-submit]")
    expect(page.locator("[data-test=batch-state]")).to_have_text("已批准")
    expect(page.locator("[data-test=submit-submit]")).to_have_count(0)  # handing it to the bank is the clerk's
    page.screenshot(path=shots / "5-batch-approved.png", full_page=True)
    log_out(page)

    # 经办: 提交银行, then the bank's answer (李建华 paid, 赵淑芬 returned AC04) through 回盘.
    log_in(page, server, office, "clerk")
    page.goto(batch_url)
    page.click("[data-test=submit-submit]")
    expect(page.locator("[data-test=batch-state]")).to_have_text("已提交银行")
    reply = bank_reply(office, tmp_path, batch)
    page.click("[data-test=nav-bank]")
    page.select_option("[data-test=bank-kind]", "pain002")
    page.set_input_files("[data-test=bank-file]", str(reply.path))
    page.click("[data-test=bank-preview-submit]")
    expect(page.locator("[data-test=bank-paid]")).to_contain_text("1 笔，810.00 元")
    expect(page.locator("[data-test=bank-returned]")).to_contain_text("1 笔，1,010.00 元")
    page.screenshot(path=shots / "6-bank-preview.png", full_page=True)
    page.click("[data-test=bank-import-submit]")
    expect(page.locator("[data-test=bank-notice]")).to_contain_text("实发 1 笔，退回 1 笔")
    page.goto(batch_url)
    expect(page.locator("[data-test=batch-state]")).to_have_text("已回盘")
    page.screenshot(path=shots / "7-batch-settled.png", full_page=True)
    log_out(page)

    # 审计: 赵淑芬's history, the month in the actions log, nothing that writes; the dashboard = the report.
    log_in(page, server, office, "auditor")
    page.goto(f"{server}/audit/person")
    page.fill("[data-test=person-id-number]", ZHAO_ID)
    page.click("[data-test=person-search]")
    events = page.locator("[data-test=history-row]")
    expect(events.first).to_be_visible()
    assert events.count() >= 3  # enrolled, accrued, exported … returned
    expect(page.locator("[data-test=history-table]")).to_contain_text("clerk")
    page.screenshot(path=shots / "8-audit-person.png", full_page=True)
    assert page.locator("form[method=post]").count() == 1  # 退出 only
    page.goto(f"{server}/audit/log")
    log_text = page.locator("main").inner_text()
    for done in ("checker", "clerk", "auditor"):
        assert done in log_text
    page.screenshot(path=shots / "9-audit-log.png", full_page=True)
    refused = page.request.post(f"{server}/batches/{batch}/submit", form={"csrf_token": csrf(page)})
    assert refused.status == 403
    rows = json.loads(yikatong(office.url, "report", "balances", "--json").stdout)["rows"]
    page.goto(f"{server}/?month=2017-02")
    shown = {text.strip() for text in page.locator("[data-test=balance-paid]").all_inner_texts()}
    paid: dict[str, int] = {}
    for r in rows:
        paid[r["programme"]] = paid.get(r["programme"], 0) + r["paid_fen"]
    assert {f"{fen // 100:,}.{fen % 100:02d} 元" for fen in paid.values()} <= shown
    assert re.search(r"810\.00", " ".join(shown)) is not None  # February's paid urban line is in it
    page.screenshot(path=shots / "10-home-auditor.png", full_page=True)
