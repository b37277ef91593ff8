"""Restored rows leave their archive objects, so the archive never holds a row the source holds.

A restore inserts a batch's rows and, in the same transaction, records the roots that came back
whole (with every child row) in ``steward_archive_restored``. Only after that commit are the
batch's objects rewritten without those rows (and their children): each rewrite is decoded and
compared with the expected keys before it is written, then checked by size and SHA-256
(:func:`~steward.archive.publish.rewrite_without`). One transaction then records what each
object holds now (rows, size, SHA-256, key range) and clears the batch's recorded keys.

A crash after the restore's commit leaves those rows in the source *and* in the objects, and
their keys recorded: the next restore touching the batch, or the table's next archive run
(:func:`finish_pending`), rewrites the objects again. That is idempotent: an object already
without the rows is written again with the same rows. A row that did not come back (a
conflict, a clash, a child refused) stays in the archive, its only copy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.archive import manifest
from steward.archive.batch import Source
from steward.archive.manifest import ManifestEntry, Published, restored_table
from steward.archive.publish import rewrite_without

if TYPE_CHECKING:
    from steward.archive.archiver import ArchiveContext

__all__ = ["finish_pending", "prune_restored", "record_restored"]

THEN = "the restored rows are back in the source and still in the object; rerun the restore"


def record_restored(conn: Connection, batch_id: str, keys: Sequence[Any]) -> None:
    """In the restore's transaction: these roots of ``batch_id`` must leave its objects."""
    if not keys:
        return
    known = set(_pending_keys(conn, batch_id, raw=True))
    rows = [{"batch_id": batch_id, "key": _dump(key)} for key in keys]
    rows = [row for row in rows if row["key"] not in known]
    if rows:
        conn.execute(restored_table.insert(), rows)


def finish_pending(ctx: ArchiveContext, source: Source) -> int:
    """Finish the rewrites a crashed restore left for ``source``'s table (the caller holds the
    table's lock); the roots removed."""
    with ctx.sql.connect() as conn:
        ids = set(conn.scalars(sa.select(restored_table.c.batch_id).distinct()))
        if not ids:
            return 0
        found = manifest.entries(
            conn, source=source.source_name, table=source.name, states=[manifest.COMPLETE]
        )
    return sum(prune_restored(ctx, source, entry) for entry in found if entry.batch_id in ids)


def prune_restored(ctx: ArchiveContext, source: Source, entry: ManifestEntry) -> int:
    """Rewrite ``entry``'s objects without its recorded restored roots; the roots removed."""
    with ctx.sql.connect() as conn:
        roots = set(_pending_keys(conn, entry.batch_id))
    if not roots:
        return 0
    ctx.fire("restore_committed")
    root = _rewrite(ctx, source, entry, None, entry.object_key, roots)
    parts = {
        part.table_name: _rewrite(ctx, source, entry, part.table_name, part.object_key, roots)
        for part in entry.parts
    }
    ctx.fire("restored_objects_rewritten")
    with ctx.sql.begin() as conn:
        _record_rewrite(conn, entry, root, parts)
        conn.execute(restored_table.delete().where(restored_table.c.batch_id == entry.batch_id))
    return len(roots)


def _record_rewrite(
    conn: Connection, entry: ManifestEntry, root: Published, parts: dict[str, Published]
) -> None:
    """What the rewritten objects hold; ``completed_at`` stays (restores order batches by it)
    and an emptied object keeps its key range (the columns are required)."""
    values: dict[str, Any] = {"rows": root.rows, "bytes": root.bytes, "sha256": root.sha256}
    if root.rows:
        values.update(key_min=_dump(root.key_min), key_max=_dump(root.key_max))
    t = manifest.manifest_table
    conn.execute(t.update().where(t.c.batch_id == entry.batch_id).values(**values))
    p = manifest.parts_table
    for table, part in parts.items():
        conn.execute(
            p.update()
            .where(p.c.batch_id == entry.batch_id, p.c.table_name == table)
            .values(rows=part.rows, bytes=part.bytes, sha256=part.sha256)
        )


def _rewrite(
    ctx: ArchiveContext,
    source: Source,
    entry: ManifestEntry,
    table: str | None,
    key: str,
    roots: set[Any],
) -> Published:
    return rewrite_without(
        ctx, source, entry, table, (key, key), roots,
        storage_class=entry.storage_class, why="that a restore brought back", then=THEN,
    )  # fmt: skip


def _pending_keys(conn: Connection, batch_id: str, *, raw: bool = False) -> list[Any]:
    query = sa.select(restored_table.c.key).where(restored_table.c.batch_id == batch_id)
    texts = list(conn.scalars(query))
    return texts if raw else [manifest.decode_key(json.loads(text)) for text in texts]


def _dump(key: Any) -> str:
    return json.dumps(manifest.encode_key(key), separators=(",", ":"))
