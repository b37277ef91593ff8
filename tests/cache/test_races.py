"""Invalidation racing the cache's writers: a cache-aside fill, a warm, a warmer rerun.

Each race is forced into its worst order with hooks (a loader that is still loading when the
invalidation lands, a warm that writes a row after an invalidator deleted its key, a rerun held
open while other events arrive), so the outcome does not depend on timing.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa

from steward.cache import CacheAside, CacheWarmer, Invalidator
from steward.outbox import EventSpec, enqueue_many
from steward.settings import Settings
from tests.cache import sources
from tests.cache.conftest import Env

PRODUCT_RULE = {"events": ["product.*"], "keys": ["product:{aggregate_id}"]}


@pytest.fixture
def hooks() -> Iterator[dict[str, Callable[[int], None]]]:
    yield sources.HOOKS
    sources.HOOKS.clear()


def _name(env: Env, product_id: int) -> str:
    with env.engine.connect() as conn:
        return str(
            conn.execute(
                sa.text("SELECT name FROM products WHERE id = :id"), {"id": product_id}
            ).scalar_one()
        )


def _rename(env: Env, product_id: int, name: str) -> str:
    """Update the product and enqueue ProductUpdated in one transaction, relay; the event id."""
    with env.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE products SET name = :name WHERE id = :id"),
            {"name": name, "id": product_id},
        )
        (event_id,) = enqueue_many(
            conn, [EventSpec("product", product_id, "ProductUpdated", {"name": name})]
        )
    env.relay()
    return str(event_id)


def _wait(check: Callable[[], bool], seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


class _Listening:
    """``Invalidator.run(forever=True)`` on a thread, stopped (and joined) on exit."""

    def __init__(self, settings: Settings) -> None:
        self.invalidator = Invalidator(settings, block_ms=100)
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            self.invalidator.run(forever=True, stop=self.stop)
        except BaseException as exc:  # shown by the test, not lost in the thread
            self.errors.append(exc)

    def __enter__(self) -> _Listening:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=120)
        self.invalidator.close()
        assert self.errors == []


# --- Item 7: a cache-aside fill never writes back what an invalidation removed ---------------

CASES = {
    "key": ({"events": ["product.*"], "keys": ["product:{aggregate_id}"]}, None, "product:{id}"),
    "pattern": (
        {"events": ["product.*"], "patterns": ["product:{aggregate_id}:*"]},
        None,
        "product:{id}:detail",
    ),
    "versioned": (
        {"events": ["product.*"], "keys": ["product:{aggregate_id}"], "namespace": "shop"},
        "shop",
        "product:{id}",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_slow_fill_racing_an_invalidation_never_writes_the_old_value_back(
    env: Env, make_settings: Callable[..., Settings], case: str
) -> None:
    rule, namespace, template = CASES[case]
    env.configure(make_settings, invalidations=[rule])
    env.redis.set("steward:shop:current", "v1")  # a versioned namespace with a generation
    aside = CacheAside(env.redis, "steward:", lock_ms=60_000)
    env.invalidate()  # joins the streams
    for round_ in range(5):
        product_id = 11 + round_
        key = template.format(id=product_id)
        full = f"steward:shop:v1:{key}" if namespace else f"steward:{key}"
        old, new = _name(env, product_id), f"renamed in round {round_}"

        def read(loader: Callable[[], Any], key: str = key) -> Any:
            if namespace:
                return aside.get_or_load_versioned(namespace, key, loader, ttl=600)
            return aside.get_or_load(key, loader, ttl=600)

        returned, report = _fill_racing_invalidation(env, product_id, new, read)

        assert report["events"] == 1 and report["acked"] == 1
        assert returned["name"] == old  # that read began before the change
        cached = env.redis.get(full)
        assert cached is None or json.loads(cached)["name"] == new, f"round {round_}: stale"
        again = read(lambda product_id=product_id: {"name": _name(env, product_id)})
        assert again["name"] == new  # the next read loads the changed row


def _fill_racing_invalidation(
    env: Env, product_id: int, new: str, read: Callable[[Callable[[], Any]], Any]
) -> tuple[Any, dict[str, Any]]:
    """A read whose loader is still loading when the product changes and is invalidated."""
    loading, invalidated = threading.Event(), threading.Event()

    def loader() -> dict[str, Any]:
        row = {"id": product_id, "name": _name(env, product_id)}
        loading.set()
        invalidated.wait(60)  # a slow loader: the invalidation lands while it loads
        return row

    with ThreadPoolExecutor(1) as pool:
        reading = pool.submit(read, loader)
        assert loading.wait(60)
        _rename(env, product_id, new)
        report = env.invalidate()
        invalidated.set()
        return reading.result(timeout=60), report


# --- Item 8: every event committed after a warm read its rows reaches the cache ------------


def test_an_event_relayed_between_a_warm_and_the_first_invalidation_run_reaches_the_cache(
    env: Env,
) -> None:
    warmer = CacheWarmer(env.settings)  # the default warmers and rules (warm-cache)
    try:
        warmer.warm()
    finally:
        warmer.close()
    assert json.loads(env.redis.get("steward:product:5"))["name"] == _name(env, 5)

    _rename(env, 5, "renamed after the warm")  # relayed before any invalidate-cache run
    report = env.invalidate()  # the invalidator's very first run

    cached = env.redis.get("steward:product:5")
    assert cached is None or json.loads(cached)["name"] == "renamed after the warm"
    assert report["events"] == 1 and report["keys_deleted"] == 1
    assert env.pending("product") == 0


def test_a_warm_does_not_put_back_a_row_a_running_invalidator_already_removed(
    env: Env, make_settings: Callable[..., Settings], hooks: dict[str, Callable[[int], None]]
) -> None:
    warmers = [{"name": "product-names", "source": "tests.cache.sources:product_rows",
                "key": "product:{id}", "batch_size": 10}]  # fmt: skip
    env.configure(make_settings, warmers=warmers, invalidations=[PRODUCT_RULE])
    with env.engine.connect() as conn:
        ids = [r[0] for r in conn.execute(sa.text("SELECT id FROM products ORDER BY id"))]
    late = ids[-1]  # written by the warm well after the hook below
    handled: list[bool] = []

    def change_mid_warm(n: int) -> None:
        if n == 5:  # the warm has read its rows; the product changes and is invalidated
            event_id = _rename(env, late, "renamed mid-warm")
            handled.append(_wait(lambda: env.handled(event_id)))

    with _Listening(env.settings):
        assert _wait(lambda: env.redis.exists("steward:events:product") == 1)
        hooks["row"] = change_mid_warm
        warmer = CacheWarmer(env.settings)
        try:
            warmer.warm()
        finally:
            warmer.close()

    assert handled == [True]  # the invalidator deleted the key before the warm wrote it
    cached = env.redis.get(f"steward:product:{late}")
    assert cached is None or json.loads(cached)["name"] == "renamed mid-warm"
    assert json.loads(env.redis.get(f"steward:product:{ids[0]}"))["name"] == _name(env, ids[0])


# --- Item 10: key deletes do not wait behind warmer reruns; reruns are coalesced -----------


def test_key_deletes_go_on_while_a_warmer_rerun_runs_and_reruns_coalesce(
    env: Env, make_settings: Callable[..., Settings], hooks: dict[str, Callable[[int], None]]
) -> None:
    warmers = [{"name": "held", "source": "tests.cache.sources:held_rows", "key": "held:{id}",
                "value": "run"}]  # fmt: skip
    rules = [PRODUCT_RULE, {"events": ["category.*"], "warmers": ["held"]}]
    env.configure(make_settings, warmers=warmers, invalidations=rules)
    sources.RUNS["held"] = 0
    started, release = threading.Event(), threading.Event()

    def hold(run: int) -> None:
        if run == 1:
            started.set()
            release.wait(120)  # the first rerun stays in progress until the test says so

    hooks["start"] = hold
    env.redis.set("steward:product:7", "cached")
    env.redis.set("steward:product:8", "cached")
    with _Listening(env.settings):
        assert _wait(lambda: env.redis.exists("steward:events:category") == 1)
        env.publish(("category", 1, "CategoryRenamed"))
        assert started.wait(60)  # the rerun is running (and held)

        env.publish(("product", 7, "ProductUpdated"))
        deleted_during_rerun = _wait(lambda: not env.redis.exists("steward:product:7"))
        still_running = not release.is_set() and sources.RUNS["held"] == 1
        for n in range(2, 6):  # more events asking for the same warmer while it runs
            env.publish(("category", n, "CategoryRenamed"))
        env.publish(("product", 8, "ProductUpdated"))
        deleted_too = _wait(lambda: not env.redis.exists("steward:product:8"))
        release.set()
        assert _wait(lambda: env.redis.get("steward:held:0") == b"2")  # the coalesced rerun
        assert _wait(lambda: not env.redis.exists("steward:reruns:steward-cache"))

    assert deleted_during_rerun and deleted_too and still_running
    assert sources.RUNS["held"] == 2  # one rerun in progress, then one for the 4 events
    assert env.pending("product") == 0 and env.pending("category") == 0
