"""The minimal S3 IAM policy of each job, from the object store's bucket and prefixes.

Every object Steward writes lives under ``objects.url`` (``s3://bucket/root``) in a folder of
its own: ``archive/`` (``tiering.archive_prefix``), ``backups/`` (``backup.prefix``),
``events/`` (``outbox.history_prefix``), ``validation/state/`` and ``docs/validation/``. A job
may act only under the folders it uses:

=========== ================================================================================
archive     PutObject, GetObject, DeleteObject, RestoreObject, AbortMultipartUpload on archive/
backup      PutObject, GetObject, DeleteObject, AbortMultipartUpload on backups/
tiering     GetObject, PutObject (CopyObject onto itself changes the class), RestoreObject on
            archive/; Get/PutLifecycleConfiguration on the bucket
validation  GetObject on archive/ and backups/ (scrubs); PutObject, GetObject, DeleteObject on
            validation/state/ and docs/validation/
relay       PutObject, GetObject on events/ (event history)
health      nothing beyond listing
=========== ================================================================================

Every job also gets ListBucket and ListBucketMultipartUploads on the bucket, without a prefix
condition: S3 answers a HEAD of a missing key with 404 only to a caller that may list the
bucket (403 otherwise), and Steward's create-only writes rely on that 404; HeadBucket needs
ListBucket too. Listing shows key names, never content.

:func:`policy_allows` evaluates such a policy (Allow statements, ``*`` wildcards) for the
tests that check every call a run makes against its job's policy.
"""

from __future__ import annotations

import fnmatch
from typing import Any
from urllib.parse import urlsplit

from steward.errors import ConfigError
from steward.settings import Settings

__all__ = ["IAM_JOBS", "iam_policies", "policy_allows"]

IAM_JOBS = ("archive", "backup", "tiering", "validation", "relay", "health")
_WRITE = ("s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload")
_LIST = ("s3:ListBucket", "s3:ListBucketMultipartUploads")


def _folders(settings: Settings) -> dict[str, str]:
    return {
        "archive": settings.tiering.archive_prefix,
        "backups": f"{settings.backup.prefix}/",
        "events": settings.outbox.history_prefix,
        "state": settings.validation.state_prefix,
        "docs": settings.validation.docs_prefix,
    }


def _grants(settings: Settings) -> dict[str, list[tuple[tuple[str, ...], list[str]]]]:
    """Per job: (object actions, folders) pairs."""
    f = _folders(settings)
    return {
        "archive": [((*_WRITE, "s3:RestoreObject"), [f["archive"]])],
        "backup": [(_WRITE, [f["backups"]])],
        "tiering": [(("s3:GetObject", "s3:PutObject", "s3:RestoreObject"), [f["archive"]])],
        "validation": [
            (("s3:GetObject",), [f["archive"], f["backups"]]),
            (("s3:PutObject", "s3:GetObject", "s3:DeleteObject"), [f["state"], f["docs"]]),
        ],
        "relay": [(("s3:PutObject", "s3:GetObject"), [f["events"]])],
        "health": [],
    }


def iam_policies(settings: Settings) -> dict[str, dict[str, Any]]:
    """Job -> IAM policy document for the configured ``s3://`` object store."""
    url = urlsplit(settings.objects_url)
    if url.scheme != "s3":
        raise ConfigError(
            f"objects.url = {settings.objects_url!r} is not an s3:// store: IAM policies "
            "apply to S3 (set objects.url to s3://bucket/prefix)"
        )
    bucket, root = url.netloc, url.path.strip("/")
    root = f"{root}/" if root else ""
    policies = {}
    for job, grants in _grants(settings).items():
        statements = [
            _statement(f"Objects{n}", bucket, root, actions, folders)
            for n, (actions, folders) in enumerate(grants, 1)
        ]
        statements.append({
            "Sid": "List",
            "Effect": "Allow",
            "Action": list(_LIST),
            "Resource": [f"arn:aws:s3:::{bucket}"],
        })  # fmt: skip
        if job == "tiering":
            statements.append({
                "Sid": "Lifecycle",
                "Effect": "Allow",
                "Action": ["s3:GetLifecycleConfiguration", "s3:PutLifecycleConfiguration"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
            })  # fmt: skip
        policies[job] = {"Version": "2012-10-17", "Statement": statements}
    return policies


def _statement(
    sid: str, bucket: str, root: str, actions: tuple[str, ...], folders: list[str]
) -> dict[str, Any]:
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": list(actions),
        "Resource": [f"arn:aws:s3:::{bucket}/{root}{f}*" for f in folders],
    }


def policy_allows(policy: dict[str, Any], action: str, resource: str) -> bool:
    """Whether an Allow statement of ``policy`` covers ``action`` on ``resource`` (an ARN)."""
    return any(
        statement.get("Effect") == "Allow"
        and any(fnmatch.fnmatchcase(action, a) for a in _listed(statement["Action"]))
        and any(fnmatch.fnmatchcase(resource, r) for r in _listed(statement["Resource"]))
        for statement in policy["Statement"]
    )


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)
