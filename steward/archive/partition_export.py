"""Reading a detached partition at the speed of COPY, and verifying its objects in Arrow.

A whole partition needs no per-row guard (it is locked and leaves as a unit), so its rows are
streamed with ``COPY (SELECT … ORDER BY key) TO STDOUT (FORMAT csv)`` — the same projection
as row batches (timestamps as epoch microseconds, JSON as text) — and parsed by Arrow's
streaming CSV reader into batches of the policy's size, without a Python object per value.
The objects are the row path's: same schema, metadata, Parquet encoding and manifest entries.

Verification of each staged object: its size and SHA-256 as the store holds them equal those
of the bytes written; the bytes (those exact bytes when the store's own SHA-256 proves it holds
them, else downloaded) decode to exactly the rows read: same row count, same keys in the same
order (compared column by column in Arrow).

Only columns whose CSV text Arrow parses back exactly take this path (integers, booleans,
text, timestamps, JSON); a table with any other column type is read in keyset batches through
:class:`~steward.archive.sql_rows.TableRows` and verified like a row batch.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast, overload

import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from steward.archive import manifest
from steward.archive.archiver import ArchiveContext, WrittenObject
from steward.archive.batch import SourceBatch
from steward.archive.formats import decode_table, time_range
from steward.archive.manifest import ManifestEntry, staged_key
from steward.archive.sql_rows import TableRows
from steward.archive.sql_source import SqlSource
from steward.errors import ArchiveVerificationFailed

__all__ = ["copy_batches", "copy_ready", "verify_exported"]

_CSV_KINDS = {"int": pa.int64(), "bool": pa.bool_(), "string": pa.string()}
_WIRE_KINDS = {"timestamptz", "timestamp", "json"}  # sent as bigint micros / text
BLOCK = 4 << 20  # bytes Arrow parses at a time


def copy_ready(source: SqlSource, conn: Connection) -> bool:
    """Whether every column takes the COPY path (and the driver is psycopg)."""
    kinds = {spec.kind for spec in source.root.specs}
    driver = getattr(conn.connection, "driver_connection", None)
    return (
        kinds <= set(_CSV_KINDS) | _WIRE_KINDS
        and hasattr(driver, "cursor")
        and (conn.dialect.driver == "psycopg")
    )


def copy_batches(source: SqlSource, rows: TableRows, conn: Connection) -> Iterator[SourceBatch]:
    """The partition's rows in key order, ``source.batch_size`` at a time."""
    query = sa.select(*rows._selected).order_by(*rows.keys)
    text = str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    driver: Any = conn.connection.driver_connection
    with driver.cursor() as cursor, cursor.copy(f"COPY ({text}) TO STDOUT (FORMAT csv)") as copy:
        reader = pacsv.open_csv(
            io.BufferedReader(_Stream(iter(copy))),  # type: ignore[arg-type]
            read_options=pacsv.ReadOptions(column_names=_names(rows), block_size=BLOCK),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=_convert(rows),
        )  # fmt: skip
        pending: list[pa.RecordBatch] = []
        held = 0
        for part in reader:
            pending.append(part)
            held += part.num_rows
            while held >= source.batch_size:
                table = pa.Table.from_batches(pending)
                yield _batch(source, rows, table.slice(0, source.batch_size))
                rest = table.slice(source.batch_size)
                pending, held = rest.to_batches(), rest.num_rows
        if held:
            yield _batch(source, rows, pa.Table.from_batches(pending))


def _names(rows: TableRows) -> list[str]:
    return [spec.name for spec in rows.specs]


def _convert(rows: TableRows) -> pacsv.ConvertOptions:
    types = {}
    for spec in rows.specs:
        if spec.kind in ("timestamptz", "timestamp"):
            types[spec.name] = pa.int64()
        elif spec.kind == "json":
            types[spec.name] = pa.string()
        else:
            types[spec.name] = _CSV_KINDS[spec.kind]
    return pacsv.ConvertOptions(
        column_types=types,
        null_values=[""],  # PostgreSQL's CSV NULL: an unquoted empty field
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,  # "" is an empty string
        true_values=["t"],
        false_values=["f"],
    )


def _batch(source: SqlSource, rows: TableRows, parsed: pa.Table) -> SourceBatch:
    """Wire columns to the archive's types, labelled with the parent's name."""
    arrays = []
    for spec in rows.specs:
        column = parsed.column(spec.name).combine_chunks()
        if spec.kind == "json":
            column = pa.ExtensionArray.from_storage(spec.arrow_type, column)
        elif spec.kind in ("timestamptz", "timestamp"):
            column = column.cast(spec.arrow_type)
        arrays.append(column)
    schema = pa.schema([pa.field(spec.name, spec.arrow_type) for spec in rows.specs])
    arrow = pa.Table.from_arrays(arrays, schema=schema)
    batch_id = uuid.uuid4().hex
    ts_min, ts_max = time_range(arrow.column(source.ts_name))
    return SourceBatch(
        batch_id=batch_id,
        payload=source._labelled(arrow, batch_id, source.root),
        keys=cast(list[Any], _Keys(arrow, rows)),  # used as a sequence only
        ts_min=ts_min,
        ts_max=ts_max,
    )


class _Stream(io.RawIOBase):
    """The COPY's chunks as a readable byte stream."""

    def __init__(self, chunks: Iterator[Any]) -> None:
        self._chunks = chunks
        self._left = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not len(self._left):
            try:
                self._left = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._left))
        buffer[:size] = self._left[:size]
        self._left = self._left[size:]
        return size


class _Keys(Sequence[Any]):
    """A batch's keys, read from its Arrow columns when asked: the protocol needs the count
    and the first and last key, and one Python tuple per row would cost more than the COPY."""

    def __init__(self, arrow: pa.Table, rows: TableRows) -> None:
        self._arrow, self._rows = arrow, rows

    def __len__(self) -> int:
        return int(self._arrow.num_rows)

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Any]: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return self._rows.keys_of(self._arrow)[index]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        row = self._arrow.slice(index, 1)
        parts = tuple(_value(row.column(name)) for name in self._rows.key_names)
        return parts if self._rows.composite else parts[0]


def _value(column: pa.ChunkedArray) -> Any:
    """One value as Python; a timestamp built from its microseconds (Arrow's own conversion of
    a zoned timestamp imports pandas, seconds of a short run)."""
    if pa.types.is_timestamp(column.type):
        micros = column.cast(pa.int64())[0].as_py()
        zone = UTC if column.type.tz else None
        return datetime(1970, 1, 1, tzinfo=zone) + timedelta(microseconds=micros)
    return column[0].as_py()


def verify_exported(
    ctx: ArchiveContext, source: SqlSource, written: WrittenObject, batch: SourceBatch
) -> tuple[ManifestEntry, dict[str, str]]:
    """Check the staged object (size, SHA-256, decoded keys) -> 'verified'."""
    entry = written.entry
    where = staged_key(entry.object_key)
    info = ctx.store.head(where)
    if info.size != written.size or info.sha256 != written.sha256:
        raise ArchiveVerificationFailed(
            f"archive object {where!r} (table {source.name!r}) holds {info.size} bytes sha256 "
            f"{info.sha256[:16]}…, but {written.size} bytes sha256 {written.sha256[:16]}… were "
            "written; nothing was dropped, rerun the archive"
        )
    proven = bool(info.stored_sha256) and info.stored_sha256 == written.sha256
    data = written.data.get(entry.object_key) if proven else None
    decoded = decode_table(data if data is not None else ctx.store.get_bytes(where),
                           entry.format, source.root.specs)  # fmt: skip
    names = source.root.key_names
    if decoded.num_rows != entry.rows or not decoded.select(names).equals(
        batch.payload.select(names)
    ):
        raise ArchiveVerificationFailed(
            f"archive object {where!r} does not decode to the {entry.rows} rows of table "
            f"{source.name!r} written to it; nothing was dropped, rerun the archive"
        )
    with ctx.sql.begin() as conn:
        manifest.mark_verified(conn, entry.batch_id, size=written.size, sha256=written.sha256)
    entry.bytes, entry.sha256 = written.size, written.sha256
    ctx.fire("object_verified")
    return entry, {entry.object_key: where}
