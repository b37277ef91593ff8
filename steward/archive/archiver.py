"""The archive protocol: read, write, verify, delete, publish — resumable at any step.

Per batch::

    read     next keyset batch of qualifying rows (an aggregate's roots with their children)
    write    manifest entry 'writing' (committed) -> one object per table put to the store,
             staged (final key + ``.staged``: no reader's ``*.parquet`` pattern sees it)
    verify   each staged object: the store's SHA-256 of it (returned by the put, else a HEAD)
             vs that of the bytes written, which are decoded (else the object is read back):
             rows and keys -> 'verified' (the batch as a unit; SQL: committed with the delete)
             (:mod:`~steward.archive.verify`)
    delete   guarded delete of unchanged rows (children first) + 'deleted' with the keys kept
             (one transaction for SQL sources)
    publish  the final objects: a copy of the staged ones, or a rewrite without the rows that
             stayed (and their children), checked again -> 'complete' -> staged removed
             (:mod:`~steward.archive.publish`; staged copies of many batches at once)

So a complete object holds exactly the rows that left the source, and the final keys never
show a row that did not leave. Before reading anything new, a run resolves what an earlier
run left unfinished (:mod:`~steward.archive.recovery`): a 'writing' entry whose staged object
is missing is abandoned (its rows were never deleted and are read again); one whose object is
there is verified and finished; a 'verified' entry is finished (rows already gone count as
deleted for MongoDB; for SQL the delete and the manifest commit together, so they were
removed by someone else and are recorded as skipped); a 'deleted' entry is published.
Objects under the table's prefix that no live entry names are removed: no row was ever
deleted on their strength. So every row ends up either in the source or in exactly one
complete object.

The loop lives in :mod:`~steward.archive.runner`. ``hook`` (tests) is called at named
points: manifest_written, object_written, object_verified, rows_deleting (after each delete
statement), rows_deleted (before the manifest update), batch_deleted (after that commit),
object_published (final objects written and checked), batch_completed (before the staged
objects are removed).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from steward.archive import manifest
from steward.archive.batch import DeleteOutcome, Source, SourceBatch
from steward.archive.formats import META_KEY
from steward.archive.manifest import ManifestEntry, PartEntry, staged_key
from steward.archive.partition_report import describe_partitions
from steward.archive.publish import StagedRemoval, publish_batch, remove_staged
from steward.archive.verify import (
    VerifiedBatch,
    WrittenObject,
    attach_versions,
    mark_verified,
    read_back,
    record_verified,
    verify_batch,
)
from steward.settings import Settings
from steward.storage import COLD_CLASSES, ObjectInfo, ObjectStore, SqlClient, utcnow

__all__ = [
    "ArchiveContext",
    "BatchResult",
    "Budget",
    "TableReport",
    "VerifiedBatch",
    "WrittenObject",
    "attach_versions",
    "finish_batch",
    "put_staged",
    "read_back",
    "read_batch",
    "record_verified",
    "table_prefix",
    "verify_batch",
    "write_batch",
    "writing_entry",
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
    staged: StagedRemoval = field(default_factory=StagedRemoval, repr=False)

    def fire(self, point: str) -> None:
        if self.hook is not None:
            self.hook(point)


_BUDGET_LOCK = threading.Lock()


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

    def take(self) -> bool:
        """Count one more batch (tables archived at once share the budget); False when the
        budget was already spent."""
        with _BUDGET_LOCK:
            if self.max_batches is not None and self.batches >= self.max_batches:
                return False
            self.batches += 1
            return True


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
    children: dict[str, int] = field(default_factory=dict)  # child rows deleted per table
    objects: int = 1  # objects published (0 when every row changed meanwhile)


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
    interrupted_runs: int = 0
    children: dict[str, int] = field(default_factory=dict)  # child rows archived per table
    kept: int = 0
    kept_reason: str = ""
    busy: bool = False  # another run held the table: this run left it to that one
    partitions: list[dict[str, Any]] = field(default_factory=list)  # archived whole
    partitions_note: str = ""  # why (some) old partitions are archived row by row
    partitions_pending: int = 0  # whole partitions the budget left for the next run

    def add(self, result: BatchResult) -> None:
        self.rows_archived += result.deleted
        self.rows_skipped += result.skipped
        self.objects += result.objects
        self.bytes += result.bytes
        self.resumed_batches += int(result.resumed)
        for table, rows in result.children.items():
            self.children[table] = self.children.get(table, 0) + rows

    def add_partition(self, done: dict[str, Any]) -> None:
        self.partitions.append(done)
        self.rows_archived += done["rows"]
        self.objects += done["objects"]
        self.bytes += done["bytes"]

    def to_dict(self) -> dict[str, Any]:
        lines = describe_partitions(self.table, asdict(self))
        return {**asdict(self), "rows": self.rows_archived, "partition_lines": lines}


# Keys and prefixes -----------------------------------------------------------------------------


def table_prefix(settings: Settings, source: Source) -> str:
    """``archive/{source}/{table}/``: every object of one table lives under it."""
    root = getattr(getattr(settings, "tiering", None), "archive_prefix", "archive/")
    return f"{root}{source.source_name}/{source.name}/"


def _object_key(ctx: ArchiveContext, source: Source, batch_id: str, part: str = "") -> str:
    """The root object ``{table}/dt=DAY/BATCH.parquet``; a child table's
    ``{table}/{child}/dt=DAY/BATCH.parquet`` — so ``{table}/dt=*/*.parquet`` reads the root
    table alone and ``{table}/{child}/dt=*/*.parquet`` one child table."""
    day = ctx.clock().strftime("%Y-%m-%d")
    extension = "parquet" if source.format == "parquet" else "jsonl.gz"
    folder = f"{part}/" if part else ""
    return f"{table_prefix(ctx.settings, source)}{folder}dt={day}/{batch_id}.{extension}"


def _initial_class(source: Source) -> str:
    # Cold objects cannot be read back for verification: staged objects are written
    # readable, the final ones in the policy's class.
    return "STANDARD" if source.storage_class in COLD_CLASSES else source.storage_class


# The four steps -----------------------------------------------------------------------------


def read_batch(ctx: ArchiveContext, source: Source, after: Any) -> SourceBatch | None:
    """The next batch of qualifying rows with a key above ``after`` (None when done)."""
    return source.read_batch(after, source.batch_size, uuid.uuid4().hex)


def writing_entry(
    ctx: ArchiveContext,
    source: Source,
    batch_id: str,
    *,
    fmt: str,
    keys: tuple[Any, Any],
    ts: tuple[Any, Any],
    rows: int,
) -> ManifestEntry:
    """The manifest entry of a batch about to be written ('writing'): its root object's key,
    first and last key, time range and rows (row batches and whole partitions alike)."""
    return ManifestEntry(
        batch_id=batch_id,
        source=source.source_name,
        table_name=source.name,
        backend=source.backend,
        object_key=_object_key(ctx, source, batch_id),
        format=fmt,
        state=manifest.WRITING,
        key_column=source.key_name,
        key_min=keys[0],
        key_max=keys[1],
        ts_column=source.ts_name,
        ts_min=ts[0],
        ts_max=ts[1],
        rows=rows,
        storage_class=_initial_class(source),
        run_id=ctx.run_id,
    )


def write_batch(ctx: ArchiveContext, source: Source, batch: SourceBatch) -> WrittenObject:
    """Record the batch as 'writing', then write its object. Safe to retry."""
    entry = writing_entry(
        ctx,
        source,
        batch.batch_id,
        fmt=source.format,
        keys=(batch.keys[0], batch.keys[-1]),
        ts=(batch.ts_min, batch.ts_max),
        rows=batch.rows,
    )
    encoded = source.encode_parts(batch)
    entry.parts = [
        PartEntry(
            table_name=table,
            key_column=_key_column(batch.children[table]),
            object_key=_object_key(ctx, source, batch.batch_id, table),
            rows=rows,
        )
        for table, (_data, rows) in encoded.items()
    ]
    with ctx.sql.begin() as conn:
        manifest.insert_writing(conn, entry)
    ctx.fire("manifest_written")
    sent: dict[str, bytes] = {}
    stored: dict[str, str] = {}
    for part in entry.parts:  # children first: the root object completes the batch
        data = encoded[part.table_name][0]
        info = put_staged(ctx, part.object_key, data, entry, part.rows)
        part.bytes, part.sha256 = len(data), hashlib.sha256(data).hexdigest()
        sent[part.object_key], stored[part.object_key] = data, info.stored_sha256
    data = source.encode(batch)
    info = put_staged(ctx, entry.object_key, data, entry, entry.rows)
    sent[entry.object_key], stored[entry.object_key] = data, info.stored_sha256
    ctx.fire("object_written")
    # Hashed here, not taken from the store: the store's SHA-256 must match it independently.
    sha256 = hashlib.sha256(data).hexdigest()
    return WrittenObject(
        entry, len(data), sha256, batch.versions, sent, stored, read_snapshot=batch.read_snapshot
    )


def _key_column(arrow: Any) -> str:
    meta = json.loads((arrow.schema.metadata or {}).get(META_KEY, b"{}"))
    return str(meta.get("key_column") or arrow.schema.field(0).name)


def put_staged(
    ctx: ArchiveContext, final_key: str, data: bytes, entry: ManifestEntry, rows: int
) -> ObjectInfo:
    """Put one object of the batch under its staged key (no reader's pattern sees it until
    publish); returns what the store says of it (its key is the staged key)."""
    return ctx.store.put(
        staged_key(final_key),
        data,
        storage_class=entry.storage_class,
        metadata={"batch-id": entry.batch_id, "rows": str(rows)},
    )


def finish_batch(
    ctx: ArchiveContext, source: Source, verified: VerifiedBatch, *, resumed: bool = False
) -> BatchResult:
    """Delete the rows still equal to the archive ('deleted'), then publish the final objects
    holding exactly those rows ('complete')."""
    entry = verified.entry

    def record(conn: Any, outcome: DeleteOutcome) -> None:
        if not verified.recorded:  # in the delete's transaction (SQL): see record_verified
            mark_verified(conn, entry)
        if outcome.deleted:
            manifest.mark_deleted(
                conn, entry.batch_id, deleted=len(outcome.deleted), skipped=outcome.skipped
            )
        else:
            manifest.mark_abandoned(
                conn, entry.batch_id, "every row changed while it was archived; none left"
            )

    outcome = source.delete_unchanged(verified.archived, record, ctx.fire)
    ctx.fire("batch_deleted")
    result = BatchResult(
        batch_id=entry.batch_id,
        object_key=entry.object_key,
        rows=len(verified.archived.keys),
        deleted=len(outcome.deleted),
        skipped=len(outcome.skipped),
        bytes=0,
        resumed=resumed,
        children=dict(outcome.children),
        objects=0,
    )
    if not outcome.deleted:
        remove_staged(ctx, verified.located)
        return result
    root, parts = publish_batch(ctx, source, entry, verified.located, set(outcome.skipped))
    result.bytes = root.bytes + sum(part.bytes for part in parts.values())
    result.objects = 1 + len(parts)
    return result
