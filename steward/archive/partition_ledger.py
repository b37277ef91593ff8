"""The record of each partition archived whole, in Steward's own schema.

``steward_archive_partitions`` holds one row per partition (its bounds, the action and the
state it reached: detaching -> detached -> dropped / kept -> restored); every state is
committed before the next step starts, so a rerun knows where a killed run stopped.
``steward_archive_partition_batches`` links it to the manifest entries of its objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.storage.steward_schema import SCHEMA_TOKEN, missing_tables, require_installed

__all__ = [
    "DETACHED",
    "DETACHING",
    "DROPPED",
    "KEPT",
    "OPEN",
    "RESTORED",
    "PartitionRecord",
    "batches_table",
    "metadata",
    "partition_records",
    "partition_tables_exist",
    "partitions_table",
    "require_partition_tables",
    "set_state",
]

DETACHING, DETACHED, DROPPED, KEPT, RESTORED = (
    "detaching",
    "detached",
    "dropped",
    "kept",
    "restored",
)
OPEN = (DETACHING, DETACHED)
metadata = sa.MetaData(schema=SCHEMA_TOKEN)  # Steward's own schema (database.schema)
TS = sa.DateTime(timezone=True)

partitions_table = sa.Table(
    "steward_archive_partitions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("table_name", sa.String(128), nullable=False),
    sa.Column("partition_name", sa.String(128), nullable=False),
    sa.Column("lower_bound", TS, nullable=False),
    sa.Column("upper_bound", TS, nullable=False),
    sa.Column("action", sa.String(8), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("objects", sa.Integer, nullable=False, server_default="0"),
    sa.Column("bytes", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("run_id", sa.String(64)),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("finished_at", TS),
    sa.Index("ix_steward_archive_partitions_table", "source", "table_name", "state"),
)

batches_table = sa.Table(
    "steward_archive_partition_batches",
    metadata,
    sa.Column("partition_id", sa.Integer, primary_key=True),
    sa.Column("batch_id", sa.String(32), primary_key=True),
)


def require_partition_tables(bind: sa.Engine | sa.Connection) -> None:
    """Stop with one line (:class:`~steward.errors.NotInstalled`) unless ``steward install``
    created the partition tables (Steward's own schema)."""
    require_installed(bind, metadata.sorted_tables)


def partition_tables_exist(bind: sa.Engine | sa.Connection) -> bool:
    return not missing_tables(bind, [partitions_table])


@dataclass
class PartitionRecord:
    """One partition archived whole (a row of ``steward_archive_partitions``)."""

    id: int
    name: str
    lower: datetime
    upper: datetime
    action: str
    state: str


def partition_records(
    conn: Connection, source: str, table: str, states: tuple[str, ...]
) -> list[PartitionRecord]:
    """The partitions of ``table`` in ``states``, oldest record first."""
    t = partitions_table
    rows = conn.execute(
        sa.select(t.c.id, t.c.partition_name, t.c.lower_bound, t.c.upper_bound, t.c.action,
                  t.c.state)
        .where(t.c.source == source, t.c.table_name == table, t.c.state.in_(states))
        .order_by(t.c.id)
    ).all()  # fmt: skip
    return [PartitionRecord(*row) for row in rows]


def set_state(conn: Connection, record_id: int, state: str, **values: Any) -> None:
    t = partitions_table
    conn.execute(t.update().where(t.c.id == record_id).values(state=state, **values))
