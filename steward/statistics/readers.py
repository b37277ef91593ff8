"""The tables each of Steward's heavy readers is about to read.

- A warmer with a ``query``: the tables of its plan (its SQL with its bound parameters). A
  ``module:function`` warmer reads what its code reads: it is not checked.
- A validation suite: its table, plus the tables of its custom SQL expectations' plans.
- An archive policy: its table, its children and the tables whose foreign keys keep rows back.

A query that cannot be planned is left out here: the reader itself reports it, clearly, when
it runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from steward.settings import WarmerSettings
from steward.statistics.reads import tables_read

__all__ = ["archive_tables", "planned_tables", "suite_tables", "warmer_tables"]


def planned_tables(
    engine: Engine, queries: Iterable[tuple[str, Mapping[str, Any] | None]]
) -> list[str]:
    """Every table the plans of ``queries`` read, each once. A query comes with its bound
    parameters, or None for SQL run as it is (no parameters)."""
    found: list[str] = []
    with engine.connect() as conn:
        if conn.dialect.name != "postgresql":
            return []
        for query, params in queries:
            try:
                with conn.begin():
                    found += tables_read(conn, query, params)
            except (sa.exc.DBAPIError, sa.exc.StatementError):
                continue  # the reader reports its own broken query when it runs
    return list(dict.fromkeys(found))


def suite_tables(
    engine: Engine, suites: Sequence[Any], params: dict[str, int | float]
) -> list[str]:
    """The SQL suites' tables, and the tables their custom SQL expectations read."""
    from steward.validation import batch_subquery, render_query

    sql = [s for s in suites if s.datasource == "sql"]
    queries: list[tuple[str, Mapping[str, Any] | None]] = []
    with engine.connect() as conn:
        for suite in sql:
            for spec in (e for e in suite.expectations if e.is_query):
                text = render_query(spec.query_for(conn.dialect.name), params, suite.where(spec))
                queries.append(
                    (text.replace("{batch}", batch_subquery(conn, suite.target, text)), None)
                )
    names = [s.target for s in sql] + planned_tables(engine, queries)
    return list(dict.fromkeys(names))


def warmer_tables(engine: Engine, warmers: Sequence[WarmerSettings]) -> list[str]:
    """The tables the warmers' queries read."""
    return planned_tables(engine, ((w.query, w.params) for w in warmers if w.query))


def archive_tables(sources: Iterable[Any]) -> list[str]:
    """Tables the archive policies read: each SQL policy's table, children and referrers."""
    names: list[str] = []
    for source in sources:
        policy: Any = getattr(source, "policy", None)
        table = getattr(policy, "table", None)
        if policy is None or not isinstance(table, sa.Table):
            continue  # a MongoDB collection
        names.append(_qualified(table))
        names += [_qualified(child.table) for child in policy.children]
        names += [ref.table for ref in [*policy.references, *policy.proposed_children]]
    return list(dict.fromkeys(names))


def _qualified(table: sa.Table) -> str:
    return f"{table.schema}.{table.name}" if table.schema else table.name
