"""Where Steward's own tables live: a schema of their own (``database.schema``, default
``steward``) on PostgreSQL, the main database on SQLite (which has no schemas).

Steward's tables (archive manifest, parts, runs; migration checksums) are declared with the
placeholder schema :data:`SCHEMA_TOKEN`; every engine built by
:func:`~steward.storage.sql.create_sql_engine` carries a ``schema_translate_map`` that turns it
into the configured schema (or no schema at all on SQLite). So the same ``Table`` objects serve
any configuration, and the application's schema never holds a Steward table.

Only ``steward install`` creates them (:mod:`steward.install`); a flow that finds them missing
raises :class:`~steward.errors.NotInstalled` (one line saying to run it), never creates them.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from steward.errors import NotInstalled

__all__ = [
    "SCHEMA_TOKEN",
    "missing_tables",
    "require_installed",
    "resolved_schema",
    "schema_translate_map",
]

SCHEMA_TOKEN = "steward"


def schema_translate_map(schema: str, dialect: str) -> dict[str | None, str | None]:
    """The ``schema_translate_map`` of an engine: Steward's tables into ``schema`` (PostgreSQL)
    or into the main database (SQLite)."""
    return {SCHEMA_TOKEN: None if dialect == "sqlite" else schema}


def resolved_schema(bind: Engine | Connection) -> str | None:
    """The schema Steward's tables live in for ``bind`` (None: the main database, SQLite)."""
    mapping = bind.get_execution_options().get("schema_translate_map") or {}
    if bind.dialect.name == "sqlite":
        return None
    return mapping.get(SCHEMA_TOKEN, SCHEMA_TOKEN)


def missing_tables(bind: Engine | Connection, tables: Iterable[sa.Table]) -> list[str]:
    """Qualified names of those of ``tables`` that do not exist for ``bind``."""
    schema = resolved_schema(bind)
    inspector = sa.inspect(bind)
    return [
        f"{schema}.{table.name}" if schema else table.name
        for table in tables
        if not inspector.has_table(table.name, schema=schema)
    ]


def require_installed(bind: Engine | Connection, tables: Iterable[sa.Table]) -> None:
    """Raise :class:`NotInstalled` (one line) when one of ``tables`` is missing."""
    missing = missing_tables(bind, tables)
    if not missing:
        return
    schema = resolved_schema(bind)
    where = f"schema {schema} of " if schema else ""
    database = bind.engine.url.database or "the database"
    raise NotInstalled(
        f"Steward's tables are not installed in {where}{database} (missing "
        f"{', '.join(missing)}); run `steward install` once as the schema owner"
    )
