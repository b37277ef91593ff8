"""Flow ``archive-to-s3``: move old and soft-deleted rows to the object store, verified first.

For every archive policy (``archive.policies``; all checked against the live schema before any
row is read): resume what an earlier run left unfinished, then keyset batches — read, write
one object, verify it (size, SHA-256, rows and keys read back), and delete exactly the rows
still unchanged, in the transaction that marks the batch complete. Rows changed meanwhile stay
and are reported. A dry run reports rows and estimated bytes and changes nothing.

Artifacts: a progress bar updated per batch, and a table per run with rows archived, objects,
bytes and rows skipped per table.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from pydantic import BaseModel, ConfigDict, Field

from steward.archive.archiver import ArchiveContext, BatchResult, Budget, TableReport
from steward.archive.batch import Source
from steward.archive.runner import archive_table
from steward.archive.sources import open_context, open_sources
from steward.settings import get_settings
from tasks.archive import TASK_STEPS, estimate_archive


class ArchiveParams(BaseModel):
    """Parameters of the ``archive-to-s3`` flow."""

    model_config = ConfigDict(extra="forbid")

    tables: list[str] | None = Field(
        default=None, description="Tables / collections to archive; None = every policy."
    )
    dry_run: bool = Field(
        default=False,
        description="Report rows and estimated bytes that would move; change nothing.",
    )
    batch_size: int | None = Field(
        default=None, ge=1, le=200_000, description="Rows per object; None = the policy's."
    )
    max_batches: int | None = Field(
        default=None, ge=1, description="Stop after this many new batches (all tables)."
    )
    time_budget_seconds: float | None = Field(
        default=None, gt=0, description="Start no new batch after this many seconds."
    )


@flow(
    name="archive-to-s3",
    description="Archive old and soft-deleted rows to the object store; verified before delete.",
)
def archive_to_s3(params: ArchiveParams = ArchiveParams()) -> dict[str, Any]:
    """Archive every selected policy; returns per-table totals (or the dry-run estimate)."""
    logger = get_run_logger()
    ctx = open_context(get_settings())
    try:
        sources = open_sources(ctx, params.tables)  # every policy checked before any data moves
        for source in sources:
            source.batch_size = params.batch_size or source.batch_size
        logger.info(
            "archive-to-s3: %s to %s%s",
            ", ".join(
                f"{s.name} (before {s.cutoff:%Y-%m-%d}, {s.batch_size}/object)" for s in sources
            ),
            ctx.store.url,
            " — dry run, nothing will change" if params.dry_run else "",
        )
        if params.dry_run:
            return _dry_run(ctx, sources)
        return _archive(ctx, sources, params)
    finally:
        ctx.sql.dispose()


def _dry_run(ctx: ArchiveContext, sources: list[Source]) -> dict[str, Any]:
    plans = [estimate_archive(ctx, source) for source in sources]
    create_table_artifact(
        key="archive-dry-run",
        table=plans,
        description="archive-to-s3 dry run: rows and estimated bytes that would move",
    )
    return {
        "dry_run": True,
        "rows": sum(p["rows"] for p in plans),
        "estimated_bytes": sum(p["estimated_bytes"] for p in plans),
        "tables": {p["table"]: p for p in plans},
    }


def _archive(ctx: ArchiveContext, sources: list[Source], params: ArchiveParams) -> dict[str, Any]:
    total = sum(source.count() for source in sources)
    progress = create_progress_artifact(
        0.0, key="archive-progress", description=f"{total} rows qualify at start"
    )
    done = {"rows": 0}

    def advance(result: BatchResult) -> None:
        done["rows"] += result.rows
        update_progress_artifact(progress, min(100.0, 100.0 * done["rows"] / max(total, 1)))

    budget = Budget(params.max_batches, params.time_budget_seconds)
    reports = [archive_table(ctx, s, budget, advance, steps=TASK_STEPS) for s in sources]
    update_progress_artifact(progress, 100.0)
    _publish(reports)
    return _summary(reports, total, remaining=sum(source.count() for source in sources))


def _publish(reports: list[TableReport]) -> None:
    rows = [
        {
            "table": r.table,
            "rows archived": r.rows_archived,
            "objects": r.objects,
            "bytes": r.bytes,
            "rows skipped (changed)": r.rows_skipped,
            "resumed batches": r.resumed_batches,
        }
        for r in reports
    ]
    create_table_artifact(
        key="archive-summary", table=rows, description="archive-to-s3: what this run archived"
    )


def _summary(reports: list[TableReport], total: int, remaining: int) -> dict[str, Any]:
    get_run_logger().info(
        "archived %s rows in %s objects; %s rows changed meanwhile and stayed",
        sum(r.rows_archived for r in reports),
        sum(r.objects for r in reports),
        sum(r.rows_skipped for r in reports),
    )
    return {
        "dry_run": False,
        "qualifying_at_start": total,
        "rows_archived": sum(r.rows_archived for r in reports),
        "rows_skipped": sum(r.rows_skipped for r in reports),
        "objects": sum(r.objects for r in reports),
        "bytes": sum(r.bytes for r in reports),
        "rows_still_qualifying": remaining,
        "tables": {r.table: r.to_dict() for r in reports},
    }
