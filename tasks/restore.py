"""Restore task: put one archive batch's selected rows back into the source.

Safe to retry: rows whose key already exists are conflicts (or overwritten), never duplicated,
and for SQL the rows, the manifest mark and the audit entry commit together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from steward.archive.archiver import ArchiveContext
from steward.archive.batch import Source
from steward.archive.manifest import ManifestEntry
from steward.archive.restore import BatchRestore, RestoreRequest, restore_batch
from tasks.retry_policy import retry_transient

__all__ = ["restore_archived_batch"]


@task(
    name="restore-archived-batch",
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
)
def restore_archived_batch(
    ctx: ArchiveContext,
    source: Source,
    entry: ManifestEntry,
    request: RestoreRequest,
    keys: Sequence[Any],
    seen: dict[str, set[Any]] | None = None,
) -> BatchRestore:
    """Restore the selected rows of one batch, or request a cold-storage restore of it.

    Args:
        ctx: the run's context (database, object store).
        source: the batch's table or collection.
        entry: the batch's manifest entry (state complete).
        request: what to restore (keys, range), overwrite, tier, dry run.
        keys: the requested keys as the key column's type (empty unless restoring by key).
        seen: keys restored earlier in this run, per table (a newer copy already came back).

    Returns:
        The outcome (rows restored / overwritten, conflicts) or the pending restore.
    """
    result = restore_batch(ctx, source, entry, request, keys, seen)
    logger = get_run_logger()
    if result.pending is not None:
        logger.info(
            "%s is in %s: restore requested, rerun after %s",
            entry.object_key,
            result.pending["storage_class"],
            result.pending["rerun_after"],
        )
    elif result.outcome is not None:
        logger.info(
            "%s batch %s: %s rows restored (children: %s), %s overwritten, %s conflicts, "
            "%s clashes",
            entry.table_name,
            entry.batch_id,
            result.outcome.restored,
            result.outcome.children_restored or "none",
            result.outcome.overwritten,
            len(result.outcome.conflicts),
            len(result.outcome.clashes),
        )
        for clash in result.outcome.clashes[:20]:
            logger.warning("not restored: %s", clash)
    return result
