"""Cleanup removes only published events past the cut-off, in batches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa


def age_rows(env, where: str, days: int, *, status: str) -> None:
    """Make rows look ``days`` old with ``status`` (test-only literal SQL)."""
    with env.engine.begin() as conn:
        conn.execute(
            sa.text(
                f"UPDATE outbox SET status = :status, created_at = :at, "
                f"published_at = :published WHERE {where}"
            ),
            {
                "status": status,
                "at": datetime.now(UTC) - timedelta(days=days),
                "published": datetime.now(UTC) - timedelta(days=days)
                if status == "published"
                else None,
            },
        )


def test_cleanup_deletes_old_published_only_in_batches(outbox_env):
    env = outbox_env
    env.fill(40, 4)
    age_rows(env, "seq <= 25", 40, status="published")
    age_rows(env, "seq BETWEEN 26 AND 30", 10, status="published")
    age_rows(env, "seq BETWEEN 31 AND 33", 60, status="pending")
    age_rows(env, "seq BETWEEN 34 AND 35", 60, status="dead")
    relay = env.relay()
    before = datetime.now(UTC) - timedelta(days=30)
    size = relay.table_size()
    assert size["rows"] == 40 and size["bytes"] > 0
    assert relay.count_published_before(before) == 25

    deleted = []
    while True:
        deleted.append(relay.delete_published(before=before, limit=10))
        if deleted[-1] < 10:
            break
    assert deleted == [10, 10, 5]
    left = env.rows()
    assert [row.seq for row in left] == list(range(26, 41))
    assert {row.status for row in left if row.seq <= 35} == {"published", "pending", "dead"}
    assert relay.table_size()["rows"] == 15
