"""月结 in Chromium: the clerk picks a month, starts it, watches the progress (htmx polling) until it is
done, and follows the link to the new batches (issue 15)."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from tests.helpers.returns import returned_and_corrected
from tests.helpers.web import OfficeLedger

RUN_TIMEOUT_MS = 120_000


def log_in(page: Page, server: str, office: OfficeLedger, name: str) -> None:
    page.goto(f"{server}/login")
    page.fill("[data-test=login-username]", name)
    page.fill("[data-test=login-password]", office.passwords[name])
    page.click("[data-test=login-submit]")
    expect(page.locator("[data-test=signed-in]")).to_contain_text(name)


def test_the_clerk_runs_february_watches_it_finish_and_opens_its_batches(
    page: Page, server: str, office: OfficeLedger, shots: Path
) -> None:
    log_in(page, server, office, "clerk")
    page.click("[data-test=nav-month-end]")
    expect(page.locator("[data-test=monthend-month]")).to_have_value("2017-01")  # today's month
    page.screenshot(path=shots / "month-end.png", full_page=True)
    page.fill("[data-test=monthend-month]", "2017-02")
    page.click("[data-test=monthend-start]")
    job = page.locator("[data-test=monthend-job]")
    expect(page.locator("[data-test=monthend-notice]")).to_contain_text("2017-02 月结已开始（clerk）")
    phases = [job.get_attribute("data-phase")]
    if phases[0] != "done":  # the child is starting: the page says a run is under way and polls
        expect(page.locator("[data-test=monthend-running]")).to_contain_text("本月月结正在进行")
        expect(page.locator("[data-test=monthend-bar]")).to_be_visible()
        page.screenshot(path=shots / "month-end-running.png", full_page=True)
    expect(job).to_have_attribute("data-phase", "done", timeout=RUN_TIMEOUT_MS)  # htmx swapped it in
    bar = page.locator("[data-test=monthend-bar]")
    assert bar.get_attribute("value") == bar.get_attribute("max")  # finished: the bar is full
    expect(page.locator("[data-test=monthend-payments]")).to_have_text("1 笔，810.00 元")
    expect(page.locator("[data-test=monthend-batches]")).to_have_text("1")
    page.screenshot(path=shots / "month-end-done.png", full_page=True)
    page.click("[data-test=monthend-batches-link]")
    expect(page).to_have_url(f"{server}/batches?month=2017-02")
    rows = page.locator("[data-test=batch-row]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("城镇低保")
    page.screenshot(path=shots / "month-end-batches.png", full_page=True)
    page.go_back()
    page.locator("[data-test=monthend-batch-link]").first.click()
    expect(page.locator("[data-test=batch-payments]")).to_have_text("1")


def test_a_bad_month_typed_by_hand_is_refused_in_place(
    page: Page, server: str, office: OfficeLedger, shots: Path
) -> None:
    log_in(page, server, office, "clerk")
    page.goto(f"{server}/month-end?month=2017-13")
    expect(page.locator("[data-test=monthend-error]")).to_contain_text("月份格式应为 YYYY-MM")
    expect(page.locator("[data-test=monthend-form]")).to_be_visible()
    page.screenshot(path=shots / "month-end-bad-month.png", full_page=True)


def test_the_clerk_reissues_a_corrected_return_from_the_batch_page(
    page: Page, server: str, office: OfficeLedger, shots: Path, tmp_path: Path
) -> None:
    batch = returned_and_corrected(office, tmp_path)
    log_in(page, server, office, "clerk")
    page.goto(f"{server}/batches/{batch}")
    expect(page.locator("[data-test=reissue-summary]")).to_contain_text("账户已更正待补发 1 笔")
    page.screenshot(path=shots / "batch-reissue.png", full_page=True)
    page.on("dialog", lambda dialog: dialog.accept())  # 重新运行 2017-01 月结，补发 1 笔…？
    page.click("[data-test=reissue-submit]")
    expect(page).to_have_url(f"{server}/month-end?month=2017-01&started=1")
    expect(page.locator("[data-test=monthend-job]")).to_have_attribute("data-phase", "done", timeout=RUN_TIMEOUT_MS)
    expect(page.locator("[data-test=monthend-reissued]")).to_have_text("1 笔")
    page.screenshot(path=shots / "month-end-reissued.png", full_page=True)
    page.goto(f"{server}/batches/{batch}")
    expect(page.locator("[data-test=reissue-summary]")).to_contain_text("已补发 1 笔")
    expect(page.locator("[data-test=reissue-submit]")).to_have_count(0)
