"""Primary keys as JSON in the archive manifest (key ranges, skipped keys, restored keys)."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from typing import Any

__all__ = ["decode_key", "dump_key", "encode_key", "load_key"]


def encode_key(value: Any) -> Any:
    """A primary key as a JSON value: ints and strings as is, UUIDs, ObjectIds and timestamps
    tagged, a composite key as ``{"$key": [...]}``."""
    if isinstance(value, bool) or value is None:
        raise TypeError(f"unsupported key value {value!r}")
    if isinstance(value, int | str):
        return value
    if isinstance(value, tuple):
        return {"$key": [encode_key(part) for part in value]}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    if isinstance(value, datetime):
        return {"$ts": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if type(value).__name__ == "ObjectId":
        return {"$oid": str(value)}
    raise TypeError(f"unsupported key type {type(value).__name__} ({value!r})")


def decode_key(value: Any) -> Any:
    """Inverse of :func:`encode_key`."""
    if not isinstance(value, dict):
        return value
    if "$key" in value:
        return tuple(decode_key(part) for part in value["$key"])
    if "$uuid" in value:
        return uuid.UUID(value["$uuid"])
    if "$ts" in value:
        return datetime.fromisoformat(value["$ts"])
    if "$date" in value:
        return date.fromisoformat(value["$date"])
    if "$oid" in value:
        from bson import ObjectId

        return ObjectId(value["$oid"])
    return value


def dump_key(value: Any) -> str:
    return json.dumps(encode_key(value), separators=(",", ":"))


def load_key(text: str) -> Any:
    return decode_key(json.loads(text))
