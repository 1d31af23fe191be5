"""The web application in a real browser (issue 15): Debian's Chromium driven by pytest-playwright through
its executable path (Playwright's own browser download cannot reach the internet here; `make test`
installs Chromium and a CJK font, Makefile target `browser`). A missing browser fails, it never skips.

The server is the real application (`ledger.web.app.create_app`) under uvicorn in a thread, on a copy of
an office ledger with its accounts and a January month-end (tests/helpers/web.py). Screenshots of every
page a test opens go to `test-results/screenshots/` (pytest-playwright's `--output` folder)."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from ledger.bootstrap import database_from_url
from ledger.web.app import create_app
from tests.helpers.web import TODAY, OfficeLedger, build_office_ledger, copy_office_ledger

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    if shutil.which("chromium") is None:
        pytest.fail("Debian's Chromium is not installed: run `make browser` (apt-get install chromium)")
    return {**browser_type_launch_args, "executable_path": CHROMIUM}


@pytest.fixture(scope="session")
def built_office(tmp_path_factory: pytest.TempPathFactory) -> OfficeLedger:
    return build_office_ledger(tmp_path_factory.mktemp("browser-office"))


@pytest.fixture
def office(built_office: OfficeLedger, tmp_path: Path) -> OfficeLedger:
    return copy_office_ledger(built_office, tmp_path / "office")


@pytest.fixture
def server(office: OfficeLedger) -> Iterator[str]:
    """The application on `office`, served on a free local port for the test's length."""
    app = create_app(database_from_url(office.url), today=lambda: TODAY)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not running.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the web application did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    thread.join(timeout=30)


@pytest.fixture
def shots(pytestconfig: pytest.Config, request: pytest.FixtureRequest) -> Path:
    folder = Path(pytestconfig.getoption("--output")) / "screenshots" / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    return folder
