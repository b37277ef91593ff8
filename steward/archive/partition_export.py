"""Exporting a detached partition at the speed of COPY: a stream of Parquet objects.

A whole partition needs no per-row guard (it is locked and leaves as a unit), so its rows are
streamed with ``COPY (SELECT … ORDER BY key) TO STDOUT (FORMAT csv)`` — the same projection
as row batches (timestamps as epoch microseconds, JSON as text) — parsed by Arrow's streaming
CSV reader, and written chunk by chunk as row groups of a Parquet object of up to
``archive.partition_object_rows`` rows. No Python object is built per row or value, and only
the compressed bytes and the key columns of the objects in flight are held in memory. The
objects are the row path's: same key layout, schema, metadata and manifest entries, so
restore, DuckDB and ``archive status`` see no difference.

Each object is recorded 'writing' (with its link to the partition, one commit), put staged,
then verified: its size and SHA-256 as the store holds them equal those of the bytes written,
and the bytes (those exact bytes when the store's own SHA-256 proves it holds them, else
downloaded) decode to exactly the keys read, in order (compared column by column in Arrow).
'verified' is recorded in the transaction that drops the partition.

The projection, Arrow's CSV options and the wire -> archive types conversion are the row
batches' own (:mod:`~steward.archive.pg_copy`). A table with a column that has no CSV form (a
time with a zone), or a policy writing jsonl.gz, is read in keyset batches through
:class:`~steward.archive.sql_rows.TableRows` and verified like a row batch.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from steward.archive import manifest, pg_copy
from steward.archive.archiver import ArchiveContext, put_staged, writing_entry
from steward.archive.formats import PARQUET, time_range
from steward.archive.key_columns import python_value
from steward.archive.manifest import ManifestEntry
from steward.archive.partition_copy import copy_csv
from steward.archive.sql_rows import TableRows
from steward.archive.sql_source import SqlSource
from steward.errors import ArchiveVerificationFailed
from steward.storage import ObjectInfo

__all__ = ["ExportedObject", "copy_ready", "export_objects", "store_exported"]

# Bytes Arrow parses at a time (so the rows of one row group, ~17,000 of 60 bytes): 1 MiB
# rather than 4 kept the peak RSS ~60 MiB lower (at 2.5M rows, 310 against 370 MiB) and the
# export no slower. Parsed in the exporting thread (no readahead threads, one block held).
BLOCK = 1 << 20
CODEC = "zstd"  # the row path's codec. Without dictionary pages: Parquet's dictionary attempt
# on unique values (keys, times, notes) took two thirds of the encode and made the objects
# bigger; zstd finds the repeats of low-cardinality text anyway


def copy_ready(source: SqlSource, conn: Connection) -> bool:
    """Whether the partition takes the COPY path: Parquet, every column with a CSV form
    (:mod:`~steward.archive.pg_copy`), and the driver is psycopg."""
    root = source.root
    return (
        source.format == PARQUET
        and pg_copy.projection(root.table, root.specs) is not None
        and pg_copy.copy_ready(conn)
    )


@dataclass
class ExportedObject:
    """One Parquet object as encoded: its bytes, the key columns written (in order) and what
    the manifest records of it."""

    batch_id: str
    data: bytes = field(repr=False)
    sha256: str
    keys: pa.Table = field(repr=False)
    rows: int
    ts_min: datetime | None
    ts_max: datetime | None


def export_objects(
    source: SqlSource, rows: TableRows, conn: Connection, object_rows: int, psql: str | None
) -> Iterator[ExportedObject]:
    """The partition's rows in key order, ``object_rows`` per object (the last one fewer),
    read by ``psql`` (None: in ``conn``'s own session)."""
    selected = pg_copy.projection(rows.table, rows.specs)
    assert selected is not None  # copy_ready said so
    query = sa.select(*selected).order_by(*rows.keys)
    # One SQL text for psql too: the projection's few constants inlined, no parameter
    text = str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    with copy_csv(conn, f"COPY ({text}) TO STDOUT (FORMAT csv)", psql) as stream:
        options = pg_copy.csv_options(rows.specs, BLOCK)
        options["read_options"].use_threads = False
        names = [spec.name for spec in rows.specs]
        reader = pg_copy.named_batches(lambda: pacsv.open_csv(stream, **options), names)
        writer: _ObjectWriter | None = None
        for part in reader:
            table = pg_copy.to_archive(pa.Table.from_batches([part]), rows.specs)
            while table.num_rows:
                writer = writer or _ObjectWriter(source, rows)
                room = object_rows - writer.rows
                writer.add(table.slice(0, room))
                table = table.slice(room)
                if writer.rows >= object_rows:
                    yield writer.finish()
                    writer = None
        if writer is not None:
            yield writer.finish()


class _ObjectWriter:
    """One object being written: row groups appended as they are parsed."""

    def __init__(self, source: SqlSource, rows: TableRows) -> None:
        self.batch_id = uuid.uuid4().hex
        self.rows = 0
        self._source, self._key_names = source, rows.key_names
        schema = pa.schema([pa.field(spec.name, spec.arrow_type) for spec in rows.specs])
        empty = pa.Table.from_batches([], schema)  # (schema.empty_table() imports pandas)
        labelled = source._labelled(empty, self.batch_id, source.root)
        self._sink = io.BytesIO()
        self._writer = pq.ParquetWriter(
            self._sink, labelled.schema, compression=CODEC, use_dictionary=False
        )
        self._keys: list[pa.Table] = []
        self._times: list[datetime | None] = []

    def add(self, table: pa.Table) -> None:
        self._writer.write_table(table)
        self._keys.append(table.select(self._key_names))
        self._times += time_range(table.column(self._source.ts_name))
        self.rows += table.num_rows

    def finish(self) -> ExportedObject:
        self._writer.close()
        data = self._sink.getvalue()
        times = [t for t in self._times if t is not None]
        return ExportedObject(
            batch_id=self.batch_id,
            data=data,
            sha256=hashlib.sha256(data).hexdigest(),
            keys=pa.concat_tables(self._keys),
            rows=self.rows,
            ts_min=min(times, default=None),
            ts_max=max(times, default=None),
        )


# Storing and verifying -------------------------------------------------------------------------


def store_exported(
    ctx: ArchiveContext,
    source: SqlSource,
    exported: ExportedObject,
    link: Callable[[Connection, str], None],
) -> ManifestEntry:
    """Record the object 'writing' (``link`` ties it to its partition in the same commit), put
    it staged and verify it; 'verified' is for the caller to record."""
    entry = _entry(ctx, source, exported)
    with ctx.sql.begin() as conn:
        manifest.insert_writing(conn, entry)
        link(conn, entry.batch_id)
    stored = put_staged(ctx, entry.object_key, exported.data, entry, entry.rows)
    ctx.fire("object_written")
    _verify(ctx, source, exported, stored)
    entry.bytes, entry.sha256 = len(exported.data), exported.sha256
    ctx.fire("object_verified")
    return entry


def _entry(ctx: ArchiveContext, source: SqlSource, exported: ExportedObject) -> ManifestEntry:
    names = source.root.key_names
    first, last = (_key_at(exported.keys, names, i) for i in (0, exported.rows - 1))
    return writing_entry(
        ctx,
        source,
        exported.batch_id,
        fmt=PARQUET,
        keys=(first, last),
        ts=(exported.ts_min, exported.ts_max),
        rows=exported.rows,
    )


def _key_at(keys: pa.Table, names: list[str], index: int) -> Any:
    parts = tuple(python_value(keys.column(name), index) for name in names)
    return parts if len(parts) > 1 else parts[0]


def _verify(
    ctx: ArchiveContext, source: SqlSource, exported: ExportedObject, stored: ObjectInfo
) -> None:
    """Proven by the SHA-256 the store returned from the put (no request), or one a HEAD
    finds; else the object is read back. Then its keys are decoded and compared."""
    where = stored.key
    info = stored if stored.stored_sha256 == exported.sha256 else ctx.store.head(where)
    size = len(exported.data)
    if info.size != size or info.sha256 != exported.sha256:
        raise ArchiveVerificationFailed(
            f"archive object {where!r} (table {source.name!r}) holds {info.size} bytes sha256 "
            f"{info.sha256[:16]}…, but {size} bytes sha256 {exported.sha256[:16]}… were "
            "written; nothing was dropped, rerun the archive"
        )
    proven = bool(info.stored_sha256) and info.stored_sha256 == exported.sha256
    data = exported.data if proven else ctx.store.get_bytes(where)
    names = source.root.key_names
    # ParquetFile, not pq.read_table: that one imports pyarrow.dataset (a second and tens of
    # MiB the first time)
    decoded = pq.ParquetFile(io.BytesIO(data)).read(columns=names)
    if decoded.num_rows != exported.rows or not decoded.equals(exported.keys):
        raise ArchiveVerificationFailed(
            f"archive object {where!r} does not decode to the {exported.rows} rows of table "
            f"{source.name!r} written to it; nothing was dropped, rerun the archive"
        )
