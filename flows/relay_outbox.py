"""Flow ``relay-outbox``: deliver outbox events to Redis Streams and the event history.

Scheduled mode (the deployment, every minute, never overlapping): relay batches until nothing
is due or ``outbox.run_seconds`` pass; the next run carries on. Long-running mode
(``forever=True``): after draining, sleep until PostgreSQL NOTIFY or the poll interval, until
SIGTERM, which lets the current task run (a few seconds of batches) finish. Any number of
relays may run at once: each holds the aggregates it relays, so the order of every aggregate's
events is kept. One task run relays batches back to back (each its own transaction) for up to
a few seconds: a task run per batch would cost more Prefect API time than the batch itself.

Each run leaves a table artifact: pending events, the oldest one's age (the lag), published
this run, retries, events gone dead. ``requeue_dead`` puts dead events back first.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from steward.outbox import (
    BatchReport,
    RunTotals,
    drain,
    parse_aggregate,
    parse_event_id,
    run_forever,
)
from steward.settings import get_settings
from tasks.outbox import (
    SLICE_SECONDS,
    read_outbox_status,
    relay_for,
    relay_outbox_batches,
    requeue_dead_events,
)

PROGRESS_EVERY_SECONDS = 2.0  # progress updates are API calls: not one per batch


class RelayParams(BaseModel):
    """Parameters of the ``relay-outbox`` flow."""

    model_config = ConfigDict(extra="forbid")

    dry_run: bool = Field(default=False, description="Report what is due; publish nothing.")
    batch_size: int | None = Field(
        default=None, ge=1, le=50_000, description="Events per batch; None = outbox.batch_size."
    )
    max_seconds: float | None = Field(
        default=None, gt=0, description="Stop starting batches after this; None = run_seconds."
    )
    max_batches: int | None = Field(default=None, ge=1, description="Stop after this many.")
    forever: bool = Field(
        default=False, description="Long-running: wait for NOTIFY / poll after draining."
    )
    requeue_dead: bool = Field(
        default=False,
        description="Put dead events back first: those in event_ids / aggregates, or all "
        "dead events when both are empty.",
    )
    event_ids: list[str] = Field(default_factory=list, description="Event ids to requeue.")
    aggregates: list[str] = Field(
        default_factory=list, description="TYPE or TYPE:ID whose dead events are requeued."
    )

    @field_validator("event_ids")
    @classmethod
    def _check_ids(cls, value: list[str]) -> list[str]:
        return [str(parse_event_id(text)) for text in value]

    @field_validator("aggregates")
    @classmethod
    def _check_aggregates(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_aggregate(text)
        return value

    @model_validator(mode="after")
    def _filters_need_requeue(self) -> RelayParams:
        if (self.event_ids or self.aggregates) and not self.requeue_dead:
            raise ValueError(
                "event_ids / aggregates select dead events to requeue: set requeue_dead"
            )
        return self


@flow(
    name="relay-outbox",
    description="Deliver outbox events to Redis Streams and the S3 event history, in order "
    "per aggregate, at least once.",
)
def relay_outbox(params: RelayParams = RelayParams()) -> dict[str, Any]:  # noqa: B008
    """Relay due outbox events; returns what was published, retried and what is left."""
    logger = get_run_logger()
    cfg = get_settings().outbox
    before = read_outbox_status()
    logger.info(
        "relay-outbox on table %r to %s: %s pending (oldest %.1f s), %s dead%s",
        cfg.table, ", ".join(cfg.sinks), before["pending"], before["oldest_pending_age_seconds"],
        before["dead"], " (dry run: nothing will be published)" if params.dry_run else "",
    )  # fmt: skip
    requeued = 0
    if params.requeue_dead:
        requeued = requeue_dead_events(params.event_ids, params.aggregates, params.dry_run)
    started = time.monotonic()
    totals = RunTotals() if params.dry_run else _relay(params, before["pending"] + requeued)
    seconds = time.monotonic() - started
    after = read_outbox_status()
    summary = _summary(params, totals, after, requeued, seconds)
    _publish(summary)
    return summary


def _relay(params: RelayParams, due: int) -> RunTotals:
    if params.forever:
        return _relay_forever(_slices(params.batch_size, None, None))
    progress = create_progress_artifact(
        0.0, key="relay-outbox-progress", description=f"{due} pending events at start"
    )
    published, shown_at = 0, time.monotonic()

    def on_slice(report: BatchReport) -> None:
        nonlocal published, shown_at
        published += report.published
        if report.claimed and time.monotonic() - shown_at >= PROGRESS_EVERY_SECONDS:
            update_progress_artifact(progress, min(100.0, 100.0 * published / max(due, 1)))
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


def _relay_forever(one_slice: Callable[[], BatchReport]) -> RunTotals:
    logger = get_run_logger()
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    logger.info("long-running relay: waiting for NOTIFY or polling; SIGTERM stops it")
    try:
        return run_forever(relay_for(get_settings()), stop, relay_batch=one_slice)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        logger.info("long-running relay stopped")


def _summary(
    params: RelayParams, totals: RunTotals, after: dict[str, Any], requeued: int, seconds: float
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
        "errors": totals.errors,
    }


def _publish(summary: dict[str, Any]) -> None:
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
    lines = [
        f"**relay-outbox**{' (dry run)' if summary['dry_run'] else ''}: "
        f"{summary['published']} published in {summary['seconds']} s, "
        f"{summary['pending']} pending (oldest {summary['oldest_pending_age_seconds']} s), "
        f"{summary['dead']} dead.",
    ]
    if summary["errors"]:
        lines += ["", "Delivery problems (retried with backoff unless dead):", ""]
        lines += [f"- `{error}`" for error in summary["errors"]]
    if summary["dead"]:
        lines += ["", "Requeue dead events with `steward outbox requeue-dead` once fixed."]
    create_markdown_artifact("\n".join(lines), key="relay-outbox-summary")
