"""`steward migrate --down --to base` drops every table: it asks first on a terminal (no = exit
1, nothing dropped), and goes ahead with --yes."""

from __future__ import annotations

import os
import pty
import select
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

STEWARD = str(Path(sys.executable).with_name("steward"))

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _env(home: Path) -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    env.update(STEWARD_HOME=str(home), COLUMNS="200", PREFECT_API_URL=str(PREFECT_API_URL.value()))
    return env


def _tables(home: Path) -> set[str]:
    with sqlite3.connect(home / "steward.db") as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _read_until(fd: int, marker: bytes, timeout_s: float = 120) -> bytes:
    seen = b""
    while marker not in seen:
        ready, _, _ = select.select([fd], [], [], timeout_s)
        if not ready:
            pytest.fail(f"no {marker!r} on the terminal: {seen!r}")
        seen += os.read(fd, 1024)
    return seen


def test_downgrade_to_base_asks_on_a_terminal_and_yes_skips_the_question(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    env = _env(home)
    installed = subprocess.run([STEWARD, "install"], env=env, cwd=tmp_path, capture_output=True,
                               text=True, timeout=600)  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    up = subprocess.run([STEWARD, "migrate"], env=env, cwd=tmp_path, capture_output=True,
                        text=True, timeout=600)  # fmt: skip
    assert up.returncode == 0, up.stderr
    assert "products" in _tables(home)

    master, slave = pty.openpty()
    asked = subprocess.Popen(
        [STEWARD, "migrate", "--down", "--to", "base"], stdin=slave, stdout=slave,
        stderr=subprocess.PIPE, env=env, cwd=tmp_path,
    )  # fmt: skip
    os.close(slave)
    prompt = _read_until(master, b"Continue?")
    os.write(master, b"n\n")
    asked.wait(timeout=120)
    os.close(master)

    assert b"drops every table" in prompt and b"***" not in prompt
    assert asked.returncode == 1
    assert "products" in _tables(home)  # nothing dropped

    down = subprocess.run([STEWARD, "migrate", "--down", "--to", "base", "--yes"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert down.returncode == 0, down.stderr
    assert "products" not in _tables(home)
