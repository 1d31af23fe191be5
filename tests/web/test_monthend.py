"""月结 and 补发退回 over HTTP (TestClient), on SQLite: the month-end runs in a child process as the
logged-in clerk, its progress is polled, its result is in the ledger; CSRF and roles refuse before anything
runs; a second start while one runs starts nothing; a bad month is refused in place (issue 15)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from domain.disbursement import run_log_id
from ledger.bootstrap import database_from_url
from ledger.web.jobs import CHILD_MODULE
from tests.helpers.returns import returned_and_corrected, service_of
from tests.helpers.web import OfficeLedger, build_office_ledger, client_for, copy_office_ledger, log_in

LI_ID = "152601198001011239"
DONE_WITHIN_S = 120
_PHASE = re.compile(r'data-phase="([a-z]+)"')


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> OfficeLedger:
    return build_office_ledger(tmp_path_factory.mktemp("web-monthend"))


@pytest.fixture
def office(built: OfficeLedger, tmp_path: Path) -> OfficeLedger:
    return copy_office_ledger(built, tmp_path / "office")


@pytest.fixture
def client(office: OfficeLedger) -> TestClient:
    return client_for(office)


def ledger_state(office: OfficeLedger) -> tuple[list[str], list[tuple[str, str, int]]]:
    """(months run, every batch as (run month, programme, payments)), read through the service."""
    with service_of(office) as service:
        return service.months_run(), [(b.run_month, b.programme, len(b.payment_ids)) for b in service.batches()]


def phase_of(html: str) -> str:
    found = _PHASE.search(html)
    assert found is not None, html
    return found.group(1)


def wait_finished(client: TestClient, month: str) -> str:
    """Poll the progress fragment as htmx does until the job is done or failed; returns the fragment."""
    deadline = time.monotonic() + DONE_WITHIN_S
    while time.monotonic() < deadline:
        fragment = client.get(f"/month-end/progress?month={month}")
        assert fragment.status_code == 200
        if phase_of(fragment.text) in ("done", "failed"):
            return fragment.text
        assert 'hx-trigger="every 1s"' in fragment.text  # still running: htmx asks again
        time.sleep(0.2)
    raise AssertionError(f"the month-end of {month} did not finish within {DONE_WITHIN_S} s")


def start(client: TestClient, csrf: str, month: str) -> object:
    return client.post("/month-end/start", data={"csrf_token": csrf, "month": month}, follow_redirects=False)


# --- refusals: nothing runs -------------------------------------------------------------------------------


def test_a_start_without_its_csrf_token_is_refused_and_nothing_runs(client: TestClient, office: OfficeLedger) -> None:
    log_in(client, office, "clerk")
    before = ledger_state(office)
    refused = client.post("/month-end/start", data={"month": "2017-02"})
    assert refused.status_code == 403 and "CSRF" in refused.text
    page = client.get("/month-end?month=2017-02")
    assert page.status_code == 200 and phase_of(page.text) == "none"
    time.sleep(1)
    assert ledger_state(office) == before


@pytest.mark.parametrize("name", ["checker", "auditor"])
def test_checker_and_auditor_may_not_run_a_month_end(client: TestClient, office: OfficeLedger, name: str) -> None:
    csrf = log_in(client, office, name)
    before = ledger_state(office)
    assert client.get("/month-end").status_code == 403
    home = client.get("/")
    assert 'href="/month-end"' not in home.text  # not in the menu either
    refused = start(client, csrf, "2017-02")
    assert refused.status_code == 403  # type: ignore[attr-defined]
    with service_of(office) as service:
        batch = service.batches("2017-01")[0].id.hex
    assert client.post(f"/batches/{batch}/reissue", data={"csrf_token": csrf}).status_code == 403
    time.sleep(1)
    assert ledger_state(office) == before


def test_a_bad_month_is_refused_in_place_and_nothing_runs(client: TestClient, office: OfficeLedger) -> None:
    csrf = log_in(client, office, "clerk")
    before = ledger_state(office)
    for bad in ("2017-13", "2017-2x", "", "x" * 200):
        again = start(client, csrf, bad)
        assert again.status_code == 400, bad  # type: ignore[attr-defined]
        html = again.text  # type: ignore[attr-defined]
        assert 'data-test="monthend-error"' in html and "月份格式应为 YYYY-MM" in html and "BadPeriod" in html
        assert 'data-test="monthend-form"' in html and phase_of(html) == "none"
    assert client.get("/month-end?month=2017-99").status_code == 400
    time.sleep(1)
    assert ledger_state(office) == before


# --- the month-end ----------------------------------------------------------------------------------------


def test_the_clerk_starts_february_follows_it_and_the_ledger_has_its_batches(
    client: TestClient, office: OfficeLedger
) -> None:
    csrf = log_in(client, office, "clerk")
    page = client.get("/month-end")
    assert page.status_code == 200 and 'value="2017-01"' in page.text  # today's month (2017-01-03)
    assert "开始月结" in page.text and 'href="/batches?month=2017-01"' in page.text  # months run
    started = start(client, csrf, "2017-02")
    assert started.status_code == 303  # type: ignore[attr-defined]
    assert started.headers["location"] == "/month-end?month=2017-02&started=1"  # type: ignore[attr-defined]
    shown = client.get(started.headers["location"])  # type: ignore[attr-defined]
    assert "2017-02 月结已开始（clerk）" in shown.text
    done = wait_finished(client, "2017-02")
    assert phase_of(done) == "done", done
    months, batches = ledger_state(office)
    assert months == ["2017-01", "2017-02"]
    february = [b for b in batches if b[0] == "2017-02"]
    assert february == [("2017-02", "urban_dibao", 1)]  # 李建华's February; 王桂英's Q1 was paid in January
    with service_of(office) as service:
        (batch,) = service.batches("2017-02")
        assert [e["period"] for e in service.history(LI_ID) if e["event"] == "payment_accrued"][-1] == "2017-02"
        runs = list(service.disbursement.repository.event_store.get(run_log_id(service.policy().region_code)))
    assert (runs[-1].month, runs[-1].actor) == ("2017-02", "clerk")  # the logged-in account acted
    assert "1 笔，810.00 元" in done and f'href="/batches/{batch.id.hex}"' in done
    assert 'href="/batches?month=2017-02"' in done
    assert "hx-trigger" not in done  # finished: the page stops polling
    page = client.get("/month-end?month=2017-02")
    assert phase_of(page.text) == "done"  # left and come back: the job is still there


def test_a_second_start_while_one_runs_starts_nothing_and_nobody_is_paid_twice(
    client: TestClient, office: OfficeLedger
) -> None:
    csrf = log_in(client, office, "clerk")
    assert start(client, csrf, "2017-02").status_code == 303  # type: ignore[attr-defined]
    again = start(client, csrf, "2017-02")  # the child is still starting (importing the ledger: > 0.3 s)
    assert again.status_code == 409, again.text  # type: ignore[attr-defined]
    assert "本月月结正在进行" in again.text and phase_of(again.text) in ("starting", "reading", "accruing")  # type: ignore[attr-defined]
    other = start(client, csrf, "2017-03")
    assert other.status_code == 409 and "2017-02 月结正在进行" in other.text  # type: ignore[attr-defined]
    # A second server on the same ledger knows nothing of this job: its start runs, and the ledger's
    # uniqueness is what keeps February from being paid twice.
    second = client_for(office)
    second_csrf = log_in(second, office, "clerk")
    assert start(second, second_csrf, "2017-02").status_code == 303  # type: ignore[attr-defined]
    assert phase_of(wait_finished(client, "2017-02")) == "done"
    assert phase_of(wait_finished(second, "2017-02")) == "done"
    _, batches = ledger_state(office)
    assert sum(n for month, _, n in batches if month == "2017-02") == 1
    assert start(client, csrf, "2017-02").status_code == 303  # type: ignore[attr-defined]  # finished: may run again
    rerun = wait_finished(client, "2017-02")
    assert "0 笔，0.00 元" in rerun  # nothing new accrues
    assert ledger_state(office)[1] == batches


def test_the_child_acts_only_as_the_account_as_it_is_now(office: OfficeLedger) -> None:
    """The server checked the session; the child checks the account again (role and version)."""
    db = database_from_url(office.url)
    order = {"db": {"url": db.url, "kind": db.kind, "env": db.env}, "month": "2017-02"}
    for name, version, rule in (("auditor", 1, "AuditorIsReadOnly"), ("clerk", 99, "AccountChanged")):
        done = subprocess.run(
            [sys.executable, "-m", CHILD_MODULE],
            input=json.dumps({**order, "name": name, "version": version}) + "\n",
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        lines = [json.loads(line) for line in done.stdout.splitlines()]
        assert lines[-1]["error"]["rule"] == rule, done.stdout + done.stderr
    assert ledger_state(office)[0] == ["2017-01"]


def test_a_refused_run_shows_its_rule_in_chinese_on_the_page(client: TestClient, office: OfficeLedger) -> None:
    """A rule the month-end itself refuses (here: the clerk's account changed after the page was sent,
    as the child sees it) ends the job `failed`, with the rule in place."""
    log_in(client, office, "clerk")
    assert client.get("/month-end").status_code == 200
    jobs = client.app.state.month_end_jobs  # type: ignore[attr-defined]  # the server's table, as the POST uses it
    job, started = jobs.start("2017-02", name="clerk", version=99)
    assert started
    html = wait_finished(client, "2017-02")
    assert phase_of(html) == "failed" and job.error_rule == "AccountChanged"
    assert "账户在会话期间已变更" in html and "（AccountChanged）" in html
    assert ledger_state(office)[0] == ["2017-01"]


# --- 补发退回 -------------------------------------------------------------------------------------------------


def test_a_returned_batch_offers_no_reissue_until_the_account_is_corrected(
    client: TestClient, office: OfficeLedger, tmp_path: Path
) -> None:
    batch = returned_and_corrected(office, tmp_path, correct=False)
    csrf = log_in(client, office, "clerk")
    page = client.get(f"/batches/{batch}")
    assert "本批次退回 1 笔：已补发 0 笔，账户已更正待补发 0 笔，待更正账户 1 笔" in page.text
    assert 'data-test="reissue-submit"' not in page.text and "须先更正账户" in page.text
    refused = client.post(f"/batches/{batch}/reissue", data={"csrf_token": csrf})
    assert refused.status_code == 400 and "NothingToReissue" in refused.text
    assert ledger_state(office)[0] == ["2017-01"]


def test_reissue_runs_the_month_again_and_pays_the_corrected_return_once(
    client: TestClient, office: OfficeLedger, tmp_path: Path
) -> None:
    batch = returned_and_corrected(office, tmp_path)
    csrf = log_in(client, office, "clerk")
    page = client.get(f"/batches/{batch}")
    assert "账户已更正待补发 1 笔" in page.text and 'data-test="reissue-submit"' in page.text
    assert "将重新运行 2017-01 月结" in page.text  # the latest month run up to today's (2017-01)
    checker = client_for(office)
    checker_csrf = log_in(checker, office, "checker")
    checker_page = checker.get(f"/batches/{batch}")
    assert 'data-test="reissue-summary"' in checker_page.text and 'data-test="reissue-submit"' not in checker_page.text
    assert client.post(f"/batches/{batch}/reissue", data={}).status_code == 403  # no CSRF token
    started = client.post(f"/batches/{batch}/reissue", data={"csrf_token": csrf}, follow_redirects=False)
    assert started.status_code == 303 and started.headers["location"] == "/month-end?month=2017-01&started=1"
    done = wait_finished(client, "2017-01")
    assert phase_of(done) == "done" and 'data-test="monthend-reissued">1 笔' in done
    with service_of(office) as service:
        reissued = [b for b in service.batches("2017-01") if b.programme == "rural_dibao" and b.id.hex != batch]
        assert [len(b.payment_ids) for b in reissued] == [1]
        assert service.batch_returns(batch).reissued == 1
    assert "已补发 1 笔，账户已更正待补发 0 笔" in client.get(f"/batches/{batch}").text
    assert client.post(f"/batches/{batch}/reissue", data={"csrf_token": csrf}).status_code == 400  # nothing left
    assert checker.post(f"/batches/{batch}/reissue", data={"csrf_token": checker_csrf}).status_code == 403
