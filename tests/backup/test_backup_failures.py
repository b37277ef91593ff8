"""Failures injected between steps: a damaged stored backup, a dump cut short, a backup run
killed outright, a wrong age identity, concurrent runs, and secrets kept out of errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from steward.backup import (
    backup_lock,
    find_backup,
    list_backups,
    orphan_keys,
    prune_backups,
    restore_backup,
    take_backup,
    verify_backup,
)
from steward.errors import BackupBusy, BackupVerificationFailed, ConfigError, StewardError
from steward.storage import utcnow
from tests.backup.conftest import PASSWORD

REAL_PG_DUMP = "/usr/lib/postgresql/15/bin/pg_dump"


def _store_root(settings) -> Path:
    return Path(settings.objects_url.removeprefix("file://"))


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_byte_flipped_in_a_stored_backup_is_caught_by_verify(pg_settings, ctx_for):
    ctx = ctx_for(pg_settings)
    manifest = take_backup(ctx, "database")
    _flip_a_byte(_store_root(pg_settings) / manifest.objects[0]["key"])

    with pytest.raises(BackupVerificationFailed, match=r"corrupted.*Do not rely on it"):
        verify_backup(ctx, manifest)
    recorded = find_backup(ctx.store, "backups", manifest.id)
    assert recorded.verified_at is None and recorded.verification["ok"] is False


def test_a_byte_flipped_in_a_sqlite_backup_is_caught_by_verify(sqlite_settings, ctx_for):
    ctx = ctx_for(sqlite_settings)
    manifest = take_backup(ctx, "database")
    _flip_a_byte(_store_root(sqlite_settings) / manifest.objects[0]["key"])
    with pytest.raises(BackupVerificationFailed):
        verify_backup(ctx, manifest)


def _fake_pg_dump(folder: Path, body: str) -> Path:
    """A pg_dump that reports the real version but misbehaves when dumping."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "pg_dump"
    script.write_text(
        f'#!/bin/sh\nif [ "$1" = "--version" ]; then exec {REAL_PG_DUMP} --version; fi\n' + body
    )
    script.chmod(0o755)
    return folder


def test_a_dump_cut_short_leaves_no_backup_and_no_object(pg_settings, make_settings, tmp_path):
    folder = _fake_pg_dump(tmp_path / "bin", f'{REAL_PG_DUMP} "$@" | head -c 3000\nexit 137\n')
    settings = make_settings(database__url=pg_settings.database_url, backup__pg_bin_dir=str(folder))
    from steward.backup import open_backup_context

    ctx = open_backup_context(settings)
    with pytest.raises(StewardError, match="pg_dump failed while dumping") as failure:
        take_backup(ctx, "database")
    assert PASSWORD not in str(failure.value) and "S3cr" not in str(failure.value)
    assert list_backups(ctx.store, "backups") == []
    assert list(ctx.store.list("backups/")) == []

    good = take_backup(open_backup_context(pg_settings), "database")
    assert [m.id for m in list_backups(ctx.store, "backups")] == [good.id]


KILLED_RUN = textwrap.dedent(
    """
    from steward.backup import open_backup_context, take_backup
    from steward.settings import load_settings
    take_backup(open_backup_context(load_settings()), "database")
    """
)


def test_a_backup_run_killed_outright_leaves_nothing_catalogued(pg_settings, tmp_path, ctx_for):
    # The dump writes a first part, then hangs: the run is killed while the upload is open.
    folder = _fake_pg_dump(tmp_path / "bin", f'{REAL_PG_DUMP} "$@" | head -c 3000\nsleep 60\n')
    env = {**os.environ, "STEWARD_BACKUP__PG_BIN_DIR": str(folder)}
    process = subprocess.Popen([sys.executable, "-c", KILLED_RUN], env=env, start_new_session=True)
    root = _store_root(pg_settings) / "backups"
    try:
        for _ in range(300):  # until the upload has started writing
            if list(root.rglob(".steward-tmp-*")):
                break
            time.sleep(0.1)
        assert list(root.rglob(".steward-tmp-*")), "the upload never started"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    ctx = ctx_for(pg_settings)
    assert list_backups(ctx.store, "backups") == []
    assert orphan_keys(ctx.store, "backups") == []
    later = ctx_for(pg_settings, clock=lambda: utcnow() + timedelta(hours=7))
    report = prune_backups(later)
    assert report.stale_uploads == 1 and not list(root.rglob(".steward-tmp-*"))
    good = take_backup(ctx, "database")
    assert [m.id for m in list_backups(ctx.store, "backups")] == [good.id]


def test_objects_without_manifest_are_orphans_that_prune_removes(sqlite_settings, ctx_for):
    ctx = ctx_for(sqlite_settings)
    kept = take_backup(ctx, "database")
    ctx.store.put("backups/app/sqlite/2026/01/01/20260101T000000Z-abcdef/database.sqlite.gz", b"x")
    assert orphan_keys(ctx.store, "backups") == [
        "backups/app/sqlite/2026/01/01/20260101T000000Z-abcdef/database.sqlite.gz"
    ]
    assert [m.id for m in list_backups(ctx.store, "backups")] == [kept.id]
    dry = prune_backups(ctx, dry_run=True)
    assert len(dry.orphan_objects) == 1 and ctx.store.exists(dry.orphan_objects[0])
    prune_backups(ctx)
    assert orphan_keys(ctx.store, "backups") == []
    assert [m.id for m in list_backups(ctx.store, "backups")] == [kept.id]


def test_wrong_or_missing_age_identity_is_a_clear_error(
    sqlite_settings, make_settings, ctx_for, steward_home
):
    from pyrage import x25519

    right, wrong = x25519.Identity.generate(), x25519.Identity.generate()
    recipients = json.dumps([str(right.to_public())])
    ctx = ctx_for(make_settings(backup__age_recipients=recipients))
    manifest = take_backup(ctx, "database")

    with pytest.raises(ConfigError, match="set backup.age_identity") as missing:
        verify_backup(ctx, manifest)
    assert str(right.to_public()) in str(missing.value)

    bad = ctx_for(make_settings(backup__age_recipients=recipients, backup__age_identity=str(wrong)))
    with pytest.raises(ConfigError, match="does not match any of its recipients") as mismatch:
        restore_backup(bad, manifest, f"sqlite:///{steward_home}/restored.db")
    assert str(wrong) not in str(mismatch.value) and not (steward_home / "restored.db").exists()

    good = ctx_for(
        make_settings(backup__age_recipients=recipients, backup__age_identity=str(right))
    )
    assert verify_backup(good, manifest).verified_at is not None


def test_concurrent_backup_runs_serialize(pg_settings, ctx_for):
    results, errors = [], []

    def run() -> None:
        try:
            with backup_lock(pg_settings):
                results.append(take_backup(ctx_for(pg_settings), "database"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(results) == 3
    ordered = sorted(results, key=lambda m: m.started_at)
    for earlier, later in zip(ordered, ordered[1:], strict=False):
        assert earlier.finished_at <= later.started_at  # never two dumps at once


def test_a_run_waiting_too_long_for_the_lock_is_busy(pg_settings, make_settings):
    impatient = make_settings(database__url=pg_settings.database_url, backup__lock_timeout_s="0.2")
    with backup_lock(pg_settings):
        with pytest.raises(BackupBusy, match="backup.lock_timeout_s"):
            with backup_lock(impatient):
                pass


def test_identity_from_a_file_as_age_keygen_writes_it(
    sqlite_settings, make_settings, ctx_for, tmp_path
):
    from pyrage import x25519

    identity = x25519.Identity.generate()
    key_file = tmp_path / "key.txt"
    key_file.write_text(f"# created: today\n# public key: {identity.to_public()}\n{identity}\n")
    recipients = json.dumps([str(identity.to_public())])
    manifest = take_backup(ctx_for(make_settings(backup__age_recipients=recipients)), "database")
    reader = ctx_for(
        make_settings(backup__age_recipients=recipients, backup__age_identity_file=str(key_file))
    )
    assert verify_backup(reader, manifest).verified_at is not None
    missing = ctx_for(make_settings(backup__age_identity_file=str(tmp_path / "nope.txt")))
    with pytest.raises(ConfigError, match="age_identity_file = .*nope.txt.* cannot be read"):
        verify_backup(missing, manifest)
