"""`steward demo` (what `make demo` runs) on the embedded default: no servers configured."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

STEWARD = str(Path(sys.executable).with_name("steward"))


def test_demo_runs_every_flow_on_the_embedded_default(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEWARD_", "PREFECT_"))}
    env |= {
        "STEWARD_HOME": str(tmp_path / "home"),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "COLUMNS": "200",
    }
    done = subprocess.run(
        [STEWARD, "demo", "--rows", "3000"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    for step in ("migrate", "demo-data", "relay-outbox", "archive-to-s3", "tier-archives"):
        assert step in done.stdout, f"{step} missing from the demo summary:\n{done.stdout}"
    # A report in words and figures, not summary dicts; then the health of every store.
    for words in ("migration(s) applied", "synthetic rows in", "outbox events published",
                  "rows archived into", "a month", "Health:"):  # fmt: skip
        assert words in done.stdout, f"{words!r} missing from the demo report:\n{done.stdout}"
    assert "e-0" not in done.stdout and "=None" not in done.stdout
    # Nothing a user would worry about on the embedded default: no warning, error or traceback.
    output = done.stdout + done.stderr
    marks = ("| WARNING", "| ERROR", "Traceback", "failed:")
    worrying = [line for line in output.splitlines() if any(m in line for m in marks)]
    assert not worrying, "\n".join(worrying)

    home = tmp_path / "home"
    db = sqlite3.connect(home / "steward.db")
    pending = db.execute("SELECT count(*) FROM outbox WHERE status = 'pending'").fetchone()[0]
    complete = db.execute(
        "SELECT object_key, rows FROM steward_archive_manifest WHERE state = 'complete'"
    ).fetchall()
    db.close()
    assert pending == 0, "the relay left pending events behind"
    assert complete and sum(rows for _, rows in complete) > 0, "nothing was archived"
    for key, _ in complete:  # every completed batch's object is in the store
        assert (home / "objects" / key).is_file(), key
