"""Cache benchmark: ``python -m bench.cache --keys 1000000``.

Measures, against a private redis-server it starts on a free port (or ``--redis-url``):

- ``warm``: keys/s of Steward's warmer (``CacheWarmer``, no Prefect) writing N product-like JSON
  keys (~130 bytes) with ``SET EX`` + jittered TTL, rows streamed from a PostgreSQL server-side
  cursor (``generate_series`` with a bound parameter), pipelines of ``cache.batch_size``;
- the raw baseline in the same run: ``redis-benchmark -t set -P 16 -n N -r N -d 128``, run
  before and after the rest; the faster of the two counts;
- peak RSS of a warming process at N and 5 N keys (each in a fresh process): flat = bounded;
- invalidation: events/s of ``Invalidator`` (a product rule: UNLINK ``product:{id}``) over M
  events on the stream, against the rate the relay's Redis sink XADDs the same events.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import redis

REPO = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("STEWARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
WARM_SQL = (
    "SELECT g AS id, 'SKU-' || g AS sku, 'Product number ' || g AS name, 'Acme' AS brand, "
    "g % 500 AS category_id, round((g % 1000) * 1.25 + 0.99, 2) AS price, 'EUR' AS currency, "
    "g % 37 AS available FROM generate_series(1, :n) AS g"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(folder: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", folder],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            return process, f"redis://127.0.0.1:{port}/0"
        except redis.ConnectionError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def create_database() -> tuple[str, str]:
    name = f"steward_bench_cache_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # generated name, never from input
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return name, f"{base}/{name}"


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_settings(db_url: str, redis_url: str, keys: int) -> Any:
    from steward.settings import load_settings

    warmer = {"name": "bench-products", "query": WARM_SQL, "params": {"n": keys},
              "key": "product:{id}", "ttl_seconds": 86_400, "ttl_jitter_pct": 10}  # fmt: skip
    rule = {"events": ["product.*"], "keys": ["product:{aggregate_id}"]}
    return load_settings(
        database={"url": db_url},
        cache={"url": redis_url, "warmers": [warmer], "invalidations": [rule]},
    )


def warm_worker(db_url: str, redis_url: str, keys: int) -> dict[str, Any]:
    """Run in a fresh process: warm N keys, report time and peak RSS."""
    from steward.cache import CacheWarmer

    settings = bench_settings(db_url, redis_url, keys)
    warmer = CacheWarmer(settings)
    started = time.perf_counter()
    (unit,) = warmer.warm()
    seconds = time.perf_counter() - started
    warmer.close()
    written = unit.warmers[0].keys
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"keys": written, "seconds": seconds, "rss_mb": rss_mb}


def run_worker(db_url: str, redis_url: str, keys: int) -> dict[str, Any]:
    redis.Redis.from_url(redis_url, socket_timeout=300).flushdb(asynchronous=True)
    args = [sys.executable, "-m", "bench.cache", "--worker", db_url, redis_url, str(keys)]
    done = subprocess.run(args, capture_output=True, text=True, cwd=REPO, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def redis_benchmark(redis_url: str, keys: int) -> float:
    port = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs["port"]
    redis.Redis.from_url(redis_url, socket_timeout=300).flushdb(asynchronous=True)
    command = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "set", "-P", "16",
               "-n", str(keys), "-r", str(keys), "-d", "128", "--csv", "-q"]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    row = next(line for line in output.splitlines() if line.startswith('"SET"'))
    return float(row.split(",")[1].strip('"'))


def bench_invalidation(db_url: str, redis_url: str, events: int) -> tuple[float, float]:
    """(events/s XADDed by the relay's sink, events/s applied by the Invalidator)."""
    from steward.cache import Invalidator
    from steward.outbox import OutboxEvent, RedisStreamsSink

    settings = bench_settings(db_url, redis_url, 0)
    client = redis.Redis.from_url(redis_url)
    client.flushdb(asynchronous=True)
    invalidator = Invalidator(settings)
    invalidator.run()  # joins the stream: the events below are new to the group
    now = datetime.now(UTC)
    sink = RedisStreamsSink(client, key_prefix="steward:events:", maxlen=0)
    batch = []
    publish_seconds = 0.0
    for seq in range(1, events + 1):
        batch.append(OutboxEvent(seq, str(uuid.uuid4()), "product", str(seq % 50_000),
                                 "PriceChanged", '{"price": "1.00"}', None, 0, now))  # fmt: skip
        if len(batch) == 5000 or seq == events:
            started = time.perf_counter()
            sink.publish(batch)
            publish_seconds += time.perf_counter() - started
            batch = []
    started = time.perf_counter()
    report = invalidator.run()
    seconds = time.perf_counter() - started
    invalidator.close()
    assert report.events == events, report
    return events / publish_seconds, events / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000, help="Keys warmed (default 100k).")
    parser.add_argument("--rss-factor", type=int, default=5, help="RSS compared at N and k*N.")
    parser.add_argument("--events", type=int, default=50_000, help="Invalidation events.")
    parser.add_argument("--redis-url", default=None, help="Use this Redis (it is FLUSHED).")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(warm_worker(args.worker[0], args.worker[1], int(args.worker[2]))))
        return 0
    if shutil.which("redis-benchmark") is None:
        raise SystemExit("redis-benchmark is not installed (Debian package redis-tools)")
    folder = tempfile.mkdtemp(prefix="steward-bench-cache-")
    server, redis_url = (None, args.redis_url) if args.redis_url else start_redis(folder)
    name, db_url = create_database()
    try:
        report(args, db_url, redis_url)
    finally:
        if server is not None:  # first: a failure below must not leave the server running
            server.terminate()
            server.wait()
        shutil.rmtree(folder, ignore_errors=True)
        drop_database(name)
    return 0


def report(args: argparse.Namespace, db_url: str, redis_url: str) -> None:
    n = args.keys
    baseline = redis_benchmark(redis_url, n)
    print(f"redis-benchmark: {baseline:,.0f} SET/s", file=sys.stderr, flush=True)
    warm = run_worker(db_url, redis_url, n)
    print(f"warm {n:,}: {warm}", file=sys.stderr, flush=True)
    big = run_worker(db_url, redis_url, n * args.rss_factor)
    print(f"warm {n * args.rss_factor:,}: {big}", file=sys.stderr, flush=True)
    relay_rate, invalidate_rate = bench_invalidation(db_url, redis_url, args.events)
    # The machine is shared: measure the baseline again and keep the faster (our ratio drops).
    baseline = max(baseline, redis_benchmark(redis_url, n))
    print(f"redis-benchmark again: best {baseline:,.0f} SET/s", file=sys.stderr, flush=True)
    warm_rate = warm["keys"] / warm["seconds"]
    big_rate = big["keys"] / big["seconds"]
    rows = [
        ("redis-benchmark -t set -P 16 (baseline)", f"{n:,} keys", f"{baseline:,.0f} keys/s",
         "1.00×"),
        ("Steward warm (PostgreSQL -> SET EX)", f"{n:,} keys", f"{warm_rate:,.0f} keys/s",
         f"{warm_rate / baseline:.2f}×"),
        ("Steward warm", f"{big['keys']:,} keys", f"{big_rate:,.0f} keys/s",
         f"{big_rate / baseline:.2f}×"),
        ("peak RSS of the warming process", f"{n:,} keys", f"{warm['rss_mb']:,.0f} MB", ""),
        ("peak RSS of the warming process", f"{big['keys']:,} keys", f"{big['rss_mb']:,.0f} MB",
         f"{big['rss_mb'] / warm['rss_mb']:.2f}× of {n:,}"),
        ("relay sink XADD (baseline)", f"{args.events:,} events", f"{relay_rate:,.0f} ev/s",
         "1.00×"),
        ("Steward invalidate (UNLINK per event)", f"{args.events:,} events",
         f"{invalidate_rate:,.0f} ev/s", f"{invalidate_rate / relay_rate:.2f}×"),
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    header = ("what", "size", "measured", "ratio")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    sys.exit(main())
