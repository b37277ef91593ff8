"""Backup test data: a PostgreSQL schema with awkward types, constraints and indexes, a SQLite
database, and settings pointing at them (folder store by default, moto S3 on request)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import sqlalchemy as sa

from steward.backup import open_backup_context
from steward.storage import create_sql_engine

PASSWORD = "S3cr@t:pw/%"  # trust auth ignores it; it must never show up anywhere
PG_SCHEMA = """
CREATE TABLE customers (
    id bigserial PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text,
    balance numeric(12, 2) NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL,
    valid_until timestamptz,
    profile jsonb,
    avatar bytea,
    CONSTRAINT balance_positive CHECK (balance >= 0)
);
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers(id),
    total double precision NOT NULL,
    note text
);
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE SCHEMA reporting;
CREATE TABLE reporting."Daily Totals" (day date PRIMARY KEY, "Sum" numeric);
CREATE TABLE empty_table (id int PRIMARY KEY);
CREATE TABLE events (id int PRIMARY KEY, body json, at point);
INSERT INTO events VALUES (1, '{"a": [1, 2]}', '(1.5, 2)');
"""


def fill_postgres(url: str, customers: int = 300) -> None:
    """Create the test schema and ``customers`` customers with two orders each."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in PG_SCHEMA.split(";"):
            if statement.strip():
                conn.execute(sa.text(statement))
        conn.execute(
            sa.text(
                """
                INSERT INTO customers (email, name, balance, created_at, valid_until, profile,
                                       avatar)
                SELECT 'user' || g || '@example.com',
                       CASE WHEN g % 7 = 0 THEN NULL ELSE 'Zoë ' || g || ' — "quoted"' END,
                       g * 1.25,
                       '2024-01-01T00:00:00Z'::timestamptz + g * interval '1 hour',
                       CASE WHEN g % 2 = 0 THEN 'infinity'::timestamptz
                            ELSE '-infinity'::timestamptz END,
                       jsonb_build_object('tags', jsonb_build_array(g, 'x'), 'n', g),
                       decode(md5(g::text), 'hex')
                FROM generate_series(1, :n) AS g
                """
            ),
            {"n": customers},
        )
        conn.execute(
            sa.text(
                "INSERT INTO orders (customer_id, total, note) "
                "SELECT c.id, c.id * 0.1 + k, E'line\\nbreak' FROM customers c, "
                "generate_series(1, 2) AS k"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO reporting.\"Daily Totals\" VALUES ('2024-01-01', 10.5), "
                "('infinity', NULL)"
            )
        )
    engine.dispose()


def fill_sqlite(path: Path, rows: int = 200) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(
            """
            CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, data BLOB);
            CREATE INDEX items_name ON items (name);
            CREATE TABLE "odd name" (k TEXT PRIMARY KEY, v);
            """
        )
        conn.executemany(
            "INSERT INTO items (name, price, data) VALUES (?, ?, ?)",
            [(f"item {i} ü", i * 0.5, bytes([i % 256]) * 3) for i in range(rows)],
        )
        conn.execute("INSERT INTO \"odd name\" VALUES ('a', NULL), ('b', 2)")
        conn.commit()


def with_password(url: str) -> str:
    """``url`` with the awkward password added (percent-encoded as a user would)."""
    parsed = sa.engine.make_url(url).set(password=PASSWORD)
    return parsed.render_as_string(hide_password=False)


@pytest.fixture
def pg_settings(make_settings, make_pg_database):
    """Settings on a filled PostgreSQL database (with a password in its URL), folder store."""
    url = with_password(make_pg_database())
    fill_postgres(url)
    return make_settings(database__url=url, backup__sources='["database"]')


@pytest.fixture
def sqlite_settings(make_settings, steward_home):
    """Settings on the embedded default with a filled SQLite database."""
    fill_sqlite(steward_home / "steward.db")
    return make_settings()


@pytest.fixture
def ctx_for():
    made = []

    def make(settings, **kwargs):
        ctx = open_backup_context(settings, **kwargs)
        made.append(ctx)
        return ctx

    yield make


def table_rows(url: str, table: str) -> list[tuple]:
    engine = create_sql_engine_for(url)
    with engine.connect() as conn:
        # Rows as PostgreSQL's own text (keeps ±infinity); table names are the test's own.
        rows = conn.execute(sa.text(f"SELECT ROW(t.*)::text FROM {table} AS t ORDER BY 1")).all()
    engine.dispose()
    return [tuple(row) for row in rows]


def create_sql_engine_for(url: str) -> sa.Engine:
    return sa.create_engine(url)


__all__ = ["PASSWORD", "create_sql_engine", "fill_postgres", "fill_sqlite", "table_rows"]
