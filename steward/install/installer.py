"""Create Steward's schema and tables; move the ones an earlier version kept elsewhere.

Everything runs in one transaction (PostgreSQL DDL is transactional), under a
transaction-level advisory lock, so two installs at once neither fail nor half-install. Names
come from the validated ``database.schema`` setting and Steward's own table definitions and are
quoted by the dialect's identifier preparer, never pasted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.install.tables import steward_tables
from steward.settings import Settings
from steward.storage import SqlClient, create_sql_engine
from steward.storage.steward_schema import resolved_schema

__all__ = ["InstallReport", "install", "install_on", "install_sql"]

_INSTALL_LOCK = 0x5374_6577_6172_6449  # "StewardI": one install at a time


@dataclass
class InstallReport:
    """What an install did: one line per object created or moved (empty: nothing to do)."""

    database: str
    schema: str | None
    actions: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"schema {self.schema} of {self.database}" if self.schema else self.database


def install(settings: Settings, *, url: str | None = None) -> InstallReport:
    """Install Steward's tables in the configured database (or ``url``); idempotent."""
    sql = SqlClient(settings, url=url)
    try:
        with sql.begin() as conn:
            return install_on(conn)
    finally:
        sql.dispose()


def install_on(conn: Connection) -> InstallReport:
    """Create what is missing on ``conn`` (inside the caller's transaction)."""
    schema = resolved_schema(conn)
    report = InstallReport(conn.engine.url.database or "the database", schema)
    if schema is None:  # SQLite: no schemas, Steward's tables sit in the main database
        _create_tables(conn, None, report)
        return report
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_INSTALL_LOCK)))
    if not sa.inspect(conn).has_schema(schema):
        conn.execute(sa.schema.CreateSchema(schema))
        report.actions.append(f"created schema {schema}")
    _move_old_tables(conn, schema, report)
    _create_tables(conn, schema, report)
    return report


def _create_tables(conn: Connection, schema: str | None, report: InstallReport) -> None:
    inspector = sa.inspect(conn)
    for table in steward_tables():
        if inspector.has_table(table.name, schema=schema):
            continue
        table.create(conn)
        report.actions.append(f"created table {_qualified(schema, table.name)}")


def _move_old_tables(conn: Connection, schema: str, report: InstallReport) -> None:
    """Earlier versions created their tables in the application's schema (``current_schema``):
    move each into Steward's schema with its rows, indexes and sequences."""
    old = conn.execute(sa.select(sa.func.current_schema())).scalar_one()
    if old is None or old == schema:
        return
    inspector = sa.inspect(conn)
    quote = conn.dialect.identifier_preparer.quote
    for table in steward_tables():
        if not inspector.has_table(table.name, schema=old):
            continue
        if inspector.has_table(table.name, schema=schema):
            report.actions.append(
                f"left {old}.{table.name} alone: {schema}.{table.name} exists already "
                "(compare them and drop the old one)"
            )
            continue
        source = f"{quote(old)}.{quote(table.name)}"
        conn.exec_driver_sql(f"ALTER TABLE {source} SET SCHEMA {quote(schema)}")
        rows = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
        report.actions.append(
            f"moved table {old}.{table.name} to {schema}.{table.name} ({rows} rows)"
        )


def install_sql(settings: Settings) -> str:
    """The install as an idempotent SQL script for the configured dialect (no connection)."""
    engine = create_sql_engine(settings)
    try:
        dialect = engine.dialect
        schema = None if dialect.name == "sqlite" else settings.database.schema_
    finally:
        engine.dispose()
    target = sa.MetaData()
    statements: list[sa.schema.ExecutableDDLElement] = []
    if schema is not None:
        statements.append(sa.schema.CreateSchema(schema, if_not_exists=True))
    for table in steward_tables():
        copy = table.to_metadata(target, schema=schema)  # type: ignore[arg-type]  # None: none
        statements.append(sa.schema.CreateTable(copy, if_not_exists=True))
        statements.extend(sa.schema.CreateIndex(ix, if_not_exists=True) for ix in copy.indexes)
    header = f"-- Steward install for {dialect.name}\n"
    if schema is not None:
        header = (
            f"-- Steward install for {dialect.name}, schema {schema}. Tables an earlier version "
            "kept in the application's schema are moved by `steward install` itself.\n"
        )
    body = "".join(f"{str(s.compile(dialect=dialect)).strip()};\n\n" for s in statements)
    return header + body


def _qualified(schema: str | None, name: str) -> str:
    return f"{schema}.{name}" if schema else name
