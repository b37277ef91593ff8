"""Flow ``restore-archive``: put archived rows back, by key, by batch or by time range.

Rows return with upsert semantics: a key that exists in the source again is reported as a
conflict and left as it is, unless ``overwrite``. A row the database refuses (a reused unique
value) is a clash: every other row comes back, each clash is listed with its table, key and
constraint, and the run fails at the end saying how to resolve them. Restoring roots of an
aggregate brings their children back, parents first. Keys recorded as skipped (changed while they
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
from prefect.utilities.annotations import quote

from steward.archive.restore import (
    RestoreReport,
    RestoreRequest,
    explain_not_restored,
    plan_restore,
)
from steward.archive.sources import open_context
from steward.errors import RestoreIncomplete
from steward.settings import get_settings
from steward.statistics import restored_rows
from tasks.restore import restore_archived_batch
from tasks.statistics import analyze_changed_tables, publish_statistics


@flow(
    name="restore-archive",
    description="Restore archived rows by key, batch or time range (upsert, conflicts reported).",
)
def restore_archive(
    table: str | None = None,
    keys: list[int | str] | None = None,
    batch_id: str | None = None,
    time_from: datetime | None = None,
    time_to: datetime | None = None,
    overwrite: bool = False,
    glacier_tier: Literal["Standard", "Bulk", "Expedited"] = "Standard",
    dry_run: bool = False,
) -> dict[str, Any]:
    """Restore what the parameters select; returns totals and any pending cold-storage batches.

    Give exactly one of: ``keys`` (with ``table``), ``batch_id``, or a time range
    (``time_from`` / ``time_to``, with ``table``). Restoring the root rows of an aggregate
    (e.g. orders) brings their child rows back too, parents first. The run fails, after
    restoring every row it can, when any row could not come back (each clash is listed).

    Args:
        table: Table / collection whose rows to restore (needed with keys or a time range).
        keys: Primary keys of the rows to restore, e.g. [101, 102].
        batch_id: Restore every row of one archive batch (see `steward archive status`).
        time_from: Range start on the policy's timestamp column, inclusive (ISO 8601).
        time_to: Range end on the policy's timestamp column, inclusive (ISO 8601).
        overwrite: Replace rows whose key exists in the table again (else they are clashes).
        glacier_tier: Restore tier for objects in GLACIER / DEEP_ARCHIVE.
        dry_run: Count what would be restored; write nothing.
    """
    logger = get_run_logger()
    request = RestoreRequest(
        table=table,
        keys=keys,
        batch_id=batch_id,
        ts_from=time_from,
        ts_to=time_to,
        overwrite=overwrite,
        tier=glacier_tier,
        dry_run=dry_run,
    )
    request.check()
    ctx = open_context(get_settings())
    try:
        entries, sources, wanted = plan_restore(ctx, request)
        logger.info(
            "restore-archive: %s batch(es) from %s%s%s",
            len(entries),
            ", ".join(sorted(sources)) or "nothing",
            " (overwrite)" if overwrite else "",
            " — dry run, nothing will be written" if dry_run else "",
        )
        report = RestoreReport()
        progress = create_progress_artifact(
            0.0, key="restore-progress", description=f"{len(entries)} archive batches selected"
        )
        written: list[Any] = []  # the batches' results: rows back per table
        for done, entry in enumerate(entries, start=1):
            source = sources[entry.table_name]
            result = restore_archived_batch(
                quote(ctx), quote(source), entry, request, wanted, quote(report.seen)
            )
            report.add(result)
            if source.backend == "sql":
                written.append(result)
            update_progress_artifact(progress, 100.0 * done / len(entries))
        if keys and table:
            explain_not_restored(ctx.sql, sources[table], table, wanted, report)
        _publish(report, dry_run)
    finally:
        ctx.sql.dispose()
    statistics = _analyze_restored(restored_rows(written)) if not dry_run else []
    if report.failed and not dry_run:
        raise RestoreIncomplete(report.failure_message())
    return {"dry_run": dry_run, **report.to_dict(), "statistics": statistics}


def _analyze_restored(changed: dict[str, int]) -> list[dict[str, Any]]:
    """ANALYZE every table rows came back into (before a failure is raised: they are back)."""
    wanted = {t: f"restore-archive put back {n:,} row(s)" for t, n in changed.items() if n}
    if not wanted:
        return []
    statistics = [analyze_changed_tables(wanted, "after restore-archive")]
    publish_statistics("restore-archive", statistics)
    return statistics


def _publish(report: RestoreReport, dry_run: bool) -> None:
    logger = get_run_logger()
    create_table_artifact(
        key="restore-summary",
        table=[
            {
                "status": report.status,
                "batches": report.batches,
                "rows restored": report.restored,
                "rows overwritten": report.overwritten,
                "child rows restored": sum(report.children_restored.values()),
                "conflicts (key exists again)": report.conflicts,
                "clashes (refused by a constraint)": report.clash_count,
                "not restored (changed while archived)": report.skipped_changed,
            }
        ],
        description="restore-archive" + (" (dry run)" if dry_run else ""),
    )
    if report.not_restored:
        lines = "\n".join(f"| `{key}` | {why} |" for key, why in report.not_restored.items())
        create_markdown_artifact(
            key="restore-not-restored",
            markdown=f"# Keys not restored ({report.not_restored_count})\n\n"
            f"| key | why |\n|---|---|\n{lines}\n",
            description="restore-archive: every requested key that did not come back, and why",
        )
        for key, why in list(report.not_restored.items())[:20]:
            logger.warning("key %s not restored: %s", key, why)
    if report.conflicts:
        logger.warning(
            "%s key(s) exist in the source again and were left as they are (overwrite=false): %s",
            report.conflicts,
            ", ".join(report.conflict_keys[:20]),
        )
    if report.failed:
        listed = report.clashes + [f"{k} (the row exists again)" for k in report.conflict_keys]
        create_markdown_artifact(
            key="restore-clashes",
            markdown="# Rows not restored\n\n"
            + "\n".join(f"- `{item}`" for item in listed)
            + f"\n\n{report.failure_message()}\n",
            description="restore-archive: rows that could not come back (table, key, constraint)",
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
