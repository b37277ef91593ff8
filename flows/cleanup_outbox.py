"""Flow ``cleanup-outbox``: delete published outbox events older than N days, in batches.

Only ``published`` rows whose ``published_at`` is before the cut-off go; pending and dead
events are never touched. Each batch is its own short transaction, so the relay and the
application keep writing meanwhile. Reports rows removed and the table's size before and after
(on PostgreSQL the space is reused by new rows; the file shrinks only with VACUUM FULL).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from pydantic import BaseModel, ConfigDict, Field

from steward.settings import get_settings
from tasks.outbox import count_published_events, delete_published_events, measure_outbox_table


class CleanupParams(BaseModel):
    """Parameters of the ``cleanup-outbox`` flow."""

    model_config = ConfigDict(extra="forbid")

    dry_run: bool = Field(default=False, description="Count what would go; delete nothing.")
    older_than_days: int | None = Field(
        default=None, ge=0, le=36_500, description="None = outbox.cleanup_after_days."
    )
    batch_size: int | None = Field(
        default=None, ge=1, le=200_000, description="Rows per batch; None = cleanup_batch_size."
    )
    max_batches: int | None = Field(default=None, ge=1, description="Stop after this many.")


@flow(
    name="cleanup-outbox",
    description="Delete published outbox events older than N days (never pending or dead).",
)
def cleanup_outbox(params: CleanupParams = CleanupParams()) -> dict[str, Any]:  # noqa: B008
    """Remove old published events in batches; returns rows removed and sizes before/after."""
    logger = get_run_logger()
    cfg = get_settings().outbox
    days = cfg.cleanup_after_days if params.older_than_days is None else params.older_than_days
    batch_size = params.batch_size or cfg.cleanup_batch_size
    before_time = datetime.now(UTC) - timedelta(days=days)
    size_before = measure_outbox_table()
    eligible = count_published_events(before_time)
    logger.info(
        "cleanup-outbox on %r: %s of %s rows published before %s (%s days) %s, %s per batch",
        cfg.table, eligible, size_before["rows"], before_time.isoformat(timespec="seconds"), days,
        "would be deleted (dry run)" if params.dry_run else "will be deleted", batch_size,
    )  # fmt: skip
    removed, batches = 0, 0
    if not params.dry_run and eligible:
        removed, batches = _delete(before_time, batch_size, eligible, params.max_batches)
    size_after = size_before if params.dry_run else measure_outbox_table()
    summary = {
        "dry_run": params.dry_run,
        "table": cfg.table,
        "older_than_days": days,
        "cutoff": before_time.isoformat(),
        "eligible": eligible,
        "rows_removed": removed,
        "batches": batches,
        "rows_before": size_before["rows"],
        "rows_after": size_after["rows"],
        "bytes_before": size_before["bytes"],
        "bytes_after": size_after["bytes"],
    }
    _publish(summary)
    return summary


def _delete(
    before_time: datetime, batch_size: int, eligible: int, max_batches: int | None
) -> tuple[int, int]:
    progress = create_progress_artifact(
        0.0, key="cleanup-outbox-progress", description=f"{eligible} published events to delete"
    )
    removed, batches = 0, 0
    while max_batches is None or batches < max_batches:
        deleted = delete_published_events(before_time, batch_size)
        batches += 1
        removed += deleted
        update_progress_artifact(progress, min(100.0, 100.0 * removed / max(eligible, 1)))
        if deleted < batch_size:
            break
    update_progress_artifact(progress, 100.0)
    return removed, batches


def _publish(summary: dict[str, Any]) -> None:
    create_table_artifact(
        [
            {"measure": "rows", "before": summary["rows_before"], "after": summary["rows_after"]},
            {
                "measure": "bytes (table + indexes)",
                "before": summary["bytes_before"],
                "after": summary["bytes_after"],
            },
        ],
        key="cleanup-outbox-size",
        description="Outbox table size before and after the cleanup",
    )
    dry = summary["dry_run"]
    verb, count = (
        ("would remove", summary["eligible"]) if dry else ("removed", summary["rows_removed"])
    )
    create_markdown_artifact(
        f"**cleanup-outbox** {verb} {count} published "
        f"events older than {summary['older_than_days']} days (before {summary['cutoff']}) "
        f"from `{summary['table']}` in {summary['batches']} batches; pending and dead events "
        "are kept.",
        key="cleanup-outbox-summary",
    )
