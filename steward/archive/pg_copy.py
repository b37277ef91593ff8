"""PostgreSQL rows straight into Arrow: ``COPY (SELECT …) TO STDOUT (FORMAT csv)`` parsed by
Arrow's CSV reader, without a Python object per value.

Each column is selected in a text form Arrow parses exactly, with an explicit type, and turned
into its archive type column-wise (:func:`to_archive`):

======================  =====================================  ================================
kind                    sent as                                becomes
======================  =====================================  ================================
int, float, bool        the value's text (``t`` / ``f``)      int64, float64, bool
string, numeric_text    the text                               string
decimal                 the text (printed with the scale)      decimal128(p, s)
timestamptz, timestamp  PostgreSQL's binary form               timestamp[us]: epoch microseconds,
                        (``timestamptz_send``: microseconds    ±infinity as DuckDB reads them
                        since 2000-01-01, big-endian, hex)     (as :func:`pg_micros` gives)
date                    days since 1970-01-01 (±infinity as    date32
                        ``±(2**31 - 1)``, DuckDB's)
time                    microseconds since midnight            time64[us] (``24:00`` included)
timetz                  its text (``12:30:00+05:30``)          string
json                    its text                               Arrow's JSON type
uuid                    its text                               UUID (16 bytes, hex decoded)
binary                  ``encode(v, 'hex')``                   binary (hex decoded)
======================  =====================================  ================================

PostgreSQL's CSV writes NULL as an unquoted empty field and an empty string as ``""``; text
keeps commas, quotes, newlines and backslashes inside quotes. A column of another kind (a time
of another kind makes :func:`projection` answer None: the caller reads that table through
psycopg's rows instead.

The statement is SQLAlchemy's compiled SQL; its parameters are bound by psycopg (COPY takes no
server-side parameters, so psycopg quotes them into the statement itself).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable, Generator, Iterator, Sequence
from datetime import date
from typing import Any, cast

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa
from psycopg import pq, sql
from psycopg.pq.abc import PGconn
from psycopg.waiting import Wait
from sqlalchemy.engine import Connection
from sqlalchemy.sql.compiler import SQLCompiler

from steward.archive.formats import NEG_INFINITY_US, POS_INFINITY_US, ColumnSpec
from steward.archive.pg_text import DATE_INFINITY

__all__ = [
    "copy_ready",
    "csv_options",
    "int64_values",
    "pg_days",
    "pg_time",
    "named_batches",
    "unparsed",
    "pg_micros",
    "projection",
    "read_copy",
    "to_archive",
]

BLOCK = 4 << 20  # bytes Arrow parses at a time from a stream
_EPOCH_DAY = date(1970, 1, 1)
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01, PostgreSQL's epoch, in Unix microseconds
_PG_INFINITY, _PG_NEG_INFINITY = 2**63 - 1, -(2**63)  # how PostgreSQL stores ±infinity
_LAST_US = POS_INFINITY_US - 1 - _PG_EPOCH_US  # the last PostgreSQL value with a place in int64

# The CSV type Arrow parses each kind's wire form into.
_CSV_TYPES: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "numeric_text": pa.string(),
    "timestamptz": pa.string(),
    "timestamp": pa.string(),
    "timetz": pa.string(),
    "date": pa.int32(),
    "time": pa.int64(),
    "json": pa.string(),
    "uuid": pa.string(),
    "binary": pa.string(),
}


def pg_micros(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """A timestamp as epoch microseconds; ``infinity`` / ``-infinity`` as DuckDB reads them
    (``2**63 - 1`` / ``-(2**63 - 1)``)."""
    micros = sa.cast(sa.extract("epoch", column) * 1_000_000, sa.BigInteger)
    return sa.case(
        (column.is_(None), sa.null()),
        (sa.func.isfinite(column), micros),
        (column > sa.func.now(), sa.literal(POS_INFINITY_US, sa.BigInteger)),
        else_=sa.literal(NEG_INFINITY_US, sa.BigInteger),
    )


def pg_days(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """A date as days since 1970-01-01; ``infinity`` / ``-infinity`` as DuckDB's
    ``±(2**31 - 1)`` (subtracting an infinite date is an error)."""
    plus, minus = sorted(DATE_INFINITY, reverse=True)
    epoch = sa.literal(_EPOCH_DAY, sa.Date)
    return sa.case(
        (sa.func.isfinite(column), column - epoch),
        (column > epoch, sa.literal(plus, sa.Integer)),
        (column < epoch, sa.literal(minus, sa.Integer)),
    )  # NULL: no branch matches


def pg_time(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """A time of day as microseconds since midnight (``24:00:00`` included, which Python's
    ``time`` cannot hold)."""
    return sa.cast(sa.extract("epoch", column) * 1_000_000, sa.BigInteger)


def _wire(column: sa.Column, spec: ColumnSpec) -> sa.ColumnElement[Any] | None:
    kind = spec.kind
    if kind in ("timestamptz", "timestamp"):
        # Its 8 bytes as they are: a third of the cost of EXTRACT(epoch …), which computes in
        # NUMERIC (20 ms of PostgreSQL's time per 20,000 rows).
        return getattr(sa.func, f"{kind}_send")(column)
    if kind == "date":
        return pg_days(column)
    if kind == "time":
        return pg_time(column)
    if kind in ("json", "uuid", "timetz"):
        return sa.cast(column, sa.Text)
    if kind == "binary":
        return sa.func.encode(column, sa.literal("hex"))
    return column if kind in _CSV_TYPES or kind == "decimal" else None


def projection(table: sa.Table, specs: Sequence[ColumnSpec]) -> list[Any] | None:
    """The SELECT list that sends ``table``'s columns in their CSV wire forms (see module),
    or None when a column has none."""
    selected = []
    for column, spec in zip(table.columns, specs, strict=True):
        wired = _wire(column, spec)
        if wired is None:
            return None
        selected.append(wired.label(column.name) if wired is not column else column)
    return selected


def copy_ready(conn: Connection) -> bool:
    """Whether the connection's driver is psycopg (COPY goes through its cursor)."""
    driver = getattr(conn.connection, "driver_connection", None)
    return conn.dialect.driver == "psycopg" and isinstance(driver, psycopg.Connection)


# Running the COPY ---------------------------------------------------------------------------


def _statement(conn: Connection, query: sa.Select[Any]) -> tuple[sql.Composed, dict[str, Any]]:
    """``COPY (query) TO STDOUT (FORMAT csv)`` and its parameters, as SQLAlchemy would send
    them (bind processors applied)."""
    compiled = cast(
        SQLCompiler,
        query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True}),
    )
    # What SQLAlchemy's execution context does to each value before the driver binds it.
    processors = compiled._bind_processors
    escaped = compiled.escaped_bind_names
    params = {}
    for name, value in compiled.construct_params(escape_names=False).items():
        processor = processors.get(name)
        params[escaped.get(name, name)] = processor(value) if callable(processor) else value
    copy = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(sql.SQL(compiled.string))
    return copy, params


def _copied(conn: Connection, query: sa.Select[Any]) -> bytearray:
    """The COPY's whole output (one batch: bounded by the batch size), on the connection's
    transaction; driver errors come out as SQLAlchemy's (a lost connection invalidates it)."""
    statement, params = _statement(conn, query)
    driver: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
    data = bytearray()
    try:
        with driver.cursor() as cursor, cursor.copy(statement, params):
            # Drained by one generator that psycopg's wait loop (C) drives: iterating the
            # Copy costs four Python frames and a new generator per row, a third of the read
            # busy time, and every one of them waits for the GIL the encode/upload threads
            # hold. Once the final result is consumed, the Copy's exit has nothing to do.
            driver.wait(_drain(driver.pgconn, data))
    except psycopg.Error as exc:
        text = statement.as_string(driver)
        lost = conn.dialect.is_disconnect(exc, conn.connection, None)  # type: ignore[arg-type]
        error = sa.exc.DBAPIError.instance(
            text, params, exc, psycopg.Error, connection_invalidated=lost
        )
        if lost:
            conn.invalidate(exc)
        raise error from exc
    return data


def _drain(pgconn: PGconn, sink: bytearray) -> Generator[Wait, Any, None]:
    """Every row of a running ``COPY … TO STDOUT`` into ``sink``, then its final result (an
    error raised as psycopg's), waiting on the socket only when libpq holds no whole row
    (as psycopg's own ``copy_from`` does, without a call per row)."""
    while True:
        size, row = pgconn.get_copy_data(1)  # 1: never blocks; 0 = no whole row buffered yet
        if size > 0:
            sink += row
        elif size == 0:
            yield from _readable(pgconn)
        else:  # -1: the COPY is over; its result follows
            break
    failed = None
    while True:  # to the end (None), so that the connection is ready for its next statement
        while pgconn.is_busy():
            yield from _readable(pgconn)
        result = pgconn.get_result()
        if result is None:
            break
        if result.status != pq.ExecStatus.COMMAND_OK:
            failed = failed or result
    if failed is not None:
        raise psycopg.errors.error_from_result(failed)


def _readable(pgconn: PGconn) -> Generator[Wait, Any, None]:
    while not (yield Wait.R):  # the wait loop sends what the socket is ready for
        continue
    pgconn.consume_input()


def _options(
    names: Sequence[str], types: dict[str, pa.DataType], block: int | None = None
) -> dict[str, Any]:
    # One thread: a batch is a few MiB, the archive's own threads already keep both cores of a
    # small host busy, and Arrow's pool only adds hand-offs (more CPU per batch, not less).
    read = pacsv.ReadOptions(column_names=list(names), use_threads=False)
    if block:
        read.block_size = block
    return {
        "read_options": read,
        "parse_options": pacsv.ParseOptions(newlines_in_values=True),
        "convert_options": pacsv.ConvertOptions(
            column_types=types,
            null_values=[""],  # PostgreSQL's CSV NULL: an unquoted empty field
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,  # "" is an empty string
            true_values=["t"],
            false_values=["f"],
        ),
    }


def csv_options(specs: Sequence[ColumnSpec], block: int = BLOCK) -> dict[str, Any]:
    """Arrow's CSV options (``open_csv`` / ``read_csv`` keywords) for the COPY output of a
    :func:`projection` of ``specs`` read from elsewhere (whole partitions: psql's pipe)."""
    return _options([spec.name for spec in specs], _csv_types(specs, ()), block)


def _csv_types(specs: Sequence[ColumnSpec], extra: Sequence[str]) -> dict[str, pa.DataType]:
    types = {s.name: s.arrow_type if s.kind == "decimal" else _CSV_TYPES[s.kind] for s in specs}
    types.update({name: pa.int64() for name in extra})
    return types


def read_copy(
    conn: Connection, query: sa.Select[Any], specs: Sequence[ColumnSpec], extra: Sequence[str] = ()
) -> tuple[pa.Table, dict[str, pa.Array]]:
    """Run ``query`` (a :func:`projection`, then ``extra`` bigint columns) through COPY: the
    rows as an Arrow table of archive types, and the extra columns by name."""
    names = [spec.name for spec in specs] + list(extra)
    data = _copied(conn, query)
    if data:
        source = pa.BufferReader(pa.py_buffer(data))
        try:
            parsed = pacsv.read_csv(source, **_options(names, _csv_types(specs, extra)))
        except pa.ArrowInvalid as exc:
            raise unparsed(exc, names) from exc
    else:
        types = _csv_types(specs, extra)
        parsed = pa.Table.from_arrays([_empty(types[name]) for name in names], names=names)
    extras = {name: parsed.column(name).combine_chunks() for name in extra}
    return to_archive(parsed, specs), extras


def named_batches(
    open_reader: Callable[[], Iterator[pa.RecordBatch]], names: Sequence[str]
) -> Iterator[Any]:
    """The batches of the CSV reader ``open_reader`` opens (opening parses the first block);
    a value Arrow cannot parse is reported by :func:`unparsed`."""
    try:
        yield from open_reader()
    except pa.ArrowInvalid as exc:
        raise unparsed(exc, names) from exc


def unparsed(exc: pa.ArrowInvalid, names: Sequence[str]) -> ValueError:
    """Arrow's parse error with the column's name instead of its index: a ``NUMERIC(p, s)``
    NaN, which the archive's ``decimal128(p, s)`` cannot hold, stops the batch (its rows stay
    in the table) with ``column 'price': The string 'NaN' is not a valid decimal128 …``."""
    text = str(exc)
    match = re.match(r"In CSV column #(\d+): (.*)", text, re.S)
    if match and int(match.group(1)) < len(names):
        text = f"column {names[int(match.group(1))]!r}: {match.group(2)}"
    return ValueError(f"{text}; the batch is not archived")


# Wire -> archive types ----------------------------------------------------------------------


def to_archive(parsed: pa.Table, specs: Sequence[ColumnSpec]) -> pa.Table:
    """The parsed wire columns as the archive's types (see module), in ``specs``' order."""
    arrays = [_archived(parsed.column(spec.name).combine_chunks(), spec) for spec in specs]
    schema = pa.schema([pa.field(spec.name, spec.arrow_type) for spec in specs])
    return pa.Table.from_arrays(arrays, schema=schema)


def _archived(column: pa.Array, spec: ColumnSpec) -> pa.Array:
    kind = spec.kind
    if kind in ("timestamptz", "timestamp"):
        return _epoch_micros(column).view(spec.arrow_type)
    if kind == "time":
        return column.view(spec.arrow_type)  # same 64-bit values, no copy
    if kind == "date":
        return column.view(pa.date32())
    if kind == "json":
        return pa.ExtensionArray.from_storage(spec.arrow_type, column)
    if kind == "uuid":
        digits = pc.replace_substring(column, "-", "")
        return pa.ExtensionArray.from_storage(spec.arrow_type, _unhex(digits, 16))
    if kind == "binary":
        return _unhex(column, None)
    return column


def _epoch_micros(sent: pa.Array) -> pa.Array:
    """``\\x`` + 16 hex digits per value (PostgreSQL's big-endian microseconds since
    2000-01-01; ±infinity as the largest / smallest int64) -> epoch microseconds, ±infinity as
    ``±(2**63 - 1)``."""
    digits = pc.utf8_slice_codeunits(sent, 2)
    stored = _unhex(digits, 8)
    values = np.frombuffer(stored.buffers()[1], ">i8")[stored.offset : stored.offset + len(stored)]
    micros = values.astype(np.int64)
    finite = (micros != _PG_INFINITY) & (micros != _PG_NEG_INFINITY)
    if np.any(micros[finite] > _LAST_US):  # would wrap around int64 (and read as a past date)
        raise ValueError(
            "a timestamp after 294246-12-31 AD is beyond the archive's epoch microseconds "
            "(int64); the batch is not archived"
        )
    micros[finite] += _PG_EPOCH_US
    micros[micros == _PG_NEG_INFINITY] = NEG_INFINITY_US
    return pa.Array.from_buffers(
        pa.int64(), len(micros), [stored.buffers()[0], pa.py_buffer(micros)], stored.null_count
    )


def _unhex(digits: pa.Array, width: int | None) -> pa.Array:
    """Hex text to bytes, the whole column at once: every value has an even number of digits,
    so the concatenated digits of the values present decode to their concatenated bytes, and
    their offsets halve. (Arrow and NumPy only: a Python value anywhere, even one scalar,
    makes pyarrow import pandas — 0.5 s and 35 MiB.)"""
    present = digits.drop_null() if digits.null_count else digits
    offsets = np.frombuffer(present.buffers()[1], np.int32)[
        present.offset : present.offset + len(present) + 1
    ]
    raw = present.buffers()[2]
    data = binascii.a2b_hex(memoryview(raw)[offsets[0] : offsets[-1]]) if raw else b""
    if width:
        if len(data) != width * len(present):
            raise ValueError(f"a value of {width * 2} hex digits was expected")
        values = pa.Array.from_buffers(pa.binary(width), len(present), [None, pa.py_buffer(data)])
    else:
        halves = pa.py_buffer(((offsets - offsets[0]) // 2).astype(np.int32))
        values = pa.Array.from_buffers(
            pa.binary(), len(present), [None, halves, pa.py_buffer(data)]
        )
    return pc.take(values, _positions(digits)) if digits.null_count else values


def _positions(column: pa.Array) -> pa.Array:
    """For each value, its index among the values present (null where it is null)."""
    bits = pc.is_valid(column).buffers()[1]
    present = np.unpackbits(np.frombuffer(bits, np.uint8), count=len(column), bitorder="little")
    index = np.cumsum(present, dtype=np.int64) - 1
    return pa.Array.from_buffers(pa.int64(), len(column), [bits, pa.py_buffer(index)])


def int64_values(column: pa.Array) -> np.ndarray:
    """An int64 column without nulls as a NumPy view of its buffer (``to_numpy`` would import
    pandas: see :func:`_unhex`)."""
    if column.null_count:
        raise ValueError("an int64 column with nulls has no NumPy view")
    return np.frombuffer(column.buffers()[1], np.int64)[column.offset : column.offset + len(column)]


def _empty(data_type: pa.DataType) -> pa.Array:
    """A column of no values (built from buffers: see :func:`_unhex` on pandas)."""
    if pa.types.is_string(data_type):
        return pa.Array.from_buffers(
            data_type, 0, [None, pa.py_buffer(bytes(4)), pa.py_buffer(b"")]
        )
    return pa.Array.from_buffers(data_type, 0, [None, pa.py_buffer(b"")])
