"""Flow ``restore-archive``: put archived rows back, by key, by batch or by time range.

Rows return with upsert semantics: a key that exists in the source again is reported as a
conflict and left as it is, unless ``overwrite``. Keys recorded as skipped (changed while they
were archived) never come back. Objects in GLACIER / DEEP_ARCHIVE get a restore request and
the run ends "pending" with the time to rerun, without failing; the rerun finishes the job.
Every batch restored writes an ``audit_log`` entry and marks the manifest.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from steward.archive.restore import RestoreReport, RestoreRequest, missing_keys, plan_restore
from steward.archive.sources import open_context
from steward.settings import get_settings
from tasks.restore import restore_archived_batch


class RestoreParams(BaseModel):
    """Parameters of the ``restore-archive`` flow: one of keys, batch_id or a time range."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    table: str | None = Field(default=None, description="Table / collection (keys, range).")
    # Not named `keys`: Prefect walks parameters with dict(), which would call model.keys().
    primary_keys: list[int | str] | None = Field(
        default=None,
        validation_alias=AliasChoices("primary_keys", "keys"),
        description="Primary keys to restore (also accepted as `keys`).",
    )
    batch_id: str | None = Field(default=None, description="Restore one archive batch.")
    time_from: datetime | None = Field(
        default=None, description="Range start on the policy's timestamp column (inclusive)."
    )
    time_to: datetime | None = Field(default=None, description="Range end (inclusive).")
    overwrite: bool = Field(
        default=False, description="Overwrite rows whose key exists again (else: conflicts)."
    )
    glacier_tier: Literal["Standard", "Bulk", "Expedited"] = Field(
        default="Standard", description="Restore tier for objects in GLACIER / DEEP_ARCHIVE."
    )
    dry_run: bool = Field(default=False, description="Count what would be restored; write nothing.")

    def request(self) -> RestoreRequest:
        return RestoreRequest(
            table=self.table,
            keys=self.primary_keys,
            batch_id=self.batch_id,
            ts_from=self.time_from,
            ts_to=self.time_to,
            overwrite=self.overwrite,
            tier=self.glacier_tier,
            dry_run=self.dry_run,
        )


@flow(
    name="restore-archive",
    description="Restore archived rows by key, batch or time range (upsert, conflicts reported).",
)
def restore_archive(params: RestoreParams = RestoreParams()) -> dict[str, Any]:
    """Restore what ``params`` selects; returns totals and any pending cold-storage batches."""
    logger = get_run_logger()
    ctx = open_context(get_settings())
    try:
        request = params.request()
        entries, sources, keys = plan_restore(ctx, request)
        logger.info(
            "restore-archive: %s batch(es) from %s%s%s",
            len(entries),
            ", ".join(sorted(sources)) or "nothing",
            " (overwrite)" if params.overwrite else "",
            " — dry run, nothing will be written" if params.dry_run else "",
        )
        report = RestoreReport(missing_keys=[str(k) for k in missing_keys(entries, keys)][:100])
        progress = create_progress_artifact(
            0.0, key="restore-progress", description=f"{len(entries)} archive batches selected"
        )
        for done, entry in enumerate(entries, start=1):
            source = sources[entry.table_name]
            report.add(restore_archived_batch(ctx, source, entry, request, keys))
            update_progress_artifact(progress, 100.0 * done / len(entries))
        _publish(report, params)
        return {"dry_run": params.dry_run, **report.to_dict()}
    finally:
        ctx.sql.dispose()


def _publish(report: RestoreReport, params: RestoreParams) -> None:
    logger = get_run_logger()
    create_table_artifact(
        key="restore-summary",
        table=[
            {
                "status": report.status,
                "batches": report.batches,
                "rows restored": report.restored,
                "rows overwritten": report.overwritten,
                "conflicts": report.conflicts,
                "not restored (changed while archived)": report.skipped_changed,
            }
        ],
        description="restore-archive" + (" (dry run)" if params.dry_run else ""),
    )
    if report.conflicts:
        logger.warning(
            "%s key(s) exist in the source again and were left as they are (overwrite=false): %s",
            report.conflicts,
            ", ".join(report.conflict_keys[:20]),
        )
    if report.pending:
        rerun = max(item["rerun_after"] for item in report.pending)
        lines = "\n".join(
            f"| {p['table']} | `{p['object_key']}` | {p['storage_class']} | {p['rerun_after']} |"
            for p in report.pending
        )
        create_markdown_artifact(
            key="restore-pending",
            markdown="# Restore pending\n\nThese objects are being restored from cold storage. "
            f"Run the restore again after **{rerun}**.\n\n| table | object | class | rerun after |"
            f"\n|---|---|---|---|\n{lines}\n",
            description="restore-archive: cold objects requested",
        )
        logger.warning(
            "restore pending: %s object(s) are being restored from cold storage; rerun after %s",
            len(report.pending),
            rerun,
        )
