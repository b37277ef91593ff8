"""A finish step run again for the same batch (Prefect retries ``delete-archived-rows`` on a
transient error, e.g. a throttled CopyObject after the delete committed) publishes the batch
from the manifest and never deletes or abandons it again: a batch whose rows left can only move
forward. A failed removal of staged copies fails nothing (PostgreSQL, S3 on moto's server)."""

from __future__ import annotations

from typing import Any

import pytest

from steward.archive import archiver, manifest, publish, recovery
from steward.archive.runner import BatchSteps, archive_table
from steward.archive.sources import open_sources
from steward.errors import IntegrityViolation, SourceUnavailable

from .conftest import assert_each_row_once, snapshot, snapshots

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def _final_keys(ctx) -> list[str]:
    return sorted(
        info.key
        for info in ctx.store.list("archive/", details=False)
        if not info.key.endswith(".staged")
    )


def test_a_finish_retried_after_its_delete_committed_publishes_and_loses_nothing(
    s3_settings, contexts, monkeypatch
):
    ctx = contexts(s3_settings(archive__batch_size=5))
    before = snapshots(ctx, ("outbox",))
    (outbox,) = open_sources(ctx, ["outbox"])
    publish_once = archiver.publish_batch
    failed: list[str] = []

    def throttled(ctx: Any, source: Any, entry: Any, *args: Any) -> Any:
        if not failed:  # the first batch's publish fails once, after its delete committed
            failed.append(entry.batch_id)
            raise SourceUnavailable("S3 CopyObject: SlowDown (throttled)")
        return publish_once(ctx, source, entry, *args)

    monkeypatch.setattr(archiver, "publish_batch", throttled)

    def finish(ctx: Any, source: Any, verified: Any) -> Any:  # what the task's retries do
        try:
            return recovery.finish_once(ctx, source, verified)
        except SourceUnavailable:
            with pytest.raises(IntegrityViolation, match="already 'deleted'"):
                archiver.finish_batch(ctx, source, verified)  # the old way: refused now
            return recovery.finish_once(ctx, source, verified)

    report = archive_table(ctx, outbox, steps=BatchSteps(finish=finish))

    assert failed and report.objects >= 2
    with ctx.sql.connect() as conn:
        entries = manifest.entries(conn, table="outbox")
    assert {e.state for e in entries} == {manifest.COMPLETE}
    (retried,) = [e for e in entries if e.batch_id == failed[0]]
    assert retried.deleted_rows == retried.rows == 5 and retried.object_key in _final_keys(ctx)
    archive_table(contexts(ctx.settings), open_sources(ctx, ["outbox"])[0])  # a rerun
    assert retried.object_key in _final_keys(ctx)  # recovery did not remove it
    assert_each_row_once(ctx, before)


def test_a_batch_whose_rows_left_cannot_go_back_to_verified_or_abandoned(s3_settings, contexts):
    ctx = contexts(s3_settings(archive__batch_size=5))
    (outbox,) = open_sources(ctx, ["outbox"])
    archive_table(ctx, outbox)
    with ctx.sql.connect() as conn:
        done = manifest.entries(conn, table="outbox")[0]
    for step in (
        lambda conn: manifest.mark_abandoned(conn, done.batch_id, "retried"),
        lambda conn: manifest.mark_verified(conn, done.batch_id, size=1, sha256="x"),
        lambda conn: manifest.mark_deleted(conn, done.batch_id, deleted=0, skipped=[]),
    ):
        with pytest.raises(IntegrityViolation, match=f"{done.batch_id} is already 'complete'"):
            with ctx.sql.begin() as conn:
                step(conn)
    with ctx.sql.connect() as conn:
        (after,) = manifest.entries(conn, batch_id=done.batch_id)
    assert (after.state, after.sha256, after.object_key) == (
        manifest.COMPLETE,
        done.sha256,
        done.object_key,
    )
    assert done.object_key in _final_keys(ctx)


def test_staged_copies_that_fail_to_leave_fail_nothing_and_the_next_run_removes_them(
    s3_settings, contexts, monkeypatch
):
    monkeypatch.setattr(publish, "STAGED_BATCHES", 2)
    settings = s3_settings(archive__batch_size=5)
    ctx = contexts(settings)
    before = snapshots(ctx, ("outbox",))
    delete_many = ctx.store.delete_many

    def failing(keys: Any) -> Any:
        if keys:
            raise SourceUnavailable("S3 DeleteObjects: InternalError")
        return delete_many(keys)

    ctx.store.delete_many = failing  # type: ignore[method-assign]
    report = archive_table(ctx, open_sources(ctx, ["outbox"])[0])

    assert report.objects >= 3 and report.rows_archived == len(before["outbox"].rows) - len(
        snapshot(ctx, "outbox").rows
    )
    staged = [i.key for i in ctx.store.list("archive/", details=False) if i.key.endswith(".staged")]
    assert len(staged) == report.objects
    with ctx.sql.connect() as conn:
        assert {e.state for e in manifest.entries(conn, table="outbox")} == {manifest.COMPLETE}
    ctx.store.delete_many = delete_many  # type: ignore[method-assign]
    rerun = contexts(settings)
    again = archive_table(rerun, open_sources(rerun, ["outbox"])[0])
    assert again.orphans_removed == len(staged)
    assert not [i for i in rerun.store.list("archive/", details=False) if i.key.endswith(".staged")]
    assert_each_row_once(ctx, before)
