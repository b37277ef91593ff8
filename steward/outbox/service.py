"""The long-running outbox relay: drain, sleep until NOTIFY or the poll interval, repeat.

``enqueue`` sends ``pg_notify(outbox.listen_channel, '')`` in the writer's transaction, so a
relay waiting here wakes as soon as events commit; polling every
``outbox.poll_interval_seconds`` covers writers that do not notify (other languages can run
``SELECT pg_notify('steward_outbox', '')`` after inserting) and lost connections. Setting
``stop`` (from a SIGTERM handler) ends the loop after the current batch. A database outage
does not end it: the relay reconnects with backoff and carries on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from steward.errors import is_transient
from steward.outbox.events import backoff_delay, describe_error
from steward.outbox.relay import OutboxRelay
from steward.outbox.runs import BatchReport, RunTotals, drain

__all__ = ["run_forever", "survivable"]

log = logging.getLogger(__name__)


def run_forever(
    relay: OutboxRelay,
    stop: threading.Event,
    *,
    relay_batch: Callable[[], BatchReport] | None = None,
    on_drained: Callable[[RunTotals], None] | None = None,
    on_outage: Callable[[str], None] | None = None,
) -> RunTotals:
    """Drain, then sleep until NOTIFY on ``outbox.listen_channel`` or the poll interval.

    Returns when ``stop`` is set, after the current batch: set it from a SIGTERM handler.
    On SQLite (no NOTIFY) it polls. While the database is away (a failover, a restart,
    terminated connections) it reconnects with jittered exponential backoff up to
    ``outbox.reconnect_max_seconds``, reporting each attempt once through ``on_outage``
    (default: a log warning); it raises only terminal errors (bad credentials, a missing
    database or table). Redis being away needs no reconnecting: its events are retried with
    backoff (see :class:`steward.outbox.relay.OutboxRelay`).
    """
    batch = relay_batch or relay.relay_batch
    totals = RunTotals()
    waiter = _NotifyWaiter(relay) if relay.is_postgres else None
    outage = _Outage(relay.cfg.reconnect_max_seconds, on_outage or _log_outage)
    try:
        while not stop.is_set():
            run = RunTotals()
            try:
                if waiter is not None:
                    waiter.listen()  # before draining, so no NOTIFY sent meanwhile is missed
                drain(batch, stop=stop, on_batch=run.add)
            except Exception as exc:
                if not survivable(exc):
                    raise
                totals.merge(run)
                outage.wait(exc, stop)
                continue
            outage.end()
            totals.merge(run)
            if on_drained is not None:
                on_drained(run)
            _sleep(stop, waiter, relay.cfg.poll_interval_seconds)
    finally:
        if waiter is not None:
            waiter.close()
    return totals


# A connection refused for these reasons will be refused again: stop and say so.
_TERMINAL_CONNECT = (
    "password authentication failed",
    "no password supplied",
    "does not exist",
    "pg_hba.conf",
    "permission denied",
)


def survivable(exc: BaseException) -> bool:
    """True for errors a long-running relay waits out (transient, and not a refused login)."""
    if not is_transient(exc):
        return False
    seen: BaseException | None = exc
    while seen is not None:
        text = str(seen).lower()
        if any(marker in text for marker in _TERMINAL_CONNECT):
            return False
        seen = seen.__cause__ or seen.__context__
    return True


def _log_outage(message: str) -> None:
    log.warning("%s", message)


class _Outage:
    """Backoff between reconnect attempts; one report per attempt and one at recovery."""

    def __init__(self, maximum: float, report: Callable[[str], None]) -> None:
        self.maximum = maximum
        self.report = report
        self.attempts = 0
        self.started = 0.0

    def wait(self, exc: BaseException, stop: threading.Event) -> None:
        if self.attempts == 0:
            self.started = time.monotonic()
        self.attempts += 1
        delay = backoff_delay(self.attempts, base=0.5, maximum=self.maximum, jitter=0.5)
        self.report(
            f"outbox relay: {describe_error(exc)}; reconnect attempt {self.attempts} "
            f"in {delay:.1f} s"
        )
        stop.wait(delay)

    def end(self) -> None:
        if self.attempts:
            seconds = time.monotonic() - self.started
            self.report(
                f"outbox relay: reconnected after {self.attempts} attempts ({seconds:.1f} s)"
            )
            self.attempts = 0


def _sleep(stop: threading.Event, waiter: _NotifyWaiter | None, seconds: float) -> None:
    # Short slices so a stop request is honoured within about a second.
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        if waiter is not None:
            if waiter.wait(min(left, 1.0)):
                return
        else:
            stop.wait(min(left, 1.0))


class _NotifyWaiter:
    """A dedicated autocommit connection LISTENing on the outbox channel (PostgreSQL)."""

    def __init__(self, relay: OutboxRelay) -> None:
        self.relay = relay
        self.channel = relay.cfg.listen_channel
        self.conn: Any = None

    def listen(self) -> None:
        if self.conn is not None:
            return
        import psycopg
        from psycopg import sql

        try:
            raw = self.relay.sql.engine.raw_connection()
            conn: Any = raw.driver_connection
            raw.detach()  # this connection keeps LISTEN state: never back to the pool
            conn.rollback()
            conn.autocommit = True
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            self.conn = conn
        except (psycopg.Error, sa.exc.DBAPIError) as exc:
            # Quietly: while the database is away, run_forever reports each attempt itself.
            log.info("outbox relay: LISTEN failed (%s); polling instead", describe_error(exc))

    def wait(self, timeout: float) -> bool:
        """True when a notification arrived within ``timeout`` seconds."""
        if self.conn is None:
            time.sleep(timeout)
            self.listen()
            return False
        import psycopg

        try:
            woke = any(True for _ in self.conn.notifies(timeout=timeout, stop_after=1))
            if woke:  # swallow the burst: one drain covers them all
                for _ in self.conn.notifies(timeout=0.0, stop_after=10_000):
                    pass
            return woke
        except psycopg.Error as exc:
            log.warning("outbox relay: lost the LISTEN connection (%s)", describe_error(exc))
            self.close()
            return False

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None
