"""Health of the object store: reach and latency of one listing, then objects, bytes and the
estimated monthly cost per storage class.

The listing is bounded (``limit`` objects, default 10 000): on a large bucket the figures cover
the first ``limit`` keys and say so (``truncated``); for exact totals per class use the archive
manifest or S3 Storage Lens. S3 is reached with a short timeout and a single attempt.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from botocore.config import Config

from steward.errors import StewardError
from steward.health.components import DOWN, ComponentHealth, probe
from steward.settings import Settings, mask_url
from steward.storage import ObjectInfo, ObjectStore, S3Store, open_object_store
from steward.tiering import summarize_usage, total_cost

__all__ = ["DEFAULT_OBJECT_LIMIT", "check_objects"]

DEFAULT_OBJECT_LIMIT = 10_000


def check_objects(
    settings: Settings, *, timeout: float = 2.0, limit: int = DEFAULT_OBJECT_LIMIT
) -> ComponentHealth:
    """List up to ``limit`` objects once; per storage class: objects, bytes, USD per month."""
    target = mask_url(settings.objects_url)
    try:
        store = _open_store(settings, timeout)
    except StewardError as exc:
        return ComponentHealth("objects", DOWN, target, error=str(exc).splitlines()[0][:300])
    health, listed = probe(
        "objects", target, lambda: list(islice(store.list("", details=False), limit + 1)),
        (StewardError, OSError), hint="check objects.url / objects.endpoint_url",
    )  # fmt: skip
    if listed is None:
        return health
    health.stats = _stats(listed[:limit], len(listed) > limit, settings.tiering.prices)
    return health


def _open_store(settings: Settings, timeout: float) -> ObjectStore:
    url = settings.objects_url
    if url.startswith("s3://"):
        quick = Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1})
        return S3Store(url, settings.objects, botocore_config=quick)
    return open_object_store(settings)


def _stats(listed: list[ObjectInfo], truncated: bool, prices: dict[str, float]) -> dict[str, Any]:
    usage = summarize_usage(((o.storage_class, o.size) for o in listed), prices)
    return {
        "objects": len(listed),
        "bytes": sum(o.size for o in listed),
        "truncated": truncated,
        "monthly_cost_usd": round(total_cost(usage), 6),
        "per_class": [row.as_row() for row in usage if row.objects],
    }
