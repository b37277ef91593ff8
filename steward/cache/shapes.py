"""Reading and filling each value shape (JSON string, hash, sorted set) for cache-aside.

Reads, per shape (what the warmers write):

- ``json``: ``GET``; the value parsed from JSON (text that is not JSON, as a warmer stores a
  plain-text ``value`` column, comes back as text).
- ``hash``: ``HGETALL``; ``{field: value}`` as text (the warmer's ``value`` column as Redis
  stores it, or the row as a JSON object).
- ``zset``: ``ZREVRANGE 0 -1 WITHSCORES``; ``[(member, score)]``, highest score first.

A versioned read (:data:`READ_VERSIONED`) reads the namespace's ``current`` pointer and the key
in that generation inside one script, so it never straddles a generation flip.

A fill (:data:`FILL`) writes a loader's value only while the caller's *lease* still holds its
token: the lease is the stampede lock ``{prefix}lock:{key}`` taken before the loader ran, and
the invalidator deletes it together with the key. So a value loaded before an invalidation is
never written back after it (the loader's caller still gets its value, uncached). A versioned
fill also requires the generation it read to still be current.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import orjson
import redis

from steward.cache.writer import encode_json, encode_value
from steward.errors import ConfigError

__all__ = [
    "FILL",
    "READ_VERSIONED",
    "SHAPES",
    "Shape",
    "decode",
    "encode",
    "read_plain",
    "wrong_type",
]

Shape = Literal["json", "hash", "zset"]
SHAPES: tuple[Shape, ...] = ("json", "hash", "zset")

# KEYS: current pointer. ARGV: namespace prefix, logical key, shape.
# Returns {generation or false, value (string, flat pair list) or false}.
READ_VERSIONED = """
local current = redis.call('GET', KEYS[1])
if not current then return {false, false} end
local key = ARGV[1] .. current .. ':' .. ARGV[2]
if ARGV[3] == 'hash' then return {current, redis.call('HGETALL', key)} end
if ARGV[3] == 'zset' then return {current, redis.call('ZREVRANGE', key, 0, -1, 'WITHSCORES')} end
return {current, redis.call('GET', key)}
"""

# KEYS: lease, target, current pointer (versioned; else the lease again).
# ARGV: token, ttl (0 = none), shape, generation ("v<n>", or "" for plain keys), payload...
# Writes (and releases the lease) only while the lease holds our token; returns 1 if written.
FILL = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[4] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[4] then return 0 end
if ARGV[3] == 'json' then
  redis.call('SET', KEYS[2], ARGV[5])
else
  redis.call('DEL', KEYS[2])
  local command = ARGV[3] == 'hash' and 'HSET' or 'ZADD'
  local i = 5
  while i <= #ARGV do
    local last = math.min(i + 999, #ARGV)
    redis.call(command, KEYS[2], unpack(ARGV, i, last))
    i = last + 1
  end
end
if tonumber(ARGV[2]) > 0 then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
return 1
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return (value if isinstance(value, str) else repr(value)).encode()


def read_plain(client: redis.Redis, full: str, shape: Shape) -> Any:
    """The raw reply of one read of ``full`` in ``shape`` (None, b"" or [] when absent)."""
    if shape == "hash":
        return client.execute_command("HGETALL", full)
    if shape == "zset":
        return client.execute_command("ZREVRANGE", full, 0, -1, "WITHSCORES")
    return client.get(full)


def decode(shape: Shape, raw: Any) -> Any:
    """A raw read reply as the application's value; None when the key is absent."""
    if raw is None or (shape != "json" and not raw):
        return None
    if shape == "json":
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:  # a warmer's value column stored as plain text
            return _text(raw)
    pairs = _pairs(raw)
    if shape == "hash":
        return {_text(k): _text(v) for k, v in pairs}
    return [(_text(member), float(score)) for member, score in pairs]


def _pairs(raw: Any) -> list[tuple[Any, Any]]:
    if isinstance(raw, dict):  # RESP3 / a client that maps replies
        return list(raw.items())
    if raw and isinstance(raw[0], list | tuple):
        return [(a, b) for a, b in raw]
    return list(zip(raw[::2], raw[1::2], strict=True))


def encode(shape: Shape, value: Any, key: str) -> tuple[list[bytes], Any]:
    """(FILL payload arguments, the value as a later read will return it) for a loader's value.

    ``json``: anything JSON-encodable. ``hash``: a mapping field -> value. ``zset``: a mapping
    member -> score, or (member, score) pairs. An empty hash / sorted set has no payload (Redis
    cannot store one): the caller returns it uncached.
    """
    if shape == "json":
        payload = encode_json(value)
        return [payload], orjson.loads(payload)
    if shape == "hash":
        if not isinstance(value, Mapping):
            raise ConfigError(f"cache key {key!r}: a hash loader must return a mapping")
        items = [(_bytes(_text(f)), _bytes(encode_value(v))) for f, v in value.items()]
        return [x for pair in items for x in pair], {f.decode(): v.decode() for f, v in items}
    pairs = _score_pairs(value.items() if isinstance(value, Mapping) else value, key)
    ordered = sorted(pairs, key=lambda p: (p[1], p[0]), reverse=True)
    args = [x for member, score in pairs for x in (repr(score).encode(), member.encode())]
    return args, ordered


def _score_pairs(items: Iterable[Any], key: str) -> list[tuple[str, float]]:
    try:
        return [(_text(member), float(score)) for member, score in items]
    except (TypeError, ValueError):
        raise ConfigError(
            f"cache key {key!r}: a zset loader must return member -> score (numbers)"
        ) from None


def wrong_type(client: redis.Redis, full: str, shape: Shape) -> ConfigError:
    """The error for reading ``full`` as ``shape`` when Redis holds another type there."""
    try:
        actual = _text(client.type(full))
    except redis.RedisError:
        actual = "another type"
    named = {"string": "json", "hash": "hash", "zset": "zset"}.get(actual)
    hint = f"; read it with shape={named!r}" if named else ""
    return ConfigError(f"cache key {full!r} holds a {actual}, not a {shape} value{hint}")
