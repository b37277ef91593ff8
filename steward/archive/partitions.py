"""Whole partitions: a partition wholly before the cutoff leaves as a unit, never row by row.

For each plain partition of a RANGE-partitioned policy table whose upper bound is at or
before the cutoff (:mod:`~steward.archive.partition_catalog` decides which)::

    detaching  record committed, then ALTER TABLE parent DETACH PARTITION p CONCURRENTLY
               (autocommit; FINALIZE when an earlier detach was interrupted; a plain DETACH
               with a lock timeout when the table has a default partition, which
               CONCURRENTLY refuses) -> 'detached'
    export     one transaction T (:mod:`~steward.archive.partition_move`): LOCK TABLE p IN
               SHARE MODE, count its rows, then stream them by COPY into Parquet objects of
               ``archive.partition_object_rows`` rows
               (:mod:`~steward.archive.partition_export`), each recorded 'writing', written
               staged and verified (same objects under the parent's prefix as row batches;
               a table COPY cannot carry exactly goes in keyset batches, each written and
               verified like a row batch); their rows must add up to the count
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

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from steward.archive import manifest
from steward.archive.archiver import ArchiveContext, Budget, TableReport
from steward.archive.manifest import staged_key
from steward.archive.partition_catalog import Layout, Partition, detach_partition, read_layout
from steward.archive.partition_ledger import (
    DETACHED,
    DETACHING,
    DROPPED,
    KEPT,
    OPEN,
    RESTORED,
    PartitionRecord,
    batches_table,
    metadata,
    partition_records,
    partition_tables_exist,
    partitions_table,
    require_partition_tables,
    set_state,
)
from steward.archive.partition_move import IN_FLIGHT, export_and_drop, submit
from steward.archive.publish import publish_batch
from steward.archive.sql_source import SqlSource
from steward.storage import utcnow

__all__ = [  # the ledger's names too: install, sources and restore take them from here
    "DETACHED",
    "DETACHING",
    "DROPPED",
    "KEPT",
    "RESTORED",
    "archive_partitions",
    "batches_table",
    "metadata",
    "partition_records",
    "partition_tables_exist",
    "partitions_table",
    "plan_partitions",
    "require_partition_tables",
]

AT_ONCE = 2  # partitions exported at once (each in its own transaction)
_DETACHING = threading.Lock()


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
            submit(exporters, _archive_one, ctx, source, layout, record, pool, publishing)
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
                submit(exporters, _archive_one, ctx, source, layout, record, pool, publishing)
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


def _start(ctx: ArchiveContext, source: SqlSource, partition: Partition) -> PartitionRecord:
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
    return PartitionRecord(int(key[0]), partition.name, lower, partition.upper, action, DETACHING)


def _archive_one(
    ctx: ArchiveContext,
    source: SqlSource,
    layout: Layout,
    record: PartitionRecord,
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
            set_state(conn, record.id, DETACHED)
        ctx.fire("partition_detached")
    _abandon_export(ctx, record)
    exported = export_and_drop(ctx, source, record, pool)
    ctx.fire("partition_dropped")
    for entry, located in exported:
        publishing.append(submit(pool, publish_batch, ctx, source, entry, located, set()))
    return {
        "partition": record.name,
        "from": record.lower.isoformat(),
        "to": record.upper.isoformat(),
        "rows": sum(entry.rows for entry, _ in exported),
        "objects": len(exported),
        "bytes": sum(entry.bytes or 0 for entry, _ in exported),
        "state": DROPPED if record.action == "drop" else KEPT,
    }


def _abandon_export(ctx: ArchiveContext, record: PartitionRecord) -> None:
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
