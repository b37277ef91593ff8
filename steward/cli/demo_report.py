"""What each ``steward demo`` step did, in words and figures, read from its summary dict.

Summaries change as flows evolve, so every reader here is defensive: a missing key falls back to
a plain listing of the summary's figures, never to an error or a raw dict. Money reads
``$0.000003`` (never ``3e-06``), sizes ``1.2 MB``, counts ``12,345``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["describe_step", "describe_stats", "human_bytes", "money"]


def human_bytes(size: Any) -> str:
    """``1536`` -> ``1.5 KB``."""
    value = float(size or 0)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def money(usd: Any) -> str:
    """USD as people read it: ``$12.34``, ``$0.0042``, ``$0.000003``."""
    value = float(usd or 0)
    if value == 0:
        return "$0"
    if abs(value) >= 0.01:
        return f"${value:,.2f}"
    return "$" + f"{value:.8f}".rstrip("0")


def _n(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    return str(value)


def _migrate(s: dict[str, Any]) -> str:
    now, was = s.get("to_revision") or "base", s.get("from_revision") or "base"
    applied = len(s.get("applied") or [])
    if not applied:
        return f"database already at revision {now}: nothing to apply"
    return f"{applied} migration(s) applied: database at revision {now} (was {was})"


def _demo_data(s: dict[str, Any]) -> str:
    counts = {k: v for k, v in s.items() if isinstance(v, int)}
    largest = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
    biggest = ", ".join(f"{name} {_n(rows)}" for name, rows in largest)
    return f"{_n(sum(counts.values()))} synthetic rows in {len(counts)} tables ({biggest}, ...)"


def _backup(s: dict[str, Any]) -> str:
    text = (
        f"{_n(s['backups'])} backup(s) taken, {_n(s['verified'])} verified by a restore into a "
        f"scratch database; {len(s.get('pruned') or [])} old backup(s) pruned"
    )
    failed = s.get("failed_verification") or []
    return text + (f"; verification FAILED for {', '.join(failed)}" if failed else "")


def _relay(s: dict[str, Any]) -> str:
    text = (
        f"{_n(s['published'])} outbox events published in {_n(s['batches'])} batch(es) "
        f"({_n(s.get('events_per_second'))}/s); {_n(s['pending'])} still pending, "
        f"{_n(s['dead'])} dead"
    )
    return text + (f", {_n(s['retried'])} retried" if s.get("retried") else "")


def _archive(s: dict[str, Any]) -> str:
    if s.get("dry_run"):
        size = human_bytes(s.get("estimated_bytes"))
        return f"dry run: {_n(s['rows'])} rows would be archived (~{size})"
    text = (
        f"{_n(s['rows_archived'])} rows archived into {_n(s['objects'])} verified objects "
        f"({human_bytes(s.get('bytes'))}) and deleted from the source"
    )
    if s.get("rows_kept"):
        text += f"; {_n(s['rows_kept'])} kept because other rows reference them"
    if s.get("rows_still_qualifying"):
        text += f"; {_n(s['rows_still_qualifying'])} still qualify (next run)"
    return text


def _tier(s: dict[str, Any]) -> str:
    text = (
        f"{_n(s['moved'])} of {_n(s['objects'])} archive objects moved to colder classes "
        f"({human_bytes(s.get('bytes_moved'))}); storage cost "
        f"{money(s.get('monthly_cost_before_usd'))} -> {money(s.get('monthly_cost_after_usd'))} "
        "a month"
    )
    if not s.get("moved") and s.get("held_min_duration"):
        text += f" ({_n(s['held_min_duration'])} held by their class's minimum storage days)"
    elif not s.get("moved") and not s.get("planned_moves"):
        text += " (none is old enough for the first transition yet)"
    return text


def _cleanup(s: dict[str, Any]) -> str:
    text = (
        f"{_n(s['rows_removed'])} published outbox events older than "
        f"{_n(s['older_than_days'])} days removed"
    )
    return text + (f" (why 0: {s['why_zero']})" if s.get("why_zero") else "")


def _validate(s: dict[str, Any]) -> str:
    return (
        f"{_n(s['suites'])} expectation suites checked: {_n(s['failed_critical'])} critical and "
        f"{_n(s['failed_warning'])} warning failures"
    )


def _warm(s: dict[str, Any]) -> str:
    return (
        f"{_n(s['total_keys'])} cache keys written ({_n(s.get('keys_per_second'))}/s); "
        f"{_n(s.get('old_keys_removed', 0))} old keys removed"
    )


def _invalidate(s: dict[str, Any]) -> str:
    return (
        f"{_n(s['events'])} outbox events read from the streams, {_n(s['matched'])} matched an "
        f"invalidation rule; {_n(s['keys_deleted'])} cache keys deleted"
    )


_DESCRIBERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "migrate": _migrate,
    "demo-data": _demo_data,
    "backup-databases": _backup,
    "relay-outbox": _relay,
    "archive-to-s3": _archive,
    "tier-archives": _tier,
    "cleanup-outbox": _cleanup,
    "validate-data": _validate,
    "warm-cache": _warm,
    "invalidate-cache": _invalidate,
}


def _figures(summary: Any) -> str:
    """Fallback: the summary's top-level figures, labelled in words."""
    if not isinstance(summary, dict):
        return "done" if summary is None else str(summary)[:160]
    parts = []
    for key, value in summary.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        label = key.replace("_", " ")
        shown = money(value) if "usd" in key or "cost" in key else _n(value)
        parts.append(f"{label} {shown}")
    return ", ".join(parts[:8]) or "done"


def describe_step(name: str, summary: Any) -> str:
    """One sentence on what the step ``name`` did, from its summary."""
    describe = _DESCRIBERS.get(name)
    if describe is not None and isinstance(summary, dict):
        try:
            return describe(summary)
        except (KeyError, TypeError, ValueError, AttributeError):
            pass  # the summary changed shape: list its figures instead
    return _figures(summary)


def describe_stats(stats: dict[str, Any], limit: int = 5) -> str:
    """A store's scalar stats in words: sizes human, money in dollars."""
    shown = []
    for key, value in stats.items():
        if isinstance(value, dict | list) or value is None:
            continue
        label = key.replace("_bytes", "").replace("_usd", "").replace("_", " ")
        if key.endswith("bytes"):
            value = human_bytes(value)
        elif "usd" in key or "cost" in key:
            value = money(value)
        shown.append(f"{label} {value}")
    return ", ".join(shown[:limit])
