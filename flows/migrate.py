"""Flow ``migrate``: apply the schema and data migrations (Alembic), and the MongoDB ones.

One runner at a time (advisory lock on PostgreSQL, file lock on SQLite, lock document on
MongoDB), applied migrations are checksummed and an edited one is refused, and a dry run writes
the SQL to the log and to a markdown artifact without applying anything. A table artifact lists
what was applied.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import BaseModel, ConfigDict, Field, model_validator

from steward.settings import get_settings, mask_url
from tasks.migrations import apply_mongo_migrations, apply_sql_migrations, render_migration_sql


class MigrateParams(BaseModel):
    """Parameters of the ``migrate`` flow."""

    model_config = ConfigDict(extra="forbid")

    target: str = Field(
        default="head",
        description="head, base, a revision id, or -N/+N relative to the current revision. "
        "A downgrade without an explicit target goes one revision back (-1).",
    )
    direction: Literal["upgrade", "downgrade"] = Field(default="upgrade")
    dry_run: bool = Field(default=False, description="Write the SQL to the log; apply nothing.")
    include_mongo: bool | None = Field(
        default=None,
        description="Also run migrations/mongo; None = when documents.url is set.",
    )
    mongo_target: str | None = Field(
        default=None,
        description="MongoDB target (head, base, a name or number, -N). None = head when "
        "upgrading; when downgrading MongoDB is left as it is unless a target is given.",
    )
    lock_timeout_seconds: float = Field(
        default=60.0, gt=0, le=3600, description="Seconds to wait for another runner's lock."
    )

    @model_validator(mode="after")
    def _downgrade_target(self) -> MigrateParams:
        if self.direction == "downgrade":
            if "target" not in self.model_fields_set:
                self.target = "-1"
            elif self.target in ("head", "heads"):
                raise ValueError(
                    "target: a downgrade needs a target below the current revision "
                    "(-1, base or a revision id)"
                )
        return self


def _include_mongo(params: MigrateParams) -> bool:
    if params.include_mongo is not None:
        return params.include_mongo
    return bool(get_settings().documents.url.get_secret_value())


def _mongo_target(params: MigrateParams) -> str | None:
    if params.mongo_target is not None:
        return params.mongo_target
    return "head" if params.direction == "upgrade" else None


def _publish_sql(sql: dict[str, Any]) -> None:
    create_markdown_artifact(
        key="migrate-dry-run-sql",
        markdown=(
            f"# Migration dry run: {sql['from_revision'] or 'base'} -> "
            f"{sql['to_revision'] or 'base'}\n\nNothing was applied. Planned: "
            f"{', '.join(sql['planned']) or 'nothing'}.\n\n```sql\n{sql['sql']}\n```\n"
        ),
        description="SQL the migrate flow would run",
    )


def _publish_applied(applied: dict[str, Any], mongo: dict[str, Any] | None) -> None:
    rows = [
        {"store": "sql", "migration": step["revision"], "file": step["filename"]}
        for step in applied["applied"]
    ]
    if mongo is not None:
        rows += [
            {"store": "mongodb", "migration": name, "file": f"mongo/{name}.py"}
            for name in mongo["applied"]
        ]
    where = f"database now at revision {applied['to_revision'] or 'base'}"
    create_table_artifact(
        key="migrate-applied",
        table=[{**row, "direction": applied["direction"]} for row in rows],
        description=f"Applied migrations; {where}" if rows else f"Nothing to apply; {where}",
    )


@flow(name="migrate", description="Apply schema and data migrations (SQL and MongoDB).")
def migrate(params: MigrateParams = MigrateParams()) -> dict[str, Any]:
    """Migrate the database (and MongoDB) to the target; returns what was (or would be) done."""
    logger = get_run_logger()
    settings = get_settings()
    logger.info(
        "migrate: %s to %s on %s%s",
        params.direction,
        params.target,
        mask_url(settings.database_url),
        " (dry run: nothing will be applied)" if params.dry_run else "",
    )
    mongo_target = _mongo_target(params) if _include_mongo(params) else None
    if params.dry_run:
        sql = render_migration_sql(params.target, params.direction)
        logger.info("dry run SQL (not applied):\n%s", sql["sql"])
        _publish_sql(sql)
        summary = {
            "direction": params.direction,
            "from_revision": sql["from_revision"],
            "to_revision": sql["to_revision"],
            "planned": sql["planned"],
            "applied": [],
            "sql": sql["sql"],
        }
    else:
        summary = apply_sql_migrations(params.target, params.direction, params.lock_timeout_seconds)
    mongo = None
    if mongo_target is not None:
        mongo = apply_mongo_migrations(
            mongo_target, params.direction, params.dry_run, params.lock_timeout_seconds
        )
    if not params.dry_run:
        _publish_applied(summary, mongo)
    return {**summary, "dry_run": params.dry_run, "mongo": mongo}
