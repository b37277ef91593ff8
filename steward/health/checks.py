"""Check every store at once: database, Redis, object store and MongoDB (when configured).

The four checks run in parallel threads, each with its own short timeout, so the whole check
takes about as long as the slowest store (well under a second when everything is up).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from steward.health.cache import check_cache
from steward.health.components import HealthReport
from steward.health.database import check_database
from steward.health.documents import check_documents
from steward.health.objects import DEFAULT_OBJECT_LIMIT, check_objects
from steward.settings import Settings

__all__ = ["COMPONENTS", "check_health"]

COMPONENTS = ("database", "cache", "objects", "documents")


def check_health(
    settings: Settings, *, timeout: float = 2.0, object_limit: int = DEFAULT_OBJECT_LIMIT
) -> HealthReport:
    """Reach every configured store; returns their health and stats (``ok`` when none down)."""
    started = time.perf_counter()
    with ThreadPoolExecutor(len(COMPONENTS), thread_name_prefix="steward-health") as pool:
        futures = [
            pool.submit(check_database, settings, timeout=timeout),
            pool.submit(check_cache, settings, timeout=timeout),
            pool.submit(check_objects, settings, timeout=timeout, limit=object_limit),
            pool.submit(check_documents, settings, timeout=timeout),
        ]
        components = [future.result() for future in futures]
    elapsed = round((time.perf_counter() - started) * 1000, 1)
    return HealthReport(components, elapsed_ms=elapsed)
