"""Nightly benchmark: ``python -m bench.nightly --rows 2000000``.

A fresh PostgreSQL database with the example schema, autovacuum off on every table (the
``autovacuum_enabled`` storage parameter, as on a server where it is off), filled like
``steward demo-data --rows N`` (which analyses what it loaded), then the whole ``nightly`` flow
(backup verified by a restore -> archive -> tiers -> outbox cleanup -> validation -> cache warm)
against a local-folder object store and a private redis-server. Each step's time is printed
beside its raw baseline, measured in the same run on a copy of the same data (``CREATE
DATABASE … TEMPLATE``):

- backup-databases: ``pg_dump -Fc`` into a file, then ``pg_restore --jobs`` into a new database;
- archive-to-s3: per policy, ``COPY (qualifying rows) TO STDOUT | gzip`` into a file (children
  too) and ``DELETE`` of those rows, children first;
- validate-data: the same checks as the suites, one hand-written ``SELECT COUNT(*)`` per
  expectation (``bench.validate``'s plain SQL, same scope: row conditions, NULLs, ignore_row_if),
  plus re-reading and SHA-256 of as many archive and backup objects as the step's scrub
  (``validation.scrub_objects`` / ``scrub_backup_objects``) once the nightly has written them;
- warm-cache: each warmer's query read in plain SQL, plus ``redis-benchmark -t set -P 16``
  writing as many keys.

Goal: no step slower than 2x its baseline, the whole nightly within 1.5x of the sum of the
baselines. ``uptime`` is printed before and after: figures from a loaded machine are not the
product's. Each step's "waiting" is the part of its time its run was not Running (created,
scheduled, reported by Prefect): the orchestration's share.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

ADMIN_URL = os.environ.get("STEWARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_BIN = Path("/usr/lib/postgresql/15/bin")
BASE = ADMIN_URL.rsplit("/", 1)[0]


def _admin(statement: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(statement)  # database names are generated here, never taken from input


def _url(name: str) -> str:
    return f"{BASE.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def prepare(name: str, rows: int, analyze: bool) -> tuple[float, float]:
    """Schema at head, autovacuum off per table, demo data (analysed unless ``analyze`` is
    false: then the nightly's own checks before reading must catch it); (load s, ANALYZE s)."""
    from steward.cli.data import analyze_demo_tables
    from steward.demo import generate_demo_data
    from steward.install import install
    from steward.migrations import MigrationRunner
    from steward.settings import get_settings

    settings = get_settings()
    install(settings)  # Steward's own tables, what an owner runs once
    runner = MigrationRunner(settings)
    runner.upgrade()
    runner.dispose()
    engine = sa.create_engine(_url(name))
    with engine.begin() as conn:
        quote = conn.dialect.identifier_preparer.quote
        for table in sa.inspect(conn).get_table_names():
            conn.exec_driver_sql(f"ALTER TABLE {quote(table)} SET (autovacuum_enabled = false)")
    engine.dispose()
    started = time.perf_counter()
    counts = generate_demo_data(settings, rows=rows, seed=7)
    loaded = time.perf_counter() - started
    if not analyze:
        return loaded, 0.0
    report = analyze_demo_tables(settings, counts)
    return loaded, sum(o.seconds for o in report.outcomes)


def baseline_backup(copy: str, folder: Path) -> float:
    from steward.settings import get_settings

    jobs = get_settings().backup.restore_jobs
    target = f"steward_bench_nightly_restore_{uuid.uuid4().hex[:6]}"
    dump = folder / "baseline.pgdump"
    env = {**os.environ, "PGHOST": "127.0.0.1", "PGUSER": "postgres"}
    started = time.perf_counter()
    subprocess.run([str(PG_BIN / "pg_dump"), "-Fc", "-f", str(dump), copy], env=env, check=True)
    _admin(f'CREATE DATABASE "{target}"')
    subprocess.run(
        [str(PG_BIN / "pg_restore"), f"--jobs={jobs}", "--no-owner", "-d", target, str(dump)],
        env=env,
        check=True,
    )
    elapsed = time.perf_counter() - started
    _admin(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
    return elapsed


def baseline_archive(copy: str, folder: Path) -> float:
    """COPY … TO STDOUT | gzip + DELETE for every SQL policy, with the policies' own rules."""
    from steward.archive import open_context, open_sources
    from steward.settings import load_settings

    settings = load_settings(database={"url": _url(copy)})
    ctx = open_context(settings)
    sources = [s for s in open_sources(ctx) if s.backend == "sql"]
    started = time.perf_counter()
    with ctx.sql.engine.begin() as conn:
        for source in sources:
            policy: Any = source.policy  # type: ignore[attr-defined]
            where = policy.qualifies(source.cutoff)
            roots = sa.select(policy.key).where(where)
            parts = [(policy.table, sa.select(policy.table).where(where))]
            parts += [
                (c.table, sa.select(c.table).where(c.parent.in_(roots))) for c in policy.children
            ]
            for table, select in parts:
                _copy_gzip(conn, select, folder / f"{table.name}.csv.gz")
            for child in policy.children:
                conn.execute(child.table.delete().where(child.parent.in_(roots)))
            conn.execute(policy.table.delete().where(where))
    elapsed = time.perf_counter() - started
    ctx.sql.dispose()
    return elapsed


def _copy_gzip(conn: Any, select: Any, path: Path) -> None:
    compiled = select.compile(dialect=conn.dialect)
    statement = f"COPY ({compiled}) TO STDOUT"
    raw = conn.connection.dbapi_connection
    with gzip.open(path, "ab", compresslevel=6) as out, raw.cursor() as cur:
        with cur.copy(statement, compiled.params) as copy:
            for chunk in copy:
                out.write(chunk)


def baseline_validation(copy: str) -> tuple[float, int]:
    """One plain COUNT per expectation (bench.validate's translation); expectations it cannot
    translate, or whose translation the database refuses, are left out and counted."""
    from dataclasses import replace

    from bench.validate import plain_checks
    from steward.settings import get_settings
    from steward.validation import load_suites, suite_parameters

    settings = get_settings()
    params = suite_parameters(settings)
    engine = sa.create_engine(_url(copy))
    queries, left_out = [], 0
    for suite in load_suites(settings.validation.expectations_dir):
        for spec in suite.expectations if suite.datasource == "sql" else ():
            try:
                queries += plain_checks(
                    [replace(suite, expectations=(spec,))], engine.dialect, params
                )
            except SystemExit:  # no plain-SQL version of this expectation type
                left_out += 1
    seconds = 0.0
    with engine.connect() as conn:
        for query in queries:
            started = time.perf_counter()
            try:
                with conn.begin():
                    conn.exec_driver_sql(query.replace("%", "%%")).scalar()
            except sa.exc.DBAPIError:
                left_out += 1
                continue
            seconds += time.perf_counter() - started
    engine.dispose()
    return seconds, left_out


def baseline_scrub(objects: Path) -> tuple[float, int]:
    """Read back and SHA-256 as many archive and backup objects as validate-data's scrub."""
    from steward.settings import get_settings

    settings = get_settings()
    rng = random.Random(7)
    picked: list[Path] = []
    for prefix, count in (
        ("archive", settings.validation.scrub_objects),
        (settings.backup.prefix, settings.validation.scrub_backup_objects),
    ):
        files = sorted(p for p in (objects / prefix).rglob("*") if p.is_file())
        picked += rng.sample(files, min(count, len(files)))
    started = time.perf_counter()
    for path in picked:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return time.perf_counter() - started, len(picked)


def baseline_warm(copy: str, redis_url: str) -> tuple[float, int]:
    """Plain SQL reads of every warmer query, then redis-benchmark writing as many keys."""
    from bench.cache import redis_benchmark
    from steward.settings import get_settings

    engine = sa.create_engine(_url(copy))
    rows = 0
    started = time.perf_counter()
    with engine.connect() as conn:
        for warmer in get_settings().cache.warmers:
            if warmer.query and warmer.enabled:
                rows += len(conn.execute(sa.text(warmer.query), warmer.params).all())
    read = time.perf_counter() - started
    engine.dispose()
    per_second = redis_benchmark(redis_url, max(rows, 1))
    return read + rows / per_second, rows


def run_nightly(prefect_db: str) -> tuple[float, dict[str, Any]]:
    from flows.nightly import nightly
    from steward.errors import NightlyStepsFailed

    with prefect_server(prefect_db):
        started = time.perf_counter()
        try:
            summary = nightly()
        except NightlyStepsFailed as exc:
            summary = getattr(exc, "summary", {}) or {}
        return time.perf_counter() - started, summary


@contextmanager
def prefect_server(database: str) -> Iterator[None]:
    """A temporary Prefect server for the run: the test harness's (SQLite), or (``postgres``)
    one whose database is a new PostgreSQL database, as "Deploying to Prefect" recommends: a
    SQLite-backed server answers concurrent writes with 503 "database is locked" now and then
    (its client retries 2 s, then 4 s later), and for a minute at a time on a loaded machine."""
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_DATABASE_CONNECTION_URL,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    if database == "sqlite":
        with prefect_test_harness(server_startup_timeout=300):
            yield
        return
    name = f"steward_bench_prefect_{uuid.uuid4().hex[:6]}"
    _admin(f'CREATE DATABASE "{name}"')
    url = f"{BASE.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    try:
        with temporary_settings(updates={PREFECT_SERVER_DATABASE_CONNECTION_URL: url}):
            server = SubprocessASGIServer(port=_free_port())
            server.start(timeout=300)
            try:
                with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
                    yield
                    APILogWorker.drain_all(timeout=5)  # the last log lines, while it is up
            finally:
                server.stop()
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _seeded(seed: str) -> str | None:
    """The comment of a kept seed database (its load figures), None when there is none."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        found = conn.execute(
            "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database "
            "WHERE datname = %s",
            (seed,),
        ).fetchone()
    return None if found is None else str(found[0])


def load(name: str, rows: int, analyze: bool, reuse: bool) -> tuple[float, float, str]:
    """Create ``name`` with the demo data: loaded here, or (``reuse``) copied from the seed
    database an earlier ``--reuse`` run kept (the load of 2M rows takes about a minute)."""
    seed = f"steward_bench_nightly_seed_{rows}" + ("" if analyze else "_raw")
    if reuse and (comment := _seeded(seed)) is not None:
        _admin(f'CREATE DATABASE "{name}" TEMPLATE "{seed}"')
        if analyze:
            # A copy carries the planner's statistics but not the activity counters
            # (last_analyze, live rows): without this the nightly would see never-analysed
            # tables and analyse them all before reading, which a loaded database never needs.
            with psycopg.connect(f"{BASE}/{name}", autocommit=True) as conn:
                conn.execute("ANALYZE")
        loaded, analysed = (float(part) for part in (comment.split() + ["0", "0"])[:2])
        return loaded, analysed, f" (copied from {seed}, kept by an earlier --reuse run)"
    _admin(f'CREATE DATABASE "{name}"')
    loaded, analysed = prepare(name, rows, analyze)
    if reuse:
        _admin(f'CREATE DATABASE "{seed}" TEMPLATE "{name}"')
        _admin(f"COMMENT ON DATABASE \"{seed}\" IS '{loaded:.1f} {analysed:.1f}'")
    return loaded, analysed, ""


def bench(
    rows: int, keep: bool, analyze: bool, reuse: bool = False, prefect_db: str = "sqlite"
) -> None:
    from bench.cache import start_redis
    from steward.settings import get_settings

    name = f"steward_bench_nightly_{uuid.uuid4().hex[:6]}"
    copy = f"{name}_baseline"
    folder = Path(tempfile.mkdtemp(prefix="steward-bench-nightly-"))
    redis_process, redis_url = start_redis(str(folder))
    os.environ.update(
        {
            "STEWARD_HOME": str(folder / "home"),
            "STEWARD_DATABASE__URL": _url(name),
            "STEWARD_CACHE__URL": redis_url,
            "STEWARD_OBJECTS__URL": (folder / "objects").as_uri(),
            "STEWARD_MIGRATIONS__ALEMBIC": "example",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
    )
    get_settings.cache_clear()
    print(f"start: {_uptime()}", file=sys.stderr, flush=True)
    try:
        loaded, analysed, origin = load(name, rows, analyze, reuse)
        print(
            f"demo data: {loaded:.1f} s, ANALYZE {analysed:.1f} s{origin}",
            file=sys.stderr,
            flush=True,
        )
        _admin(f'CREATE DATABASE "{copy}" TEMPLATE "{name}"')
        with psycopg.connect(f"{BASE}/{copy}", autocommit=True) as conn:
            conn.execute("ANALYZE")  # raw baselines plan with true statistics (not timed)
        baselines = {
            "backup-databases": ("pg_dump -Fc + pg_restore", baseline_backup(copy, folder)),
        }
        seconds, left_out = baseline_validation(copy)
        baselines["validate-data"] = (
            "plain SQL, same checks"
            + (f" ({left_out} without a plain version left out)" if left_out else ""),
            seconds,
        )
        warm, warm_rows = baseline_warm(copy, redis_url)
        baselines["warm-cache"] = (f"SQL reads + redis-benchmark ({warm_rows:,} keys)", warm)
        baselines["archive-to-s3"] = (
            "COPY TO STDOUT \\| gzip + DELETE",
            baseline_archive(copy, folder),
        )
        print("baselines done; running nightly", file=sys.stderr, flush=True)
        total, summary = run_nightly(prefect_db)
        scrub, objects = baseline_scrub(folder / "objects")
        what, checks = baselines["validate-data"]
        baselines["validate-data"] = (f"{what} + SHA-256 of {objects} objects", checks + scrub)
        _print(rows, loaded, analysed, baselines, total, summary)
    finally:
        print(f"end: {_uptime()}", file=sys.stderr, flush=True)
        redis_process.terminate()
        if not keep:
            for database in (name, copy):
                _admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            shutil.rmtree(folder, ignore_errors=True)


def _print(
    rows: int,
    loaded: float,
    analysed: float,
    baselines: dict[str, tuple[str, float]],
    total: float,
    summary: dict[str, Any],
) -> None:
    steps = summary.get("steps", {})
    print(f"\nnightly on {rows:,} demo rows (loaded in {loaded:.1f} s, ANALYZE {analysed:.1f} s)")
    print("| step | state | Steward | of which waiting | baseline | baseline time | ratio |")
    print("|---|---|---:|---:|---|---:|---:|")
    for step, outcome in steps.items():
        seconds = float(outcome.get("duration_s") or 0.0)
        waiting = outcome.get("waiting_s")
        what, base = baselines.get(step, ("-", 0.0))
        ratio = f"{seconds / base:.2f}x" if base else "-"
        shown = f"{base:.1f} s" if base else "-"
        print(
            f"| {step} | {outcome.get('state')} | {seconds:.1f} s | "
            f"{'-' if waiting is None else f'{waiting:.1f} s'} | {what} | {shown} | {ratio} |"
        )
    base_total = sum(b for _, b in baselines.values())
    print(
        f"| **whole nightly** (with report) | | {total:.1f} s | | sum of baselines | "
        f"{base_total:.1f} s | {total / base_total:.2f}x |"
        if base_total
        else f"| whole nightly | | {total:.1f} s | | | | |"
    )
    for step, outcome in steps.items():
        for report in (outcome.get("summary") or {}).get("statistics") or []:
            for line in report.get("lines", []):
                print(f"{step} {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="demo rows (default 200000)")
    parser.add_argument("--keep", action="store_true", help="keep the databases and files")
    parser.add_argument(
        "--no-load-analyze",
        action="store_true",
        help="load the data without ANALYZE (as a foreign bulk load would): the nightly's "
        "checks before reading must analyse the tables",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the loaded demo data in a seed database (steward_bench_nightly_seed_N) and "
        "copy it on later --reuse runs instead of loading again (drop it by hand when done)",
    )
    parser.add_argument(
        "--prefect-db",
        choices=["sqlite", "postgres"],
        default="sqlite",
        help="the temporary Prefect server's database: sqlite (the test harness, as `steward "
        "run` uses) or postgres (a new database on the benchmark's server, as recommended for "
        "deployments: no 'database is locked' retries in the figures)",
    )
    args = parser.parse_args()
    # `kill` (SIGTERM) ends the run through the clean-up: databases dropped, redis stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for tool in ("redis-server", "redis-benchmark"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (Debian package redis-server/redis-tools)")
    bench(args.rows, args.keep, not args.no_load_analyze, args.reuse, args.prefect_db)
    return 0


if __name__ == "__main__":
    sys.exit(main())
