"""PostgreSQL batches are read through ``COPY … (FORMAT csv)`` into Arrow: every column type
comes out exactly as psycopg's rows give it (awkward text, NULL vs empty, NaN and infinities,
±infinity timestamps, exact numerics, dates and times, JSON, UUIDs, bytes), with the same row
versions, and archives and restores to the same rows."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from steward.archive import manifest, pg_copy
from steward.archive.formats import column_specs
from steward.archive.restore import RestoreRequest, restore
from steward.archive.runner import archive_table
from steward.archive.sources import open_sources
from steward.archive.sql_rows import TableRows
from steward.storage import create_sql_engine

from .conftest import NOW

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

COLUMNS = {
    "small": "SMALLINT",
    "f8": "DOUBLE PRECISION",
    "f4": "REAL",
    "flag": "BOOLEAN",
    "body": "TEXT",
    "code": "VARCHAR(20)",
    "price": "NUMERIC(12, 2)",
    "raw": "NUMERIC",
    "big": "NUMERIC(50, 10)",
    "at": "TIMESTAMPTZ",
    "plain": "TIMESTAMP",
    "day": "DATE",
    "clock": "TIME",
    "doc": "JSONB",
    "token": "UUID",
    "blob": "BYTEA",
}
VALUES: dict[str, list[Any]] = {
    "small": [0, -32768, 32767, None],
    "f8": ["0.1", "NaN", "Infinity", "-Infinity", "-0", "1e300", "5e-324", None, "-2.5"],
    "f4": ["0.1", "3.4e38", None, "-1.5"],
    "flag": [True, False, None],
    "body": ["", None, 'a,"b"\nc\\N', "tab\there", "ünï ✓", "\r\nline", '"', "\\", "\\N", "NULL"],
    "code": ["", None, "x,y", '"q"'],
    "price": ["0", "-0.5", "9999999999.99", None, "19.98", "0.01"],
    "raw": ["0.0000001", "1e30", "NaN", None, "-3.14159265358979323846264338327950288419716939"],
    "big": ["1.5", None, "-1234567890123456789012345678901234567890.0123456789"],
    "at": ["infinity", "-infinity", None, "1969-12-31 23:59:59.999999+00",
           "2026-01-01 12:00:00.123456+05", "0001-01-01 00:00:00+00"],
    "plain": ["infinity", "-infinity", None, "1969-12-31 23:59:59.999999", "2026-01-01 12:00:01"],
    "day": ["1970-01-01", "1969-12-31", "0001-01-01", "9999-12-31", None],
    "clock": ["00:00:00", "23:59:59.999999", "12:34:56.5", None],
    "doc": ['{"q": "a,\\"b\\"\\n"}', None, "[]", '"text"', "null", '{"n": 1.5}'],
    "token": ["00000000-0000-0000-0000-000000000000", None, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"],
    "blob": [b"", None, b"\x00\x01\xff", b'hello, "world"\n', bytes(range(256))],
}  # fmt: skip
# A value the archive reads exactly but a restore cannot give back: a BC instant (no Python
# datetime holds it).
READ_ONLY = {"at": [*VALUES["at"], "1500-03-01 00:00:00+00 BC"]}
ROWS = 24


def _create(settings, extra: dict[str, list[Any]] | None = None) -> None:
    values = {**VALUES, **(extra or {})}
    columns = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
    names = list(COLUMNS)
    casts = ", ".join(
        f":{n}" if COLUMNS[n] == "BYTEA" else f"CAST(:{n} AS {COLUMNS[n]})" for n in names
    )
    engine = create_sql_engine(settings)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE odd_values (id BIGINT PRIMARY KEY, {columns}, "
                             "created_at TIMESTAMPTZ NOT NULL)"))  # fmt: skip
        rows = [
            {"id": i, "created_at": NOW - timedelta(days=400 + i)}
            | {n: values[n][i % len(values[n])] for n in names}
            for i in range(ROWS)
        ]
        conn.execute(
            sa.text(f"INSERT INTO odd_values (id, {', '.join(names)}, created_at) "
                    f"VALUES (:id, {casts}, :created_at)"), rows)  # fmt: skip
    engine.dispose()


def _values(column: pa.ChunkedArray) -> list[Any]:
    if pa.types.is_timestamp(column.type):  # ±infinity: beyond Python's datetime
        column = column.cast(pa.int64())
    return column.to_pylist()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


def test_copy_reads_every_type_as_psycopg_rows_do(app_settings, contexts, monkeypatch):
    settings = app_settings(rows=0)
    _create(settings, READ_ONLY)
    ctx = contexts(settings)
    with ctx.sql.connect() as conn:
        table = sa.Table("odd_values", sa.MetaData(), autoload_with=conn)
        rows = TableRows(table, table.c.id, column_specs(table, "postgresql"), True)
        assert pg_copy.copy_ready(conn)
        copied, copied_versions = rows.read(conn, [table.c.id > 0], limit=ROWS - 4)
        monkeypatch.setattr(pg_copy, "copy_ready", lambda conn: False)
        fetched, fetched_versions = rows.read(conn, [table.c.id > 0], limit=ROWS - 4)
    assert copied.schema.equals(fetched.schema)
    assert copied.num_rows == fetched.num_rows == ROWS - 4
    assert copied_versions == fetched_versions and len(copied_versions) == ROWS - 4
    for name in copied.column_names:
        mine, theirs = _values(copied.column(name)), _values(fetched.column(name))
        if name in ("raw", "big"):  # exact decimal text: PostgreSQL's and Python's spelling
            mine = [None if v is None else str(Decimal(v)) for v in mine]
            theirs = [None if v is None else str(Decimal(v)) for v in theirs]
        assert all(_same(a, b) for a, b in zip(mine, theirs, strict=True)), (name, mine, theirs)
    body = copied.column("body").to_pylist()
    assert body[:9] == VALUES["body"][1:10]  # ids start at 1
    assert copied.column("blob").to_pylist()[:4] == VALUES["blob"][1:5]


def test_an_empty_batch_has_the_archive_schema(app_settings, contexts):
    settings = app_settings(rows=0)
    _create(settings)
    ctx = contexts(settings)
    with ctx.sql.connect() as conn:
        table = sa.Table("odd_values", sa.MetaData(), autoload_with=conn)
        specs = column_specs(table, "postgresql")
        arrow, versions = TableRows(table, table.c.id, specs, True).read(conn, [table.c.id < 0])
    assert arrow.num_rows == 0 and versions == {}
    assert arrow.schema.names == [spec.name for spec in specs]


def _snapshot(ctx) -> dict[int, str]:
    with ctx.sql.connect() as conn:
        found = conn.execute(sa.text("SELECT id, row_to_json(t)::text FROM odd_values AS t"))
        return dict(found.all())


def test_every_type_archives_and_restores_exactly(app_settings, contexts):
    policy = {"table": "odd_values", "rule": "older_than", "column": "created_at",
              "retention_days": 30}  # fmt: skip
    settings = app_settings(rows=0, archive__policies=json.dumps([policy]), archive__batch_size=5)
    _create(settings)
    ctx = contexts(settings)
    before = _snapshot(ctx)
    report = archive_table(ctx, open_sources(ctx, ["odd_values"])[0])
    assert report.rows_archived == ROWS and _snapshot(ctx) == {}
    with ctx.sql.connect() as conn:
        batches = manifest.entries(conn, table="odd_values", states=[manifest.COMPLETE])
    assert len(batches) == 5
    for entry in batches:
        restore(ctx, RestoreRequest(batch_id=entry.batch_id))
    assert _snapshot(ctx) == before


def _wide_table(settings, rows: int) -> sa.Table:
    engine = create_sql_engine(settings)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE many_rows (id BIGINT PRIMARY KEY, note TEXT, "
                             "created_at TIMESTAMPTZ NOT NULL)"))  # fmt: skip
        conn.execute(
            sa.text("INSERT INTO many_rows SELECT g, repeat('x', g % 50), now() "
                    "FROM generate_series(1, :rows) AS g"), {"rows": rows})  # fmt: skip
    engine.dispose()
    return sa.Table("many_rows", sa.MetaData(), autoload_with=create_sql_engine(settings))


def test_a_batch_larger_than_the_socket_buffers_is_read_whole(app_settings, contexts):
    """Rows arrive in many reads of the socket: every one of them is in the batch, once."""
    settings = app_settings(rows=0)
    table = _wide_table(settings, 60_000)
    ctx = contexts(settings)
    with ctx.sql.connect() as conn:
        rows = TableRows(table, table.c.id, column_specs(table, "postgresql"), True)
        arrow, versions = rows.read(conn, [table.c.id > 5], limit=50_000)
        follow, _ = rows.read(conn, [table.c.id > 50_005])  # the connection is ready for more
    assert arrow.column("id").to_pylist() == list(range(6, 50_006))
    assert [len(v) for v in arrow.column("note").to_pylist()[:3]] == [6, 7, 8]
    assert len(versions) == 50_000 and follow.num_rows == 9_995


def test_an_error_partway_through_the_copy_is_sqlalchemys(app_settings, contexts):
    """The server fails after sending thousands of rows: SQLAlchemy's error with the server's
    message, and the connection goes back to the pool ready for the next batch."""
    settings = app_settings(rows=0)
    table = _wide_table(settings, 30_000)
    ctx = contexts(settings)
    rows = TableRows(table, table.c.id, column_specs(table, "postgresql"), True)
    failing = sa.literal(1) / (table.c.id - 25_000) > -2  # division by zero at 25,000
    with ctx.sql.connect() as conn, pytest.raises(sa.exc.DataError, match="division by zero"):
        rows.read(conn, [table.c.id > 0, failing])
    with ctx.sql.connect() as conn:
        arrow, _ = rows.read(conn, [table.c.id > 29_990])
    assert arrow.column("id").to_pylist() == list(range(29_991, 30_001))
