"""决定 in Chromium (issue 15): a clerk finds a person, previews a suspension with its date and reason,
confirms it and sees the state change; an auditor opens the same page, sees no action, and a POST forged
from their session is refused 403 with nothing recorded. 临时救助: the clerk grants above the threshold,
a checker approves."""

from __future__ import annotations

import json
import re
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.helpers.ledgers import yikatong
from tests.helpers.web import OfficeLedger

LI_ID = "152601198001011239"


def log_in(page: Page, server: str, office: OfficeLedger, name: str) -> None:
    page.goto(f"{server}/login")
    page.fill("[data-test=login-username]", name)
    page.fill("[data-test=login-password]", office.passwords[name])
    page.click("[data-test=login-submit]")
    expect(page.locator("[data-test=signed-in]")).to_contain_text(name)


def decisions(office: OfficeLedger) -> list[dict]:
    done = yikatong(office.url, "audit", "history", LI_ID, "--json", as_="auditor")
    assert done.returncode == 0, done.stderr
    return [e for e in json.loads(done.stdout)["events"] if e["event"] == "decision"]


def test_a_clerk_suspends_after_the_preview_and_an_auditor_cannot_act(
    page: Page, server: str, office: OfficeLedger, shots: Path
) -> None:
    log_in(page, server, office, "clerk")
    page.click("[data-test=nav-decisions]")
    page.fill("[data-test=search-id-number]", LI_ID)
    page.click("[data-test=search-submit]")
    expect(page.locator("[data-test=search-name]")).to_have_text("李建华")
    page.screenshot(path=shots / "persons-search.png", full_page=True)
    page.click("[data-test=person-link]")
    expect(page.locator("[data-test=enrolment-state]")).to_have_text("正常发放")
    page.screenshot(path=shots / "person-clerk.png", full_page=True)

    page.select_option("[data-test=decide-kind]", "suspend")
    page.fill("[data-test=decide-on]", "2017-1-3")  # a bad date first: the rule in place, the form kept
    page.fill("[data-test=decide-reason]", "集民发〔2017〕9号")
    page.click("[data-test=decide-preview]")
    expect(page.locator("[data-test=person-error]")).to_have_text(re.compile(r"YYYY-MM-DD.*（BadDate）"))
    expect(page.locator("[data-test=decide-reason]")).to_have_value("集民发〔2017〕9号")
    page.screenshot(path=shots / "person-bad-date.png", full_page=True)
    page.fill("[data-test=decide-on]", "2017-01-03")
    page.click("[data-test=decide-preview]")
    expect(page.locator("[data-test=preview-state]")).to_have_text("生效日 2017年1月3日 的状态：正常发放 → 暂停")
    expect(page.locator("[data-test=preview-months]")).to_have_text("发放月份：2017-01 起 → 仅 2017-01")
    page.screenshot(path=shots / "decision-preview.png", full_page=True)
    assert decisions(office) == []  # the preview recorded nothing
    page.click("[data-test=confirm-submit]")
    expect(page.locator("[data-test=person-notice]")).to_have_text("已记录：暂停（城镇低保，2017年1月3日起）")
    expect(page.locator("[data-test=enrolment-state]")).to_have_text("暂停")
    page.screenshot(path=shots / "person-suspended.png", full_page=True)
    [suspended] = decisions(office)
    assert (suspended["kind"], suspended["effective_on"], suspended["actor"]) == ("suspend", "2017-01-03", "clerk")

    page.click("[data-test=logout-submit]")
    log_in(page, server, office, "auditor")
    page.goto(f"{server}/persons/{LI_ID}")
    expect(page.locator("[data-test=person-id]")).to_have_text(LI_ID)
    expect(page.locator("[data-test=enrolment-state]")).to_have_text("暂停")
    expect(page.locator("[data-test=person-actions]")).to_have_count(0)
    expect(page.locator("[data-test=decide-preview]")).to_have_count(0)
    page.screenshot(path=shots / "person-auditor.png", full_page=True)
    # A forged POST with the auditor's own session and CSRF token (the page carries one for 退出).
    token = page.locator("[data-test=logout-form] input[name=csrf_token]").get_attribute("value")
    form = {"csrf_token": token or "", "kind": "resume", "programme": "urban_dibao", "on": "2017-01-10", "reason": "x"}
    forged = page.request.post(f"{server}/persons/{LI_ID}/decide", form=form)
    assert forged.status == 403 and "AuditorIsReadOnly" in forged.text()
    assert len(decisions(office)) == 1


def test_the_clerk_grants_aid_and_a_checker_approves(
    page: Page, server: str, office: OfficeLedger, shots: Path
) -> None:
    log_in(page, server, office, "clerk")
    page.goto(f"{server}/persons/{LI_ID}")
    page.click("[data-test=person-aid-link]")
    expect(page.locator("[data-test=aid-id-number]")).to_have_value(LI_ID)
    page.fill("[data-test=aid-amount]", "1500")
    page.fill("[data-test=aid-reason]", "集民发〔2017〕10号")
    page.click("[data-test=aid-submit]")
    expect(page.locator("[data-test=aid-preview-approval]")).to_contain_text("须由另一名复核人批准")
    page.screenshot(path=shots / "aid-preview.png", full_page=True)
    page.click("[data-test=aid-confirm-submit]")
    expect(page.locator("[data-test=aid-state]")).to_have_text("待审批")
    expect(page.locator("[data-test=aid-approve-submit]")).to_have_count(0)
    page.screenshot(path=shots / "aid-granted.png", full_page=True)
    page.click("[data-test=logout-submit]")
    log_in(page, server, office, "checker")
    page.goto(f"{server}/aid")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("[data-test=aid-approve-submit]")
    expect(page.locator("[data-test=aid-state]")).to_have_text("可发放")
    expect(page.locator("[data-test=aid-approved-by]")).to_have_text("checker")
    page.screenshot(path=shots / "aid-approved.png", full_page=True)
    listed = json.loads(yikatong(office.url, "aid", "list", "--json", as_="auditor").stdout)
    assert [(g["granted_by"], g["approved_by"], g["amount_fen"]) for g in listed] == [("clerk", "checker", 150000)]
