"""Prefect tasks for storage tiers: scan the archive prefix, move a batch, install lifecycle rules.

Each task opens the configured object store itself (stores are not passed between tasks), and
speaks to it only through :mod:`steward.tiering.plan`. Transient store errors are retried; a batch
retried after a partial run skips the objects it already moved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from steward.archive import manifest
from steward.settings import Settings, TierTransition, get_settings
from steward.storage import LifecycleRule, create_sql_engine, open_object_store, utcnow
from steward.tiering import (
    ClassUsage,
    Move,
    MoveOutcome,
    TierScan,
    lifecycle_rules,
    move_objects,
    scan_tiers,
    tier_report,
)
from tasks.retry_policy import retry_transient

__all__ = [
    "install_archive_lifecycle",
    "measure_archive_tiers",
    "move_archive_objects",
    "scan_archive_tiers",
]


@task(
    name="scan-archive-tiers",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    retry_condition_fn=retry_transient,
)
def scan_archive_tiers(
    prefix: str,
    transitions: list[TierTransition],
    prices: dict[str, float],
    min_object_bytes: int = 0,
    now: datetime | None = None,
) -> TierScan:
    """List every object under ``prefix`` once: plan its moves and tally usage per class.

    Args:
        prefix: Key prefix of the archive objects, e.g. ``archive/``.
        transitions: The age-based transitions in force.
        prices: USD per GB-month per storage class.
        min_object_bytes: Smaller objects are left where they are.
        now: The clock reading to plan against; default the current time.

    Returns:
        The plan, usage per class now, and usage once the plan is carried out.
    """
    store = open_object_store(get_settings())
    scan = scan_tiers(
        store, prefix, transitions, prices, now or utcnow(), min_object_bytes=min_object_bytes
    )
    get_run_logger().info("scanned %s under %r: %s", store.url, prefix, scan.plan.describe())
    return scan


@task(
    name="move-archive-objects",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    retry_condition_fn=retry_transient,
)
def move_archive_objects(moves: list[Move]) -> MoveOutcome:
    """Move one batch of objects to their planned storage classes.

    Each moved object's class is also recorded in the archive manifest (when there is one),
    one small transaction per object, right after its move.

    Args:
        moves: Planned moves (key, from and to class) of one batch.

    Returns:
        The moves done and the objects skipped, with the reason for each.
    """
    logger = get_run_logger()
    settings = get_settings()
    store = open_object_store(settings)
    with _manifest_recorder(settings) as record:
        outcome = move_objects(store, moves, on_moved=record)
    for key, reason in outcome.skipped:
        logger.warning("left %r where it is: %s", key, reason)
    logger.info(
        "moved %s of %s objects (%s bytes)", len(outcome.moved), len(moves), outcome.bytes_moved
    )
    return outcome


@task(
    name="install-archive-lifecycle",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    retry_condition_fn=retry_transient,
)
def install_archive_lifecycle(
    prefix: str, transitions: list[TierTransition]
) -> tuple[bool, list[LifecycleRule]]:
    """Install ``transitions`` as the store's lifecycle rules for ``prefix``.

    Args:
        prefix: Key prefix of the archive objects.
        transitions: The age-based transitions in force.

    Returns:
        Whether the store accepted lifecycle rules, and the rules it reports afterwards.
    """
    store = open_object_store(get_settings())
    rules = lifecycle_rules(prefix, transitions)
    if not store.put_lifecycle(rules):
        get_run_logger().info("%s does not apply lifecycle rules", store.url)
        return False, []
    installed = [rule for rule in store.get_lifecycle() if rule.prefix == prefix]
    get_run_logger().info("installed %s lifecycle rules on %r", len(installed), prefix)
    return True, installed


@task(name="measure-archive-tiers", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def measure_archive_tiers(prefix: str, prices: dict[str, float]) -> list[ClassUsage]:
    """Objects, bytes and estimated monthly cost per storage class under ``prefix``."""
    return tier_report(open_object_store(get_settings()), prefix, prices)


@contextmanager
def _manifest_recorder(settings: Settings) -> Iterator[Callable[[Move], None] | None]:
    """A per-move callback updating the archive manifest, or None while there is no manifest.

    The manifest is the archiver's bookkeeping: updated with ``archive.database_url``.
    """
    engine = create_sql_engine(settings.for_flow("archive"))
    try:
        if not manifest.manifest_exists(engine):
            get_run_logger().info(
                "no archive manifest yet: storage classes are kept in the store only"
            )
            yield None
            return

        def on_moved(move: Move) -> None:
            with engine.begin() as conn:
                manifest.record_storage_class(conn, move.key, move.to_class)

        yield on_moved
    finally:
        engine.dispose()
