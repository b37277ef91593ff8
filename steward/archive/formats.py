"""Archive object formats: Parquet (default) and gzip'd JSON lines, both type-preserving.

A table's columns map to Arrow types that any Parquet reader (pyarrow, pandas, DuckDB,
Athena) understands: timestamps with time zone as ``timestamp[us, UTC]``, numerics as
``decimal128(p, s)``, JSON as Arrow's canonical JSON type, UUIDs as Arrow's UUID type.
Unconstrained numerics are kept as their exact decimal text. SQLite stores timestamps without
a zone; Steward writes UTC, so they are archived as UTC.

``jsonl.gz`` holds one JSON object per row: timestamps as ISO 8601 with offset, numerics and
UUIDs as strings, JSON columns as JSON; decoding uses the column types to restore them.
Batches are built column-wise (one Arrow array per column), never row by row.

PostgreSQL's ``infinity`` / ``-infinity`` timestamps are stored as the int64 microsecond values
Arrow-based readers use for them: DuckDB reads ``2**63 - 1`` as ``infinity`` and
``-(2**63 - 1)`` as ``-infinity`` (the smallest int64 is pandas' NaT and DuckDB's year 290309
BC, so it is only accepted when reading objects written before). In jsonl.gz they are the
strings ``"infinity"`` / ``"-infinity"``. They come back as those strings, which PostgreSQL
parses into exactly the values archived.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

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
POS_INFINITY_US = 2**63 - 1  # DuckDB's (and Arrow readers') infinity timestamp
NEG_INFINITY_US = -(2**63 - 1)  # DuckDB's -infinity: one above the smallest int64
DICTIONARY_SAMPLE = 4096  # rows whose distinct values decide a column's Parquet encoding
_OLD_NEG_INFINITY_US = -(2**63)  # what objects written before 2026-12 hold for -infinity
INFINITY = {
    POS_INFINITY_US: "infinity",
    NEG_INFINITY_US: "-infinity",
    _OLD_NEG_INFINITY_US: "-infinity",
}


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
        name: _restored_values(by_name[name], _pylist(table.column(name), by_name[name]))
        for name in table.column_names
        if name in by_name
    }


def _restored_values(spec: ColumnSpec, values: list[Any]) -> list[Any]:
    return values if spec.kind == "json" else _from_arrow_values(spec, values)


def _pylist(column: pa.ChunkedArray, spec: ColumnSpec) -> list[Any]:
    """Python values of a column; infinite timestamps as "infinity" / "-infinity"."""
    if spec.kind not in _TIMESTAMPS:
        return column.to_pylist()
    micros = column.cast(pa.int64()).to_pylist()
    if not any(m in INFINITY for m in micros):
        return column.to_pylist()
    finite = pa.array([None if m in INFINITY else m for m in micros], pa.int64())
    values = finite.cast(column.type).to_pylist()
    return [
        INFINITY.get(m, v) if m is not None else None for m, v in zip(micros, values, strict=True)
    ]


def time_range(column: pa.ChunkedArray) -> tuple[datetime | None, datetime | None]:
    """First and last instant of a timestamp or date column, as aware UTC datetimes
    (infinite values clamped to the smallest / largest datetime)."""
    if column.type == pa.date32():
        column = column.cast(pa.timestamp("us"))
    bounds = pc.min_max(column.cast(pa.int64()))
    return _instant(bounds["min"].as_py()), _instant(bounds["max"].as_py())


def _instant(micros: int | None) -> datetime | None:
    if micros is None:
        return None
    if micros == POS_INFINITY_US:
        return datetime.max.replace(tzinfo=UTC)
    if micros in (NEG_INFINITY_US, _OLD_NEG_INFINITY_US):
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
        else:
            columns.append(_from_arrow_values(spec, column.to_pylist()))
    return columns


def guard_values(values: Sequence[Any], spec: ColumnSpec) -> Sequence[Any]:
    """The canonical form of one column's values as the database driver returned them."""
    if spec.kind not in _TIMESTAMPS:
        return values
    return [
        value if value is None or isinstance(value, int) else _epoch_micros(value)
        for value in values
    ]  # PostgreSQL sends epoch microseconds already


def _epoch_micros(value: datetime) -> int:
    # Naive values: SQLite, or timestamp without time zone — UTC by convention.
    delta = value - (_EPOCH if value.tzinfo is not None else _EPOCH_NAIVE)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


# Encoding ------------------------------------------------------------------------------------


def encode_table(table: pa.Table, fmt: str) -> bytes:
    """Serialise an Arrow batch as Parquet (zstd) or jsonl.gz."""
    if fmt == PARQUET:
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd", use_dictionary=_repeating(table))
        return sink.getvalue()
    if fmt == JSONL:
        return _encode_jsonl(table)
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


def decode_table(data: bytes, fmt: str, specs: Sequence[ColumnSpec]) -> pa.Table:
    """Read an object back into Arrow (typed by ``specs`` for jsonl.gz)."""
    if fmt == PARQUET:  # not pq.read_table: its dataset layer imports pandas (0.5 s, 35 MiB)
        return pq.ParquetFile(pa.BufferReader(data)).read()
    if fmt == JSONL:
        return _decode_jsonl(data, specs)
    raise ConfigError(f"archive format {fmt!r}: accepted parquet or jsonl.gz")


def _encode_jsonl(table: pa.Table) -> bytes:
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
    if pa.types.is_timestamp(column.type):
        return _pylist(column, ColumnSpec("", "timestamp"))
    return column.to_pylist()


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


def _decode_jsonl(data: bytes, specs: Sequence[ColumnSpec]) -> pa.Table:
    # "\n" only: a JSON value's text may hold U+2028 or U+0085, which splitlines() splits on
    lines = [line for line in gzip.decompress(data).decode().split("\n") if line]
    rows = [json.loads(line) for line in lines]
    texts = [_raw_fields(line) for line in lines] if any(s.kind == "json" for s in specs) else []
    columns = [
        [t.get(spec.name) for t in texts]
        if spec.kind == "json"
        else [_parse(spec, row.get(spec.name)) for row in rows]
        for spec in specs
    ]
    wire = [_JSONL_WIRE.get(spec.kind, "value") for spec in specs]
    return to_arrow(specs, columns, {"format": JSONL}, wire)


_JSONL_WIRE = {"timestamptz": "micros", "timestamp": "micros", "json": "text"}
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
    if kind in _TIMESTAMPS:
        if value in ("infinity", "-infinity"):
            return POS_INFINITY_US if value == "infinity" else NEG_INFINITY_US
        return _epoch_micros(datetime.fromisoformat(value))
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "time":
        return time.fromisoformat(value)
    if kind == "interval":
        return timedelta(microseconds=value["us"])
    if kind == "decimal":
        return Decimal(value)
    if kind == "uuid":
        return uuid.UUID(value)
    if kind == "binary":
        return base64.b64decode(value)
    return value
