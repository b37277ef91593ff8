"""Shared test infrastructure: real PostgreSQL and Redis, S3 through moto's HTTP server.

- PostgreSQL: a fresh database per test session (``pg_url``), and ``make_pg_database`` for
  tests that need their own empty one. Both are dropped afterwards. Each gets ``steward
  install`` (Steward's own schema and tables, what an owner runs once), and so does the
  embedded SQLite database of ``make_settings`` (``install=False`` to leave it bare).
- Redis: the session claims a free db index on the local server (a lock key with expiry) and
  flushes it, so several test sessions on one machine never see each other's keys.
- S3: one ``ThreadedMotoServer`` per session over real HTTP; ``s3_url`` is a fresh bucket.
- Prefect: one ``prefect_test_harness`` per session, opt-in through the ``prefect_harness``
  fixture (flow tests only; it costs ~15 s to start).

With ``CI`` set, a missing service fails the run instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from steward.settings import Settings, get_settings, load_settings
from tests.fixtures.private_servers import PrivateMoto, PrivatePostgres, PrivateRedis, free_port
from tests.fixtures.steward_install import install_steward

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

PG_ADMIN_URL = os.environ.get("STEWARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_HOST = os.environ.get("STEWARD_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("STEWARD_TEST_REDIS_PORT", "6379"))
IN_CI = bool(os.environ.get("CI"))


def service_missing(what: str) -> None:
    """Fail under CI, skip on a developer machine without the service."""
    message = f"{what} is not reachable; run `bash scripts/ensure-services.sh` (make test does)"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


# --- PostgreSQL ---------------------------------------------------------------------------


def _pg_admin() -> psycopg.Connection:
    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError:
        service_missing(f"PostgreSQL at {PG_ADMIN_URL}")
        raise


def _sa_url(dbname: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return base.replace("postgresql://", "postgresql+psycopg://", 1) + f"/{dbname}"


def _create_database() -> str:
    name = f"steward_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with _pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # name generated above, never from input
    return name


def _drop_database(name: str) -> None:
    with _pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """SQLAlchemy URL of an empty PostgreSQL database shared by the session."""
    name = _create_database()
    install_steward(_sa_url(name))
    yield _sa_url(name)
    _drop_database(name)


@pytest.fixture(scope="session")
def session_pg_database() -> Iterator[Callable[[], str]]:
    """Factory of fresh, empty PostgreSQL databases kept for the session (dropped at its end),
    for test packages that fill one database once and share it."""
    created: list[str] = []

    def make(install: bool = True) -> str:
        name = _create_database()
        created.append(name)
        if install:
            install_steward(_sa_url(name))
        return _sa_url(name)

    yield make
    for name in created:
        _drop_database(name)


@pytest.fixture
def make_pg_database() -> Iterator[Callable[[], str]]:
    """Factory of fresh, empty PostgreSQL databases, dropped after the test."""
    created: list[str] = []

    def make(install: bool = True) -> str:
        name = _create_database()
        created.append(name)
        if install:
            install_steward(_sa_url(name))
        return _sa_url(name)

    yield make
    for name in created:
        _drop_database(name)


# --- Redis --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a Redis db index claimed by this session alone (flushed before and after)."""
    token = f"{os.getpid()}-{uuid.uuid4().hex}"
    for db in range(1, 16):
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db, socket_timeout=5)
        try:
            claimed = client.set("steward:test:claim", token, nx=True, ex=3600)
        except redis.ConnectionError:
            service_missing(f"Redis at {REDIS_HOST}:{REDIS_PORT}")
            raise
        if claimed:
            client.flushdb()
            client.set("steward:test:claim", token, ex=3600)
            yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
            client.flushdb()
            client.close()
            return
        client.close()
    pytest.fail("no free Redis db index (1-15) to claim for this test session")


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on the session's db; every key but the claim is removed after the test."""
    client = redis.Redis.from_url(redis_url)
    yield client
    for key in client.scan_iter(count=1000):
        if key != b"steward:test:claim":
            client.unlink(key)
    client.close()


# --- Private servers (for tests that stop, kill or restart one) ----------------------------


@pytest.fixture
def make_private_postgres() -> Iterator[Callable[..., PrivatePostgres]]:
    """Factory of started private PostgreSQL clusters (``settings`` go to postgresql.conf);
    each is stopped and removed after the test. Never the machine's own server."""
    clusters: list[PrivatePostgres] = []

    def make(settings: dict[str, str] | None = None) -> PrivatePostgres:
        cluster = PrivatePostgres(settings)
        clusters.append(cluster)
        cluster.start()
        return cluster

    yield make
    for cluster in clusters:
        cluster.remove()


@pytest.fixture
def private_postgres(make_private_postgres: Callable[..., PrivatePostgres]) -> PrivatePostgres:
    """A started private PostgreSQL cluster the test may stop, kill and restart."""
    return make_private_postgres()


@pytest.fixture
def make_private_redis() -> Iterator[Callable[..., PrivateRedis]]:
    """Factory of started private redis-servers (optional password); removed after the test."""
    servers: list[PrivateRedis] = []

    def make(password: str | None = None) -> PrivateRedis:
        server = PrivateRedis(password)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.remove()


@pytest.fixture
def private_redis(make_private_redis: Callable[..., PrivateRedis]) -> PrivateRedis:
    """A started private redis-server the test may stop, kill and restart (keys survive)."""
    return make_private_redis()


@pytest.fixture
def make_private_moto() -> Iterator[Callable[..., PrivateMoto]]:
    """Factory of private moto S3 servers (``check_credentials``: refuse unknown keys)."""
    servers: list[PrivateMoto] = []

    def make(check_credentials: bool = False) -> PrivateMoto:
        servers.append(PrivateMoto(check_credentials))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


# --- S3 (moto server over HTTP) -----------------------------------------------------------


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """Endpoint URL of a moto S3 server running in this process over real HTTP."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_url(moto_endpoint: str) -> str:
    """``s3://bucket/prefix`` of a fresh bucket on the moto server."""
    import boto3

    bucket = f"steward-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    return f"s3://{bucket}/steward"


# --- Settings and Prefect -----------------------------------------------------------------


@pytest.fixture
def steward_home(tmp_path: Path) -> Path:
    return tmp_path / "steward-home"


@pytest.fixture
def make_settings(
    steward_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Settings]]:
    """Build Settings from keyword overrides and make them the process-wide settings.

    Overrides use env-var paths: ``make_settings(database__url=pg_url, objects__url=...)``.
    They are exported as ``STEWARD_*`` variables so flows run by Prefect see them too.
    The tests run the example schema's migrations (``migrations__alembic="example"``) unless
    an override says otherwise (``""`` = none configured).
    """
    for key in list(os.environ):
        if key.startswith("STEWARD_") and key != "STEWARD_TEST_PG":
            monkeypatch.delenv(key)
    monkeypatch.delenv("STEWARD_CONFIG", raising=False)

    def make(install: bool = True, **overrides: str) -> Settings:
        monkeypatch.setenv("STEWARD_HOME", str(steward_home))
        monkeypatch.setenv("STEWARD_MIGRATIONS__ALEMBIC", "example")
        monkeypatch.setenv("STEWARD_MIGRATIONS__MONGO", "example")
        for key, value in overrides.items():
            monkeypatch.setenv(f"STEWARD_{key.upper()}", str(value))
        get_settings.cache_clear()
        settings = load_settings()
        if install and settings.database_url.startswith("sqlite"):
            install_steward(settings.database_url)  # PostgreSQL test databases come installed
        return settings

    yield make
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect test harness (ephemeral API + SQLite) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


# --- Flow runs and their artifacts ---------------------------------------------------------


def read_artifacts(flow_run_id: Any) -> dict[str, dict[str, Any]]:
    """The artifacts of one flow run, as the Prefect API returns them, by key."""
    from prefect.client.orchestration import get_client

    query = {  # a raw request: the sync client's read_artifacts sends nulls the API refuses
        "artifacts": {"flow_run_id": {"any_": [str(flow_run_id)]}},
        "limit": 50,
        "offset": 0,
        "sort": "CREATED_DESC",
    }
    with get_client(sync_client=True) as client:
        found = client.request("POST", "/artifacts/filter", json=query).json()
    return {artifact["key"]: artifact for artifact in found}


def read_events(name: str, run_id: Any, timeout_s: float = 60.0) -> list[Any]:
    """Events called ``name`` related to flow run ``run_id`` (they are persisted asynchronously)."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter

    deadline = time.monotonic() + timeout_s
    while True:
        with get_client(sync_client=True) as client:
            response = client.request(
                "POST",
                "/events/filter",
                json={
                    "filter": EventFilter(
                        event=EventNameFilter(name=[name]),
                        related=EventRelatedFilter(id=[f"prefect.flow-run.{run_id}"]),
                    ).model_dump(mode="json"),
                    "limit": 50,
                },
            )
        found = response.json()["events"]
        if found or time.monotonic() > deadline:
            return list(found)
        time.sleep(0.5)


@pytest.fixture
def run_flow(prefect_harness: None) -> Callable[..., tuple[Any, dict[str, dict[str, Any]]]]:
    """Run ``flow(params)`` or ``flow(**kwargs)`` (typed top-level parameters) under the
    harness; returns its summary and its artifacts by key."""

    def run(
        flow: Callable[..., Any], params: Any = None, **kwargs: Any
    ) -> tuple[Any, dict[str, dict[str, Any]]]:
        args = () if params is None else (params,)
        state = flow(*args, **kwargs, return_state=True)
        return state.result(), read_artifacts(state.state_details.flow_run_id)

    return run
