"""Archive benchmark: ``python -m bench.archive --rows 1000000``.

Three table shapes of the example schema, each in a fresh PostgreSQL database, archived to S3
(a moto server in its own process, over HTTP) two ways on the same freshly loaded rows:

- ``users``: soft-deleted rows of a table with ``updated_at``;
- ``inventory_movements``: an append-only table without ``updated_at``;
- ``orders``: soft-deleted orders with their children (2 order_items, 1 payment and 1
  inventory reservation per order: 5 rows per root), archived as aggregates.

- ``baseline``: per table, ``COPY (SELECT … qualifying … ORDER BY id) TO STDOUT`` piped through
  ``gzip`` into a file, then ``DELETE`` of the same rows (children first) — no verification,
  no manifest, no guard against concurrent changes, nothing uploaded;
- ``steward``: :func:`steward.archive.archive_table` — keyset batches to Parquet objects on S3
  (one per table per batch), each verified (size + SHA-256, read back and decoded) before the
  guarded delete (row versions) that commits with the manifest. Runs in a child process, so
  its peak RSS is its own.

- ``links``: a link table with a composite primary key (product_id, tag), append-only.
- ``partitioned``: a RANGE-partitioned events table whose old partitions leave whole; the
  baseline is ``COPY partition TO STDOUT | gzip`` + ``DROP TABLE partition``, and the dead
  tuples left in the parent afterwards are printed (:mod:`bench.archive_partitions`).

Prints, per shape and size, root rows/s for both, Steward's peak RSS and the ratio
(``--repeat N`` alternates N runs of each and keeps the best). Give several ``--rows`` values
to see that peak RSS follows the batch size, not the table size. Then a per-stage table: the
baseline's COPY | gzip and DELETE seconds, and the seconds Steward's steps were busy (read
from PostgreSQL, Arrow/Parquet encode, upload, verify, guarded delete + commit, publish of
the final object) — on PostgreSQL the steps of consecutive batches overlap, so they add up to
more than the wall time. The machine's load average is printed with the figures.

``--profile DIR`` runs Steward's side under py-spy (a dev extra): one file of collapsed stacks
per table (every thread, waits included) to find where the time goes.
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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench import archive_partitions as partitioned

REPO = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("STEWARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=500)


@dataclass(frozen=True)
class Shape:
    """One table shape: how to fill it, and the tables the baseline copies and deletes."""

    name: str
    label: str
    fill: list[str]
    copies: list[tuple[str, str]]  # (table, SELECT of its qualifying rows), parents first
    deletes: list[str]  # children first
    rows_per_root: int = 1
    table: str = ""  # the policy's table (default: the first copied table)
    policies: str = ""  # archive.policies as JSON, when not one of the default policies
    whole: bool = False  # whole partitions: the baseline drops tables, deleting no row


_ROOTS = "SELECT id FROM orders WHERE deleted_at IS NOT NULL AND deleted_at < %(cutoff)s"
SHAPES = {
    shape.name: shape
    for shape in [
        Shape(
            "users",
            "users (updated_at)",
            [
                "INSERT INTO users (id, email, full_name, country, created_at, updated_at, "
                "deleted_at, deleted_by, delete_reason) "
                "SELECT g, 'user' || g || '@example.com', 'User number ' || g, 'DE', "
                "%(old)s + g * interval '1 second', %(old)s + g * interval '1 millisecond', "
                "%(old)s + g * interval '1 millisecond', 'support', 'account closed on request' "
                "FROM generate_series(1, %(rows)s) AS g"
            ],
            [("users", "SELECT * FROM users WHERE deleted_at < %(cutoff)s ORDER BY id")],
            ["DELETE FROM users WHERE deleted_at < %(cutoff)s"],
        ),
        Shape(
            "movements",
            "inventory_movements (no updated_at)",
            [
                "INSERT INTO products (id, sku, name) VALUES (1, 'SKU-1', 'Bench product')",
                "INSERT INTO inventory_movements (id, product_id, delta, reason, reference, "
                "created_at) SELECT g, 1, (g %% 7) - 3, 'sale', 'order-' || g, "
                "%(old)s + g * interval '1 millisecond' FROM generate_series(1, %(rows)s) AS g",
            ],
            [
                (
                    "inventory_movements",
                    "SELECT * FROM inventory_movements WHERE created_at < %(cutoff)s ORDER BY id",
                )
            ],
            ["DELETE FROM inventory_movements WHERE created_at < %(cutoff)s"],
        ),
        Shape(
            "orders",
            "orders + items, payment, reservation",
            [
                "INSERT INTO users (id, email, full_name) VALUES (1, 'buyer@example.com', 'B')",
                "INSERT INTO products (id, sku, name) VALUES (1, 'SKU-1', 'Bench product')",
                "INSERT INTO orders (id, user_id, status, currency, total, created_at, "
                "updated_at, deleted_at) SELECT g, 1, 'cancelled', 'EUR', 19.98, "
                "%(old)s + g * interval '1 millisecond', %(old)s + g * interval '1 millisecond', "
                "%(old)s + g * interval '1 millisecond' FROM generate_series(1, %(rows)s) AS g",
                "INSERT INTO order_items (id, order_id, product_id, quantity, unit_price) "
                "SELECT g, (g + 1) / 2, 1, 1, 9.99 FROM generate_series(1, 2 * %(rows)s) AS g",
                "INSERT INTO payments (id, order_id, amount, currency, status, provider, "
                "provider_ref, created_at) SELECT g, g, 19.98, 'EUR', 'refunded', 'stripe', "
                "'ch_' || g, %(old)s FROM generate_series(1, %(rows)s) AS g",
                "INSERT INTO inventory_reservations (id, product_id, order_id, quantity, status, "
                "expires_at, created_at) SELECT g, 1, g, 1, 'released', %(old)s, %(old)s "
                "FROM generate_series(1, %(rows)s) AS g",
            ],
            [
                ("orders", f"{_ROOTS} ORDER BY id".replace("SELECT id", "SELECT *", 1)),
                *(
                    (t, f"SELECT * FROM {t} WHERE order_id IN ({_ROOTS}) ORDER BY id")
                    for t in ("order_items", "payments", "inventory_reservations")
                ),
            ],
            [
                *(
                    f"DELETE FROM {t} WHERE order_id IN ({_ROOTS})"
                    for t in ("order_items", "payments", "inventory_reservations")
                ),
                "DELETE FROM orders WHERE deleted_at IS NOT NULL AND deleted_at < %(cutoff)s",
            ],
            rows_per_root=5,
        ),
        Shape(
            "links",
            "product_tags (composite key)",
            [
                "CREATE TABLE IF NOT EXISTS bench_product_tags (product_id BIGINT NOT NULL, "
                "tag INTEGER NOT NULL, note TEXT, created_at TIMESTAMPTZ NOT NULL, "
                "PRIMARY KEY (product_id, tag))",
                "TRUNCATE bench_product_tags",
                "INSERT INTO bench_product_tags SELECT (g + 3) / 4, g %% 4, 'tag note ' || g, "
                "%(old)s + g * interval '1 millisecond' FROM generate_series(1, %(rows)s) AS g",
            ],
            [
                (
                    "bench_product_tags",
                    "SELECT * FROM bench_product_tags WHERE created_at < %(cutoff)s "
                    "ORDER BY product_id, tag",
                )
            ],
            ["DELETE FROM bench_product_tags WHERE created_at < %(cutoff)s"],
            policies=json.dumps(
                [
                    {
                        "table": "bench_product_tags",
                        "rule": "older_than",
                        "column": "created_at",
                        "retention_days": 365,
                    }
                ]
            ),  # fmt: skip
        ),
    ]
}
SHAPES["partitioned"] = Shape(
    "partitioned",
    "bench_events (whole partitions)",
    partitioned.fill_statements(OLD, NOW),
    partitioned.copies(),
    partitioned.drops(),
    policies=partitioned.policies(),
    whole=True,
)
CUTOFF = NOW - timedelta(days=400)  # every filled row is older than every policy's retention


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
         "from steward.install import install as I;"
         "from steward.settings import load_settings as L; I(L()); M(L()).upgrade()"],
        env=env, cwd=REPO, check=True,
    )  # fmt: skip


def fill(conninfo: str, shape: Shape, rows: int) -> None:
    tables = "users, products, orders, order_items, payments, inventory_reservations, "
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {tables} inventory_movements, inventory, prices CASCADE")
        for statement in shape.fill:
            conn.execute(statement, {"old": OLD, "rows": rows})
        conn.execute("VACUUM ANALYZE")


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


def run_baseline(conninfo: str, shape: Shape, workdir: Path) -> dict[str, Any]:
    """Every table's qualifying rows: COPY | gzip into a file, then DELETE (children first)."""
    params = {"cutoff": CUTOFF}
    started = time.perf_counter()
    size = 0
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for table, select in shape.copies:
            copy = f"COPY ({_bind(conn, select, params)}) TO STDOUT"
            target = workdir / f"{table}.csv.gz"
            size += _copy_gzip(conninfo, copy, target)
        copied = time.perf_counter()
        deleted = [conn.execute(statement, params).rowcount for statement in shape.deletes]
    done = time.perf_counter()
    return {
        "seconds": done - started,
        "bytes": size,
        "deleted": deleted[-1],
        "stages": {"copy | gzip": copied - started, "delete": done - copied},
    }


def _bind(conn: psycopg.Connection[Any], query: str, params: dict[str, Any]) -> str:
    """The query with its parameters inlined (COPY takes no parameters)."""
    with psycopg.ClientCursor(conn) as cursor:
        return cursor.mogrify(query, params)


def _copy_gzip(conninfo: str, copy: str, target: Path) -> int:
    with open(target, "wb") as sink:
        dump = subprocess.Popen(["psql", conninfo, "-qAc", copy], stdout=subprocess.PIPE)
        gzip = subprocess.Popen(["gzip", "-6"], stdin=dump.stdout, stdout=sink)
        assert dump.stdout is not None
        dump.stdout.close()
        if gzip.wait() or dump.wait():
            raise RuntimeError("baseline COPY | gzip failed")
    return target.stat().st_size


def run_steward(
    env: dict[str, str], table: str, batch_size: int | None, profile: Path | None = None
) -> dict[str, Any]:
    """Archive in a child process (its own peak RSS); returns its JSON report. With
    ``profile`` the child runs under py-spy, which writes its samples (every thread, idle
    included, collapsed stacks) to ``profile/TABLE.txt``."""
    command = [sys.executable, "-m", "bench.archive", "--child", table]
    if batch_size:
        command += ["--batch-size", str(batch_size)]
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
        spy = [shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))]
        spy += ["record", "--idle", "--threads", "--format", "raw", "-r", "200"]
        command = [*spy, "-o", str(profile / f"{table}.txt"), "--", *command]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"steward archive failed:\n{done.stderr[-3000:]}")
    report = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(report[-1])  # py-spy prints its own lines around the child's


def child(table: str, batch_size: int | None) -> None:
    """The Steward run: one policy (the default ones), verify + guarded delete, S3 via moto."""
    from steward.archive import archive_table, open_context, open_sources
    from steward.settings import get_settings

    ctx = open_context(get_settings(), clock=lambda: NOW)
    (source,) = open_sources(ctx, [table])
    source.batch_size = batch_size or source.batch_size
    stages = _time_stages(ctx, source)
    partitioned.time_partition_stages(stages, ctx)
    started = time.perf_counter()
    report = archive_table(ctx, source, steps=stages.steps())
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
                "batch_size": source.batch_size,
                "stages": stages.seconds,
            }
        )
    )


class _Stages:
    """Busy seconds per stage of the archive, summed over batches (threads overlap them)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def timed(self, stage: str, fn: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.perf_counter() - started
                self.seconds[stage] = self.seconds.get(stage, 0.0) + spent

        return run

    def steps(self) -> Any:
        from steward.archive.runner import BatchSteps

        plain = BatchSteps()
        return BatchSteps(
            resolve=plain.resolve,
            read=self.timed("read", plain.read),
            write=plain.write,
            verify=self.timed("verify", plain.verify),
            finish=plain.finish,
        )


def _time_stages(ctx: Any, source: Any) -> _Stages:
    """Wrap the source's encoders, the store's writes and the delete/publish steps."""
    from steward.archive import archiver

    stages = _Stages()
    source.encode = stages.timed("encode", source.encode)
    source.encode_parts = stages.timed("encode", source.encode_parts)
    source.delete_unchanged = stages.timed("delete + commit", source.delete_unchanged)
    ctx.store.put = stages.timed("upload", ctx.store.put)
    archiver.publish_batch = stages.timed("publish", archiver.publish_batch)
    return stages


# Main ----------------------------------------------------------------------------------------


POLICY_TABLE = {"users": "users", "movements": "inventory_movements", "orders": "orders"}
POLICY_TABLE["links"] = "bench_product_tags"
POLICY_TABLE["partitioned"] = partitioned.TABLE


def bench(
    shape: Shape,
    rows: int,
    batch_size: int | None,
    repeat: int = 1,
    profile: Path | None = None,
) -> dict[str, Any]:
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
            "STEWARD_MIGRATIONS__ALEMBIC": "example",
        }
        if shape.policies:
            env["STEWARD_ARCHIVE__POLICIES"] = shape.policies
        migrate(env)
        stewards, baselines = [], []
        for _ in range(repeat):  # alternate, so both see the same machine load
            fill(conninfo, shape, rows)
            stewards.append(run_steward(env, POLICY_TABLE[shape.name], batch_size, profile))
            if stewards[-1]["rows"] != rows:
                raise RuntimeError(f"steward archived {stewards[-1]['rows']} rows, not {rows}")
            if shape.whole:
                stewards[-1]["dead_tuples"] = partitioned.dead_tuples(conninfo)
            fill(conninfo, shape, rows)
            baselines.append(run_baseline(conninfo, shape, workdir))
            if not shape.whole and baselines[-1]["deleted"] != rows:
                raise RuntimeError(f"baseline deleted {baselines[-1]['deleted']} roots")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)
        drop_database(conninfo)
    return {
        "shape": shape,
        "rows": rows,
        "batch_size": batch_size,
        "steward": min(stewards, key=lambda r: r["seconds"]),
        "baseline": min(baselines, key=lambda r: r["seconds"]),
    }


def report(results: list[dict[str, Any]]) -> None:
    print("\narchive benchmark: PostgreSQL -> S3 (moto), root rows per second")
    print(
        f"{'shape':<38}{'root rows':>11}{'baseline rows/s':>17}{'steward rows/s':>16}"
        f"{'ratio':>7}{'peak RSS MiB':>14}{'MiB out (b/s)':>16}{'batch':>8}"
    )
    for result in results:
        rows, steward, baseline = result["rows"], result["steward"], result["baseline"]
        shape: Shape = result["shape"]
        steward_rate, baseline_rate = rows / steward["seconds"], rows / baseline["seconds"]
        out = f"{baseline['bytes'] / 2**20:.0f}/{steward['bytes'] / 2**20:.0f}"
        print(
            f"{shape.label:<38}{rows:>11,}{baseline_rate:>17,.0f}{steward_rate:>16,.0f}"
            f"{steward_rate / baseline_rate:>7.2f}{steward['peak_rss_mib']:>14.0f}{out:>16}"
            f"{steward.get('batch_size', 0):>8,}"
        )
    print(
        "baseline: COPY (SELECT ...) TO STDOUT | gzip > file, then DELETE (children first); "
        "steward: 'batch' roots per batch (an aggregate's capped by rows with children), "
        "Parquet objects on S3, verified, guarded delete"
    )
    for result in results:
        if "dead_tuples" in result["steward"]:
            print(
                f"{result['shape'].label}: {result['steward']['dead_tuples']:,} dead tuples left "
                "in the parent's partitions after Steward (n_dead_tup); baseline: COPY partition "
                "| gzip, DROP TABLE partition"
            )
    report_stages(results)
    partitioned.report_stages(results)
    print("load average (1, 5, 15 min) at the end: " + ", ".join(
        f"{load:.1f}" for load in os.getloadavg()))  # fmt: skip


STAGES = ("read", "encode", "upload", "verify", "delete + commit", "publish")


def report_stages(results: list[dict[str, Any]]) -> None:
    print("\nper stage: seconds busy (root rows/s while busy); steward's steps overlap")
    header = f"{'shape':<30}{'root rows':>10}{'copy|gzip':>16}{'DELETE':>16}"
    print(header + "".join(f"{name:>18}" for name in STAGES) + f"{'wall':>9}")
    for result in results:
        rows, shape = result["rows"], result["shape"]
        base, mine = result["baseline"]["stages"], result["steward"]["stages"]
        cells = [_cell(base["copy | gzip"], rows), _cell(base["delete"], rows)]
        cells += [_cell(mine.get(name, 0.0), rows, 18) for name in STAGES]
        line = f"{shape.label[:29]:<30}{rows:>10,}" + "".join(cells)
        print(line + f"{result['steward']['seconds']:>8.1f}s")


def _cell(seconds: float, rows: int, width: int = 16) -> str:
    rate = f"{rows / seconds:,.0f}" if seconds > 0 else "-"
    return f"{seconds:.1f}s ({rate})".rjust(width)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument(
        "--shape", "--shapes", choices=sorted(SHAPES), nargs="+", default=list(SHAPES)
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="Root rows per batch (default: each policy's own, as archive.batch_size's "
        "default gives it).",
    )
    parser.add_argument("--repeat", type=int, default=1, help="Runs of each; the best counts.")
    parser.add_argument(
        "--profile",
        type=Path,
        help="Run Steward under py-spy (dev extra); collapsed stacks per table go to this folder.",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.batch_size)
        return
    results = [
        bench(SHAPES[name], rows, args.batch_size, args.repeat, args.profile)
        for name in args.shape
        for rows in args.rows
    ]
    report(results)


if __name__ == "__main__":
    main()
