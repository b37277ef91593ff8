"""Grandfather-father-son retention of one source's backups.

Kept, each with its reason:

- the newest *good* backup (latest verification passed), wherever it falls;
- every backup younger than ``keep_within_hours`` (default 24 h) and the ``keep_last`` newest
  (default 2), so a second backup the same day never deletes the first;
- every backup a running run holds (took or reported; :mod:`steward.backup.holds`);
- the newest backup of each of the ``keep_daily`` most recent days that have a backup, of the
  ``keep_weekly`` most recent ISO weeks and of the ``keep_monthly`` most recent months (within
  a period a good backup is preferred to a newer one that is not).

Everything else goes; flows prune only after the new backup has been verified. Pure function
of the catalogue, the policy, the clock and the holds, so a simulated clock over hundreds of
days tests it exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from steward.backup.catalogue import Manifest
from steward.settings import RetentionPolicy

__all__ = ["RetentionPlan", "plan_retention"]


@dataclass
class RetentionPlan:
    """Which backups of one source stay and which go, with the reason each one stays."""

    keep: dict[str, list[str]] = field(default_factory=dict)  # id -> reasons
    delete: list[Manifest] = field(default_factory=list)


def plan_retention(
    backups: list[Manifest],
    policy: RetentionPolicy,
    *,
    now: datetime,
    held: dict[str, str] | None = None,
) -> RetentionPlan:
    """Split ``backups`` (one source and engine) into kept and deleted.

    Args:
        backups: The catalogued backups of one source and engine.
        policy: The retention policy of their kind.
        now: The current time (the window is measured from it).
        held: Backup id -> description of the running run that holds it.
    """
    plan = RetentionPlan()
    ordered = sorted(backups, key=lambda m: (m.started_at, m.id), reverse=True)  # newest first
    good = [m for m in ordered if m.good]
    if good:
        plan.keep.setdefault(good[0].id, []).append("newest verified")
    for manifest, reason in _recent_or_held(ordered, policy, now, held or {}):
        plan.keep.setdefault(manifest.id, []).append(reason)
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


def _recent_or_held(
    ordered: list[Manifest], policy: RetentionPolicy, now: datetime, held: dict[str, str]
) -> list[tuple[Manifest, str]]:
    """Backups kept whatever the periods say: the newest few, the young and the held."""
    window = timedelta(hours=policy.keep_within_hours)
    kept = [(m, f"one of the {policy.keep_last} newest") for m in ordered[: policy.keep_last]]
    kept += [
        (m, f"younger than {policy.keep_within_hours:g} h")
        for m in ordered
        if now - m.started_at < window
    ]
    kept += [(m, f"held by {held[m.id]}") for m in ordered if m.id in held]
    return kept


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
        elif not chosen[key].good and manifest.good:
            chosen[key] = manifest  # a good backup of the same period is the better keeper
    return list(chosen.values())
