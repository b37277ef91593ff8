"""Integrity validation with Great Expectations: suites in ``expectations/``, run in the database.

Modules:

- :mod:`~steward.validation.suites` — the index and GX suite files, checked as JSON.
- :mod:`~steward.validation.checks` — GX knows every expectation; tables, columns and custom
  queries exist in the live schema (before anything runs).
- :mod:`~steward.validation.readonly` — read-only transactions and GX's read-only engine.
- :mod:`~steward.validation.runner` — one suite, one GX run, SQL push-down.
- :mod:`~steward.validation.mongo` — MongoDB collections in pandas chunks (with a projection).
- :mod:`~steward.validation.scrub` — sample archive objects and re-read them against the manifest.
- :mod:`~steward.validation.backup_scrub` — the same for objects of catalogued backups.
- :mod:`~steward.validation.profiling` — the live schema and a profile of the data, per table.
- :mod:`~steward.validation.drafting` — suites drafted from that profile (``validate init``;
  :func:`draft_suites` and :func:`write_draft_suites` are the public API ``steward init`` uses).
- :mod:`~steward.validation.docs` — GX Data Docs, built locally and uploaded to the object store.
- :mod:`~steward.validation.outcome` — results, the summary dict and the markdown report.

Great Expectations is imported inside functions only (its import takes seconds).
"""

from steward.validation.backup_scrub import scrub_backups
from steward.validation.checks import check_schema, check_with_gx
from steward.validation.docs import DataDocs, build_data_docs
from steward.validation.drafting import DraftSuite, draft_suites, write_draft_suites
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
