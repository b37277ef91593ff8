"""The event history sink on S3 (moto server) and a folder: jsonl.gz objects per aggregate type
and day, named per source database and batch, never overwritten."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from steward.errors import ObjectExists
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


def history_ids(store) -> list[str]:
    ids = []
    for info in store.list("events/"):
        for line in gzip.decompress(store.get_bytes(info.key)).decode().splitlines():
            ids.append(json.loads(line)["event_id"])
    return ids


@pytest.mark.parametrize("where", ["folder", "s3"])
def test_a_recreated_database_never_overwrites_history(outbox_env, s3_url, moto_endpoint, where):
    objects = {"objects__url": s3_url, "objects__endpoint_url": moto_endpoint}
    env = outbox_env.reconfigure(outbox__sinks='["event_history"]', **(
        objects if where == "s3" else {}
    ))  # fmt: skip
    first = env.fill(12, 3, types=("order", "product"))
    assert drain(env.relay().relay_batch).published == 12
    with env.engine.begin() as conn:  # the database starts again from scratch: seq 1, 2, ...
        conn.execute(sa.text("TRUNCATE outbox RESTART IDENTITY"))
    second = env.fill(12, 3, types=("order", "product"))
    assert drain(env.relay().relay_batch).published == 12
    store = open_object_store(env.settings)
    assert sorted(history_ids(store)) == sorted(first + second)
    names = [info.key.rsplit("/", 1)[1] for info in store.list("events/")]
    source = env.settings.database_url.rsplit("/", 1)[1]
    assert len(names) == 4 and all(name.startswith(f"127.0.0.1-{source}-") for name in names)


def test_two_databases_sharing_a_prefix_keep_their_own_objects(outbox_env):
    env = outbox_env.reconfigure(outbox__sinks='["event_history"]', outbox__history_source="eu")
    eu = env.fill(5, 1)
    drain(env.relay().relay_batch)
    with env.engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE outbox RESTART IDENTITY"))
    us = env.reconfigure(outbox__history_source="us").fill(5, 1)
    drain(env.relay().relay_batch)
    store = open_object_store(env.settings)
    assert sorted(history_ids(store)) == sorted(eu + us)
    assert sorted(info.key.rsplit("/", 1)[1][:3] for info in store.list("events/")) == [
        "eu-",
        "us-",
    ]


@pytest.mark.parametrize("where", ["folder", "s3"])
def test_put_if_absent_never_replaces_an_object(
    make_settings, s3_url, moto_endpoint, tmp_path, where
):
    url = {"folder": (tmp_path / "store").as_uri(), "s3": s3_url}[where]
    store = open_object_store(make_settings(objects__url=url, objects__endpoint_url=moto_endpoint))
    store.put_if_absent("events/a/one.jsonl.gz", b"first", metadata={"events": "1"})
    with pytest.raises(ObjectExists, match="already exists"):
        store.put_if_absent("events/a/one.jsonl.gz", b"second")
    assert store.get_bytes("events/a/one.jsonl.gz") == b"first"
    assert store.head("events/a/one.jsonl.gz").metadata == {"events": "1"}
    assert [info.key for info in store.list("events/")] == ["events/a/one.jsonl.gz"]
