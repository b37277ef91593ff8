"""The exact change guard: an update that does not touch ``updated_at`` still keeps its row
(PostgreSQL compares the row version ``xmin``, SQLite the whole row), alone and with writers
running concurrently with the archive."""

from __future__ import annotations

import random
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from steward.archive import manifest
from steward.archive.runner import archive_table
from steward.archive.sources import open_sources
from steward.storage import create_sql_engine

from .conftest import NOW, archived_keys, restore_everything, snapshot


def _add_users(settings, count: int) -> list[int]:
    """Soft-deleted users without orders, all past retention."""
    engine = create_sql_engine(settings)
    with engine.begin() as conn:
        first = conn.execute(sa.text("SELECT coalesce(max(id), 0) + 1 FROM users")).scalar_one()
        users = sa.Table("users", sa.MetaData(), autoload_with=conn)
        stamp = NOW - timedelta(days=200)
        conn.execute(
            users.insert(),
            [
                {
                    "id": first + i,
                    "email": f"writer-{i}@example.com",
                    "full_name": f"User {i}",
                    "country": "DE",
                    "created_at": stamp,
                    "updated_at": stamp,
                    "deleted_at": stamp,
                }
                for i in range(count)
            ],
        )
    engine.dispose()
    return list(range(first, first + count))


def test_an_update_that_skips_updated_at_keeps_its_row(app_settings, contexts):
    settings = app_settings(archive__batch_size=1000)
    ids = _add_users(settings, 10)
    changed: list[int] = []

    def change(point: str) -> None:
        if point == "object_verified" and not changed:
            with ctx.sql.begin() as conn:  # what an app with a stale ORM mapping does
                conn.execute(
                    sa.text("UPDATE users SET full_name = 'Renamed' WHERE id = :i"), {"i": ids[3]}
                )
            changed.append(ids[3])

    ctx = contexts(settings, hook=change)
    (users,) = open_sources(ctx, ["users"])
    report = archive_table(ctx, users)

    assert changed and report.rows_skipped == 1
    kept = snapshot(ctx, "users").rows
    assert ids[3] in kept and "Renamed" in kept[ids[3]]
    assert not (set(ids) - {ids[3]}) & set(kept)
    assert ids[3] not in archived_keys(ctx, "users")
    with ctx.sql.connect() as conn:
        (entry,) = manifest.entries(conn, table="users")
    assert entry.skipped_keys == [ids[3]]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_concurrent_writers_that_skip_updated_at_never_lose_an_update(app_settings, contexts):
    """Two writer threads update users being archived (small batches) without touching
    updated_at. Afterwards, restoring everything gives every user its last committed value:
    no update was lost to an archived stale copy."""
    settings = app_settings(rows=0, archive__batch_size=50)
    ids = _add_users(settings, 1500)
    last: dict[int, str] = {}
    stop = threading.Event()
    engine = create_sql_engine(settings)

    def write(seed: int) -> None:
        rng = random.Random(seed)
        n = 0
        while not stop.is_set():
            n += 1
            target, value = rng.choice(ids), f"{seed}-{n}"
            with engine.begin() as conn:
                done = conn.execute(
                    sa.text("UPDATE users SET full_name = :v WHERE id = :i"),
                    {"v": value, "i": target},
                ).rowcount
                if done:  # committed below, before any later update of the same row
                    last[target] = value

    writers = [threading.Thread(target=write, args=(seed,)) for seed in (1, 2)]
    for thread in writers:
        thread.start()
    try:
        ctx = contexts(settings)
        (users,) = open_sources(ctx, ["users"])
        report = archive_table(ctx, users)
    finally:
        stop.set()
        for thread in writers:
            thread.join()
        engine.dispose()

    assert last and report.rows_archived > 0
    restore_everything(ctx, ("users",))
    final = snapshot(ctx, "users").rows
    lost = [i for i, value in last.items() if f'"{value}"' not in final[i]]
    assert lost == []
