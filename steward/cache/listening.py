"""The read / delete / acknowledge loop of one invalidation run, with reconnects.

:class:`ReadLoop` takes the group's own unacknowledged entries first, then new ones (and entries
other consumers left stuck), and hands each batch to :meth:`Invalidator.handle`. It stops taking
batches at ``max_events``, the deadline or (not ``forever``) an empty read, and returns once the
rerun worker has nothing left to do, applying deletes meanwhile. With ``forever`` an error
:func:`survivable` says to wait out (Redis or the database away, the group lost with Redis's
data) is reported, waited out with jittered exponential backoff up to
``cache.reconnect_max_seconds``, and the loop rejoins the streams and carries on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis

from steward.cache.reruns import RerunWorker
from steward.errors import is_transient
from steward.outbox import StreamMessage, backoff_delay, describe_error

if TYPE_CHECKING:  # only for annotations: invalidation imports this module
    from steward.cache.invalidation import InvalidationReport, Invalidator

__all__ = ["ReadLoop", "log_outage", "survivable"]

log = logging.getLogger(__name__)


class ReadLoop:
    """One run's read / delete / acknowledge loop, with reconnects when ``forever``."""

    def __init__(
        self,
        invalidator: Invalidator,
        report: InvalidationReport,
        stop: threading.Event,
        worker: RerunWorker | None,
        forever: bool,
        on_outage: Callable[[str], None],
    ) -> None:
        self.inv = invalidator
        self.report = report
        self.stop = stop
        self.worker = worker
        self.forever = forever
        self.on_outage = on_outage
        self.block_ms = invalidator.consumer.block_ms

    def run(
        self,
        max_events: int | None,
        deadline: float | None,
        on_batch: Callable[[InvalidationReport], None] | None,
    ) -> None:
        attempts, outage_started, messages = 0, 0.0, None
        taking = True  # False once a limit is reached or (not forever) the streams are drained
        while not self.stop.is_set():
            try:
                if messages is None:  # (re)joining: own unacknowledged entries first
                    self.inv.join_groups()
                    messages = self.inv.read_pending()
                if messages:
                    self._handle(messages, on_batch)
                    limit = max_events is not None and self.report.events >= max_events
                    taking = taking and not limit
                if deadline is not None and time.monotonic() >= deadline:
                    taking = False
                if not taking and self._reruns_done():
                    return
                # While a rerun round finishes, deletes go on (briefly blocking reads).
                block = self.block_ms if (self.forever and taking) else (0 if taking else 200)
                messages = self.inv.next_batch(block_ms=block)
                if not messages and not self.forever:
                    taking = False
            except Exception as exc:
                if not (self.forever and survivable(exc)):
                    raise
                attempts += 1
                outage_started = outage_started or time.monotonic()
                self._wait_out(exc, attempts)
                messages = None
                continue
            if attempts:
                seconds = time.monotonic() - outage_started
                self.on_outage(f"cache invalidation: reconnected after {attempts} attempts "
                               f"({seconds:.1f} s)")  # fmt: skip
                attempts, outage_started = 0, 0.0

    def _handle(
        self, messages: list[StreamMessage], on_batch: Callable[[InvalidationReport], None] | None
    ) -> None:
        warmers = self.inv.handle(messages, self.report)
        if warmers and self.worker is not None:
            self.worker.wake()
        if on_batch:
            on_batch(self.report)

    def _reruns_done(self) -> bool:
        return self.worker is None or self.worker.idle()

    def _wait_out(self, exc: BaseException, attempts: int) -> None:
        maximum = self.inv.settings.cache.reconnect_max_seconds
        delay = backoff_delay(attempts, base=0.5, maximum=maximum, jitter=0.5)
        self.on_outage(
            f"cache invalidation: {describe_error(exc)}; reconnect attempt {attempts} "
            f"in {delay:.1f} s"
        )
        self.stop.wait(delay)


# A connection refused for these reasons will be refused again: stop and say so.
_TERMINAL = ("password", "noauth", "wrongpass", "does not exist", "pg_hba.conf")


# Redis replies that pass: a replica during a failover, memory full until keys expire.
_PASSING_REPLIES = tuple(
    getattr(redis.exceptions, name)
    for name in ("ReadOnlyError", "MasterDownError", "OutOfMemoryError", "TryAgainError")
    if hasattr(redis.exceptions, name)  # (the type stubs lack some)
)


def survivable(exc: BaseException) -> bool:
    """Transient errors a long-running invalidator waits out; a lost group is rejoined."""
    if isinstance(exc, _PASSING_REPLIES):
        return True
    if isinstance(exc, redis.ResponseError):  # Redis lost the stream or our group: join again
        return str(exc).startswith(("NOGROUP", "UNBLOCKED"))
    if not is_transient(exc):
        return False
    text = str(exc).lower()
    return not any(marker in text for marker in _TERMINAL)


def log_outage(message: str) -> None:
    """The default outage reporter: a log warning."""
    log.warning("%s", message)
