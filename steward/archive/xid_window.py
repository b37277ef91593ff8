"""Row versions that a transaction started after a batch was read could carry too.

The guarded delete (PostgreSQL) keeps a row only at a version the batch read: ``xmin``, the
32-bit id of the transaction that wrote it. Ids wrap around every 2**32 transactions, and a
frozen row keeps its raw ``xmin``, so in an old, busy cluster a transaction started after the
read may get the very id an archived row's version shows, and a row it changes would then pass
the guard with its new content. So the batch notes the oldest transaction still running when it
was read (``since``: every change the read did not see comes from it or a later one), and just
before its delete commits the guard asks which ids have been handed out since (up to the
current snapshot's ``xmax``, after the delete's own statements). A version read that equals one
of them (modulo 2**32) no longer vouches for its rows: the delete is rolled back and redone
without them, and they stay in the source and out of the published objects (a later run
archives them). In a cluster that never wrapped, only versions written after ``since`` are
set aside, which rows old enough to archive seldom are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.archive.batch import ArchivedRows

__all__ = ["Aliased", "check", "read_since", "until_unaliased"]

_IDS = 2**32
T = TypeVar("T")


class Aliased(Exception):  # noqa: N818 - control flow inside the guarded delete, never raised out
    """Raised inside the delete's transaction (rolled back) with the versions set aside."""

    def __init__(self, versions: set[int]) -> None:
        super().__init__(f"{len(versions)} row version(s) may have been reused")
        self.versions = versions


def read_since(conn: Connection) -> int:
    """The oldest transaction id (64-bit) running as of this connection's snapshot: call it
    before the batch's reads, on the same connection."""
    query = sa.text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
    return int(conn.execute(query).scalar_one())


def _handed_out(conn: Connection) -> int:
    query = sa.text("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
    return int(conn.execute(query).scalar_one())


def reused(versions: Iterable[int], since: int, until: int) -> set[int]:
    """The 32-bit ``versions`` equal to an id in ``[since, until)`` modulo 2**32."""
    width = until - since
    distinct = set(versions)
    if width >= _IDS:
        return distinct
    return {v for v in distinct if (v - since) % _IDS < width}


def check(conn: Connection, archived: ArchivedRows) -> None:
    """Raise :class:`Aliased` when a version read could also be a later transaction's."""
    if archived.read_since is None:
        return
    tables = [archived, *archived.children.values()]
    seen = {v for rows in tables for v in (rows.versions or {}).values()}
    doubtful = reused(seen, archived.read_since, _handed_out(conn))
    if doubtful:
        raise Aliased(doubtful)


def until_unaliased(archived: ArchivedRows, attempt: Callable[[], T]) -> T:
    """Run the delete ``attempt`` until :func:`check` passes inside it, forgetting the doubtful
    versions each time (their rows then count as changed: they stay)."""
    while True:
        try:
            return attempt()
        except Aliased as exc:
            for rows in [archived, *archived.children.values()]:
                if rows.versions is not None:
                    rows.versions = {
                        k: v for k, v in rows.versions.items() if v not in exc.versions
                    }
