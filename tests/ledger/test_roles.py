"""Who may do what: each account role's rights, the roles file's rules for ledgers without accounts, and
on PostgreSQL an auditor role the database itself holds to SELECT only (an INSERT, UPDATE or DELETE by
it fails with insufficient privilege)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from eventsourcing.persistence import PersistenceError
from psycopg import errors, sql

from domain.accounts import Identity
from domain.periods import Month
from ledger.apps import Registry
from ledger.bootstrap import database_from_url
from ledger.disbursement import Disbursement
from ledger.roles import (
    ADMIN_ACTIONS,
    CHECKER_ACTIONS,
    READ_ONLY,
    AccountHasNoRole,
    ActorHasNoRole,
    AuditorIsReadOnly,
    BadRoleName,
    GrantNeedsPostgres,
    OnlyAdminsAdminister,
    OnlyApproversApprove,
    OnlyCheckersApprove,
    OnlyClerksRecord,
    RoleHasMorePrivileges,
    RolesFileMissing,
    RolesFileRejected,
    grant_auditor,
    legacy_roles,
    load_roles,
    parse_roles,
    read_only_env,
    require,
    require_account,
    roles_file_ignored,
    roles_path_for,
    tables_not_writable,
)
from ledger.storage import Database
from tests.conftest import PG_ADMIN, pg_url
from tests.helpers.anomalies import city, run
from tests.helpers.ledgers import ledger

ROLES = """
[users]
wang = "clerk"
li = "approver"
zhao = ["clerk", "approver"]
sun = "auditor"
"""
ADMIN = PG_ADMIN


def test_without_a_roles_file_everyone_may_do_everything(tmp_path: Path) -> None:
    assert load_roles(tmp_path / "roles.toml") is None
    for action in ("run", "batch approve", "audit anomalies", "db grant-auditor"):
        require(None, "anyone", action)


def test_an_auditor_may_only_read() -> None:
    config = parse_roles(ROLES, "roles.toml")
    for action in sorted(READ_ONLY):
        require(config, "sun", action)
    for action in ("run", "roster import", "decide", "batch export", "batch approve", "bank import", "some new one"):
        with pytest.raises(AuditorIsReadOnly):
            require(config, "sun", action)


def test_approvers_approve_and_submit_and_clerks_do_the_rest() -> None:
    config = parse_roles(ROLES, "roles.toml")
    require(config, "li", "batch approve")
    require(config, "li", "batch submit")
    require(config, "li", "report balances")
    with pytest.raises(OnlyClerksRecord):
        require(config, "li", "batch export")
    require(config, "wang", "batch export")
    require(config, "wang", "run")
    with pytest.raises(OnlyApproversApprove):
        require(config, "wang", "batch approve")
    require(config, "zhao", "batch approve")  # maker-checker still refuses approving their own export
    require(config, "zhao", "run")


def test_an_actor_the_roles_file_does_not_list_may_run_nothing() -> None:
    config = parse_roles(ROLES, "roles.toml")
    with pytest.raises(ActorHasNoRole, match=r"not listed in roles\.toml"):
        require(config, "stranger", "report balances")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[users]\nwang = 'cashier'", "users.wang"),
        ("[users]\nwang = []", "users.wang"),
        ("[users]\nsun = ['auditor', 'clerk']", "an auditor holds no other role"),
        ("users = 'wang'", "[users] must be a table"),
        ("[users\n", "not valid TOML"),
    ],
)
def test_a_bad_roles_file_is_refused_naming_the_problem(text: str, problem: str) -> None:
    with pytest.raises(RolesFileRejected, match=problem.replace("[", r"\[")):
        parse_roles(text, "roles.toml")


def test_the_roles_file_lives_beside_the_sqlite_file_unless_the_environment_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("YIKATONG_ROLES", raising=False)
    assert roles_path_for(database_from_url(f"sqlite:///{tmp_path}/y.db")) == tmp_path / "roles.toml"
    assert roles_path_for(database_from_url("postgresql://postgres@127.0.0.1/test")) == Path("roles.toml")
    monkeypatch.setenv("YIKATONG_ROLES", str(tmp_path / "office.toml"))
    assert roles_path_for(database_from_url(f"sqlite:///{tmp_path}/y.db")) == tmp_path / "office.toml"


def test_a_roles_file_may_name_the_approver_checker() -> None:
    config = parse_roles("[users]\nli = 'checker'\nwu = 'approver'", "roles.toml")
    require(config, "li", "batch approve")
    require(config, "wu", "batch approve")
    assert config.roles_of("li") == config.roles_of("wu") == frozenset({"checker"})


def test_a_roles_file_the_environment_names_must_exist_or_nothing_is_granted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = database_from_url(f"sqlite:///{tmp_path}/y.db")
    monkeypatch.delenv("YIKATONG_ROLES", raising=False)
    assert legacy_roles(db) is None  # no file at the default place: the earlier releases' everyone-may
    monkeypatch.setenv("YIKATONG_ROLES", str(tmp_path / "mistyped.toml"))
    with pytest.raises(RolesFileMissing, match=r"mistyped\.toml, which does not exist"):
        legacy_roles(db)
    (tmp_path / "mistyped.toml").write_text('[users]\nsun = "auditor"\n', encoding="utf-8")
    assert legacy_roles(db) is not None


def test_with_accounts_a_roles_file_is_named_as_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = database_from_url(f"sqlite:///{tmp_path}/y.db")
    monkeypatch.delenv("YIKATONG_ROLES", raising=False)
    assert roles_file_ignored(db) is None
    (tmp_path / "roles.toml").write_text(ROLES, encoding="utf-8")
    assert "roles.toml is ignored: this ledger has accounts" in (roles_file_ignored(db) or "")


ACCOUNT = {role: Identity(role, role) for role in ("clerk", "checker", "auditor", "admin")}
RECORDING = ("run", "roster import", "decide", "account set", "batch export", "bank import", "profile add")


def test_every_account_may_read_and_change_its_own_password() -> None:
    for identity in ACCOUNT.values():
        for action in (*sorted(READ_ONLY), "user passwd"):
            require_account(identity, action)


def test_a_clerk_records_and_nothing_else() -> None:
    for action in RECORDING:
        require_account(ACCOUNT["clerk"], action)
    for action in sorted(CHECKER_ACTIONS):
        with pytest.raises(OnlyCheckersApprove):
            require_account(ACCOUNT["clerk"], action)
    for action in sorted(ADMIN_ACTIONS):
        with pytest.raises(OnlyAdminsAdminister):
            require_account(ACCOUNT["clerk"], action)


def test_a_checker_approves_and_submits_and_records_nothing() -> None:
    for action in sorted(CHECKER_ACTIONS):
        require_account(ACCOUNT["checker"], action)
    for action in RECORDING:
        with pytest.raises(OnlyClerksRecord):
            require_account(ACCOUNT["checker"], action)
    with pytest.raises(OnlyAdminsAdminister):
        require_account(ACCOUNT["checker"], "user add")


def test_the_clerk_submits_an_approved_batch_and_the_checker_does_not() -> None:
    """examples/web.md: the clerk hands the approved file to the bank; the approval is the checker's."""
    require_account(ACCOUNT["clerk"], "batch submit")
    for role, refused in (("checker", OnlyClerksRecord), ("admin", OnlyClerksRecord), ("auditor", AuditorIsReadOnly)):
        with pytest.raises(refused):
            require_account(ACCOUNT[role], "batch submit")
    legacy = parse_roles(ROLES, "roles.toml")  # an earlier release's roles file: its approvers still submit
    require(legacy, "li", "batch submit")
    require(legacy, "wang", "batch submit")
    with pytest.raises(AuditorIsReadOnly):
        require(legacy, "sun", "batch submit")


def test_an_admin_manages_accounts_and_the_policy_but_records_and_approves_nothing() -> None:
    for action in (*sorted(ADMIN_ACTIONS), "projections rebuild"):
        require_account(ACCOUNT["admin"], action)
    for action in RECORDING:
        with pytest.raises(OnlyClerksRecord):
            require_account(ACCOUNT["admin"], action)
    with pytest.raises(OnlyCheckersApprove):
        require_account(ACCOUNT["admin"], "batch approve")


def test_an_auditor_account_only_reads() -> None:
    for action in (*RECORDING, *sorted(CHECKER_ACTIONS), *sorted(ADMIN_ACTIONS), "some new command"):
        with pytest.raises(AuditorIsReadOnly):
            require_account(ACCOUNT["auditor"], action)


def test_an_unknown_role_or_an_unauthenticated_name_has_no_rights() -> None:
    for identity in (Identity("x", "approver"), Identity("x", ""), Identity("x", "admin", authenticated=False)):
        with pytest.raises(AccountHasNoRole):
            require_account(identity, "report balances")


def test_sqlite_has_no_database_roles_and_says_so(tmp_path: Path) -> None:
    with pytest.raises(GrantNeedsPostgres, match="file permissions"):
        grant_auditor(database_from_url(f"sqlite:///{tmp_path}/y.db"), "auditor")


# --- PostgreSQL: enforced by the database -----------------------------------------------------------------


@pytest.fixture
def pg(pg_reachable: None, tmp_path: Path) -> Iterator[Database]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield database_from_url(pg_url(schema))
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def role_name() -> Iterator[str]:
    name = f"auditor_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_an_auditor_role_can_select_but_not_insert_update_or_delete(
    pg: Database, policy_text: str, role_name: str
) -> None:
    registry, disbursement = ledger(pg, policy_text)
    city(registry, 10)
    run(registry, disbursement, Month(2017, 1))
    statements = grant_auditor(pg, role_name)
    assert any("SELECT" in s for s in statements) and not any("INSERT" in s for s in statements if "GRANT" in s)
    schema = sql.Identifier(pg.env["POSTGRES_SCHEMA"])

    with psycopg.connect(ADMIN) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role_name)))
        (count,) = conn.execute(sql.SQL("SELECT count(*) FROM {}.registry_events").format(schema)).fetchone()
        assert count > 10
        for statement in (
            "INSERT INTO {}.registry_events (originator_id, originator_version, topic, state) "
            "VALUES (gen_random_uuid(), 1, 'x', '\\x00')",
            "UPDATE {}.disbursement_events SET topic = 'x'",
            "DELETE FROM {}.disbursement_events",
            "TRUNCATE {}.registry_events",
        ):
            with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
                conn.execute(sql.SQL(statement).format(schema))
        with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
            conn.execute(sql.SQL("CREATE TABLE {}.mine (x int)").format(schema))


def test_an_auditor_connecting_as_the_role_reads_the_ledger_and_cannot_write_it(
    pg: Database, policy_text: str, role_name: str
) -> None:
    registry, disbursement = ledger(pg, policy_text)
    city(registry, 10)
    run(registry, disbursement, Month(2017, 1))
    expected = disbursement.balances().rows()
    grant_auditor(pg, role_name)
    as_auditor = database_from_url(pg_url(pg.env["POSTGRES_SCHEMA"], user=role_name))
    auditor_registry = Registry(env=read_only_env(as_auditor.env_for("Registry")))
    auditor_disbursement = Disbursement(env=read_only_env(as_auditor.env_for("Disbursement")))
    assert auditor_disbursement.balances().rows() == expected
    assert len(auditor_registry.read_registry().persons) == 10
    before = registry.recorder.max_notification_id()
    # psycopg reports the refused LOCK/INSERT pipeline as either error, at random; the CLI asks the
    # database which table was refused (test below). Either way nothing is written.
    with pytest.raises(PersistenceError, match=r"permission denied|pipeline aborted"):
        auditor_registry.load_policy(policy_text.replace('乌兰察布市"', '乌兰察布市 "'), "edited.toml", "auditor")
    assert registry.recorder.max_notification_id() == before
    assert tables_not_writable(as_auditor) == (role_name, ["disbursement_events", "registry_events"])
    assert tables_not_writable(pg) == ("postgres", [])
    auditor_registry.close()
    auditor_disbursement.close()


def test_an_auditor_writing_from_the_command_line_is_told_permission_denied_every_time(
    pg: Database, policy_text: str, role_name: str, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from ledger.cli import main

    registry, disbursement = ledger(pg, policy_text)
    registry.close()
    disbursement.close()
    grant_auditor(pg, role_name)
    url = pg_url(pg.env["POSTGRES_SCHEMA"], user=role_name)
    edited = tmp_path / "edited.toml"
    edited.write_text(policy_text.replace('乌兰察布市"', '乌兰察布市 "'), encoding="utf-8")
    for _ in range(6):  # psycopg's own report varies from run to run; the message must not
        result = CliRunner().invoke(main, ["--db", url, "--as", "auditor", "policy", "load", str(edited)])
        assert result.exit_code == 1, result.output
        assert result.output == (
            "error: storage: permission denied for table disbursement_events, registry_events: "
            f"role {role_name} may only read this ledger\n"
        )


def test_tables_created_after_the_grant_are_readable_too_and_granting_again_changes_nothing(
    pg: Database, policy_text: str, role_name: str
) -> None:
    from projections.runner import rebuild

    registry, disbursement = ledger(pg, policy_text)
    grant_auditor(pg, role_name)
    city(registry, 5)
    run(registry, disbursement, Month(2017, 1))
    rebuild(pg)  # creates the rm_ tables after the grant
    grant_auditor(pg, role_name)
    with psycopg.connect(ADMIN) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role_name)))
        rows = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.rm_balances").format(sql.Identifier(pg.env["POSTGRES_SCHEMA"]))
        ).fetchone()
        assert rows is not None and rows[0] > 0


def test_an_existing_powerful_role_or_a_bad_name_is_refused(pg: Database, role_name: str) -> None:
    with pytest.raises(BadRoleName):
        grant_auditor(pg, 'x"; DROP TABLE registry_events; --')
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} CREATEDB").format(sql.Identifier(role_name)))
    with pytest.raises(RoleHasMorePrivileges):
        grant_auditor(pg, role_name)


def test_the_action_is_the_command_path_without_the_program_name() -> None:
    import click
    from click.testing import CliRunner

    from ledger.roles import command_action

    seen = []

    @click.group()
    def program() -> None:
        pass

    @program.group()
    def batch() -> None:
        pass

    @batch.command("approve")
    def approve() -> None:
        seen.append(command_action(click.get_current_context()))

    CliRunner().invoke(program, ["batch", "approve"], prog_name="python -m ledger")
    assert seen == ["batch approve"]


def test_an_auditor_role_can_run_the_whole_audit_verify(pg: Database, policy_text: str, role_name: str) -> None:
    from ledger.audit import audit_verify, record_checkpoint
    from ledger.reports import catch_up

    registry, disbursement = ledger(pg, policy_text)
    city(registry, 10)
    run(registry, disbursement, Month(2017, 1))
    for app in (registry, disbursement):
        record_checkpoint(app)
    catch_up(pg)
    grant_auditor(pg, role_name)
    as_auditor = database_from_url(pg_url(pg.env["POSTGRES_SCHEMA"], user=role_name))
    auditor_registry = Registry(env=read_only_env(as_auditor.env_for("Registry")))
    auditor_disbursement = Disbursement(env=read_only_env(as_auditor.env_for("Disbursement")))
    report = audit_verify(as_auditor, auditor_registry, auditor_disbursement)
    assert report.ok, report.failures
    assert report.read_models.checked  # compared with a rebuild, using SELECT alone
    auditor_registry.close()
    auditor_disbursement.close()
