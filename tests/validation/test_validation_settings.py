"""The [validation] settings: documented defaults, unknown keys and bad values refused."""

from __future__ import annotations

import pytest

from steward.errors import ConfigError
from steward.settings import ValidationSettings, load_settings
from steward.settings.validation import SHIPPED_EXPECTATIONS


def test_defaults_point_at_the_shipped_suites() -> None:
    settings = ValidationSettings()
    assert settings.expectations_dir == SHIPPED_EXPECTATIONS
    assert (SHIPPED_EXPECTATIONS / "index.json").is_file()
    assert settings.docs_prefix == "docs/validation/" and settings.scrub_objects == 5
    assert all(field.description for field in ValidationSettings.model_fields.values())


def test_unknown_key_and_bad_values_name_the_key(make_settings) -> None:
    make_settings()
    with pytest.raises(ConfigError, match=r"validation\.sample_keyz"):
        load_settings(validation={"sample_keyz": 3})
    with pytest.raises(ConfigError, match=r"validation\.docs_prefix"):
        load_settings(validation={"docs_prefix": "/abs/"})
    with pytest.raises(ConfigError, match=r"validation\.scrub_objects"):
        load_settings(validation={"scrub_objects": -1})
