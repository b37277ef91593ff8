"""The optional outbox: is there one, and ``steward outbox install`` to add it.

An application that never used an outbox has no outbox table. When ``outbox.table`` is left
at its default and that table does not exist, the outbox is *not configured*: the relay, the
cleanup and the nightly report say so and skip it (:func:`outbox_missing_reason`). A table
named explicitly in ``outbox.table`` that does not exist is a configuration error instead.

:func:`outbox_table_definition` is the table of the contract (:mod:`steward.outbox.table`)
with its constraints and indexes, the same as the example schema's; :func:`install_outbox`
creates it on PostgreSQL or SQLite, :func:`outbox_ddl` renders its DDL for a dialect and
:func:`alembic_operations` the code to paste into the application's own migrations.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from steward.errors import ConfigError
from steward.outbox.table import ID, JSON, TS
from steward.settings import Settings

__all__ = [
    "INSTALLABLE_DIALECTS",
    "alembic_operations",
    "install_outbox",
    "outbox_ddl",
    "outbox_missing_reason",
    "outbox_table_definition",
]

INSTALLABLE_DIALECTS = ("postgresql", "sqlite")
_DIALECTS = {"postgresql": postgresql.dialect(), "sqlite": sqlite.dialect()}


def outbox_missing_reason(settings: Settings, conn: Connection) -> str | None:
    """Why there is no outbox to work on (not configured), or None when there is one.

    Raises ConfigError when ``outbox.table`` was set explicitly and that table is missing.
    """
    name = settings.outbox.table
    if sa.inspect(conn).has_table(name):
        return None
    if "table" in settings.outbox.model_fields_set:
        raise ConfigError(
            f"outbox.table = {name!r}: no such table in the database; create it "
            "(`steward outbox install` or your migrations) or remove the setting"
        )
    return (
        f"not configured: the database has no {name!r} table and outbox.table is not set "
        "(`steward outbox install` adds one)"
    )


def outbox_table_definition(name: str = "outbox") -> sa.Table:
    """The outbox table of the contract, with its constraints and indexes."""
    table = sa.Table(
        name,
        sa.MetaData(),
        sa.Column("seq", ID, primary_key=True, autoincrement=True),
        sa.Column("id", sa.Uuid(), nullable=False, unique=True),
        sa.Column("aggregate_type", sa.String(100), nullable=False),
        sa.Column("aggregate_id", sa.String(200), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("headers", JSON, nullable=True),
        sa.Column("status", sa.String(20), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("available_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("published_at", TS, nullable=True),
        sa.CheckConstraint("status IN ('pending', 'published', 'dead')", name=f"ck_{name}_status"),
    )
    sa.Index(f"ix_{name}_status_available", table.c.status, table.c.available_at)
    sa.Index(f"ix_{name}_aggregate", table.c.aggregate_type, table.c.aggregate_id, table.c.seq)
    sa.Index(f"ix_{name}_published_at", table.c.published_at)
    return table


def install_outbox(conn: Connection, name: str) -> bool:
    """Create the outbox table and its indexes; False when a table of that name exists."""
    dialect = conn.dialect.name
    if dialect not in INSTALLABLE_DIALECTS:
        raise ConfigError(
            f"steward outbox install supports {', '.join(INSTALLABLE_DIALECTS)}, not {dialect}; "
            "use --print and adapt the DDL"
        )
    if sa.inspect(conn).has_table(name):
        return False
    outbox_table_definition(name).create(conn)
    return True


def outbox_ddl(dialect: str, name: str) -> str:
    """``CREATE TABLE`` and ``CREATE INDEX`` statements of the outbox for ``dialect``."""
    if dialect not in _DIALECTS:
        raise ConfigError(f"dialect {dialect!r}: accepted: {', '.join(_DIALECTS)}")
    table = outbox_table_definition(name)
    target = _DIALECTS[dialect]
    statements = [str(sa.schema.CreateTable(table).compile(dialect=target)).strip()]
    statements += [
        str(sa.schema.CreateIndex(index).compile(dialect=target)).strip()
        for index in sorted(table.indexes, key=lambda i: str(i.name))
    ]
    text = ";\n\n".join(statements) + ";\n"
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def alembic_operations(name: str) -> str:
    """Alembic ``upgrade`` / ``downgrade`` bodies creating the outbox, to paste into a revision."""
    # `name` passed outbox.table's identifier pattern; repr() makes it a Python literal.
    return _ALEMBIC_TEMPLATE.format(
        name=repr(name),
        check=repr(f"ck_{name}_status"),
        ix_status=repr(f"ix_{name}_status_available"),
        ix_aggregate=repr(f"ix_{name}_aggregate"),
        ix_published=repr(f"ix_{name}_published_at"),
    )


_ALEMBIC_TEMPLATE = """\
# Steward's outbox table: paste into a new revision of your migrations.
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        {name},
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("id", sa.Uuid(), nullable=False, unique=True),
        sa.Column("aggregate_type", sa.String(100), nullable=False),
        sa.Column("aggregate_id", sa.String(200), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("headers", JSON, nullable=True),
        sa.Column("status", sa.String(20), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("available_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("published_at", TS, nullable=True),
        sa.CheckConstraint("status IN ('pending', 'published', 'dead')", name={check}),
    )
    op.create_index({ix_status}, {name}, ["status", "available_at"])
    op.create_index({ix_aggregate}, {name}, ["aggregate_type", "aggregate_id", "seq"])
    op.create_index({ix_published}, {name}, ["published_at"])


def downgrade() -> None:
    op.drop_table({name})
"""
