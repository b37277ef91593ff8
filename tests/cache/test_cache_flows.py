"""The warm-cache and invalidate-cache flows under Prefect: summaries, artifacts, bad input."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from flows.invalidate_cache import invalidate_cache
from flows.warm_cache import warm_cache
from steward.errors import ConfigError, SourceUnavailable
from steward.outbox import OutboxRelay, enqueue
from steward.settings import Settings
from tests.cache.conftest import RedisServer, migrate_and_fill
from tests.conftest import read_artifacts


def _run(flow: Any, **params: Any) -> tuple[Any, dict[str, dict[str, Any]]]:
    state = flow(**params, return_state=True)
    return state.result(raise_on_failure=False), read_artifacts(state.state_details.flow_run_id)


@pytest.fixture
def flow_settings(
    prefect_harness: None, make_pg_database: Callable[[], str], redis_url: str,
    redis_client: redis.Redis, make_settings: Callable[..., Settings],
) -> Iterator[Settings]:  # fmt: skip
    url = make_pg_database()
    migrate_and_fill(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM outbox"))
    engine.dispose()
    yield make_settings(database__url=url, cache__url=redis_url, outbox__sinks='["redis_streams"]')


def test_warm_cache_flow_returns_keys_generations_and_leaves_artifacts(
    flow_settings: Settings, redis_client: redis.Redis
) -> None:
    summary, artifacts = _run(warm_cache)

    products = len(list(redis_client.scan_iter(match="steward:product:*")))
    assert summary["keys"]["product-detail"] == products > 0
    assert summary["keys"]["category-tree"] == 1
    assert summary["generations"] == {"catalog": 1}
    assert summary["hit_ratio"] is None  # no cache-aside reads yet
    assert {"warm-cache-warmers", "cache-stats", "warm-cache-summary"} <= set(artifacts)
    assert "no get_or_load reads recorded" in artifacts["warm-cache-summary"]["data"]

    again, _ = _run(warm_cache, warmers=["price-lists"], dry_run=False)
    assert again["generations"] == {"catalog": 2} and "product-detail" not in again["keys"]


def test_warm_cache_flow_refuses_bad_warmers(flow_settings: Settings) -> None:
    for bad in (["nope"], "product-detail"):
        result, _ = _run(warm_cache, warmers=bad)
        assert isinstance(result, ConfigError | Exception)
        assert "warmer" in str(result)


def test_invalidate_cache_flow_applies_an_outbox_event(
    flow_settings: Settings, redis_client: redis.Redis
) -> None:
    _run(warm_cache, warmers=["product-detail"])
    first, _ = _run(invalidate_cache)  # joins the streams
    engine = sa.create_engine(flow_settings.database_url)
    with engine.begin() as conn:
        enqueue(conn, "product", 3, "PriceChanged", {"price": "9.99"})
    engine.dispose()
    relay = OutboxRelay.from_settings(flow_settings)
    relay.relay_batch()
    relay.close()

    dry, _ = _run(invalidate_cache, dry_run=True)
    assert redis_client.exists("steward:product:3") == 1
    summary, artifacts = _run(invalidate_cache, max_seconds=30)

    assert first["events"] == 0
    assert dry["events"] == 0 and any(s["lag"] == 1 for s in dry["streams"])
    assert summary["events"] == 1 and summary["keys_deleted"] == 1 and summary["acked"] == 1
    assert redis_client.exists("steward:product:3") == 0
    assert {"invalidate-cache", "invalidate-cache-summary"} <= set(artifacts)
    assert all(s["pending"] == 0 for s in summary["streams"])

    bad, _ = _run(invalidate_cache, max_seconds=0)
    assert "max_seconds" in str(bad) and "greater than 0" in str(bad)


def test_one_long_running_run_applies_events_as_they_arrive_then_ends(
    flow_settings: Settings, redis_client: redis.Redis
) -> None:
    """The deployment's shape (forever + max_seconds): one run listens, not a run a minute."""
    import threading
    import time

    _run(warm_cache, warmers=["product-detail"])
    _run(invalidate_cache)  # joins the streams
    assert redis_client.exists("steward:product:3", "steward:product:4") == 2
    found: dict[str, Any] = {}
    listener = threading.Thread(
        target=lambda: found.update(run=_run(invalidate_cache, forever=True, max_seconds=20))
    )
    listener.start()
    engine = sa.create_engine(flow_settings.database_url)
    relay = OutboxRelay.from_settings(flow_settings)
    for product in (3, 4):  # two events, published while the one run listens
        time.sleep(3)
        with engine.begin() as conn:
            enqueue(conn, "product", product, "PriceChanged", {"price": "9.99"})
        relay.relay_batch()
    relay.close()
    engine.dispose()
    listener.join(timeout=120)

    summary, _ = found["run"]
    assert not listener.is_alive() and summary["events"] == 2 and summary["acked"] == 2
    assert redis_client.exists("steward:product:3", "steward:product:4") == 0
    assert summary["seconds"] >= 20  # it kept listening until max_seconds, then ended


def test_redis_down_is_retried_then_fails_with_the_old_generation_current(
    prefect_harness: None, make_settings: Callable[..., Settings], cache_pg_url: str,
    private_redis: RedisServer, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import flows.warm_cache as module
    from steward.cache import CacheWarmer

    warmers = [{"name": "numbers", "source": "tests.cache.sources:numbered_rows",
                "params": {"rows": 500}, "key": "n:{id}", "value": "run", "mode": "versioned",
                "namespace": "nums"}]  # fmt: skip
    make_settings(database__url=cache_pg_url, cache__url=private_redis.url,
                  cache__socket_timeout="1", cache__warmers=json.dumps(warmers),
                  cache__invalidations="[]")  # fmt: skip
    first, _ = _run(warm_cache)
    assert first["generations"] == {"nums": 1}
    attempts: list[str] = []
    real = CacheWarmer.warm_unit

    def counted(self: CacheWarmer, *args: Any, **kwargs: Any) -> Any:
        attempts.append("try")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(CacheWarmer, "warm_unit", counted)
    monkeypatch.setattr(
        module, "warm_cache_unit", module.warm_cache_unit.with_options(retry_delay_seconds=0)
    )
    private_redis.stop()
    failed, _ = _run(warm_cache)
    private_redis.start()

    assert isinstance(failed, SourceUnavailable)
    assert len(attempts) == 3  # the first try and two retries (transient errors only)
    client = redis.Redis.from_url(private_redis.url)
    assert client.get("steward:nums:current") == b"v1"
    assert len(list(client.scan_iter(match="steward:nums:v1:*"))) == 500
