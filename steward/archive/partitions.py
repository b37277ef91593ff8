"""Whole partitions: a partition wholly before the cutoff leaves as a unit, never row by row.

For each plain partition of a RANGE-partitioned policy table whose upper bound is at or
before the cutoff (:mod:`~steward.archive.partition_catalog` decides which)::

    detaching  record committed, then ALTER TABLE parent DETACH PARTITION p CONCURRENTLY
               (autocommit; FINALIZE when an earlier detach was interrupted; a plain DETACH
               with a lock timeout when the table has a default partition, which
               CONCURRENTLY refuses) -> 'detached'
    export     one transaction T: LOCK TABLE p IN SHARE MODE, then p's rows streamed by COPY
               into Parquet objects of ``archive.partition_object_rows`` rows
               (:mod:`~steward.archive.partition_export`), each recorded 'writing', written
               staged and verified (same objects under the parent's prefix as row batches;
               a table COPY cannot carry exactly goes in keyset batches, each written and
               verified like a row batch)
    drop       still in T: every object -> 'verified' -> 'deleted', DROP TABLE p (or keep it:
               'detach'), the partition -> 'dropped' / 'kept'; COMMIT
    publish    each batch's final object from its staged copy -> 'complete'

Why detach first: once detached, the parent routes no write to p (a concurrent detach waits
for every transaction that could still write through the parent), so the export reads a table
nothing writes to; the SHARE lock held from the first read to the DROP's commit makes that
exact even for a writer naming p directly (it waits, and finds p gone). Exporting first and
detaching afterwards would leave a gap between the export and the detach in which a write
could land and then be dropped; holding a lock across that gap is impossible because DETACH
CONCURRENTLY must run in a session of its own and would wait for that lock.

Crash safety: the partition record is committed before each step. A run finding one
'detaching' finishes the detach; one 'detached' abandons the batches its export left
(removing their staged objects: no row was dropped on their strength) and exports again,
since T's rollback put p back as it was. 'deleted' batches of a dropped partition are
published by the table's ordinary recovery. So p is dropped only in the transaction that
records its objects verified, and every row is in p or in exactly one complete object.

``hook`` points (tests): partition_detaching, partition_detached, object_written,
object_verified (per batch), partition_verified, partition_dropping (DROP done, not
committed), partition_dropped (committed, not published).
"""

from __future__ import annotations

import contextvars
import functools
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.archive import manifest
from steward.archive.archiver import ArchiveContext, Budget, TableReport, verify_batch, write_batch
from steward.archive.batch import SourceBatch
from steward.archive.formats import time_range
from steward.archive.manifest import ManifestEntry, staged_key
from steward.archive.partition_catalog import (
    Layout,
    Partition,
    detach_partition,
    drop_partition,
    lock_partition,
    partition_schema,
    read_layout,
)
from steward.archive.partition_copy import find_psql
from steward.archive.partition_export import (
    ExportedObject,
    copy_ready,
    export_objects,
    store_exported,
)
from steward.archive.publish import publish_batch
from steward.archive.sql_rows import TableRows
from steward.archive.sql_source import SqlSource
from steward.errors import ArchiveVerificationFailed
from steward.storage import utcnow
from steward.storage.steward_schema import SCHEMA_TOKEN, missing_tables, require_installed

__all__ = [
    "DETACHED",
    "DETACHING",
    "DROPPED",
    "KEPT",
    "archive_partitions",
    "metadata",
    "partition_records",
    "partition_tables_exist",
    "partitions_table",
    "plan_partitions",
    "require_partition_tables",
]

DETACHING, DETACHED, DROPPED, KEPT, RESTORED = (
    "detaching",
    "detached",
    "dropped",
    "kept",
    "restored",
)
OPEN = (DETACHING, DETACHED)
IN_FLIGHT = 2  # batches written and verified while the next one is read
AT_ONCE = 2  # partitions exported at once (each in its own transaction)
_DETACHING = threading.Lock()

metadata = sa.MetaData(schema=SCHEMA_TOKEN)  # Steward's own schema (database.schema)
TS = sa.DateTime(timezone=True)

partitions_table = sa.Table(
    "steward_archive_partitions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("table_name", sa.String(128), nullable=False),
    sa.Column("partition_name", sa.String(128), nullable=False),
    sa.Column("lower_bound", TS, nullable=False),
    sa.Column("upper_bound", TS, nullable=False),
    sa.Column("action", sa.String(8), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("objects", sa.Integer, nullable=False, server_default="0"),
    sa.Column("bytes", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("run_id", sa.String(64)),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("finished_at", TS),
    sa.Index("ix_steward_archive_partitions_table", "source", "table_name", "state"),
)

batches_table = sa.Table(
    "steward_archive_partition_batches",
    metadata,
    sa.Column("partition_id", sa.Integer, primary_key=True),
    sa.Column("batch_id", sa.String(32), primary_key=True),
)


def require_partition_tables(bind: sa.Engine | sa.Connection) -> None:
    """Stop with one line (:class:`~steward.errors.NotInstalled`) unless ``steward install``
    created the partition tables (Steward's own schema)."""
    require_installed(bind, metadata.sorted_tables)


def partition_tables_exist(bind: sa.Engine | sa.Connection) -> bool:
    return not missing_tables(bind, [partitions_table])


@dataclass
class _Record:
    id: int
    name: str
    lower: datetime
    upper: datetime
    action: str
    state: str


def partition_records(
    conn: Connection, source: str, table: str, states: tuple[str, ...]
) -> list[_Record]:
    t = partitions_table
    rows = conn.execute(
        sa.select(t.c.id, t.c.partition_name, t.c.lower_bound, t.c.upper_bound, t.c.action,
                  t.c.state)
        .where(t.c.source == source, t.c.table_name == table, t.c.state.in_(states))
        .order_by(t.c.id)
    ).all()  # fmt: skip
    return [_Record(*row) for row in rows]


def _set_state(conn: Connection, record_id: int, state: str, **values: Any) -> None:
    t = partitions_table
    conn.execute(t.update().where(t.c.id == record_id).values(state=state, **values))


# The run ---------------------------------------------------------------------------------------


def archive_partitions(
    ctx: ArchiveContext, source: SqlSource, budget: Budget, report: TableReport
) -> None:
    """Archive every whole partition before the source's cutoff (resuming open ones first);
    fill ``report.partitions``. No-op for a table that is not partitioned."""
    with ctx.sql.connect() as conn:
        layout = read_layout(conn, source.policy)
    if not layout.partitioned:
        return
    report.partitions_note = _note(layout, source.cutoff)
    require_partition_tables(ctx.sql.engine)
    with ctx.sql.connect() as conn:
        records = partition_records(conn, source.source_name, source.name, OPEN)
    done = {record.name for record in records}
    workers = AT_ONCE * IN_FLIGHT + 1
    with (
        ThreadPoolExecutor(AT_ONCE, thread_name_prefix="partitions") as exporters,
        ThreadPoolExecutor(workers, thread_name_prefix="partition-objects") as pool,
    ):
        publishing: list[Future[Any]] = []
        started = [
            _submit(exporters, _archive_one, ctx, source, layout, record, pool, publishing)
            for record in records
        ]
        for partition in layout.whole(source.cutoff):
            if partition.name in done:
                continue
            if not budget.take():
                report.partitions_pending += 1
                continue
            record = _start(ctx, source, partition)
            started.append(
                _submit(exporters, _archive_one, ctx, source, layout, record, pool, publishing)
            )
        for future in started:
            report.add_partition(future.result())
        for future in publishing:
            future.result()
    _analyze(ctx, source, [p for p in report.partitions if p["state"] in (DROPPED, KEPT)])


def plan_partitions(ctx: ArchiveContext, source: SqlSource) -> dict[str, Any]:
    """Dry run: the partitions that would leave whole, and which go through row archiving."""
    with ctx.sql.connect() as conn:
        layout = read_layout(conn, source.policy)
    whole = [p.name for p in layout.whole(source.cutoff)]
    return {"partitions": whole, "partitions_note": _note(layout, source.cutoff)}


def _note(layout: Layout, cutoff: datetime) -> str:
    if not layout.whole_ok:
        return f"rows archived one by one: {layout.why}"
    rows = layout.left_to_rows(cutoff)
    return f"row archiving for {', '.join(rows)}" if rows else ""


def _start(ctx: ArchiveContext, source: SqlSource, partition: Partition) -> _Record:
    lower = partition.lower or datetime.min.replace(tzinfo=UTC)  # FROM (MINVALUE)
    assert partition.upper is not None  # Layout.whole() lists bounded partitions only
    action = source.policy.policy.partition_action
    with ctx.sql.begin() as conn:
        result = conn.execute(
            partitions_table.insert().values(
                source=source.source_name,
                table_name=source.name,
                partition_name=partition.name,
                lower_bound=lower,
                upper_bound=partition.upper,
                action=action,
                state=DETACHING,
                run_id=ctx.run_id,
                created_at=utcnow(),
            )
        )
        key = result.inserted_primary_key
    assert key is not None
    return _Record(int(key[0]), partition.name, lower, partition.upper, action, DETACHING)


def _archive_one(
    ctx: ArchiveContext,
    source: SqlSource,
    layout: Layout,
    record: _Record,
    pool: ThreadPoolExecutor,
    publishing: list[Future[Any]],
) -> dict[str, Any]:
    """Detach (or finish detaching), abandon an interrupted export, export, drop; the final
    objects are published by ``pool`` while the next partition is exported."""
    if record.state == DETACHING:
        ctx.fire("partition_detaching")
        with _DETACHING:  # one DETACH of a parent at a time (they would queue in PostgreSQL)
            detach_partition(
                ctx.sql.engine, source.name, record.name, concurrently=not layout.has_default
            )
        with ctx.sql.begin() as conn:
            _set_state(conn, record.id, DETACHED)
        ctx.fire("partition_detached")
    _abandon_export(ctx, record)
    exported = _export_and_drop(ctx, source, record, pool)
    ctx.fire("partition_dropped")
    for entry, located in exported:
        publishing.append(_submit(pool, publish_batch, ctx, source, entry, located, set()))
    return {
        "partition": record.name,
        "from": record.lower.isoformat(),
        "to": record.upper.isoformat(),
        "rows": sum(entry.rows for entry, _ in exported),
        "objects": len(exported),
        "bytes": sum(entry.bytes or 0 for entry, _ in exported),
        "state": DROPPED if record.action == "drop" else KEPT,
    }


def _abandon_export(ctx: ArchiveContext, record: _Record) -> None:
    """Batches an interrupted export left: no row was dropped on their strength."""
    with ctx.sql.connect() as conn:
        ids = conn.execute(
            sa.select(batches_table.c.batch_id).where(batches_table.c.partition_id == record.id)
        ).scalars()
        pending = [
            entry
            for batch_id in list(ids)
            for entry in manifest.entries(conn, batch_id=batch_id, states=(manifest.WRITING,
                                                                            manifest.VERIFIED))
        ]  # fmt: skip
    for entry in pending:
        for key in entry.object_keys:
            for location in (staged_key(key), key):
                if ctx.store.exists(location):
                    ctx.store.delete(location)
        with ctx.sql.begin() as conn:
            manifest.mark_abandoned(conn, entry.batch_id, "partition export interrupted; redone")


def _export_and_drop(
    ctx: ArchiveContext, source: SqlSource, record: _Record, pool: ThreadPoolExecutor
) -> list[tuple[ManifestEntry, dict[str, str]]]:
    """Export the detached table under a SHARE lock and, in the same transaction, record its
    objects verified and drop it. While one object is encoded, the ones before it are written
    and verified by ``pool``."""
    with ctx.sql.engine.connect() as conn, conn.begin():
        lock_partition(conn, record.name)
        schema = partition_schema(conn, record.name)
        table = source.table.to_metadata(sa.MetaData(), name=record.name, schema=schema)
        keys = [table.c[k.name] for k in source.root.keys]
        rows = TableRows(table, keys, source.root.specs, True)
        if copy_ready(source, conn):
            exported = _copied(ctx, source, record, rows, conn, pool)
        else:
            exported = _keyed(ctx, source, record, rows, conn, pool)
        ctx.fire("partition_verified")
        _drop(conn, record, [entry for entry, _located in exported])
        ctx.fire("partition_dropping")
    return exported


def _drop(conn: Connection, record: _Record, entries: list[ManifestEntry]) -> None:
    """In the export's transaction: the objects 'verified' then 'deleted', the table dropped
    (or kept), the partition 'dropped' / 'kept' — committed together by the caller."""
    for entry in entries:
        manifest.mark_verified(conn, entry.batch_id, size=entry.bytes or 0,
                               sha256=entry.sha256 or "")  # fmt: skip
        manifest.mark_deleted(conn, entry.batch_id, deleted=entry.rows, skipped=[])
    if record.action == "drop":
        drop_partition(conn, record.name)
    _set_state(
        conn,
        record.id,
        DROPPED if record.action == "drop" else KEPT,
        rows=sum(entry.rows for entry in entries),
        objects=len(entries),
        bytes=sum(entry.bytes or 0 for entry in entries),
        finished_at=utcnow(),
    )


def _copied(
    ctx: ArchiveContext,
    source: SqlSource,
    record: _Record,
    rows: TableRows,
    conn: Connection,
    pool: ThreadPoolExecutor,
) -> list[tuple[ManifestEntry, dict[str, str]]]:
    """The COPY path: objects of ``archive.partition_object_rows`` rows, stored by ``pool``."""

    def link(link_conn: Connection, batch_id: str) -> None:
        link_conn.execute(batches_table.insert().values(partition_id=record.id, batch_id=batch_id))

    def store(exported: ExportedObject) -> tuple[ManifestEntry, dict[str, str]]:
        entry = store_exported(ctx, source, exported, link)
        return entry, {entry.object_key: staged_key(entry.object_key)}

    per_object = ctx.settings.archive.partition_object_rows
    psql = find_psql(conn, ctx.settings.backup.pg_bin_dir)
    objects = export_objects(source, rows, conn, per_object, psql)
    exported = _in_flight(pool, (functools.partial(store, e) for e in objects))
    # psql read in a session of its own: the count in this one proves it saw every row
    held = conn.execute(sa.select(sa.func.count()).select_from(rows.table)).scalar_one()
    if held != sum(entry.rows for entry, _ in exported):
        raise ArchiveVerificationFailed(
            f"partition {record.name!r} of table {source.name!r} holds {held} rows but "
            f"{sum(entry.rows for entry, _ in exported)} were exported; nothing was dropped, "
            "rerun the archive"
        )
    return exported


def _keyed(
    ctx: ArchiveContext,
    source: SqlSource,
    record: _Record,
    rows: TableRows,
    conn: Connection,
    pool: ThreadPoolExecutor,
) -> list[tuple[ManifestEntry, dict[str, str]]]:
    """The keyset path (columns COPY's CSV cannot carry exactly): row batches, each written
    and verified like any row batch."""

    def stored(batch: SourceBatch) -> Callable[[], tuple[ManifestEntry, dict[str, str]]]:
        with ctx.sql.begin() as link:
            link.execute(batches_table.insert().values(partition_id=record.id,
                                                       batch_id=batch.batch_id))  # fmt: skip
        return functools.partial(_store, ctx, source, batch)

    return _in_flight(pool, (stored(batch) for batch in _keyset(source, rows, conn)))


def _in_flight(pool: ThreadPoolExecutor, steps: Iterator[Callable[[], Any]]) -> list[Any]:
    """Run each step on ``pool`` as the iterator makes it, ``IN_FLIGHT`` at a time; results
    in order."""
    done: list[Any] = []
    running: deque[Future[Any]] = deque()
    for step in steps:
        if len(running) == IN_FLIGHT:
            done.append(running.popleft().result())
        running.append(_submit(pool, step))
    while running:
        done.append(running.popleft().result())
    return done


def _store(
    ctx: ArchiveContext, source: SqlSource, batch: SourceBatch
) -> tuple[ManifestEntry, dict[str, str]]:
    """Write one row batch's object staged and verify it."""
    verified = verify_batch(ctx, source, write_batch(ctx, source, batch))
    return verified.entry, verified.located


def _submit(pool: ThreadPoolExecutor, fn: Any, *args: Any) -> Future[Any]:
    # A copy of the context per call: Prefect's run context follows the step into the thread.
    return pool.submit(contextvars.copy_context().run, fn, *args)


def _keyset(source: SqlSource, rows: TableRows, conn: Connection) -> Iterator[SourceBatch]:
    """The partition's rows in keyset batches through TableRows (any column type)."""
    after: Any = None
    while True:
        batch = _read(source, rows, conn, after)
        if batch is None:
            return
        yield batch
        after = batch.keys[-1]


def _read(source: SqlSource, rows: TableRows, conn: Connection, after: Any) -> SourceBatch | None:
    where = [rows.after(after)] if after is not None else []
    arrow, _versions = rows.read(conn, where, source.batch_size)
    if not arrow.num_rows:
        return None
    batch_id = uuid.uuid4().hex
    ts_min, ts_max = time_range(arrow.column(source.ts_name))
    return SourceBatch(
        batch_id=batch_id,
        payload=source._labelled(arrow, batch_id, source.root),  # the parent's name: one prefix
        keys=rows.keys_of(arrow),
        ts_min=ts_min,
        ts_max=ts_max,
    )


def _analyze(ctx: ArchiveContext, source: SqlSource, gone: list[dict[str, Any]]) -> None:
    """The planner's statistics of the parent no longer hold: analyse it once."""
    if not gone:
        return
    from steward.statistics import analyze_partition_parent

    names = [p["partition"] for p in gone]
    action = "dropped" if all(p["state"] == DROPPED for p in gone) else "detached"
    analyze_partition_parent(
        ctx.sql.engine, source.name, names, ctx.settings.statistics, action=action
    )
