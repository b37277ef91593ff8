"""Several relays at once: every event delivered exactly once, in order per aggregate."""

from __future__ import annotations

import json
from collections import defaultdict

EVENTS, AGGREGATES, TYPES = 20_000, 100, ("order", "product")  # 200 aggregates in all


def test_four_relay_processes_deliver_everything_once_in_order(outbox_env, workers):
    env = outbox_env.reconfigure(
        outbox__sinks='["redis_streams"]',
        outbox__batch_size="1000",
        outbox__max_aggregates_per_batch="25",
    )
    env.fill(EVENTS, AGGREGATES, types=TYPES)
    order = {str(row.id): row.seq for row in env.rows()}

    relays = [workers.start("drain") for _ in range(4)]
    outputs = [relay.communicate(timeout=180) for relay in relays]

    assert [relay.returncode for relay in relays] == [0, 0, 0, 0], [err for _, err in outputs]
    totals = [json.loads(out) for out, _ in outputs]
    assert sum(t["published"] for t in totals) == EVENTS
    assert sum(1 for t in totals if t["published"]) >= 2  # the work really was shared
    assert env.rows("status <> 'published'") == []

    delivered: list[dict[str, str]] = []
    for aggregate_type in TYPES:
        assert env.redis.xlen(env.stream(aggregate_type)) == EVENTS // len(TYPES)
        delivered += env.entries(aggregate_type)
    ids = [entry["event_id"] for entry in delivered]
    assert len(ids) == EVENTS and len(set(ids)) == EVENTS == len(order)

    seen_per_aggregate: dict[tuple[str, str], list[int]] = defaultdict(list)
    for aggregate_type in TYPES:
        for entry in env.entries(aggregate_type):
            seen_per_aggregate[(aggregate_type, entry["aggregate_id"])].append(
                order[entry["event_id"]]
            )
    assert len(seen_per_aggregate) == AGGREGATES * len(TYPES)
    for aggregate, seqs in seen_per_aggregate.items():
        assert seqs == sorted(seqs), f"events of {aggregate} out of insertion order"
