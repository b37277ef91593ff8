"""``prefect-secret:NAME`` in a secret setting: resolved before the setting's own checks, from
steward.toml or the environment; left alone in settings that are not secrets; a resolver's
refusal is a ConfigError naming the setting. (The Prefect resolver itself is tested against a
real server in tests/deployments/test_secret_blocks.py.)"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from steward.errors import ConfigError
from steward.settings import get_settings, load_settings, masked_settings, references

BLOCKS = {"steward-db-url": "postgresql+psycopg://app:hunter2@db.internal:5432/app"}


def _from_blocks(name: str) -> str:
    if name not in BLOCKS:
        raise LookupError(f"no Secret block named {name!r}")
    return BLOCKS[name]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for key in list(os.environ):
        if key.startswith("STEWARD_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    saved = list(references._resolvers)
    references.register_secret_resolver(_from_blocks)
    get_settings.cache_clear()
    yield monkeypatch
    references._resolvers[:] = saved
    get_settings.cache_clear()


def test_a_reference_in_steward_toml_is_resolved_before_the_url_is_checked(env) -> None:
    Path("steward.toml").write_text('[database]\nurl = "prefect-secret:steward-db-url"\n')

    settings = load_settings()

    assert settings.database_url == BLOCKS["steward-db-url"]
    assert "hunter2" not in str(masked_settings(settings))


def test_a_reference_in_the_environment_is_resolved(env) -> None:
    env.setenv("STEWARD_DATABASE__URL", "prefect-secret:steward-db-url")

    assert load_settings().database.url.get_secret_value() == BLOCKS["steward-db-url"]


def test_a_missing_block_names_the_setting(env) -> None:
    env.setenv("STEWARD_CACHE__URL", "prefect-secret:no-such-block")

    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert str(raised.value) == (
        "cache.url = 'prefect-secret:no-such-block': no Secret block named 'no-such-block'"
    )


def test_a_setting_that_is_not_a_secret_is_not_resolved(env) -> None:
    env.setenv("STEWARD_SOURCE_NAME", "prefect-secret:steward-db-url")

    with pytest.raises(ConfigError, match="source_name"):  # checked as given, not replaced
        load_settings()
