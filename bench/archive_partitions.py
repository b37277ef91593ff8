"""The ``partitioned`` shape of ``python -m bench.archive``: whole partitions.

``bench_events`` is RANGE-partitioned by ``occurred_at`` into ten 30-day partitions, all of
them before the policy's cutoff, plus a current partition holding a few recent rows (it stays).
The baseline copies each old partition (``COPY partition TO STDOUT | gzip``) and drops it
(``DROP TABLE partition``); Steward exports each to Parquet objects on S3, verifies them,
detaches the partition concurrently and drops it. Afterwards the bench reads ``n_dead_tup`` of
every table left in the parent: whole partitions leave no dead tuple behind (row archiving
would leave one per row until vacuum).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Any

import psycopg

PARTITIONS = 10
SPAN = timedelta(days=30)
TABLE = "bench_events"


def fill_statements(old: datetime, now: datetime) -> list[str]:
    """DDL and rows of the shape (dates computed here, no input; ``%%``: the statements run
    with parameters ``old`` and ``rows``)."""
    first = old - PARTITIONS * SPAN
    statements = [
        f"DROP TABLE IF EXISTS {TABLE} CASCADE",
        f"CREATE TABLE {TABLE} (id BIGINT NOT NULL, occurred_at TIMESTAMPTZ NOT NULL, "
        "kind TEXT NOT NULL, amount INTEGER NOT NULL, note TEXT, "
        "PRIMARY KEY (id, occurred_at)) PARTITION BY RANGE (occurred_at)",
    ]
    for i in range(PARTITIONS):
        lower, upper = first + i * SPAN, first + (i + 1) * SPAN
        statements.append(
            f"CREATE TABLE {TABLE}_p{i:02d} PARTITION OF {TABLE} FOR VALUES FROM "
            f"('{lower.isoformat()}') TO ('{upper.isoformat()}')"
        )
    statements.append(
        f"CREATE TABLE {TABLE}_current PARTITION OF {TABLE} FOR VALUES FROM "
        f"('{(now - SPAN).isoformat()}') TO ('{(now + SPAN).isoformat()}')"
    )
    span_seconds = int((PARTITIONS * SPAN).total_seconds())
    statements += [
        f"INSERT INTO {TABLE} SELECT g, '{first.isoformat()}'::timestamptz + "
        f"((g - 1) * ({span_seconds} / %(rows)s::float8)) * interval '1 second', "
        "(ARRAY['sale', 'refund', 'restock'])[1 + g %% 3], (g %% 1000) - 500, "
        "'event note number ' || g FROM generate_series(1, %(rows)s) AS g",
        f"INSERT INTO {TABLE} SELECT -g, '{now.isoformat()}'::timestamptz - g * interval "
        "'1 hour', 'sale', 1, 'recent' FROM generate_series(1, 100) AS g",
    ]
    return statements


def copies() -> list[tuple[str, str]]:
    return [(f"{TABLE}_p{i:02d}", f"SELECT * FROM {TABLE}_p{i:02d}") for i in range(PARTITIONS)]


def drops() -> list[str]:
    return [f"DROP TABLE {TABLE}_p{i:02d}" for i in range(PARTITIONS)]


def policies() -> str:
    return json.dumps(
        [{"table": TABLE, "rule": "older_than", "column": "occurred_at", "retention_days": 365}]
    )


def dead_tuples(conninfo: str) -> int:
    """Dead tuples in the tables still in the parent (after the statistics are flushed)."""
    time.sleep(1.0)  # the archiving sessions report their counters when they end
    with psycopg.connect(conninfo, autocommit=True) as conn:
        found = conn.execute(
            "SELECT coalesce(sum(s.n_dead_tup), 0) FROM pg_stat_user_tables s "
            "JOIN pg_inherits i ON i.inhrelid = s.relid "
            "WHERE i.inhparent = %s::regclass",
            (TABLE,),
        ).fetchone()
    return int(found[0]) if found else 0


def time_partition_stages(stages: Any) -> None:
    """Wrap the whole-partition steps (read, verify, publish, detach + drop) for the
    per-stage table; encode and upload are wrapped where every shape's are."""
    from steward.archive import partitions

    partitions._read = stages.timed("read", partitions._read)  # type: ignore[attr-defined]
    partitions.copy_batches = _timed_batches(stages, partitions.copy_batches)
    partitions.verify_batch = stages.timed("verify", partitions.verify_batch)
    partitions.verify_exported = stages.timed("verify", partitions.verify_exported)
    partitions.publish_batch = stages.timed("publish", partitions.publish_batch)
    detach = stages.timed("delete + commit", partitions.detach_partition)
    partitions.detach_partition = detach
    partitions.drop_partition = stages.timed("delete + commit", partitions.drop_partition)


def _timed_batches(stages: Any, batches: Any) -> Any:
    """Seconds spent producing each batch of a generator count as 'read'."""

    def run(*args: Any) -> Any:
        produced = batches(*args)
        while True:
            started = time.perf_counter()
            try:
                batch = next(produced)
            except StopIteration:
                return
            finally:
                spent = time.perf_counter() - started
                stages.seconds["read"] = stages.seconds.get("read", 0.0) + spent
            yield batch

    return run
