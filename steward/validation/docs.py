"""GX Data Docs: a static site built locally under the Steward home and uploaded to the store.

The site is rebuilt from the run's validation results (their GX JSON) in a fresh ephemeral
context, into ``<home>/validation-docs/``, then every file is uploaded under
``validation.docs_prefix`` (``docs/validation/``) so it opens from S3 (or any static host).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steward.settings import Settings, mask_url
from steward.storage import ObjectStore, open_object_store
from steward.validation.outcome import SuiteOutcome
from steward.validation.runner import gx_suite, new_context
from steward.validation.suites import SuiteSpec

__all__ = ["DataDocs", "build_data_docs"]

SITE = "steward"
CONTENT_TYPES = {".html": "text/html", ".css": "text/css", ".js": "application/javascript"}


@dataclass
class DataDocs:
    """Where the site is: local index file, object-store index key and URL."""

    local_index: Path
    store_index_key: str
    url: str
    files: int


def build_data_docs(
    settings: Settings,
    suites: list[SuiteSpec],
    outcomes: list[SuiteOutcome],
    params: dict[str, int | float],
    *,
    dialect: str,
    store: ObjectStore | None = None,
    run_name: str = "steward",
) -> DataDocs:
    """Build the site for ``outcomes`` and upload it; returns where it lives."""
    local = (settings.home / "validation-docs").resolve()
    shutil.rmtree(local, ignore_errors=True)  # one site per run: no stale pages
    local.mkdir(parents=True, exist_ok=True)
    context = new_context()
    context.add_data_docs_site(
        site_name=SITE,
        site_config={
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(local),
            },
        },
    )
    specs = {s.name: s for s in suites}
    for outcome in outcomes:
        spec = specs.get(outcome.suite)
        if outcome.gx_result is None or spec is None:
            continue
        built = gx_suite(spec, "mongo" if spec.datasource == "mongo" else dialect, params)
        context.suites.add(built)
        _store_result(context, outcome.gx_result, spec.name, run_name)
    context.build_data_docs(site_names=[SITE])
    store = store or open_object_store(settings)
    files = _upload(local, store, settings.validation.docs_prefix)
    index_key = settings.validation.docs_prefix + "index.html"
    url = mask_url(settings.objects_url.rstrip("/") + "/" + index_key)
    return DataDocs(local / "index.html", index_key, url, files)


def _store_result(context: Any, result_json: dict[str, Any], suite: str, run_name: str) -> None:
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResultSchema,
    )
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    result = ExpectationSuiteValidationResultSchema().load(result_json)
    run_time = (result_json.get("meta") or {}).get("run_id", {}).get("run_time")
    key = ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite),
        run_id=RunIdentifier(run_name=run_name, run_time=run_time),
        batch_identifier=suite,
    )
    context.validation_results_store.set(key, result)


def _upload(local: Path, store: ObjectStore, prefix: str) -> int:
    count = 0
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        relative = path.relative_to(local).as_posix()
        content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        with path.open("rb") as handle:
            store.put(prefix + relative, handle, metadata={"content-type": content_type})
        count += 1
    return count
