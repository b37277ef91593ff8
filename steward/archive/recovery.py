"""Crash recovery: finish or abandon what an earlier run left, remove orphan objects.

A 'writing' entry whose staged objects are not all there is abandoned (its rows were never
deleted and are read again); one whose objects are there is verified (from the store: read back)
and finished; for SQL sources that is also where a batch verified but not yet deleted is (its
'verified' commits with the delete). A 'verified' entry is finished (for MongoDB, documents
already gone count as deleted: the delete may have happened before the crash; for SQL the delete
commits together with 'deleted', so rows already gone were removed by someone else and are
recorded as skipped). A 'deleted' entry is published from its staged objects. Objects under the
table's prefix that no live entry names are removed: no row was ever deleted on their strength.

Entries written before objects were staged have their objects at the final keys: those are
used where no staged copy exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from steward.archive import manifest
from steward.archive.archiver import (
    ArchiveContext,
    BatchResult,
    VerifiedBatch,
    finish_batch,
    read_back,
    record_verified,
    table_prefix,
)
from steward.archive.batch import Source
from steward.archive.manifest import ManifestEntry, staged_key
from steward.archive.publish import publish_batch
from steward.archive.restored import finish_pending
from steward.errors import (
    ArchiveVerificationFailed,
    IntegrityViolation,
    ObjectArchived,
    ObjectCorrupted,
    ObjectNotFound,
)

__all__ = ["Resolution", "finish_once", "resolve_unfinished"]


@dataclass
class Resolution:
    """What resolving an earlier run's leftovers did for one table."""

    finished: list[BatchResult] = field(default_factory=list)
    abandoned: int = 0
    orphans_removed: int = 0


def resolve_unfinished(ctx: ArchiveContext, source: Source) -> Resolution:
    """Finish or abandon every batch an earlier run left open, then remove orphan objects.
    Objects a crashed restore left holding restored rows are rewritten first."""
    finish_pending(ctx, source)
    with ctx.sql.connect() as conn:
        pending = manifest.entries(
            conn, source=source.source_name, table=source.name, states=manifest.UNFINISHED
        )
    resolution = Resolution()
    for entry in pending:
        if entry.state == manifest.DELETED:
            resolution.finished.append(_publish_deleted(ctx, source, entry))
            continue
        if entry.state == manifest.WRITING:
            verified = _adopt_written(ctx, source, entry)
        else:
            verified = _reread_verified(ctx, source, entry)
        if verified is None:
            resolution.abandoned += 1
            continue
        resolution.finished.append(finish_batch(ctx, source, verified, resumed=True))
    resolution.orphans_removed = _remove_orphans(ctx, source)
    return resolution


def finish_once(ctx: ArchiveContext, source: Source, verified: VerifiedBatch) -> BatchResult:
    """:func:`finish_batch`, safe to run again for the same batch (a task retried after a
    transient error in its publish): once its delete committed, the batch is published from
    what the manifest recorded (the rows deleted, the keys kept), never deleted again."""
    with ctx.sql.connect() as conn:
        found = manifest.entries(conn, batch_id=verified.entry.batch_id)
    entry = found[0] if found else None
    if entry is not None and entry.state == manifest.DELETED:
        return _publish_deleted(ctx, source, entry)
    if entry is not None and entry.state in (manifest.COMPLETE, manifest.ABANDONED):
        return BatchResult(
            batch_id=entry.batch_id,
            object_key=entry.object_key,
            rows=entry.rows,
            deleted=entry.deleted_rows or 0,
            skipped=len(entry.skipped_keys),
            bytes=0,
            resumed=True,
            objects=0,
        )
    return finish_batch(ctx, source, verified)


def _adopt_written(
    ctx: ArchiveContext, source: Source, entry: ManifestEntry
) -> VerifiedBatch | None:
    """A batch left 'writing': verify it if every staged object is there, else abandon it."""
    located = {key: staged_key(key) for key in entry.object_keys}
    try:
        infos = [ctx.store.head(location) for location in located.values()]
    except ObjectNotFound:
        _abandon(ctx, entry, "an object was never written; its rows stay in the source")
        return None
    if not all(info.readable for info in infos):
        _abandon(ctx, entry, "object is cold and was never verified")
        return None
    try:
        archived = read_back(ctx, source, entry, located)
    except (ObjectCorrupted, ArchiveVerificationFailed) as exc:
        _abandon(ctx, entry, f"object failed verification: {exc}")
        return None
    root, *parts = infos
    for part, info in zip(entry.parts, parts, strict=True):
        part.bytes, part.sha256 = info.size, info.sha256
    entry.bytes, entry.sha256 = root.size, root.sha256
    return record_verified(ctx, source, VerifiedBatch(entry, archived, located, False))


def _locate(ctx: ArchiveContext, entry: ManifestEntry) -> dict[str, str]:
    """Where each object's verified bytes are: staged, else (older batches) the final key."""
    located = {}
    for key in entry.object_keys:
        staged = staged_key(key)
        if ctx.store.exists(staged):
            located[key] = staged
        elif ctx.store.exists(key):
            located[key] = key
        else:
            raise ObjectNotFound(f"object {staged!r} (and {key!r}) is missing")
    return located


def _reread_verified(
    ctx: ArchiveContext, source: Source, entry: ManifestEntry
) -> VerifiedBatch | None:
    try:
        located = _locate(ctx, entry)
        expected = [(entry.object_key, entry.bytes, entry.sha256)]
        expected += [(p.object_key, p.bytes, p.sha256) for p in entry.parts]
        for key, size, sha256 in expected:
            info = ctx.store.head(located[key])
            if info.sha256 != sha256 or info.size != size:
                raise ObjectCorrupted(f"object {located[key]!r} changed since verification")
        return VerifiedBatch(entry, read_back(ctx, source, entry, located), located)
    except (ObjectNotFound, ObjectCorrupted, ObjectArchived, ArchiveVerificationFailed) as exc:
        if source.backend != "sql":
            raise IntegrityViolation(
                f"verified archive batch {entry.batch_id} of collection {source.name!r} "
                f"cannot be read back ({exc}); some of its documents may already be deleted. "
                f"Recover object {staged_key(entry.object_key)!r} from a store backup before "
                "rerunning"
            ) from None
        # SQL deletes commit with 'deleted', so no row of a verified batch is gone yet.
        _abandon(ctx, entry, f"verified object unreadable: {exc}")
        return None


def _publish_deleted(ctx: ArchiveContext, source: Source, entry: ManifestEntry) -> BatchResult:
    """A batch whose rows left the source: publish its final objects from the staged ones."""
    try:
        located = _locate(ctx, entry)
    except ObjectNotFound as exc:
        raise IntegrityViolation(
            f"archive batch {entry.batch_id} of table {source.name!r} deleted its rows but its "
            f"verified object is gone ({exc}); recover it from a store backup before rerunning"
        ) from None
    skipped = set(entry.skipped_keys)
    root, parts = publish_batch(ctx, source, entry, located, skipped)
    return BatchResult(
        batch_id=entry.batch_id,
        object_key=entry.object_key,
        rows=entry.rows,
        deleted=root.rows,
        skipped=len(skipped),
        bytes=root.bytes + sum(part.bytes for part in parts.values()),
        resumed=True,
        children={table: part.rows for table, part in parts.items()},
        objects=1 + len(parts),
    )


def _abandon(ctx: ArchiveContext, entry: ManifestEntry, note: str) -> None:
    """Mark the batch abandoned and remove whatever objects of it exist (no row was deleted
    on their strength)."""
    for key in entry.object_keys:
        for location in (staged_key(key), key):
            if ctx.store.exists(location):
                ctx.store.delete(location)
    with ctx.sql.begin() as conn:
        manifest.mark_abandoned(conn, entry.batch_id, note)


def _remove_orphans(ctx: ArchiveContext, source: Source) -> int:
    """Delete objects under the table's prefix that no live manifest entry names."""
    with ctx.sql.connect() as conn:
        live = manifest.live_object_keys(conn, source.source_name, source.name)
    orphans = [
        info.key
        for info in ctx.store.list(table_prefix(ctx.settings, source), details=False)
        if info.key not in live
    ]
    ctx.store.delete_many(orphans)  # S3: one request per 1,000 (staged copies of many batches)
    return len(orphans)
