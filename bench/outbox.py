"""Outbox relay benchmark: ``python -m bench.outbox --events 100000``.

Relays N pending events from PostgreSQL to Redis Streams and reports events/s end to end for:

- ``raw``: the baseline — a plain psycopg + redis-py loop doing the same claim (lock the
  aggregate heads with SKIP LOCKED, then their events), one pipelined XADD per event with the
  same fields, and the same UPDATE, with no Steward and no Prefect;
- ``core``: Steward's relay (``OutboxRelay.relay_batch`` in a loop), no Prefect;
- ``flow``: the ``relay-outbox`` Prefect flow (one task run per few seconds of batches), as
  deployed.

Each runs with 1 and with 2 relay processes. Every process starts and warms up first (the
flow's processes talk to one Prefect server the benchmark starts, as a deployment would), then
all get "go" at once; the time is from "go" to the last process finishing. The table is
refilled (COPY) before each run; the run counts only when every event is published and on the
stream. Runs are repeated (``--repeat``, interleaved
across kinds so machine noise spreads evenly); the best and the median are printed. Uses its
own PostgreSQL database and its own redis-server on a free port (or ``--redis-url``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psycopg
import redis

REPO = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("STEWARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
STREAM_PREFIX = "steward:events:"

# The same two claim statements Steward runs on PostgreSQL (steward/outbox.py), by hand.
HEADS_SQL = """
SELECT seq FROM outbox
WHERE seq IN (SELECT min(p.seq) FROM outbox p WHERE p.status = 'pending'
              GROUP BY p.aggregate_type, p.aggregate_id)
  AND status = 'pending' AND available_at <= now()
ORDER BY seq LIMIT %(aggs)s FOR UPDATE SKIP LOCKED
"""
EVENTS_SQL = """
SELECT e.* FROM (SELECT seq, aggregate_type, aggregate_id FROM outbox WHERE seq = ANY(%(heads)s)) h
JOIN LATERAL (
  SELECT o.seq, o.id, o.aggregate_type, o.aggregate_id, o.event_type, o.payload::text,
         o.headers::text, o.created_at
  FROM outbox o
  WHERE o.aggregate_type = h.aggregate_type AND o.aggregate_id = h.aggregate_id
    AND o.seq >= h.seq AND o.status = 'pending'
  ORDER BY o.seq LIMIT %(limit)s) e ON true
ORDER BY e.seq LIMIT %(limit)s
"""
MARK_SQL = (
    "UPDATE outbox SET status = 'published', published_at = clock_timestamp() WHERE seq = ANY(%s)"
)


# Workers (run in their own processes) ------------------------------------------------------


def raw_relay(conninfo: str, redis_url: str, batch: int, aggs: int, maxlen: int) -> int:
    """The baseline loop; returns events published."""
    pg = psycopg.connect(conninfo)
    client = redis.Redis.from_url(redis_url)
    published = 0
    while True:
        with pg.transaction():
            heads = [row[0] for row in pg.execute(HEADS_SQL, {"aggs": aggs})]
            rows = (
                pg.execute(EVENTS_SQL, {"heads": heads, "limit": batch}).fetchall() if heads else []
            )
            if rows:
                pipe = client.pipeline(transaction=False)
                for seq, id_, a_type, a_id, e_type, payload, headers, created in rows:
                    pipe.execute_command(
                        "XADD", STREAM_PREFIX + a_type, "MAXLEN", "~", maxlen, "*",
                        "event_id", str(id_), "event_type", e_type, "aggregate_id", a_id,
                        "payload", payload, "headers", headers or "{}",
                        "occurred_at", created.isoformat(), "seq", seq,
                    )  # fmt: skip
                pipe.execute()
                pg.execute(MARK_SQL, ([row[0] for row in rows],))
        published += len(rows)
        if not rows:
            if pg.execute("SELECT 1 FROM outbox WHERE status = 'pending' LIMIT 1").fetchone():
                time.sleep(0.05)  # another relay holds what is left
                continue
            return published


def core_relay() -> int:
    from steward.outbox import OutboxRelay, drain
    from steward.settings import get_settings

    relay = OutboxRelay.from_settings(get_settings())
    return drain(relay.relay_batch).published


def flow_relay() -> int:
    from flows.relay_outbox import relay_outbox

    return int(relay_outbox(max_seconds=3600)["published"])


def warm_up(kind: str) -> None:
    if kind == "flow":  # start this process's Prefect API and run the flow once (nothing due)
        flow_relay()
    elif kind == "core":
        from steward.outbox import OutboxRelay
        from steward.settings import get_settings

        OutboxRelay.from_settings(get_settings()).status()


def worker(args: argparse.Namespace) -> None:
    """Warm up, say "ready", then run once per "go" line (until stdin closes)."""
    warm_up(args.worker)
    print("ready", flush=True)
    for _ in iter(sys.stdin.readline, ""):
        started = time.perf_counter()
        if args.worker == "raw":
            published = raw_relay(
                args.conninfo, args.redis_url, args.batch_size, args.max_aggregates, args.maxlen
            )
        else:
            published = core_relay() if args.worker == "core" else flow_relay()
        seconds = time.perf_counter() - started
        print(json.dumps({"published": published, "seconds": seconds}), flush=True)


# The run ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fill(conninfo: str, events: int, aggregates: int) -> None:
    """Empty the outbox and COPY ``events`` pending events round-robin over the aggregates."""
    with psycopg.connect(conninfo, autocommit=True) as pg:
        pg.execute("TRUNCATE outbox RESTART IDENTITY")
        columns = "id, aggregate_type, aggregate_id, event_type, payload, headers"
        with pg.cursor().copy(f"COPY outbox ({columns}) FROM STDIN") as copy:
            for i in range(events):
                kind = ("order", "product")[i % 2]
                payload = json.dumps({"n": i, "sku": f"SKU-{i % 997:05d}", "qty": i % 7,
                                      "price": "19.90", "note": "x" * 120})  # fmt: skip
                copy.write_row(
                    (uuid.uuid4(), kind, f"{kind}-{(i // 2) % aggregates}", "Changed", payload,
                     '{"source": "bench"}')
                )  # fmt: skip
        pg.execute("VACUUM ANALYZE outbox")


def start_workers(kind: str, relays: int, env: dict[str, str], args: argparse.Namespace) -> list:
    base = [sys.executable, "-m", "bench.outbox", "--worker", kind, "--conninfo", args.conninfo,
            "--redis-url", args.redis_url, "--batch-size", str(args.batch_size),
            "--max-aggregates", str(args.max_aggregates), "--maxlen", str(args.maxlen)]  # fmt: skip
    processes = []
    for number in range(relays):
        process_env = dict(env, PREFECT_HOME=str(Path(args.tmp) / f"prefect-{kind}-{number}"))
        processes.append(
            subprocess.Popen(
                base,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=REPO,
                env=process_env,
            )  # fmt: skip
        )
    for process in processes:
        line = process.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"{kind} worker failed to start: {line!r}")
    return processes


def run_once(processes: list, args: argparse.Namespace) -> tuple[int, float]:
    """Refill the outbox, let the workers go, wait for all: (published, seconds)."""
    fill(args.conninfo, args.events, args.aggregates)
    redis.Redis.from_url(args.redis_url).flushdb()
    started = time.perf_counter()
    for process in processes:
        process.stdin.write("go\n")
        process.stdin.flush()
    results = [json.loads(process.stdout.readline()) for process in processes]
    seconds = time.perf_counter() - started
    check_delivered(args)
    return sum(r["published"] for r in results), seconds


def run_relay_count(relays: int, env: dict[str, str], args: argparse.Namespace) -> list[dict]:
    """Every kind with ``relays`` processes, ``repeat`` times, interleaved (noise spreads)."""
    kinds = args.kinds.split(",")
    workers = {kind: start_workers(kind, relays, env, args) for kind in kinds}
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    try:
        for _ in range(args.repeat):
            for kind in kinds:
                published, seconds = run_once(workers[kind], args)
                rates[kind].append(published / seconds)
                print(f"  {kind} x{relays}: {rates[kind][-1]:,.0f} events/s", file=sys.stderr)
    finally:
        for processes in workers.values():
            for process in processes:
                process.stdin.close()
                process.wait(timeout=120)
    return [
        {"kind": kind, "relays": relays, "best": max(r), "median": statistics.median(r)}
        for kind, r in rates.items()
    ]


def check_delivered(args: argparse.Namespace) -> None:
    with psycopg.connect(args.conninfo) as pg:
        left = pg.execute("SELECT count(*) FROM outbox WHERE status <> 'published'").fetchone()
    client = redis.Redis.from_url(args.redis_url)
    on_streams = sum(client.xlen(STREAM_PREFIX + kind) for kind in ("order", "product"))
    if left and left[0] or on_streams < args.events:
        raise SystemExit(f"incomplete run: {left[0]} unpublished, {on_streams} on the streams")


def start_redis(args: argparse.Namespace) -> subprocess.Popen[bytes] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port = free_port()
    server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL)  # fmt: skip
    args.redis_url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            redis.Redis.from_url(args.redis_url).ping()
            return server
        except redis.ConnectionError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def start_prefect_server(env: dict[str, str], args: argparse.Namespace) -> subprocess.Popen[bytes]:
    """One Prefect server for every flow worker, as in a deployment (not one per process).

    It shares this machine's cores with the relays, PostgreSQL and Redis (in production it
    would run elsewhere): the CPU it spends recording task runs is part of the flow's figures.
    """
    port = free_port()
    home = Path(args.tmp) / "prefect-server"
    prefect = str(Path(sys.executable).with_name("prefect"))
    command = [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"]
    server = subprocess.Popen(command, env=dict(env, PREFECT_HOME=str(home)),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    env["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(env["PREFECT_API_URL"] + "/health", timeout=2):
                return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("the Prefect server did not start within 180 s")


def create_database(args: argparse.Namespace) -> str:
    name = f"steward_bench_outbox_{os.getpid()}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    args.conninfo = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    engine = sa.create_engine(args.conninfo.replace("postgresql://", "postgresql+psycopg://", 1))
    cfg = Config(toml_file=str(REPO / "pyproject.toml"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    engine.dispose()
    return name


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    raw = {row["relays"]: row for row in rows if row["kind"] == "raw"}
    print(f"\noutbox relay: {args.events:,} events, {args.aggregates:,} aggregates per type, "
          f"batch {args.batch_size}, up to {args.max_aggregates} aggregates per batch, "
          f"best and median of {args.repeat} runs")  # fmt: skip
    print(f"{'what':<38}{'relays':>7}{'best ev/s':>11}{'median ev/s':>13}{'x raw (best)':>14}"
          f"{'x raw (median)':>16}")  # fmt: skip
    names = {"raw": "raw baseline (psycopg + redis-py)", "core": "Steward relay core (no Prefect)",
             "flow": "relay-outbox flow (Prefect)"}  # fmt: skip
    for row in rows:
        base = raw.get(row["relays"])
        best = row["best"] / base["best"] if base else float("nan")
        median = row["median"] / base["median"] if base else float("nan")
        print(f"{names[row['kind']]:<38}{row['relays']:>7}{row['best']:>11,.0f}"
              f"{row['median']:>13,.0f}{best:>14.2f}{median:>16.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--aggregates", type=int, default=5_000, help="per aggregate type")
    parser.add_argument("--batch-size", type=int, default=5_000)
    parser.add_argument("--max-aggregates", type=int, default=1_000)
    parser.add_argument("--maxlen", type=int, default=1_000_000)
    parser.add_argument("--relays", default="1,2", help="relay counts to run, e.g. 1,2")
    parser.add_argument("--kinds", default="raw,core,flow")
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario")
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--worker", choices=["raw", "core", "flow"], help=argparse.SUPPRESS)
    parser.add_argument("--conninfo", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    server = start_redis(args) if not args.redis_url else None
    if not args.redis_url:
        raise SystemExit("no redis-server on PATH: pass --redis-url redis://host:port/db")
    name = create_database(args)
    args.tmp = tempfile.mkdtemp(prefix="steward-bench-outbox-")
    env = dict(
        os.environ,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
        STEWARD_HOME=str(Path(args.tmp) / "home"),
        STEWARD_DATABASE__URL=args.conninfo.replace("postgresql://", "postgresql+psycopg://", 1),
        STEWARD_CACHE__URL=args.redis_url,
        STEWARD_OUTBOX__SINKS='["redis_streams"]',
        STEWARD_OUTBOX__BATCH_SIZE=str(args.batch_size),
        STEWARD_OUTBOX__MAX_AGGREGATES_PER_BATCH=str(args.max_aggregates),
        STEWARD_OUTBOX__STREAM_MAXLEN=str(args.maxlen),
    )
    rows = []
    prefect = start_prefect_server(env, args) if "flow" in args.kinds.split(",") else None
    try:
        for relays in (int(n) for n in args.relays.split(",")):
            rows += run_relay_count(relays, env, args)
    finally:
        for process in (server, prefect):
            if process is not None:
                process.terminate()
                process.wait(timeout=60)
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(args.tmp, ignore_errors=True)
    print_table(rows, args)


if __name__ == "__main__":
    main()
