"""How the nightly report shows figures: bytes, durations, dollars, moments, and the physical
backup's lines (type, sizes, recoverable window, WAL archive lag). "n/a" for what is unknown."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = ["human_bytes", "human_duration", "physical_lines", "shown_value", "usd"]


def human_bytes(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "n/a"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def human_duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return "n/a"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def usd(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "n/a"
    return f"{value:.2f}" if value >= 1 else f"{value:.6f}"


def shown_value(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def physical_lines(p: dict[str, Any]) -> list[str]:
    if not p:
        return []
    """The physical backup's lines of the report's backup section (none without one)."""
    lag = p["archive_lag_s"]
    window = p["window_problem"] and f"not read ({p['window_problem']})"
    stored, database = human_bytes(p["stored_bytes"]), human_bytes(p["database_bytes"])
    return [
        f"- physical (pgBackRest): {shown_value(p['type'])} backup, {stored} stored "
        f"(database {database})",
        "- recoverable window: "
        + (
            window
            or f"{_moment(p['recoverable_from'])} to {_moment(p['recoverable_to'])}, WAL archive "
            f"lag {human_duration(lag) if lag is not None else 'n/a'}"
        ),
    ]


def _moment(value: Any) -> str:
    """An ISO time as ``2026-12-06 18:30:05 UTC`` ("n/a" when unknown or unreadable)."""
    try:
        when = datetime.fromisoformat(str(value)).astimezone(UTC)
    except ValueError:
        return "n/a"
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")
