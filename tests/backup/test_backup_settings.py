"""``[backup]`` settings: defaults, every bad value refused with its key path, secrets masked."""

from __future__ import annotations

import pytest

from steward.errors import ConfigError
from steward.settings import load_settings, masked_settings

IDENTITY = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"


def test_defaults_follow_the_reference_design(make_settings):
    backup = make_settings().backup
    assert backup.sources == ["database", "documents"]
    assert backup.sql_retention.keep_daily == 30 and backup.documents_retention.keep_daily == 7
    assert backup.age_recipients == [] and backup.prefix == "backups"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"backup__sources": '["databse"]'}, "backup.sources.0"),
        ({"backup__age_recipients": '["age1tooshort"]'}, "not an age X25519 public key"),
        ({"backup__sql_retention__keep_daily": "-1"}, "backup.sql_retention.keep_daily"),
        ({"backup__restore_jobs": "0"}, "backup.restore_jobs"),
        ({"backup__storage_class": "GLACIER"}, "backup.storage_class"),
        ({"backup__verify_url": "mysql://x"}, "backup.verify_url"),
        ({"backup__scratch_prefix": "Bad-Prefix"}, "backup.scratch_prefix"),
        ({"backup__keep_forever": "1"}, "backup.keep_forever"),
    ],
)
def test_bad_backup_settings_name_the_key(make_settings, overrides, expected):
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
        make_settings(**overrides)


def test_a_bad_identity_is_refused_without_echoing_it(make_settings):
    with pytest.raises(ConfigError, match="backup.age_identity") as refused:
        make_settings(backup__age_identity="not-a-key-but-secret-123")
    assert "secret-123" not in str(refused.value)


def test_identity_and_verify_url_are_masked_in_config_show(make_settings):
    settings = make_settings(
        backup__age_identity=IDENTITY, backup__verify_url="postgresql://u:pw123@h/db"
    )
    shown = masked_settings(settings)["backup"]
    assert shown["age_identity"] == "***"
    assert "pw123" not in str(shown["verify_url"])
    assert settings.backup.age_identity.get_secret_value() == IDENTITY
    assert load_settings().backup.age_identity.get_secret_value() == IDENTITY
