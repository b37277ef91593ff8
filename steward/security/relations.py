"""Which tables a query reads, from PostgreSQL's own plan (``EXPLAIN (FORMAT JSON, VERBOSE)``).

The planner resolves every name (search_path, CTEs, aliases, subqueries) so nothing is parsed
here by hand; the query is only planned, never run. A view appears as the tables under it
(grant SELECT on the view itself by hand when the role should read through a view).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

__all__ = ["relations_read"]


def relations_read(
    conn: Connection, query: str, params: Mapping[str, Any] | None = None, *, text: bool = True
) -> list[tuple[str, str]]:
    """(schema, table) of every relation the plan of ``query`` scans, in plan order.

    ``text``: ``query`` uses ``:named`` parameters (bound from ``params``); otherwise it is
    driver SQL without parameters (``%`` already doubled).
    """
    with conn.begin_nested():  # a query that does not plan leaves the transaction usable
        if text:
            statement = sa.text(f"EXPLAIN (FORMAT JSON, VERBOSE) {query}")
            raw = conn.execute(statement, dict(params or {})).scalar_one()
        else:
            raw = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON, VERBOSE) {query}").scalar_one()
    plans = json.loads(raw) if isinstance(raw, str) else raw
    found: dict[tuple[str, str], None] = {}
    for plan in plans:
        for node in _nodes(plan.get("Plan", {})):
            if "Relation Name" in node:
                found[(node.get("Schema", "public"), node["Relation Name"])] = None
    return list(found)


def _nodes(node: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield node
    for child in node.get("Plans", ()):
        yield from _nodes(child)
