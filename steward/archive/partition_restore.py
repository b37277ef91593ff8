"""Restoring rows of partitions archived whole: give their range a partition again first.

A restore reads complete batches like any other; batches that came from a whole partition are
linked to its record (``steward_archive_partition_batches``). Before their rows go back, each
such partition whose range has no partition now is recreated: a kept (detached) table is
attached again with its bounds, a dropped one is created empty (``CREATE TABLE p PARTITION OF
parent FOR VALUES FROM … TO …``). The rows are then inserted into the parent, which routes them
there. When some partition covers the range already (recreated earlier, or made by the
application or pg_partman), the rows are simply inserted into the parent. Every row that is
back is reported as usual; rows of an attached kept table exist again and are conflicts.
"""

from __future__ import annotations

from collections.abc import Sequence

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

__all__ = ["reopen_partitions"]


def reopen_partitions(
    ctx: ArchiveContext, entries: Sequence[ManifestEntry], *, dry_run: bool
) -> list[str]:
    """Recreate or reattach the partitions the rows of ``entries`` came from, where their range
    has no partition now; returns one line per partition saying what was (or would be) done."""
    if not ctx.sql.is_postgres or not entries:
        return []
    with ctx.sql.connect() as conn:
        if not partition_tables_exist(conn):  # Steward's schema: `steward install`
            return []
        records = _records(conn, [e.batch_id for e in entries])
    notes = []
    for record in records:
        with ctx.sql.begin() as conn:
            notes.append(_reopen(conn, record, dry_run))
    return [note for note in notes if note]


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
