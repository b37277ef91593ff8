"""Transactional outbox: writing events, relaying them to sinks, consuming the streams.

What this package owns:

- ``events``: :func:`enqueue` / :func:`enqueue_many`, called by applications inside their own
  transaction, plus the retry backoff and the error text the relay records.
- ``table``: the outbox table contract (columns, states) for writers in any language.
- ``relay``: :class:`OutboxRelay` claims due events (ordered per aggregate), publishes, marks.
- ``runs``: batch reports and the drain loops a flow or the CLI runs.
- ``service``: the long-running relay (``steward outbox relay --forever``).
- ``sinks``: Redis Streams and the event history in the object store.
- ``streams``: :class:`StreamConsumer`, a consumer-group reader with dedupe by event id.
"""

from steward.outbox.events import (
    DEAD,
    PENDING,
    PUBLISHED,
    EventSpec,
    Failure,
    OutboxEvent,
    OutboxTable,
    backoff_delay,
    describe_error,
    enqueue,
    enqueue_many,
    outbox_table,
    parse_aggregate,
    parse_event_id,
)
from steward.outbox.relay import OutboxRelay, build_sinks
from steward.outbox.runs import BatchReport, RunTotals, drain, relay_slice
from steward.outbox.service import run_forever
from steward.outbox.sinks import (
    EventHistorySink,
    RedisStreamsSink,
    Sink,
    SinkResult,
    history_key_segment,
)
from steward.outbox.streams import HandleReport, StreamConsumer, StreamMessage
from steward.outbox.table import REQUIRED_COLUMNS

__all__ = [
    "DEAD",
    "PENDING",
    "PUBLISHED",
    "REQUIRED_COLUMNS",
    "BatchReport",
    "EventHistorySink",
    "EventSpec",
    "Failure",
    "HandleReport",
    "OutboxEvent",
    "OutboxRelay",
    "OutboxTable",
    "RedisStreamsSink",
    "RunTotals",
    "Sink",
    "SinkResult",
    "StreamConsumer",
    "StreamMessage",
    "backoff_delay",
    "build_sinks",
    "describe_error",
    "drain",
    "enqueue",
    "enqueue_many",
    "history_key_segment",
    "outbox_table",
    "parse_aggregate",
    "parse_event_id",
    "relay_slice",
    "run_forever",
]
