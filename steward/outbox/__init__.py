"""Transactional outbox: writing events, relaying them to sinks, consuming the streams.

What this package owns:

- ``events``: :func:`enqueue` / :func:`enqueue_many`, called by applications inside their own
  transaction, plus the retry backoff and the error text the relay records.
- ``table``: the outbox table contract (columns, states) for writers in any language.
- ``relay``: :class:`OutboxRelay` claims due events (ordered per aggregate), publishes, marks.
- ``dead_letters``: dead events grouped by reason, and the aggregates held behind them.
- ``runs``: batch reports and the drain loops a flow or the CLI runs.
- ``service``: the long-running relay (``steward outbox relay --forever``).
- ``sinks``: Redis Streams and the event history in the object store.
- ``install``: the optional outbox: whether there is one, and ``steward outbox install``.
- ``streams``: :class:`StreamConsumer`, a consumer-group reader with dedupe by event id.
"""

from steward.outbox.dead_letters import DeadEvent, DeadGroup, HeldAggregate, describe_held
from steward.outbox.events import (
    DEAD,
    PENDING,
    PUBLISHED,
    EventSpec,
    Failure,
    OutboxEvent,
    OutboxTable,
    backoff_delay,
    compact_json,
    describe_error,
    enqueue,
    enqueue_many,
    outbox_table,
    parse_aggregate,
    parse_event_id,
)
from steward.outbox.install import (
    alembic_operations,
    install_outbox,
    outbox_ddl,
    outbox_missing_reason,
    outbox_table_definition,
)
from steward.outbox.relay import OutboxRelay, build_sinks
from steward.outbox.runs import BatchReport, RunTotals, drain, relay_slice
from steward.outbox.service import run_forever, survivable
from steward.outbox.sinks import (
    EventHistorySink,
    RedisStreamsSink,
    Sink,
    SinkResult,
    history_key_segment,
    history_source_name,
)
from steward.outbox.streams import HandleReport, StreamConsumer, StreamMessage
from steward.outbox.table import REQUIRED_COLUMNS

__all__ = [
    "DEAD",
    "PENDING",
    "PUBLISHED",
    "REQUIRED_COLUMNS",
    "BatchReport",
    "DeadEvent",
    "DeadGroup",
    "EventHistorySink",
    "EventSpec",
    "Failure",
    "HandleReport",
    "HeldAggregate",
    "OutboxEvent",
    "OutboxRelay",
    "OutboxTable",
    "RedisStreamsSink",
    "RunTotals",
    "Sink",
    "SinkResult",
    "StreamConsumer",
    "StreamMessage",
    "alembic_operations",
    "backoff_delay",
    "build_sinks",
    "compact_json",
    "describe_error",
    "describe_held",
    "drain",
    "enqueue",
    "enqueue_many",
    "history_key_segment",
    "install_outbox",
    "outbox_ddl",
    "outbox_missing_reason",
    "outbox_table_definition",
    "history_source_name",
    "outbox_table",
    "parse_aggregate",
    "parse_event_id",
    "relay_slice",
    "run_forever",
    "survivable",
]
