"""The guarded delete of an aggregate's batch (roots with their children), and of a root
table's batch whose row versions are unknown (SQLite; a batch resumed after a crash).

It runs inside the caller's transaction, which also records the outcome in the manifest:

1. lock the batch's roots that still qualify and are unchanged (``SELECT … FOR UPDATE``: same
   row version ``xmin`` as read on PostgreSQL, the same whole row as archived otherwise). A
   locked root cannot gain a child: the foreign-key check of a new child waits for the lock;
2. delete their children. PostgreSQL with the versions read: per span of roots, ONE
   ``DELETE … WHERE parent = ANY(:roots) RETURNING key, parent, xmin`` per child table,
   inside a savepoint. The rows it returns must be exactly the archived children of those
   roots, each with the version read (a child changed meanwhile is returned with a new
   version, or, moved to another parent or deleted, is missing). If not, the savepoint is
   rolled back and the span goes the exact way: its children are locked and compared row by
   row, and only roots whose children are all unchanged lose them;
3. delete the roots that kept their whole aggregate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.archive import sql_rows
from steward.archive.batch import ArchivedRows, DeleteOutcome, Hook
from steward.archive.formats import guard_columns
from steward.archive.policy import ChildTable
from steward.archive.sql_rows import TableRows

__all__ = ["AggregateDelete", "outcome_of"]


class AggregateDelete:
    """The guarded delete of one root table's batches, children first."""

    def __init__(
        self,
        root: TableRows,
        parts: dict[str, tuple[ChildTable, TableRows]],
        qualifies: sa.ColumnElement[bool],
        postgres: bool,
    ) -> None:
        self.root = root
        self.parts = parts
        self.qualifies = qualifies
        self.postgres = postgres

    @property
    def chunks(self) -> int:
        """Key chunks per statement: PostgreSQL binds one array per statement, SQLite one
        parameter per key (and allows few)."""
        return sql_rows.SPAN_CHUNKS if self.postgres else 1

    def delete(self, conn: Connection, archived: ArchivedRows, hook: Hook) -> DeleteOutcome:
        """Delete the batch's aggregates still equal to the archive (see module)."""
        good = self._unchanged_roots(conn, archived)
        roots = [key for key in archived.keys if key in good]
        counts = dict.fromkeys(self.parts, 0)
        at_once = self.postgres and all(_versioned(archived.children[n]) for n in self.parts)
        owned = {n: Counter(archived.children[n].parents.values()) for n in self.parts}
        for span in _spans(roots, self.chunks if at_once else None):
            done = self._delete_at_once(conn, archived, span, owned, hook) if at_once else None
            if done is None:
                good -= self._delete_children_exactly(conn, archived, span, counts, hook)
            else:
                counts = {name: counts[name] + rows for name, rows in done.items()}
        self.root.delete(conn, [key for key in roots if key in good], hook, chunks=self.chunks)
        outcome = outcome_of(archived.keys, good)
        outcome.children = counts
        return outcome

    def _unchanged_roots(self, conn: Connection, archived: ArchivedRows) -> set[Any]:
        """The batch's roots that still qualify and are unchanged, locked until commit."""
        by_version = archived.versions is not None and self.postgres
        current = self.root.current(
            conn, None, archived.keys, [self.qualifies], by_version=by_version, chunks=self.chunks
        )
        expected = archived.versions if by_version else _guard(self.root, archived)
        assert expected is not None
        return {k for k, (_tag, stamp) in current.items() if expected.get(k) == stamp}

    def _delete_at_once(
        self,
        conn: Connection,
        archived: ArchivedRows,
        span: Sequence[Any],
        owned: dict[str, Counter[Any]],
        hook: Hook,
    ) -> dict[str, int] | None:
        """Every child of the span's locked roots, one DELETE per child table in a savepoint;
        None (savepoint rolled back) unless exactly the archived children left, unchanged."""
        counts: dict[str, int] = {}
        savepoint = conn.begin_nested()
        for name, (child, rows) in self.parts.items():
            mine = archived.children[name]
            gone = rows.delete_owned(conn, child.parent, span)
            hook("rows_deleting")
            versions, parents = mine.versions or {}, mine.parents
            expected = sum(owned[name][root] for root in span)
            if len(gone) != expected or any(
                parents.get(key) != parent or versions.get(key) != version
                for key, parent, version in gone
            ):
                savepoint.rollback()
                return None
            counts[name] = expected
        savepoint.commit()
        return counts

    def _delete_children_exactly(
        self,
        conn: Connection,
        archived: ArchivedRows,
        span: Sequence[Any],
        counts: dict[str, int],
        hook: Hook,
    ) -> set[Any]:
        """Lock and compare the children of the span's roots row by row, delete those of the
        roots whose children are all unchanged; returns the roots that must stay."""
        roots = set(span)
        changed: set[Any] = set()
        for child, rows in self.parts.values():
            changed |= self._changed_parents(conn, child, rows, archived, roots - changed)
        for name, (_child, rows) in self.parts.items():
            mine = archived.children[name].parents
            doomed = [k for k, parent in mine.items() if parent in roots and parent not in changed]
            counts[name] += rows.delete(conn, doomed, hook)
        return changed

    def _changed_parents(
        self,
        conn: Connection,
        child: ChildTable,
        rows: TableRows,
        archived: ArchivedRows,
        roots: set[Any],
    ) -> set[Any]:
        """Roots whose children differ from the archived ones (added, removed, changed)."""
        mine = archived.children[child.name]
        by_version = mine.versions is not None and self.postgres
        current = rows.current(
            conn, child.parent, sorted(roots), by_version=by_version, extra=child.parent
        )
        expected = mine.versions if by_version else _guard(rows, mine)
        assert expected is not None
        changed = {
            parent
            for key, (parent, stamp) in current.items()
            if mine.parents.get(key) != parent or expected.get(key) != stamp
        }
        for key, parent in mine.parents.items():
            if parent in roots and (key not in current or current[key][0] != parent):
                changed.add(parent)
        return changed


def outcome_of(keys: Sequence[Any], deleted: set[Any]) -> DeleteOutcome:
    """Keys deleted and keys kept, each in the batch's key order."""
    return DeleteOutcome(
        deleted=[k for k in keys if k in deleted], skipped=[k for k in keys if k not in deleted]
    )


def _guard(rows: TableRows, archived: ArchivedRows) -> dict[Any, Any]:
    """Whole-row values of the archived rows, in the form the database returns them."""
    if not archived.guard:
        columns = guard_columns(archived.payload, rows.guard_specs)
        archived.guard = dict(zip(archived.keys, zip(*columns, strict=True), strict=True))
    return archived.guard


def _versioned(rows: ArchivedRows) -> bool:
    """Whether the row versions read with the batch guard these rows (not after a restart)."""
    return rows.versions is not None


def _spans(keys: Sequence[Any], chunks: int | None) -> list[Sequence[Any]]:
    """``keys`` in spans of ``chunks`` chunks of keys (None: one span of all of them)."""
    if not keys:
        return []
    if chunks is None:
        return [keys]
    size = sql_rows.CHUNK * chunks  # read at call time: tests shrink it
    return [keys[start : start + size] for start in range(0, len(keys), size)]
