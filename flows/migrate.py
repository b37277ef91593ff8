"""Flow ``migrate``: apply the schema and data migrations (Alembic), and the MongoDB ones.

One runner at a time (advisory lock on PostgreSQL, file lock on SQLite, lock document on
MongoDB), applied migrations are checksummed and an edited one is refused, and a dry run writes
the SQL to the log and to a markdown artifact without applying anything. A table artifact lists
what was applied.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import Field

from steward.errors import ConfigError
from steward.settings import get_settings, mask_url
from tasks.migrations import apply_mongo_migrations, apply_sql_migrations, render_migration_sql


def _sql_target(target: str | None, direction: str, confirm_downgrade_to_base: bool) -> str:
    """The SQL target in force: head when upgrading, one revision back (-1) when downgrading."""
    if direction == "upgrade":
        return target or "head"
    if target in ("head", "heads"):
        raise ConfigError(
            f"target={target!r}: a downgrade needs a target below the current revision "
            "(-1, a revision id, or base); to go up use direction=upgrade"
        )
    if target == "base" and not confirm_downgrade_to_base:
        raise ConfigError(
            "target='base' with direction=downgrade drops every table the configured migrations "
            "created, with their data; set confirm_downgrade_to_base=true to do it"
        )
    return target or "-1"


def _include_mongo(include_mongo: bool | None) -> bool:
    if include_mongo is not None:
        return include_mongo
    return bool(get_settings().documents.url.get_secret_value())


def _mongo_target(mongo_target: str | None, direction: str) -> str | None:
    if mongo_target is not None:
        return mongo_target
    return "head" if direction == "upgrade" else None


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
def migrate(
    target: str | None = None,
    direction: Literal["upgrade", "downgrade"] = "upgrade",
    dry_run: bool = False,
    include_mongo: bool | None = None,
    mongo_target: str | None = None,
    lock_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0,
    confirm_downgrade_to_base: bool = False,
) -> dict[str, Any]:
    """Migrate the database (and MongoDB) to the target; returns what was (or would be) done.

    Args:
        target: head, base, a revision id, or -N/+N relative to the current revision. Empty:
            head when upgrading, -1 (one revision back) when downgrading.
        direction: upgrade or downgrade.
        dry_run: Write the SQL to the log and to an artifact; apply nothing.
        include_mongo: Also run migrations/mongo. Empty: when documents.url is set.
        mongo_target: MongoDB target (head, base, a name or number, -N). Empty: head when
            upgrading; a downgrade leaves MongoDB as it is unless a target is given.
        lock_timeout_seconds: Seconds to wait for another runner's migration lock (0-3600).
        confirm_downgrade_to_base: Must be true for a downgrade to base, which drops every
            table the migrations created, with its data.
    """
    logger = get_run_logger()
    sql_target = _sql_target(target, direction, confirm_downgrade_to_base or dry_run)
    logger.info(
        "migrate: %s to %s on %s%s",
        direction,
        sql_target,
        mask_url(get_settings().database_url),
        " (dry run: nothing will be applied)" if dry_run else "",
    )
    mongo_to = _mongo_target(mongo_target, direction) if _include_mongo(include_mongo) else None
    if dry_run:
        summary = _dry_run(sql_target, direction)
    else:
        summary = apply_sql_migrations(sql_target, direction, lock_timeout_seconds)
    mongo = None
    if mongo_to is not None:
        mongo = apply_mongo_migrations(mongo_to, direction, dry_run, lock_timeout_seconds)
    _publish_summary(summary, mongo, dry_run)
    if not dry_run:
        _publish_applied(summary, mongo)
    return {**summary, "dry_run": dry_run, "mongo": mongo}


def _dry_run(target: str, direction: str) -> dict[str, Any]:
    sql = render_migration_sql(target, direction)
    get_run_logger().info("dry run SQL (not applied):\n%s", sql["sql"])
    _publish_sql(sql)
    return {
        "direction": direction,
        "from_revision": sql["from_revision"],
        "to_revision": sql["to_revision"],
        "planned": sql["planned"],
        "applied": [],
        "sql": sql["sql"],
    }


def _publish_summary(summary: dict[str, Any], mongo: dict[str, Any] | None, dry_run: bool) -> None:
    before, after = summary["from_revision"] or "base", summary["to_revision"] or "base"
    if dry_run:
        planned = len(summary["planned"])
        headline = f"Dry run: {planned} SQL migration(s) would run ({before} -> {after})."
        why = (
            "Nothing was applied: this was a dry run."
            if planned
            else (f"Nothing to do: the database is already at {before}.")
        )
    else:
        applied = len(summary["applied"])
        headline = (
            f"{summary['direction']}: {applied} SQL migration(s) applied ({before} -> {after})."
        )
        why = "" if applied else f"0 applied: the database was already at {after}."
    lines = [f"# Migrate: {summary['direction']}", "", headline, "", why]
    if mongo is None:
        lines.append("MongoDB: not migrated (documents.url is empty or include_mongo=false).")
    else:
        done = mongo.get("planned" if dry_run else "applied") or []
        lines.append(f"MongoDB: {len(done)} migration(s) {'planned' if dry_run else 'applied'}.")
    create_markdown_artifact(
        key="migrate-summary",
        markdown="\n".join(lines) + "\n",
        description=f"Migrate {summary['direction']}: {before} -> {after}",
    )
