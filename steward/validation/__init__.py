"""Integrity validation with Great Expectations: suites in ``expectations/``, run in the database.

Modules:

- :mod:`~steward.validation.suites` — the index and GX suite files, checked as JSON.
- :mod:`~steward.validation.checks` — GX knows every expectation; tables, columns and custom
  queries exist in the live schema (before anything runs).
- :mod:`~steward.validation.readonly` — read-only transactions and GX's read-only engine.
- :mod:`~steward.validation.expectation_types` — the types Steward runs itself; arguments checked.
- :mod:`~steward.validation.compiler` / :mod:`~steward.validation.native` — those types as SQL,
  a handful of queries per suite (one scan for every row-level check).
- :mod:`~steward.validation.runner` — one suite: native expectations, the rest through GX
  (:mod:`~steward.validation.gx_runner`).
- :mod:`~steward.validation.incremental` — changed rows since the last passing run, plus a
  rotating slice; the high-water mark kept in the object store.
- :mod:`~steward.validation.job` — a whole run without Prefect (the CLI's fast path) and the
  pieces the flow shares with it.
- :mod:`~steward.validation.mongo` — MongoDB collections in pandas chunks (with a projection).
- :mod:`~steward.validation.scrub` — sample archive objects and re-read them against the manifest.
- :mod:`~steward.validation.backup_scrub` — the same for objects of catalogued backups.
- :mod:`~steward.validation.profiling` — the live schema and a profile of the data, per table.
- :mod:`~steward.validation.drafting` — suites drafted from that profile (``validate init``;
  :func:`draft_suites` and :func:`write_draft_suites` are the public API ``steward init`` uses),
  with the per-table rules in :mod:`~steward.validation.draft_rules`.
- :mod:`~steward.validation.docs` — Data Docs: self-contained HTML per suite run, in the store.
- :mod:`~steward.validation.outcome` — results, the summary dict and the markdown report.

Great Expectations is imported inside functions only (its import takes seconds), and only
when a suite holds an expectation type Steward does not compile itself.
"""

from steward.validation.backup_scrub import scrub_backups
from steward.validation.checks import check_schema, check_with_gx, suite_problems
from steward.validation.docs import DataDocs, build_data_docs
from steward.validation.drafting import DraftSuite, draft_suites, write_draft_suites
from steward.validation.incremental import Window, close_window, open_window
from steward.validation.job import (
    FAIL_ON,
    REPORT_KEY,
    check_run_params,
    failure_error,
    run_validation,
    scrub_samples,
    validate_one,
)
from steward.validation.mongo import run_mongo_suite
from steward.validation.outcome import (
    ExpectationOutcome,
    ScrubOutcome,
    SuiteOutcome,
    render_markdown,
    summarize,
    table_rows,
)
from steward.validation.plan import ValidationPlan, plan_validation, suite_parameters
from steward.validation.readonly import batch_subquery
from steward.validation.runner import run_sql_suite
from steward.validation.scrub import scrub_archive
from steward.validation.suites import ExpectationSpec, SuiteSpec, load_suites, render_query

__all__ = [
    "FAIL_ON",
    "REPORT_KEY",
    "Window",
    "check_run_params",
    "close_window",
    "failure_error",
    "open_window",
    "run_validation",
    "scrub_samples",
    "suite_problems",
    "validate_one",
    "DataDocs",
    "DraftSuite",
    "ExpectationOutcome",
    "ExpectationSpec",
    "ScrubOutcome",
    "SuiteOutcome",
    "SuiteSpec",
    "ValidationPlan",
    "batch_subquery",
    "build_data_docs",
    "check_schema",
    "check_with_gx",
    "draft_suites",
    "load_suites",
    "plan_validation",
    "render_markdown",
    "render_query",
    "run_mongo_suite",
    "run_sql_suite",
    "scrub_archive",
    "scrub_backups",
    "suite_parameters",
    "summarize",
    "table_rows",
    "write_draft_suites",
]
