"""Settings: defaults, steward.toml, environment overrides, clear errors, masked secrets."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from steward.errors import ConfigError
from steward.settings import get_settings, load_settings, masked_settings


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No STEWARD_* variables and an empty working directory (no stray steward.toml)."""
    for key in list(os.environ):
        if key.startswith("STEWARD_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_embedded_sqlite_and_folder_under_home(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()

    home = Path(".steward").resolve()
    assert settings.home == Path(".steward")
    assert settings.database_url == f"sqlite:///{home / 'steward.db'}"
    assert settings.objects_url == (home / "objects").as_uri()
    assert settings.uses_embedded_cache
    assert settings.database.pool_size == 5


def test_toml_from_steward_config_then_env_overrides_it(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = write_toml(
        tmp_path / "team.toml",
        """
home = "/srv/steward"
[database]
pool_size = 7
[objects]
url = "s3://team-archive/steward"
region = "eu-west-1"
""",
    )
    env.setenv("STEWARD_CONFIG", str(config))
    env.setenv("STEWARD_OBJECTS__REGION", "eu-central-1")

    settings = get_settings()

    assert settings.home == Path("/srv/steward")
    assert settings.database.pool_size == 7
    assert settings.objects.url == "s3://team-archive/steward"
    assert settings.objects.region == "eu-central-1"


def test_steward_toml_in_the_working_directory_is_read(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_toml(tmp_path / "steward.toml", "[cache]\nkey_prefix = 'shop:'\n")

    assert load_settings().cache.key_prefix == "shop:"


def test_nested_environment_variables(env: pytest.MonkeyPatch) -> None:
    env.setenv("STEWARD_DATABASE__POOL_SIZE", "12")
    env.setenv("STEWARD_OBJECTS__LIFECYCLE_SUPPORTED", "false")

    settings = load_settings()

    assert settings.database.pool_size == 12
    assert settings.objects.lifecycle_supported is False


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "STEWARD_DATABASE__POOL_SIZE",
            "-1",
            ["database.pool_size", "'-1'", "greater than or equal to 1"],
        ),
        ("STEWARD_OBJECTS__URL", "ftp://x", ["objects.url", "'ftp://x'", "s3://bucket/prefix"]),
        (
            "STEWARD_OBJECTS__SERVER_SIDE_ENCRYPTION",
            "des",
            ["objects.server_side_encryption", "'des'", "'AES256'"],
        ),
        (
            "STEWARD_DATABASE__URL",
            "mysql://app:hunter2@db/app",
            ["database.url", "'mysql://app:***@db/app'", "postgresql+psycopg://"],
        ),
        ("STEWARD_DATABASE__BOGUS", "1", ["database.bogus", "unknown setting"]),
    ],
)
def test_invalid_environment_values_name_key_value_and_what_is_accepted(
    env: pytest.MonkeyPatch, variable: str, value: str, expected: list[str]
) -> None:
    env.setenv(variable, value)

    with pytest.raises(ConfigError) as raised:
        load_settings()

    message = str(raised.value)
    for fragment in expected:
        assert fragment in message
    assert variable in message or "unknown setting" in message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            "[database]\npoolsize = 3\n",
            ["database.poolsize", "unknown setting", "did you mean 'pool_size'?"],
        ),
        ("colour = 'blue'\n", ["colour", "unknown setting (value not shown)"]),
        ("[objects]\nmultipart_chunk_mb = 1\n", ["objects.multipart_chunk_mb", "1", ">= 5"]),
    ],
)
def test_invalid_toml_names_key_value_and_what_is_accepted(
    env: pytest.MonkeyPatch, tmp_path: Path, toml: str, expected: list[str]
) -> None:
    env.setenv("STEWARD_CONFIG", str(write_toml(tmp_path / "bad.toml", toml)))

    with pytest.raises(ConfigError) as raised:
        load_settings()

    message = str(raised.value).replace("greater than or equal to ", ">= ")
    for fragment in expected:
        assert fragment in message


def test_steward_config_pointing_at_a_missing_file(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("STEWARD_CONFIG", str(tmp_path / "nowhere.toml"))

    with pytest.raises(ConfigError, match=r"STEWARD_CONFIG=.*nowhere\.toml.*no such file"):
        load_settings()


def test_malformed_toml_is_a_config_error(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("STEWARD_CONFIG", str(write_toml(tmp_path / "broken.toml", "[database\n")))

    with pytest.raises(ConfigError, match="could not read the Steward configuration file"):
        load_settings()


def test_masked_settings_never_show_passwords_or_keys(env: pytest.MonkeyPatch) -> None:
    secrets = ["pg-Pa55word", "mongo-pw", "redis-pw", "AKIAEXAMPLEKEY123", "s3-secret/xyz+1"]
    env.setenv("STEWARD_DATABASE__URL", "postgresql+psycopg://app:pg-Pa55word@db:5432/shop")
    env.setenv("STEWARD_DOCUMENTS__URL", "mongodb://app:mongo-pw@mongo:27017/?authSource=admin")
    env.setenv("STEWARD_CACHE__URL", "redis://:redis-pw@cache:6379/0")
    env.setenv("STEWARD_OBJECTS__ACCESS_KEY_ID", "AKIAEXAMPLEKEY123")
    env.setenv("STEWARD_OBJECTS__SECRET_ACCESS_KEY", "s3-secret/xyz+1")

    shown = masked_settings(load_settings())

    text = json.dumps(shown, default=str)
    assert not [secret for secret in secrets if secret in text]
    assert shown["database"]["url"] == "postgresql+psycopg://app:***@db:5432/shop"
    assert shown["cache"]["url"] == "redis://:***@cache:6379/0"
    assert shown["objects"]["secret_access_key"] == "***"
    assert shown["objects"]["access_key_id"] == "***"


def test_masked_settings_hide_secrets_in_query_strings(env: pytest.MonkeyPatch) -> None:
    env.setenv("STEWARD_DATABASE__URL", "postgresql+psycopg://db/shop?password=qs-secret")

    assert "qs-secret" not in json.dumps(masked_settings(load_settings()), default=str)
