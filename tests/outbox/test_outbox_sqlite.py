"""SQLite (the embedded default): one relay at a time, the same behaviour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from steward.outbox import EventSpec, OutboxRelay, drain, enqueue_many
from steward.storage import create_sql_engine


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
