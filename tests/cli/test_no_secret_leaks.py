"""Awkward passwords never leak: not in any command's output, not in a flow run's logs or
artifacts stored in Prefect, not in error messages, not in files under the Steward home.

PostgreSQL and Redis here accept any password (trust auth, no requirepass), so the commands
really connect with URLs that carry these passwords.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

STEWARD = str(Path(sys.executable).with_name("steward"))
PASSWORDS = ["Sl/ash#Hash?Q", "At@Sign:Co:lon", "Pe%rc%25ent+Pl us", "All/#?@:%Zz"]

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _forms(password: str) -> list[str]:
    """The password as written and percent-encoded (what drivers get)."""
    return [password, quote(password, safe=""), quote(password, safe="/:@")]


def _steward(home: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    from prefect.settings import PREFECT_API_URL

    clean = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    clean.update(STEWARD_HOME=str(home), COLUMNS="250", NO_COLOR="1", **env)
    clean["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    return subprocess.run(
        [STEWARD, *args], cwd=home.parent, env=clean, capture_output=True, text=True, timeout=600
    )


def _stored_in_prefect() -> str:
    """Every log line and artifact the session's Prefect server holds, as text."""
    from prefect.client.orchestration import get_client

    texts: list[Any] = []
    with get_client(sync_client=True) as client:
        for path, body in (
            ("/logs/filter", {"limit": 200, "offset": 0, "sort": "TIMESTAMP_DESC"}),
            ("/artifacts/filter", {"limit": 200, "offset": 0, "sort": "CREATED_DESC"}),
            ("/flow_runs/filter", {"limit": 200, "offset": 0, "sort": "START_TIME_DESC"}),
        ):
            texts.append(client.request("POST", path, json=body).text)
    return "\n".join(texts)


def _files_under(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())


@pytest.mark.parametrize("password", PASSWORDS)
def test_awkward_password_never_appears_anywhere(
    password: str, tmp_path: Path, make_pg_database: Any, redis_url: str
) -> None:
    pg_url = make_pg_database()
    scheme, rest = pg_url.split("://", 1)
    host_and_db = rest.split("@", 1)[1]
    redis_host = redis_url.split("://", 1)[1]
    env = {
        "STEWARD_DATABASE__URL": f"{scheme}://postgres:{password}@{host_and_db}",
        "STEWARD_CACHE__URL": f"redis://:{password}@{redis_host}",
        "STEWARD_MIGRATIONS__ALEMBIC": "example",
        "STEWARD_OBJECTS__ACCESS_KEY_ID": f"AKIA{password}",
        "STEWARD_OBJECTS__SECRET_ACCESS_KEY": password,
    }
    home = tmp_path / "home"
    runs = [
        _steward(home, env, "config", "show"),
        _steward(home, env, "config", "show", "--json"),
        _steward(home, env, "migrate"),  # a flow run: its log line names the database
        _steward(home, env, "migrate", "--status"),
        _steward(home, env, "run", "migrate", "-p", "dry_run=true"),
        # error paths: refused user, bad port, a misspelt key holding the URL
        _steward(
            home,
            {**env, "STEWARD_DATABASE__URL": f"{scheme}://nobody:{password}@{host_and_db}"},
            "migrate",
            "--status",
        ),  # fmt: skip
        _steward(
            home,
            {**env, "STEWARD_DATABASE__URL": f"{scheme}://app:{password}@db:x/a"},
            "config",
            "show",
        ),  # fmt: skip
        _steward(
            home, {**env, "STEWARD_DATABASE__URI": env["STEWARD_DATABASE__URL"]}, "config", "show"
        ),  # fmt: skip
        _steward(
            home, {**env, "STEWARD_DATABSE__URL": env["STEWARD_DATABASE__URL"]}, "config", "show"
        ),  # fmt: skip
    ]

    assert [r.returncode for r in runs] == [0, 0, 0, 0, 0, 2, 2, 2, 2], [r.stderr for r in runs]
    assert "postgres:***@" in runs[0].stdout and "redis://:***@" in runs[0].stdout
    assert "authentication failed" in runs[5].stderr
    output = "\n".join(r.stdout + r.stderr for r in runs)
    stored = _stored_in_prefect()
    files = _files_under(home)
    for form in _forms(password):
        assert form not in output
        assert form not in stored
        assert form.encode() not in files
