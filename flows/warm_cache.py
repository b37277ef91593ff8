"""Flow ``warm-cache``: fill Redis from the database before traffic needs it.

Runs ``[[cache.warmers]]`` (all enabled ones, or those named in ``warmers``), one task run per
unit, two units side by side (they write different namespaces; while one waits on its query,
the other encodes and writes): a refresh-mode warmer overwrites its keys in place; the warmers
of a versioned namespace write a new generation together, which becomes current in one step,
after which the old one is removed. Leaves a table of keys per warmer, a table of the cache's
state (keys, memory, TTL spread, hit ratio per namespace) and a markdown summary. The nightly
flow runs it as its last step (a subflow) and reads the summary it returns; run it on demand
with ``warmers=[...]``.
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from steward.cache import plan_units
from steward.errors import ConfigError
from steward.settings import get_settings
from steward.statistics import warmer_tables
from tasks.cache import read_cache_stats, warm_cache_unit
from tasks.statistics import publish_statistics, refresh_statistics_for_reads

PARALLEL_UNITS = 2


@flow(
    name="warm-cache",
    task_runner=ThreadPoolTaskRunner(max_workers=PARALLEL_UNITS),
    description="Fill Redis from the database: pipelined writes, jittered TTLs, versioned "
    "namespaces that switch in one step.",
)
def warm_cache(
    warmers: list[Annotated[str, Field(min_length=1)]] | None = None, dry_run: bool = False
) -> dict[str, Any]:
    """Warm the cache; returns keys per warmer, the generations made current and the hit ratio.

    Args:
        warmers: Names of the warmers to run (cache.warmers); empty = every enabled warmer. A
            versioned warmer brings the other warmers of its namespace (a generation is
            complete only with all of them).
        dry_run: Read and check every warmer's rows and count the keys; write nothing.
    """
    logger = get_run_logger()
    names = _check_names(warmers)
    units = plan_units(get_settings(), names)
    logger.info(
        "warm-cache%s: %s",
        " (dry run: nothing will be written)" if dry_run else "",
        "; ".join(f"{u.namespace} ({u.mode}): {', '.join(u.names)}" for u in units) or "nothing",
    )
    chosen = [w for unit in units for w in unit.warmers]
    statistics = refresh_statistics_for_reads(
        lambda engine: warmer_tables(engine, chosen), "before warm-cache reads", dry_run
    )
    futures = [warm_cache_unit.submit(unit.names, dry_run) for unit in units]
    reports = [future.result() for future in futures]
    stats = None if dry_run else read_cache_stats()
    summary = _summary(reports, stats, dry_run)
    summary["statistics"] = [statistics]
    _publish(summary, reports, stats)
    publish_statistics("warm-cache", summary["statistics"])
    return summary


def _check_names(warmers: list[str] | None) -> list[str] | None:
    if warmers is None:
        return None
    if isinstance(warmers, str) or not all(isinstance(n, str) and n for n in warmers):
        raise ConfigError(
            f"warm-cache: warmers={warmers!r} must be a list of warmer names, e.g. "
            '["product-detail"]'
        )
    return list(warmers) or None


def _summary(
    reports: list[dict[str, Any]], stats: dict[str, Any] | None, dry_run: bool
) -> dict[str, Any]:
    items = [w for unit in reports for w in unit["warmers"]]
    seconds = round(sum(w["seconds"] for w in items), 3)
    keys = sum(w["keys"] for w in items)
    return {
        "dry_run": dry_run,
        "keys": {w["warmer"]: w["keys"] for w in items},
        "rows": {w["warmer"]: w["rows"] for w in items},
        "total_keys": keys,
        "generations": {
            u["namespace"]: u["generation"] for u in reports if u["mode"] == "versioned"
        },
        "old_keys_removed": sum(u["removed_keys"] for u in reports),
        "seconds": seconds,
        "keys_per_second": round(keys / seconds, 1) if seconds > 0 else 0.0,
        "hit_ratio": stats["hit_ratio"] if stats else None,
        "hits": stats["hits"] if stats else 0,
        "misses": stats["misses"] if stats else 0,
    }


def _publish(
    summary: dict[str, Any], reports: list[dict[str, Any]], stats: dict[str, Any] | None
) -> None:
    rows = [
        {
            "warmer": w["warmer"], "namespace": w["namespace"], "mode": w["mode"],
            "shape": w["shape"], "rows": w["rows"], "keys": w["keys"],
            "generation": unit["generation"], "seconds": w["seconds"],
            "keys/s": w["keys_per_second"],
        }
        for unit in reports
        for w in unit["warmers"]
    ]  # fmt: skip
    create_table_artifact(rows, key="warm-cache-warmers", description="Keys written per warmer")
    if stats:
        create_table_artifact(
            _stats_rows(stats), key="cache-stats", description="Cache state after warming"
        )
    create_markdown_artifact(
        "\n".join(_summary_lines(summary, reports, stats)),
        key="warm-cache-summary",
        description="What warm-cache did, and why any figure is zero",
    )


def _stats_rows(stats: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "namespace": n["namespace"], "mode": n["mode"], "generation": n["generation"],
            "keys": f"{n['keys']}{'+' if n['keys_capped'] else ''}",
            "memory bytes": n["memory_bytes"],
            "ttl min/median/max s": f"{n['ttl_min']}/{n['ttl_median']}/{n['ttl_max']}",
            "hits": n["hits"], "misses": n["misses"], "hit ratio": n["hit_ratio"],
        }
        for n in stats["namespaces"]
    ]  # fmt: skip


def _summary_lines(
    summary: dict[str, Any], reports: list[dict[str, Any]], stats: dict[str, Any] | None
) -> list[str]:
    dry = " (dry run: nothing written)" if summary["dry_run"] else ""
    lines = [
        f"**warm-cache**{dry}: {summary['total_keys']} keys from "
        f"{len(summary['keys'])} warmers in {summary['seconds']} s "
        f"({summary['keys_per_second']} keys/s).",
        "",
    ]
    if not reports:
        lines.append("No warmer ran: none is enabled in cache.warmers (or none was named).")
    for name, keys in summary["keys"].items():
        if keys == 0:
            lines.append(f"- `{name}`: 0 keys because its query returned no rows.")
    for namespace, generation in summary["generations"].items():
        lines.append(f"- namespace `{namespace}`: generation v{generation} is current.")
    if stats is not None:
        server = stats["server"]
        ratio = summary["hit_ratio"]
        lines.append(
            f"- cache-aside hit ratio: {ratio}" if ratio is not None
            else "- cache-aside hit ratio: none yet (no get_or_load reads recorded)"
        )  # fmt: skip
        lines.append(
            f"- server: {server['used_memory_human']} used, {server['db_keys']} keys, "
            f"{server['evicted_keys']} evictions, keyspace hit ratio "
            f"{server['keyspace_hit_ratio']}"
        )
    return lines
