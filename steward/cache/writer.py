"""Turning a warmer's rows into pipelined Redis commands: SET EX, HSET + EXPIRE, ZADD.

One :class:`RowWriter` per warmer and target prefix. Commands are packed straight into a
:class:`~steward.storage.cache.CommandBatch` (RESP bytes) and sent in one write per batch.
Templates are compiled once into positional ``str.format`` strings over the row tuple; values
are encoded with orjson. Hash and sorted-set keys get their EXPIRE once, when first seen;
sorted sets are trimmed to ``max_members`` at the end.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson

from steward.errors import ConfigError
from steward.settings import WarmerSettings
from steward.storage.cache import CommandBatch

__all__ = ["RowWriter", "encode_value", "jittered_ttl"]


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # money keeps its digits
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def encode_json(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS)


def encode_value(value: Any) -> bytes | str | int | float:
    """A scalar as Redis stores it (Decimal as its digits); anything else as JSON."""
    if isinstance(value, str | bytes | int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return encode_json(value)


def jittered_ttl(ttl: int, jitter_pct: float, rng: random.Random) -> int:
    """``ttl`` drawn uniformly from ttl * (1 +/- jitter_pct/100), at least 1 second."""
    if not ttl or not jitter_pct:
        return ttl
    spread = ttl * jitter_pct / 100.0
    return max(1, round(ttl - spread + rng.random() * 2 * spread))


def _positional(template: str, columns: list[str]) -> str:
    """``product:{id}`` over columns [name, id] -> ``product:{1}`` (braces in text escaped)."""
    parts = []
    for literal, name, _, _ in string.Formatter().parse(template):
        parts.append(literal.replace("{", "{{").replace("}", "}}"))
        if name is not None:
            parts.append(f"{{{columns.index(name)}}}")
    return "".join(parts)


def _bytes(value: bytes | str | int | float) -> bytes:
    if isinstance(value, bytes):
        return value
    return (value if isinstance(value, str) else repr(value)).encode()


class RowWriter:
    """Queues one row's commands on a :class:`CommandBatch`; remembers hash/zset keys seen."""

    def __init__(
        self,
        warmer: WarmerSettings,
        columns: list[str],
        key_prefix: str,
        *,
        replace_keys: bool,
        rng: random.Random,
    ) -> None:
        self.warmer = warmer
        self.columns = columns
        escaped_prefix = key_prefix.replace("{", "{{").replace("}", "}}")
        self.key_format = escaped_prefix + _positional(warmer.key, columns)
        self.field_format = _positional(warmer.field, columns) if warmer.field else None
        self.value_index = columns.index(warmer.value) if warmer.value else None
        self.replace_keys = replace_keys  # refresh mode: a hash/zset is rebuilt, not merged
        self.rng = rng
        self.seen: set[bytes] = set()
        self.rows = 0
        spread = warmer.ttl_seconds * warmer.ttl_jitter_pct / 100.0
        self._ttl_low = warmer.ttl_seconds - spread + 0.5  # + 0.5: int() rounds
        self._ttl_span = 2 * spread
        self._random = rng.random
        if warmer.shape == "json" and self.value_index is None:
            self.add = self._json_rows()  # type: ignore[method-assign,assignment]

    def _json_rows(self) -> Callable[[CommandBatch, Sequence[Any]], None]:
        """``add`` for the commonest warmer (a row as a JSON string key), with the per-row
        work in locals: it runs once per key, millions of times."""
        key_format, columns, dumps = self.key_format.format, self.columns, orjson.dumps
        low, span, fixed, rand = (
            self._ttl_low,
            self._ttl_span,
            self.warmer.ttl_seconds,
            self._random,
        )
        counter = self

        def add(batch: CommandBatch, row: Sequence[Any]) -> None:
            counter.rows += 1
            ttl = max(1, int(low + rand() * span)) if span else fixed
            value = dumps(dict(zip(columns, row, strict=True)), default=_default)
            batch.add_set(key_format(*row).encode(), value, ttl)

        return add

    @property
    def keys(self) -> int:
        return self.rows if self.warmer.shape == "json" else len(self.seen)

    def ttl_seconds(self) -> int:
        """A jittered TTL (see :func:`jittered_ttl`), inlined: it runs once per key."""
        if not self._ttl_span:
            return self.warmer.ttl_seconds
        return max(1, int(self._ttl_low + self._random() * self._ttl_span))

    def ttl(self) -> bytes:
        return b"%d" % self.ttl_seconds()

    def add(self, batch: CommandBatch, row: Sequence[Any]) -> None:
        key = self.key_format.format(*row).encode()
        self.rows += 1
        shape = self.warmer.shape
        if shape == "json":
            if self.value_index is None:  # the hot path: whole row as a JSON object
                value = orjson.dumps(dict(zip(self.columns, row, strict=True)), default=_default)
            else:
                value = _bytes(encode_value(row[self.value_index]))
            batch.add_set(key, value, self.ttl_seconds())
            return
        first = key not in self.seen
        if first:
            self.seen.add(key)
            if self.replace_keys:
                batch.add(b"UNLINK", key)
        member = self.field_format.format(*row).encode() if self.field_format else b""
        if shape == "hash":
            batch.add(b"HSET", key, member, _bytes(self._row_value(row)))
        else:
            batch.add(b"ZADD", key, repr(self._score(row, key)).encode(), member)
        if first and self.warmer.ttl_seconds:
            batch.add(b"EXPIRE", key, self.ttl())

    def finish(self, batch: CommandBatch) -> None:
        """Trim sorted sets to ``max_members`` (highest scores kept)."""
        limit = self.warmer.max_members
        if self.warmer.shape == "zset" and limit:
            for key in self.seen:
                batch.add(b"ZREMRANGEBYRANK", key, b"0", b"%d" % -(limit + 1))

    def _row_value(self, row: Sequence[Any]) -> Any:
        if self.value_index is not None:
            return encode_value(row[self.value_index])
        return encode_json(dict(zip(self.columns, row, strict=True)))

    def _score(self, row: Sequence[Any], key: bytes) -> float:
        raw = row[self.value_index] if self.value_index is not None else None
        try:
            return float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(
                f"warmer {self.warmer.name!r}: score column {self.warmer.value!r} is {raw!r} "
                f"for key {key.decode()!r}, not a number; fix the query or cache.warmers"
            ) from None
