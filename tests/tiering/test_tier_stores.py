"""Tiering against real stores: the folder store (copy mode) and S3 through moto's HTTP server."""

from __future__ import annotations

from datetime import timedelta

import boto3
import pytest

from steward.errors import ObjectArchived
from steward.settings import TieringSettings
from steward.storage import FolderStore, open_object_store
from steward.tiering import (
    lifecycle_rules,
    move_objects,
    scan_tiers,
    tier_report,
    total_cost,
)

TIERING = TieringSettings()
DEFAULT = TIERING.effective_transitions()
WITH_DEEP = TIERING.effective_transitions(True)
PRICES = TIERING.prices
MIB = 1024 * 1024


def by_class(usage) -> dict[str, tuple[int, int]]:
    return {row.storage_class: (row.objects, row.bytes) for row in usage if row.objects}


def classes(store, keys: dict[str, str]) -> dict[str, str]:
    return {name: store.head(key).storage_class for name, key in keys.items()}


# --- folder store (copy mode) ---------------------------------------------------------------


@pytest.fixture
def folder(tmp_path, clock) -> FolderStore:
    return FolderStore((tmp_path / "objects").as_uri(), clock=clock)


def test_folder_objects_move_by_age_and_cost_report_follows(folder, clock, put_aged) -> None:
    keys = put_aged(folder, {"d5": 5, "d40": 40, "d200": 200}, size=MIB)
    folder.put("backups/db.dump", b"x" * 100, storage_class="STANDARD")  # outside the prefix
    before = tier_report(folder, "archive/", PRICES)
    assert by_class(before) == {"STANDARD": (3, 3 * MIB)}

    scan = scan_tiers(folder, "archive/", DEFAULT, PRICES, clock.now)
    assert {(m.key, m.to_class) for m in scan.plan.moves} == {
        (keys["d40"], "STANDARD_IA"),
        (keys["d200"], "GLACIER"),
    }
    assert by_class(scan.before) == by_class(before)
    outcome = move_objects(folder, scan.plan.moves)
    assert len(outcome.moved) == 2 and outcome.skipped == []
    assert classes(folder, keys) == {"d5": "STANDARD", "d40": "STANDARD_IA", "d200": "GLACIER"}
    assert folder.head("backups/db.dump").storage_class == "STANDARD"

    after = tier_report(folder, "archive/", PRICES)
    assert by_class(after) == {
        "STANDARD": (1, MIB),
        "STANDARD_IA": (1, MIB),
        "GLACIER": (1, MIB),
    }
    assert by_class(scan.projected) == by_class(after)
    assert total_cost(after) < total_cost(before)
    expected = (MIB * 0.023 + MIB * 0.0125 + (MIB + 32768) * 0.0036 + 8192 * 0.023) / 1024**3
    assert total_cost(after) == pytest.approx(expected)


def test_folder_glacier_object_is_unreadable_until_restored(folder, clock, put_aged) -> None:
    keys = put_aged(folder, {"old": 200, "young": 40})
    move_objects(folder, scan_tiers(folder, "archive/", DEFAULT, PRICES, clock.now).plan.moves)
    assert folder.get_bytes(keys["young"])  # STANDARD_IA stays readable
    with pytest.raises(ObjectArchived, match="GLACIER and not restored"):
        folder.get_bytes(keys["old"])
    folder.request_restore(keys["old"], tier="Expedited")
    clock.now += timedelta(hours=1)
    assert folder.get_bytes(keys["old"]) == bytes([3]) * 4096


def test_folder_rerun_moves_nothing_and_later_runs_continue(folder, clock, put_aged) -> None:
    keys = put_aged(folder, {"d40": 40, "d200": 200})
    move_objects(folder, scan_tiers(folder, "archive/", WITH_DEEP, PRICES, clock.now).plan.moves)
    rerun = scan_tiers(folder, "archive/", WITH_DEEP, PRICES, clock.now + timedelta(minutes=5))
    assert rerun.plan.moves == [] and rerun.plan.held == []

    # 150 days later the STANDARD_IA object is 190 days old: GLACIER. The GLACIER object is
    # due for DEEP_ARCHIVE at 366 only: 200 + 150 = 350, so it stays.
    clock.now += timedelta(days=150)
    later = scan_tiers(folder, "archive/", WITH_DEEP, PRICES, clock.now)
    assert [(m.key, m.from_class, m.to_class) for m in later.plan.moves] == [
        (keys["d40"], "STANDARD_IA", "GLACIER")
    ]
    move_objects(folder, later.plan.moves)
    assert classes(folder, keys) == {"d40": "GLACIER", "d200": "GLACIER"}


def test_folder_cold_object_needing_a_restore_is_left_in_place(folder, clock, put_aged) -> None:
    keys = put_aged(folder, {"d200": 200})
    move_objects(folder, scan_tiers(folder, "archive/", WITH_DEEP, PRICES, clock.now).plan.moves)
    clock.now += timedelta(days=200)  # age ~381 and 200 days in GLACIER: due for DEEP_ARCHIVE
    plan = scan_tiers(folder, "archive/", WITH_DEEP, PRICES, clock.now).plan
    assert [m.to_class for m in plan.moves] == ["DEEP_ARCHIVE"]
    outcome = move_objects(folder, plan.moves)
    assert outcome.moved == []
    assert outcome.skipped == [
        (
            keys["d200"],
            "GLACIER objects cannot be copied to DEEP_ARCHIVE without a restore; "
            "use lifecycle mode on S3",
        )
    ]
    assert folder.head(keys["d200"]).storage_class == "GLACIER"


def test_stale_plan_never_moves_an_object_backwards(folder, clock, put_aged) -> None:
    keys = put_aged(folder, {"d40": 40, "d45": 45})
    plan = scan_tiers(folder, "archive/", DEFAULT, PRICES, clock.now).plan
    folder.set_storage_class(keys["d40"], "GLACIER")  # moved by someone else meanwhile
    folder.delete(keys["d45"])  # e.g. an orphan removed by the archive flow
    outcome = move_objects(folder, plan.moves)
    assert outcome.moved == []
    assert outcome.skipped == [
        (keys["d40"], "already GLACIER"),
        (keys["d45"], "object no longer exists"),
    ]
    assert folder.head(keys["d40"]).storage_class == "GLACIER"


# --- S3 through moto ------------------------------------------------------------------------


@pytest.fixture
def s3_settings(make_settings, s3_url, moto_endpoint):
    return make_settings(objects__url=s3_url, objects__endpoint_url=moto_endpoint)


def bucket_rules(s3_url: str, moto_endpoint: str) -> list[dict]:
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    bucket = s3_url.removeprefix("s3://").split("/", 1)[0]
    return client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]


def test_s3_lifecycle_rules_are_installed_on_the_archive_prefix(
    s3_settings, s3_url, moto_endpoint
) -> None:
    store = open_object_store(s3_settings)
    assert store.put_lifecycle(lifecycle_rules("archive/", WITH_DEEP)) is True
    assert [(r.prefix, r.days, r.storage_class) for r in store.get_lifecycle()] == [
        ("archive/", 31, "STANDARD_IA"),
        ("archive/", 181, "GLACIER"),
        ("archive/", 366, "DEEP_ARCHIVE"),
    ]
    rules = bucket_rules(s3_url, moto_endpoint)
    assert {rule["Filter"]["Prefix"] for rule in rules} == {"steward/archive/"}
    assert sorted(
        (t["Days"], t["StorageClass"]) for rule in rules for t in rule["Transitions"]
    ) == [(31, "STANDARD_IA"), (181, "GLACIER"), (366, "DEEP_ARCHIVE")]


def test_s3_copy_mode_moves_classes_with_an_injected_clock(
    s3_settings, s3_url, moto_endpoint, clock, put_aged
) -> None:
    # moto stamps LastModified with the real time; the plan's clock is moved forward instead.
    store = open_object_store(s3_settings, clock=clock)
    keys = put_aged(store, {"a": 0, "b": 0})
    assert scan_tiers(store, "archive/", DEFAULT, PRICES, clock.now).plan.moves == []

    in_40_days = clock.now + timedelta(days=40)
    scan = scan_tiers(store, "archive/", DEFAULT, PRICES, in_40_days)
    assert {m.to_class for m in scan.plan.moves} == {"STANDARD_IA"}
    assert len(move_objects(store, scan.plan.moves).moved) == 2
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    bucket = s3_url.removeprefix("s3://").split("/", 1)[0]
    head = client.head_object(Bucket=bucket, Key="steward/" + keys["a"])
    assert head["StorageClass"] == "STANDARD_IA"
    assert by_class(tier_report(store, "archive/", PRICES)) == {"STANDARD_IA": (2, 8192)}

    # 160 days after the move (last_modified is the move): 160 + 31 >= 181 -> GLACIER.
    later = scan_tiers(store, "archive/", DEFAULT, PRICES, clock.now + timedelta(days=160))
    assert {(m.from_class, m.to_class) for m in later.plan.moves} == {("STANDARD_IA", "GLACIER")}
    move_objects(store, later.plan.moves)
    assert classes(store, keys) == {"a": "GLACIER", "b": "GLACIER"}
    with pytest.raises(ObjectArchived):
        store.get_bytes(keys["a"])
    rerun = scan_tiers(store, "archive/", DEFAULT, PRICES, clock.now + timedelta(days=160))
    assert rerun.plan.moves == []
