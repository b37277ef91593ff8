"""``steward backup`` and its subcommands as a user runs them (the console script in a
subprocess): exit codes 0 / 1 / 2, one clear error line, and outcomes in the store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from steward.backup import list_backups, open_backup_context
from tests.backup.conftest import PASSWORD, table_rows

STEWARD = str(Path(sys.executable).with_name("steward"))


def _steward(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [STEWARD, "backup", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def test_backup_list_verify_restore_prune_on_postgres(pg_settings, tmp_path, make_pg_database):
    dry = _steward("--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "would back up: database" in dry.stdout
    ctx = open_backup_context(pg_settings)
    assert list_backups(ctx.store, "backups") == []

    done = _steward(cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [manifest] = list_backups(ctx.store, "backups")
    assert manifest.verified_at is not None
    assert manifest.id in done.stdout and PASSWORD not in done.stdout + done.stderr

    listed = _steward("list", cwd=tmp_path)
    assert listed.returncode == 0 and manifest.id in listed.stdout

    verified = _steward("verify", manifest.id, cwd=tmp_path)
    assert verified.returncode == 0 and f"verified 1 backup(s): {manifest.id}" in verified.stdout

    target = make_pg_database()
    restored = _steward("restore", manifest.id, "--to", target, cwd=tmp_path)
    assert restored.returncode == 0, restored.stderr
    assert "restored into" in restored.stdout and "903 rows" in restored.stdout
    assert table_rows(target, "customers") == table_rows(pg_settings.database_url, "customers")

    again = _steward("restore", manifest.id, "--to", target, cwd=tmp_path)
    assert again.returncode == 2
    assert "is not empty" in again.stderr and "Traceback" not in again.stderr
    replaced = _steward("restore", manifest.id, "--to", target, "--replace", cwd=tmp_path)
    assert replaced.returncode == 0 and "replaced the contents of" in replaced.stdout

    pruned = _steward("prune", "--dry-run", cwd=tmp_path)
    assert pruned.returncode == 0 and "would delete nothing: 1 backups are kept" in pruned.stdout


def test_verify_failure_exits_1_and_unknown_id_exits_2(sqlite_settings, tmp_path):
    assert _steward(cwd=tmp_path).returncode == 0
    ctx = open_backup_context(sqlite_settings)
    [manifest] = list_backups(ctx.store, "backups")
    path = Path(sqlite_settings.objects_url.removeprefix("file://")) / manifest.objects[0]["key"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    failed = _steward("verify", cwd=tmp_path)
    assert failed.returncode == 1
    assert "verification failed" in failed.stderr and "corrupted" in failed.stderr
    assert "Traceback" not in failed.stderr

    unknown = _steward("verify", "20990101T000000Z-000000", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "no backup with id '20990101T000000Z-000000'" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) <= 2
