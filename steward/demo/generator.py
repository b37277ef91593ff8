"""Synthetic data for the example e-commerce schema (``steward demo-data``, ``steward demo``).

Fills the tables of revision 0001 at a chosen scale with data that gives every flow work:
users, a category tree, products with JSON attributes (brands spelled messily before revision
0003 normalised them, canonically after), price periods,
inventory (``reserved`` = active reservations, never above ``on_hand``), orders whose ``total``
is the sum of their items, payments, reservations, inventory movements and audit entries over
the past 400 days, and an outbox that is mostly published (past 60 days) with pending events
for several aggregates at the end. Orders name only users and products that existed (and were
not deleted) when they were placed; every soft-deleted order has its ``soft_delete`` audit
entry. 12-15 % of users, products and orders are soft-deleted with
``deleted_at`` uniform over the past 400 days (after the row's creation, ``updated_at`` =
``deleted_at``).

Deterministic: the same ``seed`` and ``now`` give identical rows (each table draws from its own
``random.Random`` seeded from ``seed``). Rows are made and written in chunks, never held whole:
PostgreSQL through ``COPY`` (psycopg 3), SQLite through ``executemany``. Ids are explicit;
PostgreSQL sequences are moved past them afterwards so the application's own inserts work.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.demo.rows import COLUMNS, DemoRows
from steward.errors import ConfigError, IntegrityViolation
from steward.settings import Settings
from steward.storage import PRIVILEGE_PROBE, SqlClient

__all__ = ["COLUMNS", "DEMO_TABLES", "generate_demo_data"]

DEMO_TABLES: tuple[str, ...] = tuple(COLUMNS)  # parents before children
BRAND_REVISION_TABLE = "brand_normalization_backup"  # exists once revision 0003 ran
_JSON_COLUMNS = {
    "products": ("attributes",),
    "outbox": ("payload", "headers"),
    "audit_log": ("details",),
}
# One encoder for every row: json.dumps(..., separators=...) builds a new one per call.
_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"))
_SEQUENCES = {
    name: ("seq" if name == "outbox" else "id") for name in DEMO_TABLES if name != "inventory"
}


def generate_demo_data(
    settings: Settings,
    *,
    rows: int,
    seed: int = 7,
    replace: bool = False,
    show_progress: bool = False,
    now: dt.datetime | None = None,
) -> dict[str, int]:
    """Fill the example schema with about ``rows`` synthetic rows; returns rows written per table.

    Args:
        settings: Steward settings (``database.url`` picks PostgreSQL or SQLite).
        rows: approximate total across all tables (at least 100).
        seed: same seed and same ``now`` give identical data.
        replace: delete the rows already in the demo tables first; without it, non-empty
            tables make this refuse with :class:`IntegrityViolation`.
        show_progress: draw a rich progress bar on stderr.
        now: the anchor every timestamp is relative to (default: the current UTC time).
    """
    if rows < 100:
        raise ConfigError(f"demo data: rows={rows} is too small; ask for at least 100 rows")
    anchor = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    client = SqlClient(settings)
    try:
        with client.begin() as conn:
            tables = _reflect_demo_tables(conn)
            # Revision 0003 normalised brands: from then on the application writes clean ones.
            clean = BRAND_REVISION_TABLE in sa.inspect(conn).get_table_names()
            demo = DemoRows(rows, seed=seed, now=anchor, clean_brands=clean)
            _clear_or_refuse(conn, tables, replace=replace)
            with (
                _progress(show_progress, demo.expected_total) as advance,
                _foreign_keys_lifted(conn, tables),
            ):
                counts = _write_all(conn, tables, demo, advance)
            if conn.dialect.name == "postgresql":
                _reset_sequences(conn, tables)
    finally:
        client.dispose()
    return counts


def _write_all(
    conn: Connection,
    tables: dict[str, sa.Table],
    demo: DemoRows,
    advance: Callable[[str, int], None],
) -> dict[str, int]:
    write = _copy_chunk if conn.dialect.name == "postgresql" else _insert_chunk
    counts = dict.fromkeys(DEMO_TABLES, 0)
    for name, chunk in demo.chunks():
        write(conn, tables[name], COLUMNS[name], chunk)
        counts[name] += len(chunk)
        advance(name, len(chunk))
    return counts


@contextmanager
def _foreign_keys_lifted(conn: Connection, tables: dict[str, sa.Table]) -> Iterator[None]:
    """PostgreSQL: drop the demo tables' foreign keys for the load, add them back after.

    Checking foreign keys row by row costs more than the COPY itself; adding a constraint back
    validates all rows in one pass (PostgreSQL's "Populating a Database" advice). It all happens
    in the load's transaction, so nobody ever sees the tables without their constraints. A role
    that may not alter the tables loads with the constraints in place (slower, same result).
    """
    keys = [fk for table in tables.values() for fk in table.foreign_key_constraints if fk.name]
    if conn.dialect.name != "postgresql" or not keys:
        yield
        return
    try:
        with conn.begin_nested():
            for fk in keys:
                conn.execute(
                    sa.schema.DropConstraint(fk), execution_options={PRIVILEGE_PROBE: True}
                )
    except sa.exc.ProgrammingError:  # insufficient privilege: not the tables' owner
        keys = []
    yield
    for fk in keys:
        conn.execute(sa.schema.AddConstraint(fk))


def _reflect_demo_tables(conn: Connection) -> dict[str, sa.Table]:
    existing = set(sa.inspect(conn).get_table_names())
    missing = [name for name in DEMO_TABLES if name not in existing]
    if missing:
        raise ConfigError(
            f"demo data: table(s) {', '.join(missing)} not found in the database; create the "
            "example schema first with `steward migrate` (or `alembic upgrade head`)"
        )
    metadata = sa.MetaData()
    metadata.reflect(conn, only=list(DEMO_TABLES))
    return {name: metadata.tables[name] for name in DEMO_TABLES}


def _clear_or_refuse(conn: Connection, tables: dict[str, sa.Table], *, replace: bool) -> None:
    filled = [
        name
        for name, table in tables.items()
        if conn.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first()
    ]
    if not filled:
        return
    if not replace:
        raise IntegrityViolation(
            f"demo data: table(s) {', '.join(filled)} already hold rows; refusing to mix "
            "synthetic rows with them. Pass --replace (replace=True) to empty the demo tables first"
        )
    if conn.dialect.name == "postgresql":
        # CASCADE also empties tables with foreign keys to the demo tables (they would block).
        quoted = ", ".join(
            conn.dialect.identifier_preparer.format_table(t) for t in tables.values()
        )
        conn.exec_driver_sql(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE")
        return
    for name in reversed(DEMO_TABLES):
        conn.execute(tables[name].delete())


def _present(table: sa.Table, columns: tuple[str, ...]) -> list[int]:
    # Later revisions may drop columns the generator knows; write only those that exist.
    return [i for i, col in enumerate(columns) if col in table.c]


def _copy_chunk(
    conn: Connection, table: sa.Table, columns: tuple[str, ...], chunk: list[tuple[Any, ...]]
) -> None:
    import psycopg
    from psycopg import sql

    keep = _present(table, columns)
    json_at = [i for i in keep if columns[i] in _JSON_COLUMNS.get(table.name, ())]
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(sql.Identifier(columns[i]) for i in keep)
    )
    dumps = _JSON_ENCODER.encode
    raw: psycopg.Connection[Any] = conn.connection.dbapi_connection  # type: ignore[assignment]
    with raw.cursor() as cur, cur.copy(statement) as copy:
        for row in chunk:
            values = list(row)
            for i in json_at:
                if values[i] is not None:
                    values[i] = dumps(values[i])
            copy.write_row(values if len(keep) == len(columns) else [values[i] for i in keep])


def _insert_chunk(
    conn: Connection, table: sa.Table, columns: tuple[str, ...], chunk: list[tuple[Any, ...]]
) -> None:
    keep = [(i, columns[i]) for i in _present(table, columns)]
    records = [
        {name: (row[i].hex if isinstance(row[i], uuid.UUID) else row[i]) for i, name in keep}
        for row in chunk
    ]
    conn.execute(sa.insert(table), records)


def _reset_sequences(conn: Connection, tables: dict[str, sa.Table]) -> None:
    """Move each identity sequence past the explicit ids written (bound names, no SQL pasting)."""
    for name, column_name in _SEQUENCES.items():
        column = tables[name].c[column_name]
        sequence = sa.func.pg_get_serial_sequence(name, column_name)
        next_value = sa.select(sa.func.coalesce(sa.func.max(column), 0) + 1).scalar_subquery()
        conn.execute(sa.select(sa.func.setval(sequence, next_value, False)))


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Callable[[str, int], None]]:
    if not enabled:
        yield lambda _table, _count: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (
        TextColumn("[bold]{task.description:<36}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("demo data", total=total)

        def advance(table: str, count: int) -> None:
            progress.update(task, advance=count, description=f"demo data: {table}")

        yield advance
        done = progress.tasks[0].completed
        progress.update(task, total=done, description="demo data: done")
