"""报表 over HTTP (TestClient, SQLite): every report page shows the figures of `yikatong report … --json`
on the same ledger, `截至` a past moment shows what was known then, and every xlsx download holds the
same numbers (in 元, as numbers) with the as-of and the ledger position in its header."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from typing import Any

import openpyxl
import pytest
from fastapi.testclient import TestClient
from lxml import html

from ledger.bootstrap import database_from_url, open_service
from tests.helpers.ledgers import yikatong
from tests.helpers.reports import LI_ID, SettledOffice, build_settled_office
from tests.helpers.web import OfficeLedger, client_for, copy_office_ledger, log_in

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
BALANCE_AMOUNTS = (
    "accrued_fen", "adjusted_fen", "exported_fen", "paid_fen", "returned_fen", "recovery_due_fen", "recovered_fen",
    "written_off_fen", "outstanding_fen",
)  # fmt: skip
RECOVERY_AMOUNTS = ("due_fen", "recovered_fen", "written_off_fen", "remaining_fen")


@pytest.fixture(scope="module")
def settled(tmp_path_factory: pytest.TempPathFactory) -> SettledOffice:
    return build_settled_office(tmp_path_factory.mktemp("web-reports"))


@pytest.fixture(scope="module")
def office(settled: SettledOffice, tmp_path_factory: pytest.TempPathFactory) -> OfficeLedger:
    """One copy for the read-only tests of this module (reports change nothing: checked below)."""
    return copy_office_ledger(settled.office, tmp_path_factory.mktemp("web-reports-copy"))


@pytest.fixture(scope="module")
def checker(office: OfficeLedger) -> TestClient:
    client = client_for(office)
    log_in(client, office, "checker")
    return client


def cli_json(office: OfficeLedger, *args: str) -> Any:
    done = yikatong(office.url, "report", *args, "--json", as_="auditor")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def page_of(client: TestClient, url: str) -> html.HtmlElement:
    answer = client.get(url)
    assert answer.status_code == 200, answer.text
    return html.fromstring(answer.text)


def fen_cells(row: html.HtmlElement) -> dict[str, int]:
    return {cell.get("data-test"): int(cell.get("data-fen")) for cell in row.xpath(".//*[@data-fen]")}


def balance_rows(doc: html.HtmlElement) -> list[dict[str, Any]]:
    rows = []
    for tr in doc.xpath("//tr[@data-test='balance-row']"):
        counts = {cell.get("data-test"): int(cell.get("data-value")) for cell in tr.xpath(".//*[@data-value]")}
        keys = {"region": tr.get("data-region"), "programme": tr.get("data-programme"), "period": tr.get("data-period")}
        rows.append({**keys, **counts, **fen_cells(tr)})
    return rows


def shown_part(row: dict[str, Any], shown: dict[str, Any]) -> dict[str, Any]:
    return {key: row[key] for key in shown}


def workbook(client: TestClient, url: str) -> list[tuple[Any, ...]]:
    answer = client.get(url)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == XLSX
    assert answer.headers["content-disposition"].startswith("attachment; filename*=UTF-8''")
    sheet = openpyxl.load_workbook(io.BytesIO(answer.content)).active
    return [tuple(row) for row in sheet.iter_rows(values_only=True)]


def yuan(amount_fen: int) -> Decimal:
    return Decimal(amount_fen) / 100


def as_fen(value: Any) -> int:
    """A money cell as read back (a number in 元) to integer fen, exactly (its stored text is the amount)."""
    amount = Decimal(str(value)) * 100
    assert amount == amount.to_integral_value(), value
    return int(amount)


# --- the pages equal the command line ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, args",
    [
        ("", ()),
        ("?month=2017-01", ("--month", "2017-01")),
        ("?year=2017&programme=urban_dibao", ("--year", "2017", "--programme", "urban_dibao")),
        ("?region=150900&programme=rural_dibao", ("--region", "150900", "--programme", "rural_dibao")),
    ],
)
def test_the_balances_page_shows_report_balances_json(
    checker: TestClient, office: OfficeLedger, query: str, args: tuple[str, ...]
) -> None:
    expected = cli_json(office, "balances", *args)["rows"]
    doc = page_of(checker, f"/reports/balances{query}")
    shown = balance_rows(doc)
    assert expected and len(shown) == len(expected)
    for mine, theirs in zip(shown, expected, strict=True):
        assert mine == shown_part(theirs, mine)
        assert {"accrued_fen", "paid_fen", "returned_fen", "outstanding_fen", "households", "persons"} <= set(mine)
    (total,) = doc.xpath("//tr[@data-test='balance-total']")
    assert fen_cells(total) == {k: sum(r[k] for r in expected) for k in fen_cells(total)}


def test_the_balances_page_shows_the_recovery_columns_when_there_are_recoveries(
    checker: TestClient, office: OfficeLedger
) -> None:
    expected = cli_json(office, "balances")["rows"]
    assert any(r["recovery_due_fen"] for r in expected) and any(r["adjusted_fen"] for r in expected)
    shown = balance_rows(page_of(checker, "/reports/balances"))
    assert {"adjusted_fen", "recovery_due_fen", "outstanding_fen"} <= set(shown[0])
    assert any(r["outstanding_fen"] < 0 for r in shown)  # overpaid, not yet recovered: shown negative


def test_balances_as_of_a_past_moment_show_what_was_known_then(
    checker: TestClient, office: OfficeLedger, settled: SettledOffice
) -> None:
    then = cli_json(office, "balances", "--as-of", settled.before_bank)["rows"]
    now = cli_json(office, "balances")["rows"]
    doc = page_of(checker, f"/reports/balances?as_of={settled.before_bank.replace('+', '%2B')}")
    shown = balance_rows(doc)
    assert [shown_part(r, s) for r, s in zip(then, shown, strict=True)] == shown
    assert sum(r["paid_fen"] for r in shown) == 0 < sum(r["paid_fen"] for r in now)  # nothing paid yet then
    assert {r["period"] for r in shown} == {"2017-01", "2017-Q1"}  # February not yet accrued then
    head = " ".join(doc.xpath("//*[@data-test='report-head-line']/text()"))
    assert f"截至 {settled.before_bank}" in head
    before_anything = page_of(checker, "/reports/balances?as_of=2017-01-31")  # a date: the end of that day
    assert balance_rows(before_anything) == [] and before_anything.xpath("//*[@data-test='report-empty']")


def test_the_summary_page_shows_report_summary_json(checker: TestClient, office: OfficeLedger) -> None:
    expected = cli_json(office, "summary", "--year", "2017")["rows"]
    doc = page_of(checker, "/reports/summary?year=2017")
    rows = doc.xpath("//tr[@data-test='summary-row']")
    assert expected and [tr.get("data-programme") for tr in rows] == [r["programme"] for r in expected]
    for tr, r in zip(rows, expected, strict=True):
        cells = {c.get("data-test"): c for c in tr.xpath(".//td[@data-test]")}
        assert int(cells["households"].get("data-value")) == r["households"]
        assert int(cells["persons"].get("data-value")) == r["persons"]
        assert int(cells["paid_fen"].get("data-fen")) == r["paid_fen"]
        assert cells["paid_wan"].text_content() == r["paid_wan"]
    sentences = doc.xpath("//ul[@data-test='summary-sentences']/li/text()")
    assert sentences == [r["sentence"] for r in expected]
    assert "555.00 元/月" in doc.text_content()  # 城镇低保 standard, as offices publish it


def test_the_on_time_page_shows_report_on_time_json(checker: TestClient, office: OfficeLedger) -> None:
    expected = cli_json(office, "on-time", "--year", "2017", "--today", "2017-03-01")
    doc = page_of(checker, "/reports/on-time?year=2017&today=2017-03-01")
    rows = doc.xpath("//tr[@data-test='on-time-row']")
    assert len(expected) == len(rows) >= 2
    for tr, r in zip(rows, expected, strict=True):
        assert (tr.get("data-programme"), tr.get("data-region"), tr.get("data-month")) == (
            r["programme"], r["region"], r["month"],
        )  # fmt: skip
        cells = {c.get("data-test"): c.text_content().strip() for c in tr.xpath(".//td[@data-test]")}
        assert cells == {
            "due": str(r["due"]), "on_time": str(r["on_time"]), "rate": r["rate"] or "—", "ytd_due": str(r["ytd_due"]),
            "ytd_on_time": str(r["ytd_on_time"]), "ytd_rate": r["ytd_rate"] or "—",
        }  # fmt: skip
    assert {"100.00%", "0.00%"} <= {r["rate"] for r in expected}  # one paid on time, one returned


def test_the_deadlines_page_shows_report_deadlines_json(checker: TestClient, office: OfficeLedger) -> None:
    expected = cli_json(office, "deadlines", "--today", "2017-02-08")
    doc = page_of(checker, "/reports/deadlines?today=2017-02-08")
    rows = doc.xpath("//tr[@data-test='deadline-row']")
    assert expected and [tr.get("data-batch") for tr in rows] == [r["batch"] for r in expected]
    for tr, r in zip(rows, expected, strict=True):
        cells = {c.get("data-test"): c for c in tr.xpath(".//td[@data-test]")}
        assert int(cells["total_fen"].get("data-fen")) == r["total_fen"]
        assert cells["due_date"].text_content() == r["due_date"]
        assert cells["last_safe_day"].text_content() == (r["last_safe_day"] or "日历未知")
        assert int(cells["payments"].text_content()) == r["payments"]


def test_the_recoveries_page_shows_report_recoveries_json_masked_for_the_checker(
    checker: TestClient, office: OfficeLedger
) -> None:
    expected = cli_json(office, "recoveries")
    doc = page_of(checker, "/reports/recoveries")
    rows = doc.xpath("//tr[@data-test='recovery-row']")
    assert len(expected) == len(rows) == 2
    for tr, r in zip(rows, expected, strict=True):
        assert tr.get("data-recovery") == r["id"]
        assert fen_cells(tr) == {key: r[key] for key in RECOVERY_AMOUNTS}
    text = doc.text_content()
    assert LI_ID not in text and "李建华" not in text and "李*华" in text  # the checker sees them masked
    (total,) = doc.xpath("//tr[@data-test='recovery-total']")
    assert fen_cells(total)["remaining_fen"] == sum(r["remaining_fen"] for r in expected)


def test_the_clerk_reads_the_recoveries_unmasked(office: OfficeLedger) -> None:
    client = client_for(office)
    log_in(client, office, "clerk")
    assert LI_ID in client.get("/reports/recoveries").text


# --- xlsx ---------------------------------------------------------------------------------------------------


def positions(office: OfficeLedger) -> tuple[int, int]:
    service = open_service(database_from_url(office.url), read_only=True)
    try:
        at = service.log_positions()
    finally:
        service.registry.close()
        service.disbursement.close()
    return at["registry_events"], at["disbursement_events"]


def test_the_balances_workbook_holds_the_same_numbers_with_as_of_and_position(
    checker: TestClient, office: OfficeLedger, settled: SettledOffice
) -> None:
    registry, disbursement = positions(office)
    for url, args in (
        ("/reports/balances.xlsx", ()),
        ("/reports/balances?format=xlsx&month=2017-01", ("--month", "2017-01")),
        (f"/reports/balances.xlsx?as_of={settled.before_bank.replace('+', '%2B')}", ("--as-of", settled.before_bank)),
    ):
        expected = cli_json(office, "balances", *args)["rows"]
        rows = workbook(checker, url)
        assert rows[0][0] == "余额"
        head = [r[0] for r in rows[1:4]]
        assert any(str(line).startswith("截至 ") for line in head)
        assert f"至第 {registry} 条" in str(head[1]) and f"至第 {disbursement} 条" in str(head[1])
        if args and args[0] == "--as-of":
            assert f"截至 {settled.before_bank}" in str(head[0])
        start = next(i for i, r in enumerate(rows) if r[0] == "区划") + 1
        assert rows[start - 1][5:] == (
            "应发",
            "补发差额",
            "已导出",
            "实发",
            "退回",
            "应追回",
            "已追回",
            "已核销",
            "未到账",
        )
        body, total = rows[start:-1], rows[-1]
        assert len(body) == len(expected)
        for row, r in zip(body, expected, strict=True):
            assert row[0] == r["region"] and row[2] == r["period"] and row[3:5] == (r["households"], r["persons"])
            assert [as_fen(v) for v in row[5:]] == [r[k] for k in BALANCE_AMOUNTS]
        assert total[0] == "合计" and [as_fen(v) for v in total[5:]] == [
            sum(r[k] for r in expected) for k in BALANCE_AMOUNTS
        ]


def test_the_other_workbooks_hold_the_same_numbers(checker: TestClient, office: OfficeLedger) -> None:
    summary = cli_json(office, "summary", "--year", "2017")["rows"]
    rows = workbook(checker, "/reports/summary.xlsx?year=2017")
    start = next(i for i, r in enumerate(rows) if r[0] == "项目") + 1
    assert [(r[3], r[4], as_fen(r[5]), Decimal(str(r[6]))) for r in rows[start:]] == [
        (r["households"], r["persons"], r["paid_fen"], Decimal(r["paid_wan"])) for r in summary
    ]
    assert all(s["sentence"] in [r[0] for r in rows[:start]] for s in summary)
    on_time = cli_json(office, "on-time", "--year", "2017", "--today", "2017-03-01")
    rows = workbook(checker, "/reports/on-time?format=xlsx&year=2017&today=2017-03-01")
    start = next(i for i, r in enumerate(rows) if r[0] == "项目") + 1
    assert [(r[3], r[4], Decimal(str(r[5])), r[6], r[7]) for r in rows[start:]] == [
        (r["due"], r["on_time"], Decimal(r["rate"].rstrip("%")) / 100, r["ytd_due"], r["ytd_on_time"]) for r in on_time
    ]
    deadlines = cli_json(office, "deadlines", "--today", "2017-02-08")
    rows = workbook(checker, "/reports/deadlines.xlsx?today=2017-02-08")
    start = next(i for i, r in enumerate(rows) if r[0] == "批次") + 1
    assert [(r[0], r[4], as_fen(r[5]), r[6]) for r in rows[start:-1]] == [
        (r["batch"], r["payments"], r["total_fen"], r["due_date"]) for r in deadlines
    ]
    recoveries = cli_json(office, "recoveries")
    rows = workbook(checker, "/reports/recoveries.xlsx")
    start = next(i for i, r in enumerate(rows) if r[0] == "追回编号") + 1
    assert [[as_fen(v) for v in r[6:10]] for r in rows[start:-1]] == [
        [r[k] for k in RECOVERY_AMOUNTS] for r in recoveries
    ]
    assert LI_ID not in {str(v) for r in rows for v in r}  # masked for the checker, as on the page


def test_a_money_cell_is_a_number_in_yuan_with_two_decimals(checker: TestClient, office: OfficeLedger) -> None:
    answer = checker.get("/reports/balances.xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(answer.content)).active
    cells = [
        c for row in sheet.iter_rows() for c in row if c.column >= 6 and c.data_type == "n" and c.value is not None
    ]
    assert cells and all(c.number_format == "0.00" for c in cells)
    first = cli_json(office, "balances")["rows"][0]
    assert cells[0].row == cells[1].row and Decimal(str(cells[0].value)) == yuan(first["accrued_fen"])


# --- who, bad input, and nothing written ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["clerk", "checker", "auditor", "admin"])
def test_every_role_reads_every_report(office: OfficeLedger, name: str) -> None:
    client = client_for(office)
    log_in(client, office, name)
    index = client.get("/reports")
    assert index.status_code == 200
    for report in ("balances", "summary", "on-time", "deadlines", "recoveries"):
        assert f'data-test="report-link-{report}"' in index.text
        assert client.get(f"/reports/{report}").status_code == 200
        assert client.get(f"/reports/{report}.xlsx").headers["content-type"] == XLSX


def test_reports_need_a_login(office: OfficeLedger) -> None:
    client = client_for(office)
    answer = client.get("/reports/balances.xlsx", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")


@pytest.mark.parametrize(
    "url, words",
    [
        ("/reports/balances?as_of=yesterday", "as_of 'yesterday'"),
        ("/reports/balances?month=2017-13", "2017-13"),
        ("/reports/summary?year=17", "year '17'"),
        ("/reports/summary?year=2017&through=2016-11", "2016-11"),
        ("/reports/on-time?today=2017-02-30", "2017-02-30"),
    ],
)
def test_a_bad_filter_is_said_and_nothing_else_happens(checker: TestClient, url: str, words: str) -> None:
    answer = checker.get(url)
    assert (
        answer.status_code == 400 and "输入有误" in answer.text and words in html.fromstring(answer.text).text_content()
    )


def test_reading_every_report_changes_nothing_in_the_log(office: OfficeLedger, checker: TestClient) -> None:
    before = positions(office)
    for report in ("balances", "summary", "on-time", "deadlines", "recoveries"):
        checker.get(f"/reports/{report}")
        checker.get(f"/reports/{report}.xlsx")
    checker.get("/reports")
    assert positions(office) == before


def test_the_page_and_the_api_agree(checker: TestClient) -> None:
    api = checker.get("/api/balances?year=2017").json()["rows"]
    shown = balance_rows(page_of(checker, "/reports/balances?year=2017"))
    assert [shown_part(r, s) for r, s in zip(api, shown, strict=True)] == shown
