"""Lines saying what happened to a partitioned table's partitions in one archive run (CLI,
flow notes, the nightly report): each partition archived whole, the ones the budget left, and
why others went through row archiving."""

from __future__ import annotations

from typing import Any

__all__ = ["describe_partitions"]


def describe_partitions(table: str, item: dict[str, Any]) -> list[str]:
    """One line per partition archived whole (and why others went row by row), from a
    table's report as a dict (:meth:`TableReport.to_dict`, or a flow summary's ``tables``)."""
    lines = []
    for p in item.get("partitions") or []:
        fate = "dropped" if p.get("state") == "dropped" else "kept detached"
        lines.append(
            f"{table}: partition {p.get('partition')} [{str(p.get('from'))[:10]}, "
            f"{str(p.get('to'))[:10]}) archived whole: {p.get('rows', 0):,} rows in "
            f"{p.get('objects', 0)} object(s), {fate}"
        )
    if item.get("partitions_pending"):
        lines.append(
            f"{table}: {item['partitions_pending']} whole partition(s) left for the next run "
            "(budget spent); no row of the table was archived singly meanwhile"
        )
    if item.get("partitions_note"):
        lines.append(f"{table}: {item['partitions_note']}")
    return lines
