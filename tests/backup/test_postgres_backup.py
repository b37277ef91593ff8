"""PostgreSQL backups with the real pg_dump / pg_restore: round trip through the folder store
and moto S3, verification, restore into a new database, and pg_restore by hand."""

from __future__ import annotations

import json
import subprocess

import pytest
import sqlalchemy as sa

from steward.backup import (
    find_backup,
    list_backups,
    restore_backup,
    take_backup,
    verify_backup,
)
from steward.errors import BackupVerificationFailed, ConfigError
from tests.backup.conftest import PASSWORD, table_rows

TABLES = ["customers", "orders", 'reporting."Daily Totals"', "empty_table", "events"]


def _all_rows(url: str) -> dict[str, list[tuple]]:
    return {table: table_rows(url, table) for table in TABLES}


def test_round_trip_folder_store(pg_settings, ctx_for, make_pg_database):
    ctx = ctx_for(pg_settings)
    manifest = take_backup(ctx, "database")

    assert manifest.engine == "postgresql" and manifest.server_version.startswith("15")
    assert manifest.point_in_time is True
    assert manifest.tables["public.customers"]["rows"] == 300
    assert manifest.tables["public.orders"]["rows"] == 600
    assert manifest.tables["public.empty_table"]["rows"] == 0
    assert manifest.tables["reporting.Daily Totals"]["rows"] == 2
    assert "orders_customer_idx" in manifest.tables["public.orders"]["indexes"]
    assert manifest.tables["public.customers"]["method"] == "hash_record"
    assert manifest.tables["public.events"]["method"] == "text_hash"  # json has no hash function
    assert "balance_positive (c)" in manifest.tables["public.customers"]["constraints"]
    assert "orders_customer_id_fkey (f)" in manifest.tables["public.orders"]["constraints"]
    [record] = manifest.objects
    assert record["key"].startswith(f"backups/app/postgresql/{manifest.started_at:%Y/%m/%d}/")
    assert ctx.store.head(record["key"]).sha256 == record["sha256"]

    # The catalogue is the store: a fresh listing finds it, with its manifest next to the data.
    [listed] = list_backups(ctx.store, "backups")
    assert listed.id == manifest.id and listed.verified_at is None
    stored = ctx.store.get_bytes(manifest.manifest_key).decode()
    assert PASSWORD not in stored and "S3cr" not in stored

    verify_backup(ctx, manifest)
    reread = find_backup(ctx.store, "backups", manifest.id)
    assert reread.verified_at is not None and reread.verification["ok"] is True

    target = make_pg_database(install=False)  # a new, empty database
    done = restore_backup(ctx, reread, target)
    assert done["rows"] == 300 + 600 + 2 + 1 and done["replaced"] is False
    assert _all_rows(target) == _all_rows(pg_settings.database_url)


def test_round_trip_moto_s3_encrypted_and_sse(
    make_settings, make_pg_database, s3_url, moto_endpoint, ctx_for, pg_settings
):
    from pyrage import x25519

    identity = x25519.Identity.generate()
    settings = make_settings(
        database__url=pg_settings.database_url,
        objects__url=s3_url,
        objects__endpoint_url=moto_endpoint,
        objects__server_side_encryption="AES256",
        objects__multipart_threshold_mb="5",
        backup__part_size_mb="5",
        backup__age_recipients=json.dumps([str(identity.to_public())]),
        backup__age_identity=str(identity),
    )
    ctx = ctx_for(settings)
    manifest = take_backup(ctx, "database")
    assert manifest.encryption == {
        "client": "age",
        "recipients": [str(identity.to_public())],
        "server_side": "AES256",
        "kms_key_id": None,
    }
    record = manifest.objects[0]
    assert record["name"].endswith(".age")
    assert ctx.store.get_bytes(record["key"]).startswith(b"age-encryption.org/v1")
    assert str(identity) not in ctx.store.get_bytes(manifest.manifest_key).decode()

    verify_backup(ctx, manifest)
    target = make_pg_database(install=False)  # a new, empty database
    restore_backup(ctx, manifest, target)
    assert _all_rows(target) == _all_rows(settings.database_url)


def test_pg_restore_by_hand_gives_back_the_tables(pg_settings, ctx_for, make_pg_database, tmp_path):
    ctx = ctx_for(pg_settings)
    manifest = take_backup(ctx, "database")
    dump = tmp_path / "dump.pgdump"
    dump.write_bytes(ctx.store.get_bytes(manifest.objects[0]["key"]))
    target = make_pg_database(install=False)  # a new, empty database
    database = sa.engine.make_url(target).database
    subprocess.run(
        ["/usr/lib/postgresql/15/bin/pg_restore", "-h", "127.0.0.1", "-U", "postgres", "-d",
         database, "--no-owner", "--exit-on-error", str(dump)],
        check=True,
    )  # fmt: skip
    assert _all_rows(target) == _all_rows(pg_settings.database_url)


def test_restore_refuses_a_non_empty_target_unless_replace(pg_settings, ctx_for):
    ctx = ctx_for(pg_settings)
    manifest = take_backup(ctx, "database")
    source = pg_settings.database_url
    with pytest.raises(ConfigError, match=r"is not empty \(12 tables\).*--replace"):
        restore_backup(ctx, manifest, source)
    engine = sa.create_engine(source)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM orders WHERE id > 10"))
    engine.dispose()
    done = restore_backup(ctx, manifest, source, replace=True)
    assert done["replaced"] is True
    assert len(table_rows(source, "orders")) == 600


def test_bad_restore_target_is_a_clear_error(pg_settings, ctx_for):
    ctx = ctx_for(pg_settings)
    manifest = take_backup(ctx, "database")
    with pytest.raises(ConfigError, match="accepted a PostgreSQL URL"):
        restore_backup(ctx, manifest, "mysql://root@localhost/x")


def test_verify_names_what_differs(pg_settings, ctx_for):
    ctx = ctx_for(pg_settings)
    manifest = take_backup(ctx, "database")
    manifest.tables["public.orders"]["checksum"] = "12345"
    manifest.tables["public.customers"]["indexes"].append("ghost_idx")
    with pytest.raises(BackupVerificationFailed) as failure:
        verify_backup(ctx, manifest)
    message = str(failure.value)
    assert "public.orders: content checksum differs (600 rows)" in message
    assert "public.customers: indexes missing after restore: ghost_idx" in message
    assert find_backup(ctx.store, "backups", manifest.id).verified_at is None


def test_a_missing_or_too_old_client_names_the_package(tmp_path):
    from steward.backup.pg_tools import find_pg_tool

    old = tmp_path / "pg_dump"
    old.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n")
    old.chmod(0o755)
    with pytest.raises(ConfigError, match="postgresql-client-99") as failure:
        find_pg_tool("pg_dump", 99, tmp_path)
    assert f"{old} is version 9" in str(failure.value)
    assert find_pg_tool("pg_dump", 15, tmp_path).path == "/usr/lib/postgresql/15/bin/pg_dump"


def test_directory_format_with_parallel_jobs_round_trip(
    pg_settings, make_settings, ctx_for, make_pg_database
):
    from pyrage import x25519

    identity = x25519.Identity.generate()
    settings = make_settings(
        database__url=pg_settings.database_url,
        backup__pg_format="directory",
        backup__dump_jobs="2",
        backup__age_recipients=json.dumps([str(identity.to_public())]),
        backup__age_identity=str(identity),
    )
    ctx = ctx_for(settings)
    manifest = take_backup(ctx, "database")
    names = [o["name"] for o in manifest.objects]
    assert "pgdir-toc.dat.age" in names and len(names) > 3
    assert all(o["format"] == "pg_dump directory + age" for o in manifest.objects)
    assert list_backups(ctx.store, "backups")[0].id == manifest.id  # flat: no orphan subfolder
    verify_backup(ctx, manifest)
    target = make_pg_database(install=False)  # a new, empty database
    restore_backup(ctx, manifest, target)
    assert _all_rows(target) == _all_rows(settings.database_url)


def test_an_encrypted_backup_decrypts_with_the_stock_age_tool(
    pg_settings, make_settings, ctx_for, make_pg_database, tmp_path
):
    import shutil

    from pyrage import x25519

    from tests.conftest import service_missing

    if shutil.which("age") is None:
        service_missing("the `age` command (Debian package age)")
    identity = x25519.Identity.generate()
    settings = make_settings(
        database__url=pg_settings.database_url,
        backup__age_recipients=json.dumps([str(identity.to_public())]),
    )
    ctx = ctx_for(settings)
    manifest = take_backup(ctx, "database")
    encrypted = tmp_path / "database.pgdump.age"
    encrypted.write_bytes(ctx.store.get_bytes(manifest.objects[0]["key"]))
    key = tmp_path / "key.txt"
    key.write_text(f"{identity}\n")
    dump = tmp_path / "database.pgdump"
    subprocess.run(["age", "-d", "-i", str(key), "-o", str(dump), str(encrypted)], check=True)
    target = make_pg_database(install=False)  # a new, empty database
    database = sa.engine.make_url(target).database
    subprocess.run(
        ["/usr/lib/postgresql/15/bin/pg_restore", "-h", "127.0.0.1", "-U", "postgres", "-d",
         database, "--no-owner", "--exit-on-error", str(dump)],
        check=True,
    )  # fmt: skip
    assert _all_rows(target) == _all_rows(settings.database_url)


def test_verify_on_a_configured_server_drops_its_scratch_database(
    pg_settings, make_settings, ctx_for
):
    import uuid

    from tests.conftest import PG_ADMIN_URL

    prefix = f"stv_{uuid.uuid4().hex[:8]}_"
    settings = make_settings(
        database__url=pg_settings.database_url,
        backup__verify_url=PG_ADMIN_URL,
        backup__scratch_prefix=prefix,
        backup__restore_jobs="1",
    )
    ctx = ctx_for(settings)
    manifest = verify_backup(ctx, take_backup(ctx, "database"))
    assert manifest.verification["ok"] is True and manifest.verification["rows"] == 903
    admin = sa.create_engine(PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"))
    with admin.connect() as conn:
        left = conn.execute(
            sa.text("SELECT count(*) FROM pg_database WHERE datname LIKE :p"), {"p": prefix + "%"}
        ).scalar_one()
    admin.dispose()
    assert left == 0
