"""Prefect tasks for data validation: plan (check) the suites, validate one suite, scrub the
archive, publish Data Docs.

Each task opens what it needs from the settings (no clients passed between tasks). Transient
errors (a database or store that cannot be reached) are retried; a bad suite is not.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from steward.settings import get_settings
from steward.validation import (
    DataDocs,
    ScrubOutcome,
    SuiteOutcome,
    SuiteSpec,
    ValidationPlan,
    build_data_docs,
    plan_validation,
    scrub_archive,
    scrub_backups,
    validate_one,
)
from tasks.retry_policy import retry_transient

__all__ = ["check_suites", "publish_data_docs", "scrub_stored_objects", "validate_suite"]

RETRY = {"retries": 2, "retry_delay_seconds": [5, 30], "retry_condition_fn": retry_transient}


@task(name="check-suites", cache_policy=NO_CACHE, **RETRY)  # type: ignore[call-overload]
def check_suites(suites: list[str] | None = None) -> ValidationPlan:
    """Load the suite files and check them against GX and the live schema.

    Args:
        suites: suite names to run; None = every suite in the index.

    Returns:
        The checked plan; raises ConfigError naming the file, expectation and problem.
    """
    plan = plan_validation(get_settings(), suites)
    get_run_logger().info(
        "validate-data: %s suites checked (%s expectations); skipped: %s",
        len(plan.suites),
        sum(len(s.expectations) for s in plan.suites),
        plan.skipped or "none",
    )
    return plan


@task(name="validate-suite", cache_policy=NO_CACHE, **RETRY)  # type: ignore[call-overload]
def validate_suite(
    suite: SuiteSpec, params: dict[str, int | float], full: bool = False
) -> SuiteOutcome:
    """Run one suite on its table (all rows, or an incremental suite's changed rows) or
    collection.

    Args:
        suite: the checked suite.
        params: numeric suite parameters from the settings.
        full: check every row even of an incremental suite.

    Returns:
        Counts per expectation and samples of failing keys / rows.
    """
    outcome = validate_one(get_settings(), suite, params, full=full)
    get_run_logger().info(
        "suite %s on %s: %s (%s expectations, %s failed) in %.2f s; rows: %s",
        suite.name,
        suite.target,
        outcome.status,
        len(outcome.expectations),
        len(outcome.failed),
        outcome.seconds,
        outcome.batch or "all",
    )
    return outcome


@task(name="scrub-stored-objects", cache_policy=NO_CACHE, **RETRY)  # type: ignore[call-overload]
def scrub_stored_objects(archive_sample: int, backup_sample: int) -> ScrubOutcome:
    """Re-read random archive and backup objects against their manifests.

    Args:
        archive_sample: archive objects to draw from the archive manifest (0 = none): size,
            SHA-256 and row count are checked.
        backup_sample: objects of catalogued backups to draw (0 = none): size and SHA-256.
    """
    settings = get_settings()
    outcome = scrub_archive(settings, sample=archive_sample)
    outcome.add(scrub_backups(settings, sample=backup_sample), "backups")
    get_run_logger().info(
        "scrub: %s checked, %s ok, %s failed, %s cold %s",
        outcome.checked,
        outcome.ok,
        len(outcome.failures),
        outcome.cold,
        outcome.note,
    )
    return outcome


@task(name="publish-data-docs", cache_policy=NO_CACHE, **RETRY)  # type: ignore[call-overload]
def publish_data_docs(outcomes: list[SuiteOutcome], run_name: str) -> DataDocs:
    """Write this run's Data Docs pages (self-contained HTML) and the index to the store.

    Args:
        outcomes: the suites' results.
        run_name: the run's name shown in Data Docs.
    """
    docs = build_data_docs(get_settings(), outcomes, run_name=run_name)
    get_run_logger().info(
        "Data Docs: %s files written, %s old pages pruned; %s", docs.files, docs.pruned, docs.url
    )
    return docs
