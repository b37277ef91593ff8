"""The nightly health report: headline first, every section's figures, zeros explained, and the
table rows carrying the same numbers. Built from step summaries of several shapes."""

from __future__ import annotations

import pytest

from steward.errors import ConfigError
from steward.health import (
    FAILED,
    NIGHTLY_STEPS,
    NOT_INSTALLED,
    NOT_RUN,
    OK,
    STEP_NAMES,
    StepOutcome,
    blocked_by,
    build_report,
    check_skip,
    failed_critical,
)

HEALTH = {
    "ok": True,
    "components": {
        "database": {
            "status": "up",
            "latency_ms": 1.2,
            "target": "postgresql+psycopg://app:***@db/app",
            "error": None,
            "stats": {
                "size_bytes": 5 * 1024**3,
                "connections": 12,
                "max_connections": 100,
                "oldest_transaction_s": 3.0,
                "largest_tables": [{"table": "public.orders", "bytes": 2**30, "dead_share": 0.1}],
            },
        },
        "cache": {
            "status": "up",
            "latency_ms": 0.4,
            "target": "redis://cache:6379/0",
            "error": None,
            "stats": {"hit_ratio": 0.875, "evicted_keys": 0, "used_memory_bytes": 2**20},
        },
        "objects": {"status": "up", "latency_ms": 3.0, "target": "s3://b/p", "error": None,
                    "stats": {"per_class": []}},
        "documents": {"status": "not configured", "latency_ms": None, "target": "",
                      "error": None, "stats": {}},
    },
}  # fmt: skip
BACKLOG = {"pending": 4, "retrying": 1, "dead": 0, "oldest_pending_age_seconds": 12.5}


def outcomes(**summaries: dict) -> dict[str, StepOutcome]:
    return {
        step.name: StepOutcome(
            step.name,
            OK,
            2.0,
            summaries.get(step.name.replace("-", "_"), {}),
            critical=step.critical,
        )
        for step in NIGHTLY_STEPS
    }


def good_night() -> dict[str, StepOutcome]:
    return outcomes(
        backup_databases={
            "backups": [
                {"source": "db", "size_bytes": 3 * 2**20, "duration_s": 4.0, "verified": True},
                {"source": "documents", "size_bytes": 2**20, "duration_s": 1.0, "verified": True},
            ]
        },
        archive_to_s3={
            "tables": {
                "orders": {"table": "orders", "rows_archived": 1200, "bytes": 40960,
                           "objects": 2, "rows_skipped": 3, "kept": 5,
                           "kept_reason": "referenced by order_items.order_id (5)"},
                "audit_log": {"table": "audit_log", "rows_archived": 0, "bytes": 0,
                              "objects": 0, "rows_skipped": 0},
            }
        },
        tier_archives={
            "after": [
                {"storage_class": "STANDARD", "objects": 5, "bytes": 5000,
                 "monthly_cost_usd": 0.0001},
                {"storage_class": "GLACIER", "objects": 0, "bytes": 0, "monthly_cost_usd": 0.0},
            ]
        },
        cleanup_outbox={"rows_removed": 77},
        validate_data={"success": True, "suites": 3, "failures": [],
                       "data_docs_url": "file:///srv/steward/data_docs/index.html"},
        warm_cache={"keys_written": 5400},
    )  # fmt: skip


def test_a_good_night_reads_all_good_with_every_figure() -> None:
    report = build_report(good_night(), HEALTH, BACKLOG, title="Steward nightly")
    page = report.markdown

    assert page.splitlines()[2] == "**All good**: every step completed"
    assert report.attention == []
    assert "size: 4.0 MiB, duration: 5 s, backups: 2" in page
    assert "proven restorable" in page and "matched): yes" in page
    assert (
        "| orders | 1200 | 40.0 KiB | 2 | 8 | referenced by order_items.order_id (5); "
        "3 changed since they were read (retried next night) |"
    ) in page
    assert "| audit_log | 0 | 0 B | 0 | 0 | none kept |" in page
    assert "| STANDARD | 5 | 4.9 KiB | 0.000100 |" in page and "GLACIER" not in page
    assert "pending: 4 (retrying 1), dead letters: 0, lag (oldest pending): 12 s" in page
    assert "removed by cleanup-outbox: 77" in page
    assert "outcome: passed; suites: 3; failed expectations: 0" in page
    assert (
        "[file:///srv/steward/data_docs/index.html](file:///srv/steward/data_docs/index.html)"
        in page
    )
    assert "keys warmed: 5400; keyspace hit ratio: 87.5%" in page
    assert "connections 12 of 100" in page and "public.orders 1.0 GiB (10% dead)" in page
    figures = {(r["section"], r["figure"]): r["value"] for r in report.rows}
    assert figures[("backup", "size_bytes")] == 4 * 2**20
    assert figures[("backup", "verified")] is True
    assert figures[("archive", "orders rows")] == 1200
    assert figures[("tiers", "STANDARD monthly_cost_usd")] == 0.0001
    assert figures[("outbox", "pending")] == 4 and figures[("cache", "hit_ratio")] == 0.875
    assert figures[("steps", "warm-cache state")] == OK


def test_a_failed_backup_heads_the_page_and_explains_the_archive_zero() -> None:
    night = good_night()
    night["backup-databases"] = StepOutcome(
        "backup-databases", FAILED, 1.0, error="pg_dump: connection refused", critical=True
    )
    night["archive-to-s3"] = StepOutcome(
        "archive-to-s3", NOT_RUN, reason="backup-databases failed: it is this step's safety net",
        critical=True,
    )  # fmt: skip

    report = build_report(night, HEALTH, BACKLOG, title="Steward nightly")

    assert report.headline.startswith("**Needs attention**: backup-databases failed (pg_dump")
    assert "archive-to-s3 did not run (backup-databases failed" in report.headline
    assert "No backup figures: backup-databases failed (pg_dump" in report.markdown
    assert "Nothing archived: archive-to-s3 not run (backup-databases failed" in report.markdown
    assert failed_critical(night) == ["backup-databases", "archive-to-s3"]


def test_problems_found_by_steps_and_stores_need_attention() -> None:
    night = good_night()
    night["validate-data"].summary = {
        "success": False,
        "failures": [{"suite": "orders", "expectation": "total_matches_items", "count": 3,
                      "sample_keys": [17, 42]}],
        "data_docs_url": "http://docs/x",
    }  # fmt: skip
    night["backup-databases"].summary = {"size_bytes": 10, "verified": False}
    health = {**HEALTH, "components": {**HEALTH["components"]}}
    health["components"]["cache"] = {
        "status": "down", "latency_ms": None, "target": "redis://cache:6379/0",
        "error": "Connection refused; check cache.url", "stats": {},
    }  # fmt: skip
    backlog = {**BACKLOG, "dead": 2, "oldest_pending_age_seconds": 7200.0}

    report = build_report(night, health, backlog, title="Steward nightly")

    assert report.attention == [
        "the backup was not proven restorable (verification failed or off)",
        "2 outbox events are dead letters",
        "the oldest pending outbox event waits for 2.0 h",
        "1 expectations failed validation",
        "cache is down (check cache.url)",
    ]
    assert "outcome: FAILED" in report.markdown
    assert "expectation: total_matches_items, count: 3, sample_keys: [17, 42]" in report.markdown
    assert "| cache | down: Connection refused; check cache.url |" in report.markdown
    assert "keyspace hit ratio: n/a (Redis is down: no figures)" in report.markdown


def test_missing_steps_and_unknown_summary_shapes_show_na_not_errors() -> None:
    night = {
        name: StepOutcome(name, NOT_INSTALLED, reason=f"flows.{name} is not in this checkout")
        for name in STEP_NAMES
    }
    night["archive-to-s3"] = StepOutcome("archive-to-s3", OK, 1.0, {"tables": "weird"})
    night["warm-cache"] = StepOutcome("warm-cache", OK, 1.0, {"result": "[1, 2]"})

    report = build_report(night, {}, {"error": "no such table outbox"}, title="t", dry_run=True)

    assert report.headline == "**All good**: every step completed (dry run: nothing changed)"
    assert "No backup figures: backup-databases not installed" in report.markdown
    assert "no archive policy is enabled" in report.markdown
    assert "Outbox not readable: no such table outbox" in report.markdown
    assert "keys warmed: n/a" in report.markdown
    assert "No objects in the store yet." in report.markdown


def test_skip_accepts_step_names_and_suggests_the_closest_on_a_typo() -> None:
    assert check_skip(None) == [] and check_skip([]) == []
    assert check_skip(["warm-cache", "tier-archives"]) == ["warm-cache", "tier-archives"]
    assert check_skip("warm-cache") == ["warm-cache"]
    with pytest.raises(ConfigError, match="'archive-to-s4'.*did you mean 'archive-to-s3'"):
        check_skip(["archive-to-s4"])
    with pytest.raises(ConfigError, match="accepted: backup-databases, archive-to-s3"):
        check_skip([42])  # type: ignore[list-item]


def test_archive_and_tiering_wait_for_a_good_backup_others_do_not() -> None:
    steps = {step.name: step for step in NIGHTLY_STEPS}
    failed = {"backup-databases": StepOutcome("backup-databases", FAILED)}
    skipped = {"backup-databases": StepOutcome("backup-databases", "skipped")}

    assert "backup-databases failed" in blocked_by(steps["archive-to-s3"], failed)
    assert "backup-databases failed" in blocked_by(steps["tier-archives"], failed)
    assert blocked_by(steps["validate-data"], failed) is None
    assert blocked_by(steps["warm-cache"], failed) is None
    assert blocked_by(steps["archive-to-s3"], skipped) is None  # skipping is the user's call
    assert [s.name for s in NIGHTLY_STEPS] == [
        "backup-databases", "archive-to-s3", "tier-archives", "cleanup-outbox", "validate-data",
        "warm-cache",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("summary", "verified"),
    [
        (  # backup-databases' own shape: per source, plus counts
            {"backups": 2, "verified": 1, "sources": {
                "database": {"size_bytes": 100, "duration_s": 1.0, "verified": True},
                "documents": {"size_bytes": 50, "duration_s": 0.5, "verified": False}}},
            False,
        ),
        ({"backups": 1, "verified": 1, "sources": {}}, True),  # counts only
        ({"size_bytes": 150, "verified": True}, True),  # flat
        ({}, None),
    ],
)  # fmt: skip
def test_backup_figures_from_each_summary_shape(summary, verified) -> None:
    from steward.health.figures import backup_figures

    found = backup_figures(summary)

    assert found["verified"] is verified
    if summary.get("sources"):
        assert found["size_bytes"] == 150 and found["duration_s"] == 1.5
        assert found["backups"] == 2


def test_an_aggregates_child_rows_are_in_the_report_and_the_figures() -> None:
    night = outcomes(
        archive_to_s3={
            "tables": {
                "orders": {"table": "orders", "rows_archived": 300, "bytes": 9000, "objects": 4,
                           "kept": 0, "children": {"order_items": 1200, "payments": 300,
                                                   "inventory_reservations": 308}},
            }
        }
    )  # fmt: skip

    report = build_report(night, HEALTH, BACKLOG, title="Steward nightly")

    assert (
        "| orders | 300 (+1,808 child rows: order_items 1,200, payments 300, "
        "inventory_reservations 308) |" in report.markdown
    )
    figures = {(r["section"], r["figure"]): r["value"] for r in report.rows}
    assert figures[("archive", "orders child order_items rows")] == 1200
    assert figures[("archive", "orders child inventory_reservations rows")] == 308


def test_zero_reasons_are_true() -> None:
    night = outcomes(
        archive_to_s3={
            "tables": {
                "users": {"table": "users", "rows_archived": 0, "kept": 344,
                          "kept_reason": "referenced by orders.user_id (344)"},
            }
        },
        cleanup_outbox={"rows_removed": 0, "why_zero": "no event in `outbox` was published more "
                        "than 30 days ago: its 120 rows are newer, pending or dead"},
    )  # fmt: skip

    page = build_report(night, HEALTH, BACKLOG, title="Steward nightly").markdown

    assert "0 rows archived: 344 rows past their policy's cut-off were kept" in page
    assert "no row is older than its policy's cut-off" not in page
    assert (
        "published events removed by cleanup-outbox: 0 (no event in `outbox` was published "
        "more than 30 days ago" in page
    )
    not_run = outcomes()
    not_run["cleanup-outbox"] = StepOutcome("cleanup-outbox", FAILED, error="boom")
    assert (
        "removed by cleanup-outbox: n/a (cleanup-outbox failed (boom))"
        in build_report(not_run, HEALTH, BACKLOG, title="Steward nightly").markdown
    )


def test_step_durations_show_work_and_waiting_on_prefect_apart() -> None:
    night = outcomes()
    night["cleanup-outbox"] = StepOutcome("cleanup-outbox", OK, 208.7, {}, work_s=1.0)

    report = build_report(night, HEALTH, BACKLOG, title="Steward nightly")

    assert "| cleanup-outbox | ✅ completed | 208.7 s | 1.0 s | 207.7 s |" in report.markdown
    figures = {(r["section"], r["figure"]): r["value"] for r in report.rows}
    assert figures[("steps", "cleanup-outbox work seconds")] == 1.0
    assert figures[("steps", "cleanup-outbox waiting seconds")] == 207.7


def test_a_store_down_and_the_step_it_broke_give_the_advice_once() -> None:
    advice = "check cache.url and that Redis is up"
    night = outcomes()
    night["warm-cache"] = StepOutcome(
        "warm-cache",
        FAILED,
        error=f"SourceUnavailable: warming: Redis unreachable (refused); {advice}",
    )
    health = {**HEALTH, "components": {**HEALTH["components"]}}
    health["components"]["cache"] = {
        "status": "down", "latency_ms": None, "target": "redis://cache:6379/0",
        "error": f"redis://cache:6379/0: Redis unreachable (refused); {advice}", "stats": {},
    }  # fmt: skip

    report = build_report(night, health, BACKLOG, title="Steward nightly")

    assert report.headline.count(advice) == 1
    assert "warm-cache failed (SourceUnavailable: warming: Redis unreachable (refused))" in (
        report.headline
    )
    assert f"cache is down ({advice})" in report.headline


def test_a_physical_backup_shows_its_type_size_window_and_wal_lag() -> None:
    night = good_night()
    night["backup-databases"].summary = {
        "backups": 2,
        "verified": 2,
        "sources": {
            "database": {"engine": "postgresql", "size_bytes": 2**20, "verified": True},
            "cluster": {"engine": "physical", "type": "incr", "size_bytes": 3 * 2**20,
                        "database_size": 40 * 2**20, "verified": True,
                        "recoverable_from": "2026-12-05T01:00:07.5+00:00",
                        "recoverable_to": "2026-12-06T01:10:00+00:00", "archive_lag_s": 42.0},
        },
    }  # fmt: skip
    report = build_report(night, HEALTH, BACKLOG, title="Nightly")
    lines = report.markdown.splitlines()
    assert "- physical (pgBackRest): incr backup, 3.0 MiB stored (database 40.0 MiB)" in lines
    assert (
        "- recoverable window: 2026-12-05 01:00:07 UTC to 2026-12-06 01:10:00 UTC, "
        "WAL archive lag 42 s"
    ) in lines
    figures = {(r["section"], r["figure"]): r["value"] for r in report.rows}
    assert figures[("backup", "physical type")] == "incr"
    assert figures[("backup", "physical archive_lag_s")] == 42.0

    night["backup-databases"].summary["sources"]["cluster"] |= {
        "window_problem": "pgbackrest info failed (exit code 82): unable to find stanza"
    }
    page = build_report(night, HEALTH, BACKLOG, title="Nightly").markdown
    assert "- recoverable window: not read (pgbackrest info failed (exit code 82)" in page
    assert "physical" not in build_report(good_night(), HEALTH, BACKLOG, title="N").markdown
