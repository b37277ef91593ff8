"""`steward config show` through the installed console script: masked output, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

STEWARD = Path(sys.executable).parent / "steward"
PG_PASSWORD = "Pg-Pa55w0rd-do-not-print"
S3_SECRET = "s3-Secret-Key/do+not+print"
S3_KEY_ID = "AKIASTEWARDCLITEST01"


def run_steward(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    clean.update(COLUMNS="250", NO_COLOR="1", STEWARD_HOME=str(tmp_path / "home"), **env)
    return subprocess.run(
        [str(STEWARD), *args],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def secret_env() -> dict[str, str]:
    return {
        "STEWARD_DATABASE__URL": f"postgresql+psycopg://shop:{PG_PASSWORD}@db.internal:5432/shop",
        "STEWARD_OBJECTS__URL": "s3://shop-archive/steward",
        "STEWARD_OBJECTS__ACCESS_KEY_ID": S3_KEY_ID,
        "STEWARD_OBJECTS__SECRET_ACCESS_KEY": S3_SECRET,
    }


def assert_no_secrets(text: str) -> None:
    for secret in (PG_PASSWORD, S3_SECRET, S3_KEY_ID):
        assert secret not in text


def test_config_show_masks_secrets(tmp_path: Path, secret_env: dict[str, str]) -> None:
    result = run_steward(tmp_path, "config", "show", **secret_env)

    assert result.returncode == 0, result.stderr
    assert "postgresql+psycopg://shop:***@db.internal:5432/shop" in result.stdout
    assert "s3://shop-archive/steward" in result.stdout
    assert_no_secrets(result.stdout + result.stderr)


def test_config_show_json_masks_secrets(tmp_path: Path, secret_env: dict[str, str]) -> None:
    result = run_steward(tmp_path, "config", "show", "--json", **secret_env)

    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["database"]["url"] == "postgresql+psycopg://shop:***@db.internal:5432/shop"
    assert shown["objects"]["secret_access_key"] == "***"
    assert shown["objects"]["url"] == "s3://shop-archive/steward"
    assert_no_secrets(result.stdout + result.stderr)


def test_invalid_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    result = run_steward(
        tmp_path,
        "config",
        "show",
        STEWARD_DATABASE__POOL_SIZE="-1",
        STEWARD_DATABASE__URL=f"postgresql+psycopg://shop:{PG_PASSWORD}@db/shop",
    )

    assert result.returncode == 2
    assert "database.pool_size" in result.stderr
    assert "STEWARD_DATABASE__POOL_SIZE" in result.stderr
    assert "Traceback" not in result.stderr
    assert_no_secrets(result.stdout + result.stderr)


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = run_steward(tmp_path, "config", "show", STEWARD_CONFIG=str(tmp_path / "none.toml"))

    assert result.returncode == 2
    assert "STEWARD_CONFIG" in result.stderr and "none.toml" in result.stderr
