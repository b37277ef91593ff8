"""SQLite (the embedded default): one relay at a time, the same behaviour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from steward.outbox import EventSpec, OutboxRelay, drain, enqueue_many
from steward.storage import create_sql_engine, open_object_store


def test_sqlite_relay_delivers_in_order_retries_and_cleans_up(
    make_settings, migrate_schema, redis_url, redis_client, tmp_path
):
    settings = make_settings(
        database__url=f"sqlite:///{tmp_path / 'app.db'}",
        cache__url=redis_url,
        objects__url=(tmp_path / "objects").as_uri(),
        outbox__backoff_base_seconds="60",
        outbox__backoff_max_seconds="60",
        outbox__batch_size="7",
    )
    engine = create_sql_engine(settings)
    migrate_schema(engine)
    specs = [EventSpec(("order", "product")[i % 2], f"a{i % 3}", "E", {"i": i}) for i in range(30)]
    with engine.begin() as conn:
        ids = enqueue_many(conn, specs)
    stream = "steward:events:product"
    redis_client.set(stream, "not a stream")  # product events fail at first
    relay = OutboxRelay.from_settings(settings)
    first = drain(relay.relay_batch)
    assert first.published == 15 and first.retried == 3
    status = relay.status()
    assert (status["pending"], status["retrying"]) == (15, 3)

    redis_client.delete(stream)
    with engine.begin() as conn:  # skip the minute of backoff
        conn.execute(sa.text("UPDATE outbox SET available_at = :at WHERE attempts > 0"),
                     {"at": datetime.now(UTC) - timedelta(seconds=1)})  # fmt: skip
    assert drain(relay.relay_batch).published == 15
    delivered = [
        fields[b"event_id"].decode()
        for kind in ("order", "product")
        for _, fields in redis_client.xrange(f"steward:events:{kind}")
    ]
    assert sorted(delivered) == sorted(str(i) for i in ids)
    product = [f[b"payload"] for _, f in redis_client.xrange(stream)]
    order_in_stream = [int(p.decode().split(":")[1].rstrip("}")) for p in product]
    for aggregate in range(3):
        mine = [i for i in order_in_stream if i % 3 == aggregate]
        assert mine == sorted(mine)

    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE outbox SET published_at = :at WHERE seq <= 10"),
                     {"at": datetime.now(UTC) - timedelta(days=45)})  # fmt: skip
    cutoff = datetime.now(UTC) - timedelta(days=30)
    assert relay.delete_published(before=cutoff, limit=100) == 10
    assert relay.table_size()["rows"] == 20
    relay.close()
    engine.dispose()


def test_sqlite_dead_letters_hold_their_aggregate_and_history_names_the_source(
    make_settings, migrate_schema, redis_url, redis_client, tmp_path
):
    settings = make_settings(
        database__url=f"sqlite:///{tmp_path / 'shop.db'}",
        cache__url=redis_url,
        objects__url=(tmp_path / "objects").as_uri(),
        outbox__max_payload_bytes="100",
    )
    engine = create_sql_engine(settings)
    migrate_schema(engine)
    specs = [
        EventSpec("order", "a", "Huge", {"blob": "x" * 200}),
        EventSpec("order", "a", "Paid", {"n": 1}),
        EventSpec("order", "b", "Paid", {"n": 2}),
    ]
    roomy = settings.outbox.model_copy(update={"max_payload_bytes": 10_000})
    with engine.begin() as conn:  # the poison event was written under a larger limit
        enqueue_many(conn, specs[:1], settings=roomy)
        ids = enqueue_many(conn, specs[1:])
    relay = OutboxRelay.from_settings(settings)
    totals = drain(relay.relay_batch)
    assert (totals.published, totals.dead) == (1, 1)
    status = relay.status()
    (group,) = status["dead_by_reason"]
    assert group["reason"].startswith("rejected: payload is # bytes") and group["count"] == 1
    assert group["events"][0]["aggregate"] == "order:a"
    assert [(h["aggregate"], h["held"]) for h in status["held"]] == [("order:a", 1)]
    store_keys = [info.key for info in open_object_store(settings).list("events/")]
    assert len(store_keys) == 1 and store_keys[0].split("/")[-1].startswith("shop-")
    (entry,) = redis_client.xrange("steward:events:order")  # b's event; a's waits
    assert entry[1][b"event_id"].decode() == str(ids[1])
    relay.close()
    engine.dispose()
