"""Alembic environment for the example e-commerce schema.

Steward's migration runner passes an open connection (holding the migration lock) in
``config.attributes["connection"]``; plain ``alembic`` commands build an engine from Steward's
settings. Offline mode (``--sql``, Steward's dry run) renders SQL for the configured dialect.
The runner adds its checksum callbacks (``on_version_apply``) to what this file configures
(:mod:`steward.migrations.environment`), as it does for an application's own ``env.py``.
"""

from __future__ import annotations

from alembic import context

from steward.settings import get_settings

config = context.config


def run_offline() -> None:
    url = config.attributes.get("url") or get_settings().database_url
    context.configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_with(connection)
        return
    from steward.storage import create_sql_engine

    engine = create_sql_engine(get_settings())
    with engine.connect() as conn:
        _run_with(conn)
    engine.dispose()


def _run_with(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        render_as_batch=connection.dialect.name == "sqlite",
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
