"""Backup benchmark: ``python -m bench.backup --rows 1000000``.

A fresh PostgreSQL database with N ``orders`` rows (plus an index and a foreign key) is
backed up and restored two ways in the same run:

- backup: ``pg_dump -Fc -f file`` (baseline) against Steward's :func:`take_backup` — pg_dump
  streamed into the object store (the folder store) with SHA-256 while streaming, per-table
  counts + checksums in the dump's snapshot, and the manifest. Verification excluded.
- verify: a plain ``pg_restore`` of the baseline file into a new database (baseline) against
  :func:`verify_backup` — the dump streamed from the store (SHA-256 checked on the way) into
  ``pg_restore``'s stdin in a scratch database, fingerprints compared, manifest rewritten,
  scratch dropped.

Steward's steps run in a child process so their peak RSS is their own (pg_dump / pg_restore
are separate processes either way). Run two sizes to see that peak RSS stays flat.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("STEWARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_BIN = Path("/usr/lib/postgresql/15/bin")

SCHEMA = """
CREATE TABLE customers (id bigint PRIMARY KEY, email text NOT NULL UNIQUE);
CREATE TABLE orders (
    id bigint PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers(id),
    status text NOT NULL,
    total numeric(12, 2) NOT NULL,
    created_at timestamptz NOT NULL,
    note text
);
CREATE INDEX orders_customer_idx ON orders (customer_id);
"""
FILL = """
INSERT INTO orders
SELECT g, 1 + g %% 10000, (ARRAY['new','paid','shipped','cancelled'])[1 + g %% 4],
       (g %% 100000) / 100.0, now() - g * interval '1 second',
       'order ' || g || ' ' || md5(g::text)
FROM generate_series(1, %(rows)s) g
"""

CHILD = """
import json, resource, sys, time
from steward.backup import find_backup, open_backup_context, take_backup, verify_backup
from steward.settings import load_settings
ctx = open_backup_context(load_settings())
started = time.perf_counter()
if sys.argv[1] == "backup":
    manifest = take_backup(ctx, "database")
    size = manifest.size_bytes
else:
    manifest = verify_backup(ctx, find_backup(ctx.store, "backups", sys.argv[2]))
    size = manifest.size_bytes
print(json.dumps({"seconds": time.perf_counter() - started, "id": manifest.id, "size": size,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _database(suffix: str) -> str:
    name = f"steward_bench_{suffix}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # generated name, never from input
    return name


def _drop(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _url(name: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def _timed(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        args, check=True, env={**os.environ, "PGHOST": "127.0.0.1", "PGUSER": "postgres"}
    )
    return time.perf_counter() - started


def _steward(step: str, env: dict[str, str], *extra: str) -> dict[str, float | str]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, step, *extra],
        check=True, capture_output=True, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def run(rows: int, repeat: int) -> list[dict[str, object]]:
    source = _database("src")
    scratch: list[str] = []
    try:
        with psycopg.connect(_url(source), autocommit=True) as conn:
            conn.execute(SCHEMA)
            conn.execute(
                "INSERT INTO customers SELECT g, 'c' || g || '@example.com' "
                "FROM generate_series(1, 10000) g"
            )
            conn.execute(FILL, {"rows": rows})
            conn.execute("VACUUM ANALYZE")
        with tempfile.TemporaryDirectory(prefix="steward-bench-") as folder:
            env = {
                **os.environ,
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "STEWARD_HOME": folder,
                "STEWARD_DATABASE__URL": _url(source).replace(
                    "postgresql://", "postgresql+psycopg://"
                ),
                "STEWARD_BACKUP__SOURCES": '["database"]',
            }
            dump = Path(folder) / "baseline.pgdump"
            best: dict[str, float] = {}
            rss: dict[str, float] = {}
            size = 0
            for _ in range(repeat):
                base = _timed([str(PG_BIN / "pg_dump"), "-Fc", "-f", str(dump), source])
                ours = _steward("backup", env)
                started = time.perf_counter()  # "into a new database": creating it counts
                base_restore_db = _database("restore")
                created = time.perf_counter() - started
                scratch.append(base_restore_db)
                base_restore = created + _timed(
                    [str(PG_BIN / "pg_restore"), "--no-owner", "-d", base_restore_db, str(dump)]
                )
                verify = _steward("verify", env, str(ours["id"]))
                for key, value in (
                    ("pg_dump", base), ("backup", ours["seconds"]),
                    ("pg_restore", base_restore), ("verify", verify["seconds"]),
                ):  # fmt: skip
                    best[key] = min(best.get(key, float("inf")), float(value))
                rss["backup"] = max(rss.get("backup", 0.0), float(ours["rss_mb"]))
                rss["verify"] = max(rss.get("verify", 0.0), float(verify["rss_mb"]))
                size = int(ours["size"])
            baseline_bytes = dump.stat().st_size
            return [
                _row("backup (dump+upload+sha256+fingerprint+manifest)", "pg_dump -Fc -f file",
                     best["pg_dump"], best["backup"], rss["backup"], size, baseline_bytes),
                _row("verify (stream into pg_restore+compare)", "pg_restore into a new db",
                     best["pg_restore"], best["verify"], rss["verify"], size, baseline_bytes),
            ]  # fmt: skip
    finally:
        for name in [source, *scratch]:
            _drop(name)


def _row(
    step: str, baseline: str, base_s: float, ours_s: float, rss_mb: float, size: int, base_size: int
) -> dict[str, object]:
    return {
        "step": step,
        "baseline": baseline,
        "baseline_s": base_s,
        "steward_s": ours_s,
        "ratio": ours_s / base_s,
        "rss_mb": rss_mb,
        "dump_bytes": size,
        "baseline_bytes": base_size,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="orders rows (default 200k)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; best is kept")
    args = parser.parse_args()
    results = run(args.rows, args.repeat)
    print(f"\nbackup benchmark, {args.rows:,} orders rows, best of {args.repeat}")
    print(f"{'step':<50} {'baseline':<26} {'base s':>7} {'ours s':>7} {'ratio':>6} "
          f"{'peak RSS':>9} {'dump MB':>8}")  # fmt: skip
    for r in results:
        print(
            f"{r['step']:<50} {r['baseline']:<26} {r['baseline_s']:>7.2f} {r['steward_s']:>7.2f} "
            f"{r['ratio']:>5.2f}x {r['rss_mb']:>6.0f} MB {int(r['dump_bytes']) / 1e6:>8.1f}"  # type: ignore[call-overload]
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
