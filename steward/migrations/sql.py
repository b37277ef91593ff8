"""Alembic migration runner: one runner at a time, applied revisions checksummed, SQL dry run.

- **Lock.** A run holds a lock from before it reads the current revision until every revision
  is applied and recorded (:mod:`steward.migrations.lock`: a PostgreSQL advisory lock or a file
  lock next to the SQLite file). A second runner waits up to ``lock_timeout`` seconds, then
  gets :class:`~steward.errors.MigrationLocked`.
- **Checksums.** ``steward_migrations`` keeps ``(revision, filename, sha256, applied_at)`` for
  every applied revision (in Steward's own schema, created by ``steward install``: a run
  without it stops with :class:`~steward.errors.NotInstalled`), written by Alembic's
  ``on_version_apply`` hook inside the revision's own transaction (a downgrade deletes the
  row the same way). Before doing anything a run
  compares the recorded SHA-256 of every applied revision with its file and refuses with
  :class:`~steward.errors.MigrationChecksumMismatch`, naming the file, when one was edited.
  Revisions applied by plain ``alembic upgrade`` are adopted (recorded as they are now).
- **Dry run.** :meth:`MigrationRunner.render_sql` renders the SQL of the range from the
  database's current revision to the target in offline mode for the configured dialect and
  applies nothing (it does not even need Steward's tables).

History must be linear (one head): targets are ``head``, ``base``, a revision id (or a unique
prefix) or a step count relative to the current revision (``-1``, ``+2``).
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection

from steward.errors import ConfigError, MigrationChecksumMismatch, MigrationError
from steward.migrations.environment import alembic_config, run_alembic
from steward.migrations.lock import migration_lock
from steward.migrations.sources import (
    DEFAULT_SCRIPT_LOCATION,
    AlembicSource,
    refuse_existing_schema,
    resolve_alembic,
)
from steward.settings import Settings
from steward.storage import SqlClient
from steward.storage.steward_schema import SCHEMA_TOKEN, missing_tables, require_installed

__all__ = [
    "DEFAULT_SCRIPT_LOCATION",
    "AppliedRecord",
    "MigrationPlan",
    "MigrationResult",
    "MigrationRunner",
    "MigrationStatus",
    "Revision",
    "alembic_config",
    "checksums_table",
    "file_sha256",
    "metadata",
]

Direction = Literal["upgrade", "downgrade"]
_RELATIVE = re.compile(r"[+-]\d+")

metadata = sa.MetaData(schema=SCHEMA_TOKEN)
checksums_table = sa.Table(
    "steward_migrations",
    metadata,
    sa.Column("revision", sa.String(64), primary_key=True),
    sa.Column("filename", sa.String(500), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)


def file_sha256(path: Path) -> str:
    """SHA-256 of a migration file (line endings normalised, so a CRLF checkout still matches)."""
    return hashlib.sha256(path.read_bytes().replace(b"\r\n", b"\n")).hexdigest()


@dataclass(frozen=True)
class Revision:
    """One revision file: id, path, path relative to the script location, docstring headline."""

    revision: str
    path: Path
    filename: str
    summary: str

    @property
    def sha256(self) -> str:
        return file_sha256(self.path)


@dataclass(frozen=True)
class MigrationPlan:
    """The revisions a run will apply (upgrade) or revert (downgrade), in execution order."""

    direction: Direction
    from_revision: str | None
    to_revision: str | None
    steps: list[Revision]

    @property
    def alembic_target(self) -> str:
        return self.to_revision or "base"


@dataclass(frozen=True)
class MigrationResult:
    """A finished run: its plan, the revisions applied (or reverted), the revision now."""

    plan: MigrationPlan
    applied: list[Revision]
    current: str | None


@dataclass(frozen=True)
class AppliedRecord:
    """An applied revision and its checksum state: ok, edited, unrecorded."""

    revision: str
    filename: str
    sha256: str | None
    applied_at: datetime | None
    state: str


@dataclass(frozen=True)
class MigrationStatus:
    current: str | None
    head: str | None
    applied: list[AppliedRecord]
    pending: list[Revision]


class MigrationRunner:
    """Runs the application's Alembic migrations (``[migrations] alembic``) on the database.

    ``script_location`` (a folder) or ``source`` overrides the settings; with neither, the
    source comes from :func:`~steward.migrations.sources.resolve_alembic`.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        url: str | None = None,
        script_location: Path | str | None = None,
        source: AlembicSource | None = None,
        lock_timeout: float = 60.0,
        poll_interval: float = 0.2,
    ) -> None:
        if source is None and script_location is not None:
            folder = Path(script_location).resolve()
            source = AlembicSource(folder, is_example=folder == DEFAULT_SCRIPT_LOCATION)
        self.source = source or resolve_alembic(settings)
        self.sql = SqlClient(settings.for_flow("migrations"), url=url)  # the schema owner
        self.script_location = self.source.script_location
        self.lock_timeout = lock_timeout
        self.poll_interval = poll_interval
        try:
            self.script = ScriptDirectory.from_config(self._config())
        except CommandError as exc:
            raise ConfigError(f"migrations folder {self.script_location}: {exc}") from None
        self.revisions = self._linear_history()

    def dispose(self) -> None:
        self.sql.dispose()

    def _config(self, *, hide_password: bool = True, **attributes: Any) -> Any:
        url = self.sql.engine.url.render_as_string(hide_password=hide_password)
        return alembic_config(
            self.script_location, options=self.source.options, url=url, **attributes
        )

    # History and targets ----------------------------------------------------------------
    def _linear_history(self) -> list[Revision]:
        heads = self.script.get_heads()
        if len(heads) > 1:
            raise MigrationError(
                f"{self.script_location} has several heads ({', '.join(heads)}); "
                "merge them (alembic merge heads) before migrating"
            )
        return [self._describe(s) for s in reversed(list(self.script.walk_revisions()))]

    def _describe(self, script: Any) -> Revision:
        path = Path(script.path).resolve()
        doc = (script.doc or "").strip().splitlines()
        return Revision(
            revision=script.revision,
            path=path,
            filename=path.relative_to(self.script_location).as_posix(),
            summary=doc[0] if doc else "",
        )

    @property
    def head(self) -> str | None:
        return self.revisions[-1].revision if self.revisions else None

    def _index(self, revision: str | None) -> int:
        if revision is None:
            return -1
        for index, rev in enumerate(self.revisions):
            if rev.revision == revision:
                return index
        raise MigrationError(
            f"the database is at revision {revision!r}, which no file in "
            f"{self.script_location / 'versions'} defines; restore that revision's file"
        )

    def _target_index(self, target: str, current: int) -> int:
        last = len(self.revisions) - 1
        if target in ("head", "heads"):
            return last
        if target == "base":
            return -1
        if _RELATIVE.fullmatch(target):
            index = current + int(target)
            if not -1 <= index <= last:
                raise MigrationError(
                    f"target {target!r} leaves the history: the database is at step "
                    f"{current + 1} of {last + 1}"
                )
            return index
        found = [i for i, rev in enumerate(self.revisions) if rev.revision.startswith(target)]
        if len(found) != 1:
            known = ", ".join(r.revision for r in self.revisions) or "none"
            what = "matches several revisions" if found else "is not a known revision"
            raise MigrationError(
                f"target {target!r} {what}; use head, base, -N/+N or one of: {known}"
            )
        return found[0]

    def plan(self, current: str | None, target: str, direction: str) -> MigrationPlan:
        """The steps from ``current`` to ``target``; refuses a target on the wrong side."""
        if direction not in ("upgrade", "downgrade"):
            raise ConfigError(f"direction = {direction!r}: accepted: upgrade, downgrade")
        start = self._index(current)
        end = self._target_index(target, start)
        if (end < start) if direction == "upgrade" else (end > start):
            other = "downgrade" if direction == "upgrade" else "upgrade"
            raise MigrationError(
                f"target {target!r} is on the wrong side of the current revision "
                f"{current or 'base'} for an {direction}; {other} instead"
            )
        if direction == "upgrade":
            steps = self.revisions[start + 1 : end + 1]
        else:
            steps = self.revisions[end + 1 : start + 1][::-1]
        to_revision = self.revisions[end].revision if end >= 0 else None
        return MigrationPlan(direction, current, to_revision, steps)  # type: ignore[arg-type]

    # Database state -----------------------------------------------------------------------
    def _current(self, conn: Connection) -> str | None:
        heads = MigrationContext.configure(conn).get_current_heads()
        if len(heads) > 1:
            raise MigrationError(f"the database has several current revisions {heads}; merge them")
        return heads[0] if heads else None

    def _recorded(self, conn: Connection) -> dict[str, Any]:
        if missing_tables(conn, [checksums_table]):
            return {}
        return {row.revision: row for row in conn.execute(sa.select(checksums_table))}

    def _verify(self, conn: Connection, current: str | None) -> None:
        """Refuse when an applied revision's file differs from what was applied."""
        recorded = self._recorded(conn)
        for rev in self.revisions[: self._index(current) + 1]:
            row = recorded.get(rev.revision)
            if row is not None and row.sha256 != rev.sha256:
                raise MigrationChecksumMismatch(
                    f"migration file {rev.path} (revision {rev.revision}) was edited after it "
                    f"was applied on {row.applied_at:%Y-%m-%d %H:%M} (sha256 {row.sha256[:12]} "
                    f"then, {rev.sha256[:12]} now); restore the applied version of the file and "
                    "put the change in a new revision. Nothing was applied."
                )

    def _sync_records(self, conn: Connection, current: str | None) -> None:
        """Adopt unrecorded applied revisions, drop stale rows."""
        recorded = self._recorded(conn)
        applied = self.revisions[: self._index(current) + 1]
        for rev in applied:
            if rev.revision not in recorded:
                conn.execute(checksums_table.insert().values(**_record_values(rev)))
        stale = set(recorded) - {rev.revision for rev in applied}
        if stale:
            conn.execute(checksums_table.delete().where(checksums_table.c.revision.in_(stale)))
        conn.commit()

    def _record_step(self, applied: list[Revision], *, ctx: Any, step: Any, **_: Any) -> None:
        # Runs inside the revision's own transaction: the row and the version move together.
        rev = self.revisions[self._index(step.up_revision_id)]
        # An application's env.py connects by itself: point it at Steward's schema too.
        translate = self.sql.engine.get_execution_options()["schema_translate_map"]
        conn = ctx.connection.execution_options(schema_translate_map=translate)
        conn.execute(checksums_table.delete().where(checksums_table.c.revision == rev.revision))
        if step.is_upgrade:
            conn.execute(checksums_table.insert().values(**_record_values(rev)))
        applied.append(rev)

    # Public operations ----------------------------------------------------------------------
    def status(self) -> MigrationStatus:
        """Current revision, applied revisions with their checksum state, pending revisions."""
        with self.sql.connect() as conn:
            current = self._current(conn)
            recorded = self._recorded(conn)
            conn.rollback()
        done = self._index(current) + 1
        applied = [_record_state(rev, recorded.get(rev.revision)) for rev in self.revisions[:done]]
        return MigrationStatus(current, self.head, applied, self.revisions[done:])

    def migrate(
        self,
        target: str = "head",
        direction: str = "upgrade",
        *,
        on_plan: Callable[[MigrationPlan], None] | None = None,
    ) -> MigrationResult:
        """Apply the plan to ``target`` under the lock; ``on_plan`` sees it before any change."""
        with self.lock(), self.sql.connect() as conn:
            require_installed(conn, metadata.sorted_tables)
            current = self._current(conn)
            self._refuse_existing_schema(conn, current, direction)
            self._verify(conn, current)
            plan = self.plan(current, target, direction)
            self._sync_records(conn, current)
            if on_plan is not None:
                on_plan(plan)
            applied: list[Revision] = []
            if plan.steps:
                self._run_alembic(conn, plan, applied)
            return MigrationResult(plan, applied, self._current(conn))

    def upgrade(self, target: str = "head", **kwargs: Any) -> MigrationResult:
        return self.migrate(target, "upgrade", **kwargs)

    def downgrade(self, target: str = "-1", **kwargs: Any) -> MigrationResult:
        return self.migrate(target, "downgrade", **kwargs)

    def _refuse_existing_schema(
        self, conn: Connection, current: str | None, direction: str
    ) -> None:
        if current is None and direction == "upgrade":
            refuse_existing_schema(conn, self.source, self.sql.display_url)

    def _run_alembic(self, conn: Connection, plan: MigrationPlan, applied: list[Revision]) -> None:
        # The example's env.py runs on `conn`; an application's env.py opens its own
        # connection from sqlalchemy.url. Either way the hook writes on the revision's own.
        hook = partial(self._record_step, applied)
        cfg = self._config(hide_password=False, connection=conn)
        conn.commit()
        try:
            run_alembic(cfg, plan.direction, plan.alembic_target, hooks=[hook])
        except (sa.exc.SQLAlchemyError, CommandError) as exc:
            failed = plan.steps[len(applied)] if len(applied) < len(plan.steps) else None
            where = f"revision {failed.revision} ({failed.path})" if failed else "alembic"
            last = applied[-1].revision if applied else plan.from_revision
            raise MigrationError(
                f"{plan.direction} failed in {where}: {str(exc).splitlines()[0]}; every revision "
                f"commits on its own, so the database stays at revision {last or 'base'}"
            ) from exc

    def render_sql(
        self, target: str = "head", direction: str = "upgrade"
    ) -> tuple[MigrationPlan, str]:
        """Dry run: the SQL from the current revision to ``target``; nothing is applied."""
        with self.sql.connect() as conn:
            current = self._current(conn)
            self._refuse_existing_schema(conn, current, direction)
            self._verify(conn, current)
            conn.rollback()
        plan = self.plan(current, target, direction)
        header = (
            f"-- Steward dry run: {plan.direction} {current or 'base'} -> "
            f"{plan.alembic_target} on {self.sql.engine.dialect.name}\n"
        )
        if not plan.steps:
            return plan, header + "-- nothing to do: the database is already there\n"
        buffer = io.StringIO()
        cfg = self._config(output_buffer=buffer)
        cfg.attributes["url"] = cfg.get_main_option("sqlalchemy.url")  # the example's env.py
        run_alembic(
            cfg, plan.direction, plan.alembic_target, sql=True, starting_rev=current or "base"
        )
        return plan, header + buffer.getvalue()

    # Locking ----------------------------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the migration lock (advisory lock on PostgreSQL, file lock on SQLite)."""
        with migration_lock(self.sql, self.lock_timeout, self.poll_interval):
            yield


def _record_values(rev: Revision) -> dict[str, Any]:
    return {
        "revision": rev.revision,
        "filename": rev.filename,
        "sha256": rev.sha256,
        "applied_at": datetime.now(UTC),
    }


def _record_state(rev: Revision, row: Any) -> AppliedRecord:
    if row is None:
        return AppliedRecord(rev.revision, rev.filename, None, None, "unrecorded")
    state = "ok" if row.sha256 == rev.sha256 else "edited"
    return AppliedRecord(rev.revision, rev.filename, row.sha256, row.applied_at, state)
