"""The guarded delete of a root-only table's batch on PostgreSQL, the row versions read with
the batch known (:meth:`RowDelete.delete_unchanged`).

The guard: a row leaves only if its version (``xmin``) is one of the versions the batch read.
Exact: such a version belongs to a transaction that had committed when the batch was read, so
no later change can carry it, and the live row holding it now is the very row version the
read saw (any UPDATE gives a row a new version). The DELETE's row lock and PostgreSQL's
recheck of its WHERE clause on rows changed concurrently do the rest.

The fast form is ONE ``DELETE`` of the batch's key *range* when its keys fill it (integer
keys, :meth:`RowDelete._dense`): a range scan of the primary key, nothing sent back but the
row count. It may only delete rows the batch read:

- a single integer key: by construction — the keys of the range the batch did not read (its
  *holes*, usually none) are excluded (``key <> ALL(:holes)``, a hashed array);
- a composite key whose policy has no cross-table condition (no reference holds its rows):
  by the versions. A row of the range whose version the batch saw existed unchanged when the
  batch was read; whether it qualified then depends only on its own columns (past retention
  under the run's fixed cutoff, ``where`` values), unchanged too. So if it qualifies now, it
  qualified then, and the read (every qualifying row in key order up to the batch's last key)
  read it;
- a composite key that other tables reference: a row of the range may have become
  unreferenced since the read (same version, not read), so the keys deleted come back and
  must all be the batch's (else the savepoint is rolled back).

The range is deleted inside a savepoint; when fewer rows left than the batch holds (a row
changed or left since the read) or more, it is rolled back and the batch goes span by span:
a dense span by its range again, any other by its listed keys (``key = ANY(:keys)``, the keys
deleted returned), so the outcome names exactly the rows that left.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.archive import sql_rows
from steward.archive.key_columns import KeyColumns, distinct_versions
from steward.archive.sql_rows import TableRows, Xid, chunked, key_array, returned

__all__ = ["RowDelete"]

Where = Sequence[sa.ColumnElement[bool]]


class RowDelete:
    """The guarded delete of one table's rows (its :class:`TableRows`)."""

    def __init__(self, rows: TableRows, *, referenced: bool) -> None:
        self.rows = rows
        self.referenced = referenced  # other tables' rows may hold this table's rows

    def delete_unchanged(
        self,
        conn: Connection,
        keys: Sequence[Any],
        versions: Mapping[Any, int],
        where: Where,
        hook: Callable[[str], None],
        span_where: Where = (),
    ) -> Sequence[Any]:
        """Delete the batch's rows that still have a version read with it (see module); the
        keys deleted, in key order. ``where``: what a row's version cannot vouch for (the
        listed form); ``span_where``: the policy's whole condition (the range forms)."""
        guard = self._seen(versions)
        ranged = bool(span_where) and len(keys) == len(versions)  # every row read is listed
        if ranged and self._delete_range(conn, keys, [guard, *span_where]):
            hook("rows_deleting")
            return keys
        deleted: list[Any] = []
        for span in chunked(keys, sql_rows.SPAN_CHUNKS):
            retry = ranged and len(span) < len(keys)
            if retry and self._delete_range(conn, span, [guard, *span_where]):
                deleted += span
                hook("rows_deleting")
            else:
                deleted += self._delete_listed(conn, span, [guard, *where], hook)
        return deleted

    def _seen(self, versions: Mapping[Any, int]) -> sa.ColumnElement[bool]:
        """The row's version is one the batch read: ``xmin = ANY(:versions)``, an ``xid[]``
        (no text conversion per row; the array is hashed)."""
        seen = sorted(distinct_versions(versions))
        return self.rows.version(raw=True) == sa.any_(key_array(seen, Xid()))

    def _dense(self, span: Sequence[Any]) -> bool:
        """Whether the span's keys fill at least half of their range (integer keys, by the
        leading column): then a range scan reads few rows the batch did not read."""
        if not span or not isinstance(self.rows.key.type, sa.Integer):
            return False
        first, last = span[0], span[-1]
        if not self.rows.composite:
            distinct = len(span)  # keys are unique
        else:
            first, last = first[0], last[0]
            if isinstance(span, KeyColumns):  # in Arrow: no Python key per row
                distinct = span.leading_distinct()
            else:
                distinct = len({key[0] for key in span})
        return distinct * 2 >= int(last) - int(first) + 1

    def _delete_range(self, conn: Connection, span: Sequence[Any], where: Where) -> bool:
        """Delete the rows of ``where`` between the span's first and last key, inside a
        savepoint kept only if exactly the span's rows left (see module)."""
        if not self._dense(span):
            return False
        rows = self.rows
        statement = sa.delete(rows.table).where(
            rows.after(span[0], inclusive=True), rows.before(span[-1]), *where
        )
        savepoint = conn.begin_nested()
        if not rows.composite:
            holes = _holes(span)
            if holes:
                statement = statement.where(rows.key != sa.all_(key_array(holes, rows.key.type)))
            done = conn.execute(statement).rowcount == len(span)
        elif not self.referenced:
            done = conn.execute(statement).rowcount == len(span)
        else:
            gone = rows.keys_from(returned(conn, statement.returning(*rows.keys)))
            listed = set(span)
            done = len(gone) == len(span) and all(key in listed for key in gone)
        if done:
            savepoint.commit()
        else:
            savepoint.rollback()
        return done

    def _delete_listed(
        self, conn: Connection, keys: Sequence[Any], where: Where, hook: Callable[[str], None]
    ) -> list[Any]:
        rows = self.rows
        deleted: list[Any] = []
        for chunk in chunked(keys):
            statement = (
                sa.delete(rows.table).where(rows.key_in(chunk), *where).returning(*rows.keys)
            )
            deleted += rows.keys_from(returned(conn, statement))
            hook("rows_deleting")
        return deleted


def _holes(span: Sequence[Any]) -> list[int]:
    """The integers between the span's first and last key that are not keys of the span
    (none when the keys are consecutive: no set is built)."""
    first, last = int(span[0]), int(span[-1])
    if last - first + 1 == len(span):
        return []
    return sorted(set(range(first, last + 1)).difference(span))
