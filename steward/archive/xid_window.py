"""Row versions that a transaction the read could not see might carry too (xid wraparound).

The guarded delete (PostgreSQL) keeps a row only at a version the batch read: ``xmin``, the
32-bit id of the transaction that wrote it. Ids wrap around every 2**32 transactions and a
frozen row keeps its raw ``xmin``, so in an old, busy cluster a transaction the read did not
see — one still running then, or started since — may have the very id an archived row's
version shows, and a row it changed would pass the guard with its new content. Every change
the read did not see comes from such a transaction. So a batch keeps the snapshot it was read
in (:class:`~steward.archive.batch.ReadSnapshot`), and just before its delete commits the
guard takes the ids handed out by then (the current snapshot's ``xmax``, after the delete's
own statements): a version read equal (modulo 2**32) to one of those transactions' ids no
longer vouches for its rows. The delete is rolled back and redone without those versions;
their rows stay in the source and out of the published objects, and a later run archives
them. A version read was written by a transaction that had committed before the read, which
is none of those, so in a cluster that never wrapped nothing is set aside.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.archive.batch import ArchivedRows, ReadSnapshot
from steward.archive.key_columns import distinct_versions

__all__ = ["Aliased", "check", "read_snapshot", "reused", "until_unaliased"]

_IDS = 2**32
T = TypeVar("T")


class Aliased(Exception):  # noqa: N818 - control flow inside the guarded delete, never raised out
    """Raised inside the delete's transaction (rolled back) with the versions set aside."""

    def __init__(self, versions: set[int]) -> None:
        super().__init__(f"{len(versions)} row version(s) may have been reused")
        self.versions = versions


def read_snapshot(conn: Connection) -> ReadSnapshot:
    """The connection's current snapshot: call it before the batch's reads, on the same
    connection (an older snapshot only sees less, so it is a safe stand-in)."""
    query = sa.text(
        "SELECT pg_snapshot_xmax(s)::text::bigint, "
        "ARRAY(SELECT pg_snapshot_xip(s)::text::bigint) FROM pg_current_snapshot() AS s"
    )
    xmax, running = conn.execute(query).one()
    return ReadSnapshot(int(xmax), tuple(int(x) for x in running or ()))


def _handed_out(conn: Connection) -> int:
    query = sa.text("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
    return int(conn.execute(query).scalar_one())


def reused(versions: Iterable[int], snapshot: ReadSnapshot, until: int) -> set[int]:
    """The 32-bit ``versions`` equal, modulo 2**32, to the id of a transaction the read did
    not see: one running then, or one with an id in ``[snapshot.xmax, until)``."""
    distinct = set(versions)
    width = until - snapshot.xmax
    if width >= _IDS:
        return distinct
    later = {v for v in distinct if (v - snapshot.xmax) % _IDS < width}
    return later | (distinct & {x % _IDS for x in snapshot.running})


def check(conn: Connection, archived: ArchivedRows) -> None:
    """Raise :class:`Aliased` when a version read could also be an unseen transaction's."""
    if archived.read_snapshot is None:
        return
    tables = [archived, *archived.children.values()]
    seen = set().union(*(distinct_versions(rows.versions) for rows in tables))
    doubtful = reused(seen, archived.read_snapshot, _handed_out(conn))
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
