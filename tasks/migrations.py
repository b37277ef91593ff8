"""Migration tasks: render or apply the SQL (Alembic) migrations, apply the MongoDB ones.

Each task runs a whole batch of revisions through the runners in :mod:`steward.migrations.sql` and
:mod:`steward.migrations.mongo`, which hold the migration lock for the batch and refuse edited
migrations. Only a held lock (:class:`~steward.errors.MigrationLocked`, transient) is retried.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from steward.migrations import (
    MigrationPlan,
    MigrationResult,
    MigrationRunner,
    MongoMigration,
    MongoMigrationRunner,
    resolve_mongo,
)
from steward.settings import get_settings
from steward.storage import DocumentsClient
from tasks.retry_policy import retry_transient

__all__ = ["apply_mongo_migrations", "apply_sql_migrations", "render_migration_sql"]


def _summarize(result: MigrationResult) -> dict[str, Any]:
    return {
        "direction": result.plan.direction,
        "from_revision": result.plan.from_revision,
        "to_revision": result.current,
        "applied": [
            {"revision": rev.revision, "filename": rev.filename, "summary": rev.summary}
            for rev in result.applied
        ],
    }


def _describe_plan(plan: MigrationPlan) -> str:
    steps = ", ".join(f"{rev.revision} ({rev.summary})" for rev in plan.steps) or "nothing"
    return f"{plan.direction} {plan.from_revision or 'base'} -> {plan.alembic_target}: {steps}"


@task(name="render-migration-sql")
def render_migration_sql(target: str, direction: str) -> dict[str, Any]:
    """Render the SQL of the migrations from the current revision to ``target``; apply nothing.

    Args:
        target: ``head``, ``base``, a revision id or ``-N``/``+N`` relative to the current one.
        direction: ``upgrade`` or ``downgrade``.

    Returns:
        ``from_revision``, ``to_revision``, ``planned`` (revision ids in run order) and ``sql``.
    """
    runner = MigrationRunner(get_settings())
    try:
        plan, sql = runner.render_sql(target, direction)
    finally:
        runner.dispose()
    get_run_logger().info("dry run would %s", _describe_plan(plan))
    return {
        "from_revision": plan.from_revision,
        "to_revision": plan.to_revision,
        "planned": [rev.revision for rev in plan.steps],
        "sql": sql,
    }


@task(
    name="apply-sql-migrations",
    retries=1,
    retry_delay_seconds=10,
    retry_condition_fn=retry_transient,
)
def apply_sql_migrations(target: str, direction: str, lock_timeout: float) -> dict[str, Any]:
    """Apply the SQL migrations up or down to ``target`` under the migration lock.

    Args:
        target: ``head``, ``base``, a revision id or ``-N``/``+N`` relative to the current one.
        direction: ``upgrade`` or ``downgrade``.
        lock_timeout: Seconds to wait for another runner's lock before giving up.

    Returns:
        ``direction``, ``from_revision``, ``to_revision`` and ``applied`` (one dict per revision).
    """
    logger = get_run_logger()
    runner = MigrationRunner(get_settings(), lock_timeout=lock_timeout)
    try:
        result = runner.migrate(
            target, direction, on_plan=lambda plan: logger.info("will %s", _describe_plan(plan))
        )
    finally:
        runner.dispose()
    logger.info("database now at revision %s", result.current or "base")
    return _summarize(result)


@task(
    name="apply-mongo-migrations",
    retries=1,
    retry_delay_seconds=10,
    retry_condition_fn=retry_transient,
)
def apply_mongo_migrations(
    target: str, direction: str, dry_run: bool, lock_timeout: float
) -> dict[str, Any]:
    """Apply (or, with ``dry_run``, only list) the MongoDB migrations up or down to ``target``.

    Args:
        target: ``head``, ``base``, a migration name or number, or ``-N`` (downgrade).
        direction: ``upgrade`` or ``downgrade``.
        dry_run: List what would run and change nothing.
        lock_timeout: Seconds to wait for another runner's lock document before giving up.

    Returns:
        ``direction``, ``planned`` and ``applied`` migration names, ``dry_run``.
    """
    logger = get_run_logger()

    def log_plan(steps: list[MongoMigration]) -> None:
        names = ", ".join(m.name for m in steps) or "nothing"
        logger.info("MongoDB: %s %s%s", direction, names, " (dry run)" if dry_run else "")

    settings = get_settings()
    location = resolve_mongo(settings)
    documents = DocumentsClient(settings)
    try:
        runner = MongoMigrationRunner(documents, location=location, lock_timeout=lock_timeout)
        result = runner.migrate(target, direction, dry_run=dry_run, on_plan=log_plan)
    finally:
        documents.close()
    return result.as_dict()
