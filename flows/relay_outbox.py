"""Flow ``relay-outbox``: deliver outbox events to the configured sinks (Redis Streams, the
event history, RabbitMQ, NATS JetStream); skipped when the application has no outbox.

One-shot mode (``steward outbox relay``, ad hoc runs): relay batches until nothing is due or
``max_seconds`` (default ``outbox.run_seconds``) pass. Long-running mode (``forever=True``, the
deployment: one run an hour with ``max_seconds=3540``, so the Runs page shows 24 runs a day, not
1,440): after draining, sleep until PostgreSQL NOTIFY or the poll interval; outlive database and
Redis restarts (reconnecting with backoff); stop on SIGTERM, which lets the current task run (at
most 10 s of batches) finish, or at ``max_seconds``. Any number of relays may run at once:
each holds the aggregates it relays, so the order of every aggregate's events is kept. One task
run relays batches back to back (each its own transaction) for up to 10 s: a task run per batch
would cost more Prefect API time than the batch itself.

Each run leaves a table artifact (pending events, the oldest one's age, published this run,
retries, events gone dead), a dead-letter table grouped by reason when events are dead, and a
markdown summary that says why nothing was published when that happens. ``requeue_dead`` puts
dead events back first.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from pydantic import Field

from steward.errors import ConfigError
from steward.outbox import (
    BatchReport,
    RunTotals,
    drain,
    parse_aggregate,
    parse_event_id,
    run_forever,
)
from steward.settings import get_settings
from tasks.events import emit_steward_event
from tasks.outbox import (
    SLICE_SECONDS,
    check_outbox_configured,
    read_outbox_status,
    relay_for,
    relay_outbox_batches,
    requeue_dead_events,
    skip_unconfigured,
)

PROGRESS_EVERY_SECONDS = 2.0
# progress updates are API calls: not one per batch


@dataclass(frozen=True)
class RelayRun:
    """The validated parameters of one ``relay-outbox`` run."""

    dry_run: bool
    batch_size: int | None
    max_seconds: float | None
    max_batches: int | None
    forever: bool
    requeue_dead: bool
    event_ids: list[str]
    aggregates: list[str]


@flow(
    name="relay-outbox",
    description="Deliver outbox events to Redis Streams, the S3 event history, RabbitMQ or NATS "
    "JetStream, in order per aggregate, at least once.",
)
def relay_outbox(
    dry_run: bool = False,
    batch_size: Annotated[int, Field(ge=1, le=50_000)] | None = None,
    max_seconds: Annotated[float, Field(gt=0)] | None = None,
    max_batches: Annotated[int, Field(ge=1)] | None = None,
    forever: bool = False,
    requeue_dead: bool = False,
    event_ids: list[str] | None = None,
    aggregates: list[str] | None = None,
) -> dict[str, Any]:
    """Relay due outbox events; returns what was published, retried and what is left.

    Args:
        dry_run: Report what is due and what is dead; publish and requeue nothing.
        batch_size: Events claimed per batch (1-50,000); empty = outbox.batch_size.
        max_seconds: Stop starting batches after this many seconds; empty = outbox.run_seconds
            (with forever: keep running this long, then end the run; empty = until SIGTERM).
        max_batches: Stop after this many batches; empty = no limit.
        forever: Long-running: after draining, wait for NOTIFY or poll, and outlive database
            and Redis restarts, until SIGTERM or max_seconds.
        requeue_dead: Put dead events back first: those in event_ids / aggregates, or every
            dead event when both are empty.
        event_ids: Event ids (UUIDs) to requeue (needs requeue_dead).
        aggregates: TYPE or TYPE:ID whose dead events are requeued (needs requeue_dead).
    """
    run = check_params(
        dry_run, batch_size, max_seconds, max_batches, forever, requeue_dead, event_ids, aggregates
    )
    logger = get_run_logger()
    cfg = get_settings().outbox
    missing = check_outbox_configured()
    if missing is not None:
        return skip_unconfigured("relay-outbox", missing)
    before = read_outbox_status()
    logger.info(
        "relay-outbox on table %r to %s: %s pending (oldest %.1f s), %s dead%s",
        cfg.table, ", ".join(cfg.sinks), before["pending"], before["oldest_pending_age_seconds"],
        before["dead"], " (dry run: nothing will be published)" if run.dry_run else "",
    )  # fmt: skip
    requeued = 0
    if run.requeue_dead:
        requeued = requeue_dead_events(run.event_ids, run.aggregates, run.dry_run)
    started = time.monotonic()
    totals = RunTotals() if run.dry_run else _relay(run, before["pending"] + requeued)
    seconds = time.monotonic() - started
    after = read_outbox_status()
    summary = _summary(run, totals, after, requeued, seconds)
    _publish(summary, after)
    if summary["went_dead"]:
        emit_steward_event(
            "outbox.dead-letters", "outbox", cfg.table,
            {"went_dead": summary["went_dead"], "dead": summary["dead"],
             "reasons": [group["reason"] for group in after["dead_by_reason"]][:10]},
        )  # fmt: skip
    return summary


def check_params(
    dry_run: bool,
    batch_size: int | None,
    max_seconds: float | None,
    max_batches: int | None,
    forever: bool,
    requeue_dead: bool,
    event_ids: list[str] | None,
    aggregates: list[str] | None,
) -> RelayRun:
    """The run's parameters, or ConfigError naming the one that is wrong and what is accepted."""
    ids = [str(parse_event_id(text)) for text in event_ids or []]
    for text in aggregates or []:
        parse_aggregate(text)
    if (ids or aggregates) and not requeue_dead:
        raise ConfigError(
            "relay-outbox event_ids / aggregates select dead events to requeue: set requeue_dead"
        )
    return RelayRun(
        dry_run, batch_size, max_seconds, max_batches, forever, requeue_dead, ids,
        list(aggregates or []),
    )  # fmt: skip


def _relay(params: RelayRun, due: int) -> RunTotals:
    if params.forever:
        return _relay_forever(_slices(params.batch_size, None, None), params.max_seconds)
    # A progress bar only for runs that last: each update is an API call.
    progress: Any = None
    published, shown_at = 0, time.monotonic()

    def on_slice(report: BatchReport) -> None:
        nonlocal published, shown_at, progress
        published += report.published
        if report.claimed and time.monotonic() - shown_at >= PROGRESS_EVERY_SECONDS:
            done = min(100.0, 100.0 * published / max(due, 1))
            if progress is None:
                progress = create_progress_artifact(
                    done, key="relay-outbox-progress", description=f"{due} pending at start"
                )
            else:
                update_progress_artifact(progress, done)
            shown_at = time.monotonic()

    seconds = params.max_seconds or get_settings().outbox.run_seconds
    one_slice = _slices(params.batch_size, params.max_batches, time.monotonic() + seconds)
    # While other relays hold every due aggregate, look again each second (one task run each).
    totals = drain(
        one_slice,
        seconds=seconds,
        max_batches=params.max_batches,
        on_batch=on_slice,
        idle_wait=1.0,
    )
    if progress is not None:
        update_progress_artifact(progress, 100.0)
    return totals


def _slices(
    batch_size: int | None, max_batches: int | None, deadline: float | None
) -> Callable[[], BatchReport]:
    """One task run per call: batches back to back, within what is left of the run's limits."""
    done = 0

    def one_slice() -> BatchReport:
        nonlocal done
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        report = BatchReport(
            **relay_outbox_batches(
                batch_size,
                seconds=SLICE_SECONDS if left is None else min(SLICE_SECONDS, left),
                max_batches=None if max_batches is None else max_batches - done,
            )
        )
        done += report.batches
        return report

    return one_slice


def _relay_forever(one_slice: Callable[[], BatchReport], seconds: float | None) -> RunTotals:
    logger = get_run_logger()
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    timer = threading.Timer(seconds, stop.set) if seconds is not None else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    logger.info(
        "long-running relay: waiting for NOTIFY or polling; SIGTERM stops it%s",
        f", and it ends after {seconds:.0f} s" if seconds is not None else "",
    )
    try:
        return run_forever(
            relay_for(get_settings()),
            stop,
            relay_batch=one_slice,
            on_outage=lambda message: logger.warning("%s", message),
        )
    finally:
        if timer is not None:
            timer.cancel()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        logger.info("long-running relay stopped")


def _summary(
    params: RelayRun, totals: RunTotals, after: dict[str, Any], requeued: int, seconds: float
) -> dict[str, Any]:
    return {
        "dry_run": params.dry_run,
        "batches": totals.batches,
        "claimed": totals.claimed,
        "published": totals.published,
        "retried": totals.retried,
        "went_dead": totals.dead,
        "held": totals.held,
        "requeued": requeued,
        "pending": after["pending"],
        "retrying": after["retrying"],
        "dead": after["dead"],
        "oldest_pending_age_seconds": after["oldest_pending_age_seconds"],
        "seconds": round(seconds, 3),
        "events_per_second": round(totals.published / seconds, 1) if seconds > 0 else 0.0,
        "step_seconds": {
            "claim": round(totals.claim_seconds, 3),
            "publish": round(totals.publish_seconds, 3),
            "mark": round(totals.mark_seconds, 3),
        },
        "errors": totals.errors,
    }


def _publish(summary: dict[str, Any], status: dict[str, Any]) -> None:
    rows = [
        ("pending", summary["pending"]),
        ("oldest pending age (s)", summary["oldest_pending_age_seconds"]),
        ("published this run", summary["published"]),
        ("retries this run", summary["retried"]),
        ("dead", summary["dead"]),
        ("went dead this run", summary["went_dead"]),
        ("held behind a failure", summary["held"]),
        ("requeued", summary["requeued"]),
        ("batches", summary["batches"]),
        ("events/s", summary["events_per_second"]),
    ]
    create_table_artifact(
        [{"metric": name, "value": value} for name, value in rows],
        key="relay-outbox-status",
        description="Outbox after this relay run",
    )
    if status["dead_by_reason"]:
        create_table_artifact(
            _dead_rows(status["dead_by_reason"]),
            key="relay-outbox-dead-letters",
            description="Dead events by reason (the first events of each group)",
        )
    create_markdown_artifact(
        "\n".join(_summary_lines(summary, status)),
        key="relay-outbox-summary",
        description="What this relay run delivered, and what is dead or held",
    )


def _summary_lines(summary: dict[str, Any], status: dict[str, Any]) -> list[str]:
    lines = [
        f"**relay-outbox**{' (dry run)' if summary['dry_run'] else ''}: "
        f"{summary['published']} published in {summary['seconds']} s, "
        f"{summary['pending']} pending (oldest {summary['oldest_pending_age_seconds']} s), "
        f"{summary['dead']} dead.",
    ]
    if summary["published"] == 0:
        lines += ["", "Why 0 published: " + _why_none(summary, status)]
    if summary["errors"]:
        lines += ["", "Delivery problems (retried with backoff unless dead):", ""]
        lines += [f"- `{error}`" for error in summary["errors"]]
    if status["dead_by_reason"]:
        lines += ["", "Dead events by reason:", ""]
        for group in status["dead_by_reason"]:
            lines.append(
                f"- {group['count']} dead (oldest {group['oldest_age_seconds']:.0f} s): "
                f"`{group['reason']}`"
            )
    if status["held"]:
        lines += ["", "Aggregates waiting (outbox.dead_blocks_aggregate keeps their order):", ""]
        lines += [
            f"- {held['aggregate']}: {held['held']} events held behind dead event "
            f"`{held['dead_event_id']}`"
            for held in status["held"]
        ]
    if summary["dead"]:
        lines += ["", "Requeue dead events with `steward outbox requeue-dead` once fixed."]
    return lines


def _why_none(summary: dict[str, Any], status: dict[str, Any]) -> str:
    if summary["dry_run"]:
        return "a dry run publishes nothing."
    if summary["pending"] == 0:
        return "no event was pending."
    if status["held"]:
        return "the pending events wait behind dead events (listed below)."
    if summary["retrying"]:
        return "the pending events failed before and wait for their retry backoff."
    return "other relays held the due aggregates, or the run ended before its first batch."


def _dead_rows(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for group in groups:
        for event in group["events"]:
            rows.append(
                {
                    "reason": group["reason"],
                    "dead in group": group["count"],
                    "event id": event["event_id"],
                    "event type": event["event_type"],
                    "aggregate": event["aggregate"],
                    "attempts": event["attempts"],
                    "age (s)": event["age_seconds"],
                }
            )
    return rows
