"""SQL client: engines on PostgreSQL and SQLite, URL normalisation, unreachable servers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from steward.errors import SourceUnavailable, is_transient
from steward.settings import Settings
from steward.storage import SqlClient, create_sql_engine

ROWS = sa.MetaData()
NOTES = sa.Table(
    "steward_test_notes",
    ROWS,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("body", sa.String(50), nullable=False),
)


def write_and_read_back(client: SqlClient) -> list[tuple[int, str]]:
    with client.begin() as conn:
        NOTES.drop(conn, checkfirst=True)
        NOTES.create(conn)
        conn.execute(sa.insert(NOTES), [{"id": 1, "body": "one"}, {"id": 2, "body": "two"}])
    with client.connect() as conn:
        rows = conn.execute(sa.select(NOTES.c.id, NOTES.c.body).order_by(NOTES.c.id)).all()
    with client.begin() as conn:
        NOTES.drop(conn)
    return [tuple(row) for row in rows]


def test_postgres_engine_runs_transactions(
    make_settings: Callable[..., Settings], pg_url: str
) -> None:
    client = SqlClient(make_settings(database__url=pg_url, database__pool_size="3"))
    try:
        assert client.is_postgres
        assert client.engine.dialect.driver == "psycopg"
        assert client.engine.pool.size() == 3
        assert write_and_read_back(client) == [(1, "one"), (2, "two")]
    finally:
        client.dispose()


def test_postgres_statement_timeout_is_applied(
    make_settings: Callable[..., Settings], pg_url: str
) -> None:
    client = SqlClient(make_settings(database__url=pg_url, database__statement_timeout_ms="1500"))
    try:
        with client.connect() as conn:
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "1500ms"
    finally:
        client.dispose()


def test_rolled_back_transaction_leaves_nothing(
    make_settings: Callable[..., Settings], pg_url: str
) -> None:
    client = SqlClient(make_settings(database__url=pg_url))
    try:
        with client.begin() as conn:
            NOTES.create(conn, checkfirst=True)
        with pytest.raises(RuntimeError), client.begin() as conn:
            conn.execute(sa.insert(NOTES), [{"id": 9, "body": "lost"}])
            raise RuntimeError("boom")
        with client.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(NOTES)).scalar() == 0
        with client.begin() as conn:
            NOTES.drop(conn)
    finally:
        client.dispose()


def test_default_sqlite_engine_under_home(
    make_settings: Callable[..., Settings], steward_home: Path
) -> None:
    client = SqlClient(make_settings())
    try:
        assert client.engine.dialect.name == "sqlite"
        assert write_and_read_back(client) == [(1, "one"), (2, "two")]
        assert (steward_home / "steward.db").is_file()
        with client.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        client.dispose()


@pytest.mark.parametrize("scheme", ["postgres://", "postgresql://"])
def test_postgres_urls_are_normalised_to_psycopg(
    make_settings: Callable[..., Settings], scheme: str
) -> None:
    settings = make_settings(database__url=f"{scheme}app:pw@db.example:5432/shop")

    engine = create_sql_engine(settings)

    assert engine.url.drivername == "postgresql+psycopg"
    assert (engine.url.host, engine.url.database) == ("db.example", "shop")
    engine.dispose()


def test_unreachable_postgres_is_transient_and_hides_the_password(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        database__url="postgresql+psycopg://app:Very-Secret-Pw@127.0.0.1:1/shop",
        database__connect_retries="1",
        database__connect_timeout="2",
    )
    client = SqlClient(settings)

    with pytest.raises(SourceUnavailable) as raised:
        client.connect()

    message = str(raised.value)
    assert is_transient(raised.value)
    assert "Very-Secret-Pw" not in message
    assert "127.0.0.1:1" in message and "database.url" in message
    client.dispose()
