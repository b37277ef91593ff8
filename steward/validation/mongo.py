"""MongoDB collections through pandas batches: read in chunks with a projection, one GX run each.

Only the fields the suite names (plus its key) are read, ``validation.mongo_chunk_size``
documents at a time, so a collection is never held whole. Counts add up across chunks; a
uniqueness expectation therefore holds per chunk only (``_id`` is unique by MongoDB itself).
"""

from __future__ import annotations

import time
from typing import Any

from steward.settings import Settings
from steward.storage import DocumentsClient
from steward.validation.gx_runner import convert_result, gx_suite, new_context
from steward.validation.outcome import ExpectationOutcome, SuiteOutcome
from steward.validation.suites import SuiteSpec

__all__ = ["run_mongo_suite"]


def run_mongo_suite(
    suite: SuiteSpec,
    settings: Settings,
    params: dict[str, int | float],
    *,
    client: DocumentsClient | None = None,
) -> SuiteOutcome:
    """Validate a collection chunk by chunk; returns the summed outcome."""
    import great_expectations as gx

    started = time.monotonic()
    documents = client or DocumentsClient(settings)
    context = new_context()
    asset = context.data_sources.add_pandas(name="documents").add_dataframe_asset(suite.target)
    batch = asset.add_batch_definition_whole_dataframe("chunk")
    built = context.suites.add(gx_suite(suite, "mongo", params))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=suite.name, data=batch, suite=built)
    )
    total: SuiteOutcome | None = None
    result_format = {
        "result_format": "SUMMARY",
        "unexpected_index_column_names": list(suite.key),
        "partial_unexpected_count": settings.validation.sample_keys,
    }
    try:
        for frame in _chunks(documents, suite, settings.validation.mongo_chunk_size):
            result = definition.run(
                batch_parameters={"dataframe": frame},
                expectation_parameters=dict(params),
                result_format=result_format,
            )
            total = _add(total, convert_result(suite, result, "mongo"))
    finally:
        if client is None:
            documents.close()
    if total is None:
        total = SuiteOutcome(suite.name, "mongo", suite.target, skipped="collection is empty")
    total.seconds = time.monotonic() - started
    return total


def _projection(suite: SuiteSpec) -> dict[str, int]:
    fields = {"_id", *suite.key}
    for spec in suite.expectations:
        fields.update(spec.columns())
    return dict.fromkeys(sorted(fields), 1)


def _chunks(documents: DocumentsClient, suite: SuiteSpec, size: int) -> Any:
    import pandas as pd

    projection = _projection(suite)
    cursor = documents.collection(suite.target).find({}, projection).batch_size(size)
    chunk: list[dict[str, Any]] = []
    for document in cursor:
        chunk.append({k: _plain(document.get(k)) for k in projection})
        if len(chunk) >= size:
            yield pd.DataFrame(chunk, columns=list(projection))
            chunk = []
    if chunk:
        yield pd.DataFrame(chunk, columns=list(projection))


def _plain(value: Any) -> Any:
    # ObjectIds and other BSON types become strings; pandas and GX handle the rest.
    if value is None or isinstance(value, int | float | str | bool):
        return value
    if type(value).__name__ == "datetime":
        return value
    return str(value)


def _add(total: SuiteOutcome | None, chunk: SuiteOutcome) -> SuiteOutcome:
    if total is None:
        return chunk
    by_name = {e.name: e for e in total.expectations}
    for item in chunk.expectations:
        into = by_name.get(item.name)
        if into is None:
            total.expectations.append(item)
            continue
        _merge(into, item)
    if chunk.failed:
        total.gx_result = chunk.gx_result  # Data Docs show a chunk that failed
    return total


def _merge(into: ExpectationOutcome, item: ExpectationOutcome) -> None:
    into.success = into.success and item.success
    into.unexpected_count = (into.unexpected_count or 0) + (item.unexpected_count or 0)
    into.element_count = (into.element_count or 0) + (item.element_count or 0)
    into.sample = (into.sample + item.sample)[: max(len(into.sample), 10)]
    into.error = into.error or item.error
