"""Strict settings: every unknown key is refused (files and STEWARD_* variables), naming the key
and the closest valid one, never its value; bad values are shown masked; URLs of every scheme are
masked whatever their password holds."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from pydantic import BaseModel

from steward.errors import ConfigError
from steward.settings import (
    Settings,
    get_settings,
    load_settings,
    mask_text,
    mask_url,
    masked_settings,
)
from steward.settings.diagnostics import _model_in

AWKWARD_PASSWORDS = [
    "sl/ash",
    "ha#sh",
    "que?ry",
    "at@sign",
    "co:lon",
    "per%cent",
    "pl+us&amp=eq",
    "sp ace",
    "br[ack]et",
    "q'uo\"te",
    "back\\slash",
    "all/#?@:%",
]
SCHEMES = [
    "postgresql://app:{pw}@db.internal:5432/shop",
    "postgresql+psycopg://app:{pw}@db.internal:5432/shop?sslmode=require",
    "postgres://app:{pw}@db.internal/shop",
    "mongodb://app:{pw}@m1:27017,m2:27017/shop?replicaSet=rs0&authSource=admin",
    "mongodb+srv://app:{pw}@cluster0.example.net/shop",
    "redis://:{pw}@cache:6379/0",
    "redis://default:{pw}@cache:6379/0",
    "rediss://app:{pw}@cache:6380/1",
    "s3://key:{pw}@bucket/prefix",
    "https://user:{pw}@minio.internal:9000",
]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for key in list(os.environ):
        if key.startswith("STEWARD_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def _load_toml(env: pytest.MonkeyPatch, tmp_path: Path, text: str) -> str:
    path = tmp_path / "steward.toml"
    path.write_text(text, encoding="utf-8")
    env.setenv("STEWARD_CONFIG", str(path))
    with pytest.raises(ConfigError) as raised:
        load_settings()
    return str(raised.value)


def _models(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[type[BaseModel]]:
    seen.add(model)
    for field in model.model_fields.values():
        inner = _model_in(field.annotation)
        if inner is not None and inner not in seen:
            _models(inner, seen)
    return seen


def test_every_settings_model_refuses_unknown_keys() -> None:
    models = _models(Settings, set())

    assert len(models) > 10  # the walk reaches policies, transitions, warmers...
    lax = sorted(m.__name__ for m in models if m.model_config.get("extra") != "forbid")
    assert lax == []


@pytest.mark.parametrize(
    ("toml", "key", "guess"),
    [
        ("[archive]\nbatchsize = 10\n", "archive.batchsize", "batch_size"),
        (
            "[[archive.policies]]\ntable = 'audit_log'\nrule = 'older_than'\n"
            "column = 'occurred_at'\nwher = {action = 'login'}\n",
            "archive.policies.0.wher",
            "where",
        ),
        (
            "[[archive.policies]]\ntable = 'users'\nenable = false\n",
            "archive.policies.0.enable",
            "enabled",
        ),
        ("[outbox]\nbatch_sise = 10\n", "outbox.batch_sise", "batch_size"),
        ("[tiering]\ntransition = []\n", "tiering.transition", "transitions"),
        (
            "[[tiering.transitions]]\ndays = 30\nstorage_clas = 'GLACIER'\n",
            "tiering.transitions.0.storage_clas",
            "storage_class",
        ),
        ("[databse]\nurl = 'sqlite:///x.db'\n", "databse", "database"),
    ],
)
def test_unknown_keys_in_the_file_name_the_closest_valid_key(
    env: pytest.MonkeyPatch, tmp_path: Path, toml: str, key: str, guess: str
) -> None:
    message = _load_toml(env, tmp_path, toml)

    assert f"{key}: unknown setting" in message
    assert f"did you mean {guess!r}?" in message


@pytest.mark.parametrize("key", ["uri", "dsn", "passwd", "url_"])
def test_misspelt_secret_key_never_echoes_its_value(
    env: pytest.MonkeyPatch, tmp_path: Path, key: str
) -> None:
    secret = "Hunter2-sl/ash#?"
    message = _load_toml(
        env, tmp_path, f"[database]\n{key} = 'postgresql://app:{secret}@db/shop'\n"
    )

    assert f"database.{key}: unknown setting (value not shown)" in message
    assert secret not in message and "Hunter2" not in message


def test_policy_where_of_the_wrong_type_names_the_key(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    message = _load_toml(
        env, tmp_path, "[[archive.policies]]\ntable = 'users'\nwhere = {status = [1, 2]}\n"
    )

    assert "archive.policies.0.where.status" in message
    assert "Traceback" not in message


@pytest.mark.parametrize(
    ("variable", "guess"),
    [
        ("STEWARD_DATABSE__URL", "STEWARD_DATABASE__URL"),
        ("STEWARD_OUTBX__BATCH_SIZE", "STEWARD_OUTBOX__BATCH_SIZE"),
        ("STEWARD_ARCHIV", "STEWARD_ARCHIVE"),
        ("steward_cach__url", "STEWARD_CACHE__URL"),
        ("STEWARD_CACH__NOT_A_KEY", "STEWARD_CACHE"),
    ],
)
def test_misspelt_environment_section_is_refused(
    env: pytest.MonkeyPatch, variable: str, guess: str
) -> None:
    env.setenv(variable, "redis://:Env-Secret/1@cache:6379/0")

    with pytest.raises(ConfigError) as raised:
        load_settings()

    message = str(raised.value)
    assert f"{variable}: not a Steward setting; did you mean {guess!r}?" in message
    assert "Env-Secret" not in message


def test_misspelt_environment_key_inside_a_section_is_refused(env: pytest.MonkeyPatch) -> None:
    env.setenv("STEWARD_DATABASE__URI", "postgresql://app:Env-Secret/1@db/shop")

    with pytest.raises(ConfigError) as raised:
        load_settings()

    assert "database.uri: unknown setting" in str(raised.value)
    assert "did you mean 'url'?" in str(raised.value)
    assert "Env-Secret" not in str(raised.value)


def test_steward_config_and_test_variables_are_not_settings(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env.setenv("STEWARD_TEST_PG", "postgresql://postgres@127.0.0.1/postgres")
    (tmp_path / "steward.toml").write_text("source_name = 'shop'\n")
    env.setenv("STEWARD_CONFIG", str(tmp_path / "steward.toml"))

    assert load_settings().source_name == "shop"


@pytest.mark.parametrize(
    ("variable", "url", "shown"),
    [
        ("STEWARD_DATABASE__URL", "postgresql+psycopg://app:{pw}@db:abc/shop", "port 'abc'"),
        ("STEWARD_DATABASE__URL", "postgresql://app:{pw}@db:99999/shop", "port '99999'"),
        ("STEWARD_CACHE__URL", "redis://:{pw}@cache:six/0", "port 'six'"),
        ("STEWARD_DOCUMENTS__URL", "mongodb://app:{pw}@m1:27017,m2:x/shop", "port 'x'"),
    ],
)
@pytest.mark.parametrize("password", ["sl/ash:99", "at@sign", "all/#?@:%"])
def test_bad_port_is_named_and_password_masked(
    env: pytest.MonkeyPatch, variable: str, url: str, shown: str, password: str
) -> None:
    env.setenv(variable, url.format(pw=password))

    with pytest.raises(ConfigError) as raised:
        load_settings()

    message = str(raised.value)
    assert shown in message and ":***@" in message
    assert password not in message


@pytest.mark.parametrize("password", AWKWARD_PASSWORDS)
@pytest.mark.parametrize("template", SCHEMES)
def test_mask_url_hides_awkward_passwords_of_every_scheme(template: str, password: str) -> None:
    for written in (password, quote(password, safe="")):
        masked = mask_url(template.format(pw=written))

        assert written not in masked
        assert ":***@" in masked
        host = template.split("@", 1)[1]
        assert masked.endswith(host.replace("authSource=admin", "authSource=admin"))


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////abs/path/steward.db",
        "sqlite:///relative.db",
        "file:///srv/objects",
        "s3://bucket/prefix",
        "s3://bucket/key@2024",
        "redis://cache:6379/0",
        "postgresql+psycopg://app@db:5432/shop",
    ],
)
def test_mask_url_leaves_urls_without_password_unchanged(url: str) -> None:
    assert mask_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://db/shop?password=qs-secret&sslmode=require",
        "mongodb://m1/shop?authMechanismProperties=AWS_SESSION_TOKEN:qs-secret",
        "https://minio.internal/bucket?X-Amz-Signature=qs-secret&X-Amz-Credential=qs-secret",
    ],
)
def test_mask_url_hides_secret_query_values(url: str) -> None:
    masked = mask_url(url)
    assert "qs-secret" not in masked and "=***" in masked


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:1/bucket?list-type=2&prefix=archive%2F&max-keys=1000&encoding-type=url",
        "https://s3.example/bucket?key-marker=a%2Fb&continuation-token=1Abc&upload-id-marker=x",
    ],
)
def test_mask_url_shows_query_values_that_are_not_secrets(url: str) -> None:
    assert mask_url(url) == url
    assert mask_text(f'Could not connect to the endpoint URL: "{url}"') == (
        f'Could not connect to the endpoint URL: "{url}"'
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://s3.example/b/k?AWSAccessKeyId=qs-secret&Expires=1&Signature=qs-secret",
        "https://maps.example/api?key=qs-secret&api_key=qs-secret&X-Amz-Security-Token=qs-secret",
    ],
)
def test_mask_url_hides_presigned_and_api_key_values(url: str) -> None:
    masked = mask_url(url)
    assert "qs-secret" not in masked and "=***" in masked


@pytest.mark.parametrize("password", AWKWARD_PASSWORDS)
def test_masked_settings_hide_awkward_passwords(env: pytest.MonkeyPatch, password: str) -> None:
    encoded = quote(password, safe="")
    env.setenv("STEWARD_DATABASE__URL", f"postgresql+psycopg://app:{password}@db:5432/shop")
    env.setenv("STEWARD_CACHE__URL", f"redis://:{encoded}@cache:6379/0")
    env.setenv("STEWARD_DOCUMENTS__URL", f"mongodb+srv://app:{password}@cluster0/shop")

    shown: dict[str, Any] = masked_settings(load_settings())

    text = repr(shown)
    assert password not in text and encoded not in text
    assert shown["database"]["url"] == "postgresql+psycopg://app:***@db:5432/shop"
    assert shown["cache"]["url"] == "redis://:***@cache:6379/0"


@pytest.mark.parametrize("password", [p for p in AWKWARD_PASSWORDS if "%" not in p])
def test_raw_awkward_passwords_reach_the_drivers_intact(
    env: pytest.MonkeyPatch, password: str
) -> None:
    from pymongo.uri_parser import parse_uri
    from redis.connection import parse_url
    from sqlalchemy.engine import make_url

    env.setenv("STEWARD_DATABASE__URL", f"postgresql+psycopg://app:{password}@db:5432/shop")
    env.setenv("STEWARD_CACHE__URL", f"redis://app:{password}@cache:6379/0")
    env.setenv("STEWARD_DOCUMENTS__URL", f"mongodb://app:{password}@m1:27017/shop")

    settings = load_settings()

    database = make_url(settings.database_url)
    assert (database.password, database.host, database.database) == (password, "db", "shop")
    assert parse_url(settings.cache.url.get_secret_value())["password"] == password
    assert parse_uri(settings.documents.url.get_secret_value())["password"] == password
