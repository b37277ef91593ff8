"""Each capability connects with its own ``<section>.database_url`` when set (database.url is a
role that may only connect), and the URLs are masked wherever settings are shown."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from steward.archive import open_context
from steward.backup import open_backup_context
from steward.cache import CacheWarmer
from steward.errors import PermissionDenied
from steward.migrations import MigrationRunner
from steward.outbox import OutboxRelay
from steward.settings import FLOW_SECTIONS, masked_settings
from steward.storage import SqlClient
from steward.validation.readonly import read_only
from tests.fixtures.roles import RolesDatabase


def _current_user(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(sa.text("SELECT current_user")).scalar_one())


def test_each_capability_connects_as_its_own_role(
    roles_db: RolesDatabase, make_settings: Callable[..., Any], redis_url: str
) -> None:
    settings = make_settings(
        cache__url=redis_url,
        **roles_db.env(archive="archiver", validation="validator", cache="warmer",
                       outbox="relay", backup="backup", migrations="migrator"),
    )  # fmt: skip
    roles = roles_db.roles

    context = open_context(settings)
    warmer = CacheWarmer(settings)
    relay = OutboxRelay.from_settings(settings)
    runner = MigrationRunner(settings)
    try:
        assert _current_user(context.sql.engine) == roles["archiver"]
        assert _current_user(warmer.sql.engine) == roles["warmer"]
        assert _current_user(relay.sql.engine) == roles["relay"]
        assert _current_user(runner.sql.engine) == roles["migrator"]
        with read_only(settings) as conn:
            assert conn.execute(sa.text("SELECT current_user")).scalar_one() == roles["validator"]
        backup = SqlClient(open_backup_context(settings).settings)
        assert _current_user(backup.engine) == roles["backup"]
        backup.dispose()
    finally:
        context.sql.dispose()
        warmer.close()
        relay.close()
        runner.dispose()


def test_without_a_flow_url_every_capability_uses_database_url(
    roles_db: RolesDatabase, make_settings: Callable[..., Any]
) -> None:
    settings = make_settings(database__url=roles_db.urls["validator"])
    for section in FLOW_SECTIONS:
        assert settings.for_flow(section).database_url == settings.database_url


def test_the_warmers_role_cannot_archive(
    roles_db: RolesDatabase, make_settings: Callable[..., Any]
) -> None:
    """A compromised warmer worker's credentials cannot delete: the archiver's can."""
    settings = make_settings(**roles_db.env(archive="warmer"))
    context = open_context(settings)
    try:
        with pytest.raises(PermissionDenied) as refused, context.sql.begin() as conn:
            conn.execute(sa.text("DELETE FROM users WHERE false"))
    finally:
        context.sql.dispose()
    assert str(refused.value).startswith(
        f"role {roles_db.roles['warmer']} lacks DELETE on table users;"
    )


def test_flow_urls_are_masked_in_config_show(
    roles_db: RolesDatabase, make_settings: Callable[..., Any]
) -> None:
    settings = make_settings(**roles_db.env(archive="archiver", cache="warmer"))
    shown = masked_settings(settings)
    password = sa.make_url(roles_db.urls["archiver"]).password
    assert password and password not in repr(shown)
    assert shown["archive"]["database_url"].startswith(
        f"postgresql+psycopg://{roles_db.roles['archiver']}:***@"
    )
    assert shown["validation"]["database_url"] == ""
