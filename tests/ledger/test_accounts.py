"""Accounts (domain.accounts, ledger.accounts, ledger.sessions): names and reasons as they are recorded,
passwords as argon2 hashes, who may manage accounts, and session tokens that check themselves."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from eventsourcing.persistence import IntegrityError

from domain.accounts import (
    Account,
    AccountDisabled,
    BadName,
    BadReason,
    BadRole,
    Identity,
    PasswordTooShort,
    escaped,
    normalised_name,
    normalised_reason,
    role_named,
)
from ledger.accounts import (
    AccountChanged,
    AccountExists,
    AccountsExist,
    LastAdminStays,
    NoAccountsYet,
    OnlyAdminsManageAccounts,
    PasswordFileRejected,
    UnknownAccount,
    WrongNameOrPassword,
    identities_status,
    identity_of,
    read_password_file,
)
from ledger.bootstrap import database_from_url, open_service
from ledger.service import LedgerService
from ledger.sessions import (
    BadDuration,
    Session,
    SessionFileNotPrivate,
    SessionInvalid,
    check_token,
    issue_token,
    parse_duration,
    read_session,
    write_session,
)
from ledger.storage import Database
from tests.helpers.ledgers import new_ledger

ADMIN_PW = "admin password 1"
CLERK_PW = "clerk password 1"


@pytest.fixture
def service(db: Database) -> Iterator[LedgerService]:
    new_ledger(db.url)  # as `init` makes it, before its first admin
    opened = open_service(database_from_url(db.url))
    yield opened
    opened.registry.close()
    opened.disbursement.close()


@pytest.fixture
def admin(service: LedgerService) -> Identity:
    service.create_first_admin("chief", ADMIN_PW, actor="setup")
    return service.authenticate("chief", ADMIN_PW)


# --- names, reasons, roles, passwords (pure) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "recorded"),
    [
        ("alice", "alice"),
        ("alice ", "alice"),
        ("\u3000alice\t", "alice"),
        ("ａｌｉｃｅ", "alice"),
        ("王 桂英", "王 桂英"),
    ],
)
def test_a_name_is_recorded_nfkc_and_trimmed(typed: str, recorded: str) -> None:
    assert normalised_name(typed) == recorded


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("ali\x1b[31mce", "U+001B"),
        ("alice\nbob", "U+000A"),
        ("al\u202eice", "U+202E"),
        ("al\u200bice", "U+200B"),
        ("a" * 65, "more than 64"),
    ],
)
def test_an_empty_name_control_or_format_characters_or_a_long_name_are_refused(typed: str, problem: str) -> None:
    with pytest.raises(BadName, match=problem.replace("+", r"\+")):
        normalised_name(typed)


def test_a_reason_is_normalised_and_checked_like_a_name_with_room_for_a_document_number() -> None:
    assert normalised_reason(" 集民发〔2017〕31号（复核） ") == "集民发〔2017〕31号(复核)"
    assert len(normalised_reason("x" * 500)) == 500
    for bad in ("", "x\x1b[2J", "x\ry", "x" * 501):
        with pytest.raises(BadReason):
            normalised_reason(bad)


def test_text_recorded_before_the_rules_is_shown_escaped() -> None:
    assert escaped("wang\x1b[2J\u202e") == "wang\\x1b[2J\\u202e"
    assert escaped("王桂英 集民发〔2017〕2号") == "王桂英 集民发〔2017〕2号"


def test_roles_are_four_and_the_roles_file_approver_is_the_checker() -> None:
    assert [role_named(r) for r in ("clerk", "Checker", "approver", "auditor", "admin")] == [
        "clerk",
        "checker",
        "checker",
        "auditor",
        "admin",
    ]
    with pytest.raises(BadRole):
        role_named("superuser")


def test_one_name_in_any_case_or_width_is_one_account_id() -> None:
    first = Account.add(name="Alice", role="clerk", password_hash="h", actor="chief")
    assert Account.add(name="ＡＬＩＣＥ ", role="clerk", password_hash="h", actor="chief").id == first.id
    assert first.name == "Alice"


# --- the ledger: first admin, authentication, management --------------------------------------------------


def test_a_ledger_without_accounts_says_so(service: LedgerService) -> None:
    assert not service.has_accounts()
    assert identities_status(service.registry).as_json() == {
        "authenticated": False,
        "accounts": 0,
        "authenticated_from": None,
        "typed_names_before": None,
    }
    with pytest.raises(NoAccountsYet):
        service.open_session("chief", ADMIN_PW, seconds=60)


def test_the_first_admin_opens_the_directory_and_keeps_only_an_argon2_hash(
    service: LedgerService, admin: Identity
) -> None:
    assert admin == Identity("chief", "admin", authenticated=True)
    assert service.has_accounts()
    stored = service.registry.repository.get(Account.create_id("chief"))
    assert stored.password_hash.startswith("$argon2id$") and ADMIN_PW not in stored.password_hash
    status = identities_status(service.registry)
    assert status.authenticated and status.accounts == 1
    # Right after what `init` recorded (charter, signing key, their seal), none of which is a typed name.
    assert status.registry_position > 1 and status.disbursement_position == 1 and not status.typed_before
    with pytest.raises(AccountsExist):
        service.create_first_admin("other", ADMIN_PW, actor="setup")


def test_authentication_refuses_a_wrong_password_and_an_unknown_name_alike(
    service: LedgerService, admin: Identity
) -> None:
    errors = []
    for name, password in (("chief", "wrong password"), ("nobody", ADMIN_PW), ("", ADMIN_PW), ("chief\x1b", ADMIN_PW)):
        with pytest.raises(WrongNameOrPassword) as refused:
            service.authenticate(name, password)
        errors.append(str(refused.value))
    assert set(errors) == {"wrong name or password"}  # never which of the two
    assert service.authenticate(" CHIEF ", ADMIN_PW).name == "chief"  # the account's own name is recorded


def test_only_an_admin_adds_accounts_and_one_name_is_one_account(service: LedgerService, admin: Identity) -> None:
    clerk = service.add_account("wang", "clerk", CLERK_PW, actor=admin)
    assert (clerk.name, clerk.role, clerk.enabled) == ("wang", "clerk", True)
    for name in ("wang", "WANG", "ｗａｎｇ "):
        with pytest.raises(AccountExists):
            service.add_account(name, "checker", CLERK_PW, actor=admin)
    as_clerk = service.authenticate("wang", CLERK_PW)
    with pytest.raises(OnlyAdminsManageAccounts):
        service.add_account("li", "checker", CLERK_PW, actor=as_clerk)
    with pytest.raises(OnlyAdminsManageAccounts):  # a name typed on a ledger without accounts is no admin
        service.add_account("li", "checker", CLERK_PW, actor=Identity("chief", "admin", authenticated=False))
    with pytest.raises(PasswordTooShort):
        service.add_account("li", "checker", "123456789", actor=admin)
    assert [a.name for a in service.accounts()] == ["chief", "wang"]


def test_two_accounts_of_one_name_at_the_same_moment_the_store_refuses_the_second(
    service: LedgerService, admin: Identity
) -> None:
    service.add_account("wang", "clerk", CLERK_PW, actor=admin)
    racing = Account.add(name="Wang", role="admin", password_hash="$argon2id$x", actor="chief")
    with pytest.raises(IntegrityError):  # the check-then-insert was skipped: version 1 of one id exists
        service.registry.save(racing)


def test_passwords_change_by_their_owner_or_an_admin(service: LedgerService, admin: Identity) -> None:
    service.add_account("wang", "clerk", CLERK_PW, actor=admin)
    service.add_account("li", "checker", CLERK_PW, actor=admin)
    wang = service.authenticate("wang", CLERK_PW)
    service.change_password("wang", "wang's new password", actor=wang)
    with pytest.raises(WrongNameOrPassword):
        service.authenticate("wang", CLERK_PW)
    with pytest.raises(OnlyAdminsManageAccounts):
        service.change_password("li", "li's password, by wang", actor=wang)
    service.change_password("li", "reset by the admin", actor=admin)
    assert service.authenticate("li", "reset by the admin").role == "checker"


def test_a_disabled_account_has_no_identity_and_the_last_admin_stays(service: LedgerService, admin: Identity) -> None:
    service.add_account("wang", "clerk", CLERK_PW, actor=admin)
    view, done = service.disable_account("wang", actor=admin)
    assert done and not view.enabled
    with pytest.raises(AccountDisabled):
        service.authenticate("wang", CLERK_PW)
    with pytest.raises(AccountDisabled):
        identity_of(service.registry, "wang")
    assert service.disable_account("wang", actor=admin)[1] is False  # already: nothing recorded
    assert service.enable_account("wang", actor=admin)[1] is True
    with pytest.raises(LastAdminStays):
        service.disable_account("chief", actor=admin)
    with pytest.raises(LastAdminStays):
        service.change_role("chief", "clerk", actor=admin)
    service.change_role("wang", "admin", actor=admin)
    assert service.change_role("chief", "checker", actor=admin)[0].role == "checker"
    with pytest.raises(UnknownAccount):
        service.disable_account("nobody", actor=admin)


# --- sessions -----------------------------------------------------------------------------------------


def test_a_session_token_verifies_until_it_expires_and_only_for_its_ledger() -> None:
    secret = b"s" * 32
    token = issue_token(secret, "sqlite:/a.db", Session("wang", 3, 1_000))
    assert check_token(secret, "sqlite:/a.db", token, 999.0) == Session("wang", 3, 1_000)
    with pytest.raises(SessionInvalid, match="expired"):
        check_token(secret, "sqlite:/a.db", token, 1_000.0)
    with pytest.raises(SessionInvalid, match="another ledger"):
        check_token(secret, "sqlite:/b.db", token, 999.0)
    with pytest.raises(SessionInvalid, match="does not verify"):
        check_token(b"t" * 32, "sqlite:/a.db", token, 999.0)


def test_an_edited_token_does_not_verify() -> None:
    import base64
    import json

    secret = b"s" * 32
    body, mac = issue_token(secret, "l", Session("wang", 3, 1_000)).split(".")
    fields = json.loads(base64.urlsafe_b64decode(body + "=="))
    for change in ({"n": "chief"}, {"e": 9_999_999_999}, {"v": 4}):
        forged = base64.urlsafe_b64encode(json.dumps({**fields, **change}).encode()).decode().rstrip("=")
        with pytest.raises(SessionInvalid):
            check_token(secret, "l", f"{forged}.{mac}", 999.0)


def test_a_session_ends_when_its_account_changes(service: LedgerService, admin: Identity) -> None:
    service.add_account("wang", "clerk", CLERK_PW, actor=admin)
    version = service.registry.repository.get(Account.create_id("wang")).version
    assert identity_of(service.registry, "wang", version).role == "clerk"
    service.change_password("wang", "another password", actor=admin)
    with pytest.raises(AccountChanged):
        identity_of(service.registry, "wang", version)


def test_durations_are_bounded() -> None:
    assert [parse_duration(t) for t in ("30s", "30m", "8h", "7d")] == [30, 1800, 28800, 604800]
    for bad in ("8", "0h", "8 hours", "8d", "-1h"):
        with pytest.raises(BadDuration):
            parse_duration(bad)


def test_session_and_password_files_must_be_private(tmp_path: Path) -> None:
    session = tmp_path / "sessions" / "a.session"
    write_session(session, "token")
    assert session.stat().st_mode & 0o777 == 0o600 and session.parent.stat().st_mode & 0o777 == 0o700
    assert read_session(session) == "token"
    os.chmod(session, 0o644)
    with pytest.raises(SessionFileNotPrivate):
        read_session(session)
    password = tmp_path / "pw"
    password.write_text("first line\r\nsecond\n", encoding="utf-8")
    os.chmod(password, 0o600)
    assert read_password_file(password) == "first line"
    os.chmod(password, 0o640)
    with pytest.raises(PasswordFileRejected, match="chmod 600"):
        read_password_file(password)
    with pytest.raises(PasswordFileRejected, match="cannot read"):
        read_password_file(tmp_path / "missing")
