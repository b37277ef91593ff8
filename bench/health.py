"""Health check benchmark: ``python -m bench.health --repeat 20``.

How long ``steward health`` takes when every store is up, against the least a health check can
do, measured in the same run on the same stores (local PostgreSQL, local Redis, a folder store
holding ``--objects`` objects):

- ``raw``: the baseline — psycopg connect + ``SELECT 1``, redis-py ``PING``, one folder listing,
  one after the other, no stats, no Steward;
- ``check_health``: Steward's checks in this process (parallel, with every stat of the report:
  database size, connections, largest tables, oldest transaction; Redis INFO; objects per class);
- ``steward health --json``: the command as a user runs it, Python start-up and imports included
  (its floor, ``python -c 'import steward.cli.main'``, is printed too).

Prints median and best of ``--repeat`` runs, and each median's ratio to the raw median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import redis

PG = os.environ.get("STEWARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("STEWARD_BENCH_REDIS", "redis://127.0.0.1:6379/0")
STEWARD = str(Path(sys.executable).parent / "steward")


def timed(action: Callable[[], object], repeat: int) -> list[float]:
    action()  # warm-up: imports, first connection
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def raw_checks(folder: Path) -> None:
    with psycopg.connect(PG, connect_timeout=2) as conn:
        conn.execute("SELECT 1").fetchone()
    client = redis.Redis.from_url(REDIS, socket_timeout=2)
    client.ping()
    client.close()
    sum(1 for _ in os.scandir(folder))


def fill_store(home: Path, count: int) -> None:
    from steward.settings import load_settings
    from steward.storage import open_object_store

    store = open_object_store(load_settings())
    for i in range(count):
        store.put(f"archive/bench/{i:06d}.bin", b"x" * 256)
    (home / "objects").mkdir(parents=True, exist_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--objects", type=int, default=1000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="steward-bench-health-"))
    os.environ.update(
        STEWARD_HOME=str(home),
        STEWARD_DATABASE__URL=PG.replace("postgresql://", "postgresql+psycopg://", 1),
        STEWARD_CACHE__URL=REDIS,
    )
    fill_store(home, args.objects)

    from steward.health import check_health
    from steward.settings import load_settings

    settings = load_settings()
    report = check_health(settings)
    assert report.ok, report.headline()
    cli = [STEWARD, "health", "--json"]
    floor = [sys.executable, "-c", "import steward.cli.main, steward.cli.sections"]

    def run(argv: list[str]) -> Callable[[], object]:
        return lambda: subprocess.run(argv, check=True, capture_output=True)

    rows = [
        ("raw (connect + SELECT 1, PING, listing)", timed(lambda: raw_checks(home), args.repeat)),
        (
            "check_health (in process, with stats)",
            timed(lambda: check_health(settings), args.repeat),
        ),
        ("steward health --json (process)", timed(run(cli), max(3, args.repeat // 4))),
        ("  floor: python + CLI imports", timed(run(floor), max(3, args.repeat // 4))),
    ]
    base = statistics.median(rows[0][1])
    print(f"stores: PostgreSQL, Redis, folder store with {args.objects} objects; "
          f"repeat {args.repeat}")  # fmt: skip
    print(f"{'what':44} {'median ms':>10} {'best ms':>9} {'ratio':>7}")
    for name, samples in rows:
        median = statistics.median(samples)
        print(f"{name:44} {median:10.1f} {min(samples):9.1f} {median / base:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
