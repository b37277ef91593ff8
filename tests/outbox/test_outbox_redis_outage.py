"""Redis goes away in the middle of a run: nothing is lost, retries back off, order holds.

The test runs its own redis-server on a free port (the ``own_redis`` fixture: a password and an
append-only file), so the shared Redis is never touched.
"""

from __future__ import annotations

import time

import redis

from steward.outbox import drain


def test_redis_outage_backs_off_then_delivers_everything_in_order(outbox_env, own_redis):
    env = outbox_env.reconfigure(cache__url=own_redis.url, outbox__sinks='["redis_streams"]')
    env.fill(50, 5)
    relay = env.relay()
    assert relay.relay_batch(limit=20).published == 20

    own_redis.kill()
    first = relay.relay_batch()
    assert (first.published, first.retried, first.held) == (0, 5, 25)
    heads = env.rows("status = 'pending' AND attempts > 0")
    assert [row.attempts for row in heads] == [1] * 5
    assert all(row.available_at > row.created_at for row in heads)
    for row in heads:
        assert "ConnectionError" in row.last_error and own_redis.password not in row.last_error
    time.sleep(0.1)  # past the (test-sized) backoff
    relay.relay_batch()
    again = {row.seq: row for row in env.rows("attempts > 0")}
    assert [row.attempts for row in again.values()] == [2] * 5
    assert all(again[row.seq].available_at > row.available_at for row in heads)
    assert len(env.rows("status = 'pending'")) == 30

    own_redis.start()
    time.sleep(0.1)
    assert drain(relay.relay_batch).published == 30
    assert env.rows("status <> 'published'") == []
    client = redis.Redis.from_url(own_redis.url, decode_responses=True)
    entries = [fields for _, fields in client.xrange(env.stream("order"))]
    seq_of = {str(row.id): row.seq for row in env.rows()}
    assert len(entries) == 50 and len({e["event_id"] for e in entries}) == 50
    for aggregate in {e["aggregate_id"] for e in entries}:
        seqs = [seq_of[e["event_id"]] for e in entries if e["aggregate_id"] == aggregate]
        assert seqs == sorted(seqs)
