"""The verify step of a batch: its staged objects are proven to hold the bytes written (the
store's own SHA-256 of them: returned by the put, else asked with a HEAD, else the objects are
read back), then decoded and checked (rows and keys). See :mod:`steward.archive.archiver`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from sqlalchemy.engine import Connection

from steward.archive import manifest
from steward.archive.batch import ArchivedRows, ReadSnapshot, Source
from steward.archive.key_columns import KeyColumns, RowVersions
from steward.archive.manifest import ManifestEntry, staged_key
from steward.errors import ArchiveVerificationFailed

if TYPE_CHECKING:
    from steward.archive.archiver import ArchiveContext

__all__ = [
    "VerifiedBatch",
    "WrittenObject",
    "attach_versions",
    "mark_verified",
    "read_back",
    "record_verified",
    "verify_batch",
]


@dataclass
class WrittenObject:
    """A batch's objects as written: the root object's size and SHA-256 (the parts' are in
    ``entry.parts``) and the row versions read (for the guard)."""

    entry: ManifestEntry
    size: int
    sha256: str
    versions: dict[str, Mapping[Any, int]] = field(default_factory=dict)
    data: dict[str, bytes] = field(default_factory=dict, repr=False)  # final key -> bytes sent
    stored: dict[str, str] = field(default_factory=dict)  # final key -> store's SHA-256 on put
    read_snapshot: ReadSnapshot | None = None  # PostgreSQL: the snapshot the rows were read in


@dataclass
class VerifiedBatch:
    """A verified batch: its entry, its rows as decoded, and where its verified bytes are
    (final key -> staged key; the final key itself for batches written before staging).
    ``recorded``: 'verified' is committed; else the delete's transaction records it."""

    entry: ManifestEntry
    archived: ArchivedRows
    located: dict[str, str] = field(default_factory=dict)
    recorded: bool = True

    def __post_init__(self) -> None:
        for key in self.entry.object_keys:
            self.located.setdefault(key, staged_key(key))


def verify_batch(ctx: ArchiveContext, source: Source, written: WrittenObject) -> VerifiedBatch:
    """Check the staged objects against what was written and read them back; -> 'verified'
    (for SQL sources recorded by the delete's transaction: see :func:`record_verified`)."""
    entry = written.entry
    expected: list[tuple[str, int | None, str | None]] = [
        (entry.object_key, written.size, written.sha256)
    ]
    expected += [(p.object_key, p.bytes, p.sha256) for p in entry.parts]
    proven = [_proven(ctx, source, written, *object_) for object_ in expected]
    located = {key: staged_key(key) for key in entry.object_keys}
    # The store's own SHA-256 of what it holds equals that of the bytes sent: those exact
    # bytes are decoded and checked here. Otherwise the objects are read back from the store.
    sent = written.data if all(proven) and len(written.data) == len(located) else None
    read_keys = {
        table: versions.keys_read
        for table, versions in written.versions.items()
        if isinstance(versions, RowVersions)
    }
    archived = read_back(ctx, source, entry, located, sent, read_keys)
    attach_versions(archived, source, written.versions, written.read_snapshot)
    entry.bytes, entry.sha256 = written.size, written.sha256
    verified = record_verified(ctx, source, VerifiedBatch(entry, archived, located, False))
    ctx.fire("object_verified")
    return verified


def _proven(
    ctx: ArchiveContext, source: Source, written: WrittenObject, key: str, size: Any, sha256: Any
) -> bool:
    """Whether the store's own SHA-256 of staged object ``key`` is that of the bytes sent: as
    the put returned it (no request), else as a HEAD finds it (which also checks the size and
    SHA-256 recorded with the object)."""
    if sha256 and written.stored.get(key) == sha256:
        return True
    info = ctx.store.head(staged_key(key))
    if info.size != size or info.sha256 != sha256:
        raise ArchiveVerificationFailed(
            f"archive object {staged_key(key)!r} (table {source.name!r}) holds {info.size} "
            f"bytes sha256 {info.sha256[:16]}…, but {size} bytes sha256 "
            f"{(sha256 or '')[:16]}… were written; no row was deleted, rerun the archive"
        )
    return bool(info.stored_sha256) and info.stored_sha256 == sha256


def record_verified(ctx: ArchiveContext, source: Source, verified: VerifiedBatch) -> VerifiedBatch:
    """Commit 'verified' now unless the source deletes in the manifest's transaction (SQL):
    then the guarded delete records it with 'deleted' (one commit less per batch). Either way
    no row goes before the batch is verified: a batch still 'writing' had no row deleted, and
    recovery verifies it again before finishing it. A MongoDB delete does not commit with the
    manifest, so its 'verified' must be committed before any document is deleted."""
    if source.backend == "sql":
        verified.recorded = False
        return verified
    with ctx.sql.begin() as conn:
        mark_verified(conn, verified.entry)
    verified.recorded = True
    return verified


def mark_verified(conn: Connection, entry: ManifestEntry) -> None:
    """Record the batch 'verified' with its objects' sizes and SHA-256 (in ``conn``'s
    transaction)."""
    manifest.mark_verified(
        conn, entry.batch_id, size=entry.bytes or 0, sha256=entry.sha256 or "", parts=entry.parts
    )


def attach_versions(
    archived: ArchivedRows,
    source: Source,
    versions: dict[str, Mapping[Any, int]],
    snapshot: ReadSnapshot | None = None,
) -> None:
    """Row versions read with the batch guard the delete (none after a restart: whole rows),
    with the snapshot they were read in (:mod:`~steward.archive.xid_window`)."""
    if not versions:
        return
    archived.read_snapshot = snapshot
    for rows, table in [(archived, source.name)] + [
        (part, table) for table, part in archived.children.items()
    ]:
        rows.versions = versions.get(table)
        if rows.versions is not None:
            rows.payload = None  # the versions guard the delete: decoded rows not needed


def read_back(
    ctx: ArchiveContext,
    source: Source,
    entry: ManifestEntry,
    located: dict[str, str] | None = None,
    sent: dict[str, bytes] | None = None,
    read_keys: Mapping[str, KeyColumns] | None = None,
) -> ArchivedRows:
    """Read a batch's objects (checksum-verified by the store; from ``located`` where given,
    or the bytes ``sent`` once the store proved it holds exactly them), decode them, check
    rows and keys (against ``read_keys``, each table's keys read, when known); an aggregate's
    child tables come back in ``children``."""
    where = located or {}
    read_keys = read_keys or {}

    def _decoded(ctx: ArchiveContext, key: str, fmt: str, decode: Any) -> ArchivedRows:
        final = next((k for k, v in where.items() if v == key), key)
        data = sent[final] if sent is not None else ctx.store.get_bytes(key)
        return _decode_bytes(key, data, fmt, decode)

    archived = _decoded(
        ctx, where.get(entry.object_key, entry.object_key), entry.format, source.decode
    )
    _check_keys(entry, archived, read_keys.get(source.name))
    for part in entry.parts:

        def decode(data: bytes, *, fmt: str, table: str = part.table_name) -> ArchivedRows:
            return source.decode_part(table, data, fmt=fmt)

        key = where.get(part.object_key, part.object_key)
        child = _decoded(ctx, key, entry.format, decode)
        exact = _exact_keys(key, child.keys, read_keys.get(part.table_name))
        if len(child.keys) != part.rows or not exact:
            raise ArchiveVerificationFailed(
                f"archive object {key!r} holds {len(child.keys)} rows of table "
                f"{part.table_name!r}, the manifest expects {part.rows}; no row was deleted"
            )
        archived.children[part.table_name] = child
    return archived


def _decode_bytes(key: str, data: bytes, fmt: str, decode: Any) -> ArchivedRows:
    try:
        return decode(data, fmt=fmt)  # type: ignore[no-any-return]
    except (pa.ArrowException, ValueError, OSError, KeyError) as exc:
        raise ArchiveVerificationFailed(
            f"archive object {key!r} cannot be decoded as {fmt} ({exc})"
        ) from None


def _check_keys(
    entry: ManifestEntry, archived: ArchivedRows, read_keys: KeyColumns | None = None
) -> None:
    keys = archived.keys
    if (
        len(keys) != entry.rows
        or not _exact_keys(entry.object_key, keys, read_keys)
        or (keys and (keys[0] != entry.key_min or keys[-1] != entry.key_max))
    ):
        raise ArchiveVerificationFailed(
            f"archive object {entry.object_key!r} holds {len(keys)} rows with keys "
            f"{keys[:1]}…{keys[-1:]}, the manifest expects {entry.rows} rows "
            f"{entry.key_min!r}…{entry.key_max!r}; no row was deleted"
        )


def _exact_keys(object_key: str, keys: Sequence[Any], read_keys: KeyColumns | None) -> bool:
    """Whether an object's decoded keys can be the batch's: exactly the keys read, column by
    column, when they are known and as many (read from a primary key, so unique; a differing
    key raises, naming it as such); else each key once."""
    if isinstance(keys, KeyColumns) and read_keys is not None and len(keys) == len(read_keys):
        if not keys.same_as(read_keys):
            raise ArchiveVerificationFailed(
                f"archive object {object_key!r} holds {len(keys)} rows, but not exactly the "
                "keys read (a key differs); no row was deleted"
            )
        return True
    return len(set(keys)) == len(keys)  # int, str, UUID and ObjectId keys are hashable
