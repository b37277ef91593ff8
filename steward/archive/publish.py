"""Publishing a batch: final objects that hold exactly the rows that left the source.

A batch's objects are written and verified *staged* (final key + ``.staged``). Once the guarded
delete has committed ('deleted', with the keys that stayed because they changed), each final
object is made from its verified staged copy:

- every row left: a copy of the staged object (S3: one server-side CopyObject, the bytes
  never leave the store), proven by the SHA-256 the store computed over the copy (S3 returns
  it with the copy when asked for it); a store that returns none is asked for the copy's
  size and SHA-256 instead;
- some rows stayed: the staged object is read, the rows that stayed (and, for an aggregate,
  their children) are dropped, and the new bytes are decoded in memory and compared with the
  expected keys before they are written and checked by size and SHA-256.

Then 'complete' records each final object's rows, size and SHA-256 (and the root's key
range), and only after that commit are the staged objects removed: those of up to
``STAGED_BATCHES`` batches together, and the rest at the end of the table's run (one
DeleteObjects request per 1,000 keys on S3, not one per batch). A crash anywhere leaves the
batch 'deleted' with its staged objects in place; the next run publishes again (a final object
already there is simply written again). Staged copies of complete batches a crash left behind
are orphans (no live entry names them) and the next run's recovery removes them; until then no
reader's pattern sees them.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from steward.archive import manifest
from steward.archive.batch import ArchivedRows, Source
from steward.archive.manifest import ManifestEntry, Published
from steward.errors import ArchiveVerificationFailed, StewardError

if TYPE_CHECKING:
    from steward.archive.archiver import ArchiveContext

__all__ = ["STAGED_BATCHES", "StagedRemoval", "publish_batch", "remove_staged", "rewrite_without"]

STAGED_BATCHES = 50  # batches whose staged copies are removed in one go (end of a run: fewer)


@dataclass
class _Target:
    """One object of a batch: its table (None for the root), final key and verified copy."""

    table: str | None
    final: str
    location: str
    rows: int
    size: int | None
    sha256: str | None


def publish_batch(
    ctx: ArchiveContext,
    source: Source,
    entry: ManifestEntry,
    located: dict[str, str],
    skipped: set[Any],
) -> tuple[Published, dict[str, Published]]:
    """Write and check the final objects, mark the batch complete, remove the staged ones."""
    targets = [
        _Target(None, entry.object_key, located[entry.object_key], entry.rows, entry.bytes,
                entry.sha256)
    ] + [
        _Target(p.table_name, p.object_key, located[p.object_key], p.rows, p.bytes, p.sha256)
        for p in entry.parts
    ]  # fmt: skip
    done = {target.table: _publish(ctx, source, entry, target, skipped) for target in targets}
    ctx.fire("object_published")
    root = done.pop(None)
    parts = {str(table): published for table, published in done.items()}
    with ctx.sql.begin() as conn:
        manifest.mark_complete(
            conn, entry.batch_id, root=root, parts=parts, storage_class=source.storage_class
        )
    ctx.fire("batch_completed")
    remove_staged(ctx, located)
    return root, parts


def remove_staged(ctx: ArchiveContext, located: dict[str, str]) -> None:
    """Queue a finished batch's staged objects (never a final one) for removal."""
    ctx.staged.add(ctx, [location for final, location in located.items() if location != final])


log = logging.getLogger(__name__)


class StagedRemoval:
    """Staged objects of finished batches, removed together: every ``STAGED_BATCHES`` batches
    and by :meth:`flush` at the end of a table's run. Shared by the tables a run archives at
    once (and the threads finishing their batches)."""

    def __init__(self) -> None:
        self._keys: list[str] = []
        self._batches = 0
        self._lock = threading.Lock()

    def add(self, ctx: ArchiveContext, keys: list[str]) -> None:
        with self._lock:
            self._keys += keys
            self._batches += 1
            if self._batches < STAGED_BATCHES:
                return
        self.flush(ctx)

    def flush(self, ctx: ArchiveContext) -> None:
        """Remove the staged copies gathered so far. A failure is logged, not raised: their
        batches are complete (it must not fail a batch, nor make a retry redo one), and the
        next run's recovery removes what is left as orphans."""
        with self._lock:
            keys, self._keys, self._batches = self._keys, [], 0
        if not keys:
            return
        try:
            ctx.store.delete_many(keys)
        except StewardError as exc:
            log.warning("%d staged archive copies stay until the next run: %s", len(keys), exc)


def _publish(
    ctx: ArchiveContext, source: Source, entry: ManifestEntry, target: _Target, skipped: set[Any]
) -> Published:
    if skipped:
        return _rewrite(ctx, source, entry, target, skipped)
    then = "its verified staged copy is kept, rerun the archive"
    if target.location != target.final and target.size is not None and target.sha256:
        copied = ctx.store.copy(
            target.location, target.final, storage_class=source.storage_class, size=target.size
        )
        if copied.stored_sha256:  # the store's own checksum of the copy's bytes: no HEAD
            sha256 = copied.stored_sha256
            _check_stored(ctx, target.final, target.size, sha256, target.size, target.sha256, then)
            return _published(entry, target)
    elif target.location != target.final:
        ctx.store.copy(target.location, target.final, storage_class=source.storage_class)
    info = ctx.store.head(target.final)
    if target.size is None or target.sha256 is None:  # verified before this run: as found
        target.size, target.sha256 = info.size, info.sha256
    _check_stored(ctx, target.final, info.size, info.sha256, target.size, target.sha256, then)
    return _published(entry, target)


def _published(entry: ManifestEntry, target: _Target) -> Published:
    assert target.size is not None and target.sha256 is not None
    return Published(target.rows, target.size, target.sha256, entry.key_min, entry.key_max)


def _rewrite(
    ctx: ArchiveContext, source: Source, entry: ManifestEntry, target: _Target, skipped: set[Any]
) -> Published:
    """The verified object without the rows whose root stayed; decoded and checked first."""
    return rewrite_without(
        ctx, source, entry, target.table, (target.location, target.final), skipped,
        storage_class=source.storage_class, why="that stayed in the source",
        then="its verified staged copy is kept, rerun the archive",
    )  # fmt: skip


def rewrite_without(
    ctx: ArchiveContext,
    source: Source,
    entry: ManifestEntry,
    table: str | None,
    keys: tuple[str, str],
    roots: set[Any],
    *,
    storage_class: str,
    why: str,
    then: str,
) -> Published:
    """Write object ``keys[1]`` as object ``keys[0]`` without the rows of ``roots`` (for a
    child ``table``: the rows whose parent is one of them); the new bytes are decoded and
    compared with the expected keys before they are written, then checked by size and SHA-256.
    ``why`` says which rows go, ``then`` what to do when a check fails."""
    location, final = keys
    data = ctx.store.get_bytes(location)
    before = _decode(source, table, data, entry.format)
    expected = [k for k in before.keys if _root(before, k, table) not in roots]
    trimmed = source.without(
        data, fmt=entry.format, table=table, roots=roots, batch_id=entry.batch_id
    )
    after = _decode(source, table, trimmed, entry.format)
    if after.keys != expected:
        raise ArchiveVerificationFailed(
            f"archive object {final!r} rewritten without the {len(roots)} row(s) {why} "
            f"decodes to {len(after.keys)} rows, {len(expected)} expected; {then}"
        )
    sha256 = hashlib.sha256(trimmed).hexdigest()
    ctx.store.put(
        final,
        trimmed,
        storage_class=storage_class,
        metadata={"batch-id": entry.batch_id, "rows": str(len(expected))},
    )
    info = ctx.store.head(final)
    _check_stored(ctx, final, info.size, info.sha256, len(trimmed), sha256, then)
    first, last = (expected[0], expected[-1]) if expected else (None, None)
    return Published(len(expected), len(trimmed), sha256, first, last)


def _decode(source: Source, table: str | None, data: bytes, fmt: str) -> ArchivedRows:
    if table is None:
        return source.decode(data, fmt=fmt)
    return source.decode_part(table, data, fmt=fmt)


def _root(rows: ArchivedRows, key: Any, table: str | None) -> Any:
    return key if table is None else rows.parents[key]


def _check_stored(
    ctx: ArchiveContext,
    key: str,
    size: int,
    sha256: str,
    want_size: int,
    want_sha256: str,
    then: str,
) -> None:
    if size != want_size or sha256 != want_sha256:
        raise ArchiveVerificationFailed(
            f"archive object {key!r} in {ctx.store.url} holds {size} bytes sha256 "
            f"{sha256[:16]}…, {want_size} bytes sha256 {want_sha256[:16]}… were published; "
            f"{then}"
        )
