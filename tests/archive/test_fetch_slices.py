"""PostgreSQL reads a batch a few rows at a time straight from psycopg's cursor into Arrow:
UUID, text and composite keys, ``-infinity``, NULLs, numerics and JSON come through slices
exactly (archived, deleted, restored to the same values), with slices of 3 rows and batches of
7 so every batch is several slices."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from steward.archive import manifest, sql_rows
from steward.archive.restore import RestoreRequest, restore
from steward.archive.runner import archive_table
from steward.archive.sources import open_sources
from steward.storage import create_sql_engine

from .conftest import NOW

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
KEYS = {
    "uuid_keyed": "id UUID PRIMARY KEY",
    "text_keyed": "id TEXT PRIMARY KEY",
    "pair_keyed": "id TEXT, n INTEGER, PRIMARY KEY (id, n)",
}


def _fill(settings) -> None:
    engine = create_sql_engine(settings)
    with engine.begin() as conn:
        for table, key in KEYS.items():
            conn.execute(
                sa.text(
                    f"CREATE TABLE {table} ({key}, note TEXT, amount NUMERIC(12, 2), "
                    "doc JSONB, seen_at TIMESTAMPTZ, created_at TIMESTAMPTZ NOT NULL)"
                )
            )
            ids = {
                "uuid_keyed": "md5(g::text)::uuid",
                "text_keyed": "'k' || lpad(g::text, 3, '0')",
                "pair_keyed": "'p' || (g / 4)::text, g % 4",
            }[table]
            conn.execute(
                sa.text(
                    f"INSERT INTO {table} SELECT {ids}, CASE WHEN g % 3 = 0 THEN NULL ELSE "
                    "'note ' || g END, CASE WHEN g % 5 = 0 THEN NULL ELSE g * 1.25 END, "
                    "CASE WHEN g % 4 = 0 THEN NULL ELSE jsonb_build_object('g', g) END, "
                    "CASE WHEN g % 6 = 0 THEN '-infinity'::timestamptz WHEN g % 6 = 1 THEN "
                    "NULL ELSE :old END, CASE WHEN g % 7 = 0 THEN '-infinity'::timestamptz "
                    "WHEN g % 2 = 0 THEN :old ELSE :new END FROM generate_series(1, 40) AS g"
                ),
                {"old": NOW - timedelta(days=400), "new": NOW - timedelta(days=3)},
            )
    engine.dispose()


def _rows(ctx, table: str) -> dict[str, str]:
    with ctx.sql.connect() as conn:
        found = conn.execute(sa.text(f"SELECT row_to_json(t)::text FROM {table} AS t")).all()
    return {json.dumps(json.loads(r[0])["id"]) + str(json.loads(r[0]).get("n")): r[0]
            for r in found}  # fmt: skip


def test_slices_of_a_batch_keep_every_value(app_settings, contexts, monkeypatch):
    monkeypatch.setattr(sql_rows, "FETCH_ROWS", 3)
    policies = [
        {"table": t, "rule": "older_than", "column": "created_at", "retention_days": 30}
        for t in KEYS
    ]
    settings = app_settings(rows=0, archive__policies=json.dumps(policies), archive__batch_size=7)
    _fill(settings)
    ctx = contexts(settings)
    for table in KEYS:
        before = _rows(ctx, table)
        report = archive_table(ctx, open_sources(ctx, [table])[0])
        left = _rows(ctx, table)
        assert report.rows_archived == len(before) - len(left) > 7
        with ctx.sql.connect() as conn:
            batches = manifest.entries(conn, table=table, states=[manifest.COMPLETE])
        for entry in batches:
            restore(ctx, RestoreRequest(batch_id=entry.batch_id))
        assert _rows(ctx, table) == before, table
