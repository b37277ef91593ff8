"""Archive object formats: Parquet (default) and gzip'd JSON lines, both type-preserving.

A table's columns map to Arrow types that any Parquet reader (pyarrow, pandas, DuckDB,
Athena) understands: timestamps with time zone as ``timestamp[us, UTC]``, numerics as
``decimal128(p, s)``, JSON as Arrow's canonical JSON type, UUIDs as Arrow's UUID type.
Unconstrained numerics are kept as their exact decimal text. SQLite stores timestamps without
a zone; Steward writes UTC, so they are archived as UTC.

JSON is archived as its text, exactly as PostgreSQL gives it (``jsonb``'s ``1.50``, a ``json``
value's key order, duplicate keys and spacing), and restored as that text cast to the column's
type: nothing parses it in between. A time with a zone is archived as its text. Dates,
timestamps and times Python cannot hold (BC, after 9999, ``24:00:00``, ±infinity) restore
through PostgreSQL's text for them (:mod:`~steward.archive.pg_text`).

``jsonl.gz`` (:mod:`~steward.archive.jsonl`) holds one JSON object per row: timestamps as ISO
8601 with offset, numerics and UUIDs as strings, JSON columns as their text embedded;
decoding uses the column types to restore them.
Batches are built column-wise (one Arrow array per column), never row by row.

PostgreSQL's ``infinity`` / ``-infinity`` timestamps are stored as the int64 microsecond values
Arrow-based readers use for them: DuckDB reads ``2**63 - 1`` as ``infinity`` and
``-(2**63 - 1)`` as ``-infinity`` (the smallest int64 is pandas' NaT and DuckDB's year 290309
BC, so it is only accepted when reading objects written before). In jsonl.gz they are the
strings ``"infinity"`` / ``"-infinity"``. They come back as those strings, which PostgreSQL
parses into exactly the values archived.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from steward.archive import jsonl
from steward.archive.pg_text import (
    DAY_US,
    NEG_INFINITY_US,
    POS_INFINITY_US,
    PY_US,
    days_of,
    epoch_micros,
    pylist,
    time_micros,
)
from steward.errors import ConfigError

__all__ = [
    "NEG_INFINITY_US",
    "POS_INFINITY_US",
    "ColumnSpec",
    "column_specs",
    "decode_table",
    "encode_table",
    "guard_columns",
    "guard_values",
    "python_columns",
    "time_range",
    "to_arrow",
]

PARQUET, JSONL = "parquet", "jsonl.gz"
META_KEY = b"steward.archive"
DICTIONARY_SAMPLE = 4096  # rows whose distinct values decide a column's Parquet encoding
_OLD_NEG_INFINITY_US = -(2**63)  # what objects written before 2026-12 hold for -infinity


@dataclass(frozen=True)
class ColumnSpec:
    """How one column is archived: its name, kind and (for decimals) precision and scale."""

    name: str
    kind: str
    precision: int | None = None
    scale: int | None = None

    @property
    def arrow_type(self) -> pa.DataType:
        if self.kind == "decimal":
            return pa.decimal128(self.precision or 38, self.scale or 0)
        return _ARROW_TYPES[self.kind]


_ARROW_TYPES: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "numeric_text": pa.string(),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "timestamp": pa.timestamp("us"),
    "date": pa.date32(),
    "time": pa.time64("us"),
    "timetz": pa.string(),  # its text: time64 has no place for the zone offset
    "interval": pa.duration("us"),
    "json": pa.json_(),
    "uuid": pa.uuid(),
    "binary": pa.binary(),
}


def column_specs(table: sa.Table, dialect: str) -> list[ColumnSpec]:
    """Specs for every column of a reflected table; ConfigError names an unsupported column."""
    return [_spec(column, dialect, table.name) for column in table.columns]


def _spec(column: sa.Column, dialect: str, table: str) -> ColumnSpec:
    kind = _kind(column.type, dialect)
    if kind is None:
        raise ConfigError(
            f"table {table!r} column {column.name!r} has type {column.type!r}, which Steward "
            "cannot archive losslessly; exclude the table from archive.policies"
        )
    if kind == "decimal":
        precision, scale = column.type.precision, column.type.scale  # type: ignore[attr-defined]
        if precision is None or precision > 38:
            return ColumnSpec(column.name, "numeric_text")
        return ColumnSpec(column.name, kind, precision, scale or 0)
    return ColumnSpec(column.name, kind)


def _kind(col_type: sa.types.TypeEngine, dialect: str) -> str | None:
    checks: list[tuple[type, str]] = [
        (sa.Boolean, "bool"),
        (sa.Integer, "int"),
        (sa.Float, "float"),
        (sa.Numeric, "decimal"),
        (sa.DateTime, "timestamp"),
        (sa.Date, "date"),
        (sa.Time, "time"),
        (sa.Interval, "interval"),
        (sa.JSON, "json"),
        (sa.Uuid, "uuid"),
        (sa.LargeBinary, "binary"),
        (sa.types._Binary, "binary"),
        (sa.String, "string"),
    ]
    for sa_type, kind in checks:
        if isinstance(col_type, sa_type):
            if kind == "timestamp" and (col_type.timezone or dialect == "sqlite"):  # type: ignore[attr-defined]
                return "timestamptz"
            if kind == "time" and col_type.timezone:  # type: ignore[attr-defined]
                return "timetz"
            return kind
    return None


# Arrow <-> Python --------------------------------------------------------------------------


def to_arrow(
    specs: Sequence[ColumnSpec],
    columns: Sequence[Sequence[Any]],
    meta: dict[str, Any],
    wire: Sequence[str] | None = None,
) -> pa.Table:
    """Build an Arrow table from one value list per column (as read from the source).

    ``wire`` says how each column arrived: ``value`` (as the driver returns it), ``micros``
    (timestamps as epoch microseconds) or ``text`` (JSON as its text) — the last two let
    PostgreSQL skip building a Python object per value.
    """
    forms = wire or ["value"] * len(specs)
    arrays = [
        _arrow_array(spec, values, form)
        for spec, values, form in zip(specs, columns, forms, strict=True)
    ]
    schema = pa.schema(
        [pa.field(spec.name, spec.arrow_type) for spec in specs],
        metadata={META_KEY: json.dumps(meta, default=str).encode()},
    )
    return pa.Table.from_arrays(arrays, schema=schema)


def _arrow_array(spec: ColumnSpec, values: Sequence[Any], form: str) -> pa.Array:
    if form == "micros":
        return pa.array(values, pa.int64()).cast(spec.arrow_type)
    if form == "days":
        return pa.array(values, pa.int32()).cast(spec.arrow_type)
    if form == "text":
        return pa.ExtensionArray.from_storage(spec.arrow_type, pa.array(values, pa.string()))
    return pa.array(_to_arrow_values(spec, values), spec.arrow_type)


def _to_arrow_values(spec: ColumnSpec, values: Sequence[Any]) -> Sequence[Any]:
    if spec.kind == "json":
        return [None if v is None else json.dumps(v, separators=(",", ":")) for v in values]
    if spec.kind == "numeric_text":
        return [None if v is None else str(v) for v in values]
    if spec.kind == "uuid":
        return [v if v is None or isinstance(v, uuid.UUID) else uuid.UUID(str(v)) for v in values]
    return values


def python_columns(table: pa.Table, specs: Sequence[ColumnSpec]) -> dict[str, list[Any]]:
    """Python values per column to insert back: as the database driver would return them,
    except JSON, which stays the text archived (parsing it would turn ``1.50`` into ``1.5``,
    big integers into floats, and lose a ``json`` value's key order and duplicate keys); a
    restore casts it to the column's type (:meth:`TableRows.insert`)."""
    by_name = {spec.name: spec for spec in specs}
    return {
        name: _restored_values(by_name[name], pylist(table.column(name), by_name[name].kind))
        for name in table.column_names
        if name in by_name
    }


def _restored_values(spec: ColumnSpec, values: list[Any]) -> list[Any]:
    return values if spec.kind == "json" else _from_arrow_values(spec, values)


def time_range(column: pa.ChunkedArray) -> tuple[datetime | None, datetime | None]:
    """First and last instant of a timestamp or date column, as aware UTC datetimes
    (infinite values and years Python has not clamped to the smallest / largest datetime)."""
    if column.type == pa.date32():  # in days: ±infinity's days overflow microseconds
        days = pc.min_max(column.cast(pa.int32()))
        low, high = (days[end].as_py() for end in ("min", "max"))
        return _instant(None if low is None else low * DAY_US), _instant(
            None if high is None else high * DAY_US
        )
    bounds = pc.min_max(column.cast(pa.int64()))
    return _instant(bounds["min"].as_py()), _instant(bounds["max"].as_py())


def _instant(micros: int | None) -> datetime | None:
    if micros is None:
        return None
    if micros > PY_US[1]:  # infinity, or after 9999
        return datetime.max.replace(tzinfo=UTC)
    if micros < PY_US[0]:  # -infinity, or BC
        return datetime.min.replace(tzinfo=UTC)
    return _EPOCH + timedelta(microseconds=micros)


def _from_arrow_values(spec: ColumnSpec, values: list[Any]) -> list[Any]:
    if spec.kind == "json":
        return [None if v is None else json.loads(v) for v in values]
    if spec.kind == "numeric_text":
        return [None if v is None else Decimal(v) for v in values]
    if spec.kind == "timestamptz":
        return [v.astimezone(UTC) if isinstance(v, datetime) else v for v in values]
    return values


# Guard values: one canonical, cheap-to-compare form per kind -----------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_TIMESTAMPS = ("timestamptz", "timestamp")


def guard_columns(table: pa.Table, specs: Sequence[ColumnSpec]) -> list[list[Any]]:
    """Canonical values of ``specs``' columns from an archived batch (timestamps as epoch µs:
    Arrow casts them in one vectorised step instead of building datetime objects)."""
    columns = []
    for spec in specs:
        column = table.column(spec.name)
        if spec.kind in _TIMESTAMPS:
            micros = column.cast(pa.int64()).to_pylist()
            columns.append([NEG_INFINITY_US if m == _OLD_NEG_INFINITY_US else m for m in micros])
        elif spec.kind == "date":  # days: any date, ±infinity included
            columns.append(column.cast(pa.int32()).to_pylist())
        elif spec.kind == "time":  # microseconds: 24:00:00 included
            columns.append(column.cast(pa.int64()).to_pylist())
        else:
            columns.append(_from_arrow_values(spec, column.to_pylist()))
    return columns


def guard_values(values: Sequence[Any], spec: ColumnSpec) -> Sequence[Any]:
    """The canonical form of one column's values as the database driver returned them."""
    if spec.kind == "date":
        return [v if v is None or isinstance(v, int) else days_of(v) for v in values]
    if spec.kind == "time":
        return [v if v is None or isinstance(v, int) else time_micros(v) for v in values]
    if spec.kind not in _TIMESTAMPS:
        return values
    return [
        value if value is None or isinstance(value, int) else epoch_micros(value)
        for value in values
    ]  # PostgreSQL sends epoch microseconds already


# Encoding ------------------------------------------------------------------------------------


def encode_table(table: pa.Table, fmt: str) -> bytes:
    """Serialise an Arrow batch as Parquet (zstd) or jsonl.gz."""
    if fmt == PARQUET:
        sink = io.BytesIO()
        repeating = _repeating(table)
        pq.write_table(
            table,
            sink,
            compression="zstd",
            use_dictionary=repeating,
            column_encoding=_deltas(table, repeating),
        )
        return sink.getvalue()
    if fmt == JSONL:
        return jsonl.encode(table)
    raise ConfigError(f"archive format {fmt!r}: accepted parquet or jsonl.gz")


def _repeating(table: pa.Table) -> list[str]:
    """Columns whose values repeat (at most half of a sample of them distinct): only those get
    a Parquet dictionary. A key, a timestamp or a reference unique to each row would be hashed
    into a dictionary as large as the column, then written as indices too: half the encode
    time of an append-only batch, and objects twice the size. A sample, because counting the
    distinct values of whole columns costs more than the encoding saves."""
    sample = table.slice(0, DICTIONARY_SAMPLE)
    names = []
    for field, column in zip(sample.schema, sample.columns, strict=True):
        if isinstance(field.type, pa.BaseExtensionType):
            column = pa.chunked_array([c.storage for c in column.chunks], field.type.storage_type)
        if pc.count_distinct(column, mode="all").as_py() * 2 <= sample.num_rows:
            names.append(field.name)
    return names


def _deltas(table: pa.Table, repeating: Sequence[str]) -> dict[str, str]:
    """Integer-like columns without a dictionary (keys, timestamps, dates, times): stored as
    the differences of consecutive values, bit-packed. Keyset batches hold them nearly in
    order, so an append-only batch's object is a fifth of its plain + zstd size, no slower
    to write and faster to read back (every Parquet reader knows the encoding)."""
    deltas = {}
    for field in table.schema:
        kind = field.type
        integral = pa.types.is_integer(kind) and not pa.types.is_unsigned_integer(kind)
        temporal = pa.types.is_timestamp(kind) or pa.types.is_date32(kind) or pa.types.is_time(kind)
        if (integral or temporal) and field.name not in repeating:
            deltas[field.name] = "DELTA_BINARY_PACKED"
    return deltas


def decode_table(data: bytes, fmt: str, specs: Sequence[ColumnSpec]) -> pa.Table:
    """Read an object back into Arrow (typed by ``specs`` for jsonl.gz)."""
    if fmt == PARQUET:  # not pq.read_table: its dataset layer imports pandas (0.5 s, 35 MiB)
        return pq.ParquetFile(pa.BufferReader(data)).read()
    if fmt == JSONL:
        columns, wire = jsonl.decode_columns(data, specs)
        return to_arrow(specs, columns, {"format": JSONL}, wire)
    raise ConfigError(f"archive format {fmt!r}: accepted parquet or jsonl.gz")
