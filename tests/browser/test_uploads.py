"""名册导入 and 回盘 as the clerk does them in Chromium (issue 15): a bad roster first (its line errors),
then a good one previewed and imported; a bank's pain.002 answering a real pain.001 export previewed
(实发 and 退回 with the reason in Chinese), applied, and the batch 已回盘."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

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
from tests.helpers.web import OfficeLedger


def log_in(page: Page, server: str, office: OfficeLedger, name: str) -> None:
    page.goto(f"{server}/login")
    page.fill("[data-test=login-username]", name)
    page.fill("[data-test=login-password]", office.passwords[name])
    page.click("[data-test=login-submit]")


def test_the_clerk_imports_a_roster_after_a_bad_file(
    page: Page, server: str, office: OfficeLedger, shots: Path, tmp_path: Path
) -> None:
    log_in(page, server, office, "clerk")
    page.click("[data-test=nav-roster]")
    expect(page.locator("[data-test=roster-upload-form]")).to_be_visible()
    page.screenshot(path=shots / "roster-form.png", full_page=True)
    page.set_input_files("[data-test=roster-file]", str(roster_xlsx(tmp_path, "bad.xlsx", *BAD_ROWS)))
    page.click("[data-test=roster-preview-submit]")
    expect(page.locator("[data-test=roster-rejected]")).to_contain_text("名册有 2 行不合格，未导入任何内容")
    expect(page.locator("[data-test=problem-line]")).to_have_text(["3", "4"])
    expect(page.locator("[data-test=problem-rule]").first).to_have_text("家庭人口数无效（members）")
    expect(page.locator("[data-test=roster-import-form]")).to_have_count(0)
    page.screenshot(path=shots / "roster-bad-file.png", full_page=True)
    assert not enrolled(office, ZHAO_ID)

    page.set_input_files("[data-test=roster-file]", str(roster_csv(tmp_path, "zhao.csv", ZHAO)))
    page.click("[data-test=roster-preview-submit]")
    expect(page.locator("[data-test=roster-enrolled]")).to_have_text("1")
    expect(page.locator("[data-test=roster-due-total]")).to_have_text("1,010.00 元")
    page.screenshot(path=shots / "roster-preview.png", full_page=True)
    assert not enrolled(office, ZHAO_ID)
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("[data-test=roster-import-submit]")
    expect(page.locator("[data-test=roster-notice]")).to_have_text("已导入 zhao.csv：新增 1 条（1 户，2 人）")
    page.screenshot(path=shots / "roster-imported.png", full_page=True)
    assert enrolled(office, ZHAO_ID)

    page.set_input_files("[data-test=roster-file]", str(roster_csv(tmp_path, "zhao.csv", ZHAO)))
    page.click("[data-test=roster-preview-submit]")
    expect(page.locator("[data-test=roster-changes-nothing]")).to_contain_text("无变化")
    page.click("[data-test=roster-import-submit]")
    expect(page.locator("[data-test=roster-notice]")).to_contain_text("已导入，无变化")
    page.screenshot(path=shots / "roster-unchanged.png", full_page=True)


def test_the_clerk_uploads_a_pain002_sees_paid_and_returned_and_applies_it(
    page: Page, server: str, office: OfficeLedger, shots: Path, tmp_path: Path
) -> None:
    batch = february_urban_batch(office, tmp_path)
    reply = submitted_with_reply(office, tmp_path, batch)
    log_in(page, server, office, "clerk")
    page.click("[data-test=nav-bank]")
    expect(page.locator("[data-test=bank-upload-form]")).to_be_visible()
    page.screenshot(path=shots / "bank-form.png", full_page=True)
    page.select_option("[data-test=bank-kind]", "pain002")
    page.set_input_files("[data-test=bank-file]", str(reply.path))
    page.click("[data-test=bank-preview-submit]")
    expect(page.locator("[data-test=bank-paid]")).to_contain_text("1 笔，")
    expect(page.locator("[data-test=bank-returned]")).to_contain_text("1 笔，")
    results = page.locator("[data-test=bank-line-result]").all_inner_texts()
    assert sorted(results) == ["实发", "退回"]
    expect(page.locator("[data-test=bank-line-reason]").filter(has_text="AC04")).to_have_text("AC04 账户已销户")
    page.screenshot(path=shots / "bank-preview.png", full_page=True)
    assert [b["status"] for b in batches(office) if b["id"] == batch] == ["submitted"]

    page.on("dialog", lambda dialog: dialog.accept())
    page.click("[data-test=bank-import-submit]")
    expect(page.locator("[data-test=bank-notice]")).to_contain_text("实发 1 笔，退回 1 笔")
    page.screenshot(path=shots / "bank-applied.png", full_page=True)
    page.click("[data-test=bank-batch-link]")
    expect(page.locator("[data-test=batch-state]")).to_have_text("已回盘")
    rows = page.locator("[data-test=payment-row]").all_inner_texts()
    assert any("已到账" in r for r in rows) and any("退回" in r for r in rows)
    page.screenshot(path=shots / "batch-settled.png", full_page=True)

    page.click("[data-test=nav-bank]")
    page.set_input_files("[data-test=bank-file]", str(reply.path))
    page.click("[data-test=bank-preview-submit]")
    expect(page.locator("[data-test=bank-notice]")).to_contain_text("已导入，无变化")
    page.screenshot(path=shots / "bank-again.png", full_page=True)
