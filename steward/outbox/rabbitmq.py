"""The ``rabbitmq`` sink: events to a durable topic exchange, each confirmed by the broker.

- Exchange ``outbox.rabbitmq.exchange`` (type topic, durable; declared when missing).
- Routing key ``{aggregate_type}.{event_type}`` (each word percent-encoded where it holds a
  ``.``, ``*``, ``#`` or space), so consumers bind e.g. ``order.*`` or ``*.Cancelled``.
- Persistent messages (delivery mode 2), JSON body (the payload), ``message_id`` = event id,
  ``type`` = event type, ``timestamp`` = when the event was written; headers
  ``aggregate_type``, ``aggregate_id``, ``seq``, ``occurred_at`` and ``event_headers`` (the
  event's own headers as JSON, when it has any).
- Publisher confirms: an event counts as published only once the broker acked it. With
  ``mandatory`` (default) an event no queue is bound for comes back and is retried, then dead.

aio-pika (on aiormq) is the client: maintained, asyncio, and with confirms it lets many
aggregates be in flight at once (:func:`~steward.outbox.brokers.publish_ordered`), where a
blocking client waits a round trip per message. A lost connection is reopened at the next
batch; the events of the batch that lost it are retried with backoff. A broker that refuses
the configured user or password raises :class:`~steward.errors.AuthenticationFailed` instead
(no event counts an attempt: see :func:`~steward.outbox.sinks.sink_refused`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from steward.outbox.brokers import LoopThread, publish_ordered, routing_token
from steward.outbox.events import OutboxEvent, describe_error
from steward.outbox.sinks import SinkResult, sink_refused

__all__ = ["RabbitMQSink"]


class RabbitMQSink:
    """Publishes to a durable topic exchange with publisher confirms."""

    name = "rabbitmq"

    def __init__(
        self,
        url: str,
        *,
        exchange: str,
        mandatory: bool = True,
        timeout: float = 10.0,
        max_in_flight: int = 256,
        dead_blocks: bool = True,
        where: str = "RabbitMQ",
    ) -> None:
        self.url = url
        self.exchange_name = exchange
        self.mandatory = mandatory
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.dead_blocks = dead_blocks
        self.where = where
        self._loop = LoopThread("steward-rabbitmq-sink")
        self._connection: Any = None
        self._channel: Any = None
        self._exchange: Any = None

    def routing_key(self, ev: OutboxEvent) -> str:
        return f"{routing_token(ev.aggregate_type)}.{routing_token(ev.event_type)}"

    def publish(self, events: Sequence[OutboxEvent]) -> SinkResult:
        if not events:
            return SinkResult()
        return self._loop.run(self._publish(events))

    async def _publish(self, events: Sequence[OutboxEvent]) -> SinkResult:
        where = f"publishing to exchange {self.exchange_name!r} at {self.where}"
        try:
            await self._connect()
        except Exception as exc:
            await self._drop()
            if _is_refused(exc):
                detail = describe_error(exc)
                raise sink_refused(self.name, self.where, "outbox.rabbitmq.url", detail) from None
            error = describe_error(exc, f"connecting to {self.where}")
            return SinkResult(failed={ev.seq: error for ev in events})
        result = await publish_ordered(
            events,
            self._send,
            max_in_flight=self.max_in_flight,
            dead_blocks=self.dead_blocks,
            where=where,
        )
        if result.failed and not self._is_open():
            await self._drop()
        return result

    def _is_open(self) -> bool:
        return bool(
            self._connection is not None
            and not self._connection.is_closed
            and self._channel is not None
            and not self._channel.is_closed
        )

    async def _connect(self) -> None:
        import aio_pika

        if self._is_open():
            return
        await self._drop()
        self._connection = await aio_pika.connect(self.url, timeout=self.timeout)
        self._channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        self._exchange = await self._channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )

    async def _send(self, ev: OutboxEvent) -> None:
        import aio_pika
        from aiormq.exceptions import PublishError

        headers: dict[str, Any] = {
            "aggregate_type": ev.aggregate_type,
            "aggregate_id": ev.aggregate_id,
            "seq": ev.seq,
            "occurred_at": ev.created_at.isoformat(),
        }
        if ev.headers:
            headers["event_headers"] = ev.headers
        message = aio_pika.Message(
            ev.payload.encode("utf-8"),
            headers=headers,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=ev.event_id,
            type=ev.event_type,
            timestamp=ev.created_at,
        )
        try:
            await self._exchange.publish(
                message, self.routing_key(ev), mandatory=self.mandatory, timeout=self.timeout
            )
        except PublishError:
            raise RuntimeError(
                f"no queue is bound for routing key {self.routing_key(ev)!r} on exchange "
                f"{self.exchange_name!r} (the broker returned the event); bind a queue"
            ) from None
        except TimeoutError:
            raise TimeoutError(f"no confirmation within {self.timeout:g} s") from None

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        self._channel = self._exchange = None
        if connection is not None and not connection.is_closed:
            try:
                await asyncio.wait_for(connection.close(), self.timeout)
            except Exception:  # already broken: nothing more to release
                pass

    def close(self) -> None:
        try:
            self._loop.run(self._drop(), timeout=self.timeout + 1)
        finally:
            self._loop.close()


def _is_refused(exc: Exception) -> bool:
    """The broker refused the login (or the user may not use the virtual host)."""
    from aiormq.exceptions import ConnectionNotAllowed, ProbableAuthenticationError

    return isinstance(exc, ProbableAuthenticationError | ConnectionNotAllowed)
