"""`steward demo` describes each step in words and figures, whatever shape its summary has."""

from __future__ import annotations

from typing import Any

import pytest

from steward.cli.demo_report import describe_stats, describe_step, human_bytes, money


@pytest.mark.parametrize(
    ("usd", "shown"),
    [(3e-06, "$0.000003"), (0.0042, "$0.0042"), (12.345, "$12.35"), (0, "$0"), (None, "$0")],
)
def test_money_reads_as_dollars_never_scientific(usd: Any, shown: str) -> None:
    assert money(usd) == shown


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (0, 1536, 5 * 1024**3)] == ["0 B", "1.5 KB", "5.0 GB"]


@pytest.mark.parametrize(
    ("name", "summary", "expected"),
    [
        (
            "migrate",
            {"from_revision": None, "to_revision": "0003", "applied": [{}, {}, {}]},
            "3 migration(s) applied: database at revision 0003 (was base)",
        ),
        (
            "migrate",
            {"from_revision": "0003", "to_revision": "0003", "applied": [], "mongo": None},
            "database already at revision 0003: nothing to apply",
        ),
        ("demo-data", {"users": 10, "orders": 2000, "outbox": 40}, "2,050 synthetic rows in 3"),
        (
            "archive-to-s3",
            {"rows_archived": 437, "objects": 3, "bytes": 20480, "rows_kept": 5,
             "rows_still_qualifying": 0},
            "437 rows archived into 3 verified objects (20.0 KB) and deleted from the source; "
            "5 kept because other rows reference them",
        ),
        (
            "tier-archives",
            {"moved": 2, "objects": 3, "bytes_moved": 2048,
             "monthly_cost_before_usd": 3e-06, "monthly_cost_after_usd": 1e-06},
            "storage cost $0.000003 -> $0.000001 a month",
        ),
        (
            "relay-outbox",
            {"published": 1200, "batches": 3, "events_per_second": 850.5, "pending": 0,
             "dead": 1, "retried": 2},
            "1,200 outbox events published in 3 batch(es) (850.5/s); 0 still pending, 1 dead, "
            "2 retried",
        ),
        (
            "cleanup-outbox",
            {"rows_removed": 0, "older_than_days": 30, "why_zero": "nothing is that old"},
            "0 published outbox events older than 30 days removed (why 0: nothing is that old)",
        ),
    ],
)  # fmt: skip
def test_known_steps_read_as_sentences(name: str, summary: dict[str, Any], expected: str) -> None:
    assert expected in describe_step(name, summary)


def test_a_changed_summary_falls_back_to_labelled_figures() -> None:
    text = describe_step("archive-to-s3", {"archived": 12, "cost_usd": 3e-06, "mongo": None})

    assert text == "archived 12, cost usd $0.000003"
    assert "None" not in text and "e-06" not in text


@pytest.mark.parametrize("summary", [None, {}, {"nested": {"a": 1}}, "done", 5])
def test_unknown_step_and_odd_summaries_never_fail(summary: Any) -> None:
    assert describe_step("some-new-flow", summary)


def test_store_stats_read_in_words() -> None:
    text = describe_stats(
        {"backend": "sqlite", "size_bytes": 589824, "monthly_cost_usd": 0.000103, "x": None}
    )

    assert text == "backend sqlite, size 576.0 KB, monthly cost $0.000103"


def test_tier_explains_why_nothing_moved() -> None:
    text = describe_step(
        "tier-archives",
        {"moved": 0, "objects": 8, "planned_moves": 0, "bytes_moved": 0,
         "monthly_cost_before_usd": 1e-06, "monthly_cost_after_usd": 1e-06},
    )  # fmt: skip

    assert "none is old enough for the first transition yet" in text
