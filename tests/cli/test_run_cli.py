"""``steward run FLOW -p k=v``: every bad parameter is one clear line and exit code 2, before any
flow runs; good ones are bound to the flow's typed top-level parameters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from steward.catalog import load_flow
from steward.cli.flow_runner import bind_params, parse_params
from steward.errors import ConfigError

STEWARD = str(Path(sys.executable).with_name("steward"))


def _steward(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    env.update(STEWARD_HOME=str(cwd / "home"), COLUMNS="200")
    return subprocess.run(
        [STEWARD, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["-p", "lock_timout_seconds=5"],
            "-p lock_timout_seconds: migrate has no parameter 'lock_timout_seconds'; "
            "did you mean 'lock_timeout_seconds'?",
        ),
        (["-p", "dry_run=perhaps"], "-p dry_run=perhaps: Input should be a valid boolean"),
        (["-p", "lock_timeout_seconds=-5"], "-p lock_timeout_seconds=-5: Input should be greater"),
        (
            ["-p", "lock_timeout_seconds=[1]"],
            "-p lock_timeout_seconds=[1]: Input should be a valid",
        ),
        (["-p", "direction=down"], "-p direction=down: Input should be 'upgrade' or 'downgrade'"),
        (["-p", "dry_run"], "-p 'dry_run': expected key=value"),
        (["-p", "dry_run=true", "-p", "dry_run=false"], "-p dry_run: given twice"),
    ],
)
def test_bad_parameter_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = _steward("run", "migrate", *args, cwd=tmp_path)

    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line
    assert "Traceback" not in result.stderr and not (tmp_path / "home" / "steward.db").exists()


@pytest.mark.parametrize(
    ("flow", "pair", "message"),
    [
        ("check-health", "timeout_seconds=0", "Input should be greater than or equal to 0.1"),
        ("relay-outbox", "batch_size=-5", "Input should be greater than or equal to 1"),
        ("validate-data", "fail_on=sometimes", "Input should be 'critical', 'warning' or 'never'"),
        ("nightly", 'skip=["warm-cahce"]', "did you mean 'warm-cache'?"),
        ("archive-to-s3", "max_batches=0", "Input should be greater than or equal to 1"),
        ("cleanup-outbox", "older_than_days=-1", "Input should be greater than or equal to 0"),
        ("invalidate-cache", "max_seconds=0", "Input should be greater than 0"),
        ("backup-databases", 'sources=["databse"]', "did you mean 'database'?"),
    ],
)
def test_the_flows_own_ranges_and_names_are_checked_before_anything_runs(
    tmp_path: Path, flow: str, pair: str, message: str
) -> None:
    result = _steward("run", flow, "-p", pair, cwd=tmp_path)

    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: -p {pair}: ") and message in line, line
    # Nothing started: no run, no embedded database, no temporary Prefect server.
    assert not (tmp_path / "home").exists() and "Starting temporary server" not in result.stdout


def test_unknown_flow_names_the_known_ones(tmp_path: Path) -> None:
    result = _steward("run", "archive-to-s4", cwd=tmp_path)

    assert result.returncode == 2
    assert "unknown flow 'archive-to-s4'" in result.stderr and "archive-to-s3" in result.stderr


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        (["dry_run=true"], {"dry_run": True}),
        (["target=-1"], {"target": "-1"}),  # JSON number, but the parameter is text
        (["target=0002"], {"target": "0002"}),
        (["lock_timeout_seconds=2"], {"lock_timeout_seconds": 2.0}),
        (["include_mongo=null"], {"include_mongo": None}),
        (
            ["mongo_target=head", "direction=downgrade"],
            {"mongo_target": "head", "direction": "downgrade"},
        ),
    ],
)
def test_good_parameters_bind_typed(pairs: list[str], expected: dict[str, Any]) -> None:
    assert bind_params(load_flow("migrate"), parse_params(pairs)) == expected


def test_list_parameter_accepts_json_and_names_a_bad_shape() -> None:
    from prefect import flow

    @flow(name="sample-list")
    def sample(tables: list[str] | None = None, batch_size: int = 10) -> None:
        """Sample."""

    assert bind_params(sample, parse_params(['tables=["users","orders"]'])) == {
        "tables": ["users", "orders"]
    }
    with pytest.raises(ConfigError, match=r"-p tables=users: Input should be a valid list"):
        bind_params(sample, parse_params(["tables=users"]))
    with pytest.raises(ConfigError, match=r"-p batch_size=1.5: .*valid integer"):
        bind_params(sample, parse_params(["batch_size=1.5"]))
