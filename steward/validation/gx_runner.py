"""Expectations Steward does not compile itself, run by Great Expectations in the database.

The expectations of a suite whose type is not native (see
:mod:`steward.validation.expectation_types`) are one GX validation of a whole-table batch of
the configured database (GX's SQL datasource compiles each expectation to SQL: nothing is
pulled into pandas). GX is imported here, inside functions, only when a suite needs it; the
MongoDB runner uses the same context and result conversion.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from steward.errors import SourceUnavailable
from steward.settings import Settings, mask_url
from steward.validation.checks import build_gx_expectation
from steward.validation.outcome import ExpectationOutcome, SuiteOutcome
from steward.validation.readonly import gx_connection
from steward.validation.suites import ExpectationSpec, SuiteSpec

BOOLEAN_ONLY = {"result_format": "BOOLEAN_ONLY"}

__all__ = ["convert_result", "gx_suite", "new_context", "run_gx_expectations"]


def new_context() -> Any:
    """An ephemeral GX context: nothing on disk (no temporary docs site), no progress bars."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        progress_bars=ProgressBarsConfig(globally=False),
        analytics_enabled=False,
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def gx_suite(suite: SuiteSpec, dialect: str, params: dict[str, int | float]) -> Any:
    """The GX ExpectationSuite built from the file (queries rendered for ``dialect``)."""
    import great_expectations as gx

    built = gx.ExpectationSuite(name=suite.name, meta=dict(suite.gx_meta))
    for spec in suite.expectations:
        built.add_expectation(build_gx_expectation(suite, spec, dialect, params))
    return built


def run_gx_expectations(
    suite: SuiteSpec, settings: Settings, params: dict[str, int | float]
) -> SuiteOutcome:
    """Validate the suite's table in the database with GX; failing keys sampled by GX.

    Two passes: every expectation with BOOLEAN_ONLY results (one count per check, no lists of
    unexpected values: the cheap pass clean data needs), then only the failed ones again with
    SUMMARY results for their counts and failing keys.
    """
    started = time.monotonic()
    connection = gx_connection(settings)
    context = new_context()
    # Names unique per suite: suites may run in parallel threads, and GX falls back to the
    # process-wide "current" context in places; a lookup there then fails loudly.
    name = f"database-{suite.name}"
    try:
        if connection.dialect == "sqlite":
            source = context.data_sources.add_sqlite(name=name, connection_string=connection.url)
        else:
            source = context.data_sources.add_postgres(
                name=name, connection_string=connection.url, kwargs=connection.kwargs
            )
    except ConnectionError as exc:  # GX's TestConnectionError: the database is unreachable
        raise SourceUnavailable(
            f"suite {suite.name!r}: cannot reach the database {mask_url(connection.url)}: "
            f"{_without_secret(str(exc), connection.url).splitlines()[0]}; check database.url"
        ) from None
    asset = source.add_table_asset(name=suite.target, table_name=suite.target)
    batch = asset.add_batch_definition_whole_table("whole-table")
    result = _validate(context, batch, suite, connection.dialect, params, BOOLEAN_ONLY)
    failed = [_name_of(item) for item in result.results if not item.success]
    if failed:
        retry = replace(
            suite, expectations=tuple(e for e in suite.expectations if e.name in failed)
        )
        details = _validate(
            context, batch, retry, connection.dialect, params, _result_format(suite, settings)
        )
        by_name = {_name_of(item): item for item in details.results}
        result.results = [by_name.get(_name_of(item), item) for item in result.results]
    outcome = convert_result(suite, result, "sql")
    outcome.seconds = time.monotonic() - started
    return outcome


def _validate(
    context: Any,
    batch: Any,
    suite: SuiteSpec,
    dialect: str,
    params: dict[str, int | float],
    result_format: Any,
) -> Any:
    import great_expectations as gx

    built = gx_suite(suite, dialect, params)
    built.name = f"{suite.name}-{len(context.suites.all())}"  # unique in this context
    built = context.suites.add(built)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=built.name, data=batch, suite=built)
    )
    result = definition.run(expectation_parameters=dict(params), result_format=result_format)
    result.suite_name = suite.name
    return result


def _without_secret(text: str, url: str) -> str:
    password = sa.make_url(url).password
    return text.replace(str(password), "***") if password else text


def _name_of(item: Any) -> str:
    return str((item.expectation_config.meta or {}).get("name", item.expectation_config.type))


def _result_format(suite: SuiteSpec, settings: Settings) -> dict[str, Any]:
    return {
        "result_format": "SUMMARY",
        "unexpected_index_column_names": list(suite.key),
        "partial_unexpected_count": settings.validation.sample_keys,
    }


def convert_result(suite: SuiteSpec, result: Any, datasource: str) -> SuiteOutcome:
    """GX's suite validation result as a :class:`SuiteOutcome` (plus its JSON for Data Docs)."""
    specs = {spec.name: spec for spec in suite.expectations}
    outcomes = []
    for item in result.results:
        name = (item.expectation_config.meta or {}).get("name", item.expectation_config.type)
        spec = specs.get(name)
        outcomes.append(_expectation_outcome(item, spec, suite.key))
    outcome = SuiteOutcome(suite.name, datasource, suite.target, outcomes)
    outcome.gx_result = result.to_json_dict()
    return outcome


def _expectation_outcome(
    item: Any, spec: ExpectationSpec | None, key: tuple[str, ...]
) -> ExpectationOutcome:
    config = item.expectation_config
    data = item.result or {}
    error = None
    if item.exception_info and item.exception_info.get("raised_exception") is not False:
        error = _exception_message(item.exception_info)
    if spec is not None and spec.is_query:
        count = data.get("observed_value")
    else:
        count = data.get("unexpected_count")
    sample = [_key_of(row, key) for row in data.get("partial_unexpected_index_list") or []]
    return ExpectationOutcome(
        name=spec.name if spec else config.type,
        type=config.type,
        severity=spec.severity if spec else "critical",
        success=bool(item.success) and error is None,
        unexpected_count=count if isinstance(count, int) else None,
        element_count=data.get("element_count"),
        sample=sample,
        error=error,
        description=spec.description if spec else None,
    )


def _exception_message(info: dict[str, Any]) -> str | None:
    if "exception_message" in info:
        return str(info["exception_message"]).splitlines()[0] if info["exception_message"] else None
    for value in info.values():  # keyed by metric id when several metrics failed
        if isinstance(value, dict) and value.get("exception_message"):
            return str(value["exception_message"]).splitlines()[0]
    return None


def _key_of(row: Any, key: tuple[str, ...]) -> Any:
    if isinstance(row, dict) and key:
        values = [row.get(k) for k in key]
        return values[0] if len(values) == 1 else values
    return row
