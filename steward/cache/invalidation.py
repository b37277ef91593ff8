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

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from steward.cache.keyspace import KeySpace
from steward.cache.listening import ReadLoop, log_outage
from steward.cache.positions import started_key
from steward.cache.reruns import RerunQueue, RerunWorker, rerun_key
from steward.cache.rules import Actions, KeyDeleter, plan_actions, watched_streams
from steward.cache.warming import CacheWarmer
from steward.outbox import StreamConsumer, StreamMessage
from steward.settings import Settings
from steward.storage.cache import CacheClient, CommandBatch, translate_errors

__all__ = ["Actions", "InvalidationReport", "Invalidator", "plan_actions"]


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
            [self.stream_prefix + "_unused"],  # the watched streams are listed on joining
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
        worker = self._worker(forever, on_outage or log_outage)
        try:
            ReadLoop(self, report, stop, worker, forever, on_outage or log_outage).run(
                max_events, None if max_seconds is None else started + max_seconds, on_batch
            )
        except BaseException as exc:
            if worker is not None:  # Ctrl-C: do not wait for a rerun round to end
                worker.abandon(wait=isinstance(exc, Exception))
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
        names = [n for n in names if n in known]  # one since removed from the settings: done
        if not names:
            return written  # (warm([]) would mean every warmer)
        for unit in self.warmer.warm(names):
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
        self._list_streams()
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

    def _list_streams(self) -> None:
        """Watch the rules' streams as they are now (wildcards: every existing one)."""
        self.consumer.streams = self.streams() or [self.stream_prefix + "_unused"]

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
        self._list_streams()
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


def _groups(raw: list[dict[Any, Any]]) -> list[dict[str, Any]]:
    def text(value: Any) -> Any:
        return value.decode() if isinstance(value, bytes) else value

    return [{text(k): text(v) for k, v in group.items()} for group in raw]
