"""Physical backup benchmark: ``python -m bench.physical --rows 1000000``.

A private PostgreSQL cluster (``archive_mode = on``, WAL archived by pgBackRest into a folder
repository) with N ``orders`` rows, then, in the same run:

- backup: ``pgbackrest backup --type=full`` run by hand (baseline) against Steward's
  :func:`take_physical_backup` (the same pgBackRest backup, plus the restore point marked in
  the fingerprints' snapshot, the per-table fingerprints, the wait for the restore point's WAL
  to be archived, and the manifest), alternated ``--rounds`` times, best of each (the machine
  is shared); Steward's steps are printed from the best run's manifest;
- verify: Steward's physical verification (restore into a scratch cluster, recovery to the
  restore point, start, fingerprints compared) beside a logical backup's verification of the
  same database (``pg_restore`` streamed into a scratch database, fingerprints compared).

Needs root (the cluster runs as the ``postgres`` OS user) and the ``pgbackrest`` package.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import tempfile
import time
from pathlib import Path

import psycopg

from bench.backup import FILL, SCHEMA
from tests.fixtures.private_servers import PrivatePostgres


def _timed(work) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def run(rows: int, rounds: int = 2) -> list[tuple[str, str, float, float]]:
    base = Path(tempfile.mkdtemp(prefix="steward-bench-pgbr-"))
    owner = pwd.getpwnam("postgres")
    os.chown(base, owner.pw_uid, owner.pw_gid)
    config = base / "pgbackrest.conf"
    command = f"pgbackrest --config={config} --stanza=app archive-push %p"
    cluster = PrivatePostgres(
        {"archive_mode": "on", "archive_command": f"'{command}'", "wal_level": "replica"}
    )
    try:
        cluster.start()
        url = cluster.create_database("shop")
        os.environ.update(
            {
                "STEWARD_HOME": str(base / "home"),
                "STEWARD_DATABASE__URL": url,
                "STEWARD_BACKUP__SOURCES": '["database"]',
                "STEWARD_BACKUP__PHYSICAL__DATA_DIR": str(cluster.data_dir),
                "STEWARD_BACKUP__PHYSICAL__SOCKET_DIR": str(cluster.root),
                "STEWARD_BACKUP__PHYSICAL__PORT": str(cluster.port),
                "STEWARD_BACKUP__PHYSICAL__REPO_PATH": str(base / "repo"),
                "STEWARD_BACKUP__PHYSICAL__CONFIG_FILE": str(config),
                "STEWARD_BACKUP__PHYSICAL__SCRATCH_DIR": str(base / "scratch"),
            }
        )
        from steward.backup import (
            open_backup_context,
            setup_physical,
            take_backup,
            take_physical_backup,
            verify_backup,
        )
        from steward.backup.pgbackrest import pgbackrest
        from steward.settings import load_settings

        ctx = open_backup_context(load_settings())
        setup_physical(ctx)  # archiving works before the load writes its WAL
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(SCHEMA)
            conn.execute(
                "INSERT INTO customers SELECT g, 'c' || g || '@example.com' "
                "FROM generate_series(1, 10000) g"
            )
            conn.execute(FILL, {"rows": rows})
            conn.execute("VACUUM ANALYZE")
        pgbackrest(ctx.settings, "check")  # the load's WAL is archived before timing starts
        hand_s, ours_s, best = [], [], None
        for _ in range(rounds):  # alternated, so neither side always meets a warm cache
            hand_s.append(_timed(lambda: pgbackrest(ctx.settings, "backup", "--type=full"))[0])
            took, manifest = _timed(lambda: take_physical_backup(ctx, "full"))
            ours_s.append(took)
            best = manifest if took == min(ours_s) else best
        for step, seconds in best.physical["seconds"].items():  # type: ignore[union-attr]
            print(f"  steward backup step {step}: {seconds:.2f} s")
        verify_physical_s, _ = _timed(lambda: verify_backup(ctx, manifest))  # type: ignore[arg-type]
        logical = take_backup(ctx, "database")
        verify_logical_s, _ = _timed(lambda: verify_backup(ctx, logical))
        print(f"  by hand {' '.join(f'{s:.2f}' for s in hand_s)} s; "
              f"steward {' '.join(f'{s:.2f}' for s in ours_s)} s")  # fmt: skip
        return [
            ("backup (full)", "pgbackrest backup by hand", min(hand_s), min(ours_s)),
            ("verify", "logical backup's verify", verify_logical_s, verify_physical_s),
        ]
    finally:
        cluster.remove()
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="orders rows (default 1M)")
    parser.add_argument("--rounds", type=int, default=2, help="backups per side; best counts")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"rows {args.rows:,}; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"{'step':<16}{'baseline':<28}{'base s':>9}{'ours s':>9}{'ratio':>8}")
    for step, baseline, base_s, ours_s in run(args.rows, args.rounds):
        print(f"{step:<16}{baseline:<28}{base_s:>9.2f}{ours_s:>9.2f}{ours_s / base_s:>7.2f}x")


if __name__ == "__main__":
    main()
