"""Access records (ledger.access) on both stores: recorded in the registry log, sealed, verified, read
back as the actions log; two at the same moment are both recorded; the password is never among them."""

from __future__ import annotations

import threading
from uuid import uuid4

import pytest

from domain.access import LOGIN, LOGIN_FAILED, LOGOUT, REFUSED, AccessRecord, BadAccess
from domain.accounts import ADMIN, AUDITOR, CHECKER, CLERK, Identity
from ledger.access import Access
from ledger.audit import verify_log
from ledger.bootstrap import init_ledger, open_service
from ledger.roles import OnlyAuditorsAudit, parse_roles, require, require_account
from ledger.storage import Database


def test_a_failed_login_keeps_the_name_tried_apart_from_any_actor_escaped_and_cut() -> None:
    record = AccessRecord.record(record_id=uuid4(), kind=LOGIN_FAILED, channel="web", name="\x1b[31m" + "x" * 100)
    event = record.collect_events()[0]
    assert event.actor == "" and event.name_tried.startswith("\\x1b[31m") and len(event.name_tried) == 64  # type: ignore[attr-defined]


def test_an_access_of_an_unknown_kind_or_channel_is_refused() -> None:
    with pytest.raises(BadAccess):
        AccessRecord.record(record_id=uuid4(), kind="visited", channel="web", name="clerk")
    with pytest.raises(BadAccess):
        AccessRecord.record(record_id=uuid4(), kind=LOGIN, channel="fax", name="clerk")


def test_access_records_are_sealed_verified_and_read_back_newest_first(db: Database) -> None:
    init_ledger(db, ledger_id=uuid4(), actor="admin")
    service = open_service(db)
    try:
        service.record_access(Access(LOGIN_FAILED, "web", "clerk", rule="WrongNameOrPassword", path="/login"))
        service.record_access(Access(LOGIN, "web", "clerk", role="clerk", path="/login"))
        service.record_access(
            Access(REFUSED, "web", "clerk", role="clerk", action="batch approve", rule="X", path="/b")
        )
        service.record_access(Access(LOGOUT, "cli", "clerk", action="logout"))
        verified = verify_log(service.registry)
        assert verified.ok and verified.unsealed <= 1  # at most the last seal itself, covered by the next
        page = service.operations(access_only=True)
        assert [(o.fields["kind"], o.actor, o.fields.get("name_tried", "")) for o in page.rows] == [
            ("logout", "clerk", ""), ("refused", "clerk", ""), ("login", "clerk", ""), ("login_failed", "", "clerk"),
        ]  # fmt: skip
        assert page.rows[1].fields["path"] == "/b" and page.rows[1].fields["action"] == "batch approve"
        assert service.operations(actor="clerk", access_only=True).rows == page.rows  # the name tried counts
    finally:
        service.registry.close()
        service.disbursement.close()


def test_two_accesses_at_the_same_moment_are_both_recorded(db: Database) -> None:
    init_ledger(db, ledger_id=uuid4(), actor="admin")
    failures: list[BaseException] = []

    def log_in(name: str) -> None:
        service = open_service(db)
        try:
            service.record_access(Access(LOGIN, "web", name, role="clerk"))
        except BaseException as e:  # reported by the test below
            failures.append(e)
        finally:
            service.registry.close()
            service.disbursement.close()

    threads = [threading.Thread(target=log_in, args=(f"clerk{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    service = open_service(db, read_only=True)
    try:
        assert sorted(o.actor for o in service.operations(access_only=True).rows) == [f"clerk{i}" for i in range(4)]
        assert verify_log(service.registry).ok
    finally:
        service.registry.close()
        service.disbursement.close()


def test_the_actions_log_is_the_auditors_and_the_admins_only() -> None:
    for role in (AUDITOR, ADMIN):
        require_account(Identity("someone", role), "audit log")
    for role in (CLERK, CHECKER):
        with pytest.raises(OnlyAuditorsAudit):
            require_account(Identity("someone", role), "audit log")
    legacy = parse_roles('[users]\nsun = "auditor"\nwang = "clerk"\n', "roles.toml")
    require(legacy, "sun", "audit log")
    with pytest.raises(OnlyAuditorsAudit):
        require(legacy, "wang", "audit log")
