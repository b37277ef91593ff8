"""Which migrations are the application's: ``[migrations]`` resolved to folders on disk.

- ``alembic`` names the application's Alembic script folder or its ``alembic.ini``;
  ``"example"`` is Steward's example schema (the demo and the tests). Left empty it means the
  example schema only on the embedded SQLite database (Steward's own file, which no
  application owns); on a configured database ``migrate`` refuses until it is set.
- ``mongo`` names the folder of the application's MongoDB migrations, with the same rule.

:func:`refuse_existing_schema` is the second guard: whatever is configured, an upgrade from
base over a database that already has tables but no Alembic version table is refused (it
would replay a schema's history over that schema, or lay the example schema over an
application's tables).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from alembic.config import Config
from sqlalchemy.engine import Connection

from steward.errors import ConfigError
from steward.settings import EXAMPLE_MIGRATIONS, Settings, mask_url

__all__ = [
    "DEFAULT_MONGO_LOCATION",
    "DEFAULT_SCRIPT_LOCATION",
    "VERSION_TABLE",
    "AlembicSource",
    "refuse_existing_schema",
    "resolve_alembic",
    "resolve_mongo",
]

DEFAULT_SCRIPT_LOCATION = Path(__file__).resolve().parents[2] / "migrations"
DEFAULT_MONGO_LOCATION = DEFAULT_SCRIPT_LOCATION / "mongo"
VERSION_TABLE = "alembic_version"
# Tables Steward itself may create in an application's database: not the application's schema.
_STEWARD_TABLE_PREFIX = "steward_"
_NOT_CONFIGURED = (
    'no migrations configured for {where}: set [migrations] {key} = "path/to/{what}" in '
    'steward.toml (or STEWARD_MIGRATIONS__{env}), or "example" for Steward\'s example schema. '
    "Nothing was applied."
)


@dataclass(frozen=True)
class AlembicSource:
    """An Alembic script folder and the main options its ``alembic.ini`` sets (if any)."""

    script_location: Path
    options: dict[str, str] = field(default_factory=dict)
    is_example: bool = False

    @property
    def label(self) -> str:
        return "Steward's example schema" if self.is_example else str(self.script_location)


def resolve_alembic(settings: Settings) -> AlembicSource:
    """The Alembic migrations ``migrate`` runs for these settings (ConfigError if none)."""
    value = settings.migrations.alembic
    if value == EXAMPLE_MIGRATIONS or (not value and settings.uses_embedded_database):
        return AlembicSource(DEFAULT_SCRIPT_LOCATION, is_example=True)
    if not value:
        raise ConfigError(
            _NOT_CONFIGURED.format(
                where=mask_url(settings.database_url),
                key="alembic",
                what="alembic (the folder holding env.py) or path/to/alembic.ini",
                env="ALEMBIC",
            )
        )
    path = Path(value).expanduser().resolve()
    if path.is_file():
        return _from_ini(path)
    if not (path / "env.py").is_file():
        raise ConfigError(
            f"migrations.alembic = {value!r}: {path} is neither an alembic.ini nor an Alembic "
            "folder holding env.py; point it at one of them"
        )
    return AlembicSource(path, {"prepend_sys_path": str(path.parent)})


def _from_ini(path: Path) -> AlembicSource:
    """Read the ``[alembic]`` section (``%(here)s`` expanded) and find the script folder."""
    try:
        options = Config(file_=str(path)).get_section("alembic") or {}
    except Exception as exc:  # configparser errors of a malformed file
        raise ConfigError(f"migrations.alembic = {str(path)!r}: cannot read it: {exc}") from None
    location = options.pop("script_location", "")
    if not location:
        raise ConfigError(
            f"migrations.alembic = {str(path)!r}: its [alembic] section sets no script_location"
        )
    options.pop("sqlalchemy.url", None)  # Steward connects to database.url, never to this
    folder = Path(location)
    folder = (folder if folder.is_absolute() else path.parent / folder).resolve()
    if not (folder / "env.py").is_file():
        raise ConfigError(
            f"migrations.alembic = {str(path)!r}: its script_location {folder} holds no env.py"
        )
    options.setdefault("prepend_sys_path", str(path.parent))
    return AlembicSource(folder, options)


def resolve_mongo(settings: Settings) -> Path:
    """The MongoDB migrations folder ``migrate`` runs for these settings (ConfigError if none)."""
    value = settings.migrations.mongo
    if value == EXAMPLE_MIGRATIONS or (not value and settings.uses_embedded_database):
        return DEFAULT_MONGO_LOCATION
    if not value:
        raise ConfigError(
            _NOT_CONFIGURED.format(
                where="MongoDB", key="mongo", what="mongo-migrations", env="MONGO"
            )
        )
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError(f"migrations.mongo = {value!r}: {path} is not a folder")
    return path


def refuse_existing_schema(conn: Connection, source: AlembicSource, where: str) -> None:
    """ConfigError when the database has tables but no Alembic version table."""
    inspector = sa.inspect(conn)
    names = inspector.get_table_names()
    if VERSION_TABLE in names:
        return
    tables = sorted(n for n in names if not n.startswith(_STEWARD_TABLE_PREFIX))
    if not tables:
        return
    shown = ", ".join(tables[:3]) + (f" and {len(tables) - 3} more" if len(tables) > 3 else "")
    if source.is_example:
        todo = (
            "set [migrations] alembic to the application's own Alembic folder or alembic.ini "
            "(Steward never lays its example schema over an application's tables)"
        )
    else:
        todo = (
            f"if the schema is already at a revision of {source.script_location}, record it "
            "first (alembic stamp REVISION), then run again"
        )
    raise ConfigError(
        f"{where} has {len(tables)} table(s) ({shown}) but no {VERSION_TABLE} table, so "
        f"{source.label} would be applied over an existing schema; {todo}. Nothing was applied."
    )
