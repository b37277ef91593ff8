"""Archiving the example schema on PostgreSQL and SQLite: what moves, what stays, dry run,
concurrent application changes, orphans and overlapping runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from steward.archive import manifest
from steward.archive.archiver import Budget, read_batch, table_prefix, write_batch
from steward.archive.locking import table_lock
from steward.archive.restore import RestoreRequest, restore
from steward.archive.runner import archive_table, plan_table
from steward.archive.sources import open_sources
from steward.errors import ArchiveBusy

from .conftest import (
    NOW,
    archived_keys,
    assert_each_row_once,
    restore_everything,
    snapshot,
    snapshots,
)


def _archive_all(ctx, tables=None, **budget):
    return {s.name: archive_table(ctx, s, Budget(**budget)) for s in open_sources(ctx, tables)}


def _count(ctx, sql: str) -> int:
    with ctx.sql.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


def test_archive_moves_qualifying_rows_then_restore_gives_tables_back(app_settings, contexts):
    ctx = contexts(app_settings(archive__batch_size=7))
    before = snapshots(ctx)
    planned = {s.name: plan_table(ctx, s)["rows"] for s in open_sources(ctx)}

    reports = _archive_all(ctx)

    assert {name: r.rows_archived for name, r in reports.items()} == planned
    assert sum(planned.values()) > 20
    assert reports["outbox"].objects == -(-planned["outbox"] // 7)
    cutoff = (NOW - timedelta(days=7)).strftime("%Y-%m-%d")
    assert _count(ctx, f"SELECT count(*) FROM outbox WHERE published_at < '{cutoff}'") == 0
    assert _count(ctx, "SELECT count(*) FROM outbox WHERE status = 'pending'") > 0
    assert_each_row_once(ctx, before)
    for name in ("users", "audit_log", "outbox"):
        assert len(snapshot(ctx, name).rows) == len(before[name].rows) - planned[name]

    restore_everything(ctx)
    assert {n: s.checksum for n, s in snapshots(ctx).items()} == {
        n: s.checksum for n, s in before.items()
    }


def test_rows_still_referenced_by_foreign_keys_stay(app_settings, contexts):
    ctx = contexts(app_settings())
    _archive_all(ctx, ["users", "orders"])
    # Every soft-deleted user or order left behind is referenced by another row.
    assert (
        _count(
            ctx,
            "SELECT count(*) FROM users u WHERE deleted_at IS NOT NULL"
            " AND deleted_at < '2026-08-01'"
            " AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id)",
        )
        == 0
    )
    assert _count(ctx, "SELECT count(*) FROM orders o WHERE deleted_at < '2026-08-01'") == _count(
        ctx,
        "SELECT count(*) FROM orders o WHERE deleted_at < '2026-08-01' AND ("
        "EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id) OR "
        "EXISTS (SELECT 1 FROM payments p WHERE p.order_id = o.id) OR "
        "EXISTS (SELECT 1 FROM inventory_reservations r WHERE r.order_id = o.id))",
    )


def test_dry_run_reports_rows_and_bytes_and_changes_nothing(app_settings, contexts):
    ctx = contexts(app_settings())
    before = snapshots(ctx)
    plans = [plan_table(ctx, s) for s in open_sources(ctx)]
    assert sum(p["rows"] for p in plans) > 0
    assert all(p["estimated_bytes"] > 0 for p in plans if p["rows"])
    assert {n: s.checksum for n, s in snapshots(ctx).items()} == {
        n: s.checksum for n, s in before.items()
    }
    with ctx.sql.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(manifest.manifest_table)).scalar()
            == 0
        )
    assert list(ctx.store.list("")) == []


def test_rows_changed_between_read_and_delete_stay_and_are_never_restored(app_settings, contexts):
    """An update, an undelete and an edit of an append-only row, all after the read."""
    settings = app_settings(archive__batch_size=1000)
    changed: dict[str, object] = {}

    def change_rows(point: str) -> None:
        if point != "object_verified" or changed:
            return
        with ctx.sql.begin() as conn:
            user_ids = conn.execute(
                sa.select(sa.column("key_min"), sa.column("key_max"))
                .select_from(manifest.manifest_table)
                # verified, not yet deleted: SQL records 'verified' with the delete
                .where(manifest.manifest_table.c.state == manifest.WRITING)
            ).first()
            changed["updated"] = user_ids[0]
            changed["undeleted"] = user_ids[1]
            conn.execute(
                sa.text("UPDATE users SET full_name = 'Changed', updated_at = :t WHERE id = :id"),
                {"t": NOW, "id": int(user_ids[0])},
            )
            conn.execute(
                sa.text("UPDATE users SET deleted_at = NULL WHERE id = :id"),
                {"id": int(user_ids[1])},
            )

    ctx = contexts(settings, hook=change_rows)
    (users,) = open_sources(ctx, ["users"])
    assert users.count() >= 2
    report = archive_table(ctx, users)

    assert report.rows_skipped == 2
    kept = snapshot(ctx, "users").rows
    assert {int(changed["updated"]), int(changed["undeleted"])} <= set(kept)
    assert "Changed" in kept[int(changed["updated"])]
    with ctx.sql.connect() as conn:
        (entry,) = manifest.entries(conn, table="users")
    assert sorted(entry.skipped_keys) == sorted(
        [int(changed["updated"]), int(changed["undeleted"])]
    )
    assert int(changed["updated"]) not in archived_keys(ctx, "users")

    stored = users.decode(ctx.store.get_bytes(entry.object_key), fmt=entry.format).keys
    assert len(stored) == entry.rows == report.rows_archived  # the object: exactly what left
    assert not set(entry.skipped_keys) & set(stored)

    result = restore(ctx, RestoreRequest(batch_id=entry.batch_id))
    assert result.conflicts == 0 and result.restored == entry.rows
    assert "Changed" in snapshot(ctx, "users").rows[int(changed["updated"])]


def test_whole_row_guard_keeps_an_edited_append_only_row(app_settings, contexts):
    settings = app_settings()
    edited: list[int] = []

    def edit(point: str) -> None:
        if point == "object_verified" and not edited:
            with ctx.sql.begin() as conn:
                row_id = conn.execute(sa.text("SELECT min(id) FROM audit_log")).scalar_one()
                conn.execute(
                    sa.text("UPDATE audit_log SET actor = 'someone-else' WHERE id = :id"),
                    {"id": row_id},
                )
            edited.append(row_id)

    ctx = contexts(settings, hook=edit)
    (audit,) = open_sources(ctx, ["audit_log"])
    report = archive_table(ctx, audit)
    assert report.rows_skipped == 1
    assert edited[0] in snapshot(ctx, "audit_log").rows
    assert edited[0] not in archived_keys(ctx, "audit_log")


def test_rerun_removes_orphan_objects_and_abandons_batches_without_object(app_settings, contexts):
    ctx = contexts(app_settings(archive__batch_size=5))
    (outbox,) = open_sources(ctx, ["outbox"])
    before = snapshots(ctx, ("outbox",))
    orphan = f"{table_prefix(ctx.settings, outbox)}dt=2026-11-19/leftover.parquet"
    ctx.store.put(orphan, b"not an archive anyone recorded")
    batch = read_batch(ctx, outbox, None)
    written = write_batch(ctx, outbox, batch).entry
    ctx.store.delete(manifest.staged_key(written.object_key))  # crash before the put

    report = archive_table(ctx, outbox)

    assert report.orphans_removed == 1
    assert report.abandoned_batches == 1
    assert not ctx.store.exists(orphan)
    assert report.rows_archived == before["outbox"].rows.__len__() - len(
        snapshot(ctx, "outbox").rows
    )
    assert_each_row_once(ctx, before)


def test_budget_stops_after_max_batches_and_next_run_continues(app_settings, contexts):
    ctx = contexts(app_settings(archive__batch_size=4))
    (outbox,) = open_sources(ctx, ["outbox"])
    total = outbox.count()
    first = archive_table(ctx, outbox, Budget(max_batches=2))
    assert first.objects == 2 and first.rows_archived == 8
    second = archive_table(ctx, outbox)
    assert first.rows_archived + second.rows_archived == total


def test_overlapping_runs_of_one_table_are_refused(app_settings, contexts):
    ctx = contexts(app_settings(rows=0))
    (users,) = open_sources(ctx, ["users"])
    with table_lock(ctx.sql.engine, users.source_name, users.name):
        with pytest.raises(ArchiveBusy, match="users"):
            archive_table(ctx, users)
