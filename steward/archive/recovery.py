"""Crash recovery: finish or abandon what an earlier run left, remove orphan objects.

A 'writing' entry whose object is missing is abandoned (its rows were never deleted and are
read again); one whose object is there is verified and finished. A 'verified' entry is
finished (for MongoDB, documents already gone count as deleted: the delete may have happened
before the crash; for SQL the delete commits together with 'complete', so rows already gone
were removed by someone else and are recorded as skipped). Objects under the table's prefix
that no live entry names are removed: no row was ever deleted on their strength.
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
    table_prefix,
)
from steward.archive.batch import Source
from steward.archive.manifest import ManifestEntry
from steward.errors import (
    ArchiveVerificationFailed,
    IntegrityViolation,
    ObjectArchived,
    ObjectCorrupted,
    ObjectNotFound,
)

__all__ = ["Resolution", "resolve_unfinished"]


@dataclass
class Resolution:
    """What resolving an earlier run's leftovers did for one table."""

    finished: list[BatchResult] = field(default_factory=list)
    abandoned: int = 0
    orphans_removed: int = 0


def resolve_unfinished(ctx: ArchiveContext, source: Source) -> Resolution:
    """Finish or abandon every batch an earlier run left open, then remove orphan objects."""
    with ctx.sql.connect() as conn:
        pending = manifest.entries(
            conn, source=source.source_name, table=source.name, states=manifest.UNFINISHED
        )
    resolution = Resolution()
    for entry in pending:
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


def _adopt_written(
    ctx: ArchiveContext, source: Source, entry: ManifestEntry
) -> VerifiedBatch | None:
    """A batch left 'writing': verify it if every object of it is there, else abandon it."""
    try:
        infos = [ctx.store.head(key) for key in entry.object_keys]
    except ObjectNotFound:
        _abandon(ctx, entry, "an object was never written; its rows stay in the source")
        return None
    if not all(info.readable for info in infos):
        _abandon(ctx, entry, "object is cold and was never verified")
        return None
    try:
        archived = read_back(ctx, source, entry)
    except (ObjectCorrupted, ArchiveVerificationFailed) as exc:
        _abandon(ctx, entry, f"object failed verification: {exc}")
        return None
    root, *parts = infos
    for part, info in zip(entry.parts, parts, strict=True):
        part.bytes, part.sha256 = info.size, info.sha256
    with ctx.sql.begin() as conn:
        manifest.mark_verified(
            conn, entry.batch_id, size=root.size, sha256=root.sha256, parts=entry.parts
        )
    entry.bytes, entry.sha256 = root.size, root.sha256
    return VerifiedBatch(entry, archived)


def _reread_verified(
    ctx: ArchiveContext, source: Source, entry: ManifestEntry
) -> VerifiedBatch | None:
    expected = [(entry.object_key, entry.bytes, entry.sha256)]
    expected += [(p.object_key, p.bytes, p.sha256) for p in entry.parts]
    try:
        for key, size, sha256 in expected:
            info = ctx.store.head(key)
            if info.sha256 != sha256 or info.size != size:
                raise ObjectCorrupted(f"object {key!r} changed since verification")
        return VerifiedBatch(entry, read_back(ctx, source, entry))
    except (ObjectNotFound, ObjectCorrupted, ObjectArchived, ArchiveVerificationFailed) as exc:
        if source.backend != "sql":
            raise IntegrityViolation(
                f"verified archive batch {entry.batch_id} of collection {source.name!r} "
                f"cannot be read back ({exc}); some of its documents may already be deleted. "
                f"Recover object {entry.object_key!r} from a store backup before rerunning"
            ) from None
        # SQL deletes commit with 'complete', so no row of a verified batch is gone yet.
        _abandon(ctx, entry, f"verified object unreadable: {exc}")
        return None


def _abandon(ctx: ArchiveContext, entry: ManifestEntry, note: str) -> None:
    """Mark the batch abandoned and remove whatever objects of it exist (no row was deleted
    on their strength)."""
    for key in entry.object_keys:
        if ctx.store.exists(key):
            ctx.store.delete(key)
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
    for key in orphans:
        ctx.store.delete(key)
    return len(orphans)
