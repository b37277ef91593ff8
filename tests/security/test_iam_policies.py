"""The README's S3 IAM policies cover every call each job makes, and no more folders.

Each job runs for real against moto's S3 server (archive and restore, backup, verify and prune,
tiering with lifecycle rules, validation's scrubs, the relay's event history, health) while a
boto3 event hook records every S3 operation with its bucket and key; each recorded call must be
allowed by that job's policy from :func:`steward.security.iam_policies`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from steward.security import iam_policies, policy_allows
from steward.settings import Settings
from tests.fixtures.roles import RolesDatabase

# boto3 operation -> IAM action (multipart parts are PutObject; HEAD needs GetObject).
ACTIONS = {
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "DeleteObject": "s3:DeleteObject",
    "DeleteObjects": "s3:DeleteObject",
    "CopyObject": "s3:PutObject",
    "RestoreObject": "s3:RestoreObject",
    "ListObjectsV2": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
    "DeleteBucketLifecycle": "s3:PutLifecycleConfiguration",
}


class Recorder:
    """Every S3 call made while a job is named, as (job, IAM action, resource ARN)."""

    def __init__(self) -> None:
        self.job: str | None = None
        self.calls: list[tuple[str, str, str]] = []

    def hook(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self.job is None:
            return
        action = ACTIONS.get(model.name, f"unmapped:{model.name}")
        bucket = params.get("Bucket", "")
        if model.name == "DeleteObjects":  # S3 authorises a multi-object delete key by key
            for item in params["Delete"]["Objects"]:
                self.calls.append((self.job, action, f"arn:aws:s3:::{bucket}/{item['Key']}"))
            return
        key = params.get("Key")
        self.calls.append((self.job, action, f"arn:aws:s3:::{bucket}/{key}" if key is not None
                           else f"arn:aws:s3:::{bucket}"))  # fmt: skip
        source = params.get("CopySource")
        if source:
            src = source if isinstance(source, str) else f"{source['Bucket']}/{source['Key']}"
            self.calls.append((self.job, "s3:GetObject", f"arn:aws:s3:::{src}"))

    @contextmanager
    def running(self, job: str) -> Iterator[None]:
        self.job = job
        try:
            yield
        finally:
            self.job = None


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    from steward.storage import s3 as s3_module
    from steward.storage import s3_client

    recording = Recorder()
    real = s3_client.make_client

    def make_client(*args: Any, **kwargs: Any) -> Any:
        client = real(*args, **kwargs)
        client.meta.events.register("provide-client-params.s3.*", recording.hook)
        return client

    for module in (s3_client, s3_module):
        if hasattr(module, "make_client"):
            monkeypatch.setattr(module, "make_client", make_client)
    return recording


def _archive_and_restore(settings: Settings) -> None:
    from steward.archive import RestoreRequest, open_context, open_sources, restore
    from steward.archive.runner import archive_policies

    ctx = open_context(settings)
    try:
        reports = archive_policies(ctx, open_sources(ctx, ["users"]))
        assert sum(r.rows_archived for r in reports) > 0
        everything = RestoreRequest(
            table="users", ts_from=datetime(2000, 1, 1, tzinfo=UTC), ts_to=datetime.now(UTC)
        )
        report = restore(ctx, everything)
        assert report.restored > 0
    finally:
        ctx.sql.dispose()


def _tier(settings: Settings) -> None:
    from steward.storage import COLD_CLASSES, open_object_store
    from steward.tiering import effective_transitions, lifecycle_rules, move_objects, scan_tiers

    store = open_object_store(settings)
    prefix = settings.tiering.archive_prefix
    transitions = effective_transitions(settings.tiering)
    later = datetime.now(UTC) + timedelta(days=400)
    scan = scan_tiers(store, prefix, transitions, settings.tiering.prices, later)
    outcome = move_objects(store, scan.plan.moves)
    cold = [move for move in outcome.moved if move.to_class in COLD_CLASSES]
    assert cold
    store.request_restore(cold[0].key, days=1)
    store.put_lifecycle(lifecycle_rules(prefix, transitions))
    store.get_lifecycle()


def _backup(settings: Settings) -> None:
    from steward.backup import open_backup_context, prune_backups, take_backup, verify_backup

    ctx = open_backup_context(settings)
    manifest = take_backup(ctx, "database")
    verify_backup(ctx, manifest)
    prune_backups(ctx)


def _validate(settings: Settings) -> None:
    from steward.validation import build_data_docs, scrub_archive, scrub_backups

    assert scrub_archive(settings, sample=2).checked
    assert scrub_backups(settings, sample=2).checked
    build_data_docs(settings, [], run_name="iam")


def _relay(settings: Settings) -> None:
    from steward.outbox import OutboxRelay

    relay = OutboxRelay.from_settings(settings)
    try:
        assert relay.relay_batch(limit=20).published > 0
    finally:
        relay.close()


def _health(settings: Settings) -> None:
    from steward.health import check_health

    check_health(settings)


JOBS: list[tuple[str, Callable[[Settings], None]]] = [
    ("archive", _archive_and_restore),
    ("backup", _backup),
    ("validation", _validate),
    ("relay", _relay),
    ("health", _health),
    ("tiering", _tier),  # last: the scrubs skip objects in cold classes
]


def test_every_s3_call_of_each_job_is_allowed_by_its_policy(
    roles_db: RolesDatabase,
    make_settings: Callable[..., Settings],
    s3_url: str,
    moto_endpoint: str,
    redis_url: str,
    recorder: Recorder,
) -> None:
    settings = make_settings(
        database__url=roles_db.owner_url,
        objects__url=s3_url,
        objects__endpoint_url=moto_endpoint,
        objects__access_key_id="testing",
        objects__secret_access_key="testing",
        cache__url=redis_url,
        outbox__sinks='["event_history"]',
    )
    for job, run in JOBS:
        with recorder.running(job):
            run(settings)

    policies = iam_policies(settings)
    refused = [call for call in recorder.calls if not policy_allows(policies[call[0]], *call[1:])]
    assert refused == []
    assert {job for job, _, _ in recorder.calls} == {job for job, _ in JOBS}
    actions = {action for _, action, _ in recorder.calls}
    assert {"s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:RestoreObject"} <= actions


def test_each_policy_keeps_its_job_inside_its_folders(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(objects__url="s3://shop-data/steward")
    policies = iam_policies(settings)
    obj = "arn:aws:s3:::shop-data/steward/{}".format

    assert policy_allows(policies["archive"], "s3:DeleteObject", obj("archive/app/users/x"))
    assert not policy_allows(policies["archive"], "s3:DeleteObject", obj("backups/app/x"))
    assert not policy_allows(policies["archive"], "s3:PutObject", obj("events/x"))
    assert policy_allows(policies["backup"], "s3:PutObject", obj("backups/app/x"))
    assert not policy_allows(policies["backup"], "s3:GetObject", obj("archive/app/users/x"))
    assert not policy_allows(policies["validation"], "s3:DeleteObject", obj("archive/x"))
    assert not policy_allows(policies["validation"], "s3:PutObject", obj("backups/x"))
    assert not policy_allows(policies["relay"], "s3:GetObject", obj("archive/x"))
    assert not policy_allows(policies["tiering"], "s3:DeleteObject", obj("archive/x"))
    assert not policy_allows(policies["health"], "s3:GetObject", obj("archive/x"))
    for policy in policies.values():
        assert not policy_allows(policy, "s3:PutObject", "arn:aws:s3:::other-bucket/steward/x")
        assert not policy_allows(policy, "s3:DeleteBucket", "arn:aws:s3:::shop-data")


@pytest.fixture
def enforcing_moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto server of this test's own that checks IAM policies (moto's switch is global in
    the process, so it is switched on for this test only and back off after)."""
    from moto import settings as moto_settings
    from moto.server import ThreadedMotoServer

    from tests.conftest import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        monkeypatch.setattr(moto_settings, "INITIAL_NO_AUTH_ACTION_COUNT", float("inf"))
        server.stop()


def test_moto_enforces_each_policy_on_objects(
    enforcing_moto: str, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto checks object actions against the policy's resources (it does not model the
    bucket-level listing rules): each job's identity writes its own folder, not another's."""
    import json

    import boto3
    from botocore.exceptions import ClientError
    from moto import settings as moto_settings
    from moto.core.authorization import ActionAuthenticatorMixin

    admin = {"endpoint_url": enforcing_moto, "region_name": "us-east-1",
             "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # fmt: skip
    boto3.client("s3", **admin).create_bucket(Bucket="shop-data")
    policies = iam_policies(make_settings(objects__url="s3://shop-data/steward"))
    iam = boto3.client("iam", **admin)
    keys = {}
    for job in ("archive", "backup", "relay"):
        user = f"steward-{job}-{id(keys)}"
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName=job, PolicyDocument=json.dumps(policies[job]))
        keys[job] = iam.create_access_key(UserName=user)["AccessKey"]
    monkeypatch.setattr(moto_settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    monkeypatch.setattr(ActionAuthenticatorMixin, "request_count", 0)

    def s3_as(job: str) -> Any:
        key = keys[job]
        return boto3.client("s3", endpoint_url=enforcing_moto, region_name="us-east-1",
                            aws_access_key_id=key["AccessKeyId"],
                            aws_secret_access_key=key["SecretAccessKey"])  # fmt: skip

    def allowed(job: str, call: str, key: str) -> bool:
        client = s3_as(job)
        try:
            if call == "put":
                client.put_object(Bucket="shop-data", Key=f"steward/{key}", Body=b"x")
            elif call == "get":
                client.get_object(Bucket="shop-data", Key=f"steward/{key}")["Body"].read()
            else:
                client.delete_object(Bucket="shop-data", Key=f"steward/{key}")
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "AccessDenied"
            return False
        return True

    assert allowed("archive", "put", "archive/app/users/a.parquet")
    assert allowed("archive", "get", "archive/app/users/a.parquet")
    assert allowed("backup", "put", "backups/app/b.dump")
    assert allowed("relay", "put", "events/app/e.jsonl")
    assert not allowed("archive", "put", "backups/app/b.dump")
    assert not allowed("archive", "delete", "backups/app/b.dump")
    assert not allowed("backup", "get", "archive/app/users/a.parquet")
    assert not allowed("backup", "delete", "archive/app/users/a.parquet")
    assert not allowed("relay", "get", "archive/app/users/a.parquet")
    assert not allowed("relay", "delete", "events/app/e.jsonl")  # the relay only appends
    assert allowed("archive", "delete", "archive/app/users/a.parquet")
