"""Event-driven invalidation: outbox events on Redis Streams -> keys deleted, warmers rerun.

:class:`Invalidator` reads the relay's streams (one per aggregate type) as a member of the
consumer group ``cache.consumer_group`` with :class:`~steward.outbox.StreamConsumer`. Per batch
of entries it drops event ids already handled, matches ``{aggregate_type}.{event_type}``
against ``[[cache.invalidations]]``, UNLINKs the keys (with their cache-aside leases) and
SCAN + UNLINKs the patterns, then in one write records the warmer reruns the batch asks for,
the handled event ids and the ``XACK``. If a delete fails nothing of the batch is acknowledged:
the entries are read again (own pending entries first) by the next run.

Warmer reruns run on their own thread (:class:`~steward.cache.reruns.RerunWorker`), coalesced
into rounds, so key deletes never wait behind them. A run returns once no rerun it could do is
left (it keeps applying deletes while a round finishes).

With ``forever`` the invalidator outlives Redis and database outages: it reconnects with
jittered exponential backoff (up to ``cache.reconnect_max_seconds``), reporting each attempt,
rejoins the streams and takes its unacknowledged entries first; reruns are retried the same
way. Only terminal errors (bad credentials, bad settings) end it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from steward.cache.keyspace import KeySpace
from steward.cache.positions import started_key
from steward.cache.reruns import RerunQueue, RerunWorker, rerun_key
from steward.cache.rules import Actions, KeyDeleter, plan_actions, watched_streams
from steward.cache.warming import CacheWarmer
from steward.errors import is_transient
from steward.outbox import StreamConsumer, StreamMessage, backoff_delay, describe_error
from steward.settings import Settings
from steward.storage.cache import CacheClient, CommandBatch, translate_errors

__all__ = ["Actions", "InvalidationReport", "Invalidator", "plan_actions"]

log = logging.getLogger(__name__)


@dataclass
class InvalidationReport:
    """Totals of one invalidation run."""

    batches: int = 0
    events: int = 0
    matched: int = 0
    unmatched: int = 0
    duplicates: int = 0
    keys_deleted: int = 0
    pattern_keys_deleted: int = 0
    warmers_refreshed: dict[str, int] = field(default_factory=dict)
    acked: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["events_per_second"] = (
            round(self.events / self.seconds, 1) if self.seconds > 0 else 0.0
        )
        return data


class Invalidator:
    """Applies ``[[cache.invalidations]]`` to the events on the outbox streams."""

    def __init__(
        self,
        settings: Settings,
        *,
        cache: CacheClient | None = None,
        from_beginning: bool = False,
        block_ms: int = 1000,
    ) -> None:
        self.settings = settings
        self.cache = cache or CacheClient(settings)
        self.keyspace = KeySpace(self.cache.redis, self.cache.prefix)
        self.deleter = KeyDeleter(self.keyspace)
        self.rules = list(settings.cache.invalidations)
        self.stream_prefix = self.cache.prefix + settings.outbox.stream_key_prefix
        group = settings.cache.consumer_group
        self.reruns = RerunQueue(
            self.cache.redis, rerun_key(self.cache.prefix, group), self.cache.display_url
        )
        self._warmer: CacheWarmer | None = None
        self.consumer = StreamConsumer(
            self.cache.redis,
            self.streams() or [self.stream_prefix + "_unused"],
            group=group,
            consumer=settings.cache.consumer_name,
            dedupe_prefix=f"{self.cache.prefix}dedupe:",
            count=settings.cache.batch_size,
            block_ms=block_ms,
        )
        self.from_beginning = from_beginning

    def streams(self) -> list[str]:
        """Streams of the aggregate types the rules name (all event streams for wildcards)."""
        with translate_errors(f"listing the event streams on {self.cache.display_url}"):
            return watched_streams(self.rules, self.cache.redis, self.stream_prefix)

    @property
    def warmer(self) -> CacheWarmer:
        if self._warmer is None:
            self._warmer = CacheWarmer(self.settings, cache=self.cache)
        return self._warmer

    def run(
        self,
        *,
        max_events: int | None = None,
        max_seconds: float | None = None,
        stop: threading.Event | None = None,
        forever: bool = False,
        on_batch: Callable[[InvalidationReport], None] | None = None,
        on_outage: Callable[[str], None] | None = None,
    ) -> InvalidationReport:
        """Handle entries until none are left (or, with ``forever``, until ``stop`` is set).

        ``max_events`` / ``max_seconds`` stop it taking new batches; ``on_outage`` receives one
        line per reconnect attempt and rerun failure (default: a log warning).
        """
        report = InvalidationReport()
        started = time.monotonic()
        if not self.rules:
            return report  # no [[cache.invalidations]]: nothing to listen for
        stop = stop or threading.Event()
        worker = self._worker(forever, on_outage or _log_outage)
        try:
            _Loop(self, report, stop, worker, forever, on_outage or _log_outage).run(
                max_events, None if max_seconds is None else started + max_seconds, on_batch
            )
        except BaseException:
            if worker is not None:
                worker.abandon()
            raise
        if worker is not None:
            report.warmers_refreshed = worker.finish()
        report.seconds = round(time.monotonic() - started, 3)
        return report

    def _worker(self, forever: bool, report: Callable[[str], None]) -> RerunWorker | None:
        if not any(rule.warmers for rule in self.rules):
            return None
        worker = RerunWorker(
            self.reruns,
            self._rerun,
            keep_going=forever,
            report=report,
            max_backoff=self.settings.cache.reconnect_max_seconds,
        )
        worker.start()
        return worker

    def _rerun(self, names: list[str]) -> dict[str, int]:
        written: dict[str, int] = {}
        known = {w.name for w in self.settings.cache.warmers}
        for unit in self.warmer.warm([n for n in names if n in known]):
            for warmed in unit.warmers:
                written[warmed.warmer] = written.get(warmed.warmer, 0) + warmed.keys
        return written

    def join_groups(self) -> None:
        """Create the group on streams that lack it.

        The very first run starts at each stream's end (``$``) unless ``from_beginning``. Once
        the group exists anywhere (or a warm positioned it: ``{prefix}started:{group}``), a
        stream that lacks it is new and is read from its start (``0``), so the events that
        created it are not skipped.
        """
        client, group = self.cache.redis, self.consumer.group
        marker = started_key(self.cache.prefix, group)
        with translate_errors(f"joining the outbox streams on {self.cache.display_url}"):
            missing = [s for s in self.consumer.streams if not self._has_group(s)]
            joined = len(missing) < len(self.consumer.streams) or client.exists(marker)
            start = "0" if self.from_beginning or joined else "$"
            for stream in missing:
                try:
                    client.xgroup_create(stream, group, id=start, mkstream=True)
                except redis.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
            client.set(marker, "1")

    def _has_group(self, stream: str) -> bool:
        if not self.cache.redis.exists(stream):
            return False
        groups = _groups(self.cache.redis.xinfo_groups(stream))
        return any(g["name"] == self.consumer.group for g in groups)

    def read_pending(self) -> list[StreamMessage]:
        with translate_errors(f"reading the outbox streams on {self.cache.display_url}"):
            return self.consumer.read_own_pending()

    def next_batch(self, *, block_ms: int) -> list[StreamMessage]:
        with translate_errors(f"reading the outbox streams on {self.cache.display_url}"):
            return self.consumer.claim_stuck() or self.consumer.read(block_ms=block_ms)

    def handle(self, messages: list[StreamMessage], report: InvalidationReport) -> set[str]:
        """Delete one batch's keys, then record its reruns and acknowledge it; warmers asked.

        Nothing is acknowledged if deleting fails.
        """
        fresh = self._not_seen(messages)
        actions = plan_actions(self.rules, [(self._aggregate(m), m) for m in fresh])
        with translate_errors(f"invalidating cache keys on {self.cache.display_url}"):
            deleted = self.deleter.delete(actions)
        report.keys_deleted += deleted.keys
        report.pattern_keys_deleted += deleted.pattern_keys
        with translate_errors(f"acknowledging events on {self.cache.display_url}"):
            acked = self._remember_and_ack(messages, fresh, actions.warmers)
        report.batches += 1
        report.events += len(messages)
        report.duplicates += len(messages) - len(fresh)
        report.matched += actions.matched
        report.unmatched += actions.unmatched
        report.acked += acked
        return actions.warmers

    def _remember_and_ack(
        self, messages: list[StreamMessage], fresh: list[StreamMessage], warmers: set[str]
    ) -> int:
        """Record the reruns asked for and the handled event ids, then XACK, in one write.

        The same contract as :meth:`StreamConsumer.handle` (``SET dedupe_prefix+event_id 1 EX
        dedupe_ttl_seconds``, then ``XACK``); the rerun requests go first, so an acknowledged
        event's rerun is always recorded.
        """
        commands = CommandBatch()
        self.reruns.add_requests(commands, warmers)
        ttl = self.consumer.dedupe_ttl_seconds
        for message in fresh:
            commands.add_set((self.consumer.dedupe_prefix + message.event_id).encode(), b"1", ttl)
        ids: dict[str, list[bytes]] = {}
        for message in messages:
            ids.setdefault(message.stream, []).append(message.message_id.encode())
        group = self.consumer.group.encode()
        for stream, stream_ids in ids.items():
            commands.add(b"XACK", stream.encode(), group, *stream_ids)
        replies = self.cache.send_batch(commands)
        return sum(int(n) for n in replies[len(warmers) + len(fresh) :])

    def _aggregate(self, message: StreamMessage) -> str:
        stream = message.stream
        return (
            stream[len(self.stream_prefix) :] if stream.startswith(self.stream_prefix) else stream
        )

    def _not_seen(self, messages: list[StreamMessage]) -> list[StreamMessage]:
        prefix = self.consumer.dedupe_prefix
        commands = CommandBatch()
        for message in messages:
            commands.add(b"EXISTS", (prefix + message.event_id).encode())
        with translate_errors(f"checking handled events on {self.cache.display_url}"):
            seen = self.cache.send_batch(commands)
        fresh, ids = [], set()
        for message, already in zip(messages, seen, strict=True):
            if not already and message.event_id not in ids:
                ids.add(message.event_id)
                fresh.append(message)
        return fresh

    def lag(self) -> list[dict[str, Any]]:
        """Per stream: entries in it, pending (read, not acknowledged) and lag for the group."""
        rows = []
        client, group = self.cache.redis, self.consumer.group
        with translate_errors(f"reading stream info on {self.cache.display_url}"):
            for stream in self.consumer.streams:
                if not client.exists(stream):
                    continue
                info = {g["name"]: g for g in _groups(client.xinfo_groups(stream))}.get(group)
                rows.append(
                    {
                        "stream": stream,
                        "length": int(client.xlen(stream)),
                        "pending": int(info["pending"]) if info else None,
                        "lag": info.get("lag") if info else None,
                    }
                )
        return rows

    def close(self) -> None:
        if self._warmer is not None:
            self._warmer.close()


class _Loop:
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
                if not (self.forever and _survivable(exc)):
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


def _survivable(exc: BaseException) -> bool:
    """Transient errors a long-running invalidator waits out; a lost group is rejoined."""
    if isinstance(exc, redis.ResponseError) and "NOGROUP" in str(exc):
        return True  # Redis came back without our group (no persistence): join again
    if not is_transient(exc):
        return False
    text = str(exc).lower()
    return not any(marker in text for marker in _TERMINAL)


def _log_outage(message: str) -> None:
    log.warning("%s", message)


def _groups(raw: list[dict[Any, Any]]) -> list[dict[str, Any]]:
    def text(value: Any) -> Any:
        return value.decode() if isinstance(value, bytes) else value

    return [{text(k): text(v) for k, v in group.items()} for group in raw]
