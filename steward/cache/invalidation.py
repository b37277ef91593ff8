"""Event-driven invalidation: outbox events on Redis Streams -> keys deleted, warmers rerun.

:class:`Invalidator` reads the relay's streams (one per aggregate type) as a member of the
consumer group ``cache.consumer_group`` with :class:`~steward.outbox.StreamConsumer`. Per batch
of entries it drops event ids already handled, matches ``{aggregate_type}.{event_type}``
against ``[[cache.invalidations]]``, then (in this order) UNLINKs the keys, SCAN + UNLINKs
the patterns, reruns the warmers named (each once per batch), and only then acknowledges the
batch and records its event ids. If anything fails nothing of the batch is acknowledged: the
entries are read again (own pending entries first) by the next run.
"""

from __future__ import annotations

import fnmatch
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from steward.cache.keyspace import KeySpace, glob_escape
from steward.cache.warming import CacheWarmer
from steward.outbox import StreamConsumer, StreamMessage
from steward.settings import InvalidationRule, Settings
from steward.storage.cache import CacheClient, CommandBatch, translate_errors

__all__ = ["Actions", "InvalidationReport", "Invalidator", "plan_actions"]

_GLOB = re.compile(r"[*?\[]")


@dataclass
class Actions:
    """What a batch of events asks for: logical keys / patterns per namespace, warmers."""

    keys: set[tuple[str | None, str]] = field(default_factory=set)
    patterns: set[tuple[str | None, str]] = field(default_factory=set)
    warmers: set[str] = field(default_factory=set)
    matched: int = 0
    unmatched: int = 0


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


class _Rule:
    def __init__(self, rule: InvalidationRule) -> None:
        self.rule = rule
        self.events = re.compile("|".join(fnmatch.translate(p) for p in rule.events))

    def matches(self, name: str) -> bool:
        return self.events.match(name) is not None


def plan_actions(
    rules: Iterable[InvalidationRule], messages: Iterable[tuple[str, StreamMessage]]
) -> Actions:
    """The cache changes ``(aggregate_type, message)`` pairs ask for under ``rules``."""
    compiled = [_Rule(rule) for rule in rules]
    actions = Actions()
    for aggregate_type, message in messages:
        values = {
            "aggregate_id": message.aggregate_id,
            "aggregate_type": aggregate_type,
            "event_type": message.event_type,
            "event_id": message.event_id,
        }
        hits = [c.rule for c in compiled if c.matches(f"{aggregate_type}.{message.event_type}")]
        actions.matched += bool(hits)
        actions.unmatched += not hits
        for rule in hits:
            actions.keys.update((rule.namespace, t.format(**values)) for t in rule.delete_keys)
            if rule.patterns:  # values are literal text inside a glob
                escaped = {name: glob_escape(value) for name, value in values.items()}
                actions.patterns.update(
                    (rule.namespace, t.format(**escaped)) for t in rule.patterns
                )
            actions.warmers.update(rule.warmers)
    return actions


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
        self.rules = list(settings.cache.invalidations)
        self.stream_prefix = self.cache.prefix + settings.outbox.stream_key_prefix
        self._warmer: CacheWarmer | None = None
        streams = self.streams()
        self.consumer = StreamConsumer(
            self.cache.redis,
            streams or [self.stream_prefix + "_unused"],
            group=settings.cache.consumer_group,
            consumer=settings.cache.consumer_name,
            dedupe_prefix=f"{self.cache.prefix}dedupe:",
            count=settings.cache.batch_size,
            block_ms=block_ms,
        )
        self.from_beginning = from_beginning

    def streams(self) -> list[str]:
        """Streams of the aggregate types the rules name (all event streams for wildcards)."""
        literal, wildcard = set(), False
        for rule in self.rules:
            for pattern in rule.events:
                aggregate = pattern.split(".", 1)[0]
                wildcard = wildcard or bool(_GLOB.search(aggregate))
                literal.add(aggregate)
        found = set()
        if wildcard:
            with translate_errors(f"listing the event streams on {self.cache.display_url}"):
                match = glob_escape(self.stream_prefix) + "*"
                found = {
                    k.decode() for k in self.cache.redis.scan_iter(match=match, _type="STREAM")
                }
        named = {self.stream_prefix + a for a in literal if not _GLOB.search(a)}
        return sorted(named | found)

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
    ) -> InvalidationReport:
        """Handle entries until none are left (or, with ``forever``, until ``stop`` is set)."""
        report = InvalidationReport()
        started = time.monotonic()
        if not self.rules:
            return report  # no [[cache.invalidations]]: nothing to listen for
        with translate_errors(f"reading the outbox streams on {self.cache.display_url}"):
            self._join_groups()
            messages = self.consumer.read_own_pending()
        while not (stop is not None and stop.is_set()):
            if not messages:
                messages = self._next(block=forever)
                idle_too_long = (
                    max_seconds is not None and time.monotonic() - started >= max_seconds
                )
                if not messages and (not forever or idle_too_long):  # an idle listener ends too
                    break
                continue
            self.handle(messages, report)
            messages = []
            if on_batch:
                on_batch(report)
            if max_events is not None and report.events >= max_events:
                break
            if max_seconds is not None and time.monotonic() - started >= max_seconds:
                break
        report.seconds = round(time.monotonic() - started, 3)
        return report

    def _join_groups(self) -> None:
        """Create the group on streams that lack it.

        The very first run starts at each stream's end (``$``) unless ``from_beginning``; a
        stream that appears once the group exists elsewhere is read from its start (``0``), so
        the events that created it are not skipped.
        """
        client, group = self.cache.redis, self.consumer.group
        missing = [s for s in self.consumer.streams if not self._has_group(s)]
        joined = len(missing) < len(self.consumer.streams)
        start = "0" if self.from_beginning or joined else "$"
        for stream in missing:
            try:
                client.xgroup_create(stream, group, id=start, mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def _has_group(self, stream: str) -> bool:
        if not self.cache.redis.exists(stream):
            return False
        groups = _groups(self.cache.redis.xinfo_groups(stream))
        return any(g["name"] == self.consumer.group for g in groups)

    def _next(self, *, block: bool) -> list[StreamMessage]:
        with translate_errors(f"reading the outbox streams on {self.cache.display_url}"):
            return self.consumer.claim_stuck() or self.consumer.read(
                block_ms=self.consumer.block_ms if block else 0
            )

    def handle(self, messages: list[StreamMessage], report: InvalidationReport) -> None:
        """Apply one batch, then acknowledge it (nothing is acknowledged if applying fails)."""
        fresh = self._not_seen(messages)
        actions = plan_actions(self.rules, [(self._aggregate(m), m) for m in fresh])
        self._apply(actions, report)
        with translate_errors(f"acknowledging events on {self.cache.display_url}"):
            acked = self._remember_and_ack(messages, fresh)
        report.batches += 1
        report.events += len(messages)
        report.duplicates += len(messages) - len(fresh)
        report.matched += actions.matched
        report.unmatched += actions.unmatched
        report.acked += acked

    def _remember_and_ack(self, messages: list[StreamMessage], fresh: list[StreamMessage]) -> int:
        """Record the handled event ids (the consumer's dedupe keys), then XACK the batch.

        The same contract as :meth:`StreamConsumer.handle` (``SET dedupe_prefix+event_id 1 EX
        dedupe_ttl_seconds``, then ``XACK``), packed into one write: one XACK per stream.
        """
        commands = CommandBatch()
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
        return sum(int(n) for n in replies[len(fresh) :])

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

    def _apply(self, actions: Actions, report: InvalidationReport) -> None:
        with translate_errors(f"invalidating cache keys on {self.cache.display_url}"):
            generations = self._generations(actions)
            keys = [
                self._full(namespace, logical, generations) for namespace, logical in actions.keys
            ]
            report.keys_deleted += self.keyspace.unlink(k for k in keys if k)
            for namespace, pattern in actions.patterns:
                full = self._full(namespace, pattern, generations, glob=True)
                if full:
                    report.pattern_keys_deleted += self.keyspace.unlink_matching(full)
        if actions.warmers:
            for unit in self.warmer.warm(sorted(actions.warmers)):
                for warmed in unit.warmers:
                    total = report.warmers_refreshed.get(warmed.warmer, 0)
                    report.warmers_refreshed[warmed.warmer] = total + warmed.keys

    def _generations(self, actions: Actions) -> dict[str, int | None]:
        spaces = {ns for ns, _ in actions.keys | actions.patterns if ns is not None}
        return {ns: self.keyspace.current_generation(ns) for ns in spaces}

    def _full(
        self,
        namespace: str | None,
        logical: str,
        generations: dict[str, int | None],
        *,
        glob: bool = False,
    ) -> str | None:
        if namespace is None:
            prefix = self.keyspace.prefix
        else:
            generation = generations.get(namespace)
            if generation is None:
                return None  # never warmed: nothing to invalidate
            prefix = self.keyspace.generation_prefix(namespace, generation)
        return (glob_escape(prefix) if glob else prefix) + logical

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


def _groups(raw: list[dict[Any, Any]]) -> list[dict[str, Any]]:
    def text(value: Any) -> Any:
        return value.decode() if isinstance(value, bytes) else value

    return [{text(k): text(v) for k, v in group.items()} for group in raw]
