"""Archive runs allocate Arrow buffers from jemalloc (freed batch buffers go back: peak RSS
368 -> 286 MiB in bench.archive's orders shape), unless the operator chose a pool."""

from __future__ import annotations

import pyarrow as pa
import pytest

from steward.archive.arrow_memory import use_archive_memory_pool
from steward.archive.runner import archive_table
from steward.archive.sources import open_sources


@pytest.fixture
def arrow_pool():
    previous = pa.default_memory_pool()
    yield
    pa.set_memory_pool(previous)


def test_an_archive_run_allocates_arrow_buffers_from_jemalloc(
    app_settings, contexts, monkeypatch, arrow_pool
):
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    pa.set_memory_pool(pa.mimalloc_memory_pool())  # what the Linux wheels start with
    seen: list[str] = []

    def look(point: str) -> None:
        if point == "object_written":
            seen.append(pa.default_memory_pool().backend_name)

    ctx = contexts(app_settings(rows=100), hook=look)
    report = archive_table(ctx, open_sources(ctx, ["users"])[0])

    assert report.rows_archived > 0
    assert seen and set(seen) == {"jemalloc"}


def test_a_pool_the_operator_chose_is_left_alone(monkeypatch, arrow_pool):
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "system")
    pa.set_memory_pool(pa.system_memory_pool())

    assert use_archive_memory_pool() == "system"
    assert pa.default_memory_pool().backend_name == "system"
