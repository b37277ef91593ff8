"""Outbox relay benchmark: ``python -m bench.outbox --events 100000``.

Relays N pending events from PostgreSQL to Redis Streams and reports events/s end to end for:

- ``raw``: the baseline — a plain psycopg + redis-py loop doing the same claim (lock the
  aggregate heads with SKIP LOCKED, then their events), one pipelined XADD per event with the
  same fields, and the same UPDATE, with no Steward and no Prefect;
- ``core``: Steward's relay (``OutboxRelay.relay_batch`` in a loop), no Prefect;
- ``flow``: the ``relay-outbox`` Prefect flow, one flow run per benchmark run (as an ad hoc
  ``steward outbox relay`` runs it: Prefect's per-run cost is paid every time);
- ``served``: the flow as deployed: one long-running run (``forever=True``) per relay process,
  started and listening before the clock starts, woken by NOTIFY; the time is until nothing is
  pending (its start and teardown, paid once an hour when deployed, are not in it).

Each runs with 1 and with 2 relay processes. Every process starts and warms up first (the
flow's processes talk to one Prefect server the benchmark starts, as a deployment would), then
all get "go" at once; the time is from "go" to the last process finishing. The table is
refilled (COPY) before each run; the run counts only when every event is published and on the
stream; events delivered twice are counted (``duplicates``: at least once allows them, and
consumers drop them by event id). Each worker also times the three steps of every round
(claim query with its lock waits, XADD pipeline, mark update with the commit), printed per
round with what is left (Prefect's per-run cost). Runs are repeated (``--repeat``, interleaved
across kinds so machine noise spreads evenly); the best and the median are printed. Uses its
own PostgreSQL database and its own redis-server on a free port (or ``--redis-url``).

Then the broker sinks (``--brokers rabbitmq,nats``, the default; ``none`` = off), each beside
its raw client in the same run (:mod:`bench.outbox_brokers`); ``--relays ""`` runs only them.
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

from bench.outbox_workers import STREAM_PREFIX, worker

REPO = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("STEWARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

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


def load_run(args: argparse.Namespace) -> None:
    """Clear the streams, then refill the outbox. In that order: a long-running relay publishes
    as soon as the events commit, and clearing Redis after the load would drop what it sent."""
    redis.Redis.from_url(args.redis_url).flushdb()
    fill(args.conninfo, args.events, args.aggregates)


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


def run_served(relays: int, env: dict[str, str], args: argparse.Namespace) -> dict[str, float]:
    """Start long-running relays, refill, NOTIFY, time until nothing is pending, stop them.

    The relays run only during their own runs (so they never relay another kind's events);
    they are started and listening before the clock starts, as a deployed relay is.
    """
    processes = start_workers("served", relays, env, args)
    try:
        wait_listening(args, relays)
        run = time_served_run(args)
    finally:
        for process in processes:
            process.stdin.close()
    for process in processes:  # each run's totals come out when it stops
        totals = json.loads(process.stdout.readline() or "{}")
        for name in STEPS + ("batches",):
            run[name] += totals.get(name, 0.0)
        process.wait(timeout=120)
    return run


def wait_listening(args: argparse.Namespace, relays: int) -> None:
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND query LIKE 'LISTEN%%'"
    )
    deadline = time.monotonic() + 120
    with psycopg.connect(args.conninfo, autocommit=True) as pg:
        while pg.execute(query).fetchone() != (relays,):
            if time.monotonic() > deadline:
                raise SystemExit("the long-running relays did not start listening")
            time.sleep(0.2)


def time_served_run(args: argparse.Namespace) -> dict[str, float]:
    load_run(args)
    with psycopg.connect(args.conninfo, autocommit=True) as pg:
        started = time.perf_counter()
        pg.execute("SELECT pg_notify('steward_outbox', '')")
        left = "SELECT EXISTS (SELECT 1 FROM outbox WHERE status <> 'published')"
        while pg.execute(left).fetchone() == (True,):
            time.sleep(0.01)
        seconds = time.perf_counter() - started
    run = {name: 0.0 for name in STEPS + ("batches",)}
    return dict(run, seconds=seconds, rate=args.events / seconds, duplicates=check_delivered(args))


def run_once(processes: list, args: argparse.Namespace) -> dict[str, float]:
    """Refill the outbox, let the workers go, wait for all: rate, duplicates and step times."""
    load_run(args)
    started = time.perf_counter()
    for process in processes:
        process.stdin.write("go\n")
        process.stdin.flush()
    results = [json.loads(process.stdout.readline()) for process in processes]
    seconds = time.perf_counter() - started
    run = {name: sum(r[name] for r in results) for name in STEPS + ("batches", "seconds")}
    run["rate"] = sum(r["published"] for r in results) / seconds
    run["duplicates"] = check_delivered(args)
    return run


STEPS = ("claim", "publish", "mark")


def run_relay_count(relays: int, env: dict[str, str], args: argparse.Namespace) -> list[dict]:
    """Every kind with ``relays`` processes, ``repeat`` times, interleaved (noise spreads)."""
    kinds = args.kinds.split(",")
    workers = {kind: start_workers(kind, relays, env, args) for kind in kinds if kind != "served"}
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    try:
        for _ in range(args.repeat):
            for kind in kinds:
                if kind == "served":
                    runs[kind].append(run_served(relays, env, args))
                else:
                    runs[kind].append(run_once(workers[kind], args))
                print(f"  {kind} x{relays}: {runs[kind][-1]['rate']:,.0f} events/s",
                      file=sys.stderr)  # fmt: skip
    finally:
        for processes in workers.values():
            for process in processes:
                process.stdin.close()
                process.wait(timeout=120)
    return [summarise(kind, relays, kind_runs) for kind, kind_runs in runs.items()]


def run_killed(relays: int, env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    """Core relays, one killed with SIGKILL every ``--kill-every`` s and replaced, to the end.

    A relay killed between publishing and marking leaves its batch pending: it is published
    again, and the second copies are the duplicates at-least-once delivery allows.
    """
    load_run(args)
    processes = start_workers("core", relays, env, args)
    started, kills = time.perf_counter(), 0
    for process in processes:
        process.stdin.write("go\n")
        process.stdin.flush()
    while pending(args):
        time.sleep(args.kill_every)
        if not pending(args):
            break
        victim = kills % relays
        processes[victim].kill()
        processes[victim].wait()
        kills += 1
        processes[victim] = start_workers("core", 1, env, args)[0]
        processes[victim].stdin.write("go\n")
        processes[victim].stdin.flush()
    seconds = time.perf_counter() - started
    for process in processes:
        process.stdin.close()
        process.wait(timeout=120)
    return {"relays": relays, "kills": kills, "rate": args.events / seconds,
            "duplicates": check_delivered(args)}  # fmt: skip


def pending(args: argparse.Namespace) -> bool:
    with psycopg.connect(args.conninfo, autocommit=True) as pg:
        row = pg.execute("SELECT EXISTS (SELECT 1 FROM outbox WHERE status <> 'published')")
        return bool(row.fetchone()[0])


def summarise(kind: str, relays: int, runs: list[dict[str, float]]) -> dict[str, Any]:
    """Best and median rate, duplicates, and the mean time per round (batch) of each step."""
    rates = [run["rate"] for run in runs]
    batches = sum(run["batches"] for run in runs) or 1
    per_round = {step: 1000 * sum(run[step] for run in runs) / batches for step in STEPS}
    busy = sum(run[step] for run in runs for step in STEPS)
    # Worker time outside the three steps: Prefect's task and flow runs, waits for other relays.
    per_round["other"] = 1000 * (sum(run["seconds"] for run in runs) * relays - busy) / batches
    return {
        "kind": kind, "relays": relays, "best": max(rates), "median": statistics.median(rates),
        "duplicates": sum(int(run["duplicates"]) for run in runs), "per_round": per_round,
        "rounds": batches / len(runs),
    }  # fmt: skip


def check_delivered(args: argparse.Namespace) -> int:
    """Fail unless every event is published and on a stream; return the duplicates seen."""
    with psycopg.connect(args.conninfo) as pg:
        left = pg.execute("SELECT count(*) FROM outbox WHERE status <> 'published'").fetchone()
    client = redis.Redis.from_url(args.redis_url)
    ids: list[bytes] = []
    for kind in ("order", "product"):
        ids += [fields[b"event_id"] for _, fields in client.xrange(STREAM_PREFIX + kind)]
    unique = len(set(ids))
    if left and left[0] or unique < args.events:
        raise SystemExit(f"incomplete run: {left[0]} unpublished, {unique} events on the streams")
    return len(ids) - unique  # delivered twice (at least once allows it; consumers dedupe)


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
    create_outbox(args.conninfo)
    return name


def create_outbox(conninfo: str) -> None:
    """The outbox table (migration 0001) in the database at ``conninfo``."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    engine = sa.create_engine(conninfo.replace("postgresql://", "postgresql+psycopg://", 1))
    cfg = Config(toml_file=str(REPO / "pyproject.toml"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    engine.dispose()


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    raw = {row["relays"]: row for row in rows if row["kind"] == "raw"}
    print(f"\noutbox relay: {args.events:,} events, {args.aggregates:,} aggregates per type, "
          f"batch {args.batch_size}, up to {args.max_aggregates} aggregates per batch, "
          f"ordering guard on, best and median of {args.repeat} runs")  # fmt: skip
    print(f"{'what':<38}{'relays':>7}{'best ev/s':>11}{'median ev/s':>13}{'x raw (best)':>14}"
          f"{'x raw (median)':>16}{'duplicates':>12}")  # fmt: skip
    names = {
        "raw": "raw baseline (psycopg + redis-py)", "core": "Steward relay core (no Prefect)",
        "flow": "relay-outbox flow, one run each", "served": "relay-outbox flow, as deployed",
    }  # fmt: skip
    for row in rows:
        base = raw.get(row["relays"])
        best = row["best"] / base["best"] if base else float("nan")
        median = row["median"] / base["median"] if base else float("nan")
        print(f"{names[row['kind']]:<38}{row['relays']:>7}{row['best']:>11,.0f}"
              f"{row['median']:>13,.0f}{best:>14.2f}{median:>16.2f}"
              f"{row['duplicates']:>12}")  # fmt: skip
    print(
        "\nmean time per round (one claim -> XADD -> mark batch), ms; other = worker time "
        "outside the three steps (Prefect task/flow runs, waiting for the other relay)"
    )
    print(f"{'what':<38}{'relays':>7}{'rounds':>8}{'claim+locks':>13}{'XADD pipe':>11}"
          f"{'mark+commit':>13}{'other':>9}")  # fmt: skip
    for row in rows:
        step = row["per_round"]
        other = f"{step['other']:.1f}"
        print(f"{names[row['kind']]:<38}{row['relays']:>7}{row['rounds']:>8.0f}"
              f"{step['claim']:>13.1f}{step['publish']:>11.1f}{step['mark']:>13.1f}"
              f"{other:>9}")  # fmt: skip


def run_broker_section(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The broker sinks beside their raw clients, on this run's database (see outbox_brokers)."""
    brokers = [b for b in args.brokers.split(",") if b and b != "none"]
    if not brokers:
        return []
    from bench.outbox_brokers import run_brokers

    args.database_url = args.conninfo.replace("postgresql://", "postgresql+psycopg://", 1)
    args.refill = lambda: fill(args.conninfo, args.events, args.aggregates)
    return run_brokers(brokers, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--aggregates", type=int, default=5_000, help="per aggregate type")
    parser.add_argument("--batch-size", type=int, default=5_000)
    parser.add_argument("--max-aggregates", type=int, default=1_000)
    parser.add_argument("--maxlen", type=int, default=1_000_000)
    parser.add_argument(
        "--relays", default="1,2", help='relay counts to run, e.g. 1,2 ("" = broker sinks only)'
    )
    parser.add_argument("--kinds", default="raw,core,flow,served")
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario")
    parser.add_argument("--redis-url", default="")
    parser.add_argument(
        "--kill-every", type=float, default=0.0,
        help="also run the core relays with one killed (kill -9) every N s; count duplicates",
    )  # fmt: skip
    parser.add_argument(
        "--worker", choices=["raw", "core", "flow", "served"], help=argparse.SUPPRESS
    )
    parser.add_argument("--conninfo", default="", help=argparse.SUPPRESS)
    parser.add_argument(
        "--brokers", default="rabbitmq,nats",
        help="broker sinks measured beside their raw clients (bench.outbox_brokers); none = off",
    )  # fmt: skip
    parser.add_argument("--in-flight", type=int, default=256, help="broker sinks: in flight")
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
    rows, killed, broker_rows = [], None, []
    relay_counts = [int(n) for n in args.relays.split(",") if n]  # "" = broker sinks only
    with_prefect = relay_counts and {"flow", "served"} & set(args.kinds.split(","))
    prefect = start_prefect_server(env, args) if with_prefect else None
    try:
        for relays in relay_counts:
            rows += run_relay_count(relays, env, args)
        if args.kill_every:
            killed = run_killed(max(relay_counts), env, args)
        broker_rows = run_broker_section(args)
    finally:
        for process in (server, prefect):
            if process is not None:
                process.terminate()
                process.wait(timeout=60)
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(args.tmp, ignore_errors=True)
    if rows:
        print_table(rows, args)
    if broker_rows:
        from bench.outbox_brokers import print_brokers

        print_brokers(broker_rows, args)
    if killed is not None:
        print(f"\nSteward relay core x{killed['relays']}, one killed (kill -9) every "
              f"{args.kill_every} s and replaced: {killed['kills']} kills, "
              f"{killed['rate']:,.0f} events/s, {killed['duplicates']} of {args.events:,} "
              "events delivered twice, none lost")  # fmt: skip


if __name__ == "__main__":
    main()
