"""Archives read back by independent readers (pyarrow, pandas, gzip + json) hold the original
values with their types: timestamps with time zone, exact numerics, JSON, UUIDs."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from steward.archive import archive_table, manifest, open_sources

from .conftest import restore_everything, snapshots

POLICIES = [
    {"table": "prices", "rule": "older_than", "column": "effective_from", "retention_days": 60},
    {"table": "audit_log", "rule": "older_than", "column": "occurred_at", "retention_days": 30},
    {
        "table": "outbox",
        "rule": "older_than",
        "column": "published_at",
        "retention_days": 1,
        "where": {"status": "published"},
    },
]
TABLES = ("prices", "audit_log", "outbox")


def _rows_by_key(ctx, table: str, key: str) -> dict:
    with ctx.sql.connect() as conn:
        reflected = sa.Table(table, sa.MetaData(), autoload_with=conn)
        return {row._mapping[key]: dict(row._mapping) for row in conn.execute(sa.select(reflected))}


def _archive(ctx) -> dict[str, list[Path]]:
    files: dict[str, list[Path]] = {}
    for source in open_sources(ctx):
        archive_table(ctx, source)
    with ctx.sql.connect() as conn:
        for entry in manifest.entries(conn, states=[manifest.COMPLETE]):
            path = ctx.settings.home / "objects" / entry.object_key
            files.setdefault(entry.table_name, []).append(path)
    return files


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_parquet_read_by_pyarrow_and_pandas_gives_original_values_and_types(app_settings, contexts):
    ctx = contexts(app_settings(archive__policies=json.dumps(POLICIES)))
    prices = _rows_by_key(ctx, "prices", "id")
    audit = _rows_by_key(ctx, "audit_log", "id")
    outbox = _rows_by_key(ctx, "outbox", "seq")
    files = _archive(ctx)
    assert set(files) == set(TABLES)

    table = pa.concat_tables([pq.read_table(path) for path in files["prices"]])
    assert table.schema.field("amount").type == pa.decimal128(12, 2)
    assert table.schema.field("effective_from").type == pa.timestamp("us", tz="UTC")
    for row in table.to_pylist():
        original = prices[row["id"]]
        assert row["amount"] == original["amount"] and isinstance(row["amount"], Decimal)
        assert row["effective_from"] == original["effective_from"]
        assert row["effective_to"] == original["effective_to"]

    frame = pd.concat([pd.read_parquet(path) for path in files["audit_log"]])
    assert str(frame["occurred_at"].dtype) == "datetime64[us, UTC]"
    for record in frame.to_dict("records"):
        original = audit[record["id"]]
        assert record["occurred_at"].to_pydatetime() == original["occurred_at"]
        assert json.loads(record["details"]) == original["details"]
        assert record["actor"] == original["actor"]

    events = pa.concat_tables([pq.read_table(path) for path in files["outbox"]])
    assert events.schema.field("payload").type == pa.json_()
    for row in events.to_pylist():
        original = outbox[row["seq"]]
        assert isinstance(row["id"], uuid.UUID) and row["id"] == original["id"]
        assert json.loads(row["payload"]) == original["payload"]
        assert row["published_at"] == original["published_at"]


def test_jsonl_gz_is_plain_json_lines_and_restores_exactly(app_settings, contexts):
    policies = [dict(p, format="jsonl.gz") for p in POLICIES]
    ctx = contexts(app_settings(archive__policies=json.dumps(policies), archive__batch_size=10))
    before = snapshots(ctx, TABLES)
    prices = _rows_by_key(ctx, "prices", "id")
    files = _archive(ctx)

    lines = [json.loads(line) for path in files["prices"] for line in gzip.open(path)]
    assert lines and len(lines) == len(prices) - len(_rows_by_key(ctx, "prices", "id"))
    for line in lines:
        original = prices[line["id"]]
        assert Decimal(line["amount"]) == original["amount"]
        stamp = datetime.fromisoformat(line["effective_from"])
        assert stamp.utcoffset() is not None
        assert stamp == original["effective_from"].replace(
            tzinfo=original["effective_from"].tzinfo or stamp.tzinfo
        )

    restore_everything(ctx, TABLES)
    assert {n: s.checksum for n, s in snapshots(ctx, TABLES).items()} == {
        n: s.checksum for n, s in before.items()
    }


def test_parquet_encodings_follow_the_values():
    """Repeating values get a dictionary; keys, timestamps, dates and times without one are
    delta-encoded (a fraction of the size); every value reads back as it was."""
    from steward.archive.formats import PARQUET, decode_table, encode_table

    rows = 10_000
    table = pa.table(
        {
            "id": pa.array(range(7, 7 + rows), pa.int64()),
            "status": pa.array(["shipped", "returned"] * (rows // 2)),
            "at": pa.array(
                [1_700_000_000_000_000 + i * 997 for i in range(rows)], pa.timestamp("us", "UTC")
            ),  # fmt: skip
            "day": pa.array([i - 5_000 for i in range(rows)], pa.date32()),
            "shuffled": pa.array([(i * 7_919) % rows - 5_000 for i in range(rows)], pa.int64()),
            "note": pa.array([f"note {i}" if i % 3 else None for i in range(rows)]),
        }
    )
    data = encode_table(table, PARQUET)
    assert decode_table(data, PARQUET, []).equals(table)
    columns = pq.ParquetFile(pa.BufferReader(data)).metadata.row_group(0)
    encodings = {columns.column(i).path_in_schema: columns.column(i).encodings for i in range(6)}
    for name in ("id", "at", "day", "shuffled"):
        assert "DELTA_BINARY_PACKED" in encodings[name], (name, encodings[name])
    assert "RLE_DICTIONARY" in encodings["status"]
    assert not any("DELTA" in e for e in encodings["note"])
    plain = pa.BufferOutputStream()
    pq.write_table(table.select(["id", "at"]), plain, compression="zstd", use_dictionary=False)
    assert len(encode_table(table.select(["id", "at"]), PARQUET)) * 3 < plain.getvalue().size
