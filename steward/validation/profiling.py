"""What ``steward validate init`` learns about a table: its declared schema and its data.

The schema comes from SQLAlchemy's inspector (primary key, NOT NULL, foreign keys, unique
constraints and unique indexes, CHECK constraints); the data from one aggregate query per
table (row count, per-column minimum / maximum, distinct counts, future timestamps) plus one
small query per low-cardinality text column for its values. Every query is built with
SQLAlchemy Core on the reflected table, so names are quoted by the driver, never pasted.
Everything runs in a read-only transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from steward.errors import ConfigError, closest_name
from steward.settings import Settings

__all__ = [
    "FUTURE_TOLERANCE_SECONDS",
    "ColumnProfile",
    "TableProfile",
    "connect_read_only",
    "profile_tables",
    "user_tables",
]

# A timestamp further ahead than this (clock skew between application servers) is "future".
FUTURE_TOLERANCE_SECONDS = 300
VALUE_SET_MAX = 20  # at most this many distinct values make a text column "low-cardinality"
VALUE_SET_ROWS_PER_VALUE = 4  # ... and only with at least this many rows per distinct value
INTERNAL_PREFIXES = ("steward_", "alembic_version")


@dataclass
class ColumnProfile:
    """One column: its kind, nullability and what the data looks like."""

    name: str
    kind: str  # text, integer, numeric, timestamp, uuid, boolean, other
    nullable: bool
    minimum: Any = None
    maximum: Any = None
    distinct: int | None = None
    values: list[Any] | None = None  # low-cardinality text columns only
    future: int = 0  # timestamps later than now + FUTURE_TOLERANCE_SECONDS


@dataclass
class TableProfile:
    """A table's declared rules and its data's shape."""

    name: str
    columns: dict[str, ColumnProfile]
    primary_key: list[str]
    foreign_keys: list[dict[str, Any]]
    uniques: list[list[str]]
    checks: list[dict[str, Any]]
    rows: int = 0
    indexed: list[list[str]] = field(default_factory=list)

    @property
    def key(self) -> list[str]:
        """Columns that identify a row in reports: the primary key, else the first unique."""
        return list(self.primary_key or (self.uniques[0] if self.uniques else []))

    def has(self, *names: str) -> bool:
        return all(name in self.columns for name in names)


@contextmanager
def connect_read_only(source: Settings | Engine) -> Iterator[Connection]:
    """A read-only transaction on the configured database or on a given engine."""
    if isinstance(source, Settings):
        from steward.validation.readonly import read_only

        with read_only(source) as conn:
            yield conn
        return
    with source.connect() as conn, conn.begin() as transaction:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        yield conn
        transaction.rollback()


def user_tables(conn: Connection, tables: list[str] | None = None) -> list[str]:
    """The application's tables (Steward's own and Alembic's left out), or ``tables`` checked."""
    existing = sorted(sa.inspect(conn).get_table_names())
    if tables is None:
        return [t for t in existing if not t.startswith(INTERNAL_PREFIXES)]
    for name in tables:
        if name not in existing:
            guess = closest_name(name, existing)
            hint = f"; did you mean {guess!r}?" if guess else ""
            raise ConfigError(f"table {name!r} does not exist in the database{hint}")
    return list(dict.fromkeys(tables))


def profile_tables(conn: Connection, tables: list[str]) -> list[TableProfile]:
    """Schema and data profile of each table, in the order given."""
    inspector = sa.inspect(conn)
    metadata = sa.MetaData()
    return [_profile(conn, inspector, sa.Table(t, metadata, autoload_with=conn)) for t in tables]


def _profile(conn: Connection, inspector: Any, table: sa.Table) -> TableProfile:
    profile = TableProfile(
        name=table.name,
        columns={c.name: ColumnProfile(c.name, _kind(c.type), bool(c.nullable)) for c in table.c},
        primary_key=[c.name for c in table.primary_key.columns],
        foreign_keys=[_foreign_key(fk) for fk in inspector.get_foreign_keys(table.name)],
        uniques=_uniques(inspector, table.name),
        checks=_checks(inspector, table.name),
        indexed=[list(i["column_names"]) for i in inspector.get_indexes(table.name)],
    )
    _profile_data(conn, table, profile)
    return profile


def _kind(type_: sa.types.TypeEngine[Any]) -> str:
    if isinstance(type_, sa.Boolean):
        return "boolean"
    if isinstance(type_, sa.Uuid) or type(type_).__name__.upper() == "UUID":
        return "uuid"
    if isinstance(type_, sa.Integer):
        return "integer"
    if isinstance(type_, sa.Numeric | sa.Float):
        return "numeric"
    if isinstance(type_, sa.DateTime):
        return "timestamp"
    if isinstance(type_, sa.String) and not isinstance(type_, sa.Enum):
        return "text"
    return "other"


def _foreign_key(fk: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": fk.get("name"),
        "columns": list(fk["constrained_columns"]),
        "referred_table": fk["referred_table"],
        "referred_columns": list(fk["referred_columns"]),
    }


def _uniques(inspector: Any, table: str) -> list[list[str]]:
    found = [list(u["column_names"]) for u in inspector.get_unique_constraints(table)]
    found += [
        list(i["column_names"])
        for i in inspector.get_indexes(table)
        if i.get("unique")
        and all(i["column_names"])
        and not i.get("dialect_options", {}).get("postgresql_where")
    ]
    unique: list[list[str]] = []
    for columns in found:
        if columns not in unique:
            unique.append(columns)
    return unique


def _checks(inspector: Any, table: str) -> list[dict[str, Any]]:
    try:
        checks = inspector.get_check_constraints(table)
    except NotImplementedError:
        return []
    return [{"name": c.get("name"), "sqltext": str(c["sqltext"])} for c in checks]


def _profile_data(conn: Connection, table: sa.Table, profile: TableProfile) -> None:
    """One aggregate query: rows, min / max of numbers, distinct texts, future timestamps."""
    keys = set(profile.key) | {c for fk in profile.foreign_keys for c in fk["columns"]}
    future = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=FUTURE_TOLERANCE_SECONDS)
    measures: list[tuple[str, str, sa.ColumnElement[Any]]] = []
    for column in table.c:
        kind = profile.columns[column.name].kind
        if kind in ("integer", "numeric") and column.name not in keys:
            measures.append((column.name, "minimum", sa.func.min(column)))
            measures.append((column.name, "maximum", sa.func.max(column)))
        elif kind == "text" and column.name not in keys:
            measures.append((column.name, "distinct", sa.func.count(sa.distinct(column))))
        elif kind == "timestamp":
            late = sa.case((column > sa.bindparam(None, future, type_=column.type), 1), else_=0)
            measures.append((column.name, "future", sa.func.coalesce(sa.func.sum(late), 0)))
    query = sa.select(sa.func.count(), *[m[2] for m in measures]).select_from(table)
    row = conn.execute(query).one()
    profile.rows = int(row[0])
    for (name, attribute, _), value in zip(measures, row[1:], strict=True):
        setattr(profile.columns[name], attribute, value)
    for found in profile.columns.values():
        if _low_cardinality(found, profile.rows):
            column = table.c[found.name]
            values = sa.select(sa.distinct(column)).where(column.is_not(None))
            found.values = sorted(conn.execute(values).scalars())


def _low_cardinality(column: ColumnProfile, rows: int) -> bool:
    distinct = column.distinct or 0
    return (
        column.kind == "text"
        and 1 <= distinct <= VALUE_SET_MAX
        and rows >= distinct * VALUE_SET_ROWS_PER_VALUE
    )
