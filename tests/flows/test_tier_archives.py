"""Flow ``tier-archives`` under Prefect: copy mode on the folder store, lifecycle mode on S3."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import sqlalchemy as sa
from prefect.exceptions import ParameterTypeError

from flows.tier_archives import tier_archives
from steward.errors import ConfigError
from steward.storage import FolderStore, create_sql_engine, open_object_store

pytestmark = pytest.mark.usefixtures("prefect_harness")
MIB = 1024 * 1024


def put_aged(settings, ages: dict[str, int]) -> dict[str, str]:
    """Archive objects written ``age`` days ago (the store's clock set back)."""
    keys = {}
    for name, days in ages.items():
        when = datetime.now(UTC) - timedelta(days=days)
        store = FolderStore(settings.objects_url, clock=lambda when=when: when)
        keys[name] = f"archive/app/orders/dt={when:%Y-%m-%d}/{name}.parquet"
        store.put(keys[name], b"\x00" * MIB)
    return keys


def add_manifest_entries(settings, keys: dict[str, str]) -> sa.Engine:
    from steward.archive.manifest import manifest_table

    engine = create_sql_engine(settings)
    with engine.begin() as conn:
        for number, key in enumerate(keys.values()):
            conn.execute(
                manifest_table.insert().values(
                    batch_id=f"batch{number}", source="app", table_name="orders",
                    backend="sql", object_key=key, format="parquet", state="complete",
                    key_column="id", key_min="1", key_max="9", ts_column="deleted_at",
                    rows=9, storage_class="STANDARD", created_at=datetime.now(UTC),
                )
            )  # fmt: skip
    return engine


def manifest_classes(engine: sa.Engine) -> dict[str, str]:
    from steward.archive.manifest import manifest_table

    with engine.connect() as conn:
        rows = conn.execute(sa.select(manifest_table.c.object_key, manifest_table.c.storage_class))
        return {key.rsplit("/", 1)[1].split(".")[0]: cls for key, cls in rows}


def usage_rows(artifact: dict[str, Any]) -> dict[str, dict[str, Any]]:
    data = artifact["data"]
    rows = json.loads(data) if isinstance(data, str) else data
    return {row["storage_class"]: row for row in rows}


def test_copy_mode_moves_aged_objects_records_the_manifest_and_reports(
    make_settings, run_flow
) -> None:
    settings = make_settings()
    keys = put_aged(settings, {"d5": 5, "d40": 40, "d200": 200})
    engine = add_manifest_entries(settings, keys)

    summary, artifacts = run_flow(tier_archives)
    assert summary["mode"] == "copy" and summary["dry_run"] is False
    assert (summary["objects"], summary["planned_moves"], summary["moved"]) == (3, 2, 2)
    assert summary["routes"] == {"STANDARD -> STANDARD_IA": 1, "STANDARD -> GLACIER": 1}
    assert summary["after_is_projected"] is False
    assert summary["monthly_cost_after_usd"] < summary["monthly_cost_before_usd"]
    store = open_object_store(settings)
    assert {name: store.head(key).storage_class for name, key in keys.items()} == {
        "d5": "STANDARD",
        "d40": "STANDARD_IA",
        "d200": "GLACIER",
    }
    assert manifest_classes(engine) == {"d5": "STANDARD", "d40": "STANDARD_IA", "d200": "GLACIER"}

    assert {"tier-archives-usage", "tier-archives-lifecycle", "tier-archives-progress"} <= set(
        artifacts
    )
    usage = usage_rows(artifacts["tier-archives-usage"])
    assert (usage["STANDARD"]["objects_before"], usage["STANDARD"]["objects_after"]) == (3, 1)
    assert (usage["GLACIER"]["objects_before"], usage["GLACIER"]["objects_after"]) == (0, 1)
    assert usage["TOTAL"]["bytes_before"] == usage["TOTAL"]["bytes_after"] == 3 * MIB
    markdown = artifacts["tier-archives-lifecycle"]["data"]
    assert "**Copy**" in markdown and "Steward moved 2 objects" in markdown
    assert "| 181 | GLACIER | 90 days | 0.0036 |" in markdown

    rerun, _ = run_flow(tier_archives)
    assert (rerun["planned_moves"], rerun["moved"], rerun["objects"]) == (0, 0, 3)
    engine.dispose()


def test_dry_run_changes_nothing_and_projects_the_costs(make_settings, run_flow) -> None:
    settings = make_settings()
    keys = put_aged(settings, {"d40": 40, "d400": 400})

    summary, artifacts = run_flow(tier_archives, dry_run=True, include_deep_archive=True)
    assert summary["routes"] == {"STANDARD -> STANDARD_IA": 1, "STANDARD -> DEEP_ARCHIVE": 1}
    assert (summary["planned_moves"], summary["moved"]) == (2, 0)
    assert summary["after_is_projected"] is True
    store = open_object_store(settings)
    assert {store.head(key).storage_class for key in keys.values()} == {"STANDARD"}
    usage = usage_rows(artifacts["tier-archives-usage"])
    assert usage["DEEP_ARCHIVE"]["objects_after"] == 1
    assert (
        "**Dry run** (mode copy): nothing was changed."
        in artifacts["tier-archives-lifecycle"]["data"]
    )
    assert "tier-archives-progress" not in artifacts


def test_lifecycle_mode_on_s3_installs_rules_and_moves_nothing(
    make_settings, s3_url, moto_endpoint, run_flow
) -> None:
    settings = make_settings(objects__url=s3_url, objects__endpoint_url=moto_endpoint)
    store = open_object_store(settings)
    store.put("archive/app/orders/dt=2026-01-01/b1.parquet", b"x" * 1000)

    summary, artifacts = run_flow(tier_archives)  # auto on S3 -> lifecycle
    assert (summary["mode"], summary["lifecycle_installed"], summary["moved"]) == (
        "lifecycle",
        True,
        0,
    )
    assert [(r.prefix, r.days, r.storage_class) for r in store.get_lifecycle()] == [
        ("archive/", 31, "STANDARD_IA"),
        ("archive/", 181, "GLACIER"),
    ]
    bucket = s3_url.removeprefix("s3://").split("/", 1)[0]
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    rules = client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert {rule["Filter"]["Prefix"] for rule in rules} == {"steward/archive/"}
    assert "**Lifecycle**" in artifacts["tier-archives-lifecycle"]["data"]
    assert summary["after_is_projected"] is True


def test_lifecycle_mode_on_a_store_without_lifecycle_fails_clearly(make_settings) -> None:
    make_settings()
    with pytest.raises(ConfigError, match=r"mode=lifecycle, but the object store .* does not"):
        tier_archives(mode="lifecycle")


def test_bad_parameters_are_rejected_before_anything_runs(make_settings, run_flow) -> None:
    make_settings()
    with pytest.raises(ConfigError, match="prefix='/archive': .*relative key prefix ending in '/'"):
        tier_archives(prefix="/archive")
    with pytest.raises(ParameterTypeError, match="batch_size.*greater than or equal to 1"):
        tier_archives(batch_size=0)
    with pytest.raises(Exception, match="mode"):  # Prefect checks the Literal type first
        tier_archives(mode="move")
