"""The garbage collector is relaxed only while an archive runs, and restored after it, also
when the run fails."""

from __future__ import annotations

import gc

import pytest

from steward.archive.collector import YOUNG_THRESHOLD
from steward.archive.runner import archive_table
from steward.archive.sources import open_sources


def test_the_collector_is_relaxed_during_a_run_and_restored_after(app_settings, contexts):
    settings = app_settings(rows=100)
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    during: list[tuple[int, int]] = []

    def look(point: str) -> None:
        if point == "object_written":
            during.append((gc.get_threshold()[0], gc.get_freeze_count()))

    ctx = contexts(settings, hook=look)
    report = archive_table(ctx, open_sources(ctx, ["users"])[0])

    assert report.rows_archived > 0 and during
    assert all(threshold >= YOUNG_THRESHOLD and count > 0 for threshold, count in during)
    assert gc.get_threshold() == before and gc.get_freeze_count() == frozen


def test_a_failed_run_restores_the_collector(app_settings, contexts):
    settings = app_settings(rows=100)
    before, frozen = gc.get_threshold(), gc.get_freeze_count()

    def fail(point: str) -> None:
        if point == "object_verified":
            raise RuntimeError("stop here")

    ctx = contexts(settings, hook=fail)
    with pytest.raises(RuntimeError, match="stop here"):
        archive_table(ctx, open_sources(ctx, ["users"])[0])
    assert gc.get_threshold() == before and gc.get_freeze_count() == frozen
