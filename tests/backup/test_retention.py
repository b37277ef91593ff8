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
        plan = plan_retention(alive, policy, now=new.started_at + timedelta(minutes=10))
        alive = [m for m in alive if m.id in plan.keep]
    kept = {m.id for m in alive}
    assert kept == _expected_gfs(every, 30, 8, 12)
    assert len(kept) == 30 + 4 + 9  # days, then older weeks, then older months (overlaps removed)


def test_the_newest_verified_backup_is_never_deleted():
    # Verification has been failing for 45 days: the last good backup is outside every window.
    backups = [_manifest(day, verified=day < 60) for day in range(105)]
    now = backups[-1].started_at + timedelta(minutes=10)
    plan = plan_retention(backups, RetentionPolicy(keep_daily=30), now=now)
    newest_good = backups[59]
    assert "newest verified" in plan.keep[newest_good.id]
    assert newest_good not in plan.delete
    assert len(plan.keep) == 31


def test_a_verified_backup_is_preferred_within_its_day():
    good = _manifest(0)
    failed_later = _manifest(0, verified=False)
    failed_later.started_at += timedelta(hours=5)
    failed_later.id = "later"
    policy = RetentionPolicy(keep_daily=1, keep_within_hours=0, keep_last=1)
    plan = plan_retention([good, failed_later], policy, now=START + timedelta(days=3))
    assert good.id in plan.keep and "daily" in plan.keep[good.id]


def test_prune_in_the_store_dry_run_then_for_real(sqlite_settings, ctx_for, make_settings):
    settings = make_settings(
        backup__sql_retention__keep_daily="3",
        backup__documents_retention__keep_daily="1",
        backup__documents_retention__keep_last="1",
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


def _failed(manifest: Manifest, at) -> Manifest:
    manifest.record_verification({"ok": False, "problems": ["damaged"]}, at)
    return manifest


def test_a_failed_verification_revokes_verified_and_retention_keeps_the_last_good():
    # G verified; X verified too, then damaged: its next verification failed.
    good, damaged = _manifest(0), _manifest(0)
    damaged.id, damaged.started_at = "x", good.started_at + timedelta(hours=2)
    damaged.record_verification({"ok": True, "problems": []}, damaged.started_at)
    _failed(damaged, damaged.started_at + timedelta(hours=1))
    assert not damaged.good and damaged.verified_at is None
    assert [v["ok"] for v in damaged.verifications] == [True, False]
    assert damaged.last_passed_at == damaged.started_at.isoformat()

    strict = RetentionPolicy(keep_daily=1, keep_within_hours=0, keep_last=1)
    plan = plan_retention([good, damaged], strict, now=START + timedelta(days=40))
    assert "newest verified" in plan.keep[good.id] and plan.delete == []


def test_a_manifest_written_before_the_history_is_read_with_its_failure_revoking():
    old = _manifest(0)
    old.verification = {"at": old.started_at.isoformat(), "ok": False, "problems": ["x"]}
    raw = old.to_json().replace(b'"verifications": [],', b"")  # format 1 had no history
    reread = Manifest.from_json(raw, "k")
    assert reread.verified_at is None and reread.verifications == [old.verification]


def test_a_second_backup_the_same_day_never_deletes_the_first():
    policy = RetentionPolicy(keep_daily=1)  # defaults: 24 h window, keep_last 2
    nightly, manual = _manifest(0), _manifest(0)
    manual.id, manual.started_at = "manual", nightly.started_at + timedelta(seconds=6)
    plan = plan_retention([nightly, manual], policy, now=manual.started_at + timedelta(minutes=1))
    assert plan.delete == []
    assert "younger than 24 h" in plan.keep[nightly.id]

    later = START + timedelta(days=5)  # outside the window: keep_last still keeps both
    assert plan_retention([nightly, manual], policy, now=later).delete == []
    third = _manifest(4)
    plan = plan_retention([nightly, manual, third], policy, now=later)
    assert [m.id for m in plan.delete] == [nightly.id]  # manual: one of the 2 newest


def test_a_backup_held_by_a_running_run_is_kept(sqlite_settings, ctx_for, make_settings):
    from steward.backup import held_backups, hold_backups, run_hold

    settings = make_settings(
        backup__sql_retention__keep_daily="1",
        backup__sql_retention__keep_within_hours="0",
        backup__sql_retention__keep_last="1",
    )
    ctx = ctx_for(settings)
    older, newer = _manifest(0), _manifest(1)
    write_manifest(ctx.store, older)
    write_manifest(ctx.store, newer)
    with run_hold(ctx, "nightly flow run A") as hold:  # run A took `older` and reports on it
        hold_backups(ctx, hold, [older.id])
        report = prune_backups(ctx)
        assert report.deleted == []
        [row] = [r for r in report.kept if r["id"] == older.id]
        assert "held by running nightly flow run A" in row["reason"]
        assert list(held_backups(ctx, remove_lapsed=False)) == [older.id]
    report = prune_backups(ctx)  # run A ended: its hold is gone
    assert report.deleted_ids() == [older.id]


def test_a_hold_left_by_a_killed_run_lapses(sqlite_settings, ctx_for, make_settings):
    import subprocess
    import sys

    from steward.backup import hold_backups, run_hold

    settings = make_settings(
        backup__sql_retention__keep_daily="1",
        backup__sql_retention__keep_within_hours="0",
        backup__sql_retention__keep_last="1",
    )
    ctx = ctx_for(settings)
    older, newer = _manifest(0), _manifest(1)
    write_manifest(ctx.store, older)
    write_manifest(ctx.store, newer)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True, check=True)  # fmt: skip
    with run_hold(ctx, "a run killed outright", release=False) as hold:
        hold.pid = int(gone.stdout)  # its process no longer exists
        hold_backups(ctx, hold, [older.id])
    assert prune_backups(ctx).deleted_ids() == [older.id]
    assert list(ctx.store.list("backups/_runs/")) == []  # the lapsed hold was removed
