"""Restoring rows of partitions archived whole: give their range a partition again first.

A restore reads complete batches like any other; batches that came from a whole partition are
linked to its record (``steward_archive_partition_batches``). Before their rows go back, each
such partition whose range has no partition now is recreated: a kept (detached) table is
attached again with its bounds, a dropped one is created empty (``CREATE TABLE p PARTITION OF
parent FOR VALUES FROM … TO …``). The rows are then inserted into the parent, which routes them
there. When some partition covers the range already (recreated earlier, or made by the
application or pg_partman), the rows are simply inserted into the parent. Every row that is
back is reported as usual. The rows of a reattached kept table are in it again: their batches
are restored with overwrite (the archived values), so they count as back and leave the objects,
and the archive read in place does not hold them twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from steward.archive.archiver import ArchiveContext
from steward.archive.manifest import ManifestEntry
from steward.archive.partition_catalog import (
    attach_partition,
    create_partition,
    partition_state,
    range_is_free,
)
from steward.archive.partitions import (
    DROPPED,
    KEPT,
    RESTORED,
    batches_table,
    partition_tables_exist,
    partitions_table,
)

__all__ = ["Reopened", "reopen_partitions"]


@dataclass
class Reopened:
    """One line per partition given back its range, and the batches of reattached kept tables
    (their rows are in the table again: restored with overwrite, so they leave the objects)."""

    notes: list[str] = field(default_factory=list)
    reattached: set[str] = field(default_factory=set)


def reopen_partitions(
    ctx: ArchiveContext, entries: Sequence[ManifestEntry], *, dry_run: bool
) -> Reopened:
    """Recreate or reattach the partitions the rows of ``entries`` came from, where their range
    has no partition now."""
    done = Reopened()
    if not ctx.sql.is_postgres or not entries:
        return done
    with ctx.sql.connect() as conn:
        if not partition_tables_exist(conn):  # Steward's schema: `steward install`
            return done
        records = _records(conn, [e.batch_id for e in entries])
    for record in records:
        with ctx.sql.begin() as conn:
            note = _reopen(conn, record, dry_run)
            if note.startswith(f"{record.table_name}: reattached"):
                done.reattached |= _batches(conn, record.id)
        done.notes.append(note)
    return done


def _batches(conn: sa.Connection, record_id: int) -> set[str]:
    query = sa.select(batches_table.c.batch_id).where(batches_table.c.partition_id == record_id)
    return set(conn.execute(query).scalars())


def _records(conn: sa.Connection, batch_ids: list[str]) -> list[sa.Row]:
    t, b = partitions_table, batches_table
    found: dict[int, sa.Row] = {}
    for start in range(0, len(batch_ids), 500):
        rows = conn.execute(
            sa.select(t)
            .join(b, b.c.partition_id == t.c.id)
            .where(b.c.batch_id.in_(batch_ids[start : start + 500]))
            .where(t.c.state.in_((DROPPED, KEPT, RESTORED)))
        ).all()
        found.update({row.id: row for row in rows})
    return [found[key] for key in sorted(found)]


def _reopen(conn: sa.Connection, record: sa.Row, dry_run: bool) -> str:
    parent, name = record.table_name, record.partition_name
    lower, upper = record.lower_bound, record.upper_bound
    span = f"[{lower:%Y-%m-%d %H:%M}, {upper:%Y-%m-%d %H:%M})"
    if not range_is_free(conn, parent, lower, upper):
        return f"{parent}: rows of {name} {span} go into the partition covering that range now"
    kept = record.state == KEPT and partition_state(conn, parent, name) == "detached"
    verb = "reattach the kept table" if kept else "recreate"
    if dry_run:
        return f"{parent}: would {verb} partition {name} {span}"
    if kept:
        attach_partition(conn, parent, name, lower, upper)
    else:
        create_partition(conn, parent, name, lower, upper)
    conn.execute(
        partitions_table.update().where(partitions_table.c.id == record.id).values(state=RESTORED)
    )
    done = "reattached the kept table" if kept else "recreated"
    return f"{parent}: {done} partition {name} {span}"
