"""Archive tasks: one step of the archive protocol on one batch (thousands of rows) each.

The steps are the plain functions of :mod:`steward.archive.archiver` and
:mod:`steward.archive.recovery`; :data:`TASK_STEPS` hands them to the shared run loop
(:func:`steward.archive.runner.archive_table`) so the flow and the CLI archive the same way.
Each step is safe to retry (the manifest entry of a batch is keyed by its batch id, the
guarded delete commits with the manifest update), so transient errors are retried.
Batches are passed through ``quote`` so Prefect does not walk thousands of keys.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from steward.archive import archiver, recovery
from steward.archive.archiver import (
    ArchiveContext,
    BatchResult,
    VerifiedBatch,
    WrittenObject,
)
from steward.archive.batch import Source, SourceBatch
from steward.archive.recovery import Resolution
from steward.archive.runner import BatchSteps, plan_table
from tasks.retry_policy import retry_transient

__all__ = [
    "TASK_STEPS",
    "delete_archived_rows",
    "estimate_archive",
    "read_batch",
    "resolve_unfinished_batches",
    "verify_archive_object",
    "write_archive_object",
]


RETRY_DELAYS: list[float] = [2, 10, 30]  # transient errors only (retry_condition_fn)


@task(name="estimate-archive", cache_policy=NO_CACHE)
def estimate_archive(ctx: ArchiveContext, source: Source) -> dict[str, Any]:
    """Dry run for one table: rows that qualify, estimated bytes and objects; changes nothing.

    Args:
        ctx: the run's context (database, object store).
        source: the table or collection under its policy.

    Returns:
        ``table``, ``rows``, ``children`` (child rows per table), ``estimated_bytes``,
        ``objects``, ``kept`` / ``kept_reason`` (rows referenced from elsewhere, and by which
        table), ``foreign_keys`` (the graph around the table), ``unfinished_batches``,
        ``cutoff``.
    """
    plan = plan_table(ctx, source)
    get_run_logger().info(
        "dry run: %s would move %s rows (children: %s; ~%s bytes in %s objects); %s kept%s",
        source.name,
        plan["rows"],
        plan["children"] or "none",
        plan["estimated_bytes"],
        plan["objects"],
        plan["kept"],
        f" ({plan['kept_reason']})" if plan["kept"] else "",
    )
    return plan


@task(
    name="resolve-unfinished-batches",
    retries=3,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
)
def resolve_unfinished_batches(ctx: ArchiveContext, source: Source) -> Resolution:
    """Finish or abandon the batches an earlier run left open; remove orphan objects.

    Args:
        ctx: the run's context.
        source: the table or collection.

    Returns:
        The batches finished, how many were abandoned and how many orphans were removed.
    """
    resolution = recovery.resolve_unfinished(ctx, source)
    if resolution.finished or resolution.abandoned or resolution.orphans_removed:
        get_run_logger().warning(
            "%s: resumed %s unfinished batch(es), abandoned %s, removed %s orphan object(s)",
            source.name,
            len(resolution.finished),
            resolution.abandoned,
            resolution.orphans_removed,
        )
    return resolution


@task(
    name="read-batch",
    retries=3,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
)
def read_batch(ctx: ArchiveContext, source: Source, after: Any) -> SourceBatch | None:
    """Read the next keyset batch of qualifying rows (key above ``after``).

    Args:
        ctx: the run's context.
        source: the table or collection.
        after: the last key of the previous batch, None for the first.

    Returns:
        The batch in its archive form, or None when no more rows qualify.
    """
    batch = archiver.read_batch(ctx, source, after)
    if batch is not None:
        get_run_logger().info(
            "%s: read %s rows, keys %s..%s", source.name, batch.rows, batch.keys[0], batch.keys[-1]
        )
    return batch


@task(
    name="write-archive-object",
    retries=3,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
)
def write_archive_object(ctx: ArchiveContext, source: Source, batch: SourceBatch) -> WrittenObject:
    """Record the batch in the manifest as 'writing', then write its object.

    Args:
        ctx: the run's context.
        source: the table or collection.
        batch: rows from :func:`read_batch`.

    Returns:
        The manifest entry with the size and SHA-256 of the bytes written.
    """
    written = archiver.write_batch(ctx, source, batch)
    get_run_logger().info(
        "%s: wrote %s (%s bytes)", source.name, written.entry.object_key, written.size
    )
    return written


@task(
    name="verify-archive-object",
    retries=3,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
)
def verify_archive_object(
    ctx: ArchiveContext, source: Source, written: WrittenObject
) -> VerifiedBatch:
    """Check the stored object (size, SHA-256), read it back and check rows and keys.

    Args:
        ctx: the run's context.
        source: the table or collection.
        written: from :func:`write_archive_object`.

    Returns:
        The batch as decoded from the store, state 'verified'.
    """
    return archiver.verify_batch(ctx, source, written)


@task(
    name="delete-archived-rows",
    retries=3,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
)
def delete_archived_rows(
    ctx: ArchiveContext, source: Source, verified: VerifiedBatch
) -> BatchResult:
    """Delete the rows still equal to their archived copy; mark the batch complete.

    Args:
        ctx: the run's context.
        source: the table or collection.
        verified: from :func:`verify_archive_object`.

    Returns:
        Rows in the object, rows deleted and rows skipped because they changed.
    """
    # A retry after the delete committed (its publish failed) publishes, never deletes again.
    result = recovery.finish_once(ctx, source, verified)
    logger = get_run_logger()
    logger.info(
        "%s: deleted %s archived rows (children: %s)",
        source.name,
        result.deleted,
        result.children or "none",
    )
    if result.skipped:
        logger.warning(
            "%s: %s row(s) changed since they were read and stay in the source",
            source.name,
            result.skipped,
        )
    return result


def _quoted(value: Any) -> Any:
    """Pass ``value`` to a task without Prefect walking its thousands of keys."""
    return quote(value)


# The context and source are quoted too: Prefect would otherwise walk the settings models
# (and call dict() on them) for every task run.
TASK_STEPS = BatchSteps(
    resolve=lambda ctx, source: resolve_unfinished_batches(_quoted(ctx), _quoted(source)),
    read=lambda ctx, source, after: read_batch(_quoted(ctx), _quoted(source), after),
    write=lambda ctx, source, batch: write_archive_object(
        _quoted(ctx), _quoted(source), _quoted(batch)
    ),
    verify=lambda ctx, source, written: verify_archive_object(
        _quoted(ctx), _quoted(source), _quoted(written)
    ),
    finish=lambda ctx, source, verified: delete_archived_rows(
        _quoted(ctx), _quoted(source), _quoted(verified)
    ),
)
