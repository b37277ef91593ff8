"""Restores by key, by batch and by time range; conflicts; overwrite; audit entries; cold
objects pending on one run and restored on the next."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from steward.archive import archive_table, manifest, open_sources
from steward.archive.batch import normalize
from steward.archive.restore import RestoreRequest, restore
from steward.archive.restore_report import IN_SOURCE
from steward.errors import ConfigError

from .conftest import NOW, MovableClock, snapshot, snapshots


def _archived_outbox(app_settings, contexts, **overrides):
    ctx = contexts(app_settings(archive__batch_size=5, **overrides))
    before = snapshot(ctx, "outbox")
    (outbox,) = open_sources(ctx, ["outbox"])
    report = archive_table(ctx, outbox)
    assert report.rows_archived > 15
    with ctx.sql.connect() as conn:
        entries = manifest.entries(conn, table="outbox", states=[manifest.COMPLETE])
    return ctx, before, entries


def test_restore_by_key_then_conflict_then_overwrite(app_settings, contexts):
    ctx, before, entries = _archived_outbox(app_settings, contexts)
    wanted = [entries[0].key_min, entries[-1].key_max]

    first = restore(ctx, RestoreRequest(table="outbox", keys=[str(k) for k in wanted]))
    assert (first.restored, first.conflicts, first.batches) == (2, 0, 2)
    now_present = snapshot(ctx, "outbox").rows
    assert all(now_present[k] == before.rows[k] for k in wanted)
    # The restored rows left the archive: a second restore finds them in the source only.
    again = restore(ctx, RestoreRequest(table="outbox", keys=wanted))
    assert (again.restored, again.conflicts) == (0, 0)
    assert again.not_restored == {str(k): IN_SOURCE for k in wanted}

    # A key in the source *and* in the archive (a restore stopped before its objects were
    # rewritten): with overwrite the archived values win (see the next test for the conflict).
    key = entries[1].key_min
    crashing = contexts(ctx.settings, hook=_crash_at("restore_committed"))
    with pytest.raises(RuntimeError):
        restore(crashing, RestoreRequest(table="outbox", keys=[key]))
    with ctx.sql.begin() as conn:
        conn.execute(sa.text("UPDATE outbox SET attempts = 99 WHERE seq = :s"), {"s": key})
    forced = restore(ctx, RestoreRequest(table="outbox", keys=[key], overwrite=True))
    assert (forced.overwritten, forced.conflicts) == (1, 0)
    assert snapshot(ctx, "outbox").rows[key] == before.rows[key]

    missing = restore(ctx, RestoreRequest(table="outbox", keys=[10**9]))
    assert missing.missing_keys == [str(10**9)] and missing.restored == 0


def test_a_key_in_the_source_and_the_archive_is_a_conflict(app_settings, contexts):
    ctx, before, entries = _archived_outbox(app_settings, contexts)
    key = entries[0].key_min
    crashing = contexts(ctx.settings, hook=_crash_at("restore_committed"))
    with pytest.raises(RuntimeError):  # committed, objects not rewritten yet: in both
        restore(crashing, RestoreRequest(table="outbox", keys=[key]))
    with ctx.sql.begin() as conn:
        conn.execute(sa.text("UPDATE outbox SET attempts = 99 WHERE seq = :s"), {"s": key})
    conflict = restore(crashing, RestoreRequest(table="outbox", keys=[key], dry_run=True))
    assert (conflict.restored, conflict.conflicts) == (0, 1)
    assert conflict.conflict_keys == [f"outbox:{key}"]
    assert snapshot(ctx, "outbox").rows[key] != before.rows[key]


def _crash_at(where: str):
    def hook(point: str) -> None:
        if point == where:
            raise RuntimeError(f"crash at {point}")

    return hook


def test_restore_by_range_brings_back_exactly_the_rows_in_range(app_settings, contexts):
    ctx = contexts(app_settings(archive__batch_size=5))
    with ctx.sql.connect() as conn:
        outbox_table = sa.Table("outbox", sa.MetaData(), autoload_with=conn)
        query = sa.select(outbox_table.c.seq, outbox_table.c.published_at)
        published = {seq: stamp for seq, stamp in conn.execute(query)}
    (outbox,) = open_sources(ctx, ["outbox"])
    archive_table(ctx, outbox)
    remaining = set(snapshot(ctx, "outbox").rows)
    archived = {k: normalize(t) for k, t in published.items() if k not in remaining}
    stamps = sorted(archived.values())
    ts_from, ts_to = stamps[3], stamps[-4]

    report = restore(ctx, RestoreRequest(table="outbox", ts_from=ts_from, ts_to=ts_to))

    back = set(snapshot(ctx, "outbox").rows) - remaining
    assert back == {k for k, t in archived.items() if ts_from <= t <= ts_to}
    assert report.restored == len(back) and report.conflicts == 0


def test_restore_by_batch_marks_the_manifest_and_writes_an_audit_entry(app_settings, contexts):
    ctx, before, entries = _archived_outbox(app_settings, contexts)
    entry = entries[0]
    report = restore(ctx, RestoreRequest(batch_id=entry.batch_id))
    assert report.restored == entry.rows
    with ctx.sql.connect() as conn:
        (marked,) = manifest.entries(conn, batch_id=entry.batch_id)
        audit = conn.execute(
            sa.text(
                "SELECT actor, entity_type, entity_id, details FROM audit_log "
                "WHERE action = 'archive.restore'"
            )
        ).all()
    assert marked.restored_rows == entry.rows and marked.restored_at is not None
    assert [(a.actor, a.entity_type, a.entity_id) for a in audit] == [
        ("steward", "outbox", entry.batch_id)
    ]
    details = (
        audit[0].details if isinstance(audit[0].details, dict) else json.loads(audit[0].details)
    )
    assert details["rows_restored"] == entry.rows


def test_dry_run_restore_counts_without_writing(app_settings, contexts):
    ctx, before, entries = _archived_outbox(app_settings, contexts)
    report = restore(ctx, RestoreRequest(batch_id=entries[0].batch_id, dry_run=True))
    assert report.restored == entries[0].rows
    assert len(snapshot(ctx, "outbox").rows) == len(before.rows) - sum(e.rows for e in entries)


@pytest.mark.parametrize(
    "request_args",
    [{}, {"keys": [1]}, {"table": "outbox", "keys": [1], "batch_id": "x"}, {"batch_id": "nope"}],
)
def test_bad_restore_requests_are_refused(request_args, app_settings, contexts):
    ctx = contexts(app_settings(rows=0))
    with pytest.raises(ConfigError):
        restore(ctx, RestoreRequest(**request_args))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_glacier_restore_is_pending_then_completes_on_a_later_run(app_settings, contexts):
    clock = MovableClock(NOW)
    policy = {
        "table": "outbox",
        "rule": "older_than",
        "column": "published_at",
        "retention_days": 30,
        "where": {"status": "published"},
        "storage_class": "GLACIER",
    }
    settings = app_settings(archive__policies=json.dumps([policy]))
    ctx = contexts(settings, clock=clock)
    before = snapshots(ctx, ("outbox",))["outbox"]
    (outbox,) = open_sources(ctx)
    archive_table(ctx, outbox)
    with ctx.sql.connect() as conn:
        (entry,) = manifest.entries(conn, table="outbox")
    assert entry.storage_class == "GLACIER"
    assert ctx.store.head(entry.object_key).storage_class == "GLACIER"

    first = restore(ctx, RestoreRequest(batch_id=entry.batch_id, tier="Bulk"))
    assert first.status == "pending" and first.restored == 0
    (pending,) = first.pending
    assert pending["rerun_after"] == (NOW + timedelta(hours=12)).isoformat()

    clock.advance(hours=6)
    assert restore(ctx, RestoreRequest(batch_id=entry.batch_id)).status == "pending"

    clock.advance(hours=7)
    second = restore(ctx, RestoreRequest(batch_id=entry.batch_id))
    assert second.status == "complete" and second.restored == entry.rows
    assert snapshot(ctx, "outbox").checksum == before.checksum


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_glacier_restore_on_s3(app_settings, contexts, s3_url, moto_endpoint):
    settings = app_settings(
        objects__url=s3_url, objects__endpoint_url=moto_endpoint, archive__batch_size=1000
    )
    ctx = contexts(settings)
    before = snapshot(ctx, "outbox")
    (outbox,) = open_sources(ctx, ["outbox"])
    archive_table(ctx, outbox)
    with ctx.sql.connect() as conn:
        (entry,) = manifest.entries(conn, table="outbox")
    ctx.store.set_storage_class(entry.object_key, "GLACIER")  # as tier-archives would
    with ctx.sql.begin() as conn:
        assert manifest.record_storage_class(conn, entry.object_key, "GLACIER")

    report = restore(ctx, RestoreRequest(batch_id=entry.batch_id, tier="Expedited"))
    if report.status == "pending":  # stores that take time: the next run finishes
        report = restore(ctx, RestoreRequest(batch_id=entry.batch_id))
    assert report.status == "complete" and report.restored == entry.rows
    assert snapshot(ctx, "outbox").checksum == before.checksum
