"""Prefect tasks for health: check every store, read the outbox backlog.

A health check reports a down store rather than raising, so these tasks do not retry on a
down component; only an unexpected transient error inside them is retried.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from steward.health import check_health, outbox_backlog
from steward.settings import get_settings
from tasks.retry_policy import retry_transient

__all__ = ["check_stores", "read_outbox_backlog"]


@task(
    name="check-stores",
    cache_policy=NO_CACHE,
    retries=1,
    retry_delay_seconds=2,
    retry_condition_fn=retry_transient,
)
def check_stores(timeout_seconds: float = 2.0, object_limit: int = 10_000) -> dict[str, Any]:
    """Reach the database, Redis, the object store and MongoDB (when configured).

    Args:
        timeout_seconds: Connect / socket timeout per store.
        object_limit: Objects listed at most to tally the store per storage class.

    Returns:
        The health report as a dict: ``ok``, ``headline`` and per component its status,
        latency, error and stats.
    """
    report = check_health(get_settings(), timeout=timeout_seconds, object_limit=object_limit)
    logger = get_run_logger()
    for component in report.components:
        logger.info(
            "%s %s (%s)%s",
            component.name,
            component.status,
            component.target or "-",
            f": {component.error}" if component.error else f" in {component.latency_ms} ms",
        )
    return report.to_dict()


@task(
    name="read-outbox-backlog",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_transient,
)
def read_outbox_backlog() -> dict[str, Any]:
    """Pending events, dead letters and the age of the oldest pending event (the lag).

    Returns:
        ``pending``, ``retrying``, ``dead``, ``oldest_pending_age_seconds``; or ``error`` when
        the outbox table cannot be read.
    """
    backlog = outbox_backlog(get_settings())
    get_run_logger().info("outbox backlog: %s", backlog)
    return backlog
