"""Ctrl-C: exit 130 with one line saying what was left and how to resume; through Prefect the
process stops within seconds (even with a task stuck in a thread) and the run ends Crashed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STEWARD = str(Path(sys.executable).with_name("steward"))
SLOW_FLOW_CLI = str(Path(__file__).with_name("slow_flow_cli.py"))

pytestmark = pytest.mark.slow


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    # INFO: the tests wait for Prefect's "Beginning flow run" line (`make test` exports WARNING).
    env.update(
        STEWARD_HOME=str(home), COLUMNS="200", PYTHONPATH=str(REPO), PREFECT_LOGGING_LEVEL="INFO"
    )
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():  # report to the session's Prefect test server
        env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    return env


def _interrupt(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.send_signal(signal.SIGINT)
    try:  # "within a few seconds": far less than the 145 s seen before the fix
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"still running 60 s after Ctrl-C:\n{err[-3000:]}")
    return out, err


def _wait_for_line(process: subprocess.Popen[str], marker: str) -> list[str]:
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            return seen
    pytest.fail(f"no {marker!r} in the output: {''.join(seen)}{process.stderr.read()}")


def _flow_run_state(flow_run_id: str) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return str(client.read_flow_run(uuid.UUID(flow_run_id)).state_type.value)


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("stuck", [False, True], ids=["between-tasks", "task-stuck-in-thread"])
def test_ctrl_c_through_prefect_exits_130_and_the_run_is_not_left_running(
    tmp_path: Path, stuck: bool
) -> None:
    args = [sys.executable, SLOW_FLOW_CLI, "run", "slow-flow"]
    if stuck:
        args += ["-p", "stuck=true"]
    process = subprocess.Popen(
        args, cwd=tmp_path, env=_env(tmp_path / "home"), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    seen = _wait_for_line(process, "started")
    flow_run_id = next(line for line in seen if "flow run id:" in line).split(":", 1)[1].strip()
    time.sleep(2)  # inside a task

    _, err = _interrupt(process)

    assert process.returncode == 130, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (
        "interrupted: work finished so far is kept; run the same command again to resume"
    )
    assert _flow_run_state(flow_run_id) in ("CRASHED", "CANCELLED")


def test_ctrl_c_during_demo_data_exits_130_and_says_how_to_resume(tmp_path: Path) -> None:
    env = _env(tmp_path / "home")
    env.pop("PREFECT_API_URL", None)
    for command in ("install", "migrate"):
        migrated = subprocess.run(
            [STEWARD, command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert migrated.returncode == 0, migrated.stderr
    database = tmp_path / "home" / "steward.db"
    size_before = database.stat().st_size
    process = subprocess.Popen(
        [STEWARD, "demo-data", "--rows", "2000000"], cwd=tmp_path, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    wal = database.with_name("steward.db-wal")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if (wal.exists() and wal.stat().st_size) or database.stat().st_size != size_before:
            break  # rows are being written
        time.sleep(0.2)

    _, err = _interrupt(process)

    assert process.returncode == 130, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (
        "interrupted: the demo tables may be partly filled; run `steward demo-data --replace` "
        "to fill them again"
    )


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["steward", "archive", "--table", "users"], "verified archive object; run `steward arch"),
        (["steward", "--help"], "run the same command again to resume"),
        (["steward", "migrate", "--down"], "last finished revision"),
        (["steward", "outbox", "relay"], "delivered again (at least once)"),
        (["steward"], "run the same command again to resume"),
        (["steward", "run", "archive-to-s3"], "verified archive object; run `steward arch"),
        (["steward", "run", "-p", "dry_run=false", "archive-to-s3"], "verified archive object"),
        (["steward", "run", "restore-archive", "-p", "keys=[1]"], "rows already back are"),
        (["steward", "run", "migrate"], "last finished revision"),
        (["steward", "run", "tier-archives"], "keep their new storage class"),
        (["steward", "run", "relay-outbox"], "delivered again (at least once)"),
        (["steward", "run", "validate-data"], "run the same command again to resume"),
    ],
)
def test_every_command_says_what_an_interrupt_left(argv: list[str], words: str) -> None:
    from steward.cli.interrupts import state_left

    assert words in state_left(argv)


@pytest.mark.usefixtures("prefect_harness")
def test_ctrl_c_during_run_archive_to_s3_says_what_the_archive_left(tmp_path: Path) -> None:
    import sqlite3

    env = _env(tmp_path / "home")
    for args in (["install"], ["migrate"], ["demo-data", "--rows", "300"]):
        done = subprocess.run(
            [STEWARD, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr
    database = tmp_path / "home" / "steward.db"
    writer = sqlite3.connect(database, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # the archive blocks on its first write: mid-run
    users = writer.execute("SELECT count(*) FROM users").fetchone()[0]
    process = subprocess.Popen(
        [STEWARD, "run", "archive-to-s3"], cwd=tmp_path, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    for line in process.stderr:
        if "Beginning flow run" in line:
            break
    else:
        pytest.fail(f"the run ended before it began: exit {process.wait()}")
    time.sleep(2)

    _, err = _interrupt(process)
    writer.execute("ROLLBACK")

    assert process.returncode == 130, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (
        "interrupted: every row is still in the source or in a verified archive object; run "
        "`steward archive` again to finish (no duplicates)"
    )
    assert writer.execute("SELECT count(*) FROM users").fetchone()[0] == users
    writer.close()
