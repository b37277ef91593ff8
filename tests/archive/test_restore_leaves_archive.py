"""A restored row leaves its archive object: archive, restore some keys (a plain table and an
aggregate), archive again -> every row is in the source or in exactly one complete object, and
DuckDB over the prefix sees no duplicate. A crash after the restore committed (rows back, objects
not yet rewritten) leaves the rows in both; the rerun of the restore, or the next archive run,
finishes the rewrite."""

from __future__ import annotations

from collections import Counter

import pytest

from steward.archive import archive_table, manifest, open_sources
from steward.archive.restore import RestoreRequest, restore

from .conftest import archived_keys, assert_each_row_once, duckdb_query, snapshots

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
OUTBOX = "SELECT seq FROM read_parquet('{archive}/app/outbox/dt=*/*.parquet')"
ORDERS = "SELECT id FROM read_parquet('{archive}/app/orders/dt=*/*.parquet')"
ITEMS = "SELECT id FROM read_parquet('{archive}/app/orders/order_items/dt=*/*.parquet')"


class Crash(Exception):
    pass


def _archive(ctx, table: str) -> None:
    (source,) = open_sources(ctx, [table])
    archive_table(ctx, source)


def _spread_keys(ctx, table: str) -> list:
    """The first and last key of the first two complete batches."""
    with ctx.sql.connect() as conn:
        entries = manifest.entries(conn, table=table, states=[manifest.COMPLETE])
    assert len(entries) >= 2
    return [entries[0].key_min, entries[0].key_max, entries[1].key_max]


def _no_duplicates_in_place(ctx, query: str) -> int:
    seen = Counter(row[0] for row in duckdb_query(ctx, query))
    assert [key for key, n in seen.items() if n > 1] == []
    return len(seen)


@pytest.mark.parametrize(("table", "queries"), [("outbox", [OUTBOX]), ("orders", [ORDERS, ITEMS])])
def test_restored_rows_are_archived_again_once(app_settings, contexts, table, queries):
    ctx = contexts(app_settings(archive__batch_size=2 if table == "orders" else 5))
    tables = ("orders", "order_items") if table == "orders" else (table,)
    before = snapshots(ctx, tables)
    _archive(ctx, table)
    keys = _spread_keys(ctx, table)
    done = restore(ctx, RestoreRequest(table=table, keys=[str(k) for k in keys]))
    assert done.restored == len(keys)
    assert not set(keys) & set(archived_keys(ctx, table))  # back in the source only
    assert_each_row_once(ctx, before)
    _archive(ctx, table)  # they qualify again: archived once more, in a new batch
    assert all(archived_keys(ctx, table).count(k) == 1 for k in keys)
    assert_each_row_once(ctx, before)
    for query in queries:
        assert _no_duplicates_in_place(ctx, query) > 0


@pytest.mark.parametrize("rerun", ["restore", "archive"])
def test_a_crash_after_the_restore_commit_is_finished_by_the_rerun(app_settings, contexts, rerun):
    settings = app_settings(archive__batch_size=5)
    ctx = contexts(settings)
    before = snapshots(ctx, ("outbox",))
    _archive(ctx, "outbox")
    keys = _spread_keys(ctx, "outbox")[:2]  # one batch: the crash comes after its commit

    def crash(point: str) -> None:
        if point == "restore_committed":
            raise Crash(point)

    with pytest.raises(Crash):
        restore(contexts(settings, hook=crash), RestoreRequest(table="outbox", keys=keys))
    # Committed: the rows are back, and still in their objects (both copies, nothing lost).
    present = set(snapshots(ctx, ("outbox",))["outbox"].rows)
    archived = archived_keys(ctx, "outbox")
    assert all(k in present and archived.count(k) == 1 for k in keys)

    if rerun == "restore":
        again = restore(ctx, RestoreRequest(table="outbox", keys=keys))
        assert (again.restored, again.conflicts) == (0, len(keys))  # already back: left alone
    else:
        _archive(ctx, "outbox")  # finishes the rewrite first, then archives them once more
    assert_each_row_once(ctx, before)
    _archive(ctx, "outbox")
    assert_each_row_once(ctx, before)
    assert _no_duplicates_in_place(ctx, OUTBOX) > 0
    with ctx.sql.connect() as conn:
        left = conn.execute(manifest.restored_table.select()).all()
    assert left == []
