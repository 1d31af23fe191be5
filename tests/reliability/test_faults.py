"""Disk and database faults (issue 7, part 6): the command fails cleanly — exit 1, one message, no
traceback, nothing half-done — and a rerun once the fault is gone completes the work, every payment
exactly once.

Faults, and how each is made real on a machine where the tests run as root (root ignores file modes,
so chmod 0444 would prove nothing):
- the database read-only: `chattr +i` on the SQLite file (immutable: even root gets EPERM), and the
  database's folder bind-mounted read-only (EROFS, as when the kernel remounts a failing disk);
- the disk full: a tmpfs of a few hundred KiB mounted on the export folder or under the database and
  filled up, plus `os.write`/`os.fsync`/`os.replace` failing with ENOSPC inside `write_atomically`;
- PostgreSQL gone in the middle of a month-end: between two chunks every backend of this test's
  connections is terminated (`pg_terminate_backend`, selected by the application_name this test gives
  its connections through PGAPPNAME, so concurrent sessions are untouched); and a "lost answer", where
  a chunk commits and the connection dies before the client hears so. The server is never restarted:
  other sessions share it, and to the client a terminated backend is what a restart looks like.

Tests that need root (chattr, mount) skip when the tools or privileges are missing.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from eventsourcing.persistence import OperationalError

import ledger.disbursement
import ledger.exports
from domain.periods import Month
from ledger.bootstrap import database_from_url, open_apps
from ledger.cli import main
from ledger.exports import approve_batch, export_batch, temporary_writer
from ledger.reports import balances_rows, catch_up
from ledger.roster import read_roster
from ledger.storage import Database
from tests.conftest import PG_ADMIN, PG_URL, POLICY
from tests.helpers.ledgers import HEADER, resident_id, row

REGION = "150900"
TRACEBACK = "Traceback"
PERSONS = 6  # each: urban dibao January–March and rural dibao Q1 in a March month-end (4 payments)
CHUNK = 3  # payments per month-end chunk here, so that a small roster makes many chunks


class TracebackShown(AssertionError):
    """A command failed with a traceback instead of a clean message: the known bug this file pins."""


# --- a small ledger ------------------------------------------------------------------------------


def roster_lines() -> list[str]:
    lines = []
    for serial in range(1, PERSONS + 1):
        id_number = resident_id("150902", f"19{40 + serial}0101", serial)
        programme = "urban_dibao" if serial % 2 else "rural_dibao"
        lines.append(row(id_number, programme, members=1 + serial % 3, income=f"{serial * 10}.00"))
        other = "rural_dibao" if programme == "urban_dibao" else "urban_dibao"
        lines.append(row(id_number, other, members=1 + serial % 3, income=f"{serial * 10}.00"))
    return lines


def prepared_ledger(db: Database, folder: Path) -> None:
    """Policy and roster loaded, the read models caught up (as every command leaves them), nothing run."""
    registry, disbursement = open_apps(db)
    try:
        registry.load_policy(POLICY.read_text(encoding="utf-8"), POLICY.name, "clerk")
        (folder / "roster.csv").write_text(HEADER + "".join(roster_lines()), encoding="utf-8")
        policy = registry.policy()
        rows = read_roster(folder / "roster.csv", region=REGION, programmes=policy.programmes)
        registry.import_roster(rows, "roster.csv", "clerk")
    finally:
        registry.close()
        disbursement.close()
    catch_up(db)


@contextmanager
def opened(db: Database) -> Iterator[tuple[Any, Any]]:
    registry, disbursement = open_apps(db)
    try:
        yield registry, disbursement
    finally:
        registry.close()
        disbursement.close()


def positions(db: Database) -> tuple[int, int]:
    with opened(db) as (registry, disbursement):
        return (registry.recorder.max_notification_id() or 0, disbursement.recorder.max_notification_id() or 0)


def paid_once(db: Database) -> dict[tuple[str, str, str], int]:
    """Every obligation's amount, after checking each has one payment in one batch and batches add up."""
    with opened(db) as (_, disbursement):
        batches = disbursement.batches()
        membership = Counter(pid for b in batches for pid in b.payment_ids)
        assert all(n == 1 for n in membership.values()), "a payment in two batches"
        views = disbursement.payment_views(membership)
        for batch in batches:
            assert batch.total_fen == sum(views[p].amount_fen for p in batch.payment_ids), "batch total = its sum"
        keys = Counter((v.id_number, v.programme, v.period) for v in views.values())
        assert all(n == 1 for n in keys.values()), f"paid twice: {[k for k, n in keys.items() if n > 1]}"
        folded = disbursement.balances().rows()
        assert balances_rows(db) == folded, "the read models equal the log"
        return {(v.id_number, v.programme, v.period): v.amount_fen for v in views.values()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str], int]:
    """What a March month-end pays when nothing goes wrong."""
    folder = tmp_path_factory.mktemp("reference")
    db = database_from_url(f"sqlite:///{folder / 'ledger.db'}")
    prepared_ledger(db, folder)
    with opened(db) as (registry, disbursement):
        disbursement.run_month_end(registry.read_registry(), Month(2017, 3), scope=REGION, actor="clerk")
    expected = paid_once(db)
    assert len(expected) == PERSONS * 4
    return expected


def yikatong(db: Database, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledger", "--db", db.url, "--as", "clerk", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def refused_cleanly(result: subprocess.CompletedProcess[str], *says: str) -> None:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    if TRACEBACK in result.stderr:
        raise TracebackShown(result.stderr[-1500:])
    assert result.stderr.strip(), "a message says why"
    for text in says:
        assert text in result.stderr, result.stderr


# --- root-only tools ---------------------------------------------------------------------------


def run_tool(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True)


def tool_works(*command: str) -> bool:
    try:
        run_tool(*command)
    except (OSError, subprocess.CalledProcessError):
        return False
    return True


@contextmanager
def immutable(path: Path) -> Iterator[None]:
    """`chattr +i`: nobody, root included, can write the file until the flag is removed."""
    if os.geteuid() != 0 or not shutil.which("chattr") or not tool_works("chattr", "+i", str(path)):
        pytest.skip("needs root and chattr on a filesystem with the immutable flag")
    try:
        yield
    finally:
        run_tool("chattr", "-i", str(path))


@contextmanager
def mounted(folder: Path, *how: str) -> Iterator[None]:
    """A mount on `folder` (skipped where mounting is not allowed), always unmounted afterwards."""
    if os.geteuid() != 0 or not tool_works("mount", *how, str(folder)):
        pytest.skip(f"needs root and permission to mount ({' '.join(how)})")
    try:
        yield
    finally:
        run_tool("umount", str(folder))


@contextmanager
def read_only_folder(folder: Path) -> Iterator[None]:
    with mounted(folder, "--bind", str(folder)):
        run_tool("mount", "-o", "remount,bind,ro", str(folder))
        yield


def fill(folder: Path, leave_kib: int) -> Path:
    """Fill the filesystem of `folder` until `leave_kib` KiB are free."""
    free_kib = shutil.disk_usage(folder).free // 1024
    filler = folder / "filler"
    with filler.open("wb") as f:
        f.write(b"\0" * max(0, free_kib - leave_kib) * 1024)
    return filler


# --- the database read-only ------------------------------------------------------------------------


def test_a_read_only_database_file_fails_cleanly_and_a_rerun_with_write_access_completes(
    tmp_path: Path, reference: dict[tuple[str, str, str], int]
) -> None:
    db = database_from_url(f"sqlite:///{tmp_path / 'ledger.db'}")
    prepared_ledger(db, tmp_path)
    extra = HEADER + row(resident_id("150921", "19610101", 99), "urban_dibao", region="150921")
    (tmp_path / "more.csv").write_text(extra, encoding="utf-8")
    id_number = resident_id("150902", "19410101", 1)
    writes = [
        ("roster", "import", str(tmp_path / "more.csv")),
        ("decide", "suspend", id_number, "rural_dibao", "--on", "2017-07-01", "--reason", "集民发〔2017〕7号"),
        ("account", "set", id_number, "--bank", "103191000012", "--account", "6228480045001199999", "--reason", "x"),
        ("run", "2017-03"),
    ]
    before = positions(db)
    with immutable(tmp_path / "ledger.db"):
        for command in writes:
            refused_cleanly(yikatong(db, *command), "readonly database")
        assert positions(db) == before, "nothing recorded"
    for command in writes:  # with write access again, the same commands complete
        result = yikatong(db, *command)
        assert result.returncode == 0, result.stderr
    paid = paid_once(db)
    assert {k: v for k, v in paid.items() if k in reference} == reference
    assert len(paid) == len(reference) + 3  # the person imported afterwards: January to March


def test_a_read_only_filesystem_fails_cleanly_and_a_rerun_with_write_access_completes(
    tmp_path: Path, reference: dict[tuple[str, str, str], int]
) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    db = database_from_url(f"sqlite:///{folder / 'ledger.db'}")
    prepared_ledger(db, folder)
    with read_only_folder(folder):
        refused = yikatong(db, "run", "2017-03")
    rerun = yikatong(db, "run", "2017-03")
    assert rerun.returncode == 0, rerun.stderr
    assert paid_once(db) == reference
    refused_cleanly(refused)  # last, so the rerun above is checked even while this fails


# --- the disk full ---------------------------------------------------------------------------------


def exported_ledger(folder: Path) -> tuple[Database, str]:
    """The March month-end run; the id of the biggest batch."""
    db = database_from_url(f"sqlite:///{folder / 'ledger.db'}")
    prepared_ledger(db, folder)
    with opened(db) as (registry, disbursement):
        disbursement.run_month_end(registry.read_registry(), Month(2017, 3), scope=REGION, actor="clerk")
        biggest = max(disbursement.batches(), key=lambda b: b.count)
        return db, biggest.id.hex


def exports_of(db: Database, batch_hex: str) -> list[Any]:
    with opened(db) as (_, disbursement):
        return list(disbursement.batch_by_id(batch_hex).exports)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "filler")


def test_a_full_disk_during_an_export_leaves_no_file_records_nothing_and_a_rerun_completes(tmp_path: Path) -> None:
    import hashlib
    import json

    db, batch_hex = exported_ledger(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    with mounted(out, "-t", "tmpfs", "-o", "size=256k", "tmpfs"):
        filler = fill(out, leave_kib=4)  # less than one pain.001 file of this batch needs
        refused = yikatong(db, "batch", "export", batch_hex, "--format", "pain001", "--out", str(out))
        assert refused.returncode == 1 and "No space left on device" in refused.stderr, refused.stderr
        assert leftovers(out) == [], "no file under the final name and no temporary file"
        assert exports_of(db, batch_hex) == [], "the export is not recorded"
        filler.unlink()  # space again
        done = yikatong(db, "batch", "export", batch_hex, "--format", "pain001", "--out", str(out), "--json")
        assert done.returncode == 0, done.stderr
        (name,) = leftovers(out)
        (written,) = json.loads(done.stdout)["files"]
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == written["sha256"]
    ((_, files, _),) = exports_of(db, batch_hex)
    assert files == ((name, written["sha256"]),)
    refused_cleanly(refused, "No space left on device")  # last: everything above holds even while this fails


class _FullDisk:
    """A file object whose write stores half the bytes, then fails as a full disk does."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.real.close()

    def write(self, data: bytes) -> int:
        self.real.write(data[: len(data) // 2])
        self.real.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _enospc(*_: Any, **__: Any) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


_REAL_FDOPEN = os.fdopen


def _full_disk_fdopen(fd: int, *args: Any, **kwargs: Any) -> _FullDisk:
    return _FullDisk(_REAL_FDOPEN(fd, *args, **kwargs))


def _cannot_put_in_place(patch: pytest.MonkeyPatch) -> None:
    """The last step fails: hard-linking the file into place (an export never replaces a file) and the
    rename it falls back to on a file system without hard links (`--force` renames)."""
    patch.setattr(ledger.exports.os, "link", _enospc)
    patch.setattr(ledger.exports.os, "replace", _enospc)


# Where write_atomically can meet a full disk: writing the bytes, forcing them out, putting them in place.
FAULTS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "write": lambda patch: patch.setattr(ledger.exports.os, "fdopen", _full_disk_fdopen),
    "fsync": lambda patch: patch.setattr(ledger.exports.os, "fsync", _enospc),
    "rename": _cannot_put_in_place,
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("fmt", ["pain001", "onecard", "xlsx"])
def test_a_write_failing_at_any_point_of_an_export_leaves_nothing_and_a_rerun_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str, fmt: str
) -> None:
    db, batch_hex = exported_ledger(tmp_path)
    out = tmp_path / "out"
    with opened(db) as (registry, disbursement), monkeypatch.context() as patch:
        FAULTS[fault](patch)
        before = disbursement.recorder.max_notification_id()
        with pytest.raises(OSError) as failed:
            export_batch(disbursement, registry.policy(), batch_hex, fmt=fmt, out=out, actor="maker")
        assert failed.value.errno == errno.ENOSPC
        assert disbursement.recorder.max_notification_id() == before, "the export is not recorded"
    assert leftovers(out) == [], "no file under the final name and no temporary file"
    with opened(db) as (registry, disbursement):
        _, files = export_batch(disbursement, registry.policy(), batch_hex, fmt=fmt, out=out, actor="maker")
        approve_batch(disbursement, batch_hex, "checker")
    assert leftovers(out) == sorted(f.path.name for f in files)
    assert len(exports_of(db, batch_hex)) == 1


def test_the_temporary_file_of_a_killed_export_is_removed_by_the_rerun(tmp_path: Path) -> None:
    """kill -9 between writing and renaming leaves `.NAME.HOST-PID.xxxx.part`; the next export of that
    name removes it once its writer is gone, and leaves alone one whose writer still runs, another
    file's, and another host's."""
    db, batch_hex = exported_ledger(tmp_path)
    out = tmp_path / "out"
    with opened(db) as (registry, disbursement):
        _, files = export_batch(disbursement, registry.policy(), batch_hex, fmt="pain001", out=out, actor="maker")
    (name,) = [f.path.name for f in files]
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        dead = out / f".{name}.{temporary_writer(int(child.stdout))}.k2v8.part"
        alive = out / f".{name}.{temporary_writer(sleeper.pid)}.x9q1.part"
        other = out / f".other.xml.{temporary_writer(int(child.stdout))}.zz00.part"  # another file's: not this export's
        elsewhere = out / f".{name}.otherhost-{int(child.stdout)}.aa11.part"  # another host's pids: not ours
        for path in (dead, alive, other, elsewhere):
            path.write_bytes(b"<half")
        with opened(db) as (registry, disbursement):
            export_batch(disbursement, registry.policy(), batch_hex, fmt="pain001", out=out, actor="maker")
        assert not dead.exists()
        assert alive.exists() and other.exists() and elsewhere.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sorted(p.name for p in out.iterdir()) == sorted([name, alive.name, other.name, elsewhere.name])


def test_a_full_disk_under_the_database_fails_the_month_end_cleanly_and_a_rerun_completes(
    tmp_path: Path, reference: dict[tuple[str, str, str], int]
) -> None:
    """The month-end on a disk with 0 to 192 KiB left; each rerun with space again pays everyone once."""
    tracebacks = []
    for leave_kib in (0, 48, 64, 96, 192):
        folder = tmp_path / f"disk-{leave_kib}"
        folder.mkdir()
        with mounted(folder, "-t", "tmpfs", "-o", "size=2m", "tmpfs"):
            db = database_from_url(f"sqlite:///{folder / 'ledger.db'}")
            prepared_ledger(db, folder)
            filler = fill(folder, leave_kib)
            result = yikatong(db, "run", "2017-03")
            filler.unlink()
            if result.returncode != 0:
                try:
                    refused_cleanly(result)
                except TracebackShown:
                    tracebacks.append(f"{leave_kib} KiB left: {result.stderr.strip().splitlines()[-1]}")
            rerun = yikatong(db, "run", "2017-03")
            assert rerun.returncode == 0, rerun.stderr
            assert paid_once(db) == reference
    if tracebacks:
        raise TracebackShown("\n".join(tracebacks))


# --- the connection lost in the middle of a month-end ---------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """A fresh store; on PostgreSQL its own schema, and its connections named so only they are cut."""
    if request.param == "sqlite":
        yield database_from_url(f"sqlite:///{tmp_path / 'ledger.db'}")
        return
    request.getfixturevalue("pg_reachable")
    schema = f"t_fault_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("PGAPPNAME", f"ykt-{schema}")
    yield database_from_url(f"{PG_URL}?schema={schema}")
    import psycopg

    with psycopg.connect(_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


_ADMIN = f"{PG_ADMIN} application_name=ykt-fault-admin"


def cut_connections() -> int:
    """Terminate the backends of this process's ledger connections (named by PGAPPNAME), as a server
    restart or a network cut would; other sessions' connections are untouched."""
    name = os.environ.get("PGAPPNAME")
    if not name:
        return 0
    import psycopg

    with psycopg.connect(_ADMIN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s "
            "AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return len(rows)


def faulty_chunks(monkeypatch: pytest.MonkeyPatch, store: Database, *, after: int, answer_lost: bool) -> Counter[str]:
    """Make the month-end write CHUNK payments per transaction and lose the connection after `after`
    chunks: before the next chunk (it fails), or (answer_lost) just after it commits."""
    real = ledger.disbursement.bulk_insert_events
    seen: Counter[str] = Counter()

    def bulk_insert_events(recorder: object, stored: Any) -> None:
        seen["chunks"] += 1
        if seen["chunks"] != after + 1:
            real(recorder, stored)
            return
        if not answer_lost:
            seen["cut"] += cut_connections()
            if store.kind == "postgres":
                real(recorder, stored)  # meets the terminated backend and raises
                seen["survived"] += 1  # (the store reconnected by itself: the chunk is in)
                return
            raise OperationalError("the connection was lost before the chunk (injected)")
        real(recorder, stored)
        seen["cut"] += cut_connections()
        raise OperationalError("server closed the connection unexpectedly (after the commit, before the answer)")

    monkeypatch.setattr(ledger.disbursement, "PAYMENTS_PER_CHUNK", CHUNK)
    monkeypatch.setattr(ledger.disbursement, "bulk_insert_events", bulk_insert_events)
    return seen


@pytest.mark.parametrize("answer_lost", [False, True], ids=["cut between chunks", "answer lost after commit"])
def test_the_connection_lost_in_the_middle_of_a_month_end_fails_cleanly_and_a_rerun_pays_everyone_once(
    store: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reference: dict[tuple[str, str, str], int],
    answer_lost: bool,
) -> None:
    prepared_ledger(store, tmp_path)
    runner = CliRunner()
    with monkeypatch.context() as patch:
        seen = faulty_chunks(patch, store, after=3, answer_lost=answer_lost)
        failed = runner.invoke(main, ["--db", store.url, "--as", "clerk", "run", "2017-03"])
    assert failed.exit_code == 1, failed.output
    assert isinstance(failed.exception, SystemExit), f"no traceback: {failed.exception!r}"
    assert "error: storage:" in failed.stderr, failed.stderr
    if store.kind == "postgres":
        assert seen["cut"] >= 1, "the test's own connections were found and terminated"
    with opened(store) as (_, disbursement):
        payments = sum(b.count for b in disbursement.batches())
    assert payments == CHUNK * (4 if answer_lost else 3), "committed chunks stay, the failed one is all or nothing"
    rerun = runner.invoke(main, ["--db", store.url, "--as", "clerk", "run", "2017-03", "--json"])
    assert rerun.exit_code == 0, rerun.output
    assert paid_once(store) == reference
    again = runner.invoke(main, ["--db", store.url, "--as", "clerk", "run", "2017-03", "--json"])
    assert again.exit_code == 0 and '"payments": 0' in again.stdout, again.output
