"""Figures read out of the nightly steps' summaries, defensively.

Each step's flow returns a summary dict whose shape its own capability owns; these readers take
what is there (a missing figure is ``None``, shown as "n/a") and never raise on an unexpected
shape, so one step's summary changing cannot break the report.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "archive_tables",
    "backup_figures",
    "cache_figures",
    "first",
    "outbox_figures",
    "physical_figures",
    "tier_rows",
    "validation_figures",
]


def first(summary: Any, *keys: str) -> Any:
    """The first of ``keys`` present (and not None) in ``summary``, else None."""
    if not isinstance(summary, dict):
        return None
    for key in keys:
        if summary.get(key) is not None:
            return summary[key]
    return None


def _items(summary: Any, *keys: str) -> list[dict[str, Any]]:
    """The per-item dicts under the first of ``keys`` holding a list or a name -> dict map."""
    for key in keys:
        found = summary.get(key) if isinstance(summary, dict) else None
        if isinstance(found, dict):
            return [{"name": k, **v} for k, v in found.items() if isinstance(v, dict)]
        if isinstance(found, list):
            return [item for item in found if isinstance(item, dict)]
    return []


def _total(items: Iterable[dict[str, Any]], *keys: str) -> int | None:
    values = [first(item, *keys) for item in items]
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return sum(numbers) if numbers else None  # type: ignore[return-value]


def backup_figures(summary: Any) -> dict[str, Any]:
    """Backups taken: count, size, duration, and whether every one was verified by restore."""
    items = _items(summary, "sources", "backups", "results")
    count = first(summary, "backups", "backups_taken", "count")
    if not isinstance(count, int) or isinstance(count, bool):
        count = len(items) if items else None
    return {
        "backups": count,
        "size_bytes": _total(items, "size_bytes", "bytes")
        if items
        else first(summary, "size_bytes", "bytes", "total_bytes"),
        "duration_s": _total(items, "duration_s", "seconds")
        if items
        else first(summary, "duration_s", "seconds"),
        "verified": _all_verified(summary, items, count),
        "dry_run": first(summary, "dry_run"),
    }


def physical_figures(summary: Any) -> dict[str, Any]:
    """The physical (pgBackRest) backup of the run: type, sizes, recoverable window, WAL lag;
    empty when the run took none."""
    found = [i for i in _items(summary, "sources", "backups") if first(i, "engine") == "physical"]
    if not found:
        return {}
    item = found[-1]
    return {
        "type": first(item, "type"),
        "stored_bytes": first(item, "size_bytes"),
        "database_bytes": first(item, "database_size"),
        "recoverable_from": first(item, "recoverable_from"),
        "recoverable_to": first(item, "recoverable_to"),
        "archive_lag_s": first(item, "archive_lag_s"),
        "window_problem": first(item, "window_problem"),
    }


def _all_verified(summary: Any, items: list[dict[str, Any]], count: int | None) -> bool | None:
    flags = [first(item, "verified") for item in items]
    if flags and all(isinstance(flag, bool) for flag in flags):
        return all(flags)
    verified = first(summary, "verified", "all_verified")
    if isinstance(verified, bool):
        return verified
    if isinstance(verified, int) and isinstance(count, int):  # a count of verified backups
        return verified == count and count > 0
    return None


def archive_tables(summary: Any) -> list[dict[str, Any]]:
    """Per table: rows archived, bytes, objects, rows kept and why they stayed."""
    rows = []
    for item in _items(summary, "tables"):
        referenced = first(item, "kept", "rows_kept")
        changed = first(item, "rows_skipped")
        counts = [n for n in (referenced, changed) if isinstance(n, int)]
        rows.append(
            {
                "table": first(item, "table", "name"),
                "rows": first(item, "rows_archived", "rows"),
                "bytes": first(item, "bytes", "estimated_bytes"),
                "objects": first(item, "objects"),
                "kept": sum(counts) if counts else None,
                "why_kept": _why_kept(item, referenced, changed),
                "children": _children(item),
                "partitions": [str(line) for line in first(item, "partition_lines") or []],
            }
        )
    return rows


def _children(item: dict[str, Any]) -> dict[str, int]:
    """Child rows archived with the table's rows (an order's items, payments...), by table."""
    found = first(item, "children")
    if not isinstance(found, dict):
        return {}
    return {str(k): v for k, v in found.items() if isinstance(v, int) and not isinstance(v, bool)}


def _why_kept(item: dict[str, Any], referenced: Any, changed: Any) -> str:
    reasons = []
    if referenced:
        reasons.append(str(first(item, "kept_reason", "why_kept") or "kept by the policy"))
    if changed:
        reasons.append(f"{changed} changed since they were read (retried next night)")
    return "; ".join(reasons) or "none kept"


def tier_rows(summary: Any) -> list[dict[str, Any]]:
    """Objects, bytes and USD per month per storage class (after the run), empty classes out."""
    rows = first(summary, "after", "before")
    if not isinstance(rows, list):
        return []
    return [
        {
            "storage_class": first(r, "storage_class"),
            "objects": first(r, "objects"),
            "bytes": first(r, "bytes"),
            "monthly_cost_usd": first(r, "monthly_cost_usd"),
        }
        for r in rows
        if isinstance(r, dict) and first(r, "objects")
    ]


def outbox_figures(cleanup: Any, backlog: dict[str, Any]) -> dict[str, Any]:
    """Pending, dead and lag from the backlog; published events removed from the cleanup."""
    return {
        "pending": first(backlog, "pending"),
        "retrying": first(backlog, "retrying"),
        "dead": first(backlog, "dead"),
        "lag_s": first(backlog, "oldest_pending_age_seconds"),
        "removed": first(cleanup, "rows_removed", "removed", "deleted"),
        "removed_why_zero": first(cleanup, "why_zero"),
        "error": first(backlog, "error"),
        "not_configured": first(backlog, "not_configured"),
    }


def validation_figures(summary: Any) -> dict[str, Any]:
    """Outcome, failed expectations (with counts / sample keys when given) and Data Docs."""
    failures = _items(summary, "failures", "failed_expectations", "failed")
    success = first(summary, "success", "passed", "ok")
    if success is None and isinstance(first(summary, "failed_suites"), list):
        success = not summary["failed_suites"]
    return {
        "success": success,
        "suites": first(summary, "suites_run", "suites"),
        "expectations": first(summary, "expectations", "evaluated"),
        "failed": len(failures)
        if isinstance(first(summary, "failures", "failed_expectations"), list)
        else first(summary, "failed_count", "failures_count"),
        "failures": failures[:10],
        "data_docs": first(summary, "data_docs_url", "data_docs", "docs_url"),
    }


def cache_figures(summary: Any, cache_stats: dict[str, Any]) -> dict[str, Any]:
    """Keys warmed and hit ratio (from warm-cache; else Redis INFO), evictions and memory."""
    return {
        "keys_warmed": first(summary, "total_keys", "keys_written", "keys_warmed", "written"),
        "hit_ratio": _first_known(first(summary, "hit_ratio"), first(cache_stats, "hit_ratio")),
        "evicted_keys": first(cache_stats, "evicted_keys"),
        "used_memory_bytes": first(cache_stats, "used_memory_bytes"),
    }


def _first_known(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)
