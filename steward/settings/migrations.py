"""Settings of ``steward migrate``: which Alembic and MongoDB migrations are the application's.

The example schema ships with Steward for the demo and the tests. An application's database
gets the application's own migrations: nothing creates the example schema in it by surprise.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from steward.settings.stores import FlowDatabaseUrl, flow_database_url

__all__ = ["EXAMPLE_MIGRATIONS", "MigrationsSettings"]

EXAMPLE_MIGRATIONS = "example"


class MigrationsSettings(BaseModel):
    """The migrations ``steward migrate`` runs (``[migrations]`` in steward.toml)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error

    database_url: FlowDatabaseUrl = flow_database_url("migrate (the schema owner)")
    alembic: str = Field(
        default="",
        description="The application's Alembic migrations: its script folder (env.py and "
        "versions/) or its alembic.ini (relative paths from the working directory). "
        '"example" = Steward\'s example schema (the demo and the tests). Empty: the example '
        "schema on the embedded SQLite database only; on a configured database.url, migrate "
        "refuses until this is set.",
    )
    mongo: str = Field(
        default="",
        description="Folder of the application's MongoDB migrations (NNNN_name.py modules "
        'with up(db) / down(db)). "example" = the example\'s. Empty: as for alembic (the '
        "example's on the embedded database only).",
    )

    @field_validator("alembic", "mongo")
    @classmethod
    def _strip(cls, value: str) -> str:
        if value != value.strip():
            raise ValueError("accepted: a path or 'example' without surrounding spaces")
        return value
