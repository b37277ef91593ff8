"""Archive runs, one row per table per run in ``steward_archive_runs``: started, finished,
failed or interrupted (killed: found still ``running`` by the next run holding the table's
lock), with totals. ``steward archive status`` reads them.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from steward.archive.manifest import COMPLETE, manifest_table, parts_table, runs_table
from steward.storage import utcnow

__all__ = ["finish_run", "latest_runs", "mark_interrupted", "start_run", "status_rows"]


def start_run(conn: Connection, run_id: str, source: str, table: str) -> int:
    result = conn.execute(
        runs_table.insert().values(
            run_id=run_id, source=source, table_name=table, started_at=utcnow(), status="running"
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def mark_interrupted(conn: Connection, source: str, table: str) -> int:
    """Mark runs of a table still 'running' as interrupted (call it holding the table's lock:
    then no such run is alive). Returns how many there were."""
    r = runs_table
    result = conn.execute(
        r.update()
        .where(r.c.source == source, r.c.table_name == table, r.c.status == "running")
        .values(status="interrupted", finished_at=utcnow())
    )
    return int(result.rowcount or 0)


def finish_run(conn: Connection, run_row: int, status: str, totals: dict[str, int]) -> None:
    conn.execute(
        runs_table.update()
        .where(runs_table.c.id == run_row)
        .values(finished_at=utcnow(), status=status, **totals)
    )


def status_rows(conn: Connection) -> list[dict[str, Any]]:
    """Per source, table and storage class: rows archived, objects, bytes, last run."""
    t, p = manifest_table, parts_table
    # An aggregate's batch is one object per table: count and size its child objects too.
    part_objects = sa.select(sa.func.count()).where(p.c.batch_id == t.c.batch_id)
    part_bytes = sa.select(sa.func.coalesce(sa.func.sum(p.c.bytes), 0)).where(
        p.c.batch_id == t.c.batch_id
    )
    grouped = conn.execute(
        sa.select(
            t.c.source,
            t.c.table_name,
            t.c.storage_class,
            sa.func.sum(1 + part_objects.scalar_subquery()).label("objects"),
            sa.func.coalesce(sa.func.sum(t.c.deleted_rows), 0).label("rows"),
            sa.func.coalesce(
                sa.func.sum(sa.func.coalesce(t.c.bytes, 0) + part_bytes.scalar_subquery()), 0
            ).label("bytes"),
        )
        .where(t.c.state == COMPLETE)
        .group_by(t.c.source, t.c.table_name, t.c.storage_class)
        .order_by(t.c.source, t.c.table_name, t.c.storage_class)
    ).all()
    last_runs = latest_runs(conn)
    shown = [
        {**row._mapping, **last_runs.get((row.source, row.table_name), _NO_RUN)} for row in grouped
    ]
    with_objects = {(row["source"], row["table_name"]) for row in shown}
    for (source, table), last in sorted(last_runs.items()):
        if (source, table) not in with_objects:
            shown.append(
                {
                    "source": source,
                    "table_name": table,
                    "storage_class": "-",
                    "objects": 0,
                    "rows": 0,
                    "bytes": 0,
                    **last,
                }
            )
    return shown


_NO_RUN: dict[str, Any] = {"last_run": None, "last_status": None}


def latest_runs(conn: Connection) -> dict[tuple[str, str], dict[str, Any]]:
    """The latest run of every table, whatever its status: when it ended (or started) and how."""
    r = runs_table
    rows = conn.execute(
        sa.select(r.c.source, r.c.table_name, r.c.started_at, r.c.finished_at, r.c.status).order_by(
            r.c.started_at, r.c.id
        )
    ).all()
    return {
        (row.source, row.table_name): {
            "last_run": row.finished_at or row.started_at,
            "last_status": row.status,
        }
        for row in rows
    }
