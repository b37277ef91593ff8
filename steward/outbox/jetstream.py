"""The ``nats`` sink: events to a NATS JetStream stream, each acknowledged by the server.

- One stream per source database, ``outbox.nats.stream`` (default ``EVENTS_{source}``),
  holding ``{subject_prefix}.>`` (default prefix ``events.{source}``); created when missing.
- Subject ``{subject_prefix}.{aggregate_type}.{event_type}`` (each word percent-encoded where
  it holds a ``.``, ``*``, ``>`` or space).
- Body: the payload (JSON). Headers: ``Nats-Msg-Id`` = event id, so JetStream drops a copy
  published again within the stream's duplicate window (2 minutes by default), plus
  ``Steward-Event-Type``, ``Steward-Aggregate-Type``, ``Steward-Aggregate-Id``,
  ``Steward-Seq``, ``Steward-Occurred-At`` and ``Steward-Event-Headers`` (the event's own
  headers as JSON, when it has any).
- Acked publishes, with the stream expected (``Nats-Expected-Stream``): an event counts as
  published only once the stream stored it. An event over the server's payload limit can
  never be stored: it goes dead at once with the reason.

nats-py is the client: the project's own (maintained by the NATS authors), asyncio, and
JetStream publishes awaited concurrently across aggregates
(:func:`~steward.outbox.brokers.publish_ordered`). The client reconnects by itself after a
server restart; events whose ack did not come meanwhile are retried with backoff (a copy
that did arrive is dropped by its ``Nats-Msg-Id``). A server that answers the connection with
an authorization violation raises :class:`~steward.errors.AuthenticationFailed` (no event
counts an attempt: see :func:`~steward.outbox.sinks.sink_refused`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

from steward.outbox.brokers import EventRejected, LoopThread, publish_ordered, routing_token
from steward.outbox.events import OutboxEvent, describe_error
from steward.outbox.sinks import SinkResult, sink_refused

__all__ = ["JetStreamSink", "default_stream_names"]

_STREAM_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def default_stream_names(source: str) -> tuple[str, str]:
    """``(stream, subject_prefix)`` for a source database: ``EVENTS_{source}``,
    ``events.{source}`` (characters a stream name or subject word may not hold become _)."""
    safe = _STREAM_UNSAFE.sub("_", source) or "db"
    return f"EVENTS_{safe}", f"events.{safe}"


class JetStreamSink:
    """Publishes to one JetStream stream, awaiting each ack (order kept per aggregate)."""

    name = "nats"

    def __init__(
        self,
        url: str,
        *,
        stream: str,
        subject_prefix: str,
        timeout: float = 10.0,
        max_in_flight: int = 256,
        dead_blocks: bool = True,
        where: str = "NATS",
    ) -> None:
        self.url = url
        self.stream = stream
        self.subject_prefix = subject_prefix
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.dead_blocks = dead_blocks
        self.where = where
        self._loop = LoopThread("steward-nats-sink")
        self._client: Any = None
        self._js: Any = None
        self._refused: str | None = None  # the server's authorization error, while connecting

    def subject(self, ev: OutboxEvent) -> str:
        return (
            f"{self.subject_prefix}.{routing_token(ev.aggregate_type)}."
            f"{routing_token(ev.event_type)}"
        )

    def publish(self, events: Sequence[OutboxEvent]) -> SinkResult:
        if not events:
            return SinkResult()
        return self._loop.run(self._publish(events))

    async def _publish(self, events: Sequence[OutboxEvent]) -> SinkResult:
        try:
            await self._connect()
        except Exception as exc:
            await self._drop()
            if self._refused is not None:
                raise sink_refused(
                    self.name, self.where, "outbox.nats.url", self._refused
                ) from None
            error = describe_error(exc, f"connecting to {self.where}")
            return SinkResult(failed={ev.seq: error for ev in events})
        return await publish_ordered(
            events,
            self._send,
            max_in_flight=self.max_in_flight,
            dead_blocks=self.dead_blocks,
            where=f"publishing to stream {self.stream!r} at {self.where}",
        )

    async def _connect(self) -> None:
        from nats.aio.client import Client
        from nats.js.errors import NotFoundError

        if self._client is not None and not self._client.is_closed:
            return
        await self._drop()
        client = Client()
        self._client = client
        self._refused = None
        await asyncio.wait_for(
            client.connect(
                servers=[self.url],
                connect_timeout=max(1, int(self.timeout)),
                allow_reconnect=True,
                max_reconnect_attempts=-1,  # outlive a server restart; acks time out meanwhile
                reconnect_time_wait=1,
                error_cb=self._note_error,
            ),
            self.timeout,
        )
        js = client.jetstream(timeout=self.timeout)
        try:
            await js.stream_info(self.stream)
        except NotFoundError:
            await js.add_stream(name=self.stream, subjects=[f"{self.subject_prefix}.>"])
        self._js = js

    async def _note_error(self, exc: Exception) -> None:
        """nats-py reports each failed (re)connect here; the relay reports the failed events,
        but an authorization violation is kept: it makes the connect fail as refused."""
        if "authorization violation" in str(exc).lower():
            self._refused = describe_error(exc)

    async def _send(self, ev: OutboxEvent) -> None:
        from nats.errors import MaxPayloadError
        from nats.errors import TimeoutError as NatsTimeout

        payload = ev.payload.encode("utf-8")
        limit = self._client.max_payload
        if len(payload) > limit:
            raise EventRejected(
                f"payload is {len(payload):,} bytes, over the NATS server's max_payload "
                f"({limit:,}); shrink the event (or raise max_payload), then requeue it"
            )
        headers = {
            "Nats-Msg-Id": ev.event_id,
            "Steward-Event-Type": ev.event_type,
            "Steward-Aggregate-Type": ev.aggregate_type,
            "Steward-Aggregate-Id": ev.aggregate_id,
            "Steward-Seq": str(ev.seq),
            "Steward-Occurred-At": ev.created_at.isoformat(),
        }
        if ev.headers:
            headers["Steward-Event-Headers"] = ev.headers
        try:
            await self._js.publish(
                self.subject(ev), payload, timeout=self.timeout, stream=self.stream, headers=headers
            )
        except MaxPayloadError as exc:
            raise EventRejected(f"NATS refused the payload: {exc}") from None
        except (TimeoutError, NatsTimeout):
            raise TimeoutError(f"no JetStream ack within {self.timeout:g} s") from None

    async def _drop(self) -> None:
        client, self._client, self._js = self._client, None, None
        if client is not None and not client.is_closed:
            try:
                await asyncio.wait_for(client.close(), self.timeout)
            except Exception:  # already broken: nothing more to release
                pass

    def close(self) -> None:
        try:
            self._loop.run(self._drop(), timeout=self.timeout + 1)
        finally:
            self._loop.close()
