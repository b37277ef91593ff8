"""Rows Steward's own writers changed per table, from their reports: what decides whether a
table is analysed after an archive run or a restore.

Duck-typed on the archive's results (a table report as its ``to_dict()``, a batch restore with
``table`` and ``outcome``), so this package does not depend on the archive's internals.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["archived_rows", "restored_rows"]


def archived_rows(tables: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """Rows an archive run deleted per table: each policy's roots and its children."""
    removed: dict[str, int] = {}
    for table, report in tables.items():
        for name, rows in [(table, report.get("rows_archived", 0)), *report["children"].items()]:
            removed[name] = removed.get(name, 0) + int(rows)
    return removed


def restored_rows(results: Iterable[Any]) -> dict[str, int]:
    """Rows restores put back (restored or overwritten) per table, children included."""
    changed: dict[str, int] = {}
    for result in results:
        outcome = getattr(result, "outcome", None)
        if outcome is None:
            continue  # a cold object: restore requested, nothing written yet
        rows = {result.table: outcome.restored + outcome.overwritten, **outcome.children_restored}
        for table, count in rows.items():
            changed[table] = changed.get(table, 0) + count
    return changed
