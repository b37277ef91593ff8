"""Statistics kept true around Steward's reads and writes, on PostgreSQL with autovacuum off:
the product-detail warmer's plan before and after, stale tables, identifiers, roles that may
not analyse, partitioned parents and the archive share rule."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from steward.settings import StatisticsSettings
from steward.settings.cache import PRODUCT_DETAIL_SQL
from steward.statistics import (
    analyze_after_archive,
    analyze_changed,
    analyze_partition_parent,
    refresh_before_reads,
)
from steward.statistics.readers import warmer_tables
from tests.conftest import PG_ADMIN_URL
from tests.planner.conftest import analyze_counts, explain, wait_for_stats

PARAMS = {"currency": "EUR"}


def test_never_analysed_warmer_tables_are_analysed_and_the_plan_stops_looping(demo_db):
    settings, engine = demo_db
    before = explain(engine, PRODUCT_DETAIL_SQL, PARAMS)
    # The planner's guess on never-analysed tables: a handful of products, so a nested loop
    # that probes prices once per product (the 898-second warm of issue 23).
    assert "Nested Loop" in before and "on prices pr" in before

    tables = warmer_tables(engine, settings.cache.warmers)
    assert {"public.products", "public.prices", "public.inventory"} <= set(tables)
    report = refresh_before_reads(engine, tables, settings.statistics, when="before reads")

    assert {"public.products", "public.prices", "public.inventory"} <= set(report.analyzed)
    assert all("never analysed" in o.why for o in report.outcomes)
    after = explain(engine, PRODUCT_DETAIL_SQL, PARAMS)
    assert "Nested Loop" not in after and "Hash" in after
    for warmer in settings.cache.warmers:  # every warmer's join is hashed once analysed
        if warmer.query:
            assert "Nested Loop" not in explain(engine, warmer.query, warmer.params), warmer.name
    wait_for_stats(engine, "prices", 1)
    assert analyze_counts(engine)["prices"] == 1

    again = refresh_before_reads(engine, tables, settings.statistics, when="before reads")
    assert again.outcomes == [] and "public.prices" in again.checked  # fresh now: left alone


def test_stale_table_is_analysed_small_change_is_not(demo_db):
    settings, engine = demo_db
    analyze_changed(engine, {"orders": "setup", "users": "setup"}, settings.statistics, when="t")
    with engine.begin() as conn:  # 30 % of orders change; 2 of 1,200 users
        conn.execute(sa.text("UPDATE orders SET status = status WHERE id % 10 < 3"))
        conn.execute(sa.text("UPDATE users SET email = email WHERE id <= 2"))
    engine.dispose()  # a backend flushes its change counters at exit (else within ~10 s)
    wait_for_stats(engine, "orders", 1)
    report = _eventually(
        lambda: refresh_before_reads(engine, ["orders", "users"], settings.statistics, when="t"),
        lambda r: r.outcomes,
    )
    assert report.analyzed == ["public.orders"]
    assert "stale" in report.outcomes[0].why and "30%" in report.outcomes[0].why


def test_dry_run_and_analyze_off_name_tables_without_analysing(demo_db):
    settings, engine = demo_db
    report = refresh_before_reads(engine, ["products"], settings.statistics, when="t", dry_run=True)
    assert report.outcomes[0].not_analyzed == "dry run" and not report.analyzed
    off = StatisticsSettings(analyze=False, min_rows=500)
    report = analyze_changed(engine, {"products": "x"}, off, when="t")
    assert report.outcomes[0].not_analyzed == "statistics.analyze is false"
    assert analyze_counts(engine)["products"] == 0


def test_names_are_checked_against_the_live_schema_and_quoted(demo_db):
    settings, engine = demo_db
    with engine.begin() as conn:
        conn.exec_driver_sql('CREATE TABLE "Odd ""Name""; DROP TABLE users" (id int)')
        conn.exec_driver_sql('INSERT INTO "Odd ""Name""; DROP TABLE users" VALUES (1)')
    odd = 'Odd "Name"; DROP TABLE users'
    report = analyze_changed(
        engine, {odd: "test", "users; DROP TABLE orders": "test"}, settings.statistics, when="t"
    )
    assert report.outcomes[0].analyzed, report.outcomes[0]
    assert report.outcomes[1].not_analyzed == "no such table in the database"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM users")).scalar_one() > 0


def test_a_role_that_may_not_analyse_is_named_not_failed(demo_db):
    settings, engine = demo_db
    role = f"steward_reader_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"))
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        reader = sa.create_engine(engine.url.set(username=role))
        report = analyze_changed(reader, {"products": "x"}, settings.statistics, when="t")
        assert "insufficient privilege" in report.outcomes[0].not_analyzed
        read_only = sa.create_engine(
            engine.url, connect_args={"options": "-c default_transaction_read_only=on"}
        )
        report = analyze_changed(read_only, {"products": "x"}, settings.statistics, when="t")
        assert report.outcomes[0].not_analyzed.startswith("read-only role")
        reader.dispose()
        read_only.dispose()
        assert analyze_counts(engine)["products"] == 0
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"DROP ROLE IF EXISTS {role}")
        admin.dispose()


def test_archive_share_rule(demo_db):
    settings, engine = demo_db
    report = analyze_after_archive(
        engine,
        {"orders": 500, "users": 10, "payments": 0},
        {"orders": 2000, "users": 1200, "payments": 2250},
        settings.statistics,
    )
    assert report.analyzed == ["public.orders"]
    assert "500 of 2,000 rows (25%" in report.outcomes[0].why


def test_parent_of_dropped_partitions_is_analysed(demo_db):
    settings, engine = demo_db
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE events (id bigint, at date) PARTITION BY RANGE (at)")
        for year in (2024, 2025):
            conn.exec_driver_sql(
                f"CREATE TABLE events_{year} PARTITION OF events FOR VALUES FROM "
                f"('{year}-01-01') TO ('{year + 1}-01-01') WITH (autovacuum_enabled = false)"
            )
        conn.exec_driver_sql(
            "INSERT INTO events SELECT g, DATE '2024-01-01' + (g %% 700) "
            "FROM generate_series(1, 5000) g"
        )
        conn.exec_driver_sql("DROP TABLE events_2024")
    report = analyze_partition_parent(engine, "events", ["events_2024"], settings.statistics)
    assert report.analyzed == ["public.events"]
    assert "events_2024 dropped" in report.outcomes[0].why
    with engine.connect() as conn:
        inherited = conn.execute(
            sa.text("SELECT count(*) FROM pg_stats WHERE tablename = 'events' AND inherited")
        ).scalar_one()
    assert inherited > 0


def _eventually(make, ready, attempts: int = 150):
    import time

    for _ in range(attempts):
        result = make()
        if ready(result):
            return result
        time.sleep(0.1)
    return result


def test_a_table_another_session_locks_is_reported_not_waited_for(demo_db):
    settings, engine = demo_db
    quick = settings.statistics.model_copy(update={"lock_timeout_ms": 200})
    holder = engine.connect()
    holder.begin()
    holder.exec_driver_sql("LOCK TABLE products IN SHARE UPDATE EXCLUSIVE MODE")  # as VACUUM does
    try:
        report = analyze_changed(engine, {"products": "x", "prices": "y"}, quick, when="t")
    finally:
        holder.rollback()
        holder.close()
    locked, free = report.outcomes
    assert "another session held a lock on it for over 200 ms" in locked.not_analyzed
    assert free.analyzed  # the next table is still analysed
