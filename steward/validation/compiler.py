"""Native expectations as SQL: one violation predicate per row-level check, grouped queries for
uniqueness, and custom queries with ``{batch}`` put in place.

Everything but custom queries is built with SQLAlchemy Core on the table's live columns
(names quoted by the dialect, values bound). A custom query is the suite's own text: ``{batch}``
becomes the quoted table name, or, for an incremental run, a CTE ``steward_batch`` holding
only the rows to check, so any SELECT works whatever it does around ``{batch}`` (an alias or
none, a JOIN or ``NOT EXISTS``).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from steward.validation.suites import ExpectationSpec, render_query

__all__ = [
    "BATCH_CTE",
    "RowCheck",
    "batch_sql",
    "compile_row_check",
    "condition_clause",
    "unique_columns",
]

BATCH_CTE = "steward_batch"
_WITH = re.compile(r"^\s*WITH(\s+RECURSIVE)?\s", re.IGNORECASE)


@dataclass
class RowCheck:
    """A row-level check: rows in scope, and which of them violate it."""

    spec: ExpectationSpec
    scope: sa.ColumnElement[bool]  # rows the expectation looks at (denominator of mostly)
    violation: sa.ColumnElement[bool]  # rows it reports


def compile_row_check(
    spec: ExpectationSpec, table: sa.Table, params: dict[str, Any]
) -> RowCheck | None:
    """The check for a row-level native type (None for uniqueness, row counts and queries)."""
    kw = spec.kwargs
    scope = condition_clause(kw.get("row_condition"), table)
    if "column" in kw and spec.type != "expect_column_values_to_be_unique":
        column = table.c[kw["column"]]
        violation = _column_violation(spec.type, column, kw, params)
        if violation is None:
            return None
        if spec.type not in (
            "expect_column_values_to_not_be_null",
            "expect_column_values_to_be_null",
        ):
            scope = sa.and_(scope, column.is_not(None))
        return RowCheck(spec, scope, sa.and_(scope, violation))
    if spec.type == "expect_column_pair_values_a_to_be_greater_than_b":
        return _pair_check(spec, table, scope)
    return None


def _pair_check(spec: ExpectationSpec, table: sa.Table, scope: Any) -> RowCheck:
    """GX's SQL semantics: ``ignore_row_if`` (default both_values_are_missing) narrows the rows
    in scope; a comparison with one NULL side is unknown, so that row is not reported; with
    ``or_equal`` two NULLs count as equal."""
    kw = spec.kwargs
    a, b = table.c[kw["column_A"]], table.c[kw["column_B"]]
    ignore = kw.get("ignore_row_if", "both_values_are_missing")
    if ignore == "both_values_are_missing":
        scope = sa.and_(scope, sa.or_(a.is_not(None), b.is_not(None)))
    elif ignore == "either_value_is_missing":
        scope = sa.and_(scope, a.is_not(None), b.is_not(None))
    holds = sa.or_(a >= b, sa.and_(a.is_(None), b.is_(None))) if kw.get("or_equal") else a > b
    return RowCheck(spec, scope, sa.and_(scope, sa.not_(holds)))


def _column_violation(
    type_: str, column: sa.ColumnElement[Any], kw: dict[str, Any], params: dict[str, Any]
) -> sa.ColumnElement[bool] | None:
    if type_ == "expect_column_values_to_not_be_null":
        return column.is_(None)
    if type_ == "expect_column_values_to_be_null":
        return column.is_not(None)
    # NULL in a value set matches nothing (NULL values are out of scope): left out, since
    # ``x NOT IN ('a', NULL)`` is never true and would hide every violation.
    listed = [value for value in kw.get("value_set") or [] if value is not None]
    if type_ == "expect_column_values_to_be_in_set":
        return column.not_in(listed)
    if type_ == "expect_column_values_to_not_be_in_set":
        return column.in_(listed)
    if type_ == "expect_column_values_to_be_between":
        return _outside(column, column.type, kw, params)
    if type_ == "expect_column_value_lengths_to_be_between":
        return _outside(sa.func.length(column), sa.Integer(), kw, params)
    return None


def _outside(
    value: sa.ColumnElement[Any], type_: Any, kw: dict[str, Any], params: dict[str, Any]
) -> sa.ColumnElement[bool]:
    parts = []
    low, high = (
        _bound(kw.get("min_value"), type_, params),
        _bound(kw.get("max_value"), type_, params),
    )
    if low is not None:
        parts.append(value <= low if kw.get("strict_min") else value < low)
    if high is not None:
        parts.append(value >= high if kw.get("strict_max") else value > high)
    return sa.or_(*parts) if parts else sa.false()


def _bound(raw: Any, type_: Any, params: dict[str, Any]) -> Any:
    if isinstance(raw, dict):
        raw = params[raw["$PARAMETER"]]
    if raw is None:
        return None
    if isinstance(raw, str) and isinstance(type_, sa.DateTime | sa.Date):
        value = dt.datetime.fromisoformat(raw)
        return sa.literal(value, type_)
    return sa.literal(raw)


def condition_clause(condition: Any, table: sa.FromClause) -> sa.ColumnElement[bool]:
    """A structured GX row condition (nullity, comparison, and / or) as a WHERE clause."""
    if not condition:
        return sa.true()
    kind = condition["type"]
    if kind in ("and", "or"):
        parts = [condition_clause(part, table) for part in condition["conditions"]]
        return sa.and_(*parts) if kind == "and" else sa.or_(*parts)
    column = table.c[condition["column"]["name"]]
    if kind == "nullity":
        return column.is_(None) if condition["is_null"] else column.is_not(None)
    value = condition.get("parameter")
    operator = condition["operator"]
    if operator in ("IN", "NOT_IN"):
        listed = column.in_(list(value))
        return listed if operator == "IN" else sa.not_(listed)
    compare = {
        "==": column.__eq__,
        "!=": column.__ne__,
        "<": column.__lt__,
        "<=": column.__le__,
        ">": column.__gt__,
        ">=": column.__ge__,
    }[operator]
    return compare(value)


def unique_columns(spec: ExpectationSpec, table: sa.FromClause) -> tuple[list[Any], Any]:
    """(columns grouped, rows taking part) of a uniqueness expectation."""
    kw = spec.kwargs
    scope = condition_clause(kw.get("row_condition"), table)
    if spec.type == "expect_column_values_to_be_unique":
        column = table.c[kw["column"]]
        return [column], sa.and_(scope, column.is_not(None))
    columns = [table.c[name] for name in kw["column_list"]]
    ignore = kw.get("ignore_row_if", "all_values_are_missing")
    if ignore == "any_value_is_missing":
        scope = sa.and_(scope, *[c.is_not(None) for c in columns])
    elif ignore == "all_values_are_missing":
        scope = sa.and_(scope, sa.or_(*[c.is_not(None) for c in columns]))
    return columns, scope


def batch_sql(
    spec: ExpectationSpec,
    dialect: Any,
    table: str,
    params: dict[str, Any],
    batch_filter: str | None,
) -> str:
    """The custom query, rendered: numeric parameters in, ``{batch}`` replaced.

    ``batch_filter`` (SQL text built by Steward from literal values it rendered itself) limits
    the batch to the rows of an incremental run.
    """
    query = render_query(spec.query_for(dialect.name), params, spec.name)
    quoted = dialect.identifier_preparer.quote(table)
    if batch_filter is None:
        return query.replace("{batch}", quoted)
    body = f"{BATCH_CTE} AS (SELECT * FROM {quoted} WHERE {batch_filter})"
    query = query.replace("{batch}", BATCH_CTE)
    match = _WITH.match(query)
    if match:
        head = "WITH RECURSIVE " if match.group(1) else "WITH "
        return f"{head}{body}, {query[match.end() :]}"
    return f"WITH {body} {query}"


def driver_text(sql: str, dialect_name: str) -> str:
    """SQL for ``exec_driver_sql`` without parameters: psycopg reads ``%`` as a placeholder."""
    return sql.replace("%", "%%") if dialect_name == "postgresql" else sql
