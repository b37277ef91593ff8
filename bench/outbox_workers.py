"""The relay processes ``python -m bench.outbox`` starts (``--worker raw|core|flow|served``).

Each warms up, prints "ready", then relays once per "go" line on stdin and prints its totals
as JSON (``served`` instead runs the flow as deployed, long-running, until stdin closes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import psycopg
import redis

STREAM_PREFIX = "steward:events:"

# The same statements Steward runs on PostgreSQL (steward/outbox/table.py), by hand, with the
# ordering guard on (a dead event holds its aggregate: heads come from pending and dead rows).
HEADS_SQL = """
SELECT seq FROM outbox
WHERE seq = ANY(CAST((SELECT array_agg(f.seq) FROM (
        SELECT min(p.seq) AS seq FROM outbox p WHERE p.status IN ('pending', 'dead')
        GROUP BY p.aggregate_type, p.aggregate_id) f) AS BIGINT[]))
  AND status = 'pending' AND available_at <= now()
ORDER BY seq LIMIT %(aggs)s FOR UPDATE SKIP LOCKED
"""
EVENTS_SQL = """
SELECT e.* FROM (SELECT seq, aggregate_type, aggregate_id FROM outbox WHERE seq = ANY(%(heads)s)) h
JOIN LATERAL (
  SELECT o.seq, o.id, o.aggregate_type, o.aggregate_id, o.event_type, o.payload::text,
         o.headers::text, o.created_at, o.status
  FROM outbox o
  WHERE o.aggregate_type = h.aggregate_type AND o.aggregate_id = h.aggregate_id
    AND o.seq >= h.seq AND o.status IN ('pending', 'dead')
  ORDER BY o.seq LIMIT %(limit)s) e ON true
ORDER BY e.seq LIMIT %(limit)s
"""
MARK_SQL = (
    "UPDATE outbox SET status = 'published', published_at = clock_timestamp(), last_error = NULL "
    "WHERE seq = ANY(%s)"
)


# Workers (run in their own processes) ------------------------------------------------------


def raw_relay(conninfo: str, redis_url: str, batch: int, aggs: int, maxlen: int) -> dict:
    """The baseline loop; returns events published, rounds and seconds per step."""
    pg = psycopg.connect(conninfo)
    client = redis.Redis.from_url(redis_url)
    totals = {"published": 0, "batches": 0, "claim": 0.0, "publish": 0.0, "mark": 0.0}
    while True:
        started = time.perf_counter()
        with pg.transaction():
            heads = [row[0] for row in pg.execute(HEADS_SQL, {"aggs": aggs})]
            rows = (
                pg.execute(EVENTS_SQL, {"heads": heads, "limit": batch}).fetchall() if heads else []
            )
            rows = [row for row in rows if row[-1] == "pending"]  # the guard: stop at a dead one
            claimed = time.perf_counter()
            if rows:
                pipe = client.pipeline(transaction=False)
                for seq, id_, a_type, a_id, e_type, payload, headers, created, _ in rows:
                    pipe.execute_command(
                        "XADD", STREAM_PREFIX + a_type, "MAXLEN", "~", maxlen, "*",
                        "event_id", str(id_), "event_type", e_type, "aggregate_id", a_id,
                        "payload", payload, "headers", headers or "{}",
                        "occurred_at", created.isoformat(), "seq", seq,
                    )  # fmt: skip
                pipe.execute()
                published = time.perf_counter()
                pg.execute(MARK_SQL, ([row[0] for row in rows],))
        if rows:
            totals["claim"] += claimed - started
            totals["publish"] += published - claimed
            totals["mark"] += time.perf_counter() - published
            totals["published"] += len(rows)
            totals["batches"] += 1
        if not rows:
            if pg.execute("SELECT 1 FROM outbox WHERE status = 'pending' LIMIT 1").fetchone():
                time.sleep(0.05)  # another relay holds what is left
                continue
            return totals


def core_relay() -> dict:
    from steward.outbox import OutboxRelay, drain
    from steward.settings import get_settings

    relay = OutboxRelay.from_settings(get_settings())
    return _steps(drain(relay.relay_batch).as_dict())


def flow_relay() -> dict:
    from flows.relay_outbox import relay_outbox

    summary = relay_outbox(max_seconds=3600)
    steps = summary["step_seconds"]
    return {"published": summary["published"], "batches": summary["batches"], **steps}


def _steps(totals: dict) -> dict:
    return {
        "published": totals["published"],
        "batches": totals["batches"],
        "claim": totals["claim_seconds"],
        "publish": totals["publish_seconds"],
        "mark": totals["mark_seconds"],
    }


def warm_up(kind: str) -> None:
    if kind == "flow":  # start this process's Prefect API and run the flow once (nothing due)
        flow_relay()
    elif kind == "core":
        from steward.outbox import OutboxRelay
        from steward.settings import get_settings

        OutboxRelay.from_settings(get_settings()).status()


def served_worker() -> None:
    """The flow as deployed: one long-running run (forever=True) until stdin closes.

    Each benchmark run is started by the parent's NOTIFY; at the end the run's totals go out.
    """
    import signal
    import threading

    from flows.relay_outbox import relay_outbox

    warm_up("flow")
    print("ready", flush=True)

    def stop_when_stdin_closes() -> None:
        for _ in iter(sys.stdin.readline, ""):
            pass
        os.kill(os.getpid(), signal.SIGTERM)  # the flow finishes its batch and returns

    threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
    # The warm-up run took what the previous kind left (nothing): from here on, only this run.
    summary = relay_outbox(forever=True)
    steps = summary["step_seconds"]
    print(json.dumps({"published": summary["published"], "batches": summary["batches"], **steps}),
          flush=True)  # fmt: skip


def worker(args: argparse.Namespace) -> None:
    """Warm up, say "ready", then run once per "go" line (until stdin closes)."""
    if args.worker == "served":
        served_worker()
        return
    warm_up(args.worker)
    print("ready", flush=True)
    for _ in iter(sys.stdin.readline, ""):
        started = time.perf_counter()
        if args.worker == "raw":
            result = raw_relay(
                args.conninfo, args.redis_url, args.batch_size, args.max_aggregates, args.maxlen
            )
        else:
            result = core_relay() if args.worker == "core" else flow_relay()
        result["seconds"] = time.perf_counter() - started
        print(json.dumps(result), flush=True)
