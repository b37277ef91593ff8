"""Archive benchmark: ``python -m bench.archive --rows 1000000``.

N soft-deleted ``users`` rows (the example schema, in a fresh PostgreSQL database) are archived
to S3 (a moto server in its own process, over HTTP) two ways, each on the same freshly loaded
rows:

- ``baseline``: ``COPY (SELECT … WHERE deleted_at < cutoff ORDER BY id) TO STDOUT`` piped through
  ``gzip`` into a file, then one ``DELETE`` of the same rows — no verification, no manifest, no
  guard against concurrent changes, nothing uploaded;
- ``steward``: :func:`steward.archive.archive_table` — keyset batches to Parquet objects on S3,
  each verified (size + SHA-256, read back and decoded) before the guarded delete that commits
  with the manifest. Runs in a child process, so its peak RSS is its own.

Prints rows/s for both, Steward's peak RSS, and the ratio (``--repeat N`` alternates N runs
of each on a shared machine and keeps the best of each). Run it with two sizes to see that
peak RSS is bounded by the batch size, not the table size.
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("STEWARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
NOW = datetime.now(UTC)
CUTOFF = NOW - timedelta(days=90)

FILL_SQL = """
INSERT INTO users (id, email, full_name, country, created_at, updated_at, deleted_at,
                   deleted_by, delete_reason)
SELECT g, 'user' || g || '@example.com', 'User number ' || g, 'DE',
       %(now)s - interval '500 days' + g * interval '1 second',
       %(now)s - interval '120 days' + g * interval '1 millisecond',
       %(now)s - interval '120 days' + g * interval '1 millisecond',
       'support', 'account closed on request'
FROM generate_series(1, %(rows)s) AS g
"""
QUALIFYING = "deleted_at IS NOT NULL AND deleted_at < '{cutoff}'"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _sa_url(conninfo: str) -> str:
    return conninfo.replace("postgresql://", "postgresql+psycopg://", 1)


# Setup ---------------------------------------------------------------------------------------


def create_database() -> str:
    name = f"steward_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # generated name, never from input
    return ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_database(conninfo: str) -> None:
    name = conninfo.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-c", "from steward.migrations.sql import MigrationRunner as M;"
         "from steward.settings import load_settings as L; M(L()).upgrade()"],
        env=env, cwd=REPO, check=True,
    )  # fmt: skip


def fill(conninfo: str, rows: int) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("TRUNCATE users CASCADE")
        conn.execute(FILL_SQL, {"now": NOW, "rows": rows})
        conn.execute("VACUUM ANALYZE users")


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return server, endpoint
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("moto server did not start")


def make_bucket(endpoint: str) -> str:
    import boto3

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")  # moto accepts any credentials
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    bucket = f"steward-bench-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return bucket


# Runs ----------------------------------------------------------------------------------------


def run_baseline(conninfo: str, rows: int, workdir: Path) -> dict[str, Any]:
    target = workdir / "users.csv.gz"
    where = QUALIFYING.format(cutoff=CUTOFF.isoformat())
    copy = f"COPY (SELECT * FROM users WHERE {where} ORDER BY id) TO STDOUT"
    started = time.perf_counter()
    with open(target, "wb") as sink:
        dump = subprocess.Popen(["psql", conninfo, "-qAc", copy], stdout=subprocess.PIPE)
        gzip = subprocess.Popen(["gzip", "-6"], stdin=dump.stdout, stdout=sink)
        assert dump.stdout is not None
        dump.stdout.close()
        if gzip.wait() or dump.wait():
            raise RuntimeError("baseline COPY | gzip failed")
    copied = time.perf_counter() - started
    with psycopg.connect(conninfo, autocommit=True) as conn:
        deleted = conn.execute(f"DELETE FROM users WHERE {where}").rowcount
    elapsed = time.perf_counter() - started
    if deleted != rows:
        raise RuntimeError(f"baseline deleted {deleted} rows, expected {rows}")
    return {"seconds": elapsed, "copy_gzip_seconds": copied, "bytes": target.stat().st_size}


def run_steward(env: dict[str, str], batch_size: int) -> dict[str, Any]:
    """Archive in a child process (its own peak RSS); returns its JSON report."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.archive", "--child", "--batch-size", str(batch_size)],
        env=env, cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"steward archive failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(batch_size: int) -> None:
    """The Steward run: one policy (users), verify + guarded delete, S3 via moto."""
    from steward.archive import archive_table, open_context, open_sources
    from steward.settings import get_settings

    ctx = open_context(get_settings(), clock=lambda: NOW)
    (source,) = open_sources(ctx, ["users"])
    source.batch_size = batch_size
    started = time.perf_counter()
    report = archive_table(ctx, source)
    elapsed = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "rows": report.rows_archived,
                "objects": report.objects,
                "bytes": report.bytes,
                "peak_rss_mib": peak_kib / 1024,
            }
        )
    )


# Main ----------------------------------------------------------------------------------------


def bench(rows: int, batch_size: int, repeat: int = 1) -> dict[str, Any]:
    conninfo = create_database()
    server, endpoint = start_moto()
    workdir = Path(tempfile.mkdtemp(prefix="steward-bench-"))
    try:
        env = {
            **os.environ,
            "STEWARD_HOME": str(workdir / "home"),
            "STEWARD_DATABASE__URL": _sa_url(conninfo),
            "STEWARD_OBJECTS__URL": f"s3://{make_bucket(endpoint)}/bench",
            "STEWARD_OBJECTS__ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        migrate(env)
        stewards, baselines = [], []
        for _ in range(repeat):  # alternate, so both see the same machine load
            fill(conninfo, rows)
            stewards.append(run_steward(env, batch_size))
            if stewards[-1]["rows"] != rows:
                raise RuntimeError(f"steward archived {stewards[-1]['rows']} rows, not {rows}")
            fill(conninfo, rows)
            baselines.append(run_baseline(conninfo, rows, workdir))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)
        drop_database(conninfo)
    return {
        "rows": rows,
        "batch_size": batch_size,
        "steward": min(stewards, key=lambda r: r["seconds"]),
        "baseline": min(baselines, key=lambda r: r["seconds"]),
        "all_seconds": {
            "steward": [round(r["seconds"], 2) for r in stewards],
            "baseline": [round(r["seconds"], 2) for r in baselines],
        },
    }


def report(result: dict[str, Any]) -> None:
    rows, steward, baseline = result["rows"], result["steward"], result["baseline"]
    steward_rate = rows / steward["seconds"]
    baseline_rate = rows / baseline["seconds"]
    print(f"\narchive benchmark: {rows:,} soft-deleted users rows, PostgreSQL -> S3 (moto)")
    print(f"{'run':<44}{'seconds':>10}{'rows/s':>12}{'MiB out':>10}{'peak RSS MiB':>14}")
    print(
        f"{'baseline: COPY | gzip > file + DELETE':<44}{baseline['seconds']:>10.2f}"
        f"{baseline_rate:>12,.0f}{baseline['bytes'] / 2**20:>10.1f}{'-':>14}"
    )
    print(
        f"{'steward: parquet -> S3, verify, guarded delete':<44}{steward['seconds']:>10.2f}"
        f"{steward_rate:>12,.0f}{steward['bytes'] / 2**20:>10.1f}{steward['peak_rss_mib']:>14.0f}"
    )
    print(
        f"ratio steward / baseline rows/s: {steward_rate / baseline_rate:.2f}  "
        f"({steward['objects']} objects of {result['batch_size']:,} rows; best of "
        f"{len(result['all_seconds']['steward'])}, all seconds: {result['all_seconds']})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=1, help="Runs of each; the best counts.")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.batch_size)
        return
    report(bench(args.rows, args.batch_size, args.repeat))


if __name__ == "__main__":
    main()
