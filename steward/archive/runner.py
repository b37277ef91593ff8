"""Run the archive of one table: resume, then batches until done or the budget is spent.

Plain Python (CLI, tests, the benchmark); the ``archive-to-s3`` flow runs the same loop with
each step wrapped in a Prefect task (:class:`BatchSteps`).
"""

from __future__ import annotations

import contextvars
import functools
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from steward.archive import manifest, runs
from steward.archive.archiver import (
    ArchiveContext,
    BatchResult,
    Budget,
    TableReport,
    VerifiedBatch,
    WrittenObject,
    finish_batch,
    read_batch,
    verify_batch,
    write_batch,
)
from steward.archive.arrow_memory import use_archive_memory_pool
from steward.archive.batch import Source, SourceBatch
from steward.archive.collector import relaxed_collector
from steward.archive.locking import table_lock
from steward.archive.partitions import archive_partitions, plan_partitions
from steward.archive.recovery import Resolution, resolve_unfinished
from steward.archive.sql_source import SqlSource
from steward.errors import ArchiveBusy

__all__ = ["BatchSteps", "archive_policies", "archive_table", "plan_table"]

DELETES_IN_FLIGHT = 2  # PostgreSQL: guarded deletes of earlier batches running meanwhile
ROWS_IN_FLIGHT = 60_000  # ... unless their rows (children too) would pass this: then one


@dataclass(frozen=True)
class BatchSteps:
    """The steps of a run. The flow swaps in Prefect tasks that wrap these same functions."""

    resolve: Callable[[ArchiveContext, Source], Resolution] = resolve_unfinished
    read: Callable[[ArchiveContext, Source, Any], SourceBatch | None] = read_batch
    write: Callable[[ArchiveContext, Source, SourceBatch], WrittenObject] = write_batch
    verify: Callable[[ArchiveContext, Source, WrittenObject], VerifiedBatch] = verify_batch
    finish: Callable[[ArchiveContext, Source, VerifiedBatch], BatchResult] = finish_batch


def archive_table(
    ctx: ArchiveContext,
    source: Source,
    budget: Budget | None = None,
    on_batch: Callable[[BatchResult], None] | None = None,
    steps: BatchSteps = BatchSteps(),
) -> TableReport:
    """Resume what an earlier run left, then archive batches until none qualify or the
    budget is spent. Holds the table's lock throughout; records the run for status (and marks
    runs a kill left 'running' as interrupted). ``on_batch`` sees resumed batches too, so a
    progress bar started from the qualifying count reaches it."""
    budget = budget or Budget()
    report = TableReport(table=source.name, source=source.source_name)
    manifest.require_manifest(ctx.sql.engine)
    use_archive_memory_pool()
    with table_lock(ctx.sql.engine, source.source_name, source.name), relaxed_collector():
        run_row, report.interrupted_runs = _start_run(ctx, source)
        try:
            if isinstance(source, SqlSource):
                archive_partitions(ctx, source, budget, report)
            resolution = steps.resolve(ctx, source)
            for result in resolution.finished:
                _collect(result, report, on_batch)
            report.abandoned_batches = resolution.abandoned
            report.orphans_removed = resolution.orphans_removed
            if not report.partitions_pending:  # else rows of whole partitions would go singly
                _run_batches(ctx, source, budget, steps, report, on_batch)
            report.kept, report.kept_reason = source.kept()
            ctx.staged.flush(ctx)  # staged copies of the last batches (of every table)
        except Exception:
            _end_run(ctx, run_row, "failed", report)
            raise
        _end_run(ctx, run_row, "finished", report)
    return report


def archive_policies(
    ctx: ArchiveContext,
    sources: list[Source],
    budget: Budget | None = None,
    on_batch: Callable[[Source, BatchResult], None] | None = None,
    steps: BatchSteps = BatchSteps(),
    concurrency: int | None = None,
) -> list[TableReport]:
    """Archive several tables, ``archive.concurrency`` at once (one on SQLite), sharing the
    budget. A table another run is archiving (its lock is held) is left to that run: its
    report says ``busy``, and no row is archived twice."""
    budget = budget or Budget()
    workers = concurrency or ctx.settings.archive.concurrency
    if not ctx.sql.is_postgres:
        workers = 1  # SQLite has one writer

    def one(source: Source) -> TableReport:
        seen = functools.partial(on_batch, source) if on_batch is not None else None
        try:
            return archive_table(ctx, source, budget, seen, steps)
        except ArchiveBusy:
            return TableReport(table=source.name, source=source.source_name, busy=True)

    if workers == 1 or len(sources) < 2:
        return [one(source) for source in sources]
    with ThreadPoolExecutor(min(workers, len(sources)), thread_name_prefix="tables") as pool:
        futures = [_submit(pool, one, source) for source in sources]
        return [future.result() for future in futures]


def _run_batches(
    ctx: ArchiveContext,
    source: Source,
    budget: Budget,
    steps: BatchSteps,
    report: TableReport,
    on_batch: Callable[[BatchResult], None] | None,
) -> None:
    """Batch after batch. On PostgreSQL batches overlap: the next one is read while this one
    is written and verified and up to two earlier ones are being deleted (the deletes are the
    slow part and touch disjoint rows; database waits release the GIL). Every batch still goes
    through every step in order, so crash recovery is unchanged, and memory stays bounded by
    four batches (three when a batch with its children holds more than half of
    ``ROWS_IN_FLIGHT`` rows: an aggregate's deletes then run one at a time; its batches are
    sized below that, see ``sql_source.AGGREGATE_ROWS``)."""
    if not budget.allows():
        return
    overlap = source.backend == "sql" and ctx.sql.is_postgres
    in_flight = DELETES_IN_FLIGHT if overlap else 1
    pool = ThreadPoolExecutor(1 + in_flight, thread_name_prefix="archive") if overlap else _Inline()
    with pool:
        reading: Future[SourceBatch | None] | None = _submit(pool, steps.read, ctx, source, None)
        finishing: deque[Future[BatchResult]] = deque()
        while reading is not None:
            _raise_failed(finishing)  # stop starting new batches once a delete failed
            batch = reading.result()
            if batch is None or not budget.take():
                break
            more = budget.allows()
            reading = _submit(pool, steps.read, ctx, source, batch.keys[-1]) if more else None
            limit = in_flight if _rows_of(batch) * in_flight <= ROWS_IN_FLIGHT else 1
            written = steps.write(ctx, source, batch)
            del batch  # its rows are in the objects: not held while the deletes run
            verified = steps.verify(ctx, source, written)
            del written
            while len(finishing) >= limit:
                _collect(finishing.popleft().result(), report, on_batch)
            finishing.append(_submit(pool, steps.finish, ctx, source, verified))
        while finishing:
            _collect(finishing.popleft().result(), report, on_batch)


def _rows_of(batch: SourceBatch) -> int:
    """Rows a batch holds in memory: its roots and, for an aggregate, its children."""
    return batch.rows + sum(getattr(part, "num_rows", 0) for part in batch.children.values())


def _raise_failed(finishing: deque[Future[BatchResult]]) -> None:
    for future in finishing:
        if future.done() and future.exception() is not None:
            future.result()


def _collect(
    result: BatchResult, report: TableReport, on_batch: Callable[[BatchResult], None] | None
) -> None:
    report.add(result)
    if on_batch is not None:
        on_batch(result)


def _submit(pool: Any, fn: Callable[..., Any], *args: Any) -> Future[Any]:
    # A copy of the context per call: Prefect's run context follows the step into the thread.
    return pool.submit(contextvars.copy_context().run, fn, *args)


class _Inline:
    """An executor that runs each call at once (SQLite, MongoDB: no overlap)."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args))  # an error surfaces at once: nothing runs after it
        return future

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _start_run(ctx: ArchiveContext, source: Source) -> tuple[int, int]:
    """Record this run; earlier runs still 'running' cannot be alive (we hold the lock)."""
    with ctx.sql.begin() as conn:
        interrupted = runs.mark_interrupted(conn, source.source_name, source.name)
        return runs.start_run(conn, ctx.run_id, source.source_name, source.name), interrupted


def _end_run(ctx: ArchiveContext, run_row: int, status: str, report: TableReport) -> None:
    totals = {
        "rows_archived": report.rows_archived,
        "rows_skipped": report.rows_skipped,
        "objects": report.objects,
        "bytes": report.bytes,
    }
    with ctx.sql.begin() as conn:
        runs.finish_run(conn, run_row, status, totals)


def plan_table(ctx: ArchiveContext, source: Source) -> dict[str, Any]:
    """Dry run: rows that would move (children too), estimated bytes and objects, the rows
    kept because other tables reference them (and which), and the foreign keys that could
    make those tables children of an aggregate. Nothing is changed."""
    rows = source.count()
    sample = source.read_batch(None, min(source.batch_size, 1000), "dry-run") if rows else None
    per_row = 0.0
    if sample:
        sizes = [len(source.encode(sample))]
        sizes += [len(data) for data, _rows in source.encode_parts(sample).values()]
        per_row = sum(sizes) / sample.rows
    kept, kept_reason = source.kept()
    children = source.count_children() if isinstance(source, SqlSource) else {}
    return {
        "table": source.name,
        "source": source.source_name,
        "rows": rows,
        "children": children,
        "kept": kept,
        "kept_referenced": kept,
        "kept_reason": kept_reason,
        "foreign_keys": _foreign_keys(source),
        "estimated_bytes": int(rows * per_row),
        "objects": -(-rows // source.batch_size) * (1 + len(children)),
        "unfinished_batches": _unfinished(ctx, source),
        "cutoff": source.cutoff.isoformat(),
        **(plan_partitions(ctx, source) if isinstance(source, SqlSource) else {}),
    }


def _unfinished(ctx: ArchiveContext, source: Source) -> int:
    with ctx.sql.connect() as conn:
        if not manifest.manifest_exists(conn):
            return 0
        found = manifest.entries(
            conn, source=source.source_name, table=source.name, states=manifest.UNFINISHED
        )
    return len(found)


def _foreign_keys(source: Source) -> list[dict[str, str]]:
    """Foreign keys pointing at the table (from the live schema): declared children, and the
    others, proposed as children (archived with the root) or left as reasons to keep rows."""
    if not isinstance(source, SqlSource):
        return []
    policy = source.policy
    found = [
        {"table": c.name, "column": c.parent.name, "role": "child (archived with it)"}
        for c in policy.children
    ]
    for ref in policy.proposed_children:
        columns = ", ".join(ref.column_names)
        found.append({"table": ref.table, "column": columns, "role": "keeps rows; child?"})
    return found
