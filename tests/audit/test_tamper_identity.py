"""Tamper suite, issue 13 item 5 (accounts with passwords instead of typed names), on SQLite and PostgreSQL.

Each attack is the one the issue's "Why" found, done through the command line as a user would, in a child
process whose standard input is not a terminal: approve one's own export through a second name, pad a
name with a blank, type an empty name or control characters, switch the roles file off, act as an
unknown or disabled account, guess a password, keep using a session. Each test first shows the attack
succeeding with the protection off (a ledger without accounts, as earlier releases wrote it, where the
typed name is taken on trust; or the domain called directly, past the boundary that normalises names),
then refused with it on. Every account acts with its real password (tests.helpers.ledgers).
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from domain.periods import Month
from ledger.bootstrap import database_from_url, open_service
from ledger.exports import approve_batch
from ledger.service import LedgerService
from ledger.storage import Database
from tests.helpers.ledgers import HEADER, LI, new_ledger, password_file, with_accounts, yikatong

LI_ID = LI.split(",")[0]
NO_TERMINAL_S_MAX = 20  # a refusal for want of a password comes at once; a prompt would wait forever


@dataclass(frozen=True)
class Ledger:
    url: str
    files: dict[str, Path]  # account → its password file (empty: a ledger without accounts)
    batch: str  # a batch exported by `exporter`
    exporter: str


@pytest.fixture(autouse=True)
def private_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys and sessions in the test's own folder, for this process and the child processes alike."""
    monkeypatch.setenv("YIKATONG_KEY_FILE", str(tmp_path / "ledger.key"))
    monkeypatch.setenv("YIKATONG_SESSION_FILE", str(tmp_path / "session"))
    monkeypatch.delenv("YIKATONG_ROLES", raising=False)
    monkeypatch.delenv("YIKATONG_PASSWORD_FILE", raising=False)


def _month_end_and_export(url: str, tmp_path: Path, policy_text: str, *, admin: str, clerk: str) -> str:
    """Policy, one household, January's month-end and a pain.001 export by `clerk`; the batch id."""
    service = open_service(database_from_url(url))
    try:
        service.load_policy(policy_text, "ulanqab-2017.toml", actor=admin)
        roster = tmp_path / "r.csv"
        roster.write_text(HEADER + LI, encoding="utf-8")
        service.import_roster(roster, actor=clerk)
        service.month_end(Month(2017, 1), actor=clerk)
        (batch,) = service.batches()
        service.export_batch(batch.id.hex, fmt="pain001", out=tmp_path / "out", actor=clerk)
        return batch.id.hex
    finally:
        _close(service)


def _close(service: LedgerService) -> None:
    service.registry.close()
    service.disbursement.close()


@pytest.fixture
def office(db: Database, tmp_path: Path, policy_text: str) -> Ledger:
    """A ledger created with its accounts (admin, clerk, checker, auditor); the clerk exported a batch."""
    files = with_accounts(db.url, tmp_path)
    return Ledger(
        db.url, files, _month_end_and_export(db.url, tmp_path, policy_text, admin="admin", clerk="clerk"), "clerk"
    )


@pytest.fixture
def legacy(db: Database, tmp_path: Path, policy_text: str) -> Ledger:
    """A ledger without accounts, as earlier releases wrote them (names typed, taken on trust): alice
    exported a batch."""
    new_ledger(db.url)
    return Ledger(
        db.url, {}, _month_end_and_export(db.url, tmp_path, policy_text, admin="alice", clerk="alice"), "alice"
    )


def typed(
    ledger: Ledger, name: str, *args: str, password: Path | None = None, **kw: object
) -> subprocess.CompletedProcess[str]:
    """The command line with `--as NAME` exactly as typed, and a password file only when one is given."""
    given = ["--password-file", str(password)] if password is not None else []
    return yikatong(ledger.url, "--as", name, *given, *args, as_=None, **kw)  # type: ignore[arg-type]


def batch_of(ledger: Ledger) -> dict[str, object]:
    service = open_service(database_from_url(ledger.url))
    try:
        (batch,) = service.batches()
        return {"status": batch.status, "approved_by": batch.approved_by, "exported_by": list(batch.exported_by)}
    finally:
        _close(service)


def events(ledger: Ledger) -> int:
    service = open_service(database_from_url(ledger.url))
    try:
        return sum(app.recorder.max_notification_id() or 0 for app in (service.registry, service.disbursement))
    finally:
        _close(service)


def refused(result: subprocess.CompletedProcess[str], rule: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"error: {rule}:" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


# --- self-approval through a second name --------------------------------------------------------------


def test_a_second_typed_name_approves_ones_own_export_on_a_ledger_without_accounts(legacy: Ledger) -> None:
    """Sensitivity: the attack as the issue found it. Without accounts the typed name is all there is."""
    approved = typed(legacy, "bob", "batch", "approve", legacy.batch)
    assert approved.returncode == 0, approved.stderr
    assert batch_of(legacy)["approved_by"] == "bob"  # alice exported it, "bob" approved it: nobody checked


def test_self_approval_through_a_second_name_needs_that_accounts_password(office: Ledger, tmp_path: Path) -> None:
    no_password = typed(office, "checker", "batch", "approve", office.batch)
    refused(no_password, "PasswordNeeded")
    guessed = typed(office, "checker", "batch", "approve", office.batch, password=password_file(tmp_path, "guess"))
    refused(guessed, "WrongNameOrPassword")
    clerks_own = typed(office, "checker", "batch", "approve", office.batch, password=office.files["clerk"])
    refused(clerks_own, "WrongNameOrPassword")  # the exporter's password does not open the checker's account
    invented = typed(office, "bob", "batch", "approve", office.batch, password=office.files["clerk"])
    refused(invented, "WrongNameOrPassword")  # a name with no account acts as nobody
    assert batch_of(office)["status"] == "exported"
    approved = typed(office, "checker", "batch", "approve", office.batch, password=office.files["checker"])
    assert approved.returncode == 0, approved.stderr
    assert batch_of(office) == {"status": "approved", "approved_by": "checker", "exported_by": ["clerk"]}


def test_the_exporter_cannot_approve_however_the_name_is_spelled(office: Ledger) -> None:
    granted = yikatong(office.url, "user", "role", "clerk", "checker", as_="admin")  # now allowed to approve
    assert granted.returncode == 0, granted.stderr
    for spelling in ("clerk", "clerk ", " CLERK", "ｃｌｅｒｋ"):
        attempt = typed(office, spelling, "batch", "approve", office.batch, password=office.files["clerk"])
        refused(attempt, "ApproverMustDifferFromExporter")
    # Sensitivity: the domain compares the names it is given. Past the boundary that normalises them, a
    # padded name is another approver; only the accounts' normalised names make the comparison hold.
    service = open_service(database_from_url(office.url))
    try:
        assert approve_batch(service.disbursement, office.batch, "clerk ").approved_by == "clerk "
    finally:
        _close(service)


def test_a_padded_name_is_the_same_name_on_a_ledger_without_accounts_too(legacy: Ledger) -> None:
    refused(typed(legacy, "alice ", "batch", "approve", legacy.batch), "ApproverMustDifferFromExporter")
    refused(typed(legacy, "ａｌｉｃｅ", "batch", "approve", legacy.batch), "ApproverMustDifferFromExporter")


# --- names and reasons --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "   ", "ali\x1b[2Jce", "alice\nchecker", "al\u202eice"])
def test_an_empty_name_or_control_characters_act_as_nobody(legacy: Ledger, name: str) -> None:
    before = events(legacy)
    refused(typed(legacy, name, "run", "2017-02"), "BadName")
    assert events(legacy) == before


def test_an_empty_name_acts_as_nobody_on_a_ledger_with_accounts(office: Ledger) -> None:
    refused(typed(office, "", "run", "2017-02", password=office.files["clerk"]), "BadName")
    refused(typed(office, "clerk\x1b", "run", "2017-02", password=office.files["clerk"]), "BadName")


def test_a_reason_with_control_characters_is_refused_and_old_ones_are_shown_escaped(office: Ledger) -> None:
    hostile = "集民发〔2017〕9号\x1b[2J\x1b]0;pwned\x07"
    before = events(office)
    decided = yikatong(
        office.url, "decide", "suspend", LI_ID, "urban_dibao", "--on", "2017-03-01", "--reason", hostile, as_="clerk"
    )
    refused(decided, "BadReason")
    assert events(office) == before
    # Sensitivity: recorded past the boundary (as an earlier release could), the text reaches the log ...
    service = open_service(database_from_url(office.url))
    try:
        service.registry.decide(
            kind="suspend",
            id_number=LI_ID,
            programme="urban_dibao",
            on=date(2017, 3, 1),
            actor="wang\x1b[31m",
            reason=hostile,
            amount_fen=None,
        )
    finally:
        _close(service)
    # ... and the auditor's terminal gets it escaped, never raw.
    history = yikatong(office.url, "audit", "history", LI_ID, as_="auditor")
    assert history.returncode == 0, history.stderr
    assert "\x1b" not in history.stdout and "\x07" not in history.stdout
    assert "wang\\x1b[31m" in history.stdout and "\\x1b[2J" in history.stdout


# --- roles come only from the ledger ------------------------------------------------------------------


def _roles_files(tmp_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """A roles file holding sun to reading (and naming the auditor account a clerk), and a mistyped path."""
    (tmp_path / "office").mkdir()
    roles = tmp_path / "office" / "roles.toml"  # not beside the SQLite file, where it would be found anyway
    roles.write_text('[users]\nsun = "auditor"\nauditor = "clerk"\n', encoding="utf-8")
    return {"YIKATONG_ROLES": str(roles)}, {"YIKATONG_ROLES": str(tmp_path / "no-such-roles.toml")}


def test_without_accounts_the_roles_file_decides_and_a_mistyped_path_grants_nothing(
    legacy: Ledger, tmp_path: Path
) -> None:
    listed, missing = _roles_files(tmp_path)
    refused(typed(legacy, "sun", "run", "2017-02", env=listed), "AuditorIsReadOnly")
    refused(typed(legacy, "sun", "run", "2017-02", env=missing), "RolesFileMissing")
    # Sensitivity: with no roles file at all, as in earlier releases, anyone may do anything.
    assert typed(legacy, "sun", "run", "2017-02").returncode == 0


def test_with_accounts_the_roles_file_changes_nothing(office: Ledger, tmp_path: Path) -> None:
    listed, missing = _roles_files(tmp_path)
    for env in (listed, missing, {}):
        attempt = yikatong(office.url, "run", "2017-02", as_="auditor", env=env)
        refused(attempt, "AuditorIsReadOnly")  # not granted by the file, not freed by its absence
        assert ("is ignored: this ledger has accounts" in attempt.stderr) == bool(env)


def test_unknown_and_disabled_accounts_have_no_rights(office: Ledger) -> None:
    refused(typed(office, "stranger", "batch", "list", password=office.files["checker"]), "WrongNameOrPassword")
    assert yikatong(office.url, "batch", "list", as_="checker").returncode == 0  # sensitivity: enabled, it reads
    disabled = yikatong(office.url, "user", "disable", "checker", as_="admin")
    assert disabled.returncode == 0, disabled.stderr
    refused(yikatong(office.url, "batch", "list", as_="checker"), "AccountDisabled")
    refused(yikatong(office.url, "batch", "approve", office.batch, as_="checker"), "AccountDisabled")
    refused(
        yikatong(office.url, "user", "add", "mole", "--role", "admin", as_="clerk", stdin="x" * 12),
        "OnlyAdminsAdminister",
    )


# --- never a hang on a prompt -------------------------------------------------------------------------


def test_no_terminal_and_no_password_is_refused_at_once(office: Ledger) -> None:
    command = [sys.executable, "-m", "ledger", "--db", office.url]
    for args, rule in (
        (["--as", "clerk", "run", "2017-02"], "PasswordNeeded"),
        (["run", "2017-02"], "WhoActs"),
        (["login", "clerk"], "PasswordNeeded"),
        (
            ["--as", "admin", "--password-file", str(office.files["admin"]), "user", "add", "x", "--role", "clerk"],
            "PasswordNeeded",
        ),
    ):
        started = time.monotonic()
        result = subprocess.run(
            [*command, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False
        )
        assert time.monotonic() - started < NO_TERMINAL_S_MAX
        refused(result, rule)


def test_at_a_terminal_the_password_is_asked_for_without_echo(office: Ledger) -> None:
    """Sensitivity of the test above: with a terminal, the same command asks, and acts once answered."""
    password = office.files["clerk"].read_text(encoding="utf-8").strip()
    output, status = _at_a_terminal(
        [sys.executable, "-m", "ledger", "--db", office.url, "--as", "clerk", "batch", "list", "--json"], password
    )
    assert status == 0, output
    assert "password for clerk:" in output and password not in output  # no echo
    assert '"status": "exported"' in output


def _at_a_terminal(argv: list[str], answer: str) -> tuple[str, int]:
    """Run `argv` with a pseudo-terminal as its controlling terminal; answer the first prompt."""
    pid, fd = pty.fork()
    if pid == 0:  # the child
        os.execv(argv[0], argv)
    output = b""
    answered = False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
        if not answered and b"password for" in output:
            os.write(fd, answer.encode() + b"\n")
            answered = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return output.decode(errors="replace"), os.waitstatus_to_exitcode(status)


# --- sessions ------------------------------------------------------------------------------------------


def test_a_session_acts_until_it_expires_and_its_file_is_private(office: Ledger, tmp_path: Path) -> None:
    session = tmp_path / "session"
    login = typed(office, "clerk", "login", "clerk", "--for", "4s", password=office.files["clerk"])
    assert login.returncode == 0, login.stderr
    assert session.stat().st_mode & 0o777 == 0o600
    ran = yikatong(office.url, "run", "2017-02", "--json", as_=None)  # no --as, no password: the session
    assert ran.returncode == 0, ran.stderr
    time.sleep(4.5)
    expired = yikatong(office.url, "run", "2017-03", as_=None)
    refused(expired, "WhoActs")
    assert "expired" in expired.stderr
    assert yikatong(office.url, "logout", as_=None).stdout.strip() == "logged out"
    assert not session.exists()


def test_changing_the_password_or_editing_the_token_ends_the_session(office: Ledger, tmp_path: Path) -> None:
    session = tmp_path / "session"
    assert typed(office, "clerk", "login", "clerk", password=office.files["clerk"]).returncode == 0
    assert yikatong(office.url, "batch", "list", as_=None).returncode == 0
    token = session.read_text(encoding="ascii").strip()
    # A token edited to name the admin does not verify.
    import base64

    body, mac = token.split(".")
    fields = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**fields, "n": "admin"}).encode()).decode().rstrip("=")
    session.write_text(f"{forged}.{mac}\n", encoding="ascii")
    refused(yikatong(office.url, "user", "list", as_=None), "WhoActs")
    session.write_text(token + "\n", encoding="ascii")
    os.chmod(session, 0o644)
    refused(yikatong(office.url, "batch", "list", as_=None), "SessionFileNotPrivate")
    os.chmod(session, 0o600)
    assert yikatong(office.url, "batch", "list", as_=None).returncode == 0
    reset = yikatong(office.url, "user", "passwd", "clerk", as_="admin", stdin="a new clerk password\n")
    assert reset.returncode == 0, reset.stderr
    ended = yikatong(office.url, "batch", "list", as_=None)
    refused(ended, "WhoActs")
    assert "changed since this session began" in ended.stderr


def test_verify_says_the_identities_are_authenticated_accounts(office: Ledger) -> None:
    report = json.loads(yikatong(office.url, "audit", "verify", "--json", as_="auditor").stdout)
    assert report["ok"] is True
    identities = report["identities"]
    assert identities["authenticated"] is True and identities["accounts"] == 4
    # Before the first admin, only what `init` recorded (charter, signing key, their seal): no typed name.
    assert identities["authenticated_from"]["disbursement_events"] == 1
    assert identities["authenticated_from"]["registry_events"] > 1
    assert identities["typed_names_before"] is False


def test_verify_says_typed_names_were_not_authenticated(legacy: Ledger) -> None:
    report = typed(legacy, "auditor", "audit", "verify")
    assert report.returncode == 0, report.stderr
    assert "identities: not authenticated: this ledger has no accounts" in report.stdout
