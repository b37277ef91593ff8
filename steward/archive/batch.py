"""What moves through an archive run: batches read from a source and what came of them.

A *source* is one table (``SqlSource``) or one collection (``MongoSource``) under a policy.
Both offer the same operations, so the archive protocol in :mod:`steward.archive.archiver`
is written once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.engine import Connection

__all__ = [
    "ArchivedRows",
    "DeleteOutcome",
    "ReadSnapshot",
    "RestoreOutcome",
    "Source",
    "SourceBatch",
    "normalize",
]


@dataclass(frozen=True)
class ReadSnapshot:
    """PostgreSQL: the transactions a batch's read could not see — those still running then
    (``running``) and every one started since (ids from ``xmax``), 64-bit ids."""

    xmax: int
    running: tuple[int, ...] = ()


@dataclass
class SourceBatch:
    """Rows read from the source, already in their archive form (an Arrow table or docs).

    ``children``: the rows of each child table of an aggregate, by table name. ``versions``:
    per table, the row version (PostgreSQL ``xmin``) of every key read, for the guard.
    """

    batch_id: str
    payload: Any
    keys: Sequence[Any]
    ts_min: datetime | None
    ts_max: datetime | None
    children: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Mapping[Any, int]] = field(default_factory=dict)
    read_snapshot: ReadSnapshot | None = None  # PostgreSQL: the snapshot the rows were read in

    @property
    def rows(self) -> int:
        return len(self.keys)


@dataclass
class ArchivedRows:
    """Rows decoded from an archive object: keys in order, and the values the delete guards.

    For a child table of an aggregate, ``parents`` maps each key to its root's key. When the
    rows were read in this process, ``versions`` holds their row versions (then the guard
    compares those instead of whole rows). ``children`` holds an aggregate's child tables.
    """

    keys: Sequence[Any]
    guard: dict[Any, tuple[Any, ...]]
    payload: Any = None
    guard_columns: list[list[Any]] | None = None  # the same values column-wise, in key order
    parents: dict[Any, Any] = field(default_factory=dict)
    versions: Mapping[Any, int] | None = None
    children: dict[str, ArchivedRows] = field(default_factory=dict)
    read_snapshot: ReadSnapshot | None = None  # the snapshot they were read in (xid_window)


@dataclass
class DeleteOutcome:
    """Root keys deleted and kept (changed), and child rows deleted per child table."""

    deleted: Sequence[Any]
    skipped: list[Any]
    children: dict[str, int] = field(default_factory=dict)


@dataclass
class RestoreOutcome:
    """What a restore did with one batch's rows (children included).

    ``conflicts``: keys that exist in the source again (left alone unless overwrite);
    ``clashes``: every row the database refused, each with its table, key and constraint;
    ``whole_keys``: roots that hold their archived values again with every child row (the
    archive objects may let go of them).
    """

    restored: int = 0
    overwritten: int = 0
    conflicts: list[Any] = field(default_factory=list)
    clashes: list[Any] = field(default_factory=list)
    children_restored: dict[str, int] = field(default_factory=dict)
    restored_keys: list[Any] = field(default_factory=list)
    whole_keys: list[Any] = field(default_factory=list)


Finish = Callable[[Connection, DeleteOutcome], None]
Hook = Callable[[str], None]
RestoreFinish = Callable[[Connection, RestoreOutcome], None]


class Source(Protocol):
    """One table or collection under an archive policy (cutoff fixed for the run)."""

    backend: str
    name: str
    source_name: str
    key_name: str
    ts_name: str
    batch_size: int
    format: str
    storage_class: str
    cutoff: datetime

    def count(self) -> int: ...

    def count_referenced(self) -> int: ...

    def kept(self) -> tuple[int, str]:
        """Rows past retention kept because other tables reference them, and which tables."""
        ...

    def read_batch(self, after: Any, limit: int, batch_id: str) -> SourceBatch | None: ...

    def encode(self, batch: SourceBatch) -> bytes: ...

    def encode_parts(self, batch: SourceBatch) -> dict[str, tuple[bytes, int]]:
        """One object's bytes and row count per child table of an aggregate (else empty)."""
        ...

    def decode_part(
        self, table: str, data: bytes, *, full: bool = False, fmt: str | None = None
    ) -> ArchivedRows:
        """Keys, parents and guarded values of a child table's object."""
        ...

    def decode(self, data: bytes, *, full: bool = False, fmt: str | None = None) -> ArchivedRows:
        """Keys and guarded values of an object in format ``fmt`` (rows too when ``full``)."""
        ...

    def without(
        self, data: bytes, *, fmt: str, table: str | None, roots: set[Any], batch_id: str
    ) -> bytes:
        """An object's bytes (the root's, or child ``table``'s) without the rows of ``roots``."""
        ...

    def key_of(self, row: dict[str, Any]) -> Any:
        """A row's key (a tuple for a composite primary key)."""
        ...

    def present_keys(self, keys: Sequence[Any]) -> set[Any]:
        """Which of ``keys`` are in the source now."""
        ...

    def coerce_key(self, value: Any) -> Any: ...

    def delete_unchanged(self, archived: ArchivedRows, finish: Finish, hook: Hook) -> DeleteOutcome:
        """Delete the rows still equal to their archived copy; ``finish`` records the outcome."""
        ...

    def restore_rows(
        self,
        rows: Sequence[dict[str, Any]],
        *,
        overwrite: bool,
        dry_run: bool,
        finish: RestoreFinish,
        children: dict[str, Sequence[dict[str, Any]]] | None = None,
    ) -> RestoreOutcome:
        """Put rows back, parents before ``children`` (existing keys are conflicts unless
        ``overwrite``; refused rows are clashes); ``finish`` runs in the same SQL
        transaction when there is one."""
        ...


def normalize(value: Any) -> Any:
    """Make values comparable across drivers and formats (timestamps as aware UTC)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value
