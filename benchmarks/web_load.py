"""Web load benchmark: `python -m benchmarks.web_load --payments 100000 --users 20` (issue 15, "Load").

1. Builds a ledger as an office has it: `yikatong init --admin admin`, a clerk who starts the month-end,
   USERS clerks who browse, the shipped policy and N synthetic enrolments (one payment each:
   ledger.synthetic, imported as benchmarks/month_end.py does).
2. Starts the real server, `yikatong serve`, in a child process (the load generator's own threads must
   not share its GIL).
3. The clerk starts the month-end of 2017-01 through the page (POST /month-end/start), and while it runs
   USERS concurrent users log in and browse: the dashboard (`/?today=2017-01-20`: January's figures, the
   month being run), the batch list of January and the month-end's progress fragment, each user waiting
   THINK seconds between pages (a person reads a page; htmx polls the progress once a second).
4. Prints: requests, failures (any status but 200, any error), median and 95th percentile latency of the
   dashboard and of each page, the month-end's duration, the machine's load average during the run.

Target (issue 15), N = 100 000 with 20 users on 2 cores: no request fails, dashboard p95 < 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.month_end import IMPORT_CHUNK
from ledger.audit import record_checkpoint
from ledger.bootstrap import database_from_url, open_service
from ledger.demo import shipped_policy_text
from ledger.synthetic import synthetic_rows

MONTH = "2017-01"
TODAY = "2017-01-20"  # the dashboard as of a day in the month being run
PAGES = {
    "dashboard": f"/?today={TODAY}",
    "batches": f"/batches?month={MONTH}",
    "progress": f"/month-end/progress?month={MONTH}",
}
SERVER_START_S_MAX = 60
RUN_S_MAX = 3_600
REQUEST_TIMEOUT_S = 30
SLOW_S = 1.0  # a request slower than this is listed with when it came
_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')
_PHASE = re.compile(r'data-phase="([a-z]+)"')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=100_000, help="enrolments to generate (one payment each)")
    parser.add_argument("--users", type=int, default=20, help="concurrent users browsing while the month-end runs")
    parser.add_argument("--think", type=float, default=1.0, help="seconds each user waits between pages")
    parser.add_argument("--folder", type=Path, help="where the SQLite ledger goes (default: a temporary folder)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    folder = args.folder or Path(tempfile.mkdtemp(prefix="yikatong-web-load-"))
    figures = measure(folder, payments=args.payments, users=args.users, think_s=args.think)
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:34} {value}")
    return 0


# --- the ledger --------------------------------------------------------------------------------------------


def build_ledger(folder: Path, payments: int, users: int) -> tuple[str, dict[str, str]]:
    """A new ledger in `folder` with its accounts and `payments` enrolments; (its URL, name → password)."""
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'web-load.db'}"
    passwords = {"admin": secrets.token_urlsafe(15)}
    admin_file = folder / "admin.password"
    admin_file.write_text(passwords["admin"] + "\n", encoding="utf-8")
    admin_file.chmod(0o600)
    created = _yikatong(url, "init", "--admin", "admin", "--password-file", str(admin_file))
    if created.returncode != 0:
        raise SystemExit(f"init failed: {created.stderr}")
    service = open_service(database_from_url(url))
    try:
        admin = service.authenticate("admin", passwords["admin"])
        for name in ["clerk", *(f"user{i:02d}" for i in range(1, users + 1))]:
            passwords[name] = secrets.token_urlsafe(15)
            service.add_account(name, "clerk", passwords[name], actor=admin)
        service.load_policy(shipped_policy_text(), "ulanqab-2017.toml", actor="admin")
        rows = tuple(synthetic_rows(payments))
        for start in range(0, payments, IMPORT_CHUNK):
            service.registry.import_roster(rows[start : start + IMPORT_CHUNK], "synthetic", "clerk", None)
        record_checkpoint(service.registry)  # as `roster import` does: sealed before the month-end
    finally:
        service.registry.close()
        service.disbursement.close()
    return url, passwords


def _yikatong(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledger", "--db", url, *args], capture_output=True, text=True, check=False
    )


# --- the server --------------------------------------------------------------------------------------------


def start_server(url: str, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (folder / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "ledger", "--db", url, "serve", "--port", str(port)], stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_S_MAX
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: see {folder / 'server.log'}")
        try:
            if httpx.get(f"{base}/login", timeout=2).status_code == 200:
                return server, base
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not start")


def log_in(base: str, name: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=REQUEST_TIMEOUT_S, follow_redirects=True)
    done = client.post("/login", data={"username": name, "password": password})
    if done.status_code != 200 or "csrf_token" not in done.text:  # followed to the dashboard
        raise SystemExit(f"login of {name} failed: {done.status_code}")
    return client


# --- the load ----------------------------------------------------------------------------------------------


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {page: [] for page in PAGES})
    slow: list[tuple[float, str, float]] = field(default_factory=list)  # (began, page, seconds) over 1 s
    logins: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values()) + len(self.logins)


def browse(base: str, name: str, password: str, tally: Tally, stop: threading.Event, think_s: float) -> None:
    """One person: log in, then the dashboard, the batch list and the progress, in turn, until `stop`."""
    started = time.perf_counter()
    try:
        client = log_in(base, name, password)
    except (httpx.HTTPError, SystemExit) as e:
        with tally.lock:
            tally.failures.append(f"{name} login: {e}")
        return
    with tally.lock:
        tally.logins.append(time.perf_counter() - started)
    turn = 0
    try:
        while not stop.is_set():
            page = list(PAGES)[turn % len(PAGES)]
            turn += 1
            began = time.perf_counter()
            try:
                answer = client.get(PAGES[page])
                failed = None if answer.status_code == 200 else f"{name} {page}: HTTP {answer.status_code}"
            except httpx.HTTPError as e:
                failed = f"{name} {page}: {type(e).__name__}: {e}"
            took = time.perf_counter() - began
            with tally.lock:
                tally.latencies[page].append(took)
                if took > SLOW_S:
                    tally.slow.append((began, page, took))
                if failed:
                    tally.failures.append(failed)
            stop.wait(think_s)
    finally:
        client.close()


def measure(folder: Path, *, payments: int, users: int, think_s: float) -> dict[str, Any]:
    began = time.perf_counter()
    url, passwords = build_ledger(folder, payments, users)
    build_s = time.perf_counter() - began
    server, base = start_server(url, folder)
    try:
        return _run(base, passwords, payments=payments, users=users, think_s=think_s, build_s=build_s)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _run(
    base: str, passwords: dict[str, str], *, payments: int, users: int, think_s: float, build_s: float
) -> dict[str, Any]:
    clerk = log_in(base, "clerk", passwords["clerk"])
    page = clerk.get("/month-end")
    csrf = _CSRF.search(page.text)
    if csrf is None:
        raise SystemExit("no CSRF token on the month-end page")
    tally = Tally()
    stop = threading.Event()
    people = [
        threading.Thread(target=browse, args=(base, n, passwords[n], tally, stop, think_s), daemon=True)
        for n in passwords
        if n.startswith("user")
    ]
    load: list[float] = []
    started = time.perf_counter()
    answer = clerk.post("/month-end/start", data={"csrf_token": csrf.group(1), "month": MONTH})
    if answer.status_code != 200:
        raise SystemExit(f"the month-end did not start: HTTP {answer.status_code}")
    for person in people:
        person.start()
    phase = "starting"
    fragment = ""
    while time.perf_counter() - started < RUN_S_MAX:
        fragment = clerk.get(PAGES["progress"]).text
        found = _PHASE.search(fragment)
        phase = found.group(1) if found else "?"
        load.append(os.getloadavg()[0])
        if phase in ("done", "failed"):
            break
        time.sleep(0.5)
    run_s = time.perf_counter() - started
    stop.set()
    for person in people:
        person.join(timeout=REQUEST_TIMEOUT_S + think_s)
    clerk.close()
    dashboard = tally.latencies["dashboard"]
    figures: dict[str, Any] = {
        "enrolments": payments,
        "users": users,
        "think_s": think_s,
        "build_s": round(build_s, 1),
        "month_end": phase,
        "month_end_s": round(run_s, 1),
        "month_end_payments": _payments(fragment),
        "requests": tally.requests(),
        "failures": len(tally.failures),
        "dashboard_requests": len(dashboard),
        "dashboard_median_s": _quantile(dashboard, 0.5),
        "dashboard_p95_s": _quantile(dashboard, 0.95),
        "dashboard_max_s": round(max(dashboard), 3) if dashboard else None,
    }
    for name in ("batches", "progress"):
        figures[f"{name}_median_s"] = _quantile(tally.latencies[name], 0.5)
        figures[f"{name}_p95_s"] = _quantile(tally.latencies[name], 0.95)
    figures["login_median_s"] = _quantile(tally.logins, 0.5)
    figures["load_average_1m_max"] = round(max(load), 2) if load else None
    figures["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    figures["cores"] = os.cpu_count()
    if tally.failures:
        figures["first_failures"] = tally.failures[:5]
    # When the slow requests came, in seconds after the month-end was started (its end: month_end_s).
    figures["slow_requests"] = [f"{page} at {began - started:.1f} s: {took:.2f} s" for began, page, took in tally.slow]
    return figures


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1], 3)


def _payments(fragment: str) -> str:
    found = re.search(r'data-test="monthend-payments">([^<]*)<', fragment)
    return found.group(1) if found else ""


if __name__ == "__main__":
    sys.exit(main())
