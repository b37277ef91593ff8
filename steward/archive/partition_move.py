"""Moving one detached partition out, in one transaction T: lock, export, verify, drop.

::

    LOCK TABLE p IN SHARE MODE      readers go on; a writer naming p waits for T, and finds
                                    it gone
    count(*)                        the rows p holds (and will hold until T ends)
    export                          p's rows streamed by COPY into Parquet objects of
                                    ``archive.partition_object_rows`` rows
                                    (:mod:`~steward.archive.partition_export`), each recorded
                                    'writing', written staged and verified while the next is
                                    encoded; their rows must add up to the count. A table COPY
                                    cannot carry exactly goes in keyset batches, each written
                                    and verified like a row batch.
    drop                            every object 'verified' -> 'deleted', DROP TABLE p (or
                                    keep it), the partition 'dropped' / 'kept'; COMMIT

So p is dropped only in the transaction that records its objects verified; a crash before
the COMMIT rolls all of it back (the objects stay 'writing', and the next run abandons them).
"""

from __future__ import annotations

import contextvars
import functools
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.archive import manifest
from steward.archive.archiver import ArchiveContext, verify_batch, write_batch
from steward.archive.batch import SourceBatch
from steward.archive.formats import time_range
from steward.archive.manifest import ManifestEntry, staged_key
from steward.archive.partition_catalog import drop_partition, lock_partition, partition_schema
from steward.archive.partition_copy import find_psql
from steward.archive.partition_export import (
    ExportedObject,
    copy_ready,
    export_objects,
    store_exported,
)
from steward.archive.partition_ledger import (
    DROPPED,
    KEPT,
    PartitionRecord,
    batches_table,
    set_state,
)
from steward.archive.sql_rows import TableRows
from steward.archive.sql_source import SqlSource
from steward.errors import ArchiveVerificationFailed
from steward.storage import utcnow

__all__ = ["export_and_drop", "submit"]

IN_FLIGHT = 2  # objects written and verified while the next one is encoded


def export_and_drop(
    ctx: ArchiveContext, source: SqlSource, record: PartitionRecord, pool: ThreadPoolExecutor
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


def _drop(conn: Connection, record: PartitionRecord, entries: list[ManifestEntry]) -> None:
    """In the export's transaction: the objects 'verified' then 'deleted', the table dropped
    (or kept), the partition 'dropped' / 'kept' — committed together by the caller."""
    for entry in entries:
        manifest.mark_verified(conn, entry.batch_id, size=entry.bytes or 0,
                               sha256=entry.sha256 or "")  # fmt: skip
        manifest.mark_deleted(conn, entry.batch_id, deleted=entry.rows, skipped=[])
    if record.action == "drop":
        drop_partition(conn, record.name)
    set_state(
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
    record: PartitionRecord,
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

    # psql reads in a session of its own: this session's count proves it saw every row (and
    # an empty table needs no COPY: Arrow refuses a stream without a line)
    held = conn.execute(sa.select(sa.func.count()).select_from(rows.table)).scalar_one()
    if not held:
        return []
    psql = find_psql(conn, ctx.settings.backup.pg_bin_dir)
    per_object = ctx.settings.archive.partition_object_rows
    objects = export_objects(source, rows, conn, per_object, psql)
    exported = _in_flight(pool, (functools.partial(store, e) for e in objects))
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
    record: PartitionRecord,
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
        running.append(submit(pool, step))
    while running:
        done.append(running.popleft().result())
    return done


def _store(
    ctx: ArchiveContext, source: SqlSource, batch: SourceBatch
) -> tuple[ManifestEntry, dict[str, str]]:
    """Write one row batch's object staged and verify it."""
    verified = verify_batch(ctx, source, write_batch(ctx, source, batch))
    return verified.entry, verified.located


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
    arrow, versions = rows.read(conn, where, source.batch_size)
    if not arrow.num_rows:
        return None
    batch_id = uuid.uuid4().hex
    ts_min, ts_max = time_range(arrow.column(source.ts_name))
    return SourceBatch(
        batch_id=batch_id,
        payload=source._labelled(arrow, batch_id, source.root),  # the parent's name: one prefix
        keys=rows.keys_read(arrow, versions),
        ts_min=ts_min,
        ts_max=ts_max,
    )


def submit(pool: ThreadPoolExecutor, fn: Any, *args: Any) -> Future[Any]:
    # A copy of the context per call: Prefect's run context follows the step into the thread.
    return pool.submit(contextvars.copy_context().run, fn, *args)
