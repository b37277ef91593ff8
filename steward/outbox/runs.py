"""Running relay batches: the per-batch report, run totals, and the two loops over batches.

:func:`drain` runs batches until nothing is due (the scheduled mode and the CLI);
:func:`relay_slice` runs several back to back inside one Prefect task run, so the flow pays
Prefect's per-task cost once per slice rather than once per batch. Each batch is still its own
claim -> publish -> mark transaction (:class:`steward.outbox.relay.OutboxRelay`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from steward.errors import is_transient

__all__ = ["BatchReport", "RunTotals", "drain", "relay_slice"]

log = logging.getLogger("steward.outbox.relay")

# Counts and the time spent per step of a batch (claim query with its lock waits, publishing
# to the sinks, marking and committing), summed over batches.
SUMMED = (
    "claimed", "published", "retried", "dead", "held",
    "claim_seconds", "publish_seconds", "mark_seconds",
)  # fmt: skip


@dataclass
class BatchReport:
    """What one batch (or a slice of ``batches`` back to back, see :func:`relay_slice`) did.

    ``drained``: the last batch claimed nothing; ``waiting``: and another relay holds due events.
    """

    claimed: int = 0
    published: int = 0
    retried: int = 0
    dead: int = 0
    held: int = 0
    waiting: bool = False
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    batches: int = 1
    drained: bool = False
    claim_seconds: float = 0.0
    publish_seconds: float = 0.0
    mark_seconds: float = 0.0

    def add(self, other: BatchReport) -> None:
        """Sum ``other`` (the next batch) into this slice report."""
        self.batches += other.batches
        for name in SUMMED:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors = list(dict.fromkeys([*self.errors, *other.errors]))[:10]
        self.waiting, self.drained = other.waiting, other.drained

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunTotals:
    """Sums over the batches of one run."""

    batches: int = 0
    claimed: int = 0
    published: int = 0
    retried: int = 0
    dead: int = 0
    held: int = 0
    errors: list[str] = field(default_factory=list)
    claim_seconds: float = 0.0
    publish_seconds: float = 0.0
    mark_seconds: float = 0.0

    def add(self, report: BatchReport) -> None:
        self.batches += report.batches
        for name in SUMMED:
            setattr(self, name, getattr(self, name) + getattr(report, name))
        for error in report.errors:
            if error not in self.errors and len(self.errors) < 10:
                self.errors.append(error)

    def merge(self, other: RunTotals) -> None:
        self.batches += other.batches
        for name in SUMMED:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors = list(dict.fromkeys([*self.errors, *other.errors]))[:10]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Running batches ---------------------------------------------------------------------------

BatchFn = Callable[[], BatchReport]


def drain(
    relay_batch: BatchFn,
    *,
    seconds: float | None = None,
    max_batches: int | None = None,
    stop: threading.Event | None = None,
    on_batch: Callable[[BatchReport], None] | None = None,
    idle_wait: float = 0.05,
) -> RunTotals:
    """Run batches until nothing is due, ``seconds`` pass, ``max_batches`` ran, or ``stop``.

    A batch is never interrupted: limits are checked between batches. While other relays
    hold every due aggregate, wait ``idle_wait`` and try again (they may release more).
    """
    totals = RunTotals()
    deadline = None if seconds is None else time.monotonic() + seconds
    while not (stop is not None and stop.is_set()):
        if max_batches is not None and totals.batches >= max_batches:
            break
        if deadline is not None and time.monotonic() >= deadline:
            break
        report = relay_batch()
        totals.add(report)
        if on_batch is not None:
            on_batch(report)
        if report.drained or report.claimed == 0:
            if not report.waiting:
                break
            if stop is not None:
                stop.wait(idle_wait)
            else:
                time.sleep(idle_wait)
    return totals


def relay_slice(
    relay_batch: BatchFn,
    *,
    seconds: float,
    max_events: int,
    max_batches: int | None = None,
    idle_wait: float = 0.05,
) -> BatchReport:
    """Run batches back to back (each its own transaction) and report them as one.

    Stops between batches once ``max_events`` were claimed, ``seconds`` passed, ``max_batches``
    ran, or a batch claimed nothing and no other relay holds due events (``drained``); while
    one does, waits ``idle_wait`` and tries again. A transient error after some batches
    committed ends the slice with what they did (the next slice meets it again and is
    retried); in the first batch it is raised.
    """
    started, deadline = time.perf_counter(), time.monotonic() + seconds
    total = BatchReport(batches=0)
    while True:
        try:
            report = relay_batch()
        except Exception as exc:
            if total.batches == 0 or not is_transient(exc):
                raise
            log.warning("outbox relay: %s; slice ends after %s batches", exc, total.batches)
            break
        total.add(report)
        if total.claimed >= max_events or time.monotonic() >= deadline:
            break
        if max_batches is not None and total.batches >= max_batches:
            break
        if report.drained:
            if not report.waiting:
                break
            time.sleep(idle_wait)
    total.seconds = time.perf_counter() - started
    return total
