"""Putting one SQL table's archived rows back (its :class:`~steward.archive.sql_rows.TableRows`).

Restores insert a batch at once inside a savepoint and, if the database refuses it, row by
row, so one clash (a reused unique value) keeps back only its own row and is reported with the
table, the key and the constraint.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.archive.sql_rows import TableRows, chunked

__all__ = [
    "Clash",
    "TableRestore",
    "constraint_of",
    "existing_keys",
    "exists_again",
    "insert",
    "overwrite",
    "restore_table",
]


@dataclass(frozen=True)
class Clash:
    """A row a restore could not put back: where, which key, which constraint refused it."""

    table: str
    key: Any
    constraint: str

    def __str__(self) -> str:
        return f"{self.table}:{self.key} ({self.constraint})"


def existing_keys(
    table: TableRows, conn: Connection, keys: Sequence[Any], *, lock: bool = True
) -> set[Any]:
    """The keys among ``keys`` the table holds (locked until commit when ``lock``)."""
    found: set[Any] = set()
    for chunk in chunked(keys):
        query = sa.select(*table.keys).where(table.key_in(chunk))
        if table.postgres and lock:
            query = query.with_for_update(of=table.table)
        found.update(table.keys_from(conn.execute(query).all()))
    return found


def insert(table: TableRows, conn: Connection, rows: Sequence[dict[str, Any]]) -> list[Clash]:
    """Insert ``rows``; rows the database refuses are returned as clashes, the rest stay."""
    if not rows:
        return []
    statement = sa.insert(table.table).values(_values(table, rows[0]))
    try:
        with conn.begin_nested():
            conn.execute(statement, [_params(row) for row in rows])
        return []
    except sa.exc.IntegrityError:
        pass
    clashes = []
    for row in rows:  # one savepoint per row: only the refused rows stay out
        try:
            with conn.begin_nested():
                conn.execute(statement, [_params(row)])
        except sa.exc.IntegrityError as exc:
            clashes.append(Clash(table.name, table.key_of(row), constraint_of(exc)))
    return clashes


def overwrite(table: TableRows, conn: Connection, rows: Sequence[dict[str, Any]]) -> list[Clash]:
    """Replace the rows with these keys by their archived values (clashes reported)."""
    if not rows:
        return []
    values = _values(table, rows[0])
    statement = (
        sa.update(table.table)
        .where(*(c == sa.bindparam(f"_k_{c.name}", type_=c.type) for c in table.keys))
        .values({n: v for n, v in values.items() if n not in table.key_names})
    )
    clashes = []
    for row in rows:
        params = _params(row) | {f"_k_{c.name}": row[c.name] for c in table.keys}
        try:
            with conn.begin_nested():
                conn.execute(statement, params)
        except sa.exc.IntegrityError as exc:
            clashes.append(Clash(table.name, table.key_of(row), constraint_of(exc)))
    return clashes


def _values(table: TableRows, row: dict[str, Any]) -> dict[str, sa.ColumnElement[Any]]:
    """The bound value of each column ``row`` has. JSON is bound as the archived text and cast
    to the column's own type on PostgreSQL (``CAST(:v AS JSONB)``): PostgreSQL parses it, so
    ``json`` keeps its text and ``jsonb`` its numbers as written (``1.50``); SQL NULL stays
    NULL and the text ``null`` is JSON null. SQLite keeps JSON as text. (SQLAlchemy's JSON
    type would parse and re-serialise it, and write SQL NULL as JSON null.)"""
    kinds = {spec.name: spec.kind for spec in table.specs}
    values: dict[str, sa.ColumnElement[Any]] = {}
    for name in row:
        column = table.table.c[name]
        if kinds[name] != "json":
            values[name] = sa.bindparam(f"_v_{name}", type_=column.type)
            continue
        text = sa.bindparam(f"_v_{name}", type_=sa.Text())
        values[name] = sa.cast(text, column.type) if table.postgres else text
    return values


def _params(row: dict[str, Any]) -> dict[str, Any]:
    return {f"_v_{name}": value for name, value in row.items()}


def constraint_of(exc: sa.exc.IntegrityError) -> str:
    """The constraint that refused a row (PostgreSQL names it; SQLite says what it checks)."""
    diag = getattr(getattr(exc, "orig", None), "diag", None)
    name = getattr(diag, "constraint_name", None)
    if name:
        return str(name)
    text = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    match = re.match(r"(UNIQUE|NOT NULL|CHECK|FOREIGN KEY) constraint failed(?:: (.*))?", text)
    if match:
        return f"{match.group(1)} {match.group(2) or ''}".strip()
    return text[:200]


@dataclass
class TableRestore:
    """What putting one table's rows back did."""

    back: set[Any]  # keys holding their archived values afterwards
    inserted: int
    overwritten: int
    conflicts: list[Any]  # keys that exist again (not overwritten)
    clashes: list[Clash]


def restore_table(
    conn: Connection,
    table: TableRows,
    rows: Sequence[dict[str, Any]],
    replace: bool,
    dry_run: bool,
) -> TableRestore:
    """Insert the rows whose key is free (and, ``replace``, update the others)."""
    key = table.key_of
    existing = existing_keys(table, conn, [key(row) for row in rows])
    fresh = [row for row in rows if key(row) not in existing]
    taken = [row for row in rows if key(row) in existing]
    clashes = [] if dry_run else insert(table, conn, fresh)
    replaced = [] if dry_run or not replace else overwrite(table, conn, taken)
    refused = {c.key for c in clashes + replaced}
    back = {key(row) for row in fresh + (taken if replace else [])} - refused
    return TableRestore(
        back=back,
        inserted=len(fresh) - len(clashes),
        overwritten=len(taken) - len(replaced) if replace else 0,
        conflicts=[] if replace else [key(row) for row in taken],
        clashes=clashes + replaced,
    )


def exists_again(table: TableRows, key: Any) -> Clash:
    return Clash(table.name, key, f"primary key {table.key_name} (the row exists again)")
