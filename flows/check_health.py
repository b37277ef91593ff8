"""Flow ``check-health``: reach every store (every 5 minutes); fail when one is down.

Checks the database, Redis, the object store and MongoDB (when configured): reachability,
latency and stats (database size, connections, largest tables and their dead-tuple share, the
oldest open transaction; Redis memory, evictions, hit ratio; objects and bytes per storage
class). A down store fails the run, so a Prefect automation on failed runs tagged ``steward``
notifies someone (see the README's "Health checks").
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import Field

from steward.errors import StoresDown
from tasks.health import check_stores


@flow(
    name="check-health",
    description="Reach the database, Redis, the object store and MongoDB; fail when one is down.",
)
def check_health(
    timeout_seconds: Annotated[float, Field(ge=0.1, le=60)] = 2.0,
    object_limit: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000,
) -> dict[str, Any]:
    """Check every configured store; returns the health report (fails when a store is down).

    Args:
        timeout_seconds: Connect / socket timeout per store, 0.1-60 seconds.
        object_limit: Objects listed at most to tally the object store per storage class
            (1-1000000); the figures say when the listing was cut short.
    """
    report = check_stores(timeout_seconds, object_limit)
    _publish(report)
    if not report["ok"]:
        raise StoresDown(f"check-health: {report['headline']}")
    get_run_logger().info("check-health: %s in %s ms", report["headline"], report["elapsed_ms"])
    return report


def _publish(report: dict[str, Any]) -> None:
    rows = [
        {
            "store": name,
            "status": c["status"],
            "latency_ms": c["latency_ms"],
            "target": c["target"],
            "error": c["error"] or "",
        }
        for name, c in report["components"].items()
    ]
    create_table_artifact(
        rows, key="health-check", description=f"Stores reached: {report['headline']}"
    )
    lines = [f"# Health: {'all up' if report['ok'] else 'DOWN'}", "", report["headline"], ""]
    for name, c in report["components"].items():
        lines.append(f"## {name}: {c['status']}")
        lines += [f"- {key}: {value}" for key, value in c["stats"].items()] or ["- no stats"]
        lines.append("")
    create_markdown_artifact(
        "\n".join(lines), key="health-check-stats", description="Stats per store"
    )
