"""The jsonl.gz archive format: gzip'd JSON lines, one object per row.

Timestamps are ISO 8601 with offset, numerics and UUIDs strings, binary base64, and a JSON
column its archived text embedded as is (so ``1.50``, big numbers, key order and duplicate
keys survive; SQL NULL leaves the field out, JSON null is ``null``). Dates, timestamps and
times Python cannot hold are PostgreSQL's text for them (:mod:`~steward.archive.pg_text`).
Decoding uses the column types (:class:`~steward.archive.formats.ColumnSpec`).
"""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from steward.archive.pg_text import (
    DATE_INFINITY,
    DAY_US,
    NEG_INFINITY_US,
    POS_INFINITY_US,
    days_of,
    epoch_micros,
    micros_of,
    pylist,
    time_micros,
)

if TYPE_CHECKING:
    from steward.archive.formats import ColumnSpec

__all__ = ["decode_columns", "encode"]


def encode(table: pa.Table) -> bytes:
    """One compact JSON object per line. A JSON column's value is its archived text, as is
    (a JSON null is ``null``; SQL NULL leaves the field out), so no number or key is
    rewritten; line breaks between its tokens (only a ``json`` column keeps them) become
    spaces, as a line cannot hold them."""
    names = table.column_names
    columns = [_jsonl_values(table.column(name)) for name in names]
    raw = [field.type == pa.json_() for field in table.schema]
    prefixes = [json.dumps(name) + ":" for name in names]
    lines = []
    for values in zip(*columns, strict=True):
        fields = [
            prefix + (_one_line(value) if is_json else json.dumps(_json_value(value)))
            for prefix, value, is_json in zip(prefixes, values, raw, strict=True)
            if value is not None or not is_json
        ]
        lines.append("{" + ",".join(fields) + "}")
    text = "\n".join(lines) + ("\n" if lines else "")
    return gzip.compress(text.encode(), compresslevel=6, mtime=0)


def _one_line(text: str) -> str:
    # A JSON string cannot hold a raw line break: these are whitespace between tokens.
    return text.replace("\r", " ").replace("\n", " ") if "\n" in text or "\r" in text else text


def _jsonl_values(column: pa.ChunkedArray) -> list[Any]:
    """Python values; a date, timestamp or time Python cannot hold as PostgreSQL's text."""
    if pa.types.is_timestamp(column.type):
        return pylist(column, "timestamptz" if column.type.tz else "timestamp")
    return pylist(column, {pa.date32(): "date", pa.time64("us"): "time"}.get(column.type, ""))


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return {"us": (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds}
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def decode_columns(data: bytes, specs: Sequence[ColumnSpec]) -> tuple[list[list[Any]], list[str]]:
    """One value list per column of ``specs`` and the form each comes in (``to_arrow``'s
    ``wire``)."""
    # Split on "\n" only: a JSON value's text may hold U+2028 or U+0085 (splitlines splits).
    lines = [line for line in gzip.decompress(data).decode().split("\n") if line]
    rows = [json.loads(line) for line in lines]
    texts = [_raw_fields(line) for line in lines] if any(s.kind == "json" for s in specs) else []
    columns = [
        [t.get(spec.name) for t in texts]
        if spec.kind == "json"
        else [_parse(spec, row.get(spec.name)) for row in rows]
        for spec in specs
    ]
    return columns, [_WIRE.get(spec.kind, "value") for spec in specs]


_WIRE = {
    "timestamptz": "micros",
    "timestamp": "micros",
    "date": "days",
    "time": "micros",
    "json": "text",
}
_DAYS = {text: days for days, text in DATE_INFINITY.items()}


_DECODER = json.JSONDecoder()
_SPACE = " \t\n\r"


def _raw_fields(line: str) -> dict[str, str]:
    """Each field of a JSON object line as its text, exactly as written (whitespace around
    the value included): what a JSON column holds."""
    fields: dict[str, str] = {}
    at = _skip(line, line.index("{") + 1)
    while line[at] != "}":
        name, at = _DECODER.raw_decode(line, at)
        start = at = _skip(line, at) + 1  # past the ':'
        _, at = _DECODER.raw_decode(line, _skip(line, at))
        at = _skip(line, at)
        fields[name] = line[start:at]
        if line[at] == ",":
            at = _skip(line, at + 1)
    return fields


def _skip(line: str, at: int) -> int:
    while line[at] in _SPACE:
        at += 1
    return at


def _parse(spec: ColumnSpec, value: Any) -> Any:
    if value is None:
        return None
    kind = spec.kind
    if kind in ("timestamptz", "timestamp"):
        if value in ("infinity", "-infinity"):
            return POS_INFINITY_US if value == "infinity" else NEG_INFINITY_US
        try:
            return epoch_micros(datetime.fromisoformat(value))
        except ValueError:  # outside Python's years: PostgreSQL's text (pg_text)
            return micros_of(value)
    if kind == "date":
        return _DAYS.get(value) or days_of(value)
    if kind == "time":
        return DAY_US if value.startswith("24:") else time_micros(time.fromisoformat(value))
    if kind == "interval":
        return timedelta(microseconds=value["us"])
    if kind == "decimal":
        return Decimal(value)
    if kind == "uuid":
        return uuid.UUID(value)
    if kind == "binary":
        return base64.b64decode(value)
    return value
