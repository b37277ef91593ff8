"""Writing outbox events from Python, inside the application's own transaction.

An application writes an event in the same transaction as the change it describes
(:func:`enqueue`); the relay (:mod:`steward.outbox.relay`) later claims, publishes and marks it.
The table contract, for writers in other languages, is in :mod:`steward.outbox.table`.
Also here: the retry backoff and the error text the relay records.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.errors import ConfigError, PayloadRejected
from steward.outbox.table import (
    DEAD,
    PENDING,
    PUBLISHED,
    Failure,
    OutboxEvent,
    OutboxTable,
    outbox_table,
)
from steward.settings import OutboxSettings, get_settings

__all__ = [
    "DEAD",
    "PENDING",
    "PUBLISHED",
    "EventSpec",
    "Failure",
    "OutboxEvent",
    "OutboxTable",
    "backoff_delay",
    "compact_json",
    "describe_error",
    "enqueue",
    "enqueue_many",
    "outbox_table",
    "parse_aggregate",
    "parse_event_id",
]

MAX_ERROR_CHARS = 500
LIMITS = {"aggregate_type": 100, "aggregate_id": 200, "event_type": 200}


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One event to enqueue: what changed (aggregate), what happened (type) and its data."""

    aggregate_type: str
    aggregate_id: str | int
    event_type: str
    payload: Any
    headers: dict[str, Any] | None = None


# Writing events ---------------------------------------------------------------------------


def enqueue(
    connection: Connection,
    aggregate_type: str,
    aggregate_id: str | int,
    event_type: str,
    payload: Any,
    headers: dict[str, Any] | None = None,
    *,
    settings: OutboxSettings | None = None,
) -> uuid.UUID:
    """Insert one event inside the caller's transaction and return its event id.

    Raises:
        PayloadRejected: the payload is not JSON-serialisable or is over
            ``outbox.max_payload_bytes``.
        ConfigError: a name is empty or too long, or the outbox table is missing.
    """
    spec = EventSpec(aggregate_type, aggregate_id, event_type, payload, headers)
    return enqueue_many(connection, [spec], settings=settings)[0]


def enqueue_many(
    connection: Connection, events: Iterable[EventSpec], *, settings: OutboxSettings | None = None
) -> list[uuid.UUID]:
    """Insert events (in order) inside the caller's transaction; return their event ids.

    On PostgreSQL it also sends ``pg_notify(outbox.listen_channel, '')``, delivered at commit,
    which wakes a long-running relay at once.
    """
    cfg = settings or get_settings().outbox
    table = outbox_table(connection, cfg.table)
    rows = [_insert_row(spec, cfg.max_payload_bytes) for spec in events]
    if not rows:
        return []
    connection.execute(table.insert_statement(), rows)
    if table.is_postgres:
        connection.execute(sa.select(sa.func.pg_notify(cfg.listen_channel, "")))
    return [row["b_id"] for row in rows]


def _insert_row(spec: EventSpec, max_payload_bytes: int) -> dict[str, Any]:
    names = {
        "aggregate_type": spec.aggregate_type,
        "aggregate_id": str(spec.aggregate_id) if spec.aggregate_id is not None else "",
        "event_type": spec.event_type,
    }
    for column, value in names.items():
        if not isinstance(value, str) or not value or len(value) > LIMITS[column]:
            raise ConfigError(
                f"outbox event {column} = {value!r}: accepted a non-empty string of at most "
                f"{LIMITS[column]} characters"
            )
    payload = _json_text(spec.payload, "payload", spec)
    if len(payload.encode("utf-8")) > max_payload_bytes:
        raise PayloadRejected(
            f"outbox event {spec.event_type} of {spec.aggregate_type} {names['aggregate_id']}: "
            f"payload is {len(payload.encode('utf-8')):,} bytes (compact JSON), over "
            "outbox.max_payload_bytes "
            f"= {max_payload_bytes:,}; store large data elsewhere and put its key in the event"
        )
    headers = None if spec.headers is None else _json_text(spec.headers, "headers", spec)
    row = {f"b_{column}": value for column, value in names.items()}
    return {"b_id": uuid.uuid4(), **row, "payload_text": payload, "headers_text": headers}


def compact_json(text: str) -> str:
    """``text`` (JSON) re-rendered compact: the form whose UTF-8 bytes the size rule counts."""
    return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)


def _json_text(value: Any, what: str, spec: EventSpec) -> str:
    # The compact rendering is both what is stored and what the size rule measures.
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise PayloadRejected(
            f"outbox event {spec.event_type} of {spec.aggregate_type} {spec.aggregate_id}: "
            f"{what} is not JSON-serialisable ({exc}); pass dicts, lists, str, numbers, "
            "bools and None only (no NaN/Infinity)"
        ) from None


# Failures ----------------------------------------------------------------------------------


def backoff_delay(
    attempts: int, *, base: float, maximum: float, jitter: float, rand: Any = random.random
) -> float:
    """Seconds before retry number ``attempts`` (>= 1): base * 2^(attempts-1), capped, jittered.

    Jitter takes a random share off (``delay * (1 - jitter * U[0,1))``) so relays that failed
    together do not retry together.
    """
    delay = min(maximum, base * 2 ** min(max(attempts - 1, 0), 40))
    return float(delay * (1.0 - jitter * rand()))


_URL_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/@]*@")
_SECRET_PAIR = re.compile(
    r"\b(password|passwd|pwd|secret|token|access_key|secret_key|api_key|auth)(\s*[=:]\s*)\S+",
    re.IGNORECASE,
)


def describe_error(exc: BaseException, context: str = "") -> str:
    """``Type: first line of the message`` with credentials masked, at most 500 characters."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    if context:
        text = f"{context}: {text}"
    text = _URL_USERINFO.sub(r"\1***@", text)
    text = _SECRET_PAIR.sub(r"\1\2***", text)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def parse_aggregate(text: str) -> tuple[str, str | None]:
    """``"order"`` -> ("order", None) (every aggregate of the type); ``"order:42"`` -> one."""
    aggregate_type, sep, aggregate_id = text.partition(":")
    if not aggregate_type or (sep and not aggregate_id):
        raise ConfigError(f"aggregate {text!r}: accepted TYPE or TYPE:ID, e.g. order or order:42")
    return aggregate_type, (aggregate_id if sep else None)


def parse_event_id(text: str) -> uuid.UUID:
    """An event id (UUID) from text, or ConfigError naming it."""
    try:
        return uuid.UUID(str(text))
    except ValueError:
        raise ConfigError(f"event id {text!r} is not a UUID (the outbox id column)") from None
