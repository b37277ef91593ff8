"""Prefect tasks for the transactional outbox: relay batches, requeue dead events, clean up.

A task builds nothing per call: each process keeps one :class:`~steward.outbox.relay.OutboxRelay`
per configuration (engine pool, Redis client, object store), so a batch costs its queries and
its publishing, not new connections. Only transient errors (database unreachable, a deadlock
with another relay) are retried; a batch that failed rolled back as a whole.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from steward.outbox import OutboxRelay, relay_slice
from steward.settings import Settings, get_settings
from tasks.retry_policy import retry_transient

__all__ = [
    "check_outbox_configured",
    "count_published_events",
    "delete_published_events",
    "measure_outbox_table",
    "read_outbox_status",
    "relay_outbox_batches",
    "relay_for",
    "requeue_dead_events",
    "skip_unconfigured",
]

# One task run relays this many events at most, or for this long: many batches, not one. Each
# task run is a few Prefect API calls and server work that compete with the relay for CPU, so
# fewer, longer slices leave more of it to relaying (bench.outbox, two relays). A SIGTERM waits
# for the current slice; a slice ends early once nothing is due.
SLICE_EVENTS = 200_000
SLICE_SECONDS = 10.0

_RELAYS: dict[tuple[str, ...], OutboxRelay] = {}
_LOCK = threading.Lock()


def relay_for(settings: Settings) -> OutboxRelay:
    """The process's relay for ``settings`` (built once, reused by every task)."""
    key = (
        settings.for_flow("outbox").database_url,  # outbox.database_url dumps masked below
        settings.cache.url.get_secret_value(),
        settings.objects_url,
        str(settings.objects.endpoint_url),
        str(settings.home),
        settings.outbox.model_dump_json(),
    )
    with _LOCK:
        if key not in _RELAYS:
            _RELAYS[key] = OutboxRelay.from_settings(settings)
        return _RELAYS[key]


@task(
    name="relay-outbox-batches",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    retry_condition_fn=retry_transient,
)
def relay_outbox_batches(
    batch_size: int | None = None,
    seconds: float = SLICE_SECONDS,
    max_batches: int | None = None,
    max_events: int = SLICE_EVENTS,
) -> dict[str, Any]:
    """Relay batches back to back, each claimed, published and marked in its own transaction.

    One task run covers a slice of batches (see :func:`steward.outbox.runs.relay_slice`):
    a task run is a few Prefect API calls, too dear to pay per batch.

    Args:
        batch_size: Events to claim per batch at most; None = ``outbox.batch_size``.
        seconds: Start no batch after this long (the first always runs).
        max_batches: Batches at most; None = no limit.
        max_events: Stop once this many events were claimed.

    Returns:
        The slice report: batches, claimed, published, retried, dead, held, drained, waiting,
        seconds, errors.
    """
    relay = relay_for(get_settings())
    report = relay_slice(
        lambda: relay.relay_batch(limit=batch_size),
        seconds=seconds,
        max_events=max_events,
        max_batches=max_batches,
    )
    if report.claimed:
        get_run_logger().info(
            "relayed %s of %s claimed events in %s batches (%s to retry, %s dead, %s held) "
            "in %.2f s",
            report.published, report.claimed, report.batches, report.retried, report.dead,
            report.held, report.seconds,
        )  # fmt: skip
    for error in report.errors:
        get_run_logger().warning("outbox delivery problem: %s", error)
    return report.as_dict()


@task(
    name="requeue-dead-events",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_transient,
)
def requeue_dead_events(event_ids: list[str], aggregates: list[str], dry_run: bool = False) -> int:
    """Put dead events back to pending (attempts 0, due now).

    Args:
        event_ids: Event ids (UUIDs) to requeue.
        aggregates: ``TYPE`` or ``TYPE:ID`` whose dead events are requeued.
        dry_run: Count only.

    Returns:
        The number of dead events requeued (or that would be).
    """
    count = relay_for(get_settings()).requeue_dead(
        event_ids=event_ids, aggregates=aggregates, dry_run=dry_run
    )
    get_run_logger().info("%s %s dead events", "would requeue" if dry_run else "requeued", count)
    return count


@task(
    name="check-outbox-configured",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_transient,
)
def check_outbox_configured(job: str = "relay") -> str | None:
    """Look for the outbox table (the outbox is optional) and check the role may do ``job``.

    Args:
        job: "relay" (SELECT, UPDATE on the table) or "cleanup" (SELECT, DELETE).

    Returns:
        None when there is one; otherwise why not (``not configured: ...``), for the run's
        summary. An ``outbox.table`` set explicitly but missing raises ConfigError.
    """
    reason = relay_for(get_settings()).missing_reason(job)
    if reason is not None:
        get_run_logger().info("outbox %s", reason)
    return reason


def skip_unconfigured(flow_name: str, reason: str) -> dict[str, Any]:
    """The summary (and artifact) of a flow run skipped because there is no outbox.

    ``skipped`` holds the reason: the nightly report shows the step as skipped, not failed.
    """
    create_markdown_artifact(
        f"**{flow_name}** skipped: the outbox is {reason}.",
        key=f"{flow_name}-summary",
        description=f"{flow_name}: outbox not configured",
    )
    return {"skipped": f"outbox {reason}", "not_configured": True}


@task(
    name="read-outbox-status",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_transient,
)
def read_outbox_status() -> dict[str, Any]:
    """Read pending, retrying and dead counts and the oldest pending event's age.

    Returns:
        The status dict of :meth:`steward.outbox.OutboxTable.status`.
    """
    return relay_for(get_settings()).status()


@task(
    name="delete-published-events",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    retry_condition_fn=retry_transient,
)
def delete_published_events(before: datetime, batch_size: int) -> int:
    """Delete one batch of events published before ``before`` (never pending or dead ones).

    Args:
        before: Cut-off; events published earlier are removed.
        batch_size: Rows deleted in this transaction at most.

    Returns:
        Rows deleted (0 when nothing is left).
    """
    return relay_for(get_settings()).delete_published(before=before, limit=batch_size)


@task(name="count-published-events", cache_policy=NO_CACHE)
def count_published_events(before: datetime) -> int:
    """Count events published before ``before`` (what a cleanup would remove).

    Args:
        before: Cut-off.

    Returns:
        The number of rows.
    """
    return relay_for(get_settings()).count_published_before(before)


@task(name="measure-outbox-table", cache_policy=NO_CACHE)
def measure_outbox_table() -> dict[str, int | None]:
    """Measure the outbox table: rows, and bytes on disk with its indexes.

    Returns:
        ``{"rows": int, "bytes": int | None}`` (bytes None where the database can't say).
    """
    return relay_for(get_settings()).table_size()
