"""Real ``prefect server`` processes backed by PostgreSQL, started as the README says.

Each server is ``scripts/prefect-server.sh`` (what ``make prefect-server`` runs) with its own fresh
database on the machine's PostgreSQL (never Prefect's default SQLite, which locks under load), its
own ``PREFECT_HOME`` and a free port; its database is dropped at teardown.

- ``prefect_server``: the API URL (``http://127.0.0.1:PORT/api``) of the server shared by the
  session; ``prefect_env`` is the environment a ``prefect`` CLI / worker subprocess needs for it.
- ``private_prefect_server``: a :class:`PrefectServer` of the test's own (``.restart()``,
  ``.stop()``, ``.start()``, ``.api_url``, ``.env()``), for tests that restart the server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PG_ADMIN_URL, _create_database, _drop_database
from tests.fixtures.private_servers import free_port

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
START_TIMEOUT_S = 180.0  # a loaded 2-core machine needs far more than Prefect's default


def server_env(home: Path, api_url: str | None = None) -> dict[str, str]:
    """Environment for a Prefect process of this test session (no STEWARD_CHECKOUT, on purpose)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.pop("STEWARD_CHECKOUT", None)
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="false",
        PREFECT_LOGGING_LEVEL="INFO",
        # The scheduler normally wakes every 60 s; a short loop keeps the test short.
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",
        PREFECT_WORKER_QUERY_SECONDS="2",
        PREFECT_WORKER_PREFETCH_SECONDS="10",
    )
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def _wait_healthy(api_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prefect server exited early:\n{log.read_text()[-4000:]}", pytrace=False)
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"prefect server not healthy after {START_TIMEOUT_S}s:\n{log.read_text()[-4000:]}")


def stop_process(process: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM the process group started for a test, then SIGKILL what is left."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="session")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PREFECT_HOME of the session's real server (and of the CLI / worker processes using it)."""
    return tmp_path_factory.mktemp("prefect-home")


class PrefectServer:
    """One ``scripts/prefect-server.sh`` server on a fresh PostgreSQL database of its own."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.database = _create_database()
        self.pg_url = PG_ADMIN_URL.rsplit("/", 1)[0]
        self.log = home / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        """Environment of CLI / worker processes talking to this server."""
        return server_env(self.home, self.api_url)

    def start(self) -> None:
        env = {
            **server_env(self.home),
            "PREFECT_PG_URL": self.pg_url,
            "PREFECT_DB": self.database,
            "PREFECT_PORT": str(self.port),
            "PREFECT_BIN": str(VENV_BIN / "prefect"),
        }
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                ["bash", str(REPO / "scripts" / "prefect-server.sh")],
                cwd=self.home,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends all of it
            )
        _wait_healthy(self.api_url, self.process, self.log)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        _drop_database(self.database)


@pytest.fixture(scope="session")
def session_prefect_server(prefect_home: Path) -> Iterator[PrefectServer]:
    """The real PostgreSQL-backed ``prefect server`` shared by the session."""
    server = PrefectServer(prefect_home)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def prefect_server(session_prefect_server: PrefectServer) -> str:
    """API URL of the session's real PostgreSQL-backed ``prefect server``."""
    return session_prefect_server.api_url


@pytest.fixture
def private_prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A PostgreSQL-backed Prefect server of the test's own, which it may stop and restart."""
    server = PrefectServer(tmp_path_factory.mktemp("private-prefect"))
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def prefect_env(prefect_server: str, prefect_home: Path) -> dict[str, str]:
    """Environment for ``prefect`` CLI commands and workers talking to ``prefect_server``."""
    return server_env(prefect_home, prefect_server)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start a subprocess in its own process group, output to a log file; killed after the test.

    ``spawn(name, argv, env=..., cwd=...)``; the process gets ``.log_path`` (a Path).
    """
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        log_path = tmp_path / f"{name}.log"
        with log_path.open("wb") as out:
            process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
            )
        process.log_path = log_path  # type: ignore[attr-defined]
        started.append(process)
        return process

    yield start
    for process in started:
        stop_process(process)
