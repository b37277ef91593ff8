"""The tiering plan with an injected clock: which objects move, which wait, what they cost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from steward.errors import ConfigError
from steward.settings import TieringSettings, TierTransition
from steward.storage import ObjectInfo
from steward.tiering import GIB, effective_transitions, lifecycle_rules, plan_moves, summarize_usage

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DEFAULT = TieringSettings().effective_transitions()
WITH_DEEP = TieringSettings(deep_archive=True).effective_transitions()


def obj(key: str, storage_class: str, days_ago: float, size: int = 1000, **meta: str) -> ObjectInfo:
    """An object whose last write (or last class change) was ``days_ago`` before NOW."""
    return ObjectInfo(
        key=f"archive/app/orders/dt=2026-01-01/{key}.parquet",
        size=size,
        sha256="0" * 64,
        storage_class=storage_class,
        last_modified=NOW - timedelta(days=days_ago),
        metadata=dict(meta),
    )


def routes(plan) -> dict[str, tuple[str, str]]:
    return {m.key.rsplit("/", 1)[1]: (m.from_class, m.to_class) for m in plan.moves}


def test_objects_of_various_ages_move_to_the_class_their_age_calls_for() -> None:
    objects = [
        obj("fresh", "STANDARD", 0),
        obj("d30", "STANDARD", 30.9),
        obj("d31", "STANDARD", 31),
        obj("d40", "STANDARD", 40),
        obj("d180", "STANDARD", 180),
        obj("d200", "STANDARD", 200),  # skips STANDARD_IA: straight to GLACIER
        obj("d500", "STANDARD", 500),  # DEEP_ARCHIVE is off by default
    ]
    plan = plan_moves(objects, DEFAULT, NOW)
    assert routes(plan) == {
        "d31.parquet": ("STANDARD", "STANDARD_IA"),
        "d40.parquet": ("STANDARD", "STANDARD_IA"),
        "d180.parquet": ("STANDARD", "STANDARD_IA"),
        "d200.parquet": ("STANDARD", "GLACIER"),
        "d500.parquet": ("STANDARD", "GLACIER"),
    }
    assert plan.objects == 7 and plan.bytes == 7000 and plan.bytes_to_move == 5000
    assert plan.moves_by_route() == {"STANDARD -> STANDARD_IA": 3, "STANDARD -> GLACIER": 2}
    assert "5 to move" in plan.describe()


def test_moved_objects_continue_on_the_policy_schedule() -> None:
    # Moved to STANDARD_IA on day 31 (last_modified = the move): age = days in class + 31.
    on_time = obj("ia-150-days", "STANDARD_IA", 150)  # age 181 -> GLACIER
    early = obj("ia-149-days", "STANDARD_IA", 149)  # age 180 -> stays
    in_glacier = obj("glacier-185-days", "GLACIER", 185)  # age 366 -> DEEP_ARCHIVE (if on)
    plan = plan_moves([on_time, early, in_glacier], WITH_DEEP, NOW)
    assert routes(plan) == {
        "ia-150-days.parquet": ("STANDARD_IA", "GLACIER"),
        "glacier-185-days.parquet": ("GLACIER", "DEEP_ARCHIVE"),
    }
    assert routes(plan_moves([in_glacier], DEFAULT, NOW)) == {}


def test_created_at_metadata_gives_the_exact_age() -> None:
    created = (NOW - timedelta(days=200)).isoformat()
    moved_late = obj("ia", "STANDARD_IA", 100, created_at=created)
    plan = plan_moves([moved_late], DEFAULT, NOW)
    assert [(m.to_class, m.age_days) for m in plan.moves] == [("GLACIER", 200)]


def test_minimum_storage_duration_of_the_current_class_holds_an_object_back() -> None:
    # Written straight into STANDARD_IA / GLACIER 10 days ago with an old created_at:
    # due for a colder class by age, but must stay out its minimum duration first.
    old = (NOW - timedelta(days=400)).isoformat()
    objects = [
        obj("ia-10", "STANDARD_IA", 10, created_at=old),
        obj("ia-30", "STANDARD_IA", 30, created_at=old),
        obj("glacier-89", "GLACIER", 89, created_at=old),
        obj("glacier-90", "GLACIER", 90, created_at=old),
    ]
    plan = plan_moves(objects, WITH_DEEP, NOW)
    assert routes(plan) == {
        "ia-30.parquet": ("STANDARD_IA", "DEEP_ARCHIVE"),
        "glacier-90.parquet": ("GLACIER", "DEEP_ARCHIVE"),
    }
    held = {(h.key.rsplit("/", 1)[1], h.due_class, h.days_in_class, h.min_days) for h in plan.held}
    assert held == {
        ("ia-10.parquet", "DEEP_ARCHIVE", 10, 30),
        ("glacier-89.parquet", "DEEP_ARCHIVE", 89, 90),
    }
    for move in plan.moves:
        assert move.days_in_class >= {"STANDARD_IA": 30, "GLACIER": 90}[move.from_class]


def test_nothing_moves_backwards_or_to_a_class_already_reached() -> None:
    young = (NOW - timedelta(days=5)).isoformat()
    objects = [
        obj("young-in-glacier", "GLACIER", 5, created_at=young),
        obj("young-in-ia", "STANDARD_IA", 5, created_at=young),
        obj("deep", "DEEP_ARCHIVE", 1000),
        obj("ia-at-target", "STANDARD_IA", 40),
        obj("glacier-ir", "GLACIER_IR", 10),  # between IA and GLACIER: age 41 -> stays
        obj("onezone", "ONEZONE_IA", 900),  # a class tiering does not manage
    ]
    plan = plan_moves(objects, WITH_DEEP, NOW)
    assert plan.moves == [] and plan.held == []
    assert [key.rsplit("/", 1)[1] for key in plan.unmanaged] == ["onezone.parquet"]


def test_rerun_after_the_moves_plans_nothing() -> None:
    objects = [obj(f"o{days}", "STANDARD", days) for days in (1, 35, 190, 400)]
    first = plan_moves(objects, WITH_DEEP, NOW)
    assert len(first.moves) == 3
    # A move rewrites the object: last_modified becomes the time of the move (NOW).
    by_key = {m.key: m.to_class for m in first.moves}
    after = [
        ObjectInfo(o.key, o.size, o.sha256, by_key[o.key], NOW) if o.key in by_key else o
        for o in objects
    ]
    second = plan_moves(after, WITH_DEEP, NOW + timedelta(hours=1))
    assert second.moves == []
    # ...and a week later still nothing: the new classes count their time from the move.
    assert plan_moves(after, WITH_DEEP, NOW + timedelta(days=7)).moves == []


def test_costs_per_class_follow_s3_billing_rules() -> None:
    prices = TieringSettings().prices
    usage = {
        row.storage_class: row
        for row in summarize_usage(
            [("STANDARD", GIB), ("STANDARD", GIB), ("STANDARD_IA", 1000), ("GLACIER", GIB)], prices
        )
    }
    assert list(usage) == ["STANDARD", "STANDARD_IA", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"]
    assert usage["STANDARD"].objects == 2 and usage["STANDARD"].bytes == 2 * GIB
    assert usage["STANDARD"].monthly_cost_usd == pytest.approx(2 * 0.023)
    # A 1000-byte object in STANDARD_IA is billed as 128 KiB.
    assert usage["STANDARD_IA"].billable_bytes == 128 * 1024
    assert usage["STANDARD_IA"].monthly_cost_usd == pytest.approx(128 * 1024 / GIB * 0.0125)
    # GLACIER: +32 KiB at its own rate, +8 KiB at the STANDARD rate.
    glacier = (GIB + 32 * 1024) / GIB * 0.0036 + 8 * 1024 / GIB * 0.023
    assert usage["GLACIER"].monthly_cost_usd == pytest.approx(glacier)
    assert usage["DEEP_ARCHIVE"].objects == 0 and usage["DEEP_ARCHIVE"].monthly_cost_usd == 0
    unpriced = summarize_usage([("ONEZONE_IA", 10)], prices)[-1]
    assert (unpriced.storage_class, unpriced.monthly_cost_usd) == ("ONEZONE_IA", None)


def test_lifecycle_rules_mirror_the_transitions() -> None:
    rules = lifecycle_rules("archive/", WITH_DEEP)
    assert [(r.prefix, r.days, r.storage_class) for r in rules] == [
        ("archive/", 31, "STANDARD_IA"),
        ("archive/", 181, "GLACIER"),
        ("archive/", 366, "DEEP_ARCHIVE"),
    ]


def test_deep_archive_override_is_checked_against_the_transitions() -> None:
    tiering = TieringSettings(
        transitions=[
            TierTransition(days=31, storage_class="STANDARD_IA"),
            TierTransition(days=300, storage_class="GLACIER"),
        ],
    )
    assert [t.storage_class for t in effective_transitions(tiering)] == ["STANDARD_IA", "GLACIER"]
    with pytest.raises(ConfigError, match=r"tiering.deep_archive_days .*set days >= 390"):
        effective_transitions(tiering, deep_archive=True)


def test_objects_too_small_to_be_worth_moving_stay_put() -> None:
    objects = [obj("tiny", "STANDARD", 200, size=100 * 1024), obj("big", "STANDARD", 200, 1 << 20)]
    plan = plan_moves(objects, DEFAULT, NOW, min_object_bytes=128 * 1024)
    assert routes(plan) == {"big.parquet": ("STANDARD", "GLACIER")}
    assert plan.too_small == 1
    assert "1 below 131072 bytes left in place" in plan.describe()
