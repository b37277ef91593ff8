"""Dead events: they hold their aggregate by default, read grouped by reason, and requeue in order.

Also the one size rule (compact JSON bytes, in enqueue and the relay alike) and ``last_error``
cleared once an event is published.
"""

from __future__ import annotations

import json
import time
import uuid

import sqlalchemy as sa

from steward.outbox import drain, enqueue


def insert_raw(env, aggregate_type, aggregate_id, payload_text, event_type="Raw"):
    """Insert an event the way another language would (plain SQL, no Steward checks)."""
    with env.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload) "
                "VALUES (:id, :t, :a, :e, CAST(:p AS JSONB))"
            ),
            {"id": uuid.uuid4(), "t": aggregate_type, "a": aggregate_id, "e": event_type,
             "p": payload_text},
        )  # fmt: skip


def stream_seqs(env, aggregate_type: str, aggregate_id: str) -> list[int]:
    return [int(e["seq"]) for e in env.entries(aggregate_type) if e["aggregate_id"] == aggregate_id]


def test_a_dead_event_holds_its_aggregate_and_requeue_delivers_it_in_order(outbox_env):
    env = outbox_env.reconfigure(outbox__sinks='["redis_streams"]', outbox__max_attempts="2")
    env.fill(4, 1, types=("product",))  # product:agg-0, seq 1..4
    env.fill(2, 1, types=("order",))  # order:agg-0, seq 5..6: unaffected
    env.redis.set(env.stream("product"), "not a stream")
    relay = env.relay()
    relay.relay_batch()
    time.sleep(0.1)
    assert relay.relay_batch().dead == 1
    env.redis.delete(env.stream("product"))
    drain(relay.relay_batch)
    assert [row.seq for row in env.rows("status = 'pending'")] == [2, 3, 4]  # held, untouched
    assert stream_seqs(env, "order", "agg-0") == [5, 6]
    status = relay.status()
    (dead,) = env.rows("status = 'dead'")
    assert status["held"] == [
        {"aggregate": "product:agg-0", "dead_event_id": str(dead.id), "dead_seq": 1, "held": 3}
    ]

    assert relay.requeue_dead(event_ids=[str(dead.id)]) == 1
    drain(relay.relay_batch)
    assert stream_seqs(env, "product", "agg-0") == [1, 2, 3, 4]
    assert env.rows("status <> 'published'") == []


def test_skipping_dead_events_is_an_explicit_option_and_costs_order(outbox_env):
    env = outbox_env.reconfigure(
        outbox__max_payload_bytes="2000", outbox__dead_blocks_aggregate="false"
    )
    insert_raw(env, "order", "agg-0", json.dumps({"blob": "x" * 5000}))
    env.fill(4, 2, types=("order",))  # agg-0: seq 2, 4; agg-1: seq 3, 5
    relay = env.relay()
    drain(relay.relay_batch)
    assert [row.seq for row in env.rows("status = 'published'")] == [2, 3, 4, 5]
    assert relay.status()["held"] == []
    relay.requeue_dead(aggregates=["order"])
    drain(env.reconfigure(outbox__max_payload_bytes="100000").relay().relay_batch)
    assert stream_seqs(env, "order", "agg-0") == [2, 4, 1]  # the cost: out of order


def test_dead_letters_are_grouped_by_reason_with_type_aggregate_attempts_and_age(outbox_env):
    env = outbox_env.reconfigure(outbox__max_payload_bytes="2000", outbox__max_attempts="1")
    insert_raw(env, "order", "o-1", json.dumps({"blob": "x" * 5000}), "Huge")
    insert_raw(env, "order", "o-2", json.dumps({"blob": "x" * 6000}), "Huge")
    env.fill(1, 1, types=("product",))
    env.redis.set(env.stream("product"), "not a stream")
    relay = env.relay()
    drain(relay.relay_batch)
    status = relay.status()
    assert status["dead"] == 3
    by_reason = {group["reason"]: group for group in status["dead_by_reason"]}
    (size_reason,) = [r for r in by_reason if r.startswith("rejected: payload is # bytes")]
    (gave_up,) = [r for r in by_reason if r.startswith("gave up after # attempts")]
    assert "WRONGTYPE" in gave_up
    sized = by_reason[size_reason]
    assert sized["count"] == 2 and sized["oldest_age_seconds"] >= 0
    assert [(e["event_type"], e["aggregate"], e["attempts"]) for e in sized["events"]] == [
        ("Huge", "order:o-1", 1),
        ("Huge", "order:o-2", 1),
    ]
    (failed,) = by_reason[gave_up]["events"]
    assert failed["aggregate"] == "product:agg-0" and failed["event_type"] == "Changed"
    only_orders = relay.dead_letters(aggregates=["order"])
    assert [(g.reason, g.count) for g in only_orders] == [(size_reason, 2)]


def test_last_error_is_cleared_when_the_event_is_published(outbox_env):
    env = outbox_env.reconfigure(outbox__sinks='["redis_streams"]')
    env.fill(2, 1, types=("product",))
    env.redis.set(env.stream("product"), "not a stream")
    relay = env.relay()
    relay.relay_batch()
    assert "WRONGTYPE" in env.rows("seq = 1")[0].last_error
    env.redis.delete(env.stream("product"))
    time.sleep(0.1)
    drain(relay.relay_batch)
    rows = env.rows()
    assert [(row.status, row.attempts, row.last_error) for row in rows] == [
        ("published", 1, None),
        ("published", 0, None),
    ]


def test_one_size_rule_a_payload_enqueue_accepts_is_relayed(outbox_env):
    env = outbox_env  # default settings: 1 MiB
    payload = {"n": 2, "v": [0] * 450_000}  # 900,013 bytes compact; 1,350,015 as JSONB text
    with env.engine.begin() as conn:
        enqueue(conn, "order", 1, "Big", payload)
    relay = env.relay()
    totals = drain(relay.relay_batch)
    assert (totals.published, totals.dead) == (1, 0)
    (entry,) = env.entries("order")
    assert len(entry["payload"].encode()) == 900_013
    assert json.loads(entry["payload"]) == payload
    (row,) = env.rows()
    assert row.status == "published"


def test_one_size_rule_the_relay_refuses_what_enqueue_would_refuse(outbox_env):
    env = outbox_env.reconfigure(outbox__max_payload_bytes="1000")
    insert_raw(env, "order", "a", json.dumps({"v": [0] * 500}))  # 1,007 bytes compact
    insert_raw(env, "order", "b", json.dumps({"v": [0] * 400}))  # 807 compact, 1,207 as text
    drain(env.relay().relay_batch)
    (dead,) = env.rows("status = 'dead'")
    assert dead.aggregate_id == "a"
    assert "payload is 1,007 bytes (compact JSON), over outbox.max_payload_bytes = 1,000" in (
        dead.last_error
    )
    (entry,) = env.entries("order")
    assert entry["aggregate_id"] == "b" and len(entry["payload"]) == 807


def test_a_poison_event_goes_dead_at_once_and_holds_only_its_aggregate(outbox_env):
    env = outbox_env.reconfigure(outbox__max_payload_bytes="2000")
    env.fill(4, 2, types=("order",))
    insert_raw(env, "order", "agg-0", json.dumps({"blob": "x" * 5000}))
    env.fill(4, 2, types=("order",))
    relay = env.relay()
    totals = drain(relay.relay_batch)  # agg-0: 1, 3, poison 5, 6, 8; agg-1: 2, 4, 7, 9
    assert totals.published == 6 and totals.dead == 1
    (poison,) = env.rows("status = 'dead'")
    assert poison.seq == 5 and poison.attempts == 1
    assert poison.last_error.startswith("rejected: payload is 5,")
    assert "over outbox.max_payload_bytes = 2,000" in poison.last_error
    assert str(poison.id) not in {e["event_id"] for e in env.entries("order")}
    assert [row.seq for row in env.rows("status = 'pending'")] == [6, 8]

    assert relay.requeue_dead(event_ids=[str(poison.id)]) == 1
    big = env.reconfigure(outbox__max_payload_bytes="100000").relay()
    assert drain(big.relay_batch).published == 3
    assert stream_seqs(env, "order", "agg-0") == [1, 3, 5, 6, 8]
    assert env.rows("status <> 'published'") == []
