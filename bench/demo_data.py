"""Demo-data benchmark: ``python -m bench.demo_data --rows 200000 1000000 2000000 [--sqlite]``.

Measures, in one run and on the same machine, for each size:

- ``generate only``: producing the rows in Python (``DemoRows.chunks``), no database;
- ``demo data (PostgreSQL)``: ``generate_demo_data`` into a fresh database at revision head
  (COPY, foreign keys added back after the load, sequences reset, one transaction);
- ``baseline COPY``: the raw floor — the same number of simple generated rows (id, text,
  timestamptz, numeric) COPYed with psycopg into one table with only a primary key;
- ``demo data (SQLite)`` with ``--sqlite``: the embedded default (executemany).

and prints rows/s for each and the ratio of the demo load to the baseline COPY, with the load
average before and after. Several sizes show whether the load stays linear (about the same
rows/s at every size: a per-row cost that grew with the data once made 2M rows take 12 min).
Uses its own PostgreSQL database per size (dropped afterwards); the admin URL comes from
``STEWARD_TEST_PG``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from steward.demo import DemoRows, generate_demo_data
from steward.install import install
from steward.migrations import MigrationRunner
from steward.settings import load_settings

REPO = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("STEWARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _sa_url(admin_url: str, name: str) -> str:
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}"


def _migrate(url: str) -> None:
    """The example schema through Steward's runner (revision 0004 builds an index CONCURRENTLY,
    outside any transaction)."""
    settings = load_settings(database={"url": url}, migrations={"alembic": "example"})
    install(settings)  # Steward's own tables, what an owner runs once
    runner = MigrationRunner(settings)
    try:
        runner.upgrade()
    finally:
        runner.dispose()


def _timed(run: Callable[[], int]) -> tuple[int, float]:
    started = time.perf_counter()
    rows = run()
    return rows, time.perf_counter() - started


def _generate_only(rows: int) -> int:
    demo = DemoRows(rows, seed=7, now=dt.datetime.now(dt.UTC))
    return sum(len(chunk) for _, chunk in demo.chunks())


def _demo(url: str, rows: int) -> int:
    settings = load_settings(database={"url": url})
    return sum(generate_demo_data(settings, rows=rows, seed=7).values())


def _simple_rows(count: int) -> Iterator[tuple[Any, ...]]:
    anchor = dt.datetime.now(dt.UTC)
    for i in range(1, count + 1):
        yield (i, f"row {i}", anchor - dt.timedelta(seconds=i), Decimal(i % 10_000).scaleb(-2))


def _baseline_copy(conninfo: str, count: int) -> int:
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE bench_baseline (id bigint PRIMARY KEY, name text, "
            "created_at timestamptz, amount numeric(12, 2))"
        )
        with cur.copy("COPY bench_baseline (id, name, created_at, amount) FROM STDIN") as copy:
            for row in _simple_rows(count):
                copy.write_row(row)
    return count


def _sqlite(rows: int) -> int:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        _migrate(url)
        return _demo(url, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--sqlite", action="store_true", help="also time the SQLite default")
    args = parser.parse_args()
    for rows in args.rows:
        print(f"--rows {rows:,}  start: {_uptime()}")
        _print(_measure(rows, sqlite=args.sqlite))
        print(f"end: {_uptime()}\n")


def _measure(rows: int, *, sqlite: bool) -> list[tuple[str, int, float]]:
    name = f"steward_bench_demo_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # generated name, never from input
    url = _sa_url(ADMIN_URL, name)
    results: list[tuple[str, int, float]] = []
    try:
        _migrate(url)
        results.append(("generate only (no database)", *_timed(lambda: _generate_only(rows))))
        results.append(("demo data (PostgreSQL)", *_timed(lambda: _demo(url, rows))))
        conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
        results.append(("baseline COPY (1 table)", *_timed(lambda: _baseline_copy(conninfo, rows))))
        if sqlite:
            results.append(("demo data (SQLite)", *_timed(lambda: _sqlite(rows))))
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return results


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _print(results: list[tuple[str, int, float]]) -> None:
    print(f"{'measurement':<30} {'rows':>10} {'seconds':>9} {'rows/s':>10}")
    for label, rows, seconds in results:
        print(f"{label:<30} {rows:>10,} {seconds:>9.2f} {rows / seconds:>10,.0f}")
    timing = {label: seconds for label, _, seconds in results}
    ratio = timing["demo data (PostgreSQL)"] / timing["baseline COPY (1 table)"]
    print(f"demo data / baseline COPY time: {ratio:.2f}x (12 tables, FKs, indexes vs 1 table)")


if __name__ == "__main__":
    main()
