"""A small application Alembic project, written by tests as an application team would have it.

Its ``env.py`` is Alembic's standard template: it reads ``sqlalchemy.url``, opens its own
engine and knows nothing of Steward. Revisions: 0001 creates ``widgets``, 0002 adds a column.
"""

from __future__ import annotations

from pathlib import Path

ENV_PY = """
from logging.config import fileConfig

from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)
target_metadata = None


def run_migrations_offline():
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    connectable = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
"""

REVISION = '''"""{doc}"""
import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = {down}


def upgrade():
    {up}


def downgrade():
    {down_op}
'''

REVISIONS = [
    dict(
        rev="a1",
        down="None",
        doc="widgets: the application's first table",
        up='op.create_table("widgets", sa.Column("widget_id", sa.Integer, primary_key=True), '
        'sa.Column("name", sa.Text, nullable=False))',
        down_op='op.drop_table("widgets")',
    ),
    dict(
        rev="a2",
        down='"a1"',
        doc="widgets.colour",
        up='op.add_column("widgets", sa.Column("colour", sa.Text))',
        down_op='op.drop_column("widgets", "colour")',
    ),
]


def write_app_alembic(root: Path, *, ini: bool = False) -> Path:
    """Write the project under ``root``; return its folder, or its alembic.ini with ``ini``."""
    folder = root / "db"
    (folder / "versions").mkdir(parents=True)
    (folder / "env.py").write_text(ENV_PY)
    (folder / "script.py.mako").write_text("")
    for number, spec in enumerate(REVISIONS, start=1):
        (folder / "versions" / f"{number:04d}_{spec['rev']}.py").write_text(REVISION.format(**spec))
    if not ini:
        return folder
    path = root / "alembic.ini"
    path.write_text(
        "[alembic]\nscript_location = %(here)s/db\n"
        "sqlalchemy.url = postgresql://nobody@127.0.0.1:1/not-this-one\n\n"
        "[loggers]\nkeys = root\n[handlers]\nkeys = console\n[formatters]\nkeys = generic\n"
        "[logger_root]\nlevel = WARNING\nhandlers = console\n"
        "[handler_console]\nclass = StreamHandler\nargs = (sys.stderr,)\nformatter = generic\n"
        "[formatter_generic]\nformat = %%(message)s\n"
    )
    return path
