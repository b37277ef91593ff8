"""The fixed cost of a batch (PostgreSQL, S3 on moto's server): a staged object is proven by
the SHA-256 its PutObject returned (no HEAD), 'verified' commits with the guarded delete (three
manifest commits per batch: writing, deleted, complete), staged copies of many batches leave in
one DeleteObjects. A store that returns no checksum is asked (HEAD) or read back instead. A
process killed after batches completed but before their staged copies were removed leaves
copies no reader's pattern sees, and the next run removes them."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa

from steward.archive import manifest, publish
from steward.archive.archiver import table_prefix
from steward.archive.runner import archive_table
from steward.archive.sources import open_sources

from .conftest import assert_each_row_once, duckdb_query, kill_archive_at, snapshot, snapshots

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
OUTBOX = "SELECT seq FROM read_parquet('{archive}/app/outbox/dt=*/*.parquet')"


def _s3_requests(store) -> Counter[str]:
    """Requests the store's boto3 client sends, by operation."""
    sent: Counter[str] = Counter()

    def count(model: Any, **kwargs: Any) -> None:
        sent[model.name] += 1

    store._client.meta.events.register("provide-client-params.s3.*", count)
    return sent


def _manifest_commits(engine: sa.Engine) -> list[int]:
    """Commits of transactions that wrote to the manifest table (a one-item counter)."""
    commits = [0]

    def wrote(conn, cursor, statement, parameters, context, executemany) -> None:
        if "steward_archive_manifest" in statement and statement.lstrip()[:6] in {
            "INSERT",
            "UPDATE",
        }:
            conn.info["wrote_manifest"] = True

    def committed(conn) -> None:
        commits[0] += int(conn.info.pop("wrote_manifest", False))

    def rolled_back(conn) -> None:
        conn.info.pop("wrote_manifest", None)

    sa.event.listen(engine, "before_cursor_execute", wrote)
    sa.event.listen(engine, "commit", committed)
    sa.event.listen(engine, "rollback", rolled_back)
    return commits


def _states_seen(ctx) -> list[set[str]]:
    """The manifest's states each time a batch reached 'object_verified' or 'batch_deleted'."""
    seen: list[set[str]] = []

    def hook(point: str) -> None:
        if point in {"object_verified", "batch_deleted"}:
            with ctx.sql.connect() as conn:
                seen.append({e.state for e in manifest.entries(conn, table="outbox")})

    ctx.hook = hook
    return seen


def _ids(rows: dict[Any, str]) -> set[str]:
    return {str(key) for key in rows}


def _keys(ctx) -> list[str]:
    return sorted(info.key for info in ctx.store.list("archive/", details=False))


def test_batches_are_proven_by_the_put_committed_three_times_and_unstaged_together(
    s3_settings, contexts, monkeypatch
):
    monkeypatch.setattr(publish, "STAGED_BATCHES", 3)
    ctx = contexts(s3_settings(archive__batch_size=5))
    before = snapshots(ctx, ("outbox",))
    sent = _s3_requests(ctx.store)
    commits = _manifest_commits(ctx.sql.engine)
    states = _states_seen(ctx)
    (outbox,) = open_sources(ctx, ["outbox"])

    report = archive_table(ctx, outbox)

    batches = report.objects
    assert batches >= 7 and report.rows_archived == len(before["outbox"].rows) - len(
        snapshot(ctx, "outbox").rows
    )
    assert sent["HeadObject"] == 0  # every staged object proven by its PutObject's checksum
    assert (sent["PutObject"], sent["CopyObject"]) == (batches, batches)
    assert sent["DeleteObjects"] == math.ceil(batches / 3)  # every 3 batches, rest at the end
    assert commits[0] == 3 * batches  # writing, deleted (with verified), complete
    assert states and all(manifest.VERIFIED not in found for found in states)
    with ctx.sql.connect() as conn:
        done = manifest.entries(conn, table="outbox")
    assert {e.state for e in done} == {manifest.COMPLETE} and len(done) == batches
    assert all(e.sha256 and e.bytes and e.deleted_rows == e.rows for e in done)
    with ctx.sql.connect() as conn:  # 'verified' was recorded (with the delete)
        stamped = conn.execute(
            sa.select(sa.func.count()).where(manifest.manifest_table.c.verified_at.is_not(None))
        ).scalar_one()
    assert stamped == batches
    assert not [key for key in _keys(ctx) if key.endswith(".staged")]
    assert_each_row_once(ctx, before)


@pytest.mark.parametrize("head_has_checksum", [True, False])
def test_a_store_returning_no_checksum_on_put_is_asked_or_read_back(
    head_has_checksum, s3_settings, contexts
):
    ctx = contexts(s3_settings(archive__batch_size=20))
    before = snapshots(ctx, ("outbox",))
    sent = _s3_requests(ctx.store)
    put, head, get_bytes = ctx.store.put, ctx.store.head, ctx.store.get_bytes
    read: list[str] = []

    def put_without_checksum(*args: Any, **kwargs: Any):
        return replace(put(*args, **kwargs), stored_sha256="")

    def head_maybe_without(key: str):
        info = head(key)
        return info if head_has_checksum else replace(info, stored_sha256="")

    def reading(key: str) -> bytes:
        read.append(key)
        return get_bytes(key)

    ctx.store.put = put_without_checksum  # type: ignore[method-assign]
    ctx.store.head = head_maybe_without  # type: ignore[method-assign]
    ctx.store.get_bytes = reading  # type: ignore[method-assign]
    (outbox,) = open_sources(ctx, ["outbox"])

    report = archive_table(ctx, outbox)

    assert report.objects >= 2
    assert sent["HeadObject"] == report.objects
    staged_reads = [key for key in read if key.endswith(".staged")]
    assert len(staged_reads) == (0 if head_has_checksum else report.objects)
    assert_each_row_once(ctx, before)


def test_killed_after_batches_completed_leaves_staged_copies_the_next_run_removes(
    s3_settings, contexts
):
    settings = s3_settings(archive__batch_size=5)
    ctx = contexts(settings)
    before = snapshots(ctx, ("outbox",))
    kill_archive_at("batch_completed", 3, "outbox")

    with ctx.sql.connect() as conn:
        complete = manifest.entries(conn, table="outbox", states=[manifest.COMPLETE])
    staged = [key for key in _keys(ctx) if key.endswith(".staged")]
    assert len(complete) >= 3
    assert {manifest.staged_key(e.object_key) for e in complete} <= set(staged)
    # A reader of the final objects sees each archived row once, and only rows that left
    # (a batch deleted but not complete yet may be published already: its rows left too).
    ids = [str(row[0]) for row in duckdb_query(ctx, OUTBOX)]
    left = {str(key) for key in before["outbox"].rows} - _ids(snapshot(ctx, "outbox").rows)
    assert len(ids) == len(set(ids)) >= sum(e.rows for e in complete)
    assert set(ids) <= left

    rerun = contexts(settings)
    report = archive_table(rerun, open_sources(rerun, ["outbox"])[0])

    assert report.orphans_removed >= 3
    assert not [key for key in _keys(rerun) if key.endswith(".staged")]
    assert all(key.startswith(table_prefix(rerun.settings, open_sources(rerun, ["outbox"])[0]))
               for key in _keys(rerun))  # fmt: skip
    ids = [str(row[0]) for row in duckdb_query(rerun, OUTBOX)]
    left = {str(key) for key in before["outbox"].rows} - _ids(snapshot(rerun, "outbox").rows)
    assert len(ids) == len(set(ids)) and set(ids) == left
    assert_each_row_once(rerun, before)
