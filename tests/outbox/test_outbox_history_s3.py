"""The event history sink on S3 (moto server): jsonl.gz objects per aggregate type and day."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from steward.outbox import drain
from steward.storage import open_object_store


def test_event_history_on_s3_is_readable_and_partitioned(outbox_env, s3_url, moto_endpoint):
    env = outbox_env.reconfigure(
        objects__url=s3_url,
        objects__endpoint_url=moto_endpoint,
        outbox__sinks='["event_history"]',
    )
    ids = env.fill(60, 5, types=("order", "product"))
    earlier = datetime.now(UTC) - timedelta(days=3)
    with env.engine.begin() as conn:  # two events happened three days ago
        conn.execute(sa.text("UPDATE outbox SET created_at = :at WHERE seq <= 2"), {"at": earlier})
    assert drain(env.relay().relay_batch).published == 60

    store = open_object_store(env.settings)
    found: dict[str, dict] = {}
    for info in store.list("events/"):
        _, aggregate_type, partition, name = info.key.split("/")
        assert name.endswith(".jsonl.gz") and partition.startswith("dt=")
        for line in gzip.decompress(store.get_bytes(info.key)).decode().splitlines():
            event = json.loads(line)
            assert event["aggregate_type"] == aggregate_type
            assert partition == "dt=" + event["occurred_at"][:10]
            found[event["event_id"]] = event
    assert sorted(found) == sorted(ids)
    old_day = "dt=" + earlier.date().isoformat()
    old = [key for key in (i.key for i in store.list("events/")) if old_day in key]
    assert len(old) == 2  # one per aggregate type, in the older day's partition
    first = found[ids[0]]
    assert first["seq"] == 1 and first["payload"]["n"] == 0 and first["event_type"] == "Changed"
