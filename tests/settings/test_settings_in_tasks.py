"""Settings can be handed to Prefect tasks: Prefect walks task arguments field by field."""

from __future__ import annotations

from prefect.utilities.collections import visit_collection

from steward.settings import load_settings


def test_prefect_can_walk_the_default_settings() -> None:
    settings = load_settings()
    seen: list[object] = []
    visit_collection(settings, visit_fn=lambda value: seen.append(value), return_data=False)
    assert settings.cache.invalidations, "the example invalidation rules are the default"
    assert any(value == ["product:{aggregate_id}"] for value in seen)


def test_invalidation_rules_keep_their_toml_name_keys() -> None:
    rule = load_settings().cache.invalidations[0]
    assert rule.delete_keys == ["product:{aggregate_id}"]
    assert rule.model_dump()["keys"] == ["product:{aggregate_id}"]
