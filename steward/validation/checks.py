"""Checks that run before any expectation does.

Without the database (``steward validate check``): every expectation type is known, its
arguments are valid (every unknown or misspelt name, not only the first), custom queries are
SELECTs that read ``{batch}`` and use known parameters. Native types are checked here without
GX; other types are built by GX (imported only then). With the database: every table, key,
incremental and expectation column exists, and every custom query compiles (``EXPLAIN``,
read-only). Problems raise one :class:`~steward.errors.ConfigError` listing each of them with
the file, the expectation and what is wrong, so a bad suite stops the run before anything
executes.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from steward.errors import ConfigError, closest_name
from steward.security import require_privileges, table_needs
from steward.settings import Settings
from steward.validation.compiler import batch_sql, driver_text
from steward.validation.expectation_types import (
    NATIVE_TYPES,
    condition_columns,
    is_native,
    kwargs_problems,
)
from steward.validation.native import live_table
from steward.validation.readonly import read_only
from steward.validation.suites import ExpectationSpec, SuiteSpec, render_query

__all__ = ["build_gx_expectation", "check_schema", "check_with_gx", "suite_problems"]


def build_gx_expectation(
    suite: SuiteSpec, spec: ExpectationSpec, dialect: str, params: dict[str, int | float]
) -> Any:
    """The GX Expectation object for ``spec``; ConfigError when GX refuses it."""
    from great_expectations.exceptions import ExpectationNotFoundError
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )
    from great_expectations.expectations.metadata_types import FailureSeverity

    kwargs = dict(spec.kwargs)
    if spec.is_query:
        query = spec.query_for(dialect)
        kwargs["unexpected_rows_query"] = render_query(query, params, suite.where(spec))
    meta = {k: v for k, v in spec.meta.items() if k != "query_by_dialect"}
    try:
        config = ExpectationConfiguration(
            type=spec.type,
            kwargs=kwargs,
            meta=meta,
            description=spec.description,
            severity=FailureSeverity(spec.severity),
        )
        return config.to_domain_obj()
    except ExpectationNotFoundError:
        guess = closest_name(spec.type, list(NATIVE_TYPES))
        hint = (
            f"did you mean {guess!r}?"
            if guess
            else ("GX Core expectation names look like expect_column_values_to_be_unique")
        )
        raise ConfigError(
            f"{suite.where(spec)}: unknown expectation type {spec.type!r} ({hint})"
        ) from None
    except Exception as exc:  # pydantic / GX validation of the kwargs
        raise ConfigError(f"{suite.where(spec)}: {_first_lines(exc)}") from None


def suite_problems(
    suites: list[SuiteSpec], dialect: str, params: dict[str, int | float]
) -> list[str]:
    """Everything wrong with the suites that can be seen without the database."""
    problems = []
    for suite in suites:
        for spec in suite.expectations:
            problems += [
                f"{suite.where(spec)}: {p}" for p in _spec_problems(suite, spec, dialect, params)
            ]
        problems += _duplicate_problems(suite)
        if suite.incremental and not suite.key and suite.datasource == "sql":
            problems.append(f"{suite.where()}: an incremental suite needs a key (index.json)")
    return problems


def _duplicate_problems(suite: SuiteSpec) -> list[str]:
    """Two expectations of one type with the same arguments: GX keeps only one of them (it
    ignores names), so the other would never report."""
    first: dict[str, str] = {}
    problems = []
    for spec in suite.expectations:
        signature = json.dumps([spec.type, spec.kwargs], sort_keys=True, default=str)
        if signature in first:
            problems.append(
                f"{suite.where(spec)}: same type and arguments as expectation "
                f"{first[signature]!r}; remove one of them or change its arguments"
            )
        else:
            first[signature] = spec.name
    return problems


def _spec_problems(
    suite: SuiteSpec, spec: ExpectationSpec, dialect: str, params: dict[str, int | float]
) -> list[str]:
    native = is_native(spec.type, spec.kwargs)
    if native and (suite.datasource == "sql" or not spec.is_query):
        problems = kwargs_problems(spec.type, spec.kwargs, params)
        if spec.is_query and not problems:
            problems += _query_problems(spec, dialect, params)
        return problems
    try:
        build_gx_expectation(suite, spec, dialect, params)
    except ConfigError as exc:
        return [str(exc).removeprefix(f"{suite.where(spec)}: ")]
    return []


def _query_problems(
    spec: ExpectationSpec, dialect: str, params: dict[str, int | float]
) -> list[str]:
    problems = []
    for name, query in [("", spec.query_for("postgresql")), *_variants(spec)]:
        where = f" (query_by_dialect.{name})" if name else ""
        text = query.lstrip().upper()
        if not text.startswith(("SELECT", "WITH")):
            problems.append(f"custom SQL{where} must be a SELECT (it runs read-only)")
        elif "{batch}" not in query:
            problems.append(f"the query{where} must read the suite's table as {{batch}}")
        try:
            render_query(query, params, "")
        except ConfigError as exc:
            problems.append(str(exc).removeprefix(": ") + where)
    return problems


def _variants(spec: ExpectationSpec) -> list[tuple[str, str]]:
    by_dialect = spec.meta.get("query_by_dialect") or {}
    return [(str(k), str(v)) for k, v in by_dialect.items()] if isinstance(by_dialect, dict) else []


def check_with_gx(suites: list[SuiteSpec], dialect: str, params: dict[str, int | float]) -> None:
    """Every expectation is a known type with valid arguments (no database needed)."""
    raise_problems(suite_problems(suites, dialect, params))


def raise_problems(problems: list[str]) -> None:
    """One ConfigError listing every problem (one line each)."""
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} problems in the suites:\n  " + "\n  ".join(problems))


def check_schema(
    suites: list[SuiteSpec], settings: Settings, params: dict[str, int | float]
) -> None:
    """SQL suites: tables, key, incremental and expectation columns exist; queries compile."""
    sql_suites = [s for s in suites if s.datasource == "sql"]
    if not sql_suites:
        return
    problems: list[str] = []
    with read_only(settings) as conn:
        inspector = sa.inspect(conn)
        tables = set(inspector.get_table_names())
        require_privileges(conn, [
            need for s in sql_suites if s.target in tables
            for need in table_needs(None, [s.target], ("SELECT",), f"suite {s.name}")
        ])  # fmt: skip
        for suite in sql_suites:
            if suite.target not in tables:
                problems.append(
                    f"{suite.where()}: table {suite.target!r} does not exist in the database; "
                    "fix index.json or run the migrations"
                )
                continue
            columns = {c.name: c.type for c in live_table(conn, suite.target).c}
            if suite.incremental and conn.dialect.name != "postgresql":  # SQLite: no types
                columns = {c["name"]: c["type"] for c in inspector.get_columns(suite.target)}
            found = _column_problems(suite, columns)
            problems += found
            if not found:
                problems += [
                    p for spec in suite.expectations if spec.is_query
                    for p in _explain(conn, suite, spec, params)
                ]  # fmt: skip
    raise_problems(problems)


def _column_problems(suite: SuiteSpec, columns: dict[str, Any]) -> list[str]:
    problems = []
    missing_key = [k for k in suite.key if k not in columns]
    if missing_key:
        problems.append(
            f"{suite.where()}: key column(s) {', '.join(missing_key)} not in table {suite.target!r}"
        )
    column = suite.incremental
    if column and column not in columns:
        problems.append(
            f"{suite.where()}: incremental column {column!r} not in table {suite.target!r}"
        )
    elif column and not isinstance(columns[column], sa.DateTime | sa.Integer):
        problems.append(
            f"{suite.where()}: incremental column {column!r} must be a timestamp or an "
            f"integer key, not {columns[column]}"
        )
    for spec in suite.expectations:
        names = spec.columns() + condition_columns(spec.kwargs.get("row_condition"))
        for name in dict.fromkeys(names):
            if name not in columns:
                guess = closest_name(name, sorted(columns))
                hint = f"did you mean {guess!r}? " if guess else ""
                problems.append(
                    f"{suite.where(spec)}: column {name!r} does not exist in table "
                    f"{suite.target!r}; {hint}columns: {', '.join(sorted(columns))}"
                )
    return problems


def _explain(conn: Any, suite: SuiteSpec, spec: ExpectationSpec, params: dict) -> list[str]:
    sql = driver_text(batch_sql(spec, conn.dialect, suite.target, params, None), conn.dialect.name)
    try:
        if conn.dialect.name == "postgresql":  # an error aborts the transaction: savepoint
            with conn.begin_nested():
                conn.exec_driver_sql(f"EXPLAIN {sql}")
        else:
            conn.exec_driver_sql(f"EXPLAIN {sql}")
    except sa.exc.DBAPIError as exc:
        return [
            f"{suite.where(spec)}: the query does not run on {conn.dialect.name}: "
            f"{_first_lines(exc.orig or exc)}"
        ]
    return []


def _first_lines(exc: BaseException, limit: int = 3) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines[:limit]) or type(exc).__name__
