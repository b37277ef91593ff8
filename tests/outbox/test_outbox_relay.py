"""The relay core on PostgreSQL + Redis: delivery, failures, retries, dead letters, requeue."""

from __future__ import annotations

import gzip
import json
import time
import uuid

import pytest
import redis
import sqlalchemy as sa

from steward.outbox import (
    BatchReport,
    RedisStreamsSink,
    backoff_delay,
    describe_error,
    drain,
    enqueue,
    outbox_table,
    relay_slice,
)
from steward.storage import open_object_store


def insert_raw(env, aggregate_type, aggregate_id, payload_text):
    """Insert an event the way another language would (plain SQL, no Steward checks)."""
    with env.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload) "
                "VALUES (:id, :t, :a, 'Raw', CAST(:p AS JSONB))"
            ),
            {"id": uuid.uuid4(), "t": aggregate_type, "a": aggregate_id, "p": payload_text},
        )


def test_relay_publishes_contract_fields_and_marks_published(outbox_env):
    env = outbox_env
    with env.engine.begin() as conn:
        event_id = enqueue(conn, "order", 9, "OrderPlaced", {"total": 3}, {"trace": "abc"})
    relay = env.relay()
    report = relay.relay_batch()
    assert (report.claimed, report.published, report.retried, report.dead) == (1, 1, 0, 0)
    (entry,) = env.entries("order")
    assert entry["event_id"] == str(event_id)
    assert entry["event_type"] == "OrderPlaced" and entry["aggregate_id"] == "9"
    assert json.loads(entry["payload"]) == {"total": 3}
    assert json.loads(entry["headers"]) == {"trace": "abc"}
    (row,) = env.rows()
    assert row.status == "published" and row.published_at is not None
    assert relay.status()["pending"] == 0


def test_event_history_objects_hold_the_batch(outbox_env):
    env = outbox_env
    ids = env.fill(30, 3, types=("order", "product"))
    totals = drain(env.relay().relay_batch)
    assert totals.published == 30
    store = open_object_store(env.settings)
    lines = []
    for info in store.list("events/"):
        assert info.key.endswith(".jsonl.gz") and "/dt=" in info.key
        kind = info.key.split("/")[1]
        for line in gzip.decompress(store.get_bytes(info.key)).decode().splitlines():
            event = json.loads(line)
            assert event["aggregate_type"] == kind
            lines.append(event)
    assert sorted(e["event_id"] for e in lines) == sorted(ids)
    assert {e["payload"]["n"] for e in lines} == set(range(30))


def test_a_failing_stream_holds_its_aggregates_and_lets_others_flow(outbox_env):
    env = outbox_env.reconfigure(outbox__sinks='["redis_streams"]')
    env.fill(40, 4, types=("order", "product"))
    env.redis.set(env.stream("product"), "not a stream")  # XADD now fails with WRONGTYPE
    relay = env.relay()
    report = relay.relay_batch()
    assert report.published == 20 and report.retried == 4 and report.held == 16
    assert any("WRONGTYPE" in error for error in report.errors)
    failed = env.rows("attempts > 0")
    assert {row.aggregate_type for row in failed} == {"product"} and len(failed) == 4
    assert all(row.status == "pending" and "WRONGTYPE" in row.last_error for row in failed)
    assert all(row.available_at > row.created_at for row in failed)
    assert len(env.rows("attempts = 0 AND status = 'pending'")) == 16  # held, untouched

    env.redis.delete(env.stream("product"))
    time.sleep(0.1)  # backoff in these tests is at most 0.05 s
    drain(relay.relay_batch)
    assert env.rows("status <> 'published'") == []
    seqs = {str(row.id): row.seq for row in env.rows()}
    per_aggregate: dict[str, list[int]] = {}
    for entry in env.entries("product"):
        per_aggregate.setdefault(entry["aggregate_id"], []).append(seqs[entry["event_id"]])
    assert all(s == sorted(s) and len(s) == 5 for s in per_aggregate.values())


def test_requeue_without_filters_takes_every_dead_event(outbox_env):
    env = outbox_env.reconfigure(outbox__max_payload_bytes="100")
    insert_raw(env, "order", "a", json.dumps({"blob": "x" * 500}))
    insert_raw(env, "product", "b", json.dumps({"blob": "x" * 500}))
    relay = env.relay()
    drain(relay.relay_batch)
    assert relay.status()["dead"] == 2
    assert relay.requeue_dead(aggregates=["order"], dry_run=True) == 1
    assert relay.requeue_dead() == 2
    status = relay.status()
    assert (status["pending"], status["retrying"], status["dead"]) == (2, 0, 0)


def test_status_reports_lag_and_retrying(outbox_env):
    env = outbox_env.reconfigure(outbox__sinks='["redis_streams"]')
    env.fill(6, 2, types=("product",))
    env.redis.set(env.stream("product"), "not a stream")
    relay = env.relay()
    time.sleep(0.2)
    relay.relay_batch()
    status = relay.status()
    assert status["pending"] == 6 and status["retrying"] == 2 and status["dead"] == 0
    assert status["oldest_pending_age_seconds"] >= 0.2


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    plain = [backoff_delay(n, base=1, maximum=60, jitter=0, rand=lambda: 0.5) for n in range(1, 9)]
    assert plain == [1, 2, 4, 8, 16, 32, 60, 60]
    jittered = backoff_delay(4, base=1, maximum=60, jitter=0.5, rand=lambda: 0.999)
    assert 4.0 <= jittered <= 8.0
    assert backoff_delay(10_000, base=1, maximum=300, jitter=0) == 300


def test_error_text_never_carries_credentials():
    exc = ConnectionError(
        "Error connecting to redis://user:s3cret@cache.internal:6379/0 password=hunter2\nmore"
    )
    text = describe_error(exc, "publishing")
    assert "s3cret" not in text and "hunter2" not in text and "more" not in text
    assert text.startswith("publishing: ConnectionError: Error connecting to redis://***@cache")
    assert len(describe_error(ValueError("x" * 5000))) == 500


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        (redis.ResponseError("OOM command not allowed when used memory > 'maxmemory'"), "failed"),
        (redis.ResponseError("WRONGTYPE Operation against a key"), "failed"),
        (redis.ResponseError("ERR value is too large for this stream entry"), "rejected"),
    ],
)
def test_per_entry_redis_errors_are_sorted_into_retry_or_reject(outbox_env, reply, verdict):
    env = outbox_env
    env.fill(2, 1)
    with env.engine.begin() as conn:
        events = outbox_table(conn).claim(conn, limit=10, max_aggregates=10, dead_blocks=False)
    sink = RedisStreamsSink(env.redis, key_prefix="t:", maxlen=0)
    result = sink._sort_replies(events, [b"1-0", reply])
    chosen = result.failed if verdict == "failed" else result.rejected
    assert list(chosen) == [events[1].seq] and not (result.failed.keys() & result.rejected.keys())


def test_a_slice_runs_batches_back_to_back_within_its_limits(outbox_env):
    env = outbox_env
    env.fill(50, 5)
    relay = env.relay()

    def batch() -> BatchReport:
        return relay.relay_batch(limit=10)

    first = relay_slice(batch, seconds=60, max_events=1000, max_batches=2)
    assert (first.batches, first.published, first.drained) == (2, 20, False)
    second = relay_slice(batch, seconds=60, max_events=15)
    assert (second.batches, second.published, second.drained) == (2, 20, False)
    rest = relay_slice(batch, seconds=60, max_events=1000)
    assert (rest.batches, rest.published, rest.drained, rest.waiting) == (2, 10, True, False)
    assert relay.status()["pending"] == 0 and len(env.entries("order")) == 50
