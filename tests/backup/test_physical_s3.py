"""Physical backups with pgBackRest's repository in the S3 object store (moto over HTTPS with a
self-signed certificate the settings trust through ``objects.ca_file``), encrypted: backup,
verification by restore and point-in-time recovery, with the keys never shown."""

from __future__ import annotations

import json
import stat
import time
from datetime import UTC, datetime

import boto3
import pytest

from steward.backup import open_backup_context, setup_physical
from steward.backup.pgbackrest import pgbackrest, write_config
from steward.errors import ConfigError
from tests.backup.conftest import fill_postgres
from tests.backup.test_backup_cli import _steward
from tests.backup.test_physical import _fingerprint, _write, physical_base, started_copy
from tests.fixtures.tls_s3 import tls_moto

__all__ = ["physical_base"]  # the fixture, imported for this module's tests

KEY, SECRET = "steward-physical-key", "s3cr3t/Key+with=signs"
CIPHER = "tr0ub4dor&3 repo passphrase"


@pytest.fixture
def s3_physical(make_private_postgres, make_settings, physical_base):
    config = physical_base / "pgbackrest.conf"
    command = f"pgbackrest --config={config} --stanza=app archive-push %p"
    cluster = make_private_postgres(
        settings={"archive_mode": "on", "archive_command": f"'{command}'", "wal_level": "replica"}
    )
    url = cluster.create_database("shop")
    fill_postgres(url, customers=200)
    with tls_moto(physical_base) as (endpoint, ca_file):
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                          verify=str(ca_file))  # fmt: skip
        s3.create_bucket(Bucket="steward-physical")
        settings = make_settings(
            database__url=url,
            objects__url="s3://steward-physical/shop",
            objects__endpoint_url=endpoint,
            objects__ca_file=str(ca_file),
            objects__access_key_id=KEY,
            objects__secret_access_key=SECRET,
            backup__physical__repository="objects",
            backup__physical__data_dir=str(cluster.data_dir),
            backup__physical__socket_dir=str(cluster.root),
            backup__physical__port=str(cluster.port),
            backup__physical__config_file=str(config),
            backup__physical__scratch_dir=str(physical_base / "scratch"),
            backup__physical__cipher_pass=CIPHER,
        )
        ctx = open_backup_context(settings)
        assert setup_physical(ctx) == command
        yield cluster, ctx, url, s3


def test_backup_verify_and_point_in_time_recovery_with_the_repository_in_s3(
    s3_physical, physical_base, tmp_path
):
    cluster, ctx, url, s3 = s3_physical
    run = _steward("physical", "run", "--type", "full", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "(full, pgBackRest" in run.stdout and "verified by a restore" in run.stdout

    def keys(prefix: str) -> list[str]:
        found = s3.list_objects_v2(Bucket="steward-physical", Prefix=prefix, MaxKeys=50)
        return [o["Key"] for o in found.get("Contents", [])]

    assert keys("shop/pgbackrest/archive/app/")  # WAL archived into the bucket
    assert any(k.endswith("/manifest.json") for k in keys("shop/backups/"))
    info = s3.get_object(Bucket="steward-physical", Key="shop/pgbackrest/backup/app/backup.info")
    assert info["Body"].read().startswith(b"Salted__")  # aes-256-cbc: no readable catalogue
    listed = _steward("list", "--json", cwd=tmp_path)
    [backup] = json.loads(listed.stdout)
    assert backup["type"] == "full" and backup["good"] and backup["recoverable_to"]
    assert keys(f"shop/pgbackrest/backup/app/{backup['pgbackrest_label']}/")  # its files

    _write(url, "INSERT INTO orders (customer_id, total) SELECT id, 2 FROM customers")
    time.sleep(1.5)
    noted, expected = datetime.now(UTC), _fingerprint(url)
    time.sleep(1.5)
    _write(url, "DELETE FROM orders WHERE total = 2")
    pgbackrest(ctx.settings, "check")  # the WAL past the noted moment is in the bucket
    target = physical_base / "restored"
    done = _steward("restore", "--to-time", noted.isoformat(), "--to", str(target), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with started_copy(cluster, target) as restored_url:
        assert _fingerprint(restored_url) == expected
    assert expected["public.orders"]["rows"] == 600 and _fingerprint(url) != expected

    said = run.stdout + run.stderr + done.stdout + done.stderr + listed.stdout + listed.stderr
    assert not any(secret in said for secret in (KEY, SECRET, CIPHER))
    config = ctx.settings.backup.physical.config_file
    assert stat.S_IMODE(config.stat().st_mode) == 0o600  # the keys' only home, owner-only


def test_an_s3_repository_needs_an_https_endpoint_and_an_s3_url(make_settings, tmp_path):
    base = {"backup__physical__data_dir": str(tmp_path), "backup__physical__repository": "objects",
            "backup__physical__config_file": str(tmp_path / "pgbackrest.conf")}  # fmt: skip
    plain = make_settings(objects__url="s3://b/p", objects__endpoint_url="http://127.0.0.1:9",
                          objects__secret_access_key=SECRET, objects__access_key_id=KEY,
                          **base)  # fmt: skip
    with pytest.raises(ConfigError, match="speaks only HTTPS") as raised:
        write_config(plain)
    assert SECRET not in str(raised.value)
    folder = make_settings(objects__url=(tmp_path / "o").as_uri(), **base)
    with pytest.raises(ConfigError, match="needs objects.url = s3://bucket/prefix"):
        write_config(folder)
