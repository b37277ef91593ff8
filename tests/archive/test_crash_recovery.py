"""A failure at every step of a batch — an exception, or the process killed outright — then a
rerun: every original row is in the source or in exactly one complete archive object, and
restoring everything gives back the original tables (checksum over all rows)."""

from __future__ import annotations

import pytest

from steward.archive import archive_table, open_sources, sql_rows

from .conftest import assert_each_row_once, kill_archive_at, restore_everything, snapshots

POINTS = [
    "manifest_written",
    "object_written",
    "object_verified",
    "rows_deleting",
    "rows_deleted",
    "batch_deleted",
    "object_published",
    "batch_completed",
]
# Soft-deleted rows (users), JSON (audit_log), UUIDs + a where condition (outbox), and an
# aggregate: orders with order_items, payments and inventory_reservations.
TABLES = ("users", "audit_log", "outbox", "orders")
CHECKED = (*TABLES, "order_items", "payments", "inventory_reservations")


class InjectedFailure(RuntimeError):
    pass


def _fail_at(point: str, nth: int):
    seen = {"count": 0}

    def hook(reached: str) -> None:
        if reached == point:
            seen["count"] += 1
            if seen["count"] == nth:
                raise InjectedFailure(f"injected at {point}")

    return hook


def _rerun_and_check(contexts, settings, before, point: str) -> None:
    ctx = contexts(settings)
    reports = [archive_table(ctx, source) for source in open_sources(ctx, TABLES)]
    # The interrupted batch was picked up: abandoned if its object was never written,
    # otherwise verified (again) and finished. (On PostgreSQL batches overlap, so a batch
    # started after the interrupted one may be unfinished too.)
    if point == "manifest_written":
        assert sum(r.abandoned_batches for r in reports) == 1
    elif point == "batch_completed":  # complete already: its staged copies are orphans now
        assert sum(r.orphans_removed for r in reports) >= 1
    else:
        assert sum(r.resumed_batches for r in reports) >= 1
    assert_each_row_once(ctx, before)
    restore_everything(ctx, TABLES)
    after = snapshots(ctx, CHECKED)
    assert {n: s.checksum for n, s in after.items()} == {n: s.checksum for n, s in before.items()}


@pytest.mark.parametrize("point", POINTS)
def test_exception_at_each_step_then_rerun(point, app_settings, contexts, monkeypatch):
    settings = app_settings(rows=400, archive__batch_size=5)
    monkeypatch.setattr(sql_rows, "CHUNK", 3)
    ctx = contexts(settings, hook=_fail_at(point, nth=3))
    before = snapshots(ctx, CHECKED)
    with pytest.raises(InjectedFailure):
        for source in open_sources(ctx, TABLES):
            archive_table(ctx, source)
    _rerun_and_check(contexts, settings, before, point)


@pytest.mark.parametrize("point", POINTS[1:])
def test_killed_process_at_each_step_then_rerun(point, app_settings, contexts):
    settings = app_settings(rows=400, archive__batch_size=5)
    before = snapshots(contexts(settings), CHECKED)
    kill_archive_at(point, 3, *TABLES)
    _rerun_and_check(contexts, settings, before, point)
