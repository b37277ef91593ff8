"""Building the broker sinks (``rabbitmq``, ``nats``) from ``[outbox.rabbitmq]`` /
``[outbox.nats]``. Their client libraries are imported only when one is configured."""

from __future__ import annotations

from steward.errors import ConfigError
from steward.outbox.sinks import Sink, history_source_name
from steward.settings import Settings, mask_url

__all__ = ["build_broker_sink"]


def build_broker_sink(settings: Settings, name: str) -> Sink:
    """The ``rabbitmq`` or ``nats`` sink configured in ``settings.outbox``."""
    cfg = settings.outbox
    common = {
        "timeout": cfg.broker_timeout_seconds,
        "max_in_flight": cfg.broker_max_in_flight,
        "dead_blocks": cfg.dead_blocks_aggregate,
    }
    if name == "rabbitmq":
        from steward.outbox.rabbitmq import RabbitMQSink

        url = cfg.rabbitmq.url.get_secret_value()
        return RabbitMQSink(
            url,
            exchange=cfg.rabbitmq.exchange,
            mandatory=cfg.rabbitmq.mandatory,
            where=mask_url(url),
            **common,  # type: ignore[arg-type]
        )
    if name == "nats":
        from steward.outbox.jetstream import JetStreamSink, default_stream_names

        source = cfg.history_source or history_source_name(settings.database_url)
        stream, prefix = default_stream_names(source)
        url = cfg.nats.url.get_secret_value()
        return JetStreamSink(
            url,
            stream=cfg.nats.stream or stream,
            subject_prefix=cfg.nats.subject_prefix or prefix,
            where=mask_url(url),
            **common,  # type: ignore[arg-type]
        )
    raise ConfigError(f"outbox.sinks: unknown sink {name!r}")
