"""What the broker sinks (RabbitMQ, NATS JetStream) share: an event loop, ordered publishing.

Both client libraries (aio-pika, nats-py) are asyncio; the relay is not. :class:`LoopThread`
runs one event loop in a daemon thread per sink and the sink's ``publish`` waits for a
coroutine there, so a batch costs no loop start-up and the connection lives across batches.

:func:`publish_ordered` is the delivery rule both follow, the same guarantees as the Redis
sink: events of one aggregate go one after another, each only once the broker confirmed the
previous one (publisher confirm / JetStream ack), so the first copy a consumer sees of every
event is in order; different aggregates go at once (up to ``max_in_flight``). The first
unconfirmed event of an aggregate is *failed* (retried with backoff) and its later events are
reported failed too, so the relay holds them behind it; a *rejected* event (one the broker can
never take, e.g. over its size limit) goes dead, and holds its aggregate when
``dead_blocks``. An event is never reported published without its confirmation: delivery is
at least once, and consumers drop duplicates by event id (``message_id`` / ``Nats-Msg-Id``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

from steward.outbox.events import OutboxEvent, describe_error
from steward.outbox.sinks import SinkResult

__all__ = ["EventRejected", "LoopThread", "publish_ordered", "routing_token"]

T = TypeVar("T")


class EventRejected(Exception):
    """The broker can never take this event (a poison event: it goes dead at once)."""


class LoopThread:
    """An asyncio event loop in a daemon thread; :meth:`run` waits for a coroutine there."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
        if not self.loop.is_running():
            self.loop.close()


def routing_token(text: str) -> str:
    """One subject / routing-key word: ``.``, ``*``, ``>``, ``#``, spaces percent-encoded."""
    return quote(text, safe="-_~") or "_"


async def publish_ordered(
    events: Sequence[OutboxEvent],
    send: Callable[[OutboxEvent], Awaitable[None]],
    *,
    max_in_flight: int,
    dead_blocks: bool,
    where: str,
) -> SinkResult:
    """Publish ``events`` with ``send`` (which returns once confirmed), ordered per aggregate."""
    groups: dict[tuple[str, str], list[OutboxEvent]] = {}
    for ev in events:
        groups.setdefault(ev.aggregate, []).append(ev)
    result = SinkResult()
    gate = asyncio.Semaphore(max_in_flight)

    async def one_aggregate(group: list[OutboxEvent]) -> None:
        async with gate:
            for index, ev in enumerate(group):
                try:
                    await send(ev)
                except EventRejected as exc:
                    result.rejected[ev.seq] = str(exc)
                    if not dead_blocks:
                        continue
                    error = f"held behind dead event {ev.event_id}"
                except Exception as exc:  # unconfirmed: what reached the broker is unknown
                    error = describe_error(exc, where)
                    result.failed[ev.seq] = error
                else:
                    continue
                for later in group[index + 1 :]:
                    result.failed[later.seq] = error
                return

    await asyncio.gather(*(one_aggregate(group) for group in groups.values()))
    return result
