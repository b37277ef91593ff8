"""PostgreSQL: the guarded delete of a batch whose integer keys fill their range runs as one
key-range DELETE (guarded by the row versions read, the keys of the range the batch did not
read left out), which sends back only its row count; when fewer rows left than the batch
holds (a row changed) it is rolled back and the batch goes by its listed keys. Either way only
rows the batch read and archived unchanged leave, and the published object holds exactly
them."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from steward.archive import manifest
from steward.archive.runner import archive_table
from steward.archive.sources import open_sources
from steward.storage import create_sql_engine

from .conftest import NOW, archived_keys, snapshot

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def _add_users(settings, count: int) -> list[int]:
    """Soft-deleted users past retention, inserted in one transaction (one row version)."""
    engine = create_sql_engine(settings)
    stamp = NOW - timedelta(days=200)
    with engine.begin() as conn:
        first = conn.execute(sa.text("SELECT coalesce(max(id), 0) + 1 FROM users")).scalar_one()
        conn.execute(
            sa.text(
                "INSERT INTO users (id, email, full_name, country, created_at, updated_at, "
                "deleted_at) SELECT g, 'range-' || g || '@example.com', 'User ' || g, 'DE', "
                ":t, :t, :t FROM generate_series(CAST(:a AS BIGINT), CAST(:b AS BIGINT)) AS g"
            ),
            {"t": stamp, "a": first, "b": first + count - 1},
        )
    engine.dispose()
    return list(range(first, first + count))


def _deletes(ctx) -> list[str]:
    """Every DELETE on users the archive sends, as SQL text."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.startswith("DELETE FROM users"):
            seen.append(statement)

    sa.event.listen(ctx.sql.engine, "before_cursor_execute", record)
    return seen


def _ranged(statement: str) -> bool:
    return "users.id >= " in statement and "users.id <= " in statement


def _left(settings, ids: list[int]) -> list[int]:
    """The given users still in the table, through a connection of its own."""
    engine = create_sql_engine(settings)
    with engine.connect() as conn:
        query = sa.text("SELECT id FROM users WHERE id = ANY(:ids) ORDER BY id")
        left = list(conn.execute(query, {"ids": ids}).scalars())
    engine.dispose()
    return left


def _deleted_rows(ctx) -> list[int | None]:
    with ctx.sql.connect() as conn:
        return [e.deleted_rows for e in manifest.entries(conn, table="users")]


def test_a_batch_whose_keys_fill_their_range_leaves_in_one_delete_returning_nothing(
    app_settings, contexts
):
    settings = app_settings(rows=0, archive__batch_size=1000)
    ids = _add_users(settings, 40)
    ctx = contexts(settings)
    deletes = _deletes(ctx)
    report = archive_table(ctx, open_sources(ctx, ["users"])[0])

    assert len(deletes) == 1 and _ranged(deletes[0]) and "RETURNING" not in deletes[0]
    assert "ALL" not in deletes[0]  # consecutive keys: no key of the range to leave out
    assert report.rows_archived == 40 and report.rows_skipped == 0
    assert _left(settings, ids) == [] and _deleted_rows(ctx) == [40]
    assert sorted(archived_keys(ctx, "users")) == ids


def test_a_row_that_qualifies_after_the_read_inside_the_range_stays(app_settings, contexts):
    """A user not yet deleted when the batch is read is a hole in its keys; soft-deleted (past
    retention) before the delete, it is left out of the range and keeps a new version."""
    settings = app_settings(rows=0, archive__batch_size=1000)
    ids = _add_users(settings, 30)
    late = ids[9]
    engine = create_sql_engine(settings)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE users SET deleted_at = NULL WHERE id = :i"), {"i": late})
    engine.dispose()

    def qualify(point: str) -> None:
        if point == "object_verified":
            with ctx.sql.begin() as conn:
                conn.execute(
                    sa.text("UPDATE users SET deleted_at = created_at WHERE id = :i"), {"i": late}
                )

    ctx = contexts(settings, hook=qualify)
    deletes = _deletes(ctx)
    report = archive_table(ctx, open_sources(ctx, ["users"])[0])

    assert len(deletes) == 1 and _ranged(deletes[0]) and "users.id != ALL" in deletes[0]
    assert report.rows_archived == 29 and _deleted_rows(ctx) == [29]
    assert _left(settings, ids) == [late]
    assert sorted(archived_keys(ctx, "users")) == [i for i in ids if i != late]


def test_a_row_changed_mid_batch_stays_out_of_the_range_delete(app_settings, contexts):
    settings = app_settings(rows=0, archive__batch_size=1000)
    ids = _add_users(settings, 40)

    def change(point: str) -> None:
        if point == "object_verified":
            with ctx.sql.begin() as conn:  # a write that leaves updated_at alone
                conn.execute(
                    sa.text("UPDATE users SET full_name = 'Changed' WHERE id = :i"), {"i": ids[17]}
                )

    ctx = contexts(settings, hook=change)
    deletes = _deletes(ctx)
    report = archive_table(ctx, open_sources(ctx, ["users"])[0])

    # the range (39 of 40 rows left) rolled back, then the listed keys
    assert len(deletes) == 2 and _ranged(deletes[0]) and not _ranged(deletes[1])
    assert report.rows_archived == 39 and report.rows_skipped == 1
    assert _left(settings, ids) == [ids[17]] and _deleted_rows(ctx) == [39]
    kept = snapshot(ctx, "users").rows
    assert set(kept) & set(ids) == {ids[17]} and "Changed" in kept[ids[17]]
    assert sorted(archived_keys(ctx, "users")) == [i for i in ids if i != ids[17]]


def test_a_row_the_batch_did_not_read_inside_its_range_is_never_deleted(app_settings, contexts):
    """A user still referenced by an order when the batch is read is not in the batch; its
    order goes before the delete, so the range alone (same row version) would catch it: the
    range leaves out the keys the batch did not read, and the user stays."""
    settings = app_settings(rows=0, archive__batch_size=1000)
    ids = _add_users(settings, 30)
    held = ids[11]
    engine = create_sql_engine(settings)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO orders (user_id, status, currency, total, created_at, updated_at) "
                "VALUES (:u, 'paid', 'EUR', 10, now(), now())"
            ),
            {"u": held},
        )
    engine.dispose()

    def release(point: str) -> None:
        if point == "object_verified":
            with ctx.sql.begin() as conn:
                conn.execute(sa.text("DELETE FROM orders WHERE user_id = :u"), {"u": held})

    ctx = contexts(settings, hook=release)
    deletes = _deletes(ctx)
    report = archive_table(ctx, open_sources(ctx, ["users"])[0])

    assert len(deletes) == 1 and _ranged(deletes[0]) and "users.id != ALL" in deletes[0]
    assert report.rows_archived == 29 and report.rows_skipped == 0
    assert _left(settings, ids) == [held] and _deleted_rows(ctx) == [29]
    assert set(snapshot(ctx, "users").rows) & set(ids) == {held}
    assert sorted(archived_keys(ctx, "users")) == [i for i in ids if i != held]


def test_sparse_keys_are_deleted_by_their_listed_keys(app_settings, contexts):
    """Qualifying rows scattered over a long key range (every fourth user) are not deleted
    by range: the range scan would read mostly rows that stay."""
    settings = app_settings(rows=0, archive__batch_size=1000)
    ids = _add_users(settings, 80)
    engine = create_sql_engine(settings)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE users SET deleted_at = NULL WHERE id = ANY(:ids)"),
            {"ids": [i for i in ids if i % 4]},
        )
    engine.dispose()
    ctx = contexts(settings)
    deletes = _deletes(ctx)
    report = archive_table(ctx, open_sources(ctx, ["users"])[0])

    assert deletes and not any(_ranged(s) for s in deletes)
    assert report.rows_archived == 20
    assert sorted(archived_keys(ctx, "users")) == [i for i in ids if i % 4 == 0]
