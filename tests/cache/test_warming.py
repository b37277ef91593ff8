"""Warming from the example schema: refresh and versioned modes, TTL jitter, bad warmers."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from steward.cache import CacheWarmer, KeySpace, plan_units
from steward.errors import ConfigError
from steward.settings import Settings, load_settings


def _live_products(settings: Settings) -> dict[int, tuple[str, int | None]]:
    """id -> (current EUR price, category) of every product not soft-deleted."""
    engine = sa.create_engine(settings.database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT p.id, pr.amount, p.category_id FROM products p LEFT JOIN prices pr "
                "ON pr.product_id = p.id AND pr.effective_to IS NULL AND pr.currency = 'EUR' "
                "WHERE p.deleted_at IS NULL"
            )
        ).all()
    engine.dispose()
    return {r.id: (None if r.amount is None else str(r.amount), r.category_id) for r in rows}


def _check_example_cache(settings: Settings, client: redis.Redis) -> None:
    products = _live_products(settings)
    assert products
    for product_id, (price, _) in products.items():
        cached = json.loads(client.get(f"steward:product:{product_id}"))
        assert cached["id"] == product_id
        assert (None if cached["price"] is None else str(cached["price"])) == price
        assert "available" in cached
    assert client.get("steward:catalog:current") == b"v1"
    tree = json.loads(client.get("steward:catalog:v1:category:tree"))
    assert tree and all({"id", "name", "slug", "children"} <= set(node) for node in tree)
    lists = list(client.scan_iter(match="steward:catalog:v1:category:*:prices"))
    assert lists
    priced = {pid for pid, (price, _) in products.items() if price is not None}
    fields = {int(f) for key in lists for f in client.hkeys(key)}
    assert fields == {pid for pid in priced if products[pid][1] is not None}
    for key in client.scan_iter(match="steward:catalog:v1:category:*:top-sellers"):
        scores = [s for _, s in client.zrevrange(key, 0, -1, withscores=True)]
        assert 0 < len(scores) <= 100 and scores == sorted(scores, reverse=True)


def test_warms_the_example_schema_on_postgres(
    pg_settings: Settings, redis_client: redis.Redis
) -> None:
    warmer = CacheWarmer(pg_settings)
    try:
        reports = {u.namespace: u for u in warmer.warm()}
    finally:
        warmer.close()

    assert reports["catalog"].generation == 1
    assert [w.warmer for w in reports["catalog"].warmers] == [
        "category-tree", "top-sellers", "price-lists"
    ]  # fmt: skip
    assert reports["product"].warmers[0].keys == len(_live_products(pg_settings))
    _check_example_cache(pg_settings, redis_client)


def test_warms_the_embedded_default(sqlite_settings: Settings) -> None:
    warmer = CacheWarmer(sqlite_settings)
    try:
        warmer.warm()
        _check_example_cache(sqlite_settings, warmer.cache.redis)
    finally:
        warmer.cache.redis.flushdb()
        warmer.close()


def test_versioned_rewarm_flips_and_removes_the_old_generation(
    pg_settings: Settings, redis_client: redis.Redis
) -> None:
    warmer = CacheWarmer(pg_settings)
    try:
        warmer.warm(["price-lists"])  # a namespace is warmed whole: its peers come too
        first = set(redis_client.scan_iter(match="steward:catalog:v1:*"))
        report = warmer.warm(["top-sellers"])[0]
    finally:
        warmer.close()

    assert [w.warmer for w in report.warmers] == ["category-tree", "top-sellers", "price-lists"]
    assert (report.generation, report.previous_generation) == (2, 1)
    assert report.removed_keys == len(first)
    assert list(redis_client.scan_iter(match="steward:catalog:v1:*")) == []
    second = {k.replace(b":v2:", b":v1:") for k in redis_client.scan_iter("steward:catalog:v2:*")}
    assert second == first
    assert redis_client.get("steward:catalog:current") == b"v2"


def test_ttl_jitter_stays_within_its_bounds(
    make_settings: Callable[..., Settings], cache_pg_url: str, redis_url: str,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    warmers = [{"name": "numbers", "source": "tests.cache.sources:numbered_rows",
                "params": {"rows": 2000}, "key": "n:{id}", "value": "run",
                "ttl_seconds": 1000, "ttl_jitter_pct": 20}]  # fmt: skip
    settings = make_settings(
        database__url=cache_pg_url, cache__url=redis_url,
        cache__warmers=json.dumps(warmers), cache__invalidations="[]",
    )  # fmt: skip
    warmer = CacheWarmer(settings)
    try:
        warmer.warm()
    finally:
        warmer.close()

    pipe = redis_client.pipeline()
    for n in range(2000):
        pipe.ttl(f"steward:n:{n}")
    ttls = pipe.execute()
    assert all(795 <= t <= 1200 for t in ttls)  # 800..1200 s, less the seconds gone by
    assert max(ttls) - min(ttls) > 200  # spread out, not one expiry moment


def test_dry_run_counts_and_writes_nothing(
    pg_settings: Settings, redis_client: redis.Redis
) -> None:
    warmer = CacheWarmer(pg_settings)
    try:
        reports = warmer.warm(dry_run=True)
    finally:
        warmer.close()

    counted = {w.warmer: w for u in reports for w in u.warmers}
    assert counted["product-detail"].keys == len(_live_products(pg_settings))
    assert counted["category-tree"].keys == 1
    assert [k for k in redis_client.scan_iter() if k != b"steward:test:claim"] == []


def _settings_with(make: Callable[..., Settings], base: dict[str, str], warmer: dict) -> Settings:
    return make(**base, cache__warmers=json.dumps([warmer]), cache__invalidations="[]")


@pytest.mark.parametrize(
    ("warmer", "expected"),
    [
        ({"name": "broken", "query": "SELECT id FROM no_such_table", "key": "x:{id}"},
         "warmer 'broken': its query failed"),
        ({"name": "broken", "query": "SELECT id FROM products", "key": "x:{sku}"},
         "warmer 'broken': its key/field/value name column 'sku'"),
        ({"name": "broken", "query": "SELECT id FROM products WHERE id > :low",
          "key": "x:{id}"}, "warmer 'broken': its query failed"),
        ({"name": "broken", "source": "tests.cache.sources:missing", "key": "x:{id}"},
         "warmer 'broken': cannot load source"),
        ({"name": "broken", "source": "tests.cache.sources:not_mappings", "key": "x:{id}"},
         "must yield mappings"),
        ({"name": "broken", "query": "SELECT id, name FROM products", "key": "x:{id}",
          "shape": "zset", "field": "{id}", "value": "name"}, "not a number"),
    ],
)  # fmt: skip
def test_a_bad_warmer_stops_before_writing_and_names_the_problem(
    make_settings: Callable[..., Settings], cache_pg_url: str, redis_url: str,
    redis_client: redis.Redis, warmer: dict, expected: str,
) -> None:  # fmt: skip
    base = {"database__url": cache_pg_url, "cache__url": redis_url}
    for mode in ("refresh", "versioned"):
        settings = _settings_with(make_settings, base, {**warmer, "mode": mode})
        cache = CacheWarmer(settings)
        try:
            with pytest.raises(ConfigError) as raised:
                cache.warm()
        finally:
            cache.close()
        assert expected in str(raised.value)
        assert [
            k for k in redis_client.scan_iter() if not k.endswith((b":claim", b"generation"))
        ] == []
        assert [t for t in threading.enumerate() if t.name == "steward-warmer-rows"] == []


@pytest.mark.parametrize(
    ("cache", "expected"),
    [
        ({"warmers": [{"name": "a", "query": "SELECT 1", "key": "x:{id!r}"}]},
         "must be a plain column name"),
        ({"warmers": [{"name": "a", "query": "SELECT 1", "source": "m:f", "key": "x"}]},
         "set exactly one of query or source"),
        ({"warmers": [{"name": "a", "query": "SELECT 1", "key": "x", "shape": "zset"}]},
         "needs field"),
        ({"warmers": [{"name": "a", "query": "SELECT 1", "key": "x", "colour": "red"}]},
         "unknown setting"),
        ({"invalidations": [{"events": ["product.*"], "keys": ["product:{product_id}"]}]},
         "unknown placeholder {product_id}"),
        ({"invalidations": [{"events": ["product.*"], "warmers": ["nope"]}]},
         "unknown warmer 'nope'"),
        ({"invalidations": [{"events": ["product.*"]}]}, "set keys, patterns or warmers"),
    ],
)  # fmt: skip
def test_invalid_cache_settings_name_the_key(cache: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(cache=cache)
    assert expected in str(raised.value)
    assert "cache." in str(raised.value)


def test_unknown_warmer_name_is_refused(pg_settings: Settings) -> None:
    with pytest.raises(ConfigError, match="unknown warmer 'nope'; configured warmers: product"):
        plan_units(pg_settings, ["nope"])


def test_cache_url_alone_still_configures_redis(redis_url: str) -> None:
    settings = load_settings(cache={"url": redis_url})
    assert settings.cache.url.get_secret_value() == redis_url
    assert [w.name for w in settings.cache.warmers][0] == "product-detail"
    assert KeySpace(redis.Redis.from_url(redis_url), "steward:").current_key("c") == (
        "steward:c:current"
    )


def test_plan_keeps_namespaces_whole_and_skips_disabled_warmers() -> None:
    warmers = [
        {"name": "a", "query": "SELECT 1", "key": "a:{id}"},
        {"name": "b", "query": "SELECT 1", "key": "b:{id}", "enabled": False},
        {"name": "c", "query": "SELECT 1", "key": "c", "mode": "versioned", "namespace": "ns"},
        {"name": "d", "query": "SELECT 1", "key": "d", "mode": "versioned", "namespace": "ns"},
        {"name": "e", "query": "SELECT 1", "key": "e", "mode": "versioned", "namespace": "ns",
         "enabled": False},
    ]  # fmt: skip
    settings = load_settings(cache={"warmers": warmers, "invalidations": []})

    every = [(u.namespace, u.mode, u.names) for u in plan_units(settings)]
    named = [(u.namespace, u.names) for u in plan_units(settings, ["d", "b"])]

    assert every == [("ns", "versioned", ["c", "d"]), ("a", "refresh", ["a"])]
    assert named == [("ns", ["c", "d"]), ("b", ["b"])]


def test_warmers_and_rules_from_steward_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings]
) -> None:
    make_settings()
    config = tmp_path / "steward.toml"
    config.write_text(
        """
[cache]
url = "redis://:S3cret@cache.internal:6379/2"

[[cache.warmers]]
name = "sessions"
query = "SELECT id, payload FROM sessions WHERE active = :active"
params = { active = true }
key = "session:{id}"
value = "payload"
ttl_seconds = 600

[[cache.invalidations]]
events = ["session.*"]
keys = ["session:{aggregate_id}"]
warmers = ["sessions"]
"""
    )
    monkeypatch.setenv("STEWARD_CONFIG", str(config))

    settings = load_settings()

    assert settings.cache.url.get_secret_value().endswith("cache.internal:6379/2")
    (warmer,) = settings.cache.warmers
    assert (warmer.name, warmer.params, warmer.mode, warmer.effective_namespace) == (
        "sessions", {"active": True}, "refresh", "session"
    )  # fmt: skip
    assert settings.cache.invalidations[0].warmers == ["sessions"]
    config.write_text(config.read_text().replace('warmers = ["sessions"]', 'warmers = ["x"]'))
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert "cache.invalidations" in str(raised.value) and "unknown warmer 'x'" in str(raised.value)
    assert "S3cret" not in str(raised.value)


def test_refresh_mode_rebuilds_hashes_and_sorted_sets(
    make_settings: Callable[..., Settings], cache_pg_url: str, redis_url: str,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    warmers = [
        {"name": "by-score", "source": "tests.cache.sources:numbered_rows",
         "params": {"rows": 70}, "key": "score:{score}", "shape": "hash", "field": "{id}",
         "ttl_seconds": 0},
        {"name": "ranking", "source": "tests.cache.sources:numbered_rows",
         "params": {"rows": 70}, "key": "ranking", "shape": "zset", "field": "{id}",
         "value": "score", "max_members": 5, "ttl_seconds": 300},
    ]  # fmt: skip
    settings = make_settings(
        database__url=cache_pg_url, cache__url=redis_url,
        cache__warmers=json.dumps(warmers), cache__invalidations="[]",
    )  # fmt: skip
    redis_client.hset("steward:score:3", "stale-field", "x")
    redis_client.zadd("steward:ranking", {"stale-member": 99})
    warmer = CacheWarmer(settings)
    try:
        reports = {w.warmer: w for u in warmer.warm() for w in u.warmers}
    finally:
        warmer.close()

    assert reports["by-score"].keys == 7 and reports["ranking"].keys == 1
    fields = redis_client.hgetall("steward:score:3")
    assert b"stale-field" not in fields and len(fields) == 10  # ids 3, 10, ..., 66
    assert json.loads(fields[b"10"]) == {"id": 10, "run": json.loads(fields[b"3"])["run"],
                                         "score": 3}  # fmt: skip
    assert redis_client.ttl("steward:score:3") == -1  # ttl_seconds = 0: no expiry
    top = redis_client.zrevrange("steward:ranking", 0, -1, withscores=True)
    assert len(top) == 5 and all(score == 6.0 for _, score in top)
    assert 0 < redis_client.ttl("steward:ranking") <= 330
