"""Append-only enforced by PostgreSQL (issue 13 item 2; docs/deploy.md): after `yikatong db setup`, the
role the ledger connects as cannot change or remove a stored event, and yet runs the whole month-end.

Two layers, each shown to matter (sensitivity first, as tests/reliability does for duplicates):
- privileges: the application role holds SELECT and INSERT on the event tables, no UPDATE, DELETE or
  TRUNCATE, owns neither the tables nor the schema, so cannot drop or alter them or their trigger;
- the trigger: UPDATE, DELETE and TRUNCATE are refused to every role but the tables' owner, even to a
  role holding the rights the application role held before (it owned the tables) and to a superuser
  that has not `SET ROLE` to the owner. With the trigger dropped (only the owner can), those old rights
  rewrite the log, which is the attack this stops.
PostgreSQL only by nature; under CI a PostgreSQL that cannot be reached fails the run (tests/conftest.py).
Roles are cluster-wide and other test runs share the server: every test makes its own role names and
drops them afterwards.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import errors, sql

from domain.periods import Month
from exporters.pain002 import render_pain002
from ledger.bootstrap import database_from_url, open_apps
from ledger.cli import main
from ledger.roles import (
    BadRoleName,
    RoleHasMorePrivileges,
    SetupNeedsPostgres,
    SetupRefused,
    setup_database,
    tables_not_writable,
)
from ledger.storage import EVENT_TABLES, Database, notification_pages
from tests.conftest import PG_ADMIN, POLICY, pg_url
from tests.helpers.anomalies import city, run
from tests.helpers.ledgers import HEADER, LI, WANG, ledger, new_ledger

TRIGGER = "yikatong_events_append_only"
REWRITES = (
    "UPDATE {} SET topic = topic || '!' WHERE notification_id = 1",
    "DELETE FROM {} WHERE notification_id = (SELECT max(notification_id) FROM {})",
    "TRUNCATE {}",
)
OLD_GRANTS = "GRANT UPDATE, DELETE, TRUNCATE ON TABLE {} TO {}"  # what the application role had as owner


@dataclass(frozen=True)
class Deployment:
    """A schema set up by `db setup` with this test's own three roles."""

    schema: str
    owner: str
    app: str
    auditor: str

    @property
    def admin(self) -> Database:
        return database_from_url(pg_url(self.schema))

    @property
    def as_app(self) -> Database:
        return database_from_url(pg_url(self.schema, user=self.app))

    @property
    def as_auditor(self) -> Database:
        return database_from_url(pg_url(self.schema, user=self.auditor))

    def table(self, name: str) -> sql.Composed:
        return sql.Identifier(self.schema, name)

    def connect(self, role: str | None = None) -> psycopg.Connection[Any]:
        """A connection as `role` (logging in as it), else as the superuser of the tests."""
        return psycopg.connect(PG_ADMIN, **({"user": role} if role else {}))


def _drop_roles(*roles: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        for role in roles:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _drop_schema(schema: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def names(pg_reachable: None) -> Iterator[Deployment]:
    """Unique schema and role names, all dropped afterwards; nothing created yet."""
    tag = uuid.uuid4().hex[:10]
    names = Deployment(f"t_{tag}", f"ykt_owner_{tag}", f"ykt_app_{tag}", f"ykt_auditor_{tag}")
    yield names
    _drop_schema(names.schema)
    _drop_roles(names.owner, names.app, names.auditor)


@pytest.fixture
def deployment(names: Deployment) -> Deployment:
    setup_database(names.admin, names.owner, names.app, names.auditor)
    return names


@pytest.fixture
def written(deployment: Deployment, policy_text: str) -> Deployment:
    """A small ledger written through the application role: policy, a city of 5, January's run."""
    registry, disbursement = ledger(deployment.as_app, policy_text)
    city(registry, 5)
    run(registry, disbursement, Month(2017, 1))
    registry.close()
    disbursement.close()
    return deployment


def stored(d: Deployment, table: str) -> list[tuple[Any, ...]]:
    """Every stored event of `table`, as the superuser reads it."""
    with d.connect() as conn:
        return conn.execute(
            sql.SQL(
                "SELECT notification_id, originator_id, originator_version, topic, md5(state) FROM {} "
                "ORDER BY notification_id"
            ).format(d.table(table))
        ).fetchall()


def attempt(conn: psycopg.Connection[Any], statement: str, table: sql.Composed) -> None:
    with conn.transaction():
        conn.execute(sql.SQL(statement).format(table, table))


# --- the application role: refused ----------------------------------------------------------------------


@pytest.mark.parametrize("table", EVENT_TABLES)
def test_the_application_role_cannot_update_delete_or_truncate_a_stored_event(written: Deployment, table: str) -> None:
    before = stored(written, table)
    assert len(before) > 3
    with written.connect(written.app) as conn:
        for statement in REWRITES:
            with pytest.raises(errors.InsufficientPrivilege, match=f"permission denied for table {table}"):
                attempt(conn, statement, written.table(table))
    assert stored(written, table) == before


@pytest.mark.parametrize("table", EVENT_TABLES)
def test_with_the_rights_it_held_as_owner_the_application_role_is_still_refused_by_the_trigger(
    written: Deployment, table: str
) -> None:
    with written.connect() as conn:
        conn.execute(sql.SQL(OLD_GRANTS).format(written.table(table), sql.Identifier(written.app)))
    before = stored(written, table)
    with written.connect(written.app) as conn:
        for statement in REWRITES:
            with pytest.raises(errors.InsufficientPrivilege, match="stored events are append-only"):
                attempt(conn, statement, written.table(table))
    assert stored(written, table) == before


@pytest.mark.parametrize("table", EVENT_TABLES)
def test_sensitivity_without_the_trigger_those_rights_rewrite_the_log(written: Deployment, table: str) -> None:
    """The attack succeeds with the protection off: the owner drops the trigger (only it can), and the
    application role, with the rights an owner of the table has, edits, deletes and truncates events."""
    with written.connect() as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(written.owner)))
        conn.execute(sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(TRIGGER), written.table(table)))
        conn.execute("RESET ROLE")
        conn.execute(sql.SQL(OLD_GRANTS).format(written.table(table), sql.Identifier(written.app)))
    before = stored(written, table)
    update, delete, truncate = REWRITES
    with written.connect(written.app) as conn:
        attempt(conn, update, written.table(table))
        after_update = stored(written, table)
        assert after_update[0][3] == before[0][3] + "!" and after_update[1:] == before[1:]
        attempt(conn, delete, written.table(table))
        assert len(stored(written, table)) == len(before) - 1
        attempt(conn, truncate, written.table(table))
    assert stored(written, table) == []


def test_only_the_owner_may_change_events_and_a_superuser_must_first_become_it(written: Deployment) -> None:
    """'Every role but the owner' includes a superuser that has not `SET ROLE` to the owner; the owner
    (a migration) may. Both run in transactions rolled back, so the log is left as it was."""
    table = written.table("disbursement_events")
    before = stored(written, "disbursement_events")
    with written.connect() as conn:
        for statement in REWRITES:
            with pytest.raises(errors.InsufficientPrivilege, match=r"append-only: \w+ on .* refused for role postgres"):
                attempt(conn, statement, table)
        for statement in REWRITES:
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(written.owner)))
            conn.execute(sql.SQL(statement).format(table, table))  # no error: the owner may
            conn.rollback()
    assert stored(written, "disbursement_events") == before


def test_the_application_role_cannot_drop_alter_or_switch_off_the_tables_or_the_trigger(written: Deployment) -> None:
    schema, table = sql.Identifier(written.schema), written.table("registry_events")
    function = sql.Identifier(written.schema, "yikatong_refuse_event_change")
    trigger, owner, app = sql.Identifier(TRIGGER), sql.Identifier(written.owner), sql.Identifier(written.app)
    sequence = written.table("registry_events_notification_id_seq")
    attacks = [
        sql.SQL("DROP TABLE {}").format(table),
        sql.SQL("ALTER TABLE {} ADD COLUMN note text").format(table),
        sql.SQL("ALTER TABLE {} RENAME TO old_events").format(table),
        sql.SQL("ALTER TABLE {} OWNER TO {}").format(table, app),
        sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(table, trigger),
        sql.SQL("DROP TRIGGER {} ON {}").format(trigger, table),
        sql.SQL("CREATE TRIGGER mine BEFORE UPDATE ON {} FOR EACH STATEMENT EXECUTE FUNCTION {}()").format(
            table, function
        ),
        sql.SQL("CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$")
        .format(function),
        sql.SQL("DROP FUNCTION {}() CASCADE").format(function),
        sql.SQL("CREATE RULE keep AS ON UPDATE TO {} DO INSTEAD NOTHING").format(table),
        sql.SQL("SET session_replication_role = replica"),  # would skip ordinary triggers
        sql.SQL("GRANT {} TO {}").format(owner, app),
        sql.SQL("ALTER SCHEMA {} RENAME TO elsewhere").format(schema),
        sql.SQL("DROP SCHEMA {} CASCADE").format(schema),
        # Slot an event into a gap of the log, or wind the ids back: INSERT names four columns, USAGE on
        # the sequence gives nextval, not setval.
        sql.SQL(
            "INSERT INTO {} (originator_id, originator_version, topic, state, notification_id) "
            "VALUES (gen_random_uuid(), 1, 'x', '\\x00', 1000000)"
        ).format(table),
        sql.SQL("SELECT setval({}, 1)").format(sql.Literal(sequence.as_string())),
    ]
    before = {name: stored(written, name) for name in EVENT_TABLES}
    refused = []
    with written.connect(written.app) as conn:
        for statement in attacks:
            try:
                with conn.transaction():
                    conn.execute(statement)
            except errors.InsufficientPrivilege:
                refused.append(statement.as_string(conn))
    assert len(refused) == len(attacks)
    assert {name: stored(written, name) for name in EVENT_TABLES} == before
    with written.connect() as conn:  # the trigger is there and fires ALWAYS (replica sessions too)
        rows = conn.execute(
            "SELECT c.relname, t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND t.tgname = %s ORDER BY 1",
            (written.schema, TRIGGER),
        ).fetchall()
    assert rows == [("disbursement_events", "A"), ("registry_events", "A")]


def test_the_application_role_writes_and_reads_through_the_library_as_before(written: Deployment) -> None:
    """No DDL on opening, eventsourcing's notification reader and max id work, and the CLI's diagnosis of a
    refused write does not mistake the application role (INSERT on columns) for a read-only one."""
    registry, disbursement = open_apps(written.as_app)
    try:
        last = disbursement.recorder.max_notification_id()
        ids = [n.id for page in notification_pages(disbursement, 7) for n in page]
        assert ids == sorted(ids) and ids[-1] == last and len(ids) == len(stored(written, "disbursement_events"))
        run(registry, disbursement, Month(2017, 2))
        assert disbursement.recorder.max_notification_id() > last
    finally:
        registry.close()
        disbursement.close()
    assert tables_not_writable(written.as_app) == (written.app, [])
    assert tables_not_writable(written.as_auditor) == (written.auditor, sorted(EVENT_TABLES))


# --- the whole month-end as the application role ---------------------------------------------------------


def yikatong(url: str, *args: str, actor: str = "clerk") -> Any:
    result = CliRunner().invoke(main, ["--db", url, "--as", actor, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_a_month_end_runs_connected_as_the_application_role(
    deployment: Deployment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the PostgreSQL ledger's key file is made in the working directory
    app, auditor = deployment.as_app.url, deployment.as_auditor.url
    roster = tmp_path / "r.csv"
    roster.write_text(HEADER + LI + WANG, encoding="utf-8")
    new_ledger(app)
    yikatong(app, "policy", "load", str(POLICY))
    yikatong(app, "roster", "import", str(roster))
    yikatong(app, "run", "2017-01")
    batches = json.loads(yikatong(app, "batch", "list", "--json").output)
    batch = next(b for b in batches if b["programme"] == "urban_dibao")
    out = str(tmp_path / "out")
    export = yikatong(app, "batch", "export", batch["id"], "--format", "pain001", "--out", out, "--json")
    assert len(json.loads(export.output)["files"]) == 1
    yikatong(app, "batch", "approve", batch["id"], actor="checker")  # maker-checker: another actor
    yikatong(app, "batch", "submit", batch["id"])  # the clerk hands the approved file to the bank
    registry, disbursement = open_apps(deployment.as_app)
    (payment,) = disbursement.batch(batch["id"]).payment_ids
    registry.close()
    disbursement.close()
    message = f"YKT{batch['id'][:28]}"
    answer = tmp_path / "answer.xml"
    paid = [(payment, "ACSC", "", batch["total_fen"])]
    answer.write_bytes(render_pain002(message, message, paid, created_at=datetime(2017, 1, 6, tzinfo=UTC)))
    assert json.loads(yikatong(app, "bank", "import", str(answer), "--json").output)["paid"] == 1
    yikatong(app, "projections", "rebuild")
    balances = json.loads(yikatong(app, "report", "balances", "--json").output)["rows"]
    assert sum(r["paid_fen"] for r in balances) == batch["total_fen"]
    assert yikatong(app, "audit", "verify").output.rstrip().endswith("verified")
    assert yikatong(auditor, "audit", "verify", actor="auditor").output.rstrip().endswith("verified")
    with deployment.connect() as conn:  # what the month-end made is where setup said it would be
        owners = dict(
            conn.execute(
                "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
                (deployment.schema,),
            ).fetchall()
        )
    assert {owners[t] for t in EVENT_TABLES} == {deployment.owner}
    assert {o for t, o in owners.items() if t.startswith("rm_")} == {deployment.app}


# --- db setup itself -------------------------------------------------------------------------------------


def _privileges(d: Deployment) -> list[tuple[Any, ...]]:
    """Every ACL entry and owner in the schema (tables, sequences, functions, the schema itself)."""
    with d.connect() as conn:
        return conn.execute(
            "SELECT 'rel', c.relname, pg_get_userbyid(c.relowner), c.relacl::text, "
            "(SELECT array_agg(a.attname || '=' || a.attacl::text ORDER BY a.attname) FROM pg_attribute a "
            " WHERE a.attrelid = c.oid AND a.attacl IS NOT NULL) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %(s)s "
            "UNION ALL SELECT 'fn', p.proname, pg_get_userbyid(p.proowner), p.proacl::text, NULL "
            "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %(s)s "
            "UNION ALL SELECT 'schema', nspname, pg_get_userbyid(nspowner), nspacl::text, NULL "
            "FROM pg_namespace WHERE nspname = %(s)s ORDER BY 1, 2",
            {"s": d.schema},
        ).fetchall()


def test_db_setup_says_what_it_did_and_running_it_again_changes_nothing(names: Deployment) -> None:
    args = ["db", "setup", "--owner", names.owner, "--app", names.app, "--auditor", names.auditor]
    first = json.loads(yikatong(names.admin.url, *args, "--json").output)
    assert first["created_roles"] == [names.owner, names.app, names.auditor]
    assert first["app_url"] == pg_url(names.schema, user=names.app)
    assert first["auditor_url"] == pg_url(names.schema, user=names.auditor)
    assert any(s.startswith("CREATE OR REPLACE TRIGGER") for s in first["statements"])
    granted = _privileges(names)
    column_grants = {name: str(columns) for kind, name, _, _, columns in granted if kind == "rel"}
    assert f"state={{{names.app}=a/" in column_grants["registry_events"]  # INSERT on the event's columns
    again = yikatong(names.admin.url, *args)
    assert "roles created: none (all three existed)" in again.output
    assert f"application: {first['app_url']}" in again.output
    assert _privileges(names) == granted
    with names.connect() as conn:
        logins = dict(
            conn.execute(
                "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY(%s)",
                ([names.owner, names.app, names.auditor],),
            ).fetchall()
        )
    assert logins == {names.owner: False, names.app: True, names.auditor: True}


def test_db_setup_on_an_existing_ledger_takes_the_tables_from_the_role_that_owned_them(
    names: Deployment, policy_text: str
) -> None:
    """An earlier deployment: the application role created (so owned) the schema, the event tables and
    the read models, and could rewrite the log. After `db setup` it can still run the ledger, and not that."""
    from projections.runner import catch_up

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(names.app)))
        conn.execute(sql.SQL("GRANT CREATE ON DATABASE test TO {}").format(sql.Identifier(names.app)))
    registry, disbursement = ledger(names.as_app, policy_text)
    city(registry, 3)
    registry.close()
    disbursement.close()
    catch_up(names.as_app)
    table = names.table("registry_events")
    with names.connect(names.app) as conn:  # sensitivity: as owner of everything it could rewrite the log
        conn.execute(sql.SQL("UPDATE {} SET topic = topic WHERE false").format(table))
        conn.rollback()
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("REVOKE CREATE ON DATABASE test FROM {}").format(sql.Identifier(names.app)))
    done = setup_database(names.admin, names.owner, names.app, names.auditor).setup
    assert names.app not in done.created_roles and set(done.read_models) >= {"rm_balances", "rm_tracking"}
    with names.connect(names.app) as conn, pytest.raises(errors.InsufficientPrivilege):
        attempt(conn, "UPDATE {} SET topic = topic WHERE false", table)
    registry, disbursement = open_apps(names.as_app)
    run(registry, disbursement, Month(2017, 1))
    registry.close()
    disbursement.close()
    assert catch_up(names.as_app).events > 0  # its read models stayed its own


def test_db_setup_refuses_roles_that_would_undo_the_separation(names: Deployment) -> None:
    with pytest.raises(BadRoleName):
        setup_database(names.admin, names.owner, 'x"; DROP TABLE registry_events; --', names.auditor)
    with pytest.raises(SetupRefused, match="three different roles"):
        setup_database(names.admin, names.owner, names.owner, names.auditor)
    with pytest.raises(SetupNeedsPostgres):
        setup_database(database_from_url("sqlite:///unused.db"), names.owner, names.app, names.auditor)
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(sql.Identifier(names.app)))
    with pytest.raises(RoleHasMorePrivileges, match="application role"):
        setup_database(names.admin, names.owner, names.app, names.auditor)
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} NOCREATEROLE").format(sql.Identifier(names.app)))
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(names.owner)))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(names.owner), sql.Identifier(names.app)))
    with pytest.raises(SetupRefused, match=f"role {names.app} is a member of {names.owner}"):
        setup_database(names.admin, names.owner, names.app, names.auditor)
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(names.owner), sql.Identifier(names.app)))
    setup_database(names.admin, names.owner, names.app, names.auditor)
    with pytest.raises(SetupRefused, match="not a superuser"):
        setup_database(names.as_app, names.owner, names.app, names.auditor)


def test_db_setup_refuses_when_the_application_role_could_rewrite_through_another_role(names: Deployment) -> None:
    """Grants it does not make are not its to revoke: a right to UPDATE an event table that the
    application role inherits from another role is named, and the setup's grants are rolled back."""
    helper = f"{names.app}_x"
    setup_database(names.admin, names.owner, names.app, names.auditor)  # sensitivity: passes as set up
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(helper)))
            conn.execute(
                sql.SQL("GRANT UPDATE ON TABLE {} TO {}").format(names.table("registry_events"), sql.Identifier(helper))
            )
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(helper), sql.Identifier(names.app)))
        with pytest.raises(SetupRefused, match=f"role {names.app} could still change registry_events"):
            setup_database(names.admin, names.owner, names.app, names.auditor)
    finally:
        _drop_roles(helper)
