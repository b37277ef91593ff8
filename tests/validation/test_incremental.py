"""Incremental validation: after a passing run only changed rows (plus a rotating slice) are
checked, cross-table queries see only those keys, a break in a changed row is caught and keeps
being caught until fixed, a full run comes weekly or on demand."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from steward.errors import IntegrityViolation
from steward.settings import Settings
from steward.storage import open_object_store
from steward.validation import run_validation
from tests.validation.conftest import connect

STATE = "validation/state/orders.json"


def make_incremental(suites_dir: Path, sample_percent: float) -> None:
    index = json.loads((suites_dir / "index.json").read_text())
    entry = next(e for e in index["suites"] if e["suite"] == "orders")
    entry["incremental"] = {"column": "updated_at", "sample_percent": sample_percent}
    (suites_dir / "index.json").write_text(json.dumps(index))


def validate(settings: Settings, **options) -> dict:
    try:
        summary, _ = run_validation(settings, ["orders"], scrub_objects=0, **options)
    except IntegrityViolation as failed:
        return failed.summary  # type: ignore[attr-defined]
    return summary


def failing_ids(summary: dict) -> list[int]:
    return sorted(
        row["id"] for f in summary["failures"] if f["expectation"] == "total_equals_items"
        for row in f["sample"]
    )  # fmt: skip


def break_total(settings: Settings, order_id: int, *, touch: bool) -> None:
    touched = ", updated_at = CURRENT_TIMESTAMP" if touch else ""
    with connect(settings) as conn:
        conn.execute(
            sa.text(f"UPDATE orders SET total = total + 7{touched} WHERE id = :i"), {"i": order_id}
        )


def fix_total(settings: Settings, order_id: int) -> None:
    with connect(settings) as conn:
        conn.execute(sa.text("UPDATE orders SET total = total - 7 WHERE id = :i"), {"i": order_id})


@pytest.fixture
def settings(app_settings, suites_dir) -> Settings:
    make_incremental(suites_dir, sample_percent=0)
    return app_settings(rows=1500, validation__expectations_dir=str(suites_dir))


def test_changed_rows_only_after_a_passing_run_and_a_break_stays_caught(settings) -> None:
    first = validate(settings)
    assert first["success"] and "no passing run yet" in first["batches"]["orders"]
    second = validate(settings)
    assert second["success"] and second["batches"]["orders"].startswith("updated_at ≥ ")
    break_total(settings, 17, touch=True)  # the application changed order 17, wrongly
    break_total(settings, 23, touch=False)  # a silent change the column does not show
    caught = validate(settings)
    assert not caught["success"] and failing_ids(caught) == [17]
    again = validate(settings)  # the mark did not move: still caught on the next run
    assert failing_ids(again) == [17]
    fix_total(settings, 17)
    assert validate(settings)["success"]  # 23 is outside every window so far
    full = validate(settings, full=True)
    assert failing_ids(full) == [23] and "full run asked for" in full["batches"]["orders"]


def test_a_full_run_comes_when_the_last_one_is_older_than_full_every_days(settings) -> None:
    validate(settings)
    store = open_object_store(settings)
    state = json.loads(store.get_bytes(STATE))
    assert state["column"] == "updated_at" and state["high_water"] and state["last_full_at"]
    assert validate(settings)["batches"]["orders"].startswith("updated_at ≥ ")
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=8)
    state["last_full_at"] = old.isoformat()
    store.put(STATE, json.dumps(state).encode())
    break_total(settings, 31, touch=False)
    weekly = validate(settings)
    assert "last full run more than 7 day(s) ago" in weekly["batches"]["orders"]
    assert failing_ids(weekly) == [31]


def test_the_rotating_slice_reaches_unchanged_rows(app_settings, suites_dir) -> None:
    make_incremental(suites_dir, sample_percent=50)  # two slices: every row within two runs
    settings = app_settings(rows=1500, validation__expectations_dir=str(suites_dir))
    assert validate(settings)["success"]
    break_total(settings, 2, touch=False)  # in the first half of the key range
    break_total(settings, 149, touch=False)  # in the second half
    seen: set[int] = set()
    for _ in range(2):
        summary = validate(settings)
        assert "(slice " in summary["batches"]["orders"]
        seen |= set(failing_ids(summary))
    assert seen == {2, 149}


def test_a_changed_row_duplicating_an_unchanged_one_is_caught(app_settings, suites_dir) -> None:
    make_incremental(suites_dir, sample_percent=0)
    path = suites_dir / "orders.json"
    suite = json.loads(path.read_text())
    suite["expectations"].append(
        {"type": "expect_compound_columns_to_be_unique", "meta": {"name": "one_order_per_instant"},
         "kwargs": {"column_list": ["user_id", "created_at"]}}
    )  # fmt: skip
    path.write_text(json.dumps(suite))
    index = json.loads((suites_dir / "index.json").read_text())
    entry = next(e for e in index["suites"] if e["suite"] == "orders")
    entry["severity"]["one_order_per_instant"] = "critical"
    (suites_dir / "index.json").write_text(json.dumps(index))
    settings = app_settings(rows=1500, validation__expectations_dir=str(suites_dir))
    assert validate(settings)["success"]
    with connect(settings) as conn:  # order 40 now claims order 3's user and instant
        conn.execute(
            sa.text(
                "UPDATE orders SET user_id = (SELECT user_id FROM orders WHERE id = 3), "
                "created_at = (SELECT created_at FROM orders WHERE id = 3), "
                "updated_at = CURRENT_TIMESTAMP WHERE id = 40"
            )
        )
    summary = validate(settings)
    assert summary["batches"]["orders"].startswith("updated_at ≥ ")
    failure = next(f for f in summary["failures"] if f["expectation"] == "one_order_per_instant")
    assert failure["unexpected_count"] == 1 and failure["sample"] == [40]
    full = validate(settings, full=True)
    failure = next(f for f in full["failures"] if f["expectation"] == "one_order_per_instant")
    assert sorted(failure["sample"]) == [3, 40]
