"""Checks that run before any expectation does: GX knows every expectation, the schema has
every table and column a suite names, and every custom query compiles (``EXPLAIN``, read-only).

A problem raises :class:`~steward.errors.ConfigError` naming the file, the expectation and
what is wrong, so a bad suite stops the run before anything executes.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from steward.errors import ConfigError
from steward.settings import Settings
from steward.validation.readonly import batch_subquery, read_only
from steward.validation.suites import ExpectationSpec, SuiteSpec, render_query

__all__ = ["build_gx_expectation", "check_schema", "check_with_gx"]


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
        raise ConfigError(
            f"{suite.where(spec)}: unknown expectation type {spec.type!r} (GX Core "
            "expectation names look like expect_column_values_to_be_unique)"
        ) from None
    except Exception as exc:  # pydantic / GX validation of the kwargs
        raise ConfigError(f"{suite.where(spec)}: {_first_lines(exc)}") from None


def check_with_gx(suites: list[SuiteSpec], dialect: str, params: dict[str, int | float]) -> None:
    """Every expectation is a known GX type with valid kwargs."""
    for suite in suites:
        for spec in suite.expectations:
            build_gx_expectation(suite, spec, dialect, params)


def check_schema(
    suites: list[SuiteSpec], settings: Settings, params: dict[str, int | float]
) -> None:
    """SQL suites: tables, key and expectation columns exist; custom queries compile."""
    sql_suites = [s for s in suites if s.datasource == "sql"]
    if not sql_suites:
        return
    with read_only(settings) as conn:
        inspector = sa.inspect(conn)
        tables = set(inspector.get_table_names())
        for suite in sql_suites:
            if suite.target not in tables:
                raise ConfigError(
                    f"{suite.where()}: table {suite.target!r} does not exist in the database; "
                    "fix index.json or run the migrations"
                )
            columns = {c["name"] for c in inspector.get_columns(suite.target)}
            _check_columns(suite, columns)
            for spec in suite.expectations:
                if spec.is_query:
                    _explain(conn, suite, spec, params)


def _check_columns(suite: SuiteSpec, columns: set[str]) -> None:
    missing_key = [k for k in suite.key if k not in columns]
    if missing_key:
        raise ConfigError(
            f"{suite.where()}: key column(s) {', '.join(missing_key)} not in table {suite.target!r}"
        )
    for spec in suite.expectations:
        missing = [c for c in spec.columns() if c not in columns]
        if missing:
            raise ConfigError(
                f"{suite.where(spec)}: column {missing[0]!r} does not exist in table "
                f"{suite.target!r}; columns: {', '.join(sorted(columns))}"
            )


def _explain(conn: Any, suite: SuiteSpec, spec: ExpectationSpec, params: dict) -> None:
    query = render_query(spec.query_for(conn.dialect.name), params, suite.where(spec))
    if not query.lstrip().upper().startswith(("SELECT", "WITH")):
        raise ConfigError(f"{suite.where(spec)}: custom SQL must be a SELECT (it runs read-only)")
    if "{batch}" not in query:
        raise ConfigError(
            f"{suite.where(spec)}: the query must read the suite's table as {{batch}}"
        )
    sql = query.replace("{batch}", batch_subquery(conn, suite.target, query))
    try:
        if conn.dialect.name == "postgresql":  # an error aborts the transaction: savepoint
            with conn.begin_nested():
                conn.exec_driver_sql(f"EXPLAIN {sql}")
        else:
            conn.exec_driver_sql(f"EXPLAIN {sql}")
    except sa.exc.DBAPIError as exc:
        raise ConfigError(
            f"{suite.where(spec)}: the query does not run on {conn.dialect.name}: "
            f"{_first_lines(exc.orig or exc)}"
        ) from None


def _first_lines(exc: BaseException, limit: int = 3) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines[:limit]) or type(exc).__name__
