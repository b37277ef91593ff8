"""Settings of the outbox relay's broker sinks: RabbitMQ and NATS JetStream."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from steward.settings.stores import check_ports, encode_userinfo

__all__ = ["NatsSinkSettings", "RabbitMQSinkSettings"]


def _broker_url(value: SecretStr, schemes: tuple[str, ...], example: str) -> SecretStr:
    raw = value.get_secret_value()
    if not raw:
        return value
    if not raw.startswith(schemes):
        raise ValueError(f"accepted: a URL starting with {' or '.join(schemes)}, e.g. {example}")
    check_ports(raw)
    return SecretStr(encode_userinfo(raw))


class RabbitMQSinkSettings(BaseModel):
    """``[outbox.rabbitmq]``: the ``rabbitmq`` sink (a durable topic exchange)."""

    model_config = ConfigDict(extra="forbid")

    url: SecretStr = Field(
        default=SecretStr("amqp://guest:guest@127.0.0.1:5672/"),
        description="AMQP URL of the broker (amqp:// or amqps://, with the vhost as its path).",
    )
    exchange: str = Field(
        default="steward.events",
        pattern=r"^[A-Za-z0-9_.:-]{1,255}$",
        description="Durable topic exchange the events go to (declared if missing). Routing "
        "key: {aggregate_type}.{event_type}.",
    )
    mandatory: bool = Field(
        default=True,
        description="True: an event no queue is bound for is returned by the broker and "
        "retried (then dead), never dropped. False: RabbitMQ drops it silently.",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr) -> SecretStr:
        return _broker_url(value, ("amqp://", "amqps://"), "amqp://user:pw@host:5672/vhost")


class NatsSinkSettings(BaseModel):
    """``[outbox.nats]``: the ``nats`` sink (a JetStream stream per source database)."""

    model_config = ConfigDict(extra="forbid")

    url: SecretStr = Field(
        default=SecretStr("nats://127.0.0.1:4222"),
        description="NATS server URL (nats:// or tls://; user:password@ or a token allowed).",
    )
    subject_prefix: str = Field(
        default="",
        pattern=r"^([A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*)?$",
        description="Subjects are {subject_prefix}.{aggregate_type}.{event_type}. Empty = "
        "events.{source} (source: outbox.history_source or the database's host and name).",
    )
    stream: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9_-]{0,200}$",
        description="JetStream stream holding {subject_prefix}.> (created if missing). "
        "Empty = EVENTS_{source}.",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr) -> SecretStr:
        return _broker_url(value, ("nats://", "tls://"), "nats://127.0.0.1:4222")
