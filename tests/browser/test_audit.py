"""The auditor in Chromium (issue 15): reads a person's history by ID number, the anomalies and the
verify result, cannot change anything (no form that writes; a forged approval is refused 403 and shows
in 操作日志), reads 报表 equal to `yikatong report balances --json`, and downloads a report as xlsx."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from pathlib import Path

import openpyxl
from playwright.sync_api import Page, expect

from tests.helpers.ledgers import yikatong
from tests.helpers.web import OfficeLedger

LI_ID = "152601198001011239"
TERMINATION_REF = "集民发〔2017〕31号"


def log_in(page: Page, server: str, office: OfficeLedger, name: str) -> None:
    page.goto(f"{server}/login")
    page.fill("[data-test=login-username]", name)
    page.fill("[data-test=login-password]", office.passwords[name])
    page.click("[data-test=login-submit]")
    expect(page.locator("[data-test=signed-in]")).to_contain_text(name)


def yuan(amount_fen: int) -> str:
    sign = "-" if amount_fen < 0 else ""
    whole, fen = divmod(abs(amount_fen), 100)
    return f"{sign}{whole:,}.{fen:02d} 元"


def test_the_auditor_reads_everything_and_changes_nothing(
    page: Page, server: str, office: OfficeLedger, shots: Path
) -> None:
    terminated = yikatong(office.url, "decide", "terminate", LI_ID, "urban_dibao", "--on", "2017-01-01",
                          "--reason", TERMINATION_REF)  # fmt: skip
    assert terminated.returncode == 0, terminated.stderr
    log_in(page, server, office, "auditor")
    page.click("[data-test=nav-audit]")
    page.screenshot(path=shots / "audit.png", full_page=True)
    page.fill("[data-test=person-id-number]", LI_ID)
    page.click("[data-test=person-search]")
    expect(page.locator("[data-test=history-row]")).to_have_count(3)  # registered, January paid, terminated
    expect(page.locator("[data-test=history-row]").last.locator("[data-test=grounds]")).to_contain_text(TERMINATION_REF)
    expect(page.locator("[data-test=history-row]").last.locator("[data-test=actor]")).to_have_text("clerk")
    page.screenshot(path=shots / "audit-person.png", full_page=True)

    page.click("[data-test=audit-tab-anomalies]")
    expect(page.locator("[data-test=anomaly-row]")).to_have_count(1)
    expect(page.locator("[data-test=anomaly-row]")).to_contain_text("超范围发放")
    page.screenshot(path=shots / "audit-anomalies.png", full_page=True)

    page.click("[data-test=audit-tab-verify]")
    expect(page.locator("[data-test=verify-verdict]")).to_have_attribute("data-ok", "1")
    page.screenshot(path=shots / "audit-verify.png", full_page=True)

    # No form on any page the auditor reads writes to the ledger: logging out, and verify (a read).
    for path in ("/", "/batches", "/reports", "/audit", f"/audit/person?id_number={LI_ID}", "/audit/anomalies",
                 "/audit/verify", "/audit/log"):  # fmt: skip
        page.goto(f"{server}{path}")
        actions = page.eval_on_selector_all(
            "form[method=post], form[method=POST]", "forms => forms.map(f => f.getAttribute('action'))"
        )
        assert set(actions) <= {"/logout", "/audit/verify"}, (path, actions)
    batch = json.loads(yikatong(office.url, "batch", "list", "--json").stdout)[0]["id"]
    page.goto(f"{server}/batches/{batch}")
    expect(page.locator("[data-test=approve-submit]")).to_have_count(0)
    page.screenshot(path=shots / "batch-as-auditor.png", full_page=True)
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    forged = page.request.post(f"{server}/batches/{batch}/approve", form={"csrf_token": csrf or ""})
    assert forged.status == 403
    state = json.loads(yikatong(office.url, "batch", "list", "--json").stdout)[0]["status"]
    assert state == "drafted"  # nothing approved

    page.goto(f"{server}/audit/log")
    refused = page.locator("[data-test=audit-log-row][data-kind=refused]")
    expect(refused).to_have_count(1)
    expect(refused).to_contain_text(f"/batches/{batch}/approve")
    expect(refused).to_contain_text("AuditorIsReadOnly")
    expect(page.locator("[data-test=audit-log-row][data-kind=login][data-actor=auditor]")).to_have_count(1)
    page.screenshot(path=shots / "audit-log.png", full_page=True)


def test_the_reports_show_report_balances_and_download_as_xlsx(
    page: Page, server: str, office: OfficeLedger, shots: Path
) -> None:
    rows = json.loads(yikatong(office.url, "report", "balances", "--json").stdout)["rows"]
    log_in(page, server, office, "checker")
    page.click("[data-test=nav-reports]")
    page.screenshot(path=shots / "reports.png", full_page=True)
    page.click("[data-test=report-link-balances]")
    table = page.locator("[data-test=balance-row]")
    expect(table).to_have_count(len(rows))
    for index, r in enumerate(rows):
        line = table.nth(index)
        assert line.get_attribute("data-period") == r["period"]
        assert line.get_attribute("data-programme") == r["programme"]
        for key in ("accrued_fen", "paid_fen", "returned_fen", "outstanding_fen"):
            expect(line.locator(f"[data-test={key}]")).to_have_text(yuan(r[key]))
        expect(line.locator("[data-test=persons]")).to_have_text(str(r["persons"]))
    total = page.locator("[data-test=balance-total] [data-test=accrued_fen]")
    expect(total).to_have_text(yuan(sum(r["accrued_fen"] for r in rows)))
    page.screenshot(path=shots / "report-balances.png", full_page=True)
    with page.expect_download() as download:
        page.click("[data-test=report-download]")
    saved = shots / download.value.suggested_filename
    download.value.save_as(saved)
    sheet = openpyxl.load_workbook(io.BytesIO(saved.read_bytes())).active
    values = [tuple(r) for r in sheet.iter_rows(values_only=True)]
    start = next(i for i, r in enumerate(values) if r[0] == "区划") + 1
    accrued = [int(Decimal(str(r[5])) * 100) for r in values[start:-1]]
    assert accrued == [r["accrued_fen"] for r in rows]
    for name in ("summary", "on-time", "deadlines", "recoveries"):
        page.goto(f"{server}/reports/{name}")
        expect(page.locator("h1")).to_be_visible()
        page.screenshot(path=shots / f"report-{name}.png", full_page=True)
    page.goto(f"{server}/reports/balances?as_of=2017-01-31")
    expect(page.locator("[data-test=report-empty]")).to_be_visible()  # nothing recorded by then
    page.screenshot(path=shots / "report-balances-as-of.png", full_page=True)
