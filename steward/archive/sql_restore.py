"""Helpers of a SQL source's restores: one table's rows put back (the keys already there are
conflicts, rows the database refuses are clashes), and keys given by an operator turned into
the key columns' Python types."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.archive.sql_rows import Clash, TableRows
from steward.errors import ConfigError

__all__ = ["TableRestore", "coerce_value", "exists_again", "key_parts", "restore_table"]


@dataclass
class TableRestore:
    back: set[Any]  # keys holding their archived values afterwards
    inserted: int
    overwritten: int
    conflicts: list[Any]  # keys that exist again (not overwritten)
    clashes: list[Clash]


def restore_table(
    conn: Connection,
    table: TableRows,
    rows: Sequence[dict[str, Any]],
    overwrite: bool,
    dry_run: bool,
) -> TableRestore:
    key = table.key_of
    existing = table.existing_keys(conn, [key(row) for row in rows])
    fresh = [row for row in rows if key(row) not in existing]
    taken = [row for row in rows if key(row) in existing]
    clashes = [] if dry_run else table.insert(conn, fresh)
    replaced = [] if dry_run or not overwrite else table.overwrite(conn, taken)
    refused = {c.key for c in clashes + replaced}
    back = {key(row) for row in fresh + (taken if overwrite else [])} - refused
    return TableRestore(
        back=back,
        inserted=len(fresh) - len(clashes),
        overwritten=len(taken) - len(replaced) if overwrite else 0,
        conflicts=[] if overwrite else [key(row) for row in taken],
        clashes=clashes + replaced,
    )


def key_parts(value: Any, names: str) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    try:
        parts = json.loads(str(value))
    except ValueError:
        parts = None
    if not isinstance(parts, list):
        raise ConfigError(
            f"key {value!r} is not a composite key ({names}): give a JSON array, "
            'e.g. [42, "2026-01-31T00:00:00Z"]'
        )
    return parts


def coerce_value(column: sa.Column, value: Any, table: str) -> Any:
    python_type = column.type.python_type
    try:
        if python_type is uuid.UUID:
            return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
        if python_type in (datetime, date) and isinstance(value, str):
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if python_type is datetime else parsed.date()
        return value if isinstance(value, python_type) else python_type(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"key {value!r} is not a valid {python_type.__name__} for {table}.{column.name}"
        ) from None


def exists_again(table: TableRows, key: Any) -> Clash:
    return Clash(table.name, key, f"primary key {table.key_name} (the row exists again)")
