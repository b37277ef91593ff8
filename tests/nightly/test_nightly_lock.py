"""One nightly run per source, however it starts: ``steward run nightly`` beside a running
nightly (the deployed one here holds the lock from this process) stops with one line, exit 2,
before any step ran; the lock names who holds it and is released when the holder ends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from steward.errors import NightlyBusy
from steward.health import nightly_lock
from steward.migrations import MigrationRunner
from steward.storage import open_object_store

STEWARD = str(Path(sys.executable).with_name("steward"))


def test_steward_run_nightly_beside_a_running_nightly_stops_with_one_line(
    make_settings, make_pg_database, tmp_path: Path
) -> None:
    settings = make_settings(database__url=make_pg_database())
    runner = MigrationRunner(settings)
    runner.upgrade()
    runner.dispose()
    env = {**os.environ, "COLUMNS": "200"}

    with nightly_lock(settings, "scheduled-nightly"):
        done = subprocess.run(
            [STEWARD, "run", "nightly"], capture_output=True, text=True, env=env, timeout=600,
            cwd=tmp_path,
        )  # fmt: skip

    assert done.returncode == 2, done.stderr[-3000:]
    [line] = [text for text in done.stderr.splitlines() if text.startswith("error: ")]
    assert "another nightly run holds the lock on postgresql" in line
    assert "scheduled-nightly" in line and "changed nothing" in line
    assert "Traceback" not in done.stderr
    store = open_object_store(settings)
    assert list(store.list("")) == []  # no step ran: no backup, no archive object


def test_the_lock_is_free_again_once_its_holder_ends(make_settings, pg_url) -> None:
    settings = make_settings(database__url=pg_url)

    with nightly_lock(settings, "first"), pytest.raises(NightlyBusy, match="first"):
        with nightly_lock(settings, "second", wait_seconds=1.5):
            pass
    with nightly_lock(settings, "third"):  # released: taken at once
        pass


def test_a_holder_killed_mid_run_does_not_leave_the_lock_behind(make_settings, pg_url) -> None:
    settings = make_settings(database__url=pg_url)
    code = (
        "import os, sys\n"
        "from steward.health import nightly_lock\n"
        "from steward.settings import get_settings\n"
        "with nightly_lock(get_settings(), 'doomed'):\n"
        "    print('held', flush=True)\n"
        "    os._exit(9)  # killed: no release\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ))  # fmt: skip
    assert "held" in done.stdout, done.stderr

    with nightly_lock(settings, "next", wait_seconds=10):  # the session died with its lock
        pass


def test_the_lock_of_another_database_on_the_same_server_is_neither_taken_nor_named(
    make_settings, make_pg_database
) -> None:
    """Advisory locks are per database, pg_locks spans the server: a nightly of another
    application on the same server neither blocks this source nor is named as its holder."""
    other = make_settings(database__url=make_pg_database())
    mine = make_settings(database__url=make_pg_database())

    with nightly_lock(other, "other-application"):
        with nightly_lock(mine, "first-run"):
            with pytest.raises(NightlyBusy) as busy:
                with nightly_lock(mine, "second-run"):
                    pass

    assert "first-run" in str(busy.value) and "other-application" not in str(busy.value)
