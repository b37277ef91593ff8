"""GFS retention over a simulated 400-day clock, and pruning in the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from steward.backup import Manifest, list_backups, plan_retention, prune_backups, write_manifest
from steward.settings import RetentionPolicy

START = datetime(2025, 1, 1, 1, 0, tzinfo=UTC)


def _manifest(day: int, *, verified: bool = True, engine: str = "postgresql") -> Manifest:
    started = START + timedelta(days=day)
    return Manifest(
        id=f"{started:%Y%m%dT%H%M%SZ}-{day:06x}",
        prefix="backups",
        source="app",
        kind="documents" if engine == "mongodb" else "database",
        engine=engine,
        server_version="15",
        database="db",
        started_at=started,
        finished_at=started + timedelta(minutes=5),
        objects=[],
        verified_at=started + timedelta(minutes=9) if verified else None,
    )


def _expected_gfs(backups: list[Manifest], daily: int, weekly: int, monthly: int) -> set[str]:
    """Written independently of the implementation: newest per period, N latest periods."""
    newest_first = sorted(backups, key=lambda m: m.started_at, reverse=True)
    keep: set[str] = set()
    for count, period in (
        (daily, lambda m: m.started_at.date()),
        (weekly, lambda m: tuple(m.started_at.isocalendar())[:2]),
        (monthly, lambda m: (m.started_at.year, m.started_at.month)),
    ):
        periods: list = []
        for manifest in newest_first:
            if period(manifest) not in periods:
                periods.append(period(manifest))
                if len(periods) <= count:
                    keep.add(manifest.id)
    return keep


def test_400_days_of_daily_backups_keep_exactly_the_gfs_set():
    policy = RetentionPolicy(keep_daily=30, keep_weekly=8, keep_monthly=12)
    alive: list[Manifest] = []
    every: list[Manifest] = []
    for day in range(400):  # one backup a night, pruned each night after it is verified
        new = _manifest(day)
        every.append(new)
        alive.append(new)
        plan = plan_retention(alive, policy)
        alive = [m for m in alive if m.id in plan.keep]
    kept = {m.id for m in alive}
    assert kept == _expected_gfs(every, 30, 8, 12)
    assert len(kept) == 30 + 4 + 9  # days, then older weeks, then older months (overlaps removed)


def test_the_newest_verified_backup_is_never_deleted():
    # Verification has been failing for 45 days: the last good backup is outside every window.
    backups = [_manifest(day, verified=day < 60) for day in range(105)]
    plan = plan_retention(backups, RetentionPolicy(keep_daily=30))
    newest_good = backups[59]
    assert "newest verified" in plan.keep[newest_good.id]
    assert newest_good not in plan.delete
    assert len(plan.keep) == 31


def test_a_verified_backup_is_preferred_within_its_day():
    good = _manifest(0)
    failed_later = _manifest(0, verified=False)
    failed_later.started_at += timedelta(hours=5)
    failed_later.id = "later"
    plan = plan_retention([good, failed_later], RetentionPolicy(keep_daily=1))
    assert good.id in plan.keep and "daily" in plan.keep[good.id]


def test_prune_in_the_store_dry_run_then_for_real(sqlite_settings, ctx_for, make_settings):
    settings = make_settings(
        backup__sql_retention__keep_daily="3", backup__documents_retention__keep_daily="1"
    )
    ctx = ctx_for(settings)
    for day in range(6):
        write_manifest(ctx.store, _manifest(day))
    for day in range(3):
        write_manifest(ctx.store, _manifest(day, engine="mongodb"))

    dry = prune_backups(ctx, dry_run=True)
    assert len(dry.deleted) == 3 + 2 and len(list_backups(ctx.store, "backups")) == 9
    assert {row["reason"] for row in dry.deleted} == {"GFS: outside every kept period"}

    report = prune_backups(ctx)
    left = list_backups(ctx.store, "backups")
    assert sorted(report.deleted_ids()) == sorted(dry.deleted_ids())
    assert [m.started_at.day for m in left if m.engine == "postgresql"] == [4, 5, 6]
    assert [m.started_at.day for m in left if m.engine == "mongodb"] == [3]
