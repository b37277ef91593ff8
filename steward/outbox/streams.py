"""Consuming outbox events from Redis Streams: consumer groups, acks, stuck entries, dedupe.

Contract (what the relay guarantees, what a consumer must do):

- At least once: an event can appear on its stream more than once (a relay killed between
  publishing and marking, a retry after a lost connection). Every copy carries the same
  ``event_id``; :class:`StreamConsumer` drops copies it has already handled (a ``SET NX EX``
  key per group and event id, kept ``dedupe_ttl_seconds``).
- Order per aggregate on the stream follows the outbox ``seq``. Within a consumer group, Redis
  spreads entries over the group's consumers, so a group that needs strict per-aggregate order
  runs one consumer (or one group per partition of aggregates).
- An entry is acknowledged (``XACK``) only after the handler returned. Entries a crashed
  consumer never acknowledged are taken over by another with ``XAUTOCLAIM`` once idle for
  ``claim_idle_ms``.

Usage::

    consumer = StreamConsumer(client, ["steward:events:order"], group="billing",
                              consumer="billing-1")
    consumer.ensure_groups()
    while running:
        consumer.poll(handle_event)   # handle_event(message) -> None, raises to retry later
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

__all__ = ["HandleReport", "StreamConsumer", "StreamMessage"]


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class StreamMessage:
    """One stream entry written by the outbox relay."""

    stream: str
    message_id: str
    fields: dict[str, str]

    @property
    def event_id(self) -> str:
        return self.fields.get("event_id", "")

    @property
    def event_type(self) -> str:
        return self.fields.get("event_type", "")

    @property
    def aggregate_id(self) -> str:
        return self.fields.get("aggregate_id", "")

    @property
    def seq(self) -> int | None:
        raw = self.fields.get("seq")
        return int(raw) if raw else None

    @property
    def payload(self) -> Any:
        """The event's payload, parsed from JSON."""
        return json.loads(self.fields.get("payload", "null"))

    @property
    def headers(self) -> Any:
        return json.loads(self.fields.get("headers") or "{}")

    @classmethod
    def parse(cls, stream: Any, message_id: Any, raw: dict[Any, Any] | None) -> StreamMessage:
        fields = {_text(k): _text(v) for k, v in (raw or {}).items()}
        return cls(_text(stream), _text(message_id), fields)


@dataclass
class HandleReport:
    """What one call to :meth:`StreamConsumer.handle` did."""

    handled: list[StreamMessage] = field(default_factory=list)
    duplicates: list[StreamMessage] = field(default_factory=list)
    acked: int = 0


class StreamConsumer:
    """A member of a consumer group over one or more streams, with dedupe by event id."""

    def __init__(
        self,
        client: redis.Redis,
        streams: Sequence[str],
        *,
        group: str,
        consumer: str,
        dedupe_prefix: str = "steward:dedupe:",
        dedupe_ttl_seconds: int = 7 * 24 * 3600,
        count: int = 500,
        block_ms: int = 1000,
        claim_idle_ms: int = 60_000,
        start_id: str = "0",
    ) -> None:
        if not streams or not group or not consumer:
            raise ValueError("StreamConsumer needs at least one stream, a group and a consumer")
        self.client = client
        self.streams = list(streams)
        self.group = group
        self.consumer = consumer
        self.dedupe_prefix = f"{dedupe_prefix}{group}:"
        self.dedupe_ttl_seconds = dedupe_ttl_seconds
        self.count = count
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.start_id = start_id

    def ensure_groups(self) -> None:
        """Create the group on every stream (and the stream) unless it exists.

        A new group starts at ``start_id``: ``"0"`` reads the stream's history, ``"$"`` only
        new entries.
        """
        for stream in self.streams:
            try:
                self.client.xgroup_create(stream, self.group, id=self.start_id, mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def read(self, *, count: int | None = None, block_ms: int | None = None) -> list[StreamMessage]:
        """New entries for this consumer (``XREADGROUP ... >``), waiting up to ``block_ms``."""
        block = self.block_ms if block_ms is None else block_ms
        reply = self.client.xreadgroup(
            self.group,
            self.consumer,
            {stream: ">" for stream in self.streams},
            count=count or self.count,
            block=block or None,
        )
        return self._messages(reply)

    def read_own_pending(self, *, count: int | None = None) -> list[StreamMessage]:
        """Entries delivered to this consumer earlier but never acknowledged (after a restart)."""
        reply = self.client.xreadgroup(
            self.group, self.consumer, {s: "0" for s in self.streams}, count=count or self.count
        )
        return self._messages(reply)

    def claim_stuck(
        self, *, min_idle_ms: int | None = None, count: int | None = None
    ) -> list[StreamMessage]:
        """Take over entries other consumers left unacknowledged for ``min_idle_ms`` (XAUTOCLAIM).

        Entries trimmed from the stream meanwhile are acknowledged away.
        """
        idle = self.claim_idle_ms if min_idle_ms is None else min_idle_ms
        limit = count or self.count
        messages: list[StreamMessage] = []
        for stream in self.streams:
            start = "0-0"
            while len(messages) < limit:
                reply = self.client.xautoclaim(
                    stream, self.group, self.consumer, idle, start, count=limit - len(messages)
                )
                start = _text(reply[0])
                for message_id, raw in reply[1]:
                    if raw is None:
                        self.client.xack(stream, self.group, message_id)
                    else:
                        messages.append(StreamMessage.parse(stream, message_id, raw))
                deleted = reply[2] if len(reply) > 2 else []
                if deleted:
                    self.client.xack(stream, self.group, *deleted)
                if start == "0-0":
                    break
        return messages

    def ack(self, messages: Sequence[StreamMessage]) -> int:
        """XACK ``messages``; returns how many were pending."""
        pipe = self.client.pipeline(transaction=False)
        for message in messages:
            pipe.xack(message.stream, self.group, message.message_id)
        return sum(int(n) for n in pipe.execute())

    def handle(
        self, messages: Sequence[StreamMessage], handler: Callable[[StreamMessage], None]
    ) -> HandleReport:
        """Run ``handler`` on each message not seen before, then record and acknowledge.

        A copy whose event id this group already handled is acknowledged without calling the
        handler. If the handler raises, what was handled so far is recorded and acknowledged,
        the rest stays pending (redelivered later) and the exception propagates.
        """
        report = HandleReport()
        seen = self._seen([m.event_id for m in messages])
        this_batch: set[str] = set()
        try:
            for message, already in zip(messages, seen, strict=True):
                if already or message.event_id in this_batch:
                    report.duplicates.append(message)
                    continue
                handler(message)
                this_batch.add(message.event_id)
                report.handled.append(message)
        finally:
            report.acked = self._remember_and_ack(report)
        return report

    def poll(
        self, handler: Callable[[StreamMessage], None], *, block_ms: int | None = None
    ) -> HandleReport:
        """One round: stuck entries first, then new ones; handle, dedupe, acknowledge."""
        messages = self.claim_stuck()
        if not messages:
            messages = self.read(block_ms=block_ms)
        return self.handle(messages, handler)

    def run(self, handler: Callable[[StreamMessage], None], stop: threading.Event) -> int:
        """Poll until ``stop`` is set; returns the number of events handled."""
        self.ensure_groups()
        handled = len(self.handle(self.read_own_pending(), handler).handled)
        while not stop.is_set():
            handled += len(self.poll(handler).handled)
        return handled

    def _seen(self, event_ids: Sequence[str]) -> list[bool]:
        if not event_ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for event_id in event_ids:
            pipe.exists(self.dedupe_prefix + event_id)
        return [bool(n) for n in pipe.execute()]

    def _remember_and_ack(self, report: HandleReport) -> int:
        done = [*report.handled, *report.duplicates]
        if not done:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for message in report.handled:
            pipe.set(self.dedupe_prefix + message.event_id, 1, ex=self.dedupe_ttl_seconds)
        for message in done:
            pipe.xack(message.stream, self.group, message.message_id)
        replies = pipe.execute()
        return sum(int(n) for n in replies[len(report.handled) :])

    def _messages(self, reply: Any) -> list[StreamMessage]:
        messages = []
        for stream, entries in _stream_entries(reply):
            for message_id, raw in entries:
                messages.append(StreamMessage.parse(stream, message_id, raw))
        return messages


def _stream_entries(reply: Any) -> list[tuple[Any, Any]]:
    # redis-py returns [[stream, entries], ...] (RESP2) or {stream: entries} (RESP3).
    if not reply:
        return []
    return list(reply.items()) if isinstance(reply, dict) else [(s, e) for s, e in reply]
