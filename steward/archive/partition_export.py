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

The COPY, its projection and the CSV -> Arrow conversion are the row batches' own
(:mod:`~steward.archive.pg_copy`); a table with a column that has no CSV form (a time with a
zone) is read in keyset batches through :class:`~steward.archive.sql_rows.TableRows` and
verified like a row batch.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast, overload

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.archive import manifest, pg_copy
from steward.archive.archiver import ArchiveContext, WrittenObject
from steward.archive.batch import SourceBatch
from steward.archive.formats import decode_table, time_range
from steward.archive.manifest import ManifestEntry, staged_key
from steward.archive.sql_rows import TableRows
from steward.archive.sql_source import SqlSource
from steward.errors import ArchiveVerificationFailed

__all__ = ["copy_batches", "copy_ready", "verify_exported"]


def copy_ready(source: SqlSource, conn: Connection) -> bool:
    """Whether every column has a CSV form (:mod:`~steward.archive.pg_copy`) and the driver is
    psycopg."""
    root = source.root
    return pg_copy.projection(root.table, root.specs) is not None and pg_copy.copy_ready(conn)


def copy_batches(source: SqlSource, rows: TableRows, conn: Connection) -> Iterator[SourceBatch]:
    """The partition's rows in key order, ``source.batch_size`` at a time."""
    selected = pg_copy.projection(rows.table, rows.specs)
    assert selected is not None  # copy_ready said so
    query = sa.select(*selected).order_by(*rows.keys)
    with pg_copy.copy_stream(conn, query, rows.specs) as reader:
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


def _batch(source: SqlSource, rows: TableRows, parsed: pa.Table) -> SourceBatch:
    """Wire columns to the archive's types, labelled with the parent's name."""
    arrow = pg_copy.to_archive(parsed, rows.specs)
    batch_id = uuid.uuid4().hex
    ts_min, ts_max = time_range(arrow.column(source.ts_name))
    return SourceBatch(
        batch_id=batch_id,
        payload=source._labelled(arrow, batch_id, source.root),
        keys=cast(list[Any], _Keys(arrow, rows)),  # used as a sequence only
        ts_min=ts_min,
        ts_max=ts_max,
    )


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
