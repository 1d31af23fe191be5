"""The month-end as a background job of the web server: started from the 月结 page, run in a child process,
followed by polling (examples/web.md, 月结).

Why a child process and not a thread: the month-end is CPU-bound Python; in the server's process it would
hold the GIL for seconds at a time while the dashboard must answer in under a second (issue 15, "Load").
The child runs at a lower priority (`CHILD_NICE`) so that on a small machine the people at their screens
come first.

Guarantees:
- The child acts as the logged-in account without a password: the server has checked the session and the
  role ("run"); the child looks the account up again at the session's version and checks the role again
  (a changed or disabled account refuses the run), then calls `LedgerService.month_end` with it as actor,
  exactly as `yikatong run` does (ledger/cli/ledger.py `run`).
- One job per server at a time: a start while one runs starts nothing and returns the running job. Two
  servers (or the CLI) starting the same month at once still pay nobody twice: the ledger's uniqueness
  refuses the second payment of a period (docs/month-end.md), as the reliability harness proves.
- Job state (progress, the result, the refusal) lives in the server, keyed by month, so the page can be
  left and come back. A server restarted mid-run forgets the job; what the child wrote stays, and running
  the month again accrues only what is missing.
- The child speaks one JSON object per line on its stdout (its own prints go to stderr): `{"phase": …,
  "total": …}`, `{"done": n}` (cumulative), then `{"result": …}` or `{"error": {"rule", "message"}}`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

from domain.errors import RuleBroken
from domain.periods import Month
from ledger.accounts import identity_of
from ledger.bootstrap import open_service
from ledger.roles import require_account
from ledger.storage import Database

CHILD_NICE = 10  # the month-end yields the CPU to the server's requests
CHILD_MODULE = "ledger.web.jobs"
PROGRESS_EVERY_S = 0.25  # at most this often a progress line while reading the registry
STDERR_TAIL_CHARS = 2_000  # of a child that died without saying why
JOBS_KEPT_MAX = 24  # finished jobs remembered per server (one per month: two years)

RUNNING = ("starting", "reading", "accruing", "finishing")


@dataclass
class MonthEndJob:
    """One month-end started from the web, as the page shows it."""

    month: str
    actor: str
    started_at: float
    phase: str = "starting"  # starting → reading → accruing → finishing → done | failed
    done: int = 0  # persons gone through (of `total`)
    total: int | None = None
    accruing_since: float | None = None
    accruing_until: float | None = None  # the rate is of the accrual alone, not the seal after it
    finished_at: float | None = None
    result: dict[str, Any] | None = None
    error_rule: str = ""
    error_message: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def running(self) -> bool:
        return self.phase in RUNNING

    def rate(self, now: float) -> float | None:
        """Persons per second since accruing began (None before it began)."""
        if self.accruing_since is None:
            return None
        end = self.accruing_until or self.finished_at or now
        return self.done / max(end - self.accruing_since, 1e-3)

    def percent(self) -> int:
        if self.phase == "done":
            return 100
        if not self.total:
            return 0
        return min(100, self.done * 100 // self.total)

    def apply(self, message: dict[str, Any], now: float) -> None:
        """One line from the child."""
        with self.lock:
            if "phase" in message:
                self.phase = message["phase"]
                if "total" in message:
                    self.total = message["total"]
                if self.phase == "accruing":
                    self.accruing_since = now
                    self.done = 0
                if self.phase == "finishing":
                    self.accruing_until = now
            if "done" in message:
                self.done = message["done"]
            if "result" in message:
                self.result = message["result"]
                self.phase = "done"
                self.finished_at = now
            if "error" in message:
                self.error_rule = message["error"]["rule"]
                self.error_message = message["error"]["message"]
                self.phase = "failed"
                self.finished_at = now

    def died(self, returncode: int, stderr_tail: str, now: float) -> None:
        """The child ended without a result or a refusal (killed, crashed)."""
        with self.lock:
            if self.running:
                self.phase = "failed"
                self.error_rule = "MonthEndDied"
                last = [line for line in stderr_tail.splitlines() if line.strip()][-1:]  # the exception's line
                self.error_message = f"exit code {returncode}: {''.join(last)}".strip()
                self.finished_at = now


class MonthEndJobs:
    """The month-end jobs of one server on one ledger."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock
        self._jobs: dict[str, MonthEndJob] = {}
        self._lock = threading.Lock()

    def get(self, month: str) -> MonthEndJob | None:
        return self._jobs.get(month)

    def running(self) -> MonthEndJob | None:
        return next((job for job in self._jobs.values() if job.running), None)

    def start(self, month: str, *, name: str, version: int) -> tuple[MonthEndJob, bool]:
        """Start the month-end of `month` as account `name` (at `version`); (the job, whether it started).
        A job already running (of any month) is returned instead: one month-end at a time per server."""
        with self._lock:
            busy = self.running()
            if busy is not None:
                return busy, False
            job = MonthEndJob(month=month, actor=name, started_at=self.clock())
            self._forget_old()
            self._jobs[month] = job
            order = {"db": {"url": self.db.url, "kind": self.db.kind, "env": self.db.env}, "name": name,
                     "version": version, "month": month}  # fmt: skip
            _spawn(job, order, self.clock)
            return job, True

    def _forget_old(self) -> None:
        finished = sorted((j for j in self._jobs.values() if not j.running), key=lambda j: j.started_at)
        for job in finished[: max(0, len(self._jobs) - JOBS_KEPT_MAX + 1)]:
            del self._jobs[job.month]


def _spawn(job: MonthEndJob, order: dict[str, Any], clock: Callable[[], float]) -> None:
    """The child process and the thread that reads its lines (blocked in read, it holds no GIL)."""
    stderr = tempfile.TemporaryFile(prefix="yikatong-month-end-")  # noqa: SIM115 (the follower thread closes it)
    child = subprocess.Popen(
        [sys.executable, "-m", CHILD_MODULE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        encoding="utf-8",
    )
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(json.dumps(order) + "\n")  # the key travels on a pipe, never on the command line
    child.stdin.close()
    threading.Thread(target=_follow, args=(job, child, child.stdout, stderr, clock), daemon=True).start()


def _follow(
    job: MonthEndJob, child: subprocess.Popen[str], lines: IO[str], stderr: IO[bytes], clock: Callable[[], float]
) -> None:
    try:
        for line in lines:
            try:
                job.apply(json.loads(line), clock())
            except (ValueError, KeyError, TypeError):
                continue  # not one of ours: the child's protocol is the only thing on this pipe
        returncode = child.wait()
        stderr.seek(0)
        job.died(returncode, stderr.read()[-STDERR_TAIL_CHARS:].decode("utf-8", "replace"), clock())
    finally:
        lines.close()
        stderr.close()


# --- the child --------------------------------------------------------------------------------------------


def child_main() -> int:
    """`python -m ledger.web.jobs`: one month-end, its order on stdin, its progress on stdout."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    sys.stdout = sys.stderr  # anything else printed stays off the protocol
    order = json.loads(sys.stdin.readline())
    if hasattr(os, "nice"):
        os.nice(CHILD_NICE)

    def emit(message: dict[str, Any]) -> None:
        out.write(json.dumps(message, ensure_ascii=False) + "\n")
        out.flush()

    try:
        emit({"result": _month_end(order, emit)})
    except RuleBroken as e:
        emit({"error": {"rule": e.rule, "message": str(e)}})
    return 0


def _month_end(order: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    db = Database(url=order["db"]["url"], kind=order["db"]["kind"], env=order["db"]["env"])
    month = Month.parse(order["month"])
    service = open_service(db)
    try:
        identity = identity_of(service.registry, order["name"], order["version"])
        require_account(identity, "run")
        done = service.month_end(month, actor=identity.name, progress=_reporter(emit))
    finally:
        service.registry.close()
        service.disbursement.close()
    return {**done.as_json(), "batch_ids": sorted(b.hex for b in done.summary.batches)}


def _reporter(emit: Callable[[dict[str, Any]], None]) -> Callable[[str, int | None], Any]:
    """A `Progress` (ledger.service) that reports on the pipe: reading the registry has no total; the
    accrual's total is the registry's persons; after it come the seal and the read models' catch-up."""

    @contextmanager
    def progress(_label: str, total: int | None) -> Iterator[Callable[[int], None]]:
        phase = "reading" if total is None else "accruing"
        emit({"phase": phase, "total": total})
        count = 0
        last = 0.0

        def advance(n: int) -> None:
            nonlocal count, last
            count += n
            now = time.monotonic()
            if phase == "accruing" or now - last >= PROGRESS_EVERY_S:
                last = now
                emit({"done": count})

        yield advance
        if phase == "accruing":
            emit({"done": count})
            emit({"phase": "finishing"})

    return progress


if __name__ == "__main__":
    sys.exit(child_main())
