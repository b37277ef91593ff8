"""Grandfather-father-son retention of one source's backups.

Kept: the newest backup of each of the ``keep_daily`` most recent days that have a backup,
of the ``keep_weekly`` most recent ISO weeks, and of the ``keep_monthly`` most recent months
(within a period a verified backup is preferred to a newer unverified one), plus always the
newest verified backup, wherever it falls. Everything else goes; flows prune only after the
new backup has been verified. Pure function of the catalogue and the policy, so a
simulated clock over hundreds of days tests it exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC

from steward.backup.catalogue import Manifest
from steward.settings import RetentionPolicy

__all__ = ["RetentionPlan", "plan_retention"]


@dataclass
class RetentionPlan:
    """Which backups of one source stay and which go, with the reason each one stays."""

    keep: dict[str, list[str]] = field(default_factory=dict)  # id -> reasons
    delete: list[Manifest] = field(default_factory=list)


def plan_retention(backups: list[Manifest], policy: RetentionPolicy) -> RetentionPlan:
    """Split ``backups`` (one source and engine) into kept and deleted."""
    plan = RetentionPlan()
    ordered = sorted(backups, key=lambda m: (m.started_at, m.id), reverse=True)  # newest first
    verified = [m for m in ordered if m.verified_at is not None]
    if verified:
        plan.keep.setdefault(verified[0].id, []).append("newest verified")
    buckets: list[tuple[str, int, Callable[[Manifest], Hashable]]] = [
        ("daily", policy.keep_daily, lambda m: m.started_at.astimezone(UTC).date()),
        ("weekly", policy.keep_weekly, lambda m: m.started_at.astimezone(UTC).isocalendar()[:2]),
        ("monthly", policy.keep_monthly, lambda m: m.started_at.astimezone(UTC).strftime("%Y-%m")),
    ]
    for reason, count, period in buckets:
        for manifest in _newest_per_period(ordered, period, count):
            plan.keep.setdefault(manifest.id, []).append(reason)
    plan.delete = [m for m in reversed(ordered) if m.id not in plan.keep]
    return plan


def _newest_per_period(
    ordered: list[Manifest], period: Callable[[Manifest], Hashable], count: int
) -> list[Manifest]:
    """The representative of each of the ``count`` most recent periods that have backups."""
    chosen: dict[Hashable, Manifest] = {}
    for manifest in ordered:  # newest first
        key = period(manifest)
        if key not in chosen:
            if len(chosen) == count:
                break
            chosen[key] = manifest
        elif chosen[key].verified_at is None and manifest.verified_at is not None:
            chosen[key] = manifest  # a verified backup of the same period is the better keeper
    return list(chosen.values())
