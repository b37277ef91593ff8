"""Prefect tasks for the cache: warm one unit, apply a slice of invalidation events, measure.

A warm task covers one unit (a refresh warmer, or every warmer of a versioned namespace): its
rows are written in pipelined batches inside the task, so the per-task overhead is paid once
per unit, not per batch. Only transient errors (Redis or the database unreachable) are
retried; a versioned unit that failed left the previous generation current, so a retry starts
a fresh generation.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from steward.cache import CacheWarmer, Invalidator, plan_units, read_stats
from steward.settings import get_settings
from tasks.retry_policy import retry_transient

__all__ = [
    "apply_invalidation_events",
    "read_cache_stats",
    "read_invalidation_lag",
    "warm_cache_unit",
]

# One invalidation task run handles this many events at most, or for about this long.
SLICE_EVENTS = 50_000
SLICE_SECONDS = 5.0


@task(
    name="warm-cache-unit",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[2, 15],
    retry_condition_fn=retry_transient,
)
def warm_cache_unit(warmers: list[str], dry_run: bool = False) -> dict[str, Any]:
    """Warm one unit: a refresh warmer, or every warmer of one versioned namespace.

    Args:
        warmers: The unit's warmer names (a versioned namespace brings all its warmers).
        dry_run: Read and check the rows, count keys; write nothing.

    Returns:
        The unit report: namespace, mode, per-warmer rows / keys / seconds, the generation
        made current and the keys of older generations removed.
    """
    logger = get_run_logger()
    settings = get_settings()
    (unit,) = plan_units(settings, warmers)
    warmer = CacheWarmer(settings)
    try:
        report = warmer.warm_unit(unit, dry_run=dry_run)
    finally:
        warmer.close()
    for item in report.warmers:
        logger.info(
            "%s %s: %s rows -> %s keys in %.2f s (%s keys/s)%s",
            "counted" if dry_run else "warmed", item.warmer, item.rows, item.keys, item.seconds,
            item.keys_per_second, " (dry run)" if dry_run else "",
        )  # fmt: skip
    if report.generation is not None:
        logger.info(
            "namespace %s: generation v%s is current (was v%s); %s old keys removed",
            report.namespace, report.generation, report.previous_generation, report.removed_keys,
        )  # fmt: skip
    return report.as_dict()


@task(
    name="apply-invalidation-events",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    retry_condition_fn=retry_transient,
)
def apply_invalidation_events(
    max_events: int = SLICE_EVENTS,
    seconds: float = SLICE_SECONDS,
    wait: bool = False,
    from_beginning: bool = False,
) -> dict[str, Any]:
    """Read outbox events from the streams, apply the invalidation rules, acknowledge.

    Keys are deleted and each batch acknowledged at once; the warmer reruns the events ask for
    are recorded with the acknowledgement and run beside the deletes, once per warmer per round.
    The task returns once no recorded rerun is left.

    Args:
        max_events: Stop after about this many events (whole batches).
        seconds: Stop starting batches after this long.
        wait: Block on the streams for new events until ``seconds`` pass (long-running mode);
            False = return once the streams are drained.
        from_beginning: When the consumer group is created by this call, read the streams'
            history too (default: only events from now on).

    Returns:
        Totals: batches, events, matched, unmatched, duplicates, keys_deleted,
        pattern_keys_deleted, warmers_refreshed, acked, seconds, events_per_second.
    """
    invalidator = Invalidator(get_settings(), from_beginning=from_beginning)
    try:
        report = invalidator.run(max_events=max_events, max_seconds=seconds, forever=wait)
    finally:
        invalidator.close()
    if report.events:
        get_run_logger().info(
            "%s events (%s matched, %s duplicates): %s keys and %s pattern keys deleted, "
            "warmers rerun: %s",
            report.events, report.matched, report.duplicates, report.keys_deleted,
            report.pattern_keys_deleted, ", ".join(report.warmers_refreshed) or "none",
        )  # fmt: skip
    return report.as_dict()


@task(name="read-invalidation-lag", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2,
      retry_condition_fn=retry_transient)  # fmt: skip
def read_invalidation_lag() -> list[dict[str, Any]]:
    """Per outbox stream: its length, and entries pending / not yet read by the cache group."""
    invalidator = Invalidator(get_settings())
    try:
        return invalidator.lag()
    finally:
        invalidator.close()


@task(name="read-cache-stats", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2,
      retry_condition_fn=retry_transient)  # fmt: skip
def read_cache_stats() -> dict[str, Any]:
    """Per namespace keys, memory, TTL spread, hits, misses, hit ratio; server INFO figures."""
    return read_stats(get_settings()).as_dict()
