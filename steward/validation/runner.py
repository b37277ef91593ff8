"""Run one SQL suite: native expectations compiled by Steward, the rest by Great Expectations.

Native types (:mod:`steward.validation.expectation_types`) run as a handful of queries in a
read-only transaction (:mod:`steward.validation.native`), without importing GX; a suite that
also holds other types hands those to GX (:mod:`steward.validation.gx_runner`), imported
once per process and only then. An incremental run checks only the rows of its
:class:`~steward.validation.native.Batch` (see :mod:`steward.validation.incremental`).
"""

from __future__ import annotations

import time
from dataclasses import replace

import sqlalchemy as sa

from steward.errors import SourceUnavailable
from steward.settings import Settings, mask_url
from steward.validation.expectation_types import is_native
from steward.validation.native import Batch, run_native
from steward.validation.outcome import ExpectationOutcome, SuiteOutcome
from steward.validation.readonly import read_only
from steward.validation.suites import ExpectationSpec, SuiteSpec

__all__ = ["run_sql_suite"]


def run_sql_suite(
    suite: SuiteSpec,
    settings: Settings,
    params: dict[str, int | float],
    *,
    batch: Batch | None = None,
    conn: sa.Connection | None = None,
) -> SuiteOutcome:
    """Validate the suite's table (or only ``batch`` of it) in the database.

    ``conn``: a read-only connection to reuse (suites run one after another); None = open one.

    Raises:
        SourceUnavailable: the database cannot be reached (transient; retried by the task).
    """
    started = time.monotonic()
    native = [s for s in suite.expectations if is_native(s.type, s.kwargs)]
    others = [s for s in suite.expectations if not is_native(s.type, s.kwargs)]
    results: dict[str, ExpectationOutcome] = {}
    if native:
        results.update(_run_native(suite, settings, params, native, batch, conn))
    if others:
        from steward.validation.gx_runner import run_gx_expectations

        gx = run_gx_expectations(replace(suite, expectations=tuple(others)), settings, params)
        results.update({e.name: e for e in gx.expectations})
    outcome = SuiteOutcome(
        suite.name, "sql", suite.target, [results[s.name] for s in suite.expectations]
    )
    outcome.batch = batch.description if batch is not None else None
    outcome.seconds = time.monotonic() - started
    return outcome


def _run_native(
    suite: SuiteSpec,
    settings: Settings,
    params: dict[str, int | float],
    specs: list[ExpectationSpec],
    batch: Batch | None,
    conn: sa.Connection | None,
) -> dict[str, ExpectationOutcome]:
    keys = settings.validation.sample_keys
    if conn is not None:
        return run_native(conn, suite, specs, params, batch=batch, sample_keys=keys)
    try:
        with read_only(settings) as opened:
            return run_native(opened, suite, specs, params, batch=batch, sample_keys=keys)
    except sa.exc.OperationalError as exc:  # queries' own errors are caught per expectation
        raise _unreachable(suite, settings, exc) from None


def _unreachable(suite: SuiteSpec, settings: Settings, exc: BaseException) -> SourceUnavailable:
    first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    url = settings.for_flow("validation").database_url
    text = first[0] if first else type(exc).__name__
    password = sa.make_url(url).password
    if password:
        text = text.replace(str(password), "***")
    return SourceUnavailable(
        f"suite {suite.name!r}: cannot reach the database {mask_url(url)}: {text}; "
        "check database.url"
    )
