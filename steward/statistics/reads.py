"""Which tables a query reads: the relations in its plan (``EXPLAIN (VERBOSE, FORMAT JSON)``).

The query is planned, not run, with its bound parameters. Every scan node of the plan names its
table with its schema (partitions of a partitioned table appear one by one), so a warmer's or a
suite's SQL needs no declaration of the tables it touches.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

__all__ = ["tables_read"]


def tables_read(conn: Connection, query: str, params: Mapping[str, Any] | None) -> list[str]:
    """``schema.table`` of every table the query's plan scans (PostgreSQL), in plan order.

    ``params``: the query's bound parameters (``:name``); None runs the text as it is, as
    validation's custom SQL is run.
    """
    if conn.dialect.name != "postgresql":
        return []
    # Fixed text before the configured query, which is run as it is anyway; values stay bound.
    explain = "EXPLAIN (VERBOSE, FORMAT JSON) " + query
    if params is None:
        # The driver reads % as a placeholder even without parameters: double it.
        plan = conn.exec_driver_sql(explain.replace("%", "%%")).scalar_one()
    else:
        plan = conn.execute(sa.text(explain), dict(params)).scalar_one()
    if isinstance(plan, str):  # a driver that does not decode json
        plan = json.loads(plan)
    return list(dict.fromkeys(_relations(plan[0]["Plan"])))


def _relations(node: Mapping[str, Any]) -> Iterator[str]:
    if "Relation Name" in node:
        yield f"{node.get('Schema', 'public')}.{node['Relation Name']}"
    for child in node.get("Plans", ()):
        yield from _relations(child)
