"""One role per job and its grants, from the settings and the live schema.

:func:`plan_roles` reads the database as the installing (owner) role and returns, per job, the
statements that give its role exactly what the job does:

========== =====================================================================
archiver   USAGE on the schema; SELECT, DELETE, INSERT, UPDATE on policy tables and their
           children (INSERT: restore; UPDATE: restore and an aggregate's guarded delete lock
           rows with SELECT ... FOR UPDATE, which PostgreSQL allows only with UPDATE, and
           DELETE + INSERT could rewrite a row anyway); SELECT on tables whose foreign
           keys keep rows; the same four on the archive's bookkeeping in Steward's schema
validator  SELECT on suite tables and on what their query expectations read; SELECT on the
           archive manifest and parts (the scrub)
backup     SELECT on every table and sequence (what pg_dump reads); CREATEDB for
           verify-backups' scratch databases (``security.backup_createdb``)
relay      SELECT, UPDATE on the outbox table; DELETE for cleanup-outbox
warmer     SELECT on the tables its queries read (their plans, see ``steward.statistics``)
migrator   owns the application's schemas and tables (migrations alter them); SELECT,
           INSERT, DELETE on the migration checksums in Steward's schema (not its owner: Steward's
           schema belongs to whoever ran ``steward install``)
========== =====================================================================

Every job also gets CONNECT on the database. Statements are psycopg ``sql`` compositions with
quoted identifiers; nothing from the settings is pasted. :func:`render_roles` prints them (no
password ever), :func:`apply_roles` runs them (idempotent: a role is created only if missing,
NOLOGIN unless its password is set, ``security.passwords.<job>``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.engine import Connection

from steward.settings import Settings

__all__ = ["DEFAULT_ROLES", "JOBS", "RoleGrants", "apply_roles", "plan_roles", "render_roles"]

JOBS = ("archiver", "validator", "backup", "relay", "warmer", "migrator")
DEFAULT_ROLES = {job: f"steward_{job}" for job in JOBS}
_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
ARCHIVER_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
RESTORE_AUDIT = "audit_log"
BOOKKEEPING_JOBS = ("archiver", "validator", "migrator")


def bookkeeping(job: str) -> tuple[tuple[str, ...], list[str]]:
    """The privileges ``job`` needs on Steward's own tables (made by ``steward install`` in
    database.schema), and those tables' names, from the table definitions themselves."""
    from steward.archive import manifest
    from steward.install import steward_tables
    from steward.migrations import checksums_table

    if job == "archiver":  # manifest, parts, runs, restored keys, partitions...
        names = [t.name for t in steward_tables() if t.name != checksums_table.name]
        return ARCHIVER_PRIVILEGES, names
    if job == "validator":  # the scrub reads finished batches and their parts
        return ("SELECT",), [manifest.manifest_table.name, manifest.parts_table.name]
    return ("SELECT", "INSERT", "DELETE"), [checksums_table.name]


Table = tuple[str, str]  # (schema, name)


@dataclass
class RoleGrants:
    """One job's role and the statements that grant it what the job needs."""

    job: str
    role: str
    statements: list[sql.Composable] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # printed as comments above the grants
    createdb: bool = False

    def grant(self, privileges: Sequence[str], tables: Iterable[Table]) -> None:
        """``GRANT privileges ON schema.table TO role`` for each table (USAGE on its schema)."""
        tables = list(dict.fromkeys(tables))
        for schema in dict.fromkeys(schema for schema, _ in tables):
            self.statements.append(_on_schema("USAGE", schema, self.role))
        for schema, name in tables:
            self.statements.append(
                sql.SQL("GRANT {} ON TABLE {} TO {}").format(
                    sql.SQL(", ").join(sql.SQL(p) for p in privileges),
                    sql.Identifier(schema, name),
                    sql.Identifier(self.role),
                )
            )


def plan_roles(settings: Settings, conn: Connection) -> list[RoleGrants]:
    """Every job's role and grants for the database ``conn`` is connected to."""
    roles = settings.security.roles
    database = conn.execute(sa.text("SELECT current_database()")).scalar_one()
    plans = [
        _archiver(settings, conn, RoleGrants("archiver", roles.archiver)),
        _validator(settings, conn, RoleGrants("validator", roles.validator)),
        _backup(settings, conn, RoleGrants("backup", roles.backup)),
        _relay(settings, conn, RoleGrants("relay", roles.relay)),
        _warmer(settings, conn, RoleGrants("warmer", roles.warmer)),
        _migrator(conn, RoleGrants("migrator", roles.migrator), settings.database.schema_),
    ]
    for plan in plans:
        plan.statements.insert(
            0,
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(database), sql.Identifier(plan.role)
            ),
        )
        if plan.job in BOOKKEEPING_JOBS:
            _bookkeeping(conn, settings.database.schema_, plan)
    return plans


def _bookkeeping(conn: Connection, schema: str, plan: RoleGrants) -> None:
    """The job's privileges on Steward's own tables, and on their sequences (serial ids)."""
    privileges, names = bookkeeping(plan.job)
    present = set(sa.inspect(conn).get_table_names(schema=schema))
    missing = [name for name in names if name not in present]
    if missing:
        plan.notes.append(
            f"Steward's tables are not installed in schema {schema} (run `steward install` "
            "first, then this again)"
        )
        return
    plan.grant(privileges, [(schema, name) for name in names])
    if "INSERT" in privileges:
        _grant_sequences(conn, plan, schema, names)


def _grant_sequences(
    conn: Connection, plan: RoleGrants, schema: str, tables: Sequence[str]
) -> None:
    """USAGE on the sequences behind ``tables``' serial / identity ids (INSERT takes one)."""
    for sequence in _sequences_of(conn, schema, tables):
        plan.statements.append(
            sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(
                sql.Identifier(schema, sequence), sql.Identifier(plan.role)
            )
        )


def _sequences_of(conn: Connection, schema: str, tables: Sequence[str]) -> list[str]:
    """Sequences owned by columns of ``tables`` (serial and identity ids)."""
    rows = conn.execute(
        sa.text(
            "SELECT s.relname FROM pg_class s JOIN pg_depend d ON d.objid = s.oid "
            "JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace n ON n.oid = t.relnamespace "
            "WHERE s.relkind = 'S' AND d.deptype IN ('a', 'i') AND n.nspname = :schema "
            "AND t.relname = ANY(:tables) ORDER BY s.relname"
        ),
        {"schema": schema, "tables": list(tables)},
    )
    return [name for (name,) in rows]


def _archiver(settings: Settings, conn: Connection, plan: RoleGrants) -> RoleGrants:
    from steward.archive.policy import resolve_sql_policies, select_policies

    policies = resolve_sql_policies(settings, conn, select_policies(settings, None))
    current = _current_schema(conn)
    for policy in policies:
        schema = policy.table.schema or current
        owned = [policy.name, *(child.name for child in policy.children)]
        plan.grant(ARCHIVER_PRIVILEGES, [(schema, name) for name in owned])
        referencing = [r.table for r in policy.references]
        referencing += [r.table for child in policy.children for r in child.references]
        plan.grant(("SELECT",), [(schema, name) for name in referencing if name not in owned])
    if sa.inspect(conn).has_table(RESTORE_AUDIT):  # restore writes who restored what
        plan.grant(("INSERT",), [(current, RESTORE_AUDIT)])
        _grant_sequences(conn, plan, current, [RESTORE_AUDIT])
    plan.notes.append(
        "archive-to-s3 and restore-archive (UPDATE: row locks of the guarded delete, overwrite;"
        f" INSERT on {RESTORE_AUDIT}: each restore is recorded there)"
    )
    if any(_is_partitioned(conn, p.table.schema or current, p.name) for p in policies):
        plan.notes.append(
            "a policy table is partitioned: detaching and dropping whole partitions needs the "
            "table's owner (set archive.database_url to the migrator for that run)"
        )
    return plan


def _validator(settings: Settings, conn: Connection, plan: RoleGrants) -> RoleGrants:
    from steward.statistics import suite_tables
    from steward.validation import load_suites, suite_parameters

    existing = set(sa.inspect(conn).get_table_names())
    suites = [
        suite
        for suite in load_suites(settings.validation.expectations_dir)
        if suite.datasource == "sql" and suite.target in existing
    ]
    names = suite_tables(conn.engine, suites, suite_parameters(settings))
    plan.grant(("SELECT",), _qualified(conn, names))
    plan.notes.append("validate-data runs read-only: SELECT on its suites' tables only")
    return plan


def _backup(settings: Settings, conn: Connection, plan: RoleGrants) -> RoleGrants:
    for schema in _application_schemas(conn):
        plan.statements.append(_on_schema("USAGE", schema, plan.role))
        for kind in ("TABLES", "SEQUENCES"):
            plan.statements.append(
                sql.SQL("GRANT SELECT ON ALL {} IN SCHEMA {} TO {}").format(
                    sql.SQL(kind), sql.Identifier(schema), sql.Identifier(plan.role)
                )
            )
    plan.createdb = settings.security.backup_createdb
    plan.notes.append(
        "pg_dump reads every table and sequence; rerun after migrations add tables"
        + ("; CREATEDB: verify-backups restores into scratch databases" if plan.createdb else "")
    )
    return plan


def _relay(settings: Settings, conn: Connection, plan: RoleGrants) -> RoleGrants:
    name = settings.outbox.table
    if not sa.inspect(conn).has_table(name):
        plan.notes.append(f"no outbox table {name!r}: nothing to grant")
        return plan
    plan.grant(("SELECT", "UPDATE", "DELETE"), [(_current_schema(conn), name)])
    plan.notes.append("relay-outbox: SELECT, UPDATE; cleanup-outbox: DELETE")
    return plan


def _warmer(settings: Settings, conn: Connection, plan: RoleGrants) -> RoleGrants:
    from steward.statistics import warmer_tables

    warmers = [w for w in settings.cache.warmers if w.enabled]
    for warmer in warmers:
        if warmer.query is None:
            plan.notes.append(
                f"warmer {warmer.name}: reads what its function {warmer.source} reads "
                "(grant SELECT on those tables by hand)"
            )
    plan.grant(("SELECT",), _qualified(conn, warmer_tables(conn.engine, warmers)))
    plan.notes.append("warm-cache: SELECT on the tables its warmers' queries read")
    return plan


def _migrator(conn: Connection, plan: RoleGrants, own: str) -> RoleGrants:
    role = sql.Identifier(plan.role)
    for schema in (s for s in _application_schemas(conn) if s != own):
        plan.statements.append(
            sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(sql.Identifier(schema), role)
        )
        for kind, name in _owned_objects(conn, schema):
            plan.statements.append(
                sql.SQL("ALTER {} {} OWNER TO {}").format(
                    sql.SQL(kind), sql.Identifier(schema, name), role
                )
            )
    plan.notes.append(
        f"migrate: owns the application's schemas and their tables (not {own}: Steward's own)"
    )
    return plan


def _is_partitioned(conn: Connection, schema: str, name: str) -> bool:
    return bool(
        conn.execute(
            sa.text(
                "SELECT c.relkind = 'p' FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = :s AND c.relname = :t"
            ),
            {"s": schema, "t": name},
        ).scalar()
    )


def _owned_objects(conn: Connection, schema: str) -> list[tuple[str, str]]:
    """Tables, partitioned tables, views and sequences of ``schema`` (not owned by a table)."""
    rows = conn.execute(
        sa.text(
            "SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' "
            "WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END, c.relname "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :schema AND c.relkind IN ('r', 'p', 'v', 'm', 'S') "
            "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid "
            "AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')) "
            "ORDER BY c.relname"
        ),
        {"schema": schema},
    )
    return [(kind, name) for kind, name in rows]


def _application_schemas(conn: Connection) -> list[str]:
    """The schemas holding the application's data (every non-system schema)."""
    rows = conn.execute(
        sa.text(
            "SELECT nspname FROM pg_namespace WHERE nspname <> ALL(:system) "
            "AND nspname NOT LIKE 'pg\\_temp\\_%' AND nspname NOT LIKE 'pg\\_toast\\_temp\\_%' "
            "ORDER BY nspname"
        ),
        {"system": list(_SYSTEM_SCHEMAS)},
    )
    return [name for (name,) in rows]


def _qualified(conn: Connection, names: Iterable[str]) -> list[Table]:
    """(schema, table) of ``schema.table`` or bare names (the current schema)."""
    current = _current_schema(conn)
    return [
        (schema, table) if table else (current, schema)
        for schema, _, table in (name.partition(".") for name in names)
    ]


def _current_schema(conn: Connection) -> str:
    return str(conn.execute(sa.text("SELECT current_schema()")).scalar_one())


def _on_schema(privilege: str, schema: str, role: str) -> sql.Composed:
    return sql.SQL("GRANT {} ON SCHEMA {} TO {}").format(
        sql.SQL(privilege), sql.Identifier(schema), sql.Identifier(role)
    )


def _create_role(plan: RoleGrants) -> sql.Composed:
    """An idempotent CREATE ROLE (NOLOGIN) for a script."""
    create = sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(plan.role))
    return sql.SQL(
        "DO $steward$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {}) "
        "THEN {}; END IF; END $steward$"
    ).format(sql.Literal(plan.role), create)


def render_roles(plans: Sequence[RoleGrants], conn: Connection) -> str:
    """The whole script as text (comments, then statements); passwords are never in it."""
    raw = _driver(conn)
    lines: list[str] = []
    for plan in plans:
        lines.append(f"-- {plan.job}: role {plan.role}")
        lines += [f"--   {note}" for note in plan.notes]
        lines.append(_create_role(plan).as_string(raw) + ";")
        if plan.createdb:
            lines.append(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(plan.role))
                         .as_string(raw) + ";")  # fmt: skip
        lines += [statement.as_string(raw) + ";" for statement in _unique(plan.statements)]
        lines.append("")
    return "\n".join(lines)


def apply_roles(
    plans: Sequence[RoleGrants], conn: Connection, passwords: dict[str, str] | None = None
) -> list[str]:
    """Run every plan in ``conn``'s transaction; one line per role saying what was done."""
    raw = _driver(conn)
    done = []
    for plan in plans:
        exists = conn.execute(
            sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": plan.role}
        ).first()
        password = (passwords or {}).get(plan.job, "")
        raw.execute(_create_role(plan))
        if password:
            raw.execute(
                sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(plan.role), sql.Literal(password)
                )
            )
        if plan.createdb:
            raw.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(plan.role)))
        statements = _unique(plan.statements)
        for statement in statements:
            raw.execute(statement)
        login = "LOGIN (password set)" if password else "NOLOGIN" if not exists else "kept"
        done.append(
            f"{plan.job}: role {plan.role} {'existed' if exists else 'created'}, {login}, "
            f"{len(statements)} grant(s)"
        )
    return done


def _unique(statements: Sequence[sql.Composable]) -> list[sql.Composable]:
    seen: dict[str, sql.Composable] = {}
    for statement in statements:
        seen.setdefault(repr(statement), statement)
    return list(seen.values())


def _driver(conn: Connection) -> Any:
    """The psycopg connection under ``conn`` (quoting follows its encoding and settings)."""
    return conn.connection.driver_connection
