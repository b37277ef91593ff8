"""``steward cache``: warm, invalidate, flush PATTERN (dry run first), stats, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis

from steward.cache import CacheAside
from steward.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def steward(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    return subprocess.run(
        [str(Path(sys.executable).parent / "steward"), *args],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
    )  # fmt: skip


def test_warm_then_stats_show_keys_and_hit_ratio(
    pg_settings: Settings, redis_client: redis.Redis
) -> None:
    warmed = steward("cache", "warm")
    aside = CacheAside(redis_client, "steward:", flush_every=1)
    aside.get_or_load("product:1", lambda: "db", 60)  # warmed: a hit
    aside.get_or_load("product:999999", lambda: "db", 60)  # not a product: a miss
    shown = steward("cache", "stats")
    as_json = steward("cache", "stats", "--json")

    assert warmed.returncode == 0, warmed.stderr
    assert "product-detail" in warmed.stdout and "v1" in warmed.stdout
    assert shown.returncode == 0, shown.stderr
    assert "hit ratio 50.0%" in shown.stdout
    report = json.loads(as_json.stdout)
    product = next(n for n in report["namespaces"] if n["namespace"] == "product")
    assert (product["hits"], product["misses"], product["hit_ratio"]) == (1, 1, 0.5)
    assert product["keys"] > 1 and product["ttl_min"] <= product["ttl_max"]


def test_flush_counts_first_and_deletes_only_with_yes(
    pg_settings: Settings, redis_client: redis.Redis
) -> None:
    for n in range(25):
        redis_client.set(f"steward:session:{n}", "x")
    redis_client.set("steward:sessions-index", "kept")

    counted = steward("cache", "flush", "session:*")
    assert counted.returncode == 0, counted.stderr
    assert "25 keys match 'steward:session:*'" in counted.stdout
    assert len(list(redis_client.scan_iter(match="steward:session:*"))) == 25

    deleted = steward("cache", "flush", "session:*", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert "deleted 25 keys" in deleted.stdout
    assert list(redis_client.scan_iter(match="steward:session:*")) == []
    assert redis_client.get("steward:sessions-index") == b"kept"


def test_invalidate_once_and_bad_input_exit_codes(pg_settings: Settings) -> None:
    ran = steward("cache", "invalidate")
    unknown = steward("cache", "warm", "--warmer", "nope")
    empty = steward("cache", "flush", " ")

    assert ran.returncode == 0, ran.stderr
    assert "events" in ran.stdout
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "error: warmers: unknown warmer 'nope'; configured warmers: product-detail, "
        "category-tree, top-sellers, price-lists"
    ]
    assert empty.returncode == 2 and "PATTERN is empty" in empty.stderr


def test_a_bad_cache_setting_is_one_line_and_exit_2(pg_settings: Settings) -> None:
    os.environ["STEWARD_CACHE__WARMERS"] = '[{"name": "x", "query": "SELECT 1", "key": "k:{a.b}"}]'
    try:
        result = steward("cache", "warm")
    finally:
        del os.environ["STEWARD_CACHE__WARMERS"]
    assert result.returncode == 2
    assert "cache.warmers.0.key" in result.stderr and "plain column name" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalidate_forever_applies_events_until_sigterm(
    pg_settings: Settings, redis_client: redis.Redis
) -> None:
    env = {**os.environ, "COLUMNS": "200", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "steward"), "cache", "invalidate", "--forever"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
    )  # fmt: skip
    try:
        assert _wait(lambda: _has_group(redis_client, "steward:events:product"))
        redis_client.set("steward:product:42", "stale")
        redis_client.xadd(
            "steward:events:product",
            {"event_id": "3f1c", "event_type": "ProductUpdated", "aggregate_id": "42",
             "payload": "{}", "seq": "1"},
        )  # fmt: skip
        assert _wait(lambda: not redis_client.exists("steward:product:42"))
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "│ events               │ 1" in out and "│ acked                │ 1" in out


def _has_group(client: redis.Redis, stream: str) -> bool:
    if not client.exists(stream):
        return False
    return any(g["name"] == b"steward-cache" for g in client.xinfo_groups(stream))


def _wait(check: Callable[[], bool], seconds: float = 90) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False
