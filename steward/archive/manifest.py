"""The archive manifest: one row per archive object, in Steward's SQL database.

States of a batch (an object and the rows it holds)::

    writing ──> verified ──> deleted ──> complete
       │            │
       └────────────┴──> abandoned   (object missing or unreadable, or every row changed
                                      meanwhile; no row was deleted)

``writing`` is committed *before* the object is written, so every object under the archive
prefix has an entry (an object without one is an orphan nobody relied on and is removed).
Objects are first written *staged*, under their final key plus ``.staged`` (no reader's
``*.parquet`` / ``*.jsonl.gz`` pattern matches them). ``verified`` means the staged object was
proven to hold the bytes written (the store's own SHA-256) and those bytes decoded to the row
count and keys. For SQL sources the guarded delete and the moves to ``verified`` and ``deleted``
commit in one transaction (a batch still ``writing`` had no row deleted); ``skipped_keys`` lists
the keys read that were *not* deleted (changed since they were read). Then the final object is
published: a copy of the staged one, or, when rows were skipped, a rewrite without them (and
without their children), verified again; the move to ``complete`` records its rows, key range,
size and SHA-256, and only then is the staged object removed (with those of other batches; one a
crash left is an orphan the next run removes). So a complete object holds exactly the rows that
left the source, and a reader of the final keys never sees a row that did not leave, nor one
twice.

An aggregate's batch (root rows and their children) is one manifest entry: the root rows'
object is the entry's ``object_key``; ``steward_archive_parts`` lists one more object per child
table under the same batch id, with its rows, size and SHA-256. The batch moves through the
states as a unit.

``steward_archive_runs`` keeps one row per table per run for ``steward archive status``. A run
still ``running`` when the next run of its table gets the table's lock was killed: it is
marked ``interrupted``.

The tables (:mod:`steward.archive.manifest_tables`) are created by ``steward install`` only:
a run that finds them missing stops with :class:`~steward.errors.NotInstalled` before touching
anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.archive.manifest_keys import decode_key, dump_key, encode_key, load_key
from steward.archive.manifest_tables import (
    manifest_exists,
    manifest_table,
    metadata,
    parts_table,
    require_manifest,
    restored_table,
    runs_table,
)
from steward.errors import IntegrityViolation
from steward.storage import utcnow

__all__ = [
    "ABANDONED",
    "COMPLETE",
    "DELETED",
    "UNFINISHED",
    "VERIFIED",
    "WRITING",
    "ManifestEntry",
    "PartEntry",
    "decode_key",
    "encode_key",
    "manifest_exists",
    "manifest_table",
    "metadata",
    "parts_table",
    "record_storage_class",
    "require_manifest",
    "restored_table",
    "runs_table",
    "staged_key",
]

WRITING, VERIFIED, DELETED = "writing", "verified", "deleted"
COMPLETE, ABANDONED = "complete", "abandoned"
UNFINISHED = (WRITING, VERIFIED, DELETED)
STAGED_SUFFIX = ".staged"


def staged_key(object_key: str) -> str:
    """Where a batch's object is written until its rows have left the source."""
    return object_key + STAGED_SUFFIX


# Entries ---------------------------------------------------------------------------------------


@dataclass
class PartEntry:
    """A child table's object in an aggregate's batch."""

    table_name: str
    key_column: str
    object_key: str
    rows: int
    bytes: int | None = None
    sha256: str | None = None


@dataclass
class ManifestEntry:
    """One manifest row, keys decoded; ``parts`` are the child tables' objects."""

    batch_id: str
    source: str
    table_name: str
    backend: str
    object_key: str
    format: str
    state: str
    key_column: str
    key_min: Any
    key_max: Any
    ts_column: str
    ts_min: datetime | None
    ts_max: datetime | None
    rows: int
    storage_class: str
    bytes: int | None = None
    sha256: str | None = None
    deleted_rows: int | None = None
    skipped_keys: list[Any] = field(default_factory=list)
    run_id: str | None = None
    created_at: datetime | None = None
    completed_at: datetime | None = None
    restore_requested_at: datetime | None = None
    restored_at: datetime | None = None
    restored_rows: int | None = None
    parts: list[PartEntry] = field(default_factory=list)

    @property
    def object_keys(self) -> list[str]:
        return [self.object_key, *(part.object_key for part in self.parts)]

    def holds_key(self, key: Any) -> bool:
        """Whether ``key`` lies in this object's key range (same-type comparison)."""
        try:
            return bool(self.key_min <= key <= self.key_max)
        except TypeError:
            return False

    @classmethod
    def from_row(cls, row: sa.Row) -> ManifestEntry:
        data = dict(row._mapping)
        data["key_min"] = load_key(data["key_min"])
        data["key_max"] = load_key(data["key_max"])
        data["skipped_keys"] = [decode_key(k) for k in data.get("skipped_keys") or []]
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


def insert_writing(conn: Connection, entry: ManifestEntry) -> None:
    """Record a batch about to be written (idempotent on ``batch_id``: retries reuse it)."""
    found = conn.execute(
        sa.select(manifest_table.c.state).where(manifest_table.c.batch_id == entry.batch_id)
    ).first()
    if found is not None:
        return
    conn.execute(
        manifest_table.insert().values(
            batch_id=entry.batch_id,
            source=entry.source,
            table_name=entry.table_name,
            backend=entry.backend,
            object_key=entry.object_key,
            format=entry.format,
            state=WRITING,
            key_column=entry.key_column,
            key_min=dump_key(entry.key_min),
            key_max=dump_key(entry.key_max),
            ts_column=entry.ts_column,
            ts_min=entry.ts_min,
            ts_max=entry.ts_max,
            rows=entry.rows,
            storage_class=entry.storage_class,
            run_id=entry.run_id,
            created_at=utcnow(),
        )
    )
    for part in entry.parts:
        conn.execute(
            parts_table.insert().values(
                batch_id=entry.batch_id,
                table_name=part.table_name,
                key_column=part.key_column,
                object_key=part.object_key,
                rows=part.rows,
            )
        )


def mark_verified(
    conn: Connection, batch_id: str, *, size: int, sha256: str, parts: Sequence[PartEntry] = ()
) -> None:
    _update(
        conn,
        batch_id,
        _OPEN,
        state=VERIFIED,
        bytes=size,
        sha256=sha256,
        verified_at=utcnow(),
    )
    for part in parts:
        conn.execute(
            parts_table.update()
            .where(parts_table.c.batch_id == batch_id, parts_table.c.table_name == part.table_name)
            .values(bytes=part.bytes, sha256=part.sha256)
        )


def mark_deleted(conn: Connection, batch_id: str, *, deleted: int, skipped: Sequence[Any]) -> None:
    """Rows deleted: call it inside the transaction of the guarded delete."""
    _update(
        conn,
        batch_id,
        _OPEN,
        state=DELETED,
        deleted_rows=deleted,
        skipped_keys=[encode_key(k) for k in skipped],
    )


@dataclass
class Published:
    """A published object: rows, key range (root only), size and SHA-256."""

    rows: int
    bytes: int
    sha256: str
    key_min: Any = None
    key_max: Any = None


def mark_complete(
    conn: Connection,
    batch_id: str,
    *,
    root: Published,
    parts: dict[str, Published],
    storage_class: str,
) -> None:
    """The final objects hold exactly the deleted rows: record what they hold."""
    _update(
        conn,
        batch_id,
        (DELETED,),
        state=COMPLETE,
        rows=root.rows,
        key_min=dump_key(root.key_min),
        key_max=dump_key(root.key_max),
        bytes=root.bytes,
        sha256=root.sha256,
        storage_class=storage_class,
        completed_at=utcnow(),
    )
    for table, part in parts.items():
        conn.execute(
            parts_table.update()
            .where(parts_table.c.batch_id == batch_id, parts_table.c.table_name == table)
            .values(rows=part.rows, bytes=part.bytes, sha256=part.sha256)
        )


def mark_abandoned(conn: Connection, batch_id: str, note: str) -> None:
    _update(conn, batch_id, _OPEN, state=ABANDONED, note=note[:2000])


def mark_restore_requested(conn: Connection, batch_id: str, when: datetime) -> None:
    _update(conn, batch_id, None, restore_requested_at=when)


def mark_restored(conn: Connection, batch_id: str, rows: int) -> None:
    """Record a restore of ``rows`` rows from this batch (added to earlier restores)."""
    column = manifest_table.c.restored_rows
    conn.execute(
        manifest_table.update()
        .where(manifest_table.c.batch_id == batch_id)
        .values(restored_at=utcnow(), restored_rows=sa.func.coalesce(column, 0) + rows)
    )


def record_storage_class(conn: Connection, key: str, storage_class: str) -> bool:
    """Keep the manifest's storage class of object ``key`` current (called by tiering).

    Returns False when no manifest entry names that object (e.g. not an archive object).
    """
    result = conn.execute(
        manifest_table.update()
        .where(manifest_table.c.object_key == key)
        .values(storage_class=storage_class)
    )
    return bool(result.rowcount)


_OPEN = (WRITING, VERIFIED)  # states whose rows may still be in the source


def _update(conn: Connection, batch_id: str, states: tuple[str, ...] | None, **values: Any) -> None:
    """Update one batch's entry, only from one of ``states`` (None: any): a state moves
    forward once, so a step run twice (a retried task after its commit) cannot take a batch
    whose rows already left back to 'verified' or 'abandoned' (whose objects recovery
    removes)."""
    where = [manifest_table.c.batch_id == batch_id]
    if states is not None:
        where.append(manifest_table.c.state.in_(states))
    result = conn.execute(manifest_table.update().where(*where).values(**values))
    if result.rowcount == 1:
        return
    current = conn.execute(
        sa.select(manifest_table.c.state).where(manifest_table.c.batch_id == batch_id)
    ).scalar_one_or_none()
    if current is None:
        raise LookupError(f"archive manifest has no batch {batch_id!r}")
    raise IntegrityViolation(
        f"archive batch {batch_id} is already {current!r}, so it cannot become "
        f"{values.get('state')!r}; nothing was changed, rerun the archive to finish it"
    )


# Queries ---------------------------------------------------------------------------------------


def entries(
    conn: Connection,
    *,
    source: str | None = None,
    table: str | None = None,
    states: Iterable[str] | None = None,
    batch_id: str | None = None,
) -> list[ManifestEntry]:
    """Manifest entries matching the filters, oldest first."""
    t = manifest_table
    query = sa.select(t)
    if source is not None:
        query = query.where(t.c.source == source)
    if table is not None:
        query = query.where(t.c.table_name == table)
    if states is not None:
        query = query.where(t.c.state.in_(list(states)))
    if batch_id is not None:
        query = query.where(t.c.batch_id == batch_id)
    rows = conn.execute(query.order_by(t.c.created_at, t.c.batch_id)).all()
    found = [ManifestEntry.from_row(row) for row in rows]
    by_id = {entry.batch_id: entry for entry in found}
    for start in range(0, len(found), 500):
        ids = [entry.batch_id for entry in found[start : start + 500]]
        query = sa.select(parts_table).where(parts_table.c.batch_id.in_(ids))
        for row in conn.execute(query.order_by(parts_table.c.table_name)):
            data = dict(row._mapping)
            by_id[data.pop("batch_id")].parts.append(PartEntry(**data))
    return found


def live_object_keys(conn: Connection, source: str, table: str) -> set[str]:
    """Object keys that must stay: every object of an entry that is not abandoned, and the
    staged copies of unfinished entries."""
    t, p = manifest_table, parts_table
    live = sa.and_(t.c.source == source, t.c.table_name == table, t.c.state != ABANDONED)
    keys: set[str] = set()
    rows = conn.execute(sa.select(t.c.object_key, t.c.state).where(live)).all()
    parts = conn.execute(
        sa.select(p.c.object_key, t.c.state).join(t, t.c.batch_id == p.c.batch_id).where(live)
    ).all()
    for key, state in [*rows, *parts]:
        keys.add(key)
        if state in UNFINISHED:
            keys.add(staged_key(key))
    return keys
