"""PostgreSQL ``infinity`` / ``-infinity`` timestamps: a qualifying row with ``-infinity`` and
``infinity`` in another column is planned, archived (Parquet and jsonl.gz), read by DuckDB as
its own ``infinity`` / ``-infinity``, and restored to exactly those values (also from objects
written before, which hold the smallest int64 for ``-infinity``)."""

from __future__ import annotations

import pyarrow as pa
import pytest
import sqlalchemy as sa

from steward.archive import manifest
from steward.archive.formats import ColumnSpec, python_columns
from steward.archive.restore import RestoreRequest, restore
from steward.archive.runner import archive_table, plan_table
from steward.archive.sources import open_sources
from steward.errors import IntegrityViolation

from .conftest import duckdb_query

ON_POSTGRES = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
COLUMNS = "created_at::text, updated_at::text, deleted_at::text"


def _as_text(ctx, ids: list[int]) -> dict[int, tuple[str, ...]]:
    with ctx.sql.connect() as conn:
        rows = conn.execute(
            sa.text(f"SELECT id, {COLUMNS} FROM users WHERE id = ANY(:ids) ORDER BY id"),
            {"ids": ids},
        ).all()
    return {row[0]: tuple(row[1:]) for row in rows}


@ON_POSTGRES
@pytest.mark.parametrize("fmt", ["parquet", "jsonl.gz"])
def test_infinite_timestamps_round_trip(fmt, app_settings, contexts):
    ctx = contexts(app_settings(rows=0, archive__format=fmt))
    with ctx.sql.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO users (id, email, full_name, created_at, updated_at, deleted_at) "
                "VALUES (1, 'a@x', 'A', '-infinity', 'infinity', '-infinity'), "
                "(2, 'b@x', 'B', '2020-01-01 00:00:00.000001+00', 'infinity', "
                "'2021-06-01 12:00:00+00'), "
                "(3, 'c@x', 'C', '-infinity', '2026-01-01+00', '2021-06-01 12:00:00.5+00')"
            )
        )
    before = _as_text(ctx, [1, 2, 3])
    (users,) = open_sources(ctx, ["users"])

    plan = plan_table(ctx, users)
    assert plan["rows"] == 3 and plan["estimated_bytes"] > 0

    report = archive_table(ctx, users)
    assert report.rows_archived == 3 and _as_text(ctx, [1, 2, 3]) == {}
    with ctx.sql.connect() as conn:
        (entry,) = manifest.entries(conn, table="users")
    assert entry.ts_min is not None and entry.ts_min.year == 1  # -infinity, clamped
    if fmt == "parquet":
        in_duckdb = duckdb_query(
            ctx,
            "SELECT id, created_at = '-infinity'::TIMESTAMPTZ, isinf(created_at), "
            "updated_at = 'infinity'::TIMESTAMPTZ, deleted_at = '-infinity'::TIMESTAMPTZ "
            "FROM read_parquet('{archive}/app/users/dt=*/*.parquet') ORDER BY id",
        )
        assert in_duckdb == [
            (1, True, True, True, True),
            (2, False, False, True, False),
            (3, True, True, False, False),
        ]

    back = restore(ctx, RestoreRequest(batch_id=entry.batch_id))
    assert back.restored == 3 and not back.failed
    assert _as_text(ctx, [1, 2, 3]) == before
    assert before[1] == ("-infinity", "infinity", "-infinity")


def test_objects_written_before_keep_minus_infinity():
    """Older objects hold -infinity as the smallest int64: it still restores as -infinity."""
    micros = pa.array([-(2**63), -(2**63 - 1), 2**63 - 1, 0], pa.int64())
    table = pa.table({"at": micros.cast(pa.timestamp("us", tz="UTC"))})
    values = python_columns(table, [ColumnSpec("at", "timestamptz")])["at"]
    assert values[:3] == ["-infinity", "-infinity", "infinity"]
    assert values[3].year == 1970


@ON_POSTGRES
def test_an_infinite_date_key_stops_its_table_with_the_key_named(app_settings, contexts):
    """A date primary key holding ``-infinity`` has no Python form to guard and delete by: the
    run stops, naming the table and its key column, and every row stays."""
    base = app_settings(rows=0)
    with contexts(base).sql.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE daily_totals (day DATE PRIMARY KEY, total INT, "
            "created_at TIMESTAMPTZ NOT NULL)"
        )
        conn.exec_driver_sql(
            "INSERT INTO daily_totals VALUES ('-infinity', 1, '2020-01-01+00'), "
            "('2020-01-02', 2, '2020-01-02+00')"
        )
    policy = '[{"table": "daily_totals", "rule": "older_than", "column": "created_at"}]'
    ctx = contexts(app_settings(rows=0, archive__policies=policy))
    (daily,) = open_sources(ctx, ["daily_totals"])
    with pytest.raises(IntegrityViolation, match=r"table 'daily_totals'.*key \(day\) is infinite"):
        archive_table(ctx, daily)
    with ctx.sql.connect() as conn:
        left = conn.exec_driver_sql("SELECT day::text FROM daily_totals ORDER BY 1").scalars().all()
    assert left == ["-infinity", "2020-01-02"]


@ON_POSTGRES
def test_a_time_of_24_00_in_a_key_stops_its_table_and_every_row_stays(app_settings, contexts):
    """``24:00`` and ``00:00`` of the same shift are two rows, but Python (and Arrow's
    conversion) has only 00:00 for both: archiving them by key could delete one and publish
    both. The run stops naming the table and key, and both rows stay."""
    base = app_settings(rows=0)
    with contexts(base).sql.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE shifts (line INT, ends TIME, created_at TIMESTAMPTZ NOT NULL, "
            "PRIMARY KEY (line, ends))"
        )
        conn.exec_driver_sql(
            "INSERT INTO shifts VALUES (1, '00:00', '2020-01-01+00'), (1, '24:00', '2020-01-01+00')"
        )
    policy = '[{"table": "shifts", "rule": "older_than", "column": "created_at"}]'
    ctx = contexts(app_settings(rows=0, archive__policies=policy))
    (shifts,) = open_sources(ctx, ["shifts"])
    with pytest.raises(IntegrityViolation, match=r"table 'shifts'.*key \(line,ends\).*24:00"):
        archive_table(ctx, shifts)
    with ctx.sql.connect() as conn:
        left = conn.exec_driver_sql("SELECT ends::text FROM shifts ORDER BY 1").scalars().all()
    assert left == ["00:00:00", "24:00:00"]
