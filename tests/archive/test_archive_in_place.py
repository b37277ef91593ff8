"""Reading the archive in place: DuckDB over the whole archive prefix sees exactly the rows that
left the source, each once, with the values they had when they left — while writers change
qualifying rows during the run (without touching ``updated_at``), for a plain table and an
aggregate, on the folder store and on S3, and after a failure between the new steps (delete
committed, final object published, batch completed) and a rerun."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from steward.archive import manifest
from steward.archive.runner import archive_table
from steward.archive.sources import open_sources
from steward.storage import create_sql_engine

from .conftest import NOW, assert_each_row_once, duckdb_query, snapshots

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
USERS = "SELECT id, full_name FROM read_parquet('{archive}/app/users/dt=*/*.parquet')"
ORDERS = "SELECT id, status FROM read_parquet('{archive}/app/orders/dt=*/*.parquet')"
ITEMS = (
    "SELECT id, order_id, quantity "
    "FROM read_parquet('{archive}/app/orders/order_items/dt=*/*.parquet')"
)
STAMP = NOW - timedelta(days=200)


@pytest.fixture(params=["folder", "s3"])
def store_settings(request, app_settings, s3_url, moto_endpoint) -> Callable[..., Any]:
    def make(**overrides: Any):
        if request.param == "s3":
            overrides.update(objects__url=s3_url, objects__endpoint_url=moto_endpoint)
        return app_settings(**overrides)

    return make


def _add_users(conn, count: int) -> dict[int, str]:
    first = conn.execute(sa.text("SELECT coalesce(max(id), 0) + 1 FROM users")).scalar_one()
    users = sa.Table("users", sa.MetaData(), autoload_with=conn)
    rows = [
        {
            "id": first + i,
            "email": f"in-place-{first + i}@example.com",
            "full_name": f"User {i}",
            "created_at": STAMP,
            "updated_at": STAMP,
            "deleted_at": STAMP,
        }
        for i in range(count)
    ]
    conn.execute(users.insert(), rows)
    return {row["id"]: row["full_name"] for row in rows}


def _add_orders(conn, count: int) -> tuple[dict[int, str], dict[int, tuple[int, int]]]:
    """Old soft-deleted orders of a new user, two items each: status, (order_id, quantity)."""
    (user,) = _add_users(conn, 1)
    conn.execute(sa.text("UPDATE users SET deleted_at = NULL WHERE id = :u"), {"u": user})
    product = conn.execute(sa.text("SELECT min(id) FROM products")).scalar_one()
    first = conn.execute(sa.text("SELECT coalesce(max(id), 0) + 1 FROM orders")).scalar_one()
    orders = {first + i: "cancelled" for i in range(count)}
    conn.execute(
        sa.text(
            "INSERT INTO orders (id, user_id, status, currency, total, created_at, updated_at, "
            "deleted_at) VALUES (:id, :u, :s, 'EUR', 10, :t, :t, :t)"
        ),
        [{"id": i, "u": user, "s": s, "t": STAMP} for i, s in orders.items()],
    )
    start = conn.execute(sa.text("SELECT coalesce(max(id), 0) + 1 FROM order_items")).scalar_one()
    items = {start + 2 * n + k: (order, 1) for n, order in enumerate(orders) for k in range(2)}
    conn.execute(
        sa.text(
            "INSERT INTO order_items (id, order_id, product_id, quantity, unit_price) "
            "VALUES (:id, :o, :p, :q, 5)"
        ),
        [{"id": i, "o": o, "p": product, "q": q} for i, (o, q) in items.items()],
    )
    return orders, items


class Writers:
    """Threads that keep updating qualifying rows without touching ``updated_at``; ``last``
    holds each row's last committed value (only updates that found their row count)."""

    def __init__(self, settings, statements: list[tuple[str, list[int]]]) -> None:
        self.engine = create_sql_engine(settings)
        self.statements = statements
        self.last: dict[tuple[str, int], Any] = {}
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._write, args=(s,)) for s in (1, 2)]

    def _write(self, seed: int) -> None:
        rng = random.Random(seed)
        n = 0
        while not self.stop.is_set():
            n += 1
            sql, ids = rng.choice(self.statements)
            target = rng.choice(ids)
            value = f"w{seed}-{n}" if "status" in sql or "full_name" in sql else 1 + n % 50
            with self.engine.begin() as conn:
                if conn.execute(sa.text(sql), {"v": value, "i": target}).rowcount:
                    self.last[(sql, target)] = value

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()
        self.engine.dispose()


def _change_first_key_when_verified(ctx_box: list, table: str, column: str, value: Any):
    """A hook that changes one row of the first verified batch (still 'writing': SQL records
    'verified' with the delete): a skip on every run."""
    done: list[int] = []

    def hook(point: str) -> None:
        if point != "object_verified" or done:
            return
        ctx = ctx_box[0]
        with ctx.sql.begin() as conn:
            key = conn.execute(
                sa.select(manifest.manifest_table.c.key_min).where(
                    # verified, not yet deleted: SQL records 'verified' with the delete
                    manifest.manifest_table.c.state == manifest.WRITING,
                    manifest.manifest_table.c.table_name == table,
                )
            ).scalar_one()
            conn.execute(
                sa.text(f"UPDATE {table} SET {column} = :v WHERE id = :i"),
                {"v": value, "i": int(key)},
            )
        done.append(int(key))

    return hook, done


def _present(ctx, table: str) -> set[int]:
    with ctx.sql.connect() as conn:
        return {int(r[0]) for r in conn.execute(sa.text(f"SELECT id FROM {table}"))}


def _assert_exactly(rows: list[tuple], left: set[int], expected: Callable[[int], tuple]) -> None:
    ids = [row[0] for row in rows]
    assert len(ids) == len(set(ids)), "a row appears twice in the archive"
    assert set(ids) == left, "the archive holds rows that did not leave, or lacks some that did"
    wrong = [row for row in rows if tuple(row[1:]) != expected(row[0])]
    assert wrong == []


def test_plain_table_holds_exactly_the_deleted_rows(store_settings, contexts):
    settings = store_settings(rows=0, archive__batch_size=50)
    engine = create_sql_engine(settings)
    with engine.begin() as conn:
        original = _add_users(conn, 1500)
    engine.dispose()
    ids = list(original)
    box: list = []
    hook, touched = _change_first_key_when_verified(box, "users", "full_name", "Touched")
    ctx = contexts(settings, hook=hook)
    box.append(ctx)
    update = "UPDATE users SET full_name = :v WHERE id = :i"
    with Writers(settings, [(update, ids)]) as writers:
        (users,) = open_sources(ctx, ["users"])
        report = archive_table(ctx, users)

    left = set(ids) - _present(ctx, "users")
    assert touched[0] not in left and report.rows_skipped >= 1
    assert report.rows_archived == len(left) > 0

    def value(key: int) -> tuple:
        return (writers.last.get((update, key), original[key]),)

    _assert_exactly(duckdb_query(ctx, USERS), left, value)
    assert duckdb_query(ctx, "SELECT count(*) FROM glob('{archive}/**/*.staged')") == [(0,)]


def test_aggregate_holds_exactly_the_deleted_roots_and_children(store_settings, contexts):
    settings = store_settings(rows=200, archive__batch_size=40)
    engine = create_sql_engine(settings)
    with engine.begin() as conn:
        old_before = {
            int(r[0]) for r in conn.execute(sa.text("SELECT id FROM orders WHERE deleted_at < :c"),
                                            {"c": NOW - timedelta(days=90)})
        }  # fmt: skip
        orders, items = _add_orders(conn, 600)
    engine.dispose()
    box: list = []
    hook, touched = _change_first_key_when_verified(box, "orders", "status", "touched")
    ctx = contexts(settings, hook=hook)
    box.append(ctx)
    on_orders = "UPDATE orders SET status = :v WHERE id = :i"
    on_items = "UPDATE order_items SET quantity = :v WHERE id = :i"
    with Writers(settings, [(on_orders, list(orders)), (on_items, list(items))]) as writers:
        (source,) = open_sources(ctx, ["orders"])
        report = archive_table(ctx, source)

    left = (set(orders) | old_before) - _present(ctx, "orders")
    assert touched[0] not in left and report.rows_skipped >= 1
    mine = set(orders) & left
    assert mine and report.rows_archived == len(left)
    archived_orders = [r for r in duckdb_query(ctx, ORDERS) if r[0] in set(orders)]
    _assert_exactly(archived_orders, mine, lambda k: (writers.last.get((on_orders, k), orders[k]),))
    items_left = {i for i, (order, _q) in items.items() if order in left}
    assert items_left and not items_left & _present(ctx, "order_items")
    archived_items = [r for r in duckdb_query(ctx, ITEMS) if r[0] in set(items)]
    _assert_exactly(
        archived_items,
        items_left,
        lambda k: (items[k][0], writers.last.get((on_items, k), items[k][1])),
    )
    every = duckdb_query(ctx, ORDERS)
    assert len(every) == len({r[0] for r in every}) == len(left)


class InjectedFailure(RuntimeError):
    pass


@pytest.mark.parametrize("point", ["batch_deleted", "object_published", "batch_completed"])
@pytest.mark.parametrize("table", ["users", "orders"])
def test_failure_after_the_delete_then_rerun(point, table, app_settings, contexts):
    """A row changes after verification (so the object must be rewritten), then the run fails
    at ``point``; the rerun publishes: DuckDB sees exactly the rows that left, once."""
    settings = app_settings(rows=300, archive__batch_size=4)
    column, value = ("full_name", "Changed") if table == "users" else ("status", "changed")
    box: list = []
    change, touched = _change_first_key_when_verified(box, table, column, value)

    def hook(reached: str) -> None:
        change(reached)
        if reached == point:
            raise InjectedFailure(point)

    ctx = contexts(settings, hook=hook)
    box.append(ctx)
    checked = (table,) + (("order_items", "payments", "inventory_reservations") if table ==
                          "orders" else ())  # fmt: skip
    before = snapshots(ctx, checked)
    with pytest.raises(InjectedFailure):
        archive_table(ctx, open_sources(ctx, [table])[0])
    query = USERS if table == "users" else ORDERS
    seen = [r[0] for r in duckdb_query(ctx, query)]  # meanwhile: only rows that left, once
    assert len(seen) == len(set(seen))
    assert not set(seen) & _present(ctx, table)

    rerun = contexts(settings)
    report = archive_table(rerun, open_sources(rerun, [table])[0])
    if point == "batch_completed":  # complete: only its staged copies were left, as orphans
        assert report.orphans_removed >= 1
    else:
        assert report.resumed_batches >= 1
    left = set(before[table].rows) - _present(rerun, table)
    rows = duckdb_query(rerun, query)
    assert sorted(r[0] for r in rows) == sorted(left)
    # The changed row stayed through the failed run; still qualifying, it left with the rerun,
    # and the archive holds it once, with its new value.
    assert [r[1:] for r in rows if r[0] == touched[0]] == [(value,)]
    assert duckdb_query(rerun, "SELECT count(*) FROM glob('{archive}/**/*.staged')") == [(0,)]
    assert_each_row_once(rerun, {t: s for t, s in before.items()})


@pytest.mark.parametrize("checksum", [True, False])
def test_an_object_the_store_holds_differently_is_caught_before_any_delete(
    checksum, app_settings, contexts, s3_url, moto_endpoint
):
    """Verification trusts the store's own SHA-256 of what it holds (S3's additional
    checksum) only when it equals that of the bytes sent; a staged object replaced behind
    Steward's back (with or without an S3 checksum) stops the batch before any delete. The
    put's response here carries no checksum (a store that does not return one): the check is
    then made when verifying (with one, the put itself proves what the store took, and an
    object replaced after that is caught when it is published)."""
    import boto3

    settings = app_settings(
        rows=0, archive__batch_size=50, objects__url=s3_url, objects__endpoint_url=moto_endpoint
    )
    engine = create_sql_engine(settings)
    with engine.begin() as conn:
        ids = set(_add_users(conn, 20))
    engine.dispose()
    bucket, _, prefix = s3_url.removeprefix("s3://").partition("/")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")

    def swap(point: str) -> None:
        if point != "object_written":
            return
        (item,) = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
        original = s3.head_object(Bucket=bucket, Key=item["Key"])["Metadata"]
        extra = {"ChecksumAlgorithm": "SHA256"} if checksum else {}
        s3.put_object(Bucket=bucket, Key=item["Key"], Body=b"PAR1 not the rows", Metadata=original,
                      **extra)  # fmt: skip

    ctx = contexts(settings, hook=swap)
    put = ctx.store.put
    ctx.store.put = lambda *a, **k: replace(put(*a, **k), stored_sha256="")  # type: ignore[method-assign]
    with pytest.raises(Exception, match="sha256|does not match|corrupt"):
        archive_table(ctx, open_sources(ctx, ["users"])[0])
    assert ids <= _present(ctx, "users")  # nothing was deleted

    rerun = contexts(settings)
    report = archive_table(rerun, open_sources(rerun, ["users"])[0])
    assert report.abandoned_batches == 1 and report.rows_archived == len(ids)
    assert sorted(r[0] for r in duckdb_query(rerun, USERS)) == sorted(ids)
