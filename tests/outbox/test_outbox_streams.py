"""The Redis Streams consumer helper: groups, acks, taking over stuck entries, dedupe."""

from __future__ import annotations

import time

import pytest

from steward.outbox import StreamConsumer, drain


@pytest.fixture
def stream(outbox_env):
    """A stream holding 10 relayed order events; returns (env, stream key, event ids)."""
    env = outbox_env.reconfigure(outbox__sinks='["redis_streams"]')
    ids = env.fill(10, 3)
    drain(env.relay().relay_batch)
    return env, env.stream("order"), ids


def consumer(env, key, group, name, **options):
    member = StreamConsumer(env.redis, [key], group=group, consumer=name, block_ms=0, **options)
    member.ensure_groups()
    return member


def pending_count(env, key, group):
    return env.redis.xpending(key, group)["pending"]


def test_each_group_gets_every_event_and_acks_clear_pending(stream):
    env, key, ids = stream
    for group in ("billing", "search"):
        member = consumer(env, key, group, "c1")
        member.ensure_groups()  # idempotent
        got = []
        report = member.handle(member.read(), got.append)
        assert [m.event_id for m in got] == ids
        assert got[0].payload["n"] == 0 and got[0].event_type == "Changed"
        assert report.acked == 10 and pending_count(env, key, group) == 0


def test_stuck_entries_are_taken_over_with_xautoclaim(stream):
    env, key, ids = stream
    crashed = consumer(env, key, "billing", "crashed")
    assert len(crashed.read(count=4)) == 4  # read, never acknowledged
    assert pending_count(env, key, "billing") == 4

    rescuer = consumer(env, key, "billing", "rescuer", claim_idle_ms=50)
    assert rescuer.claim_stuck() == []  # not idle long enough yet
    time.sleep(0.1)
    handled = []
    report = rescuer.poll(handled.append)  # stuck entries first
    assert [m.event_id for m in handled] == ids[:4]
    report = rescuer.poll(handled.append)
    assert [m.event_id for m in handled] == ids and report.acked == 6
    assert pending_count(env, key, "billing") == 0


def test_copies_of_an_event_are_handled_once(stream):
    env, key, ids = stream
    drain(env.relay().relay_batch)  # nothing left to publish
    first = env.redis.xrange(key, count=3)
    for _, fields in first:  # a relay republished three events (at least once)
        env.redis.xadd(key, fields)
    member = consumer(env, key, "billing", "c1")
    handled = []
    total_duplicates = 0
    while messages := member.read(count=4):
        total_duplicates += len(member.handle(messages, handled.append).duplicates)
    assert [m.event_id for m in handled] == ids
    assert total_duplicates == 3 and pending_count(env, key, "billing") == 0
    ttl = env.redis.ttl(f"steward:dedupe:billing:{ids[0]}")
    assert 0 < ttl <= 7 * 24 * 3600


def test_a_failing_handler_leaves_the_rest_pending_for_later(stream):
    env, key, ids = stream
    member = consumer(env, key, "billing", "c1")
    handled = []

    def flaky(message):
        if message.event_id == ids[3] and len(handled) == 3:
            raise RuntimeError("downstream unavailable")
        handled.append(message.event_id)

    with pytest.raises(RuntimeError):
        member.handle(member.read(), flaky)
    assert handled == ids[:3] and pending_count(env, key, "billing") == 7
    handled_again = []
    member.handle(member.read_own_pending(), lambda m: handled_again.append(m.event_id))
    assert handled_again == ids[3:] and pending_count(env, key, "billing") == 0
