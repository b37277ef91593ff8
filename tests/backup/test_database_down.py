"""The database down, shutting down, or stopped in the middle of a dump (a private cluster of
the test's own): one line naming the cause, exit code 2, and nothing left in the store."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psycopg

from tests.backup.conftest import fill_postgres
from tests.backup.test_backup_cli import STEWARD


def _settings_on(cluster, make_settings):
    url = cluster.create_database("shop")
    fill_postgres(url, customers=2000)
    return make_settings(database__url=url, backup__sources='["database"]')


def _left_in_store(settings) -> list[str]:
    root = Path(settings.objects_url.removeprefix("file://"))
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def _backup(cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [STEWARD, "backup"], cwd=cwd, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def test_database_down_is_one_line_exit_2(private_postgres, make_settings, tmp_path):
    settings = _settings_on(private_postgres, make_settings)
    private_postgres.stop()
    run = _backup(tmp_path)
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 2
    line = _one_error_line(stderr)
    assert "database unreachable" in line and f"port {private_postgres.port}" in line
    assert _left_in_store(settings) == []


def test_database_shutting_down_is_one_line_exit_2(private_postgres, make_settings, tmp_path):
    settings = _settings_on(private_postgres, make_settings)
    session = psycopg.connect(private_postgres.admin_url)  # keeps a smart shutdown waiting
    try:
        private_postgres.run_as_owner(
            [str(private_postgres.bin_dir / "pg_ctl"), "-D", str(private_postgres.data_dir),
             "-m", "smart", "-W", "stop"]
        )  # fmt: skip
        run = _backup(tmp_path)
        _, stderr = run.communicate(timeout=300)
    finally:
        session.close()
    assert run.returncode == 2
    assert "shutting down" in _one_error_line(stderr)
    assert _left_in_store(settings) == []


def test_database_stopped_mid_dump_is_one_line_exit_2(private_postgres, make_settings, tmp_path):
    settings = _settings_on(private_postgres, make_settings)
    blocker = psycopg.connect(private_postgres.url_for("shop").replace("+psycopg", ""))
    blocker.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")  # pg_dump waits on it
    run = _backup(tmp_path)
    try:
        with psycopg.connect(private_postgres.admin_url, autocommit=True) as watcher:
            for _ in range(600):
                waiting = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = 'shop' "
                    "AND application_name = 'steward-backup' AND wait_event_type = 'Lock'"
                ).fetchone()
                if waiting and waiting[0]:
                    break
                time.sleep(0.1)
            else:
                raise AssertionError("pg_dump never started dumping")
        private_postgres.stop()  # fast: every session, pg_dump's included, is terminated
        _, stderr = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
        blocker.close()
    assert run.returncode == 2
    line = _one_error_line(stderr)
    assert "terminating connection" in line or "server closed the connection" in line
    # whichever notices first names it: pg_dump, or Steward's own session (storage layer)
    assert "pg_dump" in line or "lost the database connection" in line
    assert _left_in_store(settings) == []
