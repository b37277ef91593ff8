"""Restores that change nothing when they fail, targets that are created or blamed, and
plaintext that never lands in the system's temporary folder."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa

from steward.backup import restore_backup, take_backup, verify_backup
from steward.errors import ConfigError, ObjectCorrupted
from tests.backup.conftest import table_rows
from tests.backup.test_backup_cli import _steward

REAL_PG_RESTORE = "/usr/lib/postgresql/15/bin/pg_restore"


def _shape(url: str) -> dict[str, object]:
    """What a DBA would compare: constraints, indexes and every row of every table."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        constraints = conn.execute(
            sa.text("SELECT conrelid::regclass::text, conname FROM pg_constraint "
                    "WHERE connamespace <> 'pg_catalog'::regnamespace ORDER BY 1, 2")
        ).all()  # fmt: skip
        indexes = conn.execute(
            sa.text("SELECT tablename, indexname, indexdef FROM pg_indexes "
                    "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2")
        ).all()  # fmt: skip
    engine.dispose()
    rows = {t: table_rows(url, t) for t in ("customers", "orders", "extra", "empty_table")}
    return {"constraints": constraints, "indexes": indexes, "rows": rows}


def test_replace_that_fails_part_way_leaves_the_target_exactly_as_it_was(
    pg_settings, ctx_for, make_pg_database, tmp_path
):
    ctx = ctx_for(pg_settings)
    manifest = take_backup(ctx, "database")
    target = make_pg_database(install=False)  # a new, empty database
    restore_backup(ctx, manifest, target)
    engine = sa.create_engine(target)
    with engine.begin() as conn:  # the target moved on, and gained a table the backup lacks
        conn.execute(sa.text("UPDATE customers SET name = 'changed' WHERE id <= 10"))
        conn.execute(sa.text("DELETE FROM orders WHERE id > 500"))
        conn.execute(sa.text(
            "CREATE TABLE extra (id int PRIMARY KEY, customer_id bigint REFERENCES customers(id))"
        ))  # fmt: skip
        conn.execute(sa.text("CREATE INDEX extra_customer_idx ON extra (customer_id)"))
        conn.execute(sa.text("INSERT INTO extra SELECT g, g FROM generate_series(1, 5) g"))
    engine.dispose()
    before = _shape(target)

    failed = _steward("restore", manifest.id, "--to", target, "--replace", cwd=tmp_path)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    message = " ".join(failed.stderr.split())
    assert "pg_restore failed" in message and "depend" in message
    assert "Nothing was changed" in message and "rolled back" in message
    assert _shape(target) == before


def _dropped(url: str) -> str:
    """``url`` after dropping its database (the fixture's teardown drops it again if made)."""
    admin = sa.create_engine(url.rsplit("/", 1)[0] + "/postgres")
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f'DROP DATABASE "{sa.engine.make_url(url).database}"'))
    admin.dispose()
    return url


def test_restore_creates_a_missing_target_database(pg_settings, ctx_for, make_pg_database):
    ctx = ctx_for(pg_settings)
    manifest = take_backup(ctx, "database")
    scratch = _dropped(make_pg_database())  # a name the server does not have
    done = restore_backup(ctx, manifest, scratch)
    assert done["created"] is True and done["replaced"] is False
    assert table_rows(scratch, "orders") == table_rows(pg_settings.database_url, "orders")


def test_a_failed_restore_into_a_created_database_drops_it_again(
    pg_settings, ctx_for, make_pg_database
):
    ctx = ctx_for(pg_settings)
    manifest = take_backup(ctx, "database")
    path = Path(pg_settings.objects_url.removeprefix("file://")) / manifest.objects[0]["key"]
    path.write_bytes(path.read_bytes()[:-100])  # cut short in the store
    scratch = _dropped(make_pg_database())
    name = sa.engine.make_url(scratch).database
    admin = sa.create_engine(scratch.rsplit("/", 1)[0] + "/postgres")
    with pytest.raises(ObjectCorrupted, match="created for this restore, was dropped again"):
        restore_backup(ctx, manifest, scratch)
    with admin.connect() as conn:
        left = conn.execute(sa.text("SELECT count(*) FROM pg_database WHERE datname = :n"),
                            {"n": name}).scalar_one()  # fmt: skip
    admin.dispose()
    assert left == 0


def test_an_unreachable_target_is_blamed_not_database_url(pg_settings, ctx_for):
    ctx = ctx_for(pg_settings)
    manifest = take_backup(ctx, "database")
    with pytest.raises(ConfigError) as failure:
        restore_backup(ctx, manifest, "postgresql://postgres@127.0.0.1:1/restored")
    message = str(failure.value)
    assert "127.0.0.1:1/restored" in message and "check that URL" in message
    assert "database.url" not in message


def _spy_pg_restore(folder: Path, trap: Path, log: Path) -> Path:
    """A pg_restore that records its arguments, the files in the system temp folder and the
    mode of every file it is given, then runs the real one."""
    folder.mkdir(parents=True)
    script = folder / "pg_restore"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "--version" ]; then exec {REAL_PG_RESTORE} --version; fi\n'
        "{\n"
        '  echo "ARGS $*"\n'
        f"  find {trap} -type f | sed 's/^/TMPFILE /'\n"
        '  for a in "$@"; do if [ -e "$a" ]; then '
        "find \"$a\" -type f -exec stat -c 'SPOOL %a %n' {} \\; ; fi; done\n"
        f"}} >> {log}\n"
        f'exec {REAL_PG_RESTORE} "$@"\n'
    )
    script.chmod(0o755)
    return folder


@pytest.mark.parametrize("pg_format", ["custom", "directory"])
def test_verify_never_puts_plaintext_in_the_system_temp_folder(
    pg_settings, make_settings, ctx_for, tmp_path, pg_format
):
    from pyrage import x25519

    identity = x25519.Identity.generate()
    settings = make_settings(
        database__url=pg_settings.database_url,
        backup__pg_format=pg_format,
        backup__age_recipients=json.dumps([str(identity.to_public())]),
        backup__age_identity=str(identity),
    )
    manifest = take_backup(ctx_for(settings), "database")
    trap, log = tmp_path / "system-tmp", tmp_path / "pg_restore.log"
    trap.mkdir()
    spy = _spy_pg_restore(tmp_path / "bin", trap, log)
    env = {"TMPDIR": str(trap), "STEWARD_BACKUP__PG_BIN_DIR": str(spy)}
    done = _steward("verify", manifest.id, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr

    lines = log.read_text().splitlines()
    assert [line for line in lines if line.startswith("TMPFILE")] == []
    spooled = [line.split(" ", 2) for line in lines if line.startswith("SPOOL")]
    if pg_format == "custom":  # streamed through stdin: no file at all
        assert spooled == []
    else:
        home = str(Path(settings.home).resolve() / "spool")
        assert spooled and all(mode == "600" and path.startswith(home) for _, mode, path in spooled)
    spool = Path(settings.home) / "spool"
    assert not spool.exists() or list(spool.iterdir()) == []  # removed afterwards


def test_sqlite_verify_keeps_the_plain_image_under_the_steward_home(
    sqlite_settings, ctx_for, monkeypatch
):
    import steward.backup.sqlite as sqlite_backup

    ctx = ctx_for(sqlite_settings)
    manifest = take_backup(ctx, "database")
    opened: list[tuple[str, int]] = []
    real_connect = sqlite3.connect

    def spy(path, *args, **kwargs):
        opened.append((str(path), stat.S_IMODE(Path(path).stat().st_mode)))
        return real_connect(path, *args, **kwargs)

    monkeypatch.setattr(sqlite_backup.sqlite3, "connect", spy)
    verify_backup(ctx, manifest)
    [(path, mode)] = opened
    assert path.startswith(str(Path(sqlite_settings.home).resolve() / "spool")) and mode == 0o600
