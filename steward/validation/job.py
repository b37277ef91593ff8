"""A whole validation run without Prefect: what ``steward validate`` runs when no Prefect
server is configured, and the pieces the ``validate-data`` flow's tasks share with it.

Suites run one at a time in this process (the flow runs three side by side as tasks); each
suite opens its incremental window, runs, and closes the window (the high-water mark moves
only when it passed). Then the archive and backup scrub, the Data Docs, and the summary.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from steward.errors import ConfigError, SourceUnavailable, ValidationFailed
from steward.settings import Settings, mask_url
from steward.storage import ObjectStore, open_object_store
from steward.validation.backup_scrub import scrub_backups
from steward.validation.docs import build_data_docs
from steward.validation.incremental import close_window, open_window
from steward.validation.mongo import run_mongo_suite
from steward.validation.outcome import SuiteOutcome, summarize
from steward.validation.plan import plan_validation
from steward.validation.readonly import read_only
from steward.validation.runner import run_sql_suite
from steward.validation.scrub import scrub_archive
from steward.validation.suites import SuiteSpec

__all__ = [
    "FAIL_ON",
    "REPORT_KEY",
    "check_run_params",
    "failure_error",
    "run_validation",
    "scrub_samples",
    "validate_one",
]

FAIL_ON = ("critical", "warning", "never")
REPORT_KEY = "validate-data-report"


def check_run_params(fail_on: str, scrub_objects: int | None) -> None:
    """The run's parameters, checked before anything runs."""
    if fail_on not in FAIL_ON:
        raise ConfigError(
            f"validate-data parameter fail_on={fail_on!r}; accepted: {', '.join(FAIL_ON)}"
        )
    if scrub_objects is not None and not 0 <= scrub_objects <= 10_000:
        raise ConfigError(
            f"validate-data parameter scrub_objects={scrub_objects!r}; accepted: 0-10000"
        )


def scrub_samples(settings: Settings, scrub_objects: int | None) -> tuple[int, int]:
    """(archive objects, backup objects) to re-read; scrub_objects=0 turns both off."""
    if scrub_objects == 0:
        return 0, 0
    archive = settings.validation.scrub_objects if scrub_objects is None else scrub_objects
    return archive, settings.validation.scrub_backup_objects


def validate_one(
    settings: Settings,
    suite: SuiteSpec,
    params: dict[str, int | float],
    *,
    full: bool = False,
    store: ObjectStore | None = None,
    conn: sa.Connection | None = None,
) -> SuiteOutcome:
    """One suite: its window (full or incremental), the run, the window's state kept.

    ``conn``: a read-only connection to reuse (None: the suite opens its own).
    """
    if suite.datasource == "mongo":
        return run_mongo_suite(suite, settings, params)
    if not suite.incremental:
        return run_sql_suite(suite, settings, params, conn=conn)
    if conn is None:  # the window and the run share one read-only connection
        with read_only(settings) as opened:
            return validate_one(settings, suite, params, full=full, store=store, conn=opened)
    store = store or open_object_store(settings)
    window = open_window(settings, suite, store, full=full, conn=conn)
    outcome = run_sql_suite(suite, settings, params, batch=window.batch, conn=conn)
    outcome.batch = window.batch.description if window.batch else f"all rows ({window.reason})"
    close_window(settings, suite, window, outcome, store)
    return outcome


def run_validation(
    settings: Settings,
    suites: list[str] | None = None,
    *,
    fail_on: str = "critical",
    docs: bool = False,
    scrub_objects: int | None = None,
    full: bool = False,
    run_name: str = "steward",
) -> tuple[dict[str, Any], list[SuiteOutcome]]:
    """Check, run every suite one at a time, scrub, build Data Docs; (summary, outcomes).

    Raises:
        ConfigError: a bad suite or parameter (before anything runs).
        ValidationFailed: ``fail_on`` says the run failed (``.summary`` carries the summary).
    """
    check_run_params(fail_on, scrub_objects)
    plan = plan_validation(settings, suites)
    store = open_object_store(settings) if any(s.incremental for s in plan.suites) or docs else None
    outcomes = _run_suites(settings, plan.suites, plan.params, full, store)
    outcomes += [
        SuiteOutcome(name, "mongo", name, skipped=reason) for name, reason in plan.skipped.items()
    ]
    archive, backups = scrub_samples(settings, scrub_objects)
    scrub = scrub_archive(settings, sample=archive)
    scrub.add(scrub_backups(settings, sample=backups), "backups")
    summary = summarize(outcomes, scrub, None)
    if docs:
        built = build_data_docs(settings, outcomes, run_name=run_name, store=store)
        summary = summarize(outcomes, scrub, built.url, built.pages, built.expires_at)
    error = failure_error(summary, fail_on)
    if error is not None:
        raise error
    return summary, outcomes


def _run_suites(
    settings: Settings,
    suites: list[SuiteSpec],
    params: dict[str, int | float],
    full: bool,
    store: ObjectStore | None,
) -> list[SuiteOutcome]:
    """Every suite, one after another on one read-only connection (one connect, not N)."""
    if not any(s.datasource == "sql" for s in suites):
        return [validate_one(settings, s, params, full=full, store=store) for s in suites]
    try:
        with read_only(settings) as conn:
            return [
                validate_one(settings, s, params, full=full, store=store, conn=conn) for s in suites
            ]
    except sa.exc.OperationalError as exc:  # queries' own errors are caught per expectation
        url = settings.for_flow("validation").database_url
        raise SourceUnavailable(
            f"validate-data: cannot reach the database {mask_url(url)}: "
            f"{str(exc.orig or exc).strip().splitlines()[0]}; check database.url"
        ) from None


def failure_error(summary: dict[str, Any], fail_on: str) -> ValidationFailed | None:
    """The error that fails the run under ``fail_on`` (None when it passes)."""
    critical, warning = summary["failed_critical"], summary["failed_warning"]
    if fail_on == "never" or (critical == 0 and (fail_on == "critical" or warning == 0)):
        return None
    names = ", ".join(
        f"{f['suite']}/{f.get('expectation') or f.get('object_key')} "
        f"({f.get('unexpected_count') if f.get('unexpected_count') is not None else 'error'})"
        for f in summary["failures"]
        if fail_on == "warning" or f["severity"] == "critical"
    )
    docs = summary.get("data_docs_url")
    error = ValidationFailed(
        f"validate-data: {critical} critical and {warning} warning expectation(s) failed: "
        f"{names}; see the {REPORT_KEY} artifact"
        + (f" and the Data Docs at {docs}" if docs else "")
    )
    error.summary = summary  # for callers in this process
    return error
