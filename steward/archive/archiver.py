"""The archive protocol: read, write, verify, then the guarded delete — resumable at any step.

Per batch::

    read     next keyset batch of qualifying rows
    write    manifest entry 'writing' (committed) -> object put to the store
    verify   size + SHA-256 vs what was written, read back, decode, rows and keys -> 'verified'
    finish   guarded delete of unchanged rows + 'complete' (one transaction for SQL sources)

Before reading anything new, a run resolves what an earlier run left unfinished: a 'writing'
entry whose object is missing is abandoned (its rows were never deleted and are read again);
one whose object is there is verified and finished; a 'verified' entry is finished (rows
already gone count as deleted for MongoDB; for SQL the delete and the manifest commit
together, so they were removed by someone else and are recorded as skipped). Objects under
the table's prefix that no live entry names are removed: no row was ever deleted on their
strength. So every row ends up either in the source or in exactly one complete object.

Recovery lives in :mod:`~steward.archive.recovery`, the loop in :mod:`~steward.archive.runner`.
``hook`` (tests) is called at named points: manifest_written, object_written,
object_verified, rows_deleting (after each delete statement), rows_deleted (before the manifest
update).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from steward.archive import manifest
from steward.archive.batch import ArchivedRows, DeleteOutcome, Source, SourceBatch
from steward.archive.manifest import ManifestEntry
from steward.errors import (
    ArchiveVerificationFailed,
)
from steward.settings import Settings
from steward.storage import COLD_CLASSES, ObjectStore, SqlClient, utcnow

__all__ = [
    "ArchiveContext",
    "BatchResult",
    "Budget",
    "TableReport",
    "VerifiedBatch",
    "WrittenObject",
    "finish_batch",
    "read_back",
    "read_batch",
    "table_prefix",
    "verify_batch",
    "write_batch",
]


@dataclass
class ArchiveContext:
    """Everything a run needs: settings, the SQL client (source + manifest), the store."""

    settings: Settings
    sql: SqlClient
    store: ObjectStore
    documents: Any | None = None
    clock: Callable[[], datetime] = utcnow
    hook: Callable[[str], None] | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def fire(self, point: str) -> None:
        if self.hook is not None:
            self.hook(point)


@dataclass
class Budget:
    """Limits of one run: number of batches and wall-clock seconds (None = unlimited)."""

    max_batches: int | None = None
    seconds: float | None = None
    started: float = field(default_factory=time.monotonic)
    batches: int = 0

    def allows(self) -> bool:
        if self.max_batches is not None and self.batches >= self.max_batches:
            return False
        return self.seconds is None or time.monotonic() - self.started < self.seconds


@dataclass
class WrittenObject:
    entry: ManifestEntry
    size: int
    sha256: str


@dataclass
class VerifiedBatch:
    entry: ManifestEntry
    archived: ArchivedRows


@dataclass
class BatchResult:
    """What one batch did: rows in the object, rows deleted, rows left (changed)."""

    batch_id: str
    object_key: str
    rows: int
    deleted: int
    skipped: int
    bytes: int
    resumed: bool = False


@dataclass
class TableReport:
    """Totals of one table in one run (the flow's table artifact rows)."""

    table: str
    source: str
    rows_archived: int = 0
    rows_skipped: int = 0
    objects: int = 0
    bytes: int = 0
    resumed_batches: int = 0
    abandoned_batches: int = 0
    orphans_removed: int = 0

    def add(self, result: BatchResult) -> None:
        self.rows_archived += result.deleted
        self.rows_skipped += result.skipped
        self.objects += 1
        self.bytes += result.bytes
        self.resumed_batches += int(result.resumed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Keys and prefixes -----------------------------------------------------------------------------


def table_prefix(settings: Settings, source: Source) -> str:
    """``archive/{source}/{table}/``: every object of one table lives under it."""
    root = getattr(getattr(settings, "tiering", None), "archive_prefix", "archive/")
    return f"{root}{source.source_name}/{source.name}/"


def _object_key(ctx: ArchiveContext, source: Source, batch_id: str) -> str:
    day = ctx.clock().strftime("%Y-%m-%d")
    extension = "parquet" if source.format == "parquet" else "jsonl.gz"
    return f"{table_prefix(ctx.settings, source)}dt={day}/{batch_id}.{extension}"


def _initial_class(source: Source) -> str:
    # Cold objects cannot be read back for verification: write them readable, move them
    # to the cold class once the batch is complete.
    return "STANDARD" if source.storage_class in COLD_CLASSES else source.storage_class


# The four steps -----------------------------------------------------------------------------


def read_batch(ctx: ArchiveContext, source: Source, after: Any) -> SourceBatch | None:
    """The next batch of qualifying rows with a key above ``after`` (None when done)."""
    return source.read_batch(after, source.batch_size, uuid.uuid4().hex)


def write_batch(ctx: ArchiveContext, source: Source, batch: SourceBatch) -> WrittenObject:
    """Record the batch as 'writing', then write its object. Safe to retry."""
    entry = ManifestEntry(
        batch_id=batch.batch_id,
        source=source.source_name,
        table_name=source.name,
        backend=source.backend,
        object_key=_object_key(ctx, source, batch.batch_id),
        format=source.format,
        state=manifest.WRITING,
        key_column=source.key_name,
        key_min=batch.keys[0],
        key_max=batch.keys[-1],
        ts_column=source.ts_name,
        ts_min=batch.ts_min,
        ts_max=batch.ts_max,
        rows=batch.rows,
        storage_class=_initial_class(source),
        run_id=ctx.run_id,
    )
    with ctx.sql.begin() as conn:
        manifest.insert_writing(conn, entry)
    ctx.fire("manifest_written")
    data = source.encode(batch)
    ctx.store.put(
        entry.object_key,
        data,
        storage_class=entry.storage_class,
        metadata={"batch-id": entry.batch_id, "rows": str(entry.rows)},
    )
    ctx.fire("object_written")
    return WrittenObject(entry, len(data), hashlib.sha256(data).hexdigest())


def verify_batch(ctx: ArchiveContext, source: Source, written: WrittenObject) -> VerifiedBatch:
    """Check the stored object against what was written and read it back; -> 'verified'."""
    entry = written.entry
    info = ctx.store.head(entry.object_key)
    if info.size != written.size or info.sha256 != written.sha256:
        raise ArchiveVerificationFailed(
            f"archive object {entry.object_key!r} (table {source.name!r}) holds {info.size} "
            f"bytes sha256 {info.sha256[:16]}…, but {written.size} bytes sha256 "
            f"{written.sha256[:16]}… were written; no row was deleted, rerun the archive"
        )
    archived = read_back(ctx, source, entry)
    with ctx.sql.begin() as conn:
        manifest.mark_verified(conn, entry.batch_id, size=info.size, sha256=info.sha256)
    entry.bytes, entry.sha256 = info.size, info.sha256
    ctx.fire("object_verified")
    return VerifiedBatch(entry, archived)


def finish_batch(
    ctx: ArchiveContext, source: Source, verified: VerifiedBatch, *, resumed: bool = False
) -> BatchResult:
    """Delete the rows still equal to the archive and mark the batch complete."""
    entry = verified.entry

    def complete(conn: Any, outcome: DeleteOutcome) -> None:
        manifest.mark_complete(
            conn,
            entry.batch_id,
            deleted=len(outcome.deleted),
            skipped=outcome.skipped,
            storage_class=entry.storage_class,
        )

    outcome = source.delete_unchanged(verified.archived, complete, ctx.fire)
    if source.storage_class != entry.storage_class:
        ctx.store.set_storage_class(entry.object_key, source.storage_class)
        with ctx.sql.begin() as conn:
            manifest.record_storage_class(conn, entry.object_key, source.storage_class)
    size = entry.bytes if entry.bytes is not None else ctx.store.head(entry.object_key).size
    return BatchResult(
        batch_id=entry.batch_id,
        object_key=entry.object_key,
        rows=len(verified.archived.keys),
        deleted=len(outcome.deleted),
        skipped=len(outcome.skipped),
        bytes=size,
        resumed=resumed,
    )


def read_back(ctx: ArchiveContext, source: Source, entry: ManifestEntry) -> ArchivedRows:
    """Read an object (checksum-verified by the store), decode it, check rows and keys."""
    data = ctx.store.get_bytes(entry.object_key)
    try:
        archived = source.decode(data, fmt=entry.format)
    except (pa.ArrowException, ValueError, OSError, KeyError) as exc:
        raise ArchiveVerificationFailed(
            f"archive object {entry.object_key!r} cannot be decoded as {entry.format} ({exc})"
        ) from None
    keys = archived.keys
    unique = len(set(keys)) == len(keys)  # int, str, UUID and ObjectId keys are hashable
    if (
        len(keys) != entry.rows
        or not unique
        or (keys and (keys[0] != entry.key_min or keys[-1] != entry.key_max))
    ):
        raise ArchiveVerificationFailed(
            f"archive object {entry.object_key!r} holds {len(keys)} rows with keys "
            f"{keys[:1]}…{keys[-1:]}, the manifest expects {entry.rows} rows "
            f"{entry.key_min!r}…{entry.key_max!r}; no row was deleted"
        )
    return archived
