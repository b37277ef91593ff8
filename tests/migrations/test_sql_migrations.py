"""The Alembic runner on PostgreSQL and SQLite: round trips, data migrations, dry run, checksums."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic import command

from steward.errors import MigrationChecksumMismatch, MigrationError, MigrationLocked
from steward.migrations import MigrationRunner, alembic_config, file_sha256
from tests.migrations.conftest import checksums_table

REVISIONS = ["0001", "0002", "0003", "0004", "0005"]
APP_TABLES = {"users", "products", "orders", "outbox", "audit_log", "brand_normalization_backup"}

MakeRunner = Callable[..., MigrationRunner]
RunSql = Callable[..., list[tuple[Any, ...]]]


def test_round_trip_restores_the_identical_schema(
    database_url: str,
    make_runner: MakeRunner,
    snapshot_schema: Callable[[str], dict],
    run_sql: RunSql,
) -> None:
    runner = make_runner(database_url)
    first = runner.upgrade()
    assert [r.revision for r in first.applied] == REVISIONS
    schema_at_head = snapshot_schema(database_url)
    assert APP_TABLES <= set(schema_at_head)

    down = runner.downgrade("base")
    assert [r.revision for r in down.applied] == list(reversed(REVISIONS))
    assert down.current is None
    left = {name for name in snapshot_schema(database_url) if not name.startswith("steward_")}
    assert left == {"alembic_version"}  # Steward's tables: its own schema (SQLite: main db)
    assert run_sql(database_url, f"SELECT revision FROM {checksums_table(database_url)}") == []

    runner.upgrade()
    assert snapshot_schema(database_url) == schema_at_head
    recorded = run_sql(
        database_url, f"SELECT revision, filename, sha256 FROM {checksums_table(database_url)}"
    )
    expected = {(r.revision, r.filename, file_sha256(r.path)) for r in runner.revisions}
    assert sorted(recorded) == sorted(expected)
    assert run_sql(database_url, "SELECT version_num FROM alembic_version") == [("0005",)]


def test_product_ratings_columns_and_index_come_and_go(
    database_url: str,
    make_runner: MakeRunner,
    snapshot_schema: Callable[[str], dict],
    run_sql: RunSql,
) -> None:
    runner = make_runner(database_url)
    runner.upgrade("0001")
    run_sql(database_url, "INSERT INTO products (sku, name) VALUES ('sku-1', 'Kettle')")

    runner.upgrade("0002")
    products = snapshot_schema(database_url)["products"]
    columns = {name: nullable for name, _type, nullable in products["columns"]}
    assert columns["rating_avg"] is True and columns["rating_count"] is False
    assert ("ix_products_rating_avg", ("rating_avg",), False) in products["indexes"]
    assert run_sql(database_url, "SELECT rating_avg, rating_count FROM products") == [(None, 0)]

    runner.downgrade("-1")
    products = snapshot_schema(database_url)["products"]
    assert not {"rating_avg", "rating_count"} & {c[0] for c in products["columns"]}
    assert "ix_products_rating_avg" not in {i[0] for i in products["indexes"]}
    assert run_sql(database_url, "SELECT sku, name FROM products") == [("sku-1", "Kettle")]


MESSY_BRANDS = {
    "p1": " Acme  Corp",
    "p2": "acme corp",
    "p3": "Acme Corp",
    "p4": "ACME\tcorp ",
    "p5": "Acme Corp",
    "p6": "   ",
    "p7": None,
    "p8": "zeta",
    "p9": "Zeta",
    "p10": "Zeta ",
}
NORMALIZED = {
    "p1": "Acme Corp",
    "p2": "Acme Corp",
    "p3": "Acme Corp",
    "p4": "Acme Corp",
    "p5": "Acme Corp",
    "p6": None,
    "p7": None,
    "p8": "Zeta",
    "p9": "Zeta",
    "p10": "Zeta",
}


def test_brand_normalization_and_exact_restore(
    database_url: str, make_runner: MakeRunner, snapshot_schema: Callable, run_sql: RunSql
) -> None:
    runner = make_runner(database_url)
    runner.upgrade("0002")
    for sku, brand in MESSY_BRANDS.items():
        run_sql(
            database_url,
            "INSERT INTO products (sku, name, brand) VALUES (:sku, :sku, :brand)",
            sku=sku,
            brand=brand,
        )

    runner.upgrade("0003")
    assert dict(run_sql(database_url, "SELECT sku, brand FROM products")) == NORMALIZED
    backed_up = run_sql(
        database_url,
        "SELECT p.sku, b.old_brand FROM brand_normalization_backup b "
        "JOIN products p ON p.id = b.product_id",
    )
    changed = {k: v for k, v in MESSY_BRANDS.items() if v is not None and v != NORMALIZED[k]}
    assert dict(backed_up) == changed

    runner.downgrade("0002")
    assert dict(run_sql(database_url, "SELECT sku, brand FROM products")) == MESSY_BRANDS
    assert "brand_normalization_backup" not in snapshot_schema(database_url)


def test_dry_run_on_postgres_prints_sql_and_changes_nothing(
    make_pg_database: Callable[[], str], make_runner: MakeRunner, snapshot_schema: Callable
) -> None:
    url = make_pg_database()
    runner = make_runner(url)

    plan, sql = runner.render_sql()
    assert [r.revision for r in plan.steps] == REVISIONS
    assert "CREATE TABLE products" in sql and "CREATE TABLE alembic_version" in sql
    assert "ALTER TABLE products ADD COLUMN rating_avg NUMERIC(3, 2)" in sql
    assert "INSERT INTO brand_normalization_backup" in sql and "regexp_replace" in sql
    assert snapshot_schema(url) == {}

    runner.upgrade("0001")
    before = snapshot_schema(url)
    plan, sql = runner.render_sql()
    assert (plan.from_revision, plan.to_revision) == ("0001", "0005")
    assert "CREATE TABLE users" not in sql and "Running upgrade 0002 -> 0003" in sql
    plan, sql = runner.render_sql("base", "downgrade")
    assert "DROP TABLE users" in sql
    assert snapshot_schema(url) == before
    assert runner.status().current == "0001"


def test_edited_applied_migration_is_refused(
    sqlite_url: str, migrations_copy: Path, make_runner: MakeRunner, run_sql: RunSql
) -> None:
    make_runner(sqlite_url, script_location=migrations_copy).upgrade("0002")
    edited = next((migrations_copy / "versions").glob("*_0001_*.py"))
    edited.write_text(edited.read_text() + "\n# a harmless-looking edit\n")

    runner = make_runner(sqlite_url, script_location=migrations_copy)
    for attempt in (runner.upgrade, lambda: runner.downgrade("base"), runner.render_sql):
        with pytest.raises(MigrationChecksumMismatch, match=edited.name):
            attempt()
    assert run_sql(sqlite_url, "SELECT version_num FROM alembic_version") == [("0002",)]
    states = {r.revision: r.state for r in runner.status().applied}
    assert states == {"0001": "edited", "0002": "ok"}


def test_revisions_applied_by_plain_alembic_are_adopted(
    sqlite_url: str, make_runner: MakeRunner, run_sql: RunSql
) -> None:
    runner = make_runner(sqlite_url)
    with runner.sql.connect() as conn:
        command.upgrade(alembic_config(connection=conn), "0001")
    assert [r.state for r in runner.status().applied] == ["unrecorded"]

    result = runner.upgrade()
    assert [r.revision for r in result.applied] == ["0002", "0003", "0004", "0005"]
    assert sorted(run_sql(sqlite_url, "SELECT revision FROM steward_migrations")) == [
        (rev,) for rev in REVISIONS
    ]


def test_targets_are_checked(sqlite_url: str, make_runner: MakeRunner) -> None:
    runner = make_runner(sqlite_url)
    runner.upgrade("0002")
    with pytest.raises(MigrationError, match="on the wrong side of the current revision 0002"):
        runner.upgrade("0001")
    with pytest.raises(MigrationError, match="'nope' is not a known revision"):
        runner.upgrade("nope")
    with pytest.raises(MigrationError, match="'-5' leaves the history"):
        runner.downgrade("-5")
    assert runner.upgrade("+1").current == "0003"
    status = runner.status()
    assert (status.current, status.head) == ("0003", "0005")
    assert [step.revision for step in status.pending] == ["0004", "0005"]


def test_a_held_lock_keeps_a_second_runner_out(
    database_url: str, make_runner: MakeRunner, run_sql: RunSql
) -> None:
    holder = make_runner(database_url)
    waiter = make_runner(database_url, lock_timeout=0.5, poll_interval=0.1)
    with holder.lock(), pytest.raises(MigrationLocked, match="another migration runner"):
        waiter.upgrade()
    assert waiter.status().current is None
    assert waiter.upgrade().current == "0005"


def test_a_refused_runner_names_the_holder_in_its_own_database(
    make_pg_database, make_runner: MakeRunner
) -> None:
    """pg_locks spans the server: a runner holding the lock in another database on the same
    server is not the one named."""
    import psycopg

    from tests.conftest import PG_ADMIN_URL

    other, mine = make_pg_database(), make_pg_database()
    waiter = make_runner(mine, lock_timeout=0.3, poll_interval=0.1)
    with make_runner(other).lock(), make_runner(mine).lock():
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            [(pid,)] = admin.execute(
                "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                "WHERE l.locktype = 'advisory' AND l.granted AND d.datname = %s",
                (mine.rsplit("/", 1)[1],),
            ).fetchall()
        with pytest.raises(MigrationLocked) as refused:
            waiter.upgrade()
    assert f"PostgreSQL backend pid {pid})" in str(refused.value)
