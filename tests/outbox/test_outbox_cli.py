"""``steward outbox`` as a user runs it: status, requeue-dead, relay --forever and SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from steward.outbox import enqueue

REPO = Path(__file__).resolve().parents[2]
STEWARD = [str(Path(sys.executable).with_name("steward"))]  # the console script


def steward(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*STEWARD, *args], capture_output=True, text=True, timeout=60, cwd=REPO,
        env=dict(os.environ, COLUMNS="200"),
    )  # fmt: skip


def make_dead(env, count: int) -> None:
    with env.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE outbox SET status = 'dead', last_error = 'x' WHERE seq <= :n"),
            {"n": count},
        )


def test_status_prints_pending_dead_and_lag(outbox_env):
    env = outbox_env
    env.fill(7, 2)
    make_dead(env, 2)
    result = steward("outbox", "status", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert (shown["pending"], shown["dead"], shown["retrying"]) == (5, 2, 0)
    assert shown["oldest_pending_age_seconds"] >= 0 and shown["table"] == "outbox"
    assert [(g["reason"], g["count"]) for g in shown["dead_by_reason"]] == [("x", 2)]
    assert shown["held"][0]["aggregate"] == "order:agg-0" and shown["held"][0]["held"] == 3
    table = steward("outbox", "status")
    assert table.returncode == 0 and "oldest pending age" in table.stdout
    assert "2 dead (oldest" in table.stdout and "order:agg-1" in table.stdout
    dead_id = str(env.rows("seq = 1")[0].id)
    assert f"order:agg-0: 3 events held behind dead event {dead_id}" in table.stdout


def test_requeue_dead_by_aggregate_and_by_event(outbox_env):
    env = outbox_env
    ids = env.fill(6, 3)
    make_dead(env, 6)
    dry = steward("outbox", "requeue-dead", "--aggregate", "order:agg-1", "--dry-run")
    assert dry.returncode == 0 and "would requeue 2 matching dead events" in dry.stdout
    assert "2 dead (oldest" in dry.stdout and ids[1] in dry.stdout and ids[4] in dry.stdout
    assert ids[0] not in dry.stdout and "Changed" in dry.stdout
    done = steward("outbox", "requeue-dead", "--aggregate", "order:agg-1", "--event", ids[0])
    assert done.returncode == 0 and "requeued 3 matching dead events" in done.stdout
    assert [row.seq for row in env.rows("status = 'pending'")] == [1, 2, 5]
    everything = steward("outbox", "requeue-dead")
    assert "requeued 3 dead events" in everything.stdout
    bad = steward("outbox", "requeue-dead", "--event", "not-a-uuid")
    assert bad.returncode == 2 and "is not a UUID" in bad.stderr


def wait_for(condition, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_relay_forever_wakes_on_notify_and_stops_cleanly_on_sigterm(outbox_env):
    env = outbox_env.reconfigure(outbox__poll_interval_seconds="300")  # only NOTIFY wakes it
    process = subprocess.Popen(
        [*STEWARD, "outbox", "relay", "--forever"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=os.environ,
    )
    try:
        assert "relaying outbox table 'outbox'" in process.stderr.readline()
        time.sleep(1.0)  # past its first drain: now it sleeps until NOTIFY
        for round_number in (1, 2):
            with env.engine.begin() as conn:
                for n in range(5):
                    enqueue(conn, "order", f"o{n}", "Placed", {"round": round_number})
            expected = 5 * round_number
            assert wait_for(lambda n=expected: len(env.rows("status = 'published'")) == n), (
                "the relay did not wake up on NOTIFY"
            )
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "stopped: 10 events published" in err
    assert env.redis.xlen(env.stream("order")) == 10


def test_relay_flow_forever_under_prefect_stops_cleanly_on_sigterm(outbox_env, tmp_path):
    env = outbox_env.reconfigure(outbox__poll_interval_seconds="300")
    process = subprocess.Popen(
        [*STEWARD, "run", "relay-outbox", "-p", "forever=true"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_LOGGING_LEVEL="INFO"),
    )
    try:
        for line in process.stderr:  # Prefect logs to stderr
            if "long-running relay: waiting" in line:
                break
        time.sleep(1.0)
        with env.engine.begin() as conn:
            for n in range(5):
                enqueue(conn, "order", f"o{n}", "Placed", {"n": n})
        assert wait_for(lambda: len(env.rows("status = 'published'")) == 5)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    summary = json.loads(out)
    assert summary["published"] == 5 and summary["pending"] == 0
