"""Synthetic demo data: scale, consistency between tables, soft-delete ages, pending outbox
events, determinism, --replace, the CLI, and the MongoDB documents generator."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import mongomock
import pytest
import sqlalchemy as sa

from steward.demo import (
    DEMO_TABLES,
    DOCUMENT_COLLECTIONS,
    STREAMS,
    generate_demo_data,
    generate_demo_documents,
)
from steward.errors import IntegrityViolation
from steward.migrations import MigrationRunner
from steward.settings import Settings, load_settings
from tests.fixtures.steward_install import install_steward

NOW = dt.datetime(2026, 11, 1, 12, 0, 0, 250_000, tzinfo=dt.UTC)
ROWS = 6_000
REPO = Path(__file__).resolve().parents[2]
SOFT_DELETED = ("users", "products", "orders")


def _migrate(url: str, revision: str = "0001") -> None:
    """The example schema up to ``revision``, through Steward's runner (revision 0004 builds its
    index CONCURRENTLY, outside any transaction a caller could hold)."""
    if url.startswith("sqlite"):
        install_steward(url)  # PostgreSQL test databases come installed
    runner = MigrationRunner(
        load_settings(database={"url": url}, migrations={"alembic": "example"})
    )
    try:
        runner.upgrade(revision)
    finally:
        runner.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def demo_settings(
    request: pytest.FixtureRequest,
    make_pg_database: Callable[[], str],
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> Settings:
    """Settings pointing at a fresh database (PostgreSQL or SQLite) holding revision 0001."""
    if request.param == "postgresql":
        url = make_pg_database()
    else:
        url = f"sqlite:///{tmp_path / 'demo.db'}"
    _migrate(url)
    return make_settings(database__url=url)


def _engine(settings: Settings) -> sa.Engine:
    return sa.create_engine(settings.database_url)


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)  # SQLite reads back naive


def _tables(conn: sa.Connection) -> dict[str, sa.Table]:
    metadata = sa.MetaData()
    metadata.reflect(conn, only=list(DEMO_TABLES))
    return dict(metadata.tables)


def _rows(conn: sa.Connection, table: sa.Table) -> list[Any]:
    return list(conn.execute(sa.select(table).order_by(*table.primary_key.columns)))


def _checksum(settings: Settings) -> str:
    digest = hashlib.sha256()
    engine = _engine(settings)
    with engine.connect() as conn:
        for name, table in sorted(_tables(conn).items()):
            digest.update(name.encode())
            for row in _rows(conn, table):
                digest.update(repr(tuple(row)).encode())
    engine.dispose()
    return digest.hexdigest()


# --- the generated data set -------------------------------------------------------------


def _foreign_keys(settings: Settings) -> dict[str, list[Any]]:
    engine = _engine(settings)
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        keys = {name: inspector.get_foreign_keys(name) for name in DEMO_TABLES}
    engine.dispose()
    return keys


def test_demo_data_is_consistent_at_the_requested_scale(demo_settings: Settings) -> None:
    constraints = _foreign_keys(demo_settings)

    counts = generate_demo_data(demo_settings, rows=ROWS, seed=11, now=NOW)

    engine = _engine(demo_settings)
    with engine.connect() as conn:
        tables = _tables(conn)
        data = {name: _rows(conn, table) for name, table in tables.items()}
    engine.dispose()
    assert _foreign_keys(demo_settings) == constraints  # lifted for the load, all back
    assert counts == {name: len(data[name]) for name in DEMO_TABLES}
    assert all(counts.values())
    assert abs(sum(counts.values()) - ROWS) < ROWS * 0.1
    _check_soft_deletes(data)
    _check_catalogue(data)
    _check_orders(data)
    _check_inventory(data)
    _check_history(data)
    _check_outbox(data)


def _check_soft_deletes(data: dict[str, list[Any]]) -> None:
    for name in SOFT_DELETED:
        deleted = [row for row in data[name] if row.deleted_at is not None]
        assert 0.08 <= len(deleted) / len(data[name]) <= 0.2, name
        ages = [(NOW - _utc(row.deleted_at)).total_seconds() / 86_400 for row in deleted]
        assert all(0 <= age <= 400 for age in ages), name
        assert {int(age // 100) for age in ages} == {0, 1, 2, 3}, name  # spread over 400 days
        for row in deleted:
            assert row.deleted_by and row.delete_reason
            assert _utc(row.created_at) < _utc(row.deleted_at) <= _utc(row.updated_at) <= NOW
        kept = [row for row in data[name] if row.deleted_at is None]
        assert all(r.deleted_by is None and r.delete_reason is None for r in kept)


def _check_catalogue(data: dict[str, list[Any]]) -> None:
    categories = {row.id: row for row in data["categories"]}
    assert any(row.parent_id is None for row in categories.values())
    assert any(row.parent_id is not None for row in categories.values())
    assert len({row.slug for row in categories.values()}) == len(categories)

    products = data["products"]
    assert len({row.sku for row in products}) == len(products)
    assert all(row.category_id in categories for row in products)
    assert all(isinstance(row.attributes, dict) and row.attributes for row in products)
    brands = [row.brand for row in products if row.brand is not None]
    spellings = {" ".join(brand.split()).lower() for brand in brands}
    assert len(set(brands)) > len(spellings) + 5  # messy spellings left for normalization
    assert any(brand != brand.strip() for brand in brands)
    assert any("  " in brand for brand in brands)

    periods = defaultdict(list)
    for row in data["prices"]:
        periods[row.product_id].append(row)
    assert set(periods) == {row.id for row in products}
    for rows in periods.values():
        rows.sort(key=lambda row: row.effective_from)
        assert [row.effective_to is None for row in rows][-1]
        assert sum(row.effective_to is None for row in rows) == 1
        for before, after in zip(rows, rows[1:], strict=False):
            assert before.effective_to == after.effective_from
        assert all(row.amount > 0 and row.currency == "EUR" for row in rows)


def _check_orders(data: dict[str, list[Any]]) -> None:
    item_sums: dict[int, Decimal] = defaultdict(Decimal)
    for item in data["order_items"]:
        assert item.quantity > 0
        item_sums[item.order_id] += item.quantity * Decimal(str(item.unit_price))
    payments = defaultdict(list)
    for payment in data["payments"]:
        payments[payment.order_id].append(payment)
    orders = data["orders"]
    assert {row.id for row in orders} == set(item_sums)
    statuses = Counter(row.status for row in orders)
    assert {"pending", "delivered", "cancelled"} <= set(statuses)
    for order in orders:
        total = Decimal(str(order.total))
        assert abs(total - item_sums[order.id]) < Decimal("0.005"), order.id
        captured = [p for p in payments[order.id] if p.status == "captured"]
        if order.status == "pending":
            assert not payments[order.id]
        elif order.status in ("paid", "shipped", "delivered", "refunded"):
            assert len(captured) == 1
            assert abs(Decimal(str(captured[0].amount)) - total) < Decimal("0.005")
            assert captured[0].currency == order.currency


def _check_inventory(data: dict[str, list[Any]]) -> None:
    active: Counter[int] = Counter()
    for hold in data["inventory_reservations"]:
        if hold.status == "active":
            active[hold.product_id] += hold.quantity
            assert _utc(hold.expires_at) > NOW
    assert active, "pending orders hold stock"
    inventory = data["inventory"]
    assert {row.product_id for row in inventory} == {row.id for row in data["products"]}
    for row in inventory:
        assert 0 <= row.reserved <= row.on_hand
        assert row.reserved == active[row.product_id]


def _check_history(data: dict[str, list[Any]]) -> None:
    for name, column in (("inventory_movements", "created_at"), ("audit_log", "occurred_at")):
        stamps = [_utc(getattr(row, column)) for row in data[name]]
        ages = [(NOW - stamp).total_seconds() / 86_400 for stamp in stamps]
        assert all(0 <= age <= 400 for age in ages), name
        assert {int(age // 100) for age in ages} == {0, 1, 2, 3}, name
    assert {row.reason for row in data["inventory_movements"]} >= {"receipt", "sale", "return"}


def _check_outbox(data: dict[str, list[Any]]) -> None:
    events = data["outbox"]
    assert len({row.id for row in events}) == len(events)
    published = [row for row in events if row.status == "published"]
    assert len(published) > len(events) * 0.8
    for row in published:
        assert _utc(row.created_at) <= _utc(row.published_at) <= NOW
        assert (NOW - _utc(row.published_at)).days < 60
    pending = [row for row in events if row.status == "pending"]
    assert len(pending) >= 12
    per_aggregate = defaultdict(list)
    for row in pending:  # rows are in seq order
        assert row.published_at is None and row.attempts == 0
        assert _utc(row.available_at) == NOW
        per_aggregate[(row.aggregate_type, row.aggregate_id)].append(row)
    assert sum(len(rows) >= 2 for rows in per_aggregate.values()) >= 3
    for (kind, _), rows in per_aggregate.items():
        assert [r.seq for r in rows] == sorted(r.seq for r in rows)
        assert [r.created_at for r in rows] == sorted(r.created_at for r in rows)
        assert [r.event_type for r in rows] == list(STREAMS[kind][: len(rows)])  # in order
        assert all(r.payload["event"] == r.event_type for r in rows)


def test_application_inserts_work_after_demo_data(demo_settings: Settings) -> None:
    counts = generate_demo_data(demo_settings, rows=1_000, now=NOW)

    engine = _engine(demo_settings)
    with engine.begin() as conn:
        tables = _tables(conn)
        user = conn.execute(
            tables["users"].insert().values(email="new@example.com", full_name="New User")
        ).inserted_primary_key
        event = conn.execute(
            tables["outbox"]
            .insert()
            .values(
                id=uuid.uuid4().hex,  # reflected as CHAR(32) on SQLite
                aggregate_type="user",
                aggregate_id=str(user[0]),
                event_type="UserRegistered",
                payload={"user_id": user[0]},
            )
        ).inserted_primary_key
    engine.dispose()
    assert user[0] == counts["users"] + 1
    assert event[0] == counts["outbox"] + 1


def test_a_role_that_may_not_alter_the_tables_still_loads(
    make_pg_database: Callable[[], str], make_settings: Callable[..., Settings]
) -> None:
    url = make_pg_database()
    _migrate(url)
    role = f"steward_demo_{uuid.uuid4().hex[:8]}"  # generated, never from input
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
        conn.exec_driver_sql(f"GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO {role}")
        conn.exec_driver_sql(f"GRANT USAGE, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role}")
    try:
        as_role = sa.make_url(url).set(username=role, password=None)
        limited = make_settings(database__url=as_role.render_as_string(hide_password=False))
        counts = generate_demo_data(limited, rows=1_000, now=NOW)
        assert _foreign_keys(make_settings(database__url=url))["order_items"]
        engine = _engine(limited)
        with engine.connect() as conn:
            items = conn.execute(sa.text("SELECT count(*) FROM order_items")).scalar_one()
        engine.dispose()
        assert items == counts["order_items"] > 0
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")
        admin.dispose()


# --- determinism and --replace --------------------------------------------------------------


def test_same_seed_and_now_give_identical_rows(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    sums = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        url = f"sqlite:///{tmp_path / f'{name}.db'}"
        _migrate(url)
        generate_demo_data(make_settings(database__url=url), rows=2_000, seed=seed, now=NOW)
        sums.append(_checksum(make_settings(database__url=url)))
    assert sums[0] == sums[1]
    assert sums[0] != sums[2]


def test_replace_on_postgresql_regenerates_identical_rows(
    make_pg_database: Callable[[], str], make_settings: Callable[..., Settings]
) -> None:
    url = make_pg_database()
    _migrate(url)
    settings = make_settings(database__url=url)
    first = generate_demo_data(settings, rows=2_000, seed=3, now=NOW)
    before = _checksum(settings)

    again = generate_demo_data(settings, rows=2_000, seed=3, now=NOW, replace=True)

    assert again == first
    assert _checksum(settings) == before


def test_refuses_to_write_into_filled_tables_without_replace(demo_settings: Settings) -> None:
    first = generate_demo_data(demo_settings, rows=1_000, seed=1, now=NOW)
    before = _checksum(demo_settings)

    with pytest.raises(IntegrityViolation, match=r"already hold rows.*--replace"):
        generate_demo_data(demo_settings, rows=3_000, seed=2, now=NOW)
    assert _checksum(demo_settings) == before

    second = generate_demo_data(demo_settings, rows=3_000, seed=2, now=NOW, replace=True)
    engine = _engine(demo_settings)
    with engine.connect() as conn:
        users = conn.execute(sa.text("SELECT count(*) FROM users")).scalar_one()
    engine.dispose()
    assert users == second["users"] > first["users"]


# --- the command line -----------------------------------------------------------------------


def _steward(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "steward"
    return subprocess.run(
        [str(script), *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_cli_demo_data_fills_a_fresh_postgresql_database(
    make_pg_database: Callable[[], str], tmp_path: Path
) -> None:
    url = make_pg_database()
    _migrate(url, "head")  # later revisions (ratings, brand normalization) are fine too
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    env |= {"STEWARD_DATABASE__URL": url, "STEWARD_HOME": str(tmp_path / "home")}

    first = _steward(["demo-data", "--rows", "2000"], env)
    refused = _steward(["demo-data", "--rows", "2000"], env)
    replaced = _steward(["demo-data", "--rows", "2000", "--seed", "9", "--replace"], env)

    assert first.returncode == 0, first.stderr
    assert "order_items" in first.stdout and "total" in first.stdout
    assert refused.returncode == 2
    assert "--replace" in refused.stderr
    assert replaced.returncode == 0, replaced.stderr
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        orders = conn.execute(sa.text("SELECT count(*) FROM orders")).scalar_one()
    engine.dispose()
    assert orders == 200


# --- MongoDB documents ----------------------------------------------------------------------


def test_demo_documents_fill_the_collections_deterministically() -> None:
    db = mongomock.MongoClient(tz_aware=True)["demo"]
    counts = generate_demo_documents(db, count=3_000, seed=4, now=NOW)

    assert counts == {name: db[name].count_documents({}) for name in DOCUMENT_COLLECTIONS}
    assert abs(sum(counts.values()) - 3_000) < 300
    sent = [_utc(doc["sent_at"]) for doc in db["notification_history"].find()]
    ages = [(NOW - stamp).total_seconds() / 86_400 for stamp in sent]
    assert all(0 <= age <= 400 for age in ages)
    assert {int(age // 100) for age in ages} == {0, 1, 2, 3}
    templates = {doc["_id"] for doc in db["notification_templates"].find()}
    assert {doc["template_id"] for doc in db["notification_history"].find()} <= templates

    reviews = list(db["product_reviews"].find())
    deleted = [doc for doc in reviews if doc["deleted_at"] is not None]
    assert 0.08 <= len(deleted) / len(reviews) <= 0.22
    deleted_ages = [(NOW - _utc(doc["deleted_at"])).total_seconds() / 86_400 for doc in deleted]
    assert all(0 <= age <= 400 for age in deleted_ages)
    assert {int(age // 100) for age in deleted_ages} == {0, 1, 2, 3}
    assert all(_utc(doc["created_at"]) < _utc(doc["deleted_at"]) for doc in deleted)
    assert all(doc["deleted_by"] and doc["delete_reason"] for doc in deleted)

    twin = mongomock.MongoClient(tz_aware=True)["twin"]
    generate_demo_documents(twin, count=3_000, seed=4, now=NOW)
    for name in DOCUMENT_COLLECTIONS:
        assert list(db[name].find().sort("_id")) == list(twin[name].find().sort("_id"))


def test_demo_documents_refuse_filled_collections_without_replace() -> None:
    db = mongomock.MongoClient(tz_aware=True)["demo"]
    generate_demo_documents(db, count=200, now=NOW)

    with pytest.raises(IntegrityViolation, match="replace=True"):
        generate_demo_documents(db, count=400, now=NOW)
    assert db["notification_history"].count_documents({}) < 200

    counts = generate_demo_documents(db, count=400, now=NOW, replace=True)
    assert db["notification_history"].count_documents({}) == counts["notification_history"]
