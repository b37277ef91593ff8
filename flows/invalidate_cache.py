"""Flow ``invalidate-cache``: keep Redis correct from the outbox events the relay publishes.

Reads the outbox's Redis Streams as the consumer group ``cache.consumer_group``, applies
``[[cache.invalidations]]`` (keys deleted with their cache-aside leases, patterns deleted with
SCAN + UNLINK) and acknowledges a batch only after its deletes are done, recording the warmer
reruns it asks for in the same write; reruns run beside the deletes, coalesced (one per warmer
per round), and a run ends once none is left. Copies of an event already handled are dropped
by event id. The deployment runs it like the relay: one long-running run an
hour (``forever=True, max_seconds=3540``) that listens for events as they arrive, instead of a
run every minute. ``forever=True`` alone keeps listening until SIGTERM (what
``steward cache invalidate --forever`` does outside Prefect); without ``forever`` a run drains
what is there (up to ``max_seconds``, default 50 s). ``dry_run`` reports the backlog.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import Field

from tasks.cache import (
    SLICE_EVENTS,
    SLICE_SECONDS,
    apply_invalidation_events,
    read_invalidation_lag,
)

DRAIN_SECONDS = 50.0  # a run without forever drains for at most this long by default
TOTALS = ("batches", "events", "matched", "unmatched", "duplicates", "keys_deleted",
          "pattern_keys_deleted", "acked")  # fmt: skip


@flow(
    name="invalidate-cache",
    description="Apply outbox events to the cache: delete or refresh the keys they touch, "
    "acknowledge only after the change.",
)
def invalidate_cache(
    max_events: Annotated[int, Field(ge=1)] | None = None,
    max_seconds: Annotated[float, Field(gt=0)] | None = None,
    forever: bool = False,
    from_beginning: bool = False,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Apply pending outbox events to the cache; returns what was deleted and refreshed.

    Args:
        max_events: Stop after about this many events; empty = no limit.
        max_seconds: Stop starting batches after this many seconds; empty = 50 s, or with
            forever: until SIGTERM (the deployment's hourly run listens for 3540 s).
        forever: Keep listening for new events (long-running mode) until SIGTERM or
            max_seconds.
        from_beginning: When this run creates the consumer group, read the streams' history
            too (default: only events published from now on).
        dry_run: Only report each stream's backlog for the group; change and acknowledge nothing.
    """
    logger = get_run_logger()
    before = read_invalidation_lag()
    logger.info(
        "invalidate-cache%s: %s",
        " (dry run: nothing will change)" if dry_run else "",
        ", ".join(f"{r['stream']} pending {r['pending']} lag {r['lag']}" for r in before)
        or "no event streams yet",
    )
    started = time.monotonic()
    totals = _empty() if dry_run else _run(max_events, max_seconds, forever, from_beginning)
    seconds = round(time.monotonic() - started, 3)
    after = before if dry_run else read_invalidation_lag()
    summary = {
        **totals,
        "dry_run": dry_run,
        "seconds": seconds,
        "events_per_second": round(totals["events"] / seconds, 1) if seconds > 0 else 0.0,
        "streams": after,
    }
    _publish(summary)
    return summary


def _empty() -> dict[str, Any]:
    return {**dict.fromkeys(TOTALS, 0), "warmers_refreshed": {}}


def _run(
    max_events: int | None, max_seconds: float | None, forever: bool, from_beginning: bool
) -> dict[str, Any]:
    totals = _empty()
    stop = threading.Event()
    previous = None
    if forever and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if max_seconds is None and not forever:
        max_seconds = DRAIN_SECONDS
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    events_left = max_events
    try:
        while not stop.is_set():
            left = SLICE_SECONDS if deadline is None else deadline - time.monotonic()
            report = apply_invalidation_events(
                max_events=min(events_left or SLICE_EVENTS, SLICE_EVENTS),
                seconds=max(0.1, min(SLICE_SECONDS, left)),
                wait=forever,
                from_beginning=from_beginning,
            )
            _add(totals, report)
            if events_left is not None:
                events_left -= report["events"]
                if events_left <= 0:
                    break
            if deadline is not None and time.monotonic() >= deadline:
                break
            if not forever and not report["events"]:
                break
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return totals


def _add(totals: dict[str, Any], report: dict[str, Any]) -> None:
    for name in TOTALS:
        totals[name] += report[name]
    for warmer, keys in report["warmers_refreshed"].items():
        totals["warmers_refreshed"][warmer] = totals["warmers_refreshed"].get(warmer, 0) + keys


def _publish(summary: dict[str, Any]) -> None:
    rows = [{"metric": name.replace("_", " "), "value": summary[name]} for name in TOTALS]
    rows += [
        {"metric": f"keys rewarmed by {name}", "value": keys}
        for name, keys in summary["warmers_refreshed"].items()
    ]
    rows += [
        {"metric": f"backlog of {s['stream']} (pending / lag)", "value": f"{s['pending']} / "
         f"{s['lag']}"}
        for s in summary["streams"]
    ]  # fmt: skip
    create_table_artifact(rows, key="invalidate-cache", description="Invalidation run totals")
    lines = [
        f"**invalidate-cache**{' (dry run)' if summary['dry_run'] else ''}: "
        f"{summary['events']} events in {summary['seconds']} s "
        f"({summary['events_per_second']} events/s), {summary['keys_deleted']} keys and "
        f"{summary['pattern_keys_deleted']} pattern matches deleted.",
        "",
    ]
    if summary["dry_run"]:
        lines.append("Dry run: the backlog was measured, no event was read or acknowledged.")
    elif not summary["events"]:
        lines.append("0 events: nothing was published on the watched streams since the last run.")
    if summary["unmatched"]:
        lines.append(f"{summary['unmatched']} events matched no rule (acknowledged, no change).")
    if summary["duplicates"]:
        lines.append(f"{summary['duplicates']} copies of events already handled were dropped.")
    create_markdown_artifact(
        "\n".join(lines), key="invalidate-cache-summary", description="What invalidate-cache did"
    )
