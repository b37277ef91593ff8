"""Flow ``validate-data``: prove the data still obeys its rules (a step of ``nightly``).

Every suite in ``expectations/`` is checked first (known expectation types, tables, columns,
custom SQL that compiles), so a bad suite stops the run before anything executes. Then one
Great Expectations run per suite, inside the database (SQL push-down) or over MongoDB in
chunks; samples of archive and backup objects are re-read against their manifests; Data Docs
are built and uploaded. A failed critical expectation fails the run (``fail_on``); warnings leave
it Completed with the warnings listed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from steward.errors import ValidationFailed
from steward.settings import get_settings
from steward.statistics import suite_tables
from steward.validation import (
    ScrubOutcome,
    SuiteOutcome,
    ValidationPlan,
    render_markdown,
    summarize,
    table_rows,
)
from tasks.statistics import publish_statistics, refresh_statistics_for_reads
from tasks.validation import (
    check_suites,
    publish_data_docs,
    scrub_stored_objects,
    validate_suite,
)

FAIL_ON = ("critical", "warning", "never")
PARALLEL_SUITES = 3
REPORT_KEY = "validate-data-report"
TABLE_KEY = "validate-data-suites"


@flow(
    name="validate-data",
    # Suites run side by side: while one waits on the database, another builds its queries.
    task_runner=ThreadPoolTaskRunner(max_workers=PARALLEL_SUITES),
    description="Run the Great Expectations suites in the database, scrub archive objects, "
    "publish Data Docs; fail on a critical failure.",
)
def validate_data(
    suites: list[str] | None = None,
    fail_on: Literal["critical", "warning", "never"] = "critical",
    docs: bool = True,
    scrub_objects: Annotated[int, Field(ge=0, le=10_000)] | None = None,
) -> dict[str, Any]:
    """Validate the data against the suites in ``expectations/``; returns the summary.

    Args:
        suites: Suite names to run (see `steward validate list`); empty = every suite.
        fail_on: When the run fails: "critical" (a critical expectation failed, the default),
            "warning" (any expectation failed) or "never" (report only).
        docs: Build GX Data Docs locally and upload them under validation.docs_prefix.
        scrub_objects: Archive objects to re-read against the manifest; empty =
            validation.scrub_objects, 0 = no scrub (backups: validation.scrub_backup_objects).
    """
    plan: ValidationPlan = check_suites(suites or None)
    statistics = refresh_statistics_for_reads(
        lambda engine: suite_tables(engine, plan.suites, plan.params), "before validate-data reads"
    )
    futures = [validate_suite.submit(s, plan.params) for s in plan.suites]
    outcomes: list[SuiteOutcome] = [future.result() for future in futures]
    outcomes += [
        SuiteOutcome(name, "mongo", name, skipped=reason) for name, reason in plan.skipped.items()
    ]
    scrub: ScrubOutcome = scrub_stored_objects(*_scrub_samples(scrub_objects))
    docs_url = None
    if docs:
        docs_url = publish_data_docs(plan, outcomes, _run_name()).url
    summary = summarize(outcomes, scrub, docs_url)
    summary["statistics"] = [statistics]
    _publish(summary, outcomes)
    publish_statistics("validate-data", summary["statistics"])
    _fail_if_needed(summary, fail_on)
    return summary


def _scrub_samples(scrub_objects: int | None) -> tuple[int, int]:
    """(archive objects, backup objects) to re-read; scrub_objects=0 turns both off."""
    settings = get_settings().validation
    if scrub_objects == 0:
        return 0, 0
    archive = settings.scrub_objects if scrub_objects is None else scrub_objects
    return archive, settings.scrub_backup_objects


def _run_name() -> str:
    return str(flow_run.get_name() or "steward")


def _publish(summary: dict[str, Any], outcomes: list[SuiteOutcome]) -> None:
    verdict = "FAILED" if summary["failed_critical"] else "passed"
    create_markdown_artifact(
        render_markdown(summary, outcomes),
        key=REPORT_KEY,
        description=f"Data validation {verdict}: {summary['failed_critical']} critical, "
        f"{summary['failed_warning']} warning failures over {summary['suites']} suites",
    )
    create_table_artifact(
        table_rows(outcomes),
        key=TABLE_KEY,
        description="Expectations per suite: status, failed critical / warning, unexpected rows",
    )
    logger = get_run_logger()
    for item in summary["failures"]:
        logger.warning(
            "%s failure: %s / %s: %s unexpected; sample %s %s",
            item["severity"],
            item["suite"],
            item.get("expectation") or item.get("object_key"),
            item.get("unexpected_count"),
            item.get("sample") or [],
            item.get("error") or item.get("problem") or "",
        )


def _fail_if_needed(summary: dict[str, Any], fail_on: str) -> None:
    critical, warning = summary["failed_critical"], summary["failed_warning"]
    if fail_on == "never" or (critical == 0 and (fail_on == "critical" or warning == 0)):
        return
    names = ", ".join(
        f"{f['suite']}/{f.get('expectation') or f.get('object_key')} "
        f"({f.get('unexpected_count') if f.get('unexpected_count') is not None else 'error'})"
        for f in summary["failures"]
        if fail_on == "warning" or f["severity"] == "critical"
    )
    error = ValidationFailed(
        f"validate-data: {critical} critical and {warning} warning expectation(s) failed: "
        f"{names}; see the {REPORT_KEY} artifact"
        + (f" and the Data Docs at {summary['data_docs_url']}" if summary["data_docs_url"] else "")
    )
    error.summary = summary  # for callers in this process
    raise error
