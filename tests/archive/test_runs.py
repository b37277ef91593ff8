"""Run bookkeeping: a killed run is marked interrupted by the next one (and shows in the
status), and a resumed run reports every batch, so progress reaches the qualifying total."""

from __future__ import annotations

import pytest

from steward.archive import manifest, runs
from steward.archive.runner import archive_table
from steward.archive.sources import open_sources


class Stop(RuntimeError):
    pass


def test_a_killed_run_is_marked_interrupted_by_the_next(app_settings, contexts):
    ctx = contexts(app_settings(rows=0))
    (users,) = open_sources(ctx, ["users"])
    with ctx.sql.begin() as conn:  # what a kill -9 leaves behind
        runs.start_run(conn, "killed-run", users.source_name, "users")
        assert runs.status_rows(conn)[0]["last_status"] == "running"

    report = archive_table(ctx, users)

    assert report.interrupted_runs == 1
    with ctx.sql.connect() as conn:
        rows = conn.execute(manifest.runs_table.select().order_by(manifest.runs_table.c.id)).all()
        (shown,) = runs.status_rows(conn)
    assert [(r.run_id, r.status) for r in rows] == [
        ("killed-run", "interrupted"),
        (ctx.run_id, "finished"),
    ]
    assert rows[0].finished_at is not None
    assert shown["last_status"] == "finished" and shown["last_run"] is not None


def test_resumed_batches_count_towards_progress(app_settings, contexts):
    settings = app_settings(archive__batch_size=5)
    seen = {"n": 0}

    def stop_after_verify(point: str) -> None:
        if point == "object_verified":
            seen["n"] += 1
            if seen["n"] == 3:
                raise Stop("killed after the third verified batch")

    first = contexts(settings, hook=stop_after_verify)
    (outbox,) = open_sources(first, ["outbox"])
    with pytest.raises(Stop):
        archive_table(first, outbox)

    ctx = contexts(settings)
    (outbox,) = open_sources(ctx, ["outbox"])
    total = outbox.count()
    progressed: list[int] = []
    report = archive_table(ctx, outbox, on_batch=lambda result: progressed.append(result.rows))

    assert report.resumed_batches >= 1
    assert sum(progressed) == total == report.rows_archived
    assert outbox.count() == 0
