"""Driver errors a retry cannot fix become terminal Steward errors at the storage boundary:
refused credentials (PostgreSQL, Redis, MongoDB), a missing database, a read-only SQLite file, a
folder store that cannot be written. Connection failures stay transient."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pymongo.errors
import pytest
import sqlalchemy as sa

from steward.errors import AuthenticationFailed, ConfigError, SourceUnavailable, is_transient
from steward.settings import Settings
from steward.storage import CacheClient, SqlClient
from steward.storage.documents import translate_errors as documents_errors
from steward.storage.folder import FolderStore

PG_PASSWORD = "Pg-sl/ash#q?@:%-secret"


def _pg_url(pg_url: str, user: str, database: str | None = None) -> str:
    scheme, rest = pg_url.split("://", 1)
    host_and_db = rest.split("@", 1)[-1]
    if database is not None:
        host_and_db = host_and_db.rsplit("/", 1)[0] + f"/{database}"
    return f"{scheme}://{user}:{PG_PASSWORD}@{host_and_db}"


def test_unknown_postgres_role_is_authentication_failed_and_not_retried(
    make_settings: Callable[..., Settings], pg_url: str
) -> None:
    settings = make_settings(
        database__url=_pg_url(pg_url, "steward_no_such_role"), database__connect_retries="5"
    )
    client = SqlClient(settings)
    attempts: list[int] = []
    sa.event.listen(client.engine, "do_connect", lambda *args: attempts.append(1))
    try:
        with pytest.raises(AuthenticationFailed) as raised:
            client.connect()
    finally:
        client.dispose()

    message = str(raised.value)
    assert "authentication failed" in message and "steward_no_such_role" in message
    assert "database.url" in message and PG_PASSWORD not in message
    assert not is_transient(raised.value) and len(attempts) == 1  # no retry


def test_missing_postgres_database_names_it(
    make_settings: Callable[..., Settings], pg_url: str
) -> None:
    client = SqlClient(
        make_settings(database__url=_pg_url(pg_url, "postgres", "steward_no_such_db"))
    )
    try:
        with pytest.raises(ConfigError, match='database "steward_no_such_db" does not exist'):
            client.connect()
    finally:
        client.dispose()


def test_unreachable_postgres_stays_transient(make_settings: Callable[..., Settings]) -> None:
    client = SqlClient(
        make_settings(
            database__url=f"postgresql://app:{PG_PASSWORD}@127.0.0.1:9/shop",
            database__connect_retries="0",
        )
    )
    with pytest.raises(SourceUnavailable) as raised:
        client.connect()
    assert PG_PASSWORD not in str(raised.value)


def test_read_only_sqlite_file_is_a_config_error(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    path = tmp_path / "steward.db"
    sqlite3.connect(path).execute("CREATE TABLE notes (id INTEGER PRIMARY KEY)").connection.close()
    url = f"sqlite:///file:{path}?mode=ro&uri=true"
    client = SqlClient(make_settings(install=False, database__url=url))  # read-only: no install
    try:
        with client.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM notes")).scalar() == 0
        with pytest.raises(ConfigError, match="the SQLite database cannot be written"):
            with client.begin() as conn:
                conn.execute(sa.text("INSERT INTO notes (id) VALUES (1)"))
    finally:
        client.dispose()


def test_redis_refusing_the_user_is_authentication_failed(
    make_settings: Callable[..., Settings], redis_url: str
) -> None:
    host = redis_url.split("://", 1)[1]
    cache = CacheClient(make_settings(cache__url=f"redis://steward-nobody:{PG_PASSWORD}@{host}"))
    try:
        with pytest.raises(AuthenticationFailed) as raised:
            cache.ping()
    finally:
        cache.close()
    assert "cache.url" in str(raised.value) and PG_PASSWORD not in str(raised.value)
    assert not is_transient(raised.value)


@pytest.mark.parametrize("code", [13, 18])
def test_mongodb_refusing_credentials_is_authentication_failed(code: int) -> None:
    with pytest.raises(AuthenticationFailed, match="documents.url"):
        with documents_errors("reading notification_templates"):
            raise pymongo.errors.OperationFailure("Authentication failed.", code=code)


def test_other_mongodb_failures_pass_through() -> None:
    with pytest.raises(pymongo.errors.OperationFailure):
        with documents_errors("reading notification_templates"):
            raise pymongo.errors.OperationFailure("E11000 duplicate key", code=11000)


@pytest.mark.parametrize("root", ["/sys/steward-objects", "/proc/steward-objects"])
def test_folder_store_that_cannot_be_written_is_a_config_error(root: str) -> None:
    store = FolderStore(f"file://{root}")

    with pytest.raises(ConfigError, match="make the folder writable or point objects.url"):
        store.put("archive/users/batch-1.parquet", b"rows")


@pytest.mark.parametrize(
    ("sql", "value", "words"),
    [
        ("SELECT 1 WHERE 'paid'::varchar = :v", 5, "operator does not exist"),
        ("SELECT 1 WHERE 1 = CAST(:v AS integer)", "abc", "invalid input syntax"),
    ],
)
def test_a_value_of_the_wrong_type_reads_as_one_line(
    make_settings: Callable[..., Settings], pg_url: str, sql: str, value: object, words: str
) -> None:
    from steward.storage import refused_value

    client = SqlClient(make_settings(database__url=pg_url))
    try:
        with pytest.raises(sa.exc.DBAPIError) as raised, client.connect() as conn:
            conn.execute(sa.text(sql), {"v": value})
    finally:
        client.dispose()

    message = refused_value(raised.value)
    assert message is not None and words in message and "\n" not in message
    assert refused_value(RuntimeError("boom")) is None


@pytest.mark.parametrize(
    "host", ["db.steward-test.invalid:5432", "127.0.0.1:1"], ids=["unresolvable", "refused"]
)
def test_every_engine_connect_reports_an_unreachable_server_in_one_line(
    make_settings: Callable[..., Settings], host: str
) -> None:
    from steward.storage import create_sql_engine

    settings = make_settings(database__url=f"postgresql+psycopg://app:{PG_PASSWORD}@{host}/shop")
    engine = create_sql_engine(settings)  # any code path, not only SqlClient.connect
    try:
        with pytest.raises(SourceUnavailable) as raised:
            engine.connect()
    finally:
        engine.dispose()

    message = str(raised.value)
    assert "database unreachable" in message and "check database.url" in message
    assert PG_PASSWORD not in message and "\n" not in message


def test_a_connection_lost_mid_run_is_transient_and_named(
    make_settings: Callable[..., Settings], pg_url: str
) -> None:
    client = SqlClient(make_settings(database__url=pg_url))
    try:
        with client.connect() as conn:
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            with SqlClient(make_settings(database__url=pg_url)).connect() as other:
                other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            with pytest.raises(SourceUnavailable, match="lost the database connection"):
                conn.execute(sa.text("SELECT 1"))
        with client.connect() as conn:  # the pool replaces the broken connection
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        client.dispose()


def test_an_unreachable_mongodb_is_named_when_the_client_opens(
    make_settings: Callable[..., Settings],
) -> None:
    from steward.storage import DocumentsClient

    settings = make_settings(
        documents__url="mongodb://app:pw@mongo.steward-test.invalid:27017/",
        documents__server_selection_timeout_ms="200",
    )

    with pytest.raises(SourceUnavailable) as raised:
        DocumentsClient(settings)

    message = str(raised.value)
    assert "MongoDB unreachable" in message and "check documents.url" in message
    assert "Topology Description" not in message and len(message) < 300
