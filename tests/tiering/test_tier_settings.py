"""The [tiering] settings: defaults, overrides, and invalid values named with what to do."""

from __future__ import annotations

import pytest

from steward.errors import ConfigError
from steward.settings import DEFAULT_PRICES, load_settings


def test_defaults_follow_the_reference_design(make_settings) -> None:
    tiering = make_settings().tiering
    assert tiering.archive_prefix == "archive/"
    assert [(t.days, t.storage_class) for t in tiering.effective_transitions()] == [
        (31, "STANDARD_IA"),
        (181, "GLACIER"),
    ]
    assert tiering.deep_archive is False
    assert tiering.min_object_bytes == 128 * 1024
    assert tiering.effective_transitions(True)[-1].storage_class == "DEEP_ARCHIVE"
    assert tiering.prices == {
        "STANDARD": 0.023,
        "STANDARD_IA": 0.0125,
        "GLACIER_IR": 0.004,
        "GLACIER": 0.0036,
        "DEEP_ARCHIVE": 0.00099,
    }


def test_environment_overrides_one_price_and_keeps_the_others(make_settings) -> None:
    settings = make_settings(tiering__prices__standard_ia="0.01", tiering__deep_archive="true")
    assert settings.tiering.prices == {**DEFAULT_PRICES, "STANDARD_IA": 0.01}
    assert [t.days for t in settings.tiering.effective_transitions()] == [31, 181, 366]


def test_toml_configures_custom_transitions(make_settings, tmp_path, monkeypatch) -> None:
    config = tmp_path / "steward.toml"
    config.write_text(
        "[tiering]\n"
        'archive_prefix = "cold/"\n'
        'transitions = [{days = 45, storage_class = "standard_ia"}, '
        '{days = 120, storage_class = "GLACIER"}]\n'
    )
    make_settings()
    monkeypatch.setenv("STEWARD_CONFIG", str(config))
    tiering = load_settings().tiering
    assert tiering.archive_prefix == "cold/"
    assert [(t.days, t.storage_class) for t in tiering.transitions] == [
        (45, "STANDARD_IA"),
        (120, "GLACIER"),
    ]


@pytest.mark.parametrize(
    ("tiering", "expected"),
    [
        (
            {
                "transitions": [
                    {"days": 31, "storage_class": "STANDARD_IA"},
                    {"days": 50, "storage_class": "GLACIER"},
                ]
            },
            r"tiering\.transitions\[1\] \(GLACIER at day 50\): only 19 days after STANDARD_IA "
            r"at day 31, but STANDARD_IA has a minimum storage duration of 30 days; "
            r"set days >= 61",
        ),
        (
            {
                "transitions": [
                    {"days": 200, "storage_class": "GLACIER"},
                    {"days": 100, "storage_class": "STANDARD_IA"},
                ]
            },
            r"tiering\.transitions\[1\] \(STANDARD_IA at day 100\): days must increase",
        ),
        (
            {
                "transitions": [
                    {"days": 60, "storage_class": "GLACIER"},
                    {"days": 200, "storage_class": "STANDARD_IA"},
                ]
            },
            r"tiering\.transitions\[1\] \(STANDARD_IA at day 200\): classes must get colder",
        ),
        (
            {"transitions": [{"days": 31, "storage_class": "ONEZONE_IA"}]},
            r"tiering\.transitions\.0\.storage_class = 'ONEZONE_IA'.*accepted storage "
            r"classes: STANDARD_IA, GLACIER, DEEP_ARCHIVE",
        ),
        (
            {"transitions": [{"days": 10, "storage_class": "STANDARD_IA"}]},
            r"S3 does not move objects to STANDARD_IA before day 30",
        ),
        (
            {"transitions": [{"days": 400, "storage_class": "DEEP_ARCHIVE"}]},
            r"DEEP_ARCHIVE is set with tiering\.deep_archive = true",
        ),
        (
            {"deep_archive": True, "deep_archive_days": 200},
            r"tiering\.deep_archive_days = 200.*only 19 days after GLACIER at day 181.*"
            r"minimum storage duration of 90 days; set days >= 271",
        ),
        ({"prices": {"GLACIER": -1}}, r"tiering\.prices.*must be >= 0"),
        ({"prices": {"COLDEST": 0.001}}, r"tiering\.prices.*unknown storage class 'COLDEST'"),
        ({"archive_prefix": "/archive"}, r"tiering\.archive_prefix.*ending in '/'"),
    ],
)
def test_invalid_tiering_settings_are_rejected_naming_the_setting(
    make_settings, tiering, expected
) -> None:
    make_settings()
    with pytest.raises(ConfigError, match=expected):
        load_settings(tiering=tiering)


def test_deep_archive_days_are_only_checked_when_deep_archive_is_on(make_settings) -> None:
    make_settings()
    settings = load_settings(tiering={"deep_archive_days": 200})
    assert settings.tiering.deep_archive_days == 200
