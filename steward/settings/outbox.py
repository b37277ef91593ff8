"""Settings of the transactional outbox relay and its cleanup."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from steward.settings.brokers import NatsSinkSettings, RabbitMQSinkSettings
from steward.settings.stores import FlowDatabaseUrl, flow_database_url

__all__ = ["OUTBOX_SINKS", "OutboxSettings"]

OUTBOX_SINKS = ("redis_streams", "event_history", "rabbitmq", "nats")


class OutboxSettings(BaseModel):
    """Transactional outbox relay (``relay-outbox``, ``cleanup-outbox``, ``steward outbox``)."""

    model_config = ConfigDict(extra="forbid")

    database_url: FlowDatabaseUrl = flow_database_url("the relay and cleanup-outbox")
    table: str = Field(
        default="outbox",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
        description="Outbox table (checked against the live schema before use).",
    )
    batch_size: int = Field(
        default=5000, ge=1, le=50_000, description="Events claimed, published and marked per task."
    )
    max_aggregates_per_batch: int = Field(
        default=1000,
        ge=1,
        le=50_000,
        description="Aggregates one batch may hold. Lower it to spread a few busy aggregates "
        "over more relays; events of one aggregate are always relayed by one relay at a time.",
    )
    max_attempts: int = Field(
        default=10, ge=1, le=1000, description="Failed attempts before an event goes dead."
    )
    backoff_base_seconds: float = Field(
        default=1.0, gt=0, le=3600, description="Retry delay after the first failure (doubles)."
    )
    backoff_max_seconds: float = Field(
        default=300.0, gt=0, le=86_400, description="Upper bound of the retry delay."
    )
    backoff_jitter: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Random share taken off each delay: delay * uniform(1 - jitter, 1).",
    )
    dead_blocks_aggregate: bool = Field(
        default=True,
        description="True (default): a dead event holds back its aggregate's later events "
        "until it is requeued, so every aggregate is delivered in order (they wait, shown in "
        "`steward outbox status` as held behind the dead event). False: later events flow on "
        "past it (no waiting, but a requeued event then arrives after its successors).",
    )
    sinks: list[str] = Field(
        default_factory=lambda: ["redis_streams", "event_history"],
        description="Where events go, in this order: redis_streams, event_history (object "
        "store), rabbitmq, nats. An event is published once every sink took it.",
    )
    rabbitmq: RabbitMQSinkSettings = Field(default_factory=RabbitMQSinkSettings)
    nats: NatsSinkSettings = Field(default_factory=NatsSinkSettings)
    broker_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="RabbitMQ / NATS sinks: longest wait to connect or for a publish "
        "confirmation (ack); past it the event is retried with backoff.",
    )
    broker_max_in_flight: int = Field(
        default=256,
        ge=1,
        le=10_000,
        description="RabbitMQ / NATS sinks: aggregates published at once. Within an "
        "aggregate each event waits for the previous one's confirmation (order kept).",
    )
    stream_key_prefix: str = Field(
        default="events:",
        description="Redis stream key = cache.key_prefix + this + aggregate_type.",
    )
    stream_maxlen: int = Field(
        default=1_000_000, ge=0, description="Approximate MAXLEN per stream; 0 = never trim."
    )
    history_source: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
        description="Name of this database in event-history object names (several databases "
        "may share one prefix); None = derived from database.url (host and database name).",
    )
    history_prefix: str = Field(
        default="events/",
        description="Object-store prefix of the event history (jsonl.gz per batch and day).",
    )
    max_payload_bytes: int = Field(
        default=1_048_576,
        ge=64,
        le=512 * 1024 * 1024,
        description="Largest payload, in UTF-8 bytes of its compact JSON text (no spaces), the "
        "same rule in enqueue and the relay; larger events are refused by enqueue or go dead.",
    )
    cleanup_after_days: int = Field(
        default=30, ge=0, le=36_500, description="Published events older than this are deleted."
    )
    cleanup_batch_size: int = Field(
        default=5000, ge=1, le=200_000, description="Rows deleted per transaction by cleanup."
    )
    listen_channel: str = Field(
        default="steward_outbox",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="PostgreSQL NOTIFY channel enqueue signals and the long-running relay hears.",
    )
    poll_interval_seconds: float = Field(
        default=5.0, gt=0, le=3600, description="Long-running relay: poll this often anyway."
    )
    reconnect_max_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Long-running relay: longest wait between reconnect attempts while the "
        "database or Redis is away (starts at 0.5 s, doubles, jittered).",
    )
    run_seconds: float = Field(
        default=50.0,
        gt=0,
        le=86_400,
        description="Scheduled relay run: stop starting batches after this long (the next "
        "minute's run carries on).",
    )

    @field_validator("sinks")
    @classmethod
    def _check_sinks(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in OUTBOX_SINKS]
        if unknown or not value or len(set(value)) != len(value):
            raise ValueError(
                f"accepted: a non-empty list of distinct names from {list(OUTBOX_SINKS)}, "
                f"got {value}"
            )
        return value

    @field_validator("history_prefix")
    @classmethod
    def _check_history_prefix(cls, value: str) -> str:
        if not value or value.startswith("/") or not value.endswith("/"):
            raise ValueError("accepted: a relative key prefix ending in '/', e.g. 'events/'")
        return value

    @field_validator("backoff_max_seconds")
    @classmethod
    def _check_backoff(cls, value: float, info: ValidationInfo) -> float:
        base = info.data.get("backoff_base_seconds")
        if base is not None and value < base:
            raise ValueError(f"must be >= outbox.backoff_base_seconds ({base})")
        return value
