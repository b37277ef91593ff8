"""The guarded delete of a root-only table's batch on PostgreSQL, the row versions read with
the batch known (:meth:`RowDelete.delete_unchanged`).

Exact: a version the batch read belongs to a transaction that had committed by then, so no
later change can carry it; the DELETE's row lock and PostgreSQL's recheck of its WHERE clause
on rows changed concurrently do the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.archive import sql_rows
from steward.archive.sql_rows import TableRows, chunked, key_array, returned

__all__ = ["RowDelete"]


class RowDelete:
    """The guarded delete of one table's rows (its :class:`TableRows`)."""

    def __init__(self, rows: TableRows) -> None:
        self.rows = rows

    def delete_unchanged(
        self,
        conn: Connection,
        keys: Sequence[Any],
        versions: dict[Any, int],
        where: Sequence[sa.ColumnElement[bool]],
        hook: Callable[[str], None],
        span_where: Sequence[sa.ColumnElement[bool]] = (),
    ) -> list[Any]:
        """Delete the rows that still have a version read with the batch (see module).

        The keys come in key order: a span of them that fills its key range (integer keys,
        :meth:`_dense`) is first deleted as a key *range* (one range scan of the primary key,
        ``span_where`` naming the rows the batch read: the policy's whole condition) inside a
        savepoint. If the range also caught a row the
        batch did not read (one that qualified or became unreferenced since, with a version
        the batch saw), that savepoint is rolled back and the span is deleted by its listed
        keys instead (:meth:`_delete_listed`)."""
        deleted: list[Any] = []
        for span in chunked(keys, sql_rows.SPAN_CHUNKS):
            seen = sorted({versions[k] for k in span if k in versions})
            guard = self.rows.version() == sa.any_(key_array(seen, sa.BigInteger()))
            ranged = span_where and self._dense(span)
            gone = self._delete_span(conn, span, [guard, *span_where]) if ranged else None
            if gone is None:
                gone = self._delete_listed(conn, span, [guard, *where], hook)
            else:
                hook("rows_deleting")
            deleted += gone
        return deleted

    def _dense(self, span: Sequence[Any]) -> bool:
        """Whether the span's keys fill at least half of their range (integer keys, by the
        leading column): then a range scan reads few rows the batch did not read."""
        if not isinstance(self.rows.key.type, sa.Integer):
            return False
        leading = span if not self.rows.composite else [key[0] for key in span]
        width = int(leading[-1]) - int(leading[0]) + 1
        return len(set(leading)) * 2 >= width

    def _delete_span(
        self, conn: Connection, span: Sequence[Any], where: Sequence[sa.ColumnElement[bool]]
    ) -> list[Any] | None:
        """Delete the rows of ``where`` between the span's first and last key; None (and
        nothing deleted) when that would delete a row whose key is not in the span."""
        rows = self.rows
        statement = (
            sa.delete(rows.table)
            .where(rows.after(span[0], inclusive=True), rows.before(span[-1]), *where)
            .returning(*rows.keys)
        )
        savepoint = conn.begin_nested()
        gone = rows.keys_from(returned(conn, statement))
        listed = set(span)
        if all(key in listed for key in gone):
            savepoint.commit()
            return gone
        savepoint.rollback()
        return None

    def _delete_listed(
        self,
        conn: Connection,
        keys: Sequence[Any],
        where: Sequence[sa.ColumnElement[bool]],
        hook: Callable[[str], None],
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
