"""Shared builders for the web application's tests (tests/web, and the browser tests): an office ledger
with accounts and a month-end's batches, a test client on it, and a logged-in session's CSRF token."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from fastapi.testclient import TestClient

from ledger.accounts import read_password_file
from ledger.bootstrap import database_from_url
from ledger.web.app import create_app
from ledger.web.auth import LoginThrottle
from tests.conftest import POLICY
from tests.helpers.ledgers import HEADER, LI, PASSWORD_FILES, WANG, _ref, with_accounts, yikatong

DB_NAME = "web.db"
TODAY = date(2017, 1, 3)  # the month-end of January 2017 has run; its batches fall due this month
_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


@dataclass(frozen=True)
class OfficeLedger:
    url: str
    folder: Path
    passwords: dict[str, str]  # account name → password (admin, clerk, checker, auditor)


def build_office_ledger(folder: Path) -> OfficeLedger:
    """`init --admin admin`, a clerk, a checker and an auditor, the shipped policy, two enrolments (李建华
    in 城镇低保, 王桂英 in 农村牧区低保) and the month-end of 2017-01: two batches, 待导出."""
    url = f"sqlite:///{folder / DB_NAME}"
    files = with_accounts(url, folder)
    assert yikatong(url, "policy", "load", str(POLICY), as_="admin").returncode == 0
    roster = folder / "roster.csv"
    roster.write_text(HEADER + LI + WANG, encoding="utf-8")
    imported = yikatong(url, "roster", "import", str(roster))
    assert imported.returncode == 0, imported.stderr
    ran = yikatong(url, "run", "2017-01")
    assert ran.returncode == 0, ran.stderr
    return OfficeLedger(url, folder, {name: read_password_file(path) for name, path in files.items()})


def copy_office_ledger(built: OfficeLedger, folder: Path) -> OfficeLedger:
    """A copy of a built ledger (database, key files, password files) in `folder`, for one test to change."""
    shutil.copytree(built.folder, folder, dirs_exist_ok=True)
    url = f"sqlite:///{folder / DB_NAME}"
    PASSWORD_FILES[_ref(url)] = {name: folder / f"{name}.password" for name in built.passwords}
    return OfficeLedger(url, folder, dict(built.passwords))


def client_for(
    ledger: OfficeLedger,
    *,
    throttle: LoginThrottle | None = None,
    https: bool = False,
    clock: Callable[[], float] = time.time,
) -> TestClient:
    app = create_app(database_from_url(ledger.url), throttle=throttle, today=lambda: TODAY, clock=clock)
    return TestClient(app, base_url="https://testserver" if https else "http://testserver")


def log_in(client: TestClient, ledger: OfficeLedger, name: str) -> str:
    """Log `name` in on `client` (its cookie kept by the client); returns the session's CSRF token."""
    done = client.post("/login", data={"username": name, "password": ledger.passwords[name]}, follow_redirects=False)
    assert done.status_code == 303, done.text
    return csrf_of(client.get("/batches").text)


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "no csrf_token on the page"
    return found.group(1)
