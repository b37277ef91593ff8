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


STAGES = ("detach", "COPY", "parse", "encode", "upload", "verify", "commits", "drop",
          "publish", "analyze")  # fmt: skip


def time_partition_stages(stages: Any, ctx: Any) -> None:
    """Wrap the whole-partition steps for the per-stage table (busy seconds per step, summed
    over partitions and objects; the steps of consecutive objects and of the two partitions
    exported at once overlap, so they add up to more than the wall time).

    COPY: Arrow's CSV reader waiting for the COPY's bytes (psql's pipe, or libpq); parse: the
    exporter waiting for Arrow's next parsed chunk (the COPY it waits for included); encode: Parquet
    row groups, key columns and the SHA-256; commits: every short transaction (records,
    manifest states, links); drop: the verified/deleted marks and the DROP in the export's
    transaction; upload counts every PUT (``ctx.store.put``, wrapped with the other shapes').
    """
    from steward.archive import partition_export as export
    from steward.archive import partition_move as move
    from steward.archive import partitions

    partitions.detach_partition = stages.timed("detach", partitions.detach_partition)
    export.copy_csv = _timed_copy(stages, export.copy_csv)
    export.pacsv = _TimedCsv(stages)  # type: ignore[assignment]
    export._ObjectWriter.add = stages.timed("encode", export._ObjectWriter.add)  # type: ignore[method-assign]
    export._ObjectWriter.finish = stages.timed("encode", export._ObjectWriter.finish)  # type: ignore[method-assign]
    export._verify = stages.timed("verify", export._verify)
    move.verify_batch = stages.timed("verify", move.verify_batch)
    move._drop = stages.timed("drop", move._drop)
    partitions.publish_batch = stages.timed("publish", partitions.publish_batch)
    partitions._analyze = stages.timed("analyze", partitions._analyze)
    ctx.sql.begin = _timed_context(stages, "commits", ctx.sql.begin)


def _timed_copy(stages: Any, copy_csv: Any) -> Any:
    """``copy_csv`` whose stream's reads count as 'COPY'."""
    from contextlib import contextmanager

    class Timed:
        def __init__(self, stream: Any) -> None:
            self._stream = stream
            self.read = stages.timed("COPY", stream.read)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._stream, name)

    @contextmanager
    def run(*args: Any) -> Any:
        with copy_csv(*args) as stream:
            yield Timed(stream)

    return run


class _TimedCsv:
    """``pyarrow.csv`` whose streaming reader counts the waits for each parsed chunk."""

    def __init__(self, stages: Any) -> None:
        import pyarrow.csv

        self._csv, self._stages = pyarrow.csv, stages

    def __getattr__(self, name: str) -> Any:
        return getattr(self._csv, name)

    def open_csv(self, *args: Any, **kwargs: Any) -> Any:
        reader = self._csv.open_csv(*args, **kwargs)
        stages = self._stages

        def chunks() -> Any:
            while True:
                started = time.perf_counter()
                try:
                    chunk = reader.read_next_batch()
                except StopIteration:
                    return
                finally:
                    spent = time.perf_counter() - started
                    stages.seconds["parse"] = stages.seconds.get("parse", 0.0) + spent
                yield chunk

        return chunks()


def _timed_context(stages: Any, stage: str, begin: Any) -> Any:
    """A context manager factory whose blocks (work and commit) count as ``stage``."""
    from contextlib import contextmanager

    @contextmanager
    def run(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            with begin(*args, **kwargs) as conn:
                yield conn
        finally:
            spent = time.perf_counter() - started
            stages.seconds[stage] = stages.seconds.get(stage, 0.0) + spent

    return run


def report_stages(results: list[dict[str, Any]]) -> None:
    """The whole-partition shape's own per-stage table (seconds busy per step)."""
    mine = [r for r in results if r["shape"].whole]
    if not mine:
        return
    print("\nwhole partitions, per stage: seconds busy; steps overlap (two partitions at once)")
    header = f"{'rows':>10}{'COPY|gzip':>11}{'DROP':>7}"
    print(header + "".join(f"{name:>9}" for name in STAGES) + f"{'wall':>8}{'objects':>9}")
    for result in mine:
        base, stages = result["baseline"]["stages"], result["steward"]["stages"]
        line = f"{result['rows']:>10,}{base['copy | gzip']:>10.2f}s{base['delete']:>6.2f}s"
        line += "".join(f"{stages.get(name, 0.0):>8.2f}s" for name in STAGES)
        print(line + f"{result['steward']['seconds']:>7.2f}s{result['steward']['objects']:>9}")
