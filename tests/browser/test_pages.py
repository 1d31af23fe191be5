"""Login, the dashboard, the batches and maker-checker, as a person does them in Chromium (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.helpers.ledgers import yikatong
from tests.helpers.web import OfficeLedger


def log_in(page: Page, server: str, office: OfficeLedger, name: str, password: str | None = None) -> None:
    page.goto(f"{server}/login")
    page.fill("[data-test=login-username]", name)
    page.fill("[data-test=login-password]", password if password is not None else office.passwords[name])
    page.click("[data-test=login-submit]")


def test_a_wrong_password_then_the_clerk_logs_in_and_out(
    page: Page, server: str, office: OfficeLedger, shots: Path
) -> None:
    log_in(page, server, office, "clerk", "not-the-password")
    expect(page.locator("[data-test=login-error]")).to_have_text("用户名或密码错误")
    page.screenshot(path=shots / "login-wrong-password.png", full_page=True)
    log_in(page, server, office, "clerk")
    expect(page.locator("[data-test=signed-in]")).to_contain_text("clerk")
    page.screenshot(path=shots / "home.png", full_page=True)
    page.click("[data-test=logout-submit]")
    expect(page.locator("[data-test=login-form]")).to_be_visible()
    page.goto(f"{server}/batches")
    expect(page.locator("[data-test=login-form]")).to_be_visible()  # the session ended


def test_the_dashboard_shows_what_report_balances_says(
    page: Page, server: str, office: OfficeLedger, shots: Path
) -> None:
    rows = json.loads(yikatong(office.url, "report", "balances", "--json").stdout)["rows"]
    log_in(page, server, office, "auditor")
    page.goto(f"{server}/?month=2017-01")
    shown = page.locator("[data-test=balance-accrued]").all_inner_texts()
    page.screenshot(path=shots / "home-auditor.png", full_page=True)
    expected = {f"{r['accrued_fen'] // 100:,}.{r['accrued_fen'] % 100:02d} 元" for r in rows}
    assert expected and expected <= {text.strip() for text in shown}


def test_the_clerk_exports_the_checker_approves_and_the_clerk_cannot(
    page: Page, server: str, office: OfficeLedger, shots: Path
) -> None:
    log_in(page, server, office, "clerk")
    page.click("[data-test=nav-batches]")
    page.screenshot(path=shots / "batches.png", full_page=True)
    page.locator("[data-test=batch-link]").first.click()
    expect(page.locator("[data-test=batch-state]")).to_have_text("待导出")
    expect(page.locator("[data-test=approve-submit]")).to_have_count(0)  # not the clerk's to approve
    page.select_option("[data-test=export-format]", "pain001")
    with page.expect_download() as download:
        page.click("[data-test=export-submit]")
    saved = shots / download.value.suggested_filename
    download.value.save_as(saved)
    assert b"<CstmrCdtTrfInitn>" in saved.read_bytes()
    batch_url = page.url
    page.goto(batch_url)
    expect(page.locator("[data-test=batch-state]")).to_have_text("已导出")
    page.screenshot(path=shots / "batch-exported.png", full_page=True)
    page.click("[data-test=logout-submit]")
    log_in(page, server, office, "checker")
    page.goto(batch_url)
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("[data-test=approve-submit]")
    expect(page.locator("[data-test=batch-state]")).to_have_text("已批准")
    expect(page.locator("[data-test=batch-approved-by]")).to_contain_text("checker")
    page.screenshot(path=shots / "batch-approved.png", full_page=True)
