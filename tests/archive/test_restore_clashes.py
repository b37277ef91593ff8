"""A restore with a clash on a unique column other than the key (a reused ``outbox.id``)
brings back every other row and reports the clash with its table, key and constraint."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa

from steward.archive import manifest
from steward.archive.restore import RestoreRequest, restore
from steward.archive.runner import archive_table
from steward.archive.sources import open_sources

from .conftest import snapshot

EVERYTHING = {
    "ts_from": datetime(1970, 1, 1, tzinfo=UTC),
    "ts_to": datetime(2999, 1, 1, tzinfo=UTC),
}


def test_one_clash_keeps_back_only_its_row(app_settings, contexts):
    ctx = contexts(app_settings(archive__batch_size=7))
    before = snapshot(ctx, "outbox")
    (outbox,) = open_sources(ctx, ["outbox"])
    report = archive_table(ctx, outbox)
    assert report.rows_archived > 10
    archived = set(before.rows) - set(snapshot(ctx, "outbox").rows)
    victim = min(archived)
    event_id = _archived_event_id(ctx, victim)
    with ctx.sql.begin() as conn:  # the application reuses the archived event's public id
        table = sa.Table("outbox", sa.MetaData(), autoload_with=conn)
        conn.execute(
            table.insert().values(
                id=event_id,
                aggregate_type="order",
                aggregate_id="1",
                event_type="order.created",
                payload={"reused": True},
                status="pending",
                available_at=datetime.now(UTC),
                created_at=datetime.now(UTC),
            )
        )

    result = restore(ctx, RestoreRequest(table="outbox", **EVERYTHING))

    assert result.restored == len(archived) - 1 and result.failed
    assert result.clash_count == 1 and result.status == "incomplete"
    (clash,) = result.clashes
    assert clash.startswith(f"outbox:{victim} (") and (
        "outbox_id_key" in clash or "outbox.id" in clash
    )
    now = snapshot(ctx, "outbox").rows
    assert all(now[k] == before.rows[k] for k in archived - {victim})
    assert victim not in now
    assert f"outbox:{victim}" in result.failure_message() and "rerun" in result.failure_message()
    with ctx.sql.connect() as conn:
        restored = sum(e.restored_rows or 0 for e in manifest.entries(conn, table="outbox"))
    assert restored == len(archived) - 1


def _archived_event_id(ctx, seq: int) -> uuid.UUID:
    with ctx.sql.connect() as conn:
        (entry,) = [
            e
            for e in manifest.entries(conn, table="outbox", states=[manifest.COMPLETE])
            if e.key_min <= seq <= e.key_max
        ]
    (source,) = open_sources(ctx, ["outbox"])
    rows = source.decode(ctx.store.get_bytes(entry.object_key), full=True).payload
    (row,) = [r for r in rows if r["seq"] == seq]
    return row["id"]
