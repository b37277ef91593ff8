"""``steward backup`` and its subcommands as a user runs them (the console script in a
subprocess): exit codes 0 / 1 / 2, one clear error line, and outcomes in the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from steward.backup import list_backups, open_backup_context
from tests.backup.conftest import PASSWORD, table_rows

STEWARD = str(Path(sys.executable).with_name("steward"))


def _steward(
    *args: str, cwd: Path, env: dict[str, str] | None = None, columns: int = 200
) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "COLUMNS": str(columns), **(env or {})}
    return subprocess.run(
        [STEWARD, "backup", *args], capture_output=True, text=True, cwd=cwd, env=full, timeout=300
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

    target = make_pg_database(install=False)  # a new, empty database
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


def test_backup_list_never_cuts_an_id_and_has_json(sqlite_settings, tmp_path):
    assert _steward(cwd=tmp_path).returncode == 0
    [manifest] = list_backups(open_backup_context(sqlite_settings).store, "backups")
    narrow = _steward("list", cwd=tmp_path, columns=80)
    assert narrow.returncode == 0 and manifest.id in narrow.stdout
    [row] = json.loads(_steward("list", "--json", cwd=tmp_path).stdout)
    assert row["id"] == manifest.id and row["good"] is True and row["engine"] == "sqlite"
    assert row["rows"] == 202 and row["size_bytes"] == manifest.size_bytes


def test_list_and_verify_keep_to_their_own_source(sqlite_settings, tmp_path):
    shop = {"STEWARD_SOURCE_NAME": "shop"}
    big = {"STEWARD_SOURCE_NAME": "big"}
    assert _steward("--no-verify", cwd=tmp_path, env=shop).returncode == 0
    assert _steward("--no-verify", cwd=tmp_path, env=big).returncode == 0  # newer, other source
    store = open_backup_context(sqlite_settings).store
    [own] = list_backups(store, "backups", source="shop")
    [other] = list_backups(store, "backups", source="big")

    verified = _steward("verify", cwd=tmp_path, env=shop)
    assert verified.returncode == 0 and f"verified 1 backup(s): {own.id}" in verified.stdout
    assert list_backups(store, "backups", source="shop")[0].good
    assert not list_backups(store, "backups", source="big")[0].good

    listed = json.loads(_steward("list", "--json", cwd=tmp_path, env=shop).stdout)
    assert [b["id"] for b in listed] == [own.id]
    every = json.loads(_steward("list", "--json", "--all-sources", cwd=tmp_path, env=shop).stdout)
    assert {b["id"] for b in every} == {own.id, other.id}


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
