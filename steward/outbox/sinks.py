"""Where the outbox relay publishes events: Redis Streams and the object-store event history.

A sink takes a batch of events (seq order) and says, per event, whether it failed (retry
later with backoff) or was rejected (a poison event: it goes dead at once). Every event not
named in the result was published. Sinks never raise for a delivery problem: they report it,
so one bad event or one unreachable service never loses the rest of the batch. A sink that
refuses the configured credentials is not a delivery problem of the events: the sink raises
:class:`~steward.errors.AuthenticationFailed` (see :func:`sink_refused`), the relay's batch
rolls back, and no event counts an attempt or goes dead.

- :class:`RedisStreamsSink`: ``XADD`` (pipelined, approximate ``MAXLEN``) to one stream per
  aggregate type, ``{cache.key_prefix}{outbox.stream_key_prefix}{aggregate_type}``, with the
  fields ``event_id``, ``event_type``, ``aggregate_id``, ``payload``, ``headers``,
  ``occurred_at`` and ``seq``.
- :class:`EventHistorySink`: one gzipped JSON-lines object per aggregate type and event day
  per batch, under ``{outbox.history_prefix}{aggregate_type}/dt=YYYY-MM-DD/``, named by source
  database and batch id, never overwritten.
"""

from __future__ import annotations

import gzip
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import redis
import sqlalchemy as sa

from steward.errors import AuthenticationFailed, ConfigError
from steward.outbox.events import OutboxEvent, describe_error
from steward.storage import ObjectStore

__all__ = [
    "EventHistorySink",
    "RedisStreamsSink",
    "Sink",
    "SinkResult",
    "history_key_segment",
    "history_source_name",
    "sink_refused",
]

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")

# Error replies that say something about the server or the key, not about this entry: retry.
RETRYABLE_REPLIES = frozenset(
    {
        "OOM", "LOADING", "BUSY", "READONLY", "TRYAGAIN", "MASTERDOWN", "NOREPLICAS",
        "CLUSTERDOWN", "MOVED", "ASK", "WRONGTYPE", "MISCONF",
    }
)  # fmt: skip
# Error replies that say the configured user cannot write here: the sink's settings are wrong.
REFUSED_REPLIES = frozenset({"NOAUTH", "WRONGPASS", "NOPERM"})


def sink_refused(sink: str, where: str, setting: str, detail: str) -> AuthenticationFailed:
    """The error a sink raises when it refuses the configured credentials: one line naming the
    sink, the setting and its environment variable (``detail`` must hold no secret)."""
    variable = "STEWARD_" + setting.upper().replace(".", "__")
    return AuthenticationFailed(
        f"outbox sink {sink!r} at {where}: authentication failed ({detail}); check {setting} "
        f"({variable}); no event was attempted"
    )


@dataclass
class SinkResult:
    """Events a sink did not publish: ``failed`` (retry) and ``rejected`` (dead), by seq."""

    failed: dict[int, str] = field(default_factory=dict)
    rejected: dict[int, str] = field(default_factory=dict)


class Sink(Protocol):
    name: str

    def publish(self, events: Sequence[OutboxEvent]) -> SinkResult:
        """Publish ``events`` (seq order); report what failed or was rejected."""
        ...


class RedisStreamsSink:
    """XADD to one Redis stream per aggregate type, the whole batch in one pipeline."""

    name = "redis_streams"

    def __init__(
        self, client: redis.Redis, *, key_prefix: str, maxlen: int, where: str = "Redis"
    ) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self.trim: tuple[Any, ...] = ("MAXLEN", "~", maxlen) if maxlen else ()
        self.where = where
        self._keys: dict[str, str] = {}

    def stream_key(self, aggregate_type: str) -> str:
        key = self._keys.get(aggregate_type)
        if key is None:
            key = self._keys[aggregate_type] = self.key_prefix + aggregate_type
        return key

    def publish(self, events: Sequence[OutboxEvent]) -> SinkResult:
        if not events:
            return SinkResult()
        pipe = self.client.pipeline(transaction=False)
        command, trim, key = pipe.execute_command, self.trim, self.stream_key
        for ev in events:
            command(
                "XADD", key(ev.aggregate_type), *trim, "*",
                "event_id", ev.event_id, "event_type", ev.event_type,
                "aggregate_id", ev.aggregate_id, "payload", ev.payload,
                "headers", ev.headers or "{}", "occurred_at", ev.created_at.isoformat(),
                "seq", ev.seq,
            )  # fmt: skip
        try:
            replies = pipe.execute(raise_on_error=False)
        except redis.RedisError as exc:
            self._raise_if_refused(exc)
            # Connection lost or refused: what reached Redis is unknown, so every event is
            # retried (consumers drop the duplicates by event id).
            error = describe_error(exc, f"publishing to Redis Streams at {self.where}")
            return SinkResult(failed={ev.seq: error for ev in events})
        return self._sort_replies(events, replies)

    def _raise_if_refused(self, exc: Exception) -> None:
        code = str(exc).split(" ", 1)[0].upper()
        if isinstance(exc, redis.AuthenticationError) or code in REFUSED_REPLIES:
            detail = describe_error(exc)
            raise sink_refused(self.name, self.where, "cache.url", detail) from None

    def _sort_replies(self, events: Sequence[OutboxEvent], replies: list[Any]) -> SinkResult:
        result = SinkResult()
        for ev, reply in zip(events, replies, strict=True):
            if not isinstance(reply, Exception):
                continue
            self._raise_if_refused(reply)
            code = str(reply).split(" ", 1)[0].upper()
            where = f"stream {self.stream_key(ev.aggregate_type)!r}"
            if code in RETRYABLE_REPLIES or not isinstance(reply, redis.ResponseError):
                result.failed[ev.seq] = describe_error(reply, where)
            else:
                result.rejected[ev.seq] = describe_error(
                    reply, f"Redis refused the entry on {where}"
                )
        return result


def history_key_segment(aggregate_type: str) -> str:
    """``aggregate_type`` as one safe object-key segment (percent-encoded where needed)."""
    segment = quote(aggregate_type, safe="-_.~")
    if segment in {"", ".", ".."}:
        return segment.replace(".", "%2E") or "_"
    return segment


def history_source_name(database_url: str) -> str:
    """A database's name in history object names: host and database (no credentials)."""
    url = sa.engine.make_url(database_url)
    if url.get_backend_name() == "sqlite":
        name = Path(url.database or "memory").stem
    else:
        name = f"{url.host or 'local'}-{url.database or 'default'}"
    return _UNSAFE_NAME.sub("_", name).strip("._-")[:100] or "db"


class EventHistorySink:
    """Event history in the object store: ``jsonl.gz`` objects per aggregate type and day.

    Each line is one event: ``event_id``, ``seq``, ``aggregate_type``, ``aggregate_id``,
    ``event_type``, ``occurred_at``, ``payload``, ``headers``. An object is named
    ``{source}-{first seq}-{last seq}-{batch id}.jsonl.gz``: the source names the database
    (several may share a prefix, and a database recreated from scratch starts its seqs again)
    and the batch id is new for every write, so no two writes share a name. Objects are
    written create-only (:meth:`ObjectStore.put_if_absent`): an existing object is never
    replaced. A batch written again after a crash (before its events were marked) is a second
    object: history readers drop duplicates by ``event_id``, as stream consumers do.
    """

    name = "event_history"

    def __init__(self, store: ObjectStore, *, prefix: str = "events/", source: str = "db") -> None:
        self.store = store
        self.prefix = prefix
        self.source = source

    def object_key(
        self, aggregate_type: str, day: str, events: Sequence[OutboxEvent], batch_id: str
    ) -> str:
        name = f"{self.source}-{events[0].seq:020d}-{events[-1].seq:020d}-{batch_id}.jsonl.gz"
        return f"{self.prefix}{history_key_segment(aggregate_type)}/dt={day}/{name}"

    def publish(self, events: Sequence[OutboxEvent]) -> SinkResult:
        groups: dict[tuple[str, str], list[OutboxEvent]] = {}
        for ev in events:
            day = ev.created_at.date().isoformat()
            groups.setdefault((ev.aggregate_type, day), []).append(ev)
        result = SinkResult()
        batch_id = uuid.uuid4().hex[:16]
        for (aggregate_type, day), group in groups.items():
            key = self.object_key(aggregate_type, day, group, batch_id)
            metadata = {
                "events": str(len(group)),
                "first-seq": str(group[0].seq),
                "last-seq": str(group[-1].seq),
                "source": self.source,
                "batch-id": batch_id,
            }
            try:
                self.store.put_if_absent(key, _jsonl_gz(group), metadata=metadata)
            except ConfigError as exc:  # refused credentials or access denied: not the events'
                # The store's message names the object and the objects.* settings to check.
                raise type(exc)(
                    f"outbox sink {self.name!r}: {exc}; no event was attempted"
                ) from None
            except Exception as exc:  # any store failure: these events are retried later
                error = describe_error(exc, f"writing event history object {key!r}")
                result.failed.update((ev.seq, error) for ev in group)
        return result


def _jsonl_gz(events: Sequence[OutboxEvent]) -> bytes:
    lines = []
    for ev in events:
        head = json.dumps(
            {
                "event_id": ev.event_id,
                "seq": ev.seq,
                "aggregate_type": ev.aggregate_type,
                "aggregate_id": ev.aggregate_id,
                "event_type": ev.event_type,
                "occurred_at": ev.created_at.isoformat(),
            },
            ensure_ascii=False,
        )
        # payload / headers are JSON text already (validated on the way in): embed as is.
        lines.append(f'{head[:-1]}, "payload": {ev.payload}, "headers": {ev.headers or "null"}}}')
    return gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), compresslevel=6)
