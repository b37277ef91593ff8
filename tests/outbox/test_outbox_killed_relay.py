"""A relay process killed between publishing and marking: nothing lost, nothing seen twice."""

from __future__ import annotations

from steward.outbox import StreamConsumer

KILLED_EXIT_CODE = 3


def test_killed_relay_loses_nothing_and_consumers_see_each_event_once(outbox_env, workers):
    env = outbox_env.reconfigure(outbox__sinks='["redis_streams", "event_history"]')
    ids = env.fill(1000, 20)

    code, _, err = workers.run("die-after-publish", "--limit", "300")
    assert code == KILLED_EXIT_CODE, err
    assert env.redis.xlen(env.stream("order")) == 300  # published, then the process died
    assert env.rows("status <> 'pending'") == []  # its marks died with its transaction

    code, totals, err = workers.run("drain")
    assert code == 0, err
    assert totals["published"] == 1000  # the killed batch was picked up again
    assert env.rows("status <> 'published'") == []
    assert env.redis.xlen(env.stream("order")) == 1300  # duplicates only from the killed batch

    consumer = StreamConsumer(
        env.redis, [env.stream("order")], group="billing", consumer="c1", block_ms=0
    )
    consumer.ensure_groups()
    handled = []
    duplicates = 0
    while messages := consumer.read(count=200):
        report = consumer.handle(messages, handled.append)
        duplicates += len(report.duplicates)
    seen = [message.event_id for message in handled]
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    assert duplicates == 300

    seq_of = {str(row.id): row.seq for row in env.rows()}
    per_aggregate: dict[str, list[int]] = {}
    for message in handled:
        per_aggregate.setdefault(message.aggregate_id, []).append(seq_of[message.event_id])
    assert len(per_aggregate) == 20
    assert all(seqs == sorted(seqs) for seqs in per_aggregate.values())
