"""Flow ``validate-data``: prove the data still obeys its rules (a step of ``nightly``).

Every suite in ``expectations/`` is checked first (known expectation types, tables, columns,
custom SQL that compiles), so a bad suite stops the run before anything executes. Then each
suite runs inside the database (Steward's SQL for the common expectation types, Great
Expectations for the rest; incremental suites check only changed rows and a rotating slice)
or over MongoDB in chunks; samples of archive and backup objects are re-read against their
manifests; Data Docs pages (self-contained HTML) are written to the object store. A failed
critical expectation fails the run (``fail_on``); warnings leave it Completed with the warnings
listed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from steward.settings import get_settings
from steward.statistics import suite_tables
from steward.validation import (
    REPORT_KEY,
    ScrubOutcome,
    SuiteOutcome,
    ValidationPlan,
    failure_error,
    render_markdown,
    scrub_samples,
    summarize,
    table_rows,
)
from tasks.events import emit_steward_event
from tasks.statistics import publish_statistics, refresh_statistics_for_reads
from tasks.validation import (
    check_suites,
    publish_data_docs,
    scrub_stored_objects,
    validate_suite,
)

PARALLEL_SUITES = 3
TABLE_KEY = "validate-data-suites"


@flow(
    name="validate-data",
    # Suites run side by side: while one waits on the database, another builds its queries.
    task_runner=ThreadPoolTaskRunner(max_workers=PARALLEL_SUITES),
    description="Run the expectation suites in the database (incremental where configured), "
    "scrub archive objects, publish Data Docs; fail on a critical failure.",
)
def validate_data(
    suites: list[str] | None = None,
    fail_on: Literal["critical", "warning", "never"] = "critical",
    docs: bool = True,
    scrub_objects: Annotated[int, Field(ge=0, le=10_000)] | None = None,
    full: bool = False,
) -> dict[str, Any]:
    """Validate the data against the suites in ``expectations/``; returns the summary.

    Args:
        suites: Suite names to run (see `steward validate list`); empty = every suite.
        fail_on: When the run fails: "critical" (a critical expectation failed, the default),
            "warning" (any expectation failed) or "never" (report only).
        docs: Write Data Docs pages (offline HTML) under validation.docs_prefix.
        scrub_objects: Archive objects to re-read against the manifest; empty =
            validation.scrub_objects, 0 = no scrub (backups: validation.scrub_backup_objects).
        full: Check every row of incremental suites too (they run in full weekly anyway:
            validation.full_every_days).
    """
    plan: ValidationPlan = check_suites(suites or None)
    statistics = refresh_statistics_for_reads(
        lambda engine: suite_tables(engine, plan.suites, plan.params), "before validate-data reads"
    )
    futures = [validate_suite.submit(s, plan.params, full) for s in plan.suites]
    outcomes: list[SuiteOutcome] = [future.result() for future in futures]
    outcomes += [
        SuiteOutcome(name, "mongo", name, skipped=reason) for name, reason in plan.skipped.items()
    ]
    scrub: ScrubOutcome = scrub_stored_objects(*scrub_samples(get_settings(), scrub_objects))
    summary = summarize(outcomes, scrub, None)
    if docs:
        site = publish_data_docs(outcomes, _run_name())
        summary = summarize(outcomes, scrub, site.url, site.pages, site.expires_at)
    summary["statistics"] = [statistics]
    _publish(summary, outcomes)
    publish_statistics("validate-data", summary["statistics"])
    _emit_failures(summary)
    error = failure_error(summary, fail_on)
    if error is not None:
        raise error
    return summary


def _emit_failures(summary: dict[str, Any]) -> None:
    """One ``steward.validation.failed`` event per suite with a failed expectation."""
    by_suite: dict[str, list[dict[str, Any]]] = {}
    for failure in summary["failures"]:
        by_suite.setdefault(failure["suite"], []).append(failure)
    for suite, failures in by_suite.items():
        payload = {
            "suite": suite,
            "critical": sum(f["severity"] == "critical" for f in failures),
            "warning": sum(f["severity"] == "warning" for f in failures),
            "failures": [
                {"expectation": f.get("expectation"), "severity": f["severity"],
                 "unexpected_count": f.get("unexpected_count")}
                for f in failures[:20]
            ],
        }  # fmt: skip
        emit_steward_event("validation.failed", "validation", suite, payload)


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
