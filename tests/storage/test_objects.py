"""One contract for both object stores: the folder store and S3 (moto's server over HTTP).

Every test in ``TestContract`` runs against both stores; store-specific behaviour (S3 error
translation, folder restore delays) follows below.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from steward.errors import (
    ConfigError,
    ObjectArchived,
    ObjectCorrupted,
    ObjectNotFound,
    SourceUnavailable,
    is_transient,
)
from steward.settings import ObjectsSettings, Settings
from steward.storage import FolderStore, LifecycleRule, ObjectStore, S3Store, open_object_store

MIB = 1024 * 1024


class FakeClock:
    """A clock the test moves forward by hand (restore delays, expiry)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class ReadOnlyStream:
    """A non-seekable binary stream, like a pipe or an HTTP body."""

    def __init__(self, data: bytes) -> None:
        self._buffer = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._buffer.read(n)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["folder", "s3"])
def make_store(
    request: pytest.FixtureRequest,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    clock: FakeClock,
) -> Callable[..., ObjectStore]:
    """Factory of the parametrized store, built from settings overrides."""

    def make(**overrides: str) -> ObjectStore:
        if request.param == "s3":
            overrides.setdefault("objects__url", request.getfixturevalue("s3_url"))
            overrides.setdefault("objects__endpoint_url", request.getfixturevalue("moto_endpoint"))
        else:
            overrides.setdefault("objects__url", (tmp_path / "objects").as_uri())
        return open_object_store(make_settings(**overrides), clock=clock)

    return make


@pytest.fixture
def store(make_store: Callable[..., ObjectStore]) -> ObjectStore:
    return make_store()


def raw_s3(store: S3Store) -> object:
    return boto3.client("s3", endpoint_url=store.settings.endpoint_url, region_name="us-east-1")


def overwrite_behind_store(store: ObjectStore, key: str, data: bytes) -> None:
    """Replace an object's bytes without going through the store (keeps its sha256 metadata)."""
    if isinstance(store, S3Store):
        client = raw_s3(store)
        full_key = store.prefix + key
        metadata = client.head_object(Bucket=store.bucket, Key=full_key)["Metadata"]
        client.put_object(Bucket=store.bucket, Key=full_key, Body=data, Metadata=metadata)
    else:
        assert isinstance(store, FolderStore)
        (store.root / key).write_bytes(data)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class TestContract:
    def test_round_trip_from_bytes_and_streams(self, store: ObjectStore) -> None:
        payloads = {
            "batches/bytes.bin": b"row-1\nrow-2\n",
            "batches/seekable.bin": os.urandom(300_000),
            "batches/pipe.bin": os.urandom(2 * MIB + 17),
            "batches/empty.bin": b"",
        }
        store.put("batches/bytes.bin", payloads["batches/bytes.bin"])
        store.put("batches/seekable.bin", io.BytesIO(payloads["batches/seekable.bin"]))
        info = store.put("batches/pipe.bin", ReadOnlyStream(payloads["batches/pipe.bin"]))
        store.put("batches/empty.bin", b"")

        assert (info.size, info.sha256) == (2 * MIB + 17, sha(payloads["batches/pipe.bin"]))
        for key, data in payloads.items():
            assert store.get_bytes(key) == data
        with store.open("batches/pipe.bin") as reader:
            chunks = iter(lambda: reader.read(64 * 1024), b"")
            assert b"".join(chunks) == payloads["batches/pipe.bin"]

    def test_large_object_goes_multipart_and_round_trips(
        self, make_store: Callable[..., ObjectStore]
    ) -> None:
        store = make_store(objects__multipart_threshold_mb="5", objects__multipart_chunk_mb="5")
        data = os.urandom(11 * MIB)

        info = store.put("backups/big.dump", ReadOnlyStream(data))

        assert (info.size, info.sha256) == (len(data), sha(data))
        # S3's checksum of a multipart upload is one of its parts' checksums: none reported
        assert info.stored_sha256 == ("" if isinstance(store, S3Store) else sha(data))
        assert store.head("backups/big.dump").sha256 == sha(data)
        assert store.get_bytes("backups/big.dump") == data
        if isinstance(store, S3Store):  # a multipart ETag ends with "-<number of parts>"
            raw = raw_s3(store).head_object(
                Bucket=store.bucket, Key=store.prefix + "backups/big.dump"
            )
            assert raw["ETag"].strip('"').endswith("-3")

    def test_head_reports_what_was_written(self, store: ObjectStore) -> None:
        data = b'{"order_id": 1}\n' * 100
        store.put(
            "archive/orders.jsonl",
            data,
            storage_class="STANDARD_IA",
            metadata={"Rows": "100", "bytes": 1600},
        )

        info = store.head("archive/orders.jsonl")

        assert info.key == "archive/orders.jsonl"
        assert (info.size, info.sha256) == (len(data), sha(data))
        assert info.storage_class == "STANDARD_IA"
        assert info.metadata == {"rows": "100", "bytes": "1600"}
        assert (info.restore, info.readable) == ("none", True)
        assert info.last_modified.tzinfo is not None
        assert store.exists("archive/orders.jsonl")
        assert not store.exists("archive/missing.jsonl")

    def test_missing_object_is_not_found_naming_the_key(self, store: ObjectStore) -> None:
        for call in (store.head, store.open, store.get_bytes):
            with pytest.raises(ObjectNotFound, match="archive/missing.jsonl"):
                call("archive/missing.jsonl")

    def test_list_by_prefix_in_key_order(self, store: ObjectStore) -> None:
        if isinstance(store, S3Store):
            store.list_page_size = 2  # make the listing span several pages
        for key in ["b/2", "a/10", "a/2", "a/1", "ab/x", "c"]:
            store.put(key, key.encode())

        assert [i.key for i in store.list("a/")] == ["a/1", "a/10", "a/2"]
        assert [i.key for i in store.list("a")] == ["a/1", "a/10", "a/2", "ab/x"]
        everything = list(store.list())
        assert [i.key for i in everything] == ["a/1", "a/10", "a/2", "ab/x", "b/2", "c"]
        assert all(i.sha256 == sha(i.key.encode()) for i in everything)
        assert [(i.key, i.size) for i in store.list("b/", details=False)] == [("b/2", 3)]
        assert list(store.list("nothing/")) == []
        with pytest.raises(ConfigError, match=r"\.\./x"):
            store.list("../x")

    def test_delete_is_idempotent(self, store: ObjectStore) -> None:
        store.put("tmp/one", b"1")

        store.delete("tmp/one")
        store.delete("tmp/one")
        store.delete("tmp/never-existed")

        assert not store.exists("tmp/one")
        assert list(store.list("tmp/")) == []

    def test_delete_many_removes_the_keys_given_and_only_them(self, store: ObjectStore) -> None:
        for name in ("a", "b", "keep"):
            store.put(f"tmp/{name}", name.encode())

        store.delete_many(["tmp/a", "tmp/b", "tmp/never-existed"])
        store.delete_many([])

        assert [info.key for info in store.list("tmp/")] == ["tmp/keep"]

    def test_put_reports_the_stores_own_checksum_of_what_it_holds(self, store: ObjectStore) -> None:
        data = os.urandom(3000)

        sent = store.put("staged/p.bin", data)
        streamed = store.put("staged/s.bin", ReadOnlyStream(data))

        assert sent.stored_sha256 == streamed.stored_sha256 == sha(data)  # no HEAD needed
        assert store.head("staged/p.bin").stored_sha256 == sha(data)

    def test_copy_reports_the_stores_own_checksum_of_the_copy(self, store: ObjectStore) -> None:
        data = os.urandom(5000)
        store.put("staged/c.bin", data, metadata={"rows": "7"})

        copied = store.copy("staged/c.bin", "final/c.bin", storage_class="STANDARD_IA", size=5000)

        assert copied.stored_sha256 == sha(data)  # proven without reading the copy back
        info = store.head("final/c.bin")
        assert (info.size, info.sha256, info.storage_class) == (5000, sha(data), "STANDARD_IA")
        assert info.metadata == {"rows": "7"}
        assert store.get_bytes("final/c.bin") == data
        with pytest.raises(ObjectNotFound, match="staged/missing"):
            store.copy("staged/missing", "final/missing", size=10)

    def test_corrupted_object_is_detected_on_read(self, store: ObjectStore) -> None:
        info = store.put("archive/batch-1.jsonl", b"original bytes")
        overwrite_behind_store(store, "archive/batch-1.jsonl", b"tampered bytes")

        with pytest.raises(ObjectCorrupted, match="archive/batch-1.jsonl"):
            store.get_bytes("archive/batch-1.jsonl")
        with pytest.raises(ObjectCorrupted, match="archive/batch-1.jsonl"):
            store.verify("archive/batch-1.jsonl", size=info.size, sha256=info.sha256)

    def test_verify_catches_size_and_checksum_mismatch(self, store: ObjectStore) -> None:
        data = b"verified payload"
        store.put("archive/v.bin", data)

        assert store.verify("archive/v.bin", size=len(data), sha256=sha(data)).size == len(data)
        with pytest.raises(ObjectCorrupted, match="archive/v.bin"):
            store.verify("archive/v.bin", size=len(data) + 1, sha256=sha(data))
        with pytest.raises(ObjectCorrupted, match="archive/v.bin"):
            store.verify("archive/v.bin", size=len(data), sha256=sha(b"something else"))

    def test_set_storage_class_keeps_checksum_and_metadata(self, store: ObjectStore) -> None:
        data = os.urandom(4096)
        store.put("archive/t.bin", data, metadata={"table": "orders"})

        moved = store.set_storage_class("archive/t.bin", "STANDARD_IA")

        assert moved.storage_class == "STANDARD_IA"
        info = store.head("archive/t.bin")
        assert (info.storage_class, info.sha256, info.metadata) == (
            "STANDARD_IA",
            sha(data),
            {"table": "orders"},
        )
        assert store.get_bytes("archive/t.bin") == data
        with pytest.raises(ConfigError, match="FROZEN"):
            store.set_storage_class("archive/t.bin", "FROZEN")

    def test_cold_object_needs_a_restore_before_reading(
        self, store: ObjectStore, clock: FakeClock
    ) -> None:
        data = b"rows from 2019"
        store.put("archive/2019.jsonl", data, storage_class="GLACIER")
        assert not store.head("archive/2019.jsonl").readable

        with pytest.raises(ObjectArchived, match=r"archive/2019\.jsonl.*request a restore"):
            store.get_bytes("archive/2019.jsonl")
        with pytest.raises(ObjectArchived):
            store.set_storage_class("archive/2019.jsonl", "STANDARD")

        requested = store.request_restore("archive/2019.jsonl", days=2, tier="Standard")
        if isinstance(store, FolderStore):  # moto completes restores at once; the folder waits
            assert requested.restore == "pending"
            assert store.request_restore("archive/2019.jsonl", days=2).restore == "pending"
            with pytest.raises(ObjectArchived, match="in progress"):
                store.get_bytes("archive/2019.jsonl")
            clock.advance(hours=4, minutes=1)

        info = store.head("archive/2019.jsonl")
        assert (info.restore, info.readable) == ("available", True)
        assert info.restore_expires is not None and info.restore_expires > clock()
        assert store.get_bytes("archive/2019.jsonl") == data
        back = store.set_storage_class("archive/2019.jsonl", "STANDARD")
        assert (back.storage_class, back.sha256) == ("STANDARD", sha(data))

    def test_restore_requests_are_checked(self, store: ObjectStore) -> None:
        store.put("archive/deep.bin", b"deep", storage_class="DEEP_ARCHIVE")
        store.put("archive/warm.bin", b"warm")

        with pytest.raises(ConfigError, match="DEEP_ARCHIVE.*Expedited"):
            store.request_restore("archive/deep.bin", tier="Expedited")
        with pytest.raises(ConfigError, match="'Fast'"):
            store.request_restore("archive/deep.bin", tier="Fast")
        with pytest.raises(ConfigError, match="days"):
            store.request_restore("archive/deep.bin", days=0)
        assert store.request_restore("archive/warm.bin").restore == "none"  # nothing to do

    def test_lifecycle_rules(self, store: ObjectStore) -> None:
        rules = [
            LifecycleRule(prefix="archive/", days=30, storage_class="STANDARD_IA"),
            LifecycleRule(prefix="archive/", days=180, storage_class="GLACIER"),
        ]

        installed = store.put_lifecycle(rules)

        if isinstance(store, S3Store):
            assert installed is True
            assert store.get_lifecycle() == rules
        else:
            assert installed is False
            assert store.get_lifecycle() == []

    @pytest.mark.parametrize("key", ["", "/etc/passwd", "a/../b", "..", "a//b", "a/", "./a"])
    def test_bad_keys_are_rejected_naming_the_key(self, store: ObjectStore, key: str) -> None:
        with pytest.raises(ConfigError) as raised:
            store.put(key, b"x")
        assert repr(key) in str(raised.value)
        with pytest.raises(ConfigError):
            store.head(key)

    def test_reserved_or_non_ascii_metadata_is_rejected(self, store: ObjectStore) -> None:
        with pytest.raises(ConfigError, match="sha256"):
            store.put("k", b"x", metadata={"sha256": "0" * 64})
        with pytest.raises(ConfigError, match="note"):
            store.put("k", b"x", metadata={"note": "caf\u00e9"})
        assert not store.exists("k")


# --- open_object_store ----------------------------------------------------------------------


def test_default_store_is_a_folder_under_home(
    make_settings: Callable[..., Settings], steward_home: Path
) -> None:
    store = open_object_store(make_settings())

    assert isinstance(store, FolderStore)
    assert store.root == (steward_home / "objects").resolve()


# --- folder store specifics -----------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path, clock: FakeClock) -> FolderStore:
    return FolderStore((tmp_path / "objects").as_uri(), clock=clock)


def test_folder_restore_takes_the_tier_delay_and_expires(
    folder: FolderStore, clock: FakeClock
) -> None:
    folder.put("archive/old.bin", b"old", storage_class="DEEP_ARCHIVE")

    assert folder.request_restore("archive/old.bin", days=3, tier="Bulk").restore == "pending"
    clock.advance(hours=47)
    assert folder.head("archive/old.bin").restore == "pending"
    clock.advance(hours=1, minutes=1)
    assert folder.get_bytes("archive/old.bin") == b"old"

    clock.advance(days=3)
    assert folder.head("archive/old.bin").restore == "none"
    with pytest.raises(ObjectArchived, match="request a restore"):
        folder.get_bytes("archive/old.bin")


def test_folder_expedited_glacier_restore_takes_minutes(
    folder: FolderStore, clock: FakeClock
) -> None:
    folder.put("archive/g.bin", b"g", storage_class="GLACIER")
    folder.request_restore("archive/g.bin", days=1, tier="Expedited")

    clock.advance(minutes=4)
    assert folder.head("archive/g.bin").restore == "pending"
    clock.advance(minutes=2)
    assert folder.head("archive/g.bin").restore == "available"


def test_folder_keeps_metadata_out_of_listings_and_leaves_no_temp_files(
    folder: FolderStore,
) -> None:
    folder.put("a/b/c.bin", b"c")
    folder.put("a/b/c.bin", b"overwritten")
    folder.put("a/d.bin", io.BytesIO(b"d"))

    assert [i.key for i in folder.list()] == ["a/b/c.bin", "a/d.bin"]
    files = sorted(p.relative_to(folder.root).as_posix() for p in folder.root.rglob("*"))
    assert not [name for name in files if "steward-tmp" in name]
    sidecar = json.loads((folder.root / ".steward-meta/a/b/c.bin.json").read_text())
    assert sidecar["sha256"] == sha(b"overwritten")
    with pytest.raises(ConfigError, match="reserved"):
        folder.put(".steward-meta/x", b"x")


def test_folder_key_nested_under_an_object_is_a_config_error(folder: FolderStore) -> None:
    folder.put("a", b"file")

    with pytest.raises(ConfigError, match="'a/b'"):
        folder.put("a/b", b"nested")
    assert folder.get_bytes("a") == b"file"


def test_folder_url_must_be_an_absolute_file_url() -> None:
    with pytest.raises(ConfigError, match="file:///absolute/path"):
        FolderStore("file://relative/objects")


# --- S3 specifics ---------------------------------------------------------------------------


@pytest.fixture
def s3(
    make_settings: Callable[..., Settings], s3_url: str, moto_endpoint: str, clock: FakeClock
) -> S3Store:
    settings = make_settings(objects__url=s3_url, objects__endpoint_url=moto_endpoint)
    store = open_object_store(settings, clock=clock)
    assert isinstance(store, S3Store)
    return store


def test_s3_lifecycle_keeps_rules_steward_does_not_own(s3: S3Store) -> None:
    client = raw_s3(s3)
    team_rule = {
        "ID": "team-expire-tmp",
        "Status": "Enabled",
        "Filter": {"Prefix": "tmp/"},
        "Expiration": {"Days": 7},
    }
    client.put_bucket_lifecycle_configuration(
        Bucket=s3.bucket, LifecycleConfiguration={"Rules": [team_rule]}
    )

    assert s3.put_lifecycle([LifecycleRule("archive/", 30, "STANDARD_IA")])
    assert s3.put_lifecycle([LifecycleRule("archive/", 90, "GLACIER")])  # replaces, not adds
    rules = client.get_bucket_lifecycle_configuration(Bucket=s3.bucket)["Rules"]
    ours = [rule for rule in rules if rule["ID"].startswith("steward-")]
    assert [rule["Filter"]["Prefix"] for rule in ours] == [s3.prefix + "archive/"]
    assert "team-expire-tmp" in [rule["ID"] for rule in rules]
    assert s3.get_lifecycle() == [LifecycleRule("archive/", 90, "GLACIER")]

    assert s3.put_lifecycle([])
    rules = client.get_bucket_lifecycle_configuration(Bucket=s3.bucket)["Rules"]
    assert [rule["ID"] for rule in rules] == ["team-expire-tmp"]


def test_s3_lifecycle_off_when_the_store_does_not_support_it(
    make_settings: Callable[..., Settings], s3_url: str, moto_endpoint: str
) -> None:
    settings = make_settings(
        objects__url=s3_url,
        objects__endpoint_url=moto_endpoint,
        objects__lifecycle_supported="false",
    )
    store = open_object_store(settings)

    assert store.put_lifecycle([LifecycleRule("archive/", 30, "STANDARD_IA")]) is False
    assert store.get_lifecycle() == []


def test_s3_put_sends_the_sha256_for_s3_to_check_the_bytes_against(s3: S3Store) -> None:
    sent: list[dict[str, Any]] = []
    s3._client.meta.events.register(
        "provide-client-params.s3.PutObject", lambda params, **kwargs: sent.append(dict(params))
    )
    data = b"rows" * 1000

    info = s3.put("staged/rows.bin", data)

    (params,) = sent
    assert params["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert info.stored_sha256 == sha(data)


def test_s3_server_side_encryption_is_passed_through(
    make_settings: Callable[..., Settings], s3_url: str, moto_endpoint: str
) -> None:
    settings = make_settings(
        objects__url=s3_url,
        objects__endpoint_url=moto_endpoint,
        objects__server_side_encryption="AES256",
    )
    store = open_object_store(settings)
    assert isinstance(store, S3Store)
    store.put("secret/rows.bin", b"rows")
    store.set_storage_class("secret/rows.bin", "STANDARD_IA")

    raw = raw_s3(store).head_object(Bucket=store.bucket, Key=store.prefix + "secret/rows.bin")
    assert raw["ServerSideEncryption"] == "AES256"
    assert raw["StorageClass"] == "STANDARD_IA"


def test_s3_missing_bucket_is_a_config_error_naming_it(moto_endpoint: str) -> None:
    store = S3Store(
        "s3://steward-no-such-bucket/prefix", ObjectsSettings(endpoint_url=moto_endpoint)
    )

    with pytest.raises(ConfigError, match="steward-no-such-bucket.*objects.url"):
        store.put("k", b"x")
    with pytest.raises(ConfigError, match="steward-no-such-bucket"):
        store.head("k")
    with pytest.raises(ConfigError, match="steward-no-such-bucket"):
        list(store.list())


def test_s3_unreachable_endpoint_is_transient_and_hides_credentials() -> None:
    settings = ObjectsSettings(
        endpoint_url="http://127.0.0.1:1",
        access_key_id="AKIASTEWARDTESTKEY01",
        secret_access_key="very-secret-access-key",
    )
    quick = Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1})
    store = S3Store("s3://any-bucket/p", settings, botocore_config=quick)

    for call in (lambda: store.put("k", b"x"), lambda: store.head("k")):
        with pytest.raises(SourceUnavailable) as raised:
            call()
        assert is_transient(raised.value)
        assert "objects.endpoint_url" in str(raised.value)
        assert "AKIASTEWARDTESTKEY01" not in str(raised.value)
        assert "very-secret-access-key" not in str(raised.value)


def test_s3_half_configured_credentials_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="secret_access_key"):
        S3Store("s3://bucket/p", ObjectsSettings(access_key_id="AKIAONLYHALF"))
