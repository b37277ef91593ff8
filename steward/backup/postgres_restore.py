"""PostgreSQL restore and verification: ``pg_restore`` fed from the object store.

Verification restores into a scratch database (created with a generated name, always dropped)
and compares fingerprints with the manifest. An encrypted custom-format dump is *streamed* into
``pg_restore``'s standard input, so its plain (decrypted) bytes never touch a disk; a damaged
object fails the verification through its SHA-256 (checked at the end of the stream). Other
dumps (unencrypted: the store holds their plain bytes already; the directory format) are copied
to the spool under the Steward home (mode 0600), checksums checked, and restored with ``--jobs``.

Restoring into a target is all or nothing:

- into an existing database (empty, or non-empty with ``replace``): one transaction
  (``pg_restore --single-transaction``), so a failure part-way rolls back and the target holds
  exactly what it held before; every checksum is checked (spooled copy) before it starts;
- into a database that does not exist yet: it is created, restored with ``--jobs``, and
  dropped again when the restore fails.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from steward.backup.catalogue import Manifest
from steward.backup.context import (
    BackupContext,
    download_object,
    open_object,
    spool_file,
    spool_folder,
)
from steward.backup.fingerprint import compare_fingerprints, pg_fingerprint, pg_table_names
from steward.backup.pg_tools import PgTool, find_pg_tool, libpq_env, server_major
from steward.errors import ConfigError, SourceUnavailable, StewardError
from steward.settings import mask_url
from steward.storage import create_sql_engine

__all__ = ["DIR_PREFIX", "postgres_url", "restore_postgres", "verify_postgres"]

DIR_PREFIX = "pgdir-"  # directory format: one object per file, flat in the backup's folder
_TARGET = "the restore target (--to / the target parameter)"


def restore_postgres(
    ctx: BackupContext, manifest: Manifest, target: str, *, replace: bool
) -> dict[str, Any]:
    """Load ``manifest``'s dump into the database at ``target``, all or nothing.

    A missing target database is created; a non-empty one is refused unless ``replace``.
    """
    url = postgres_url(target, what=_TARGET)
    shown = _shown(url)
    version_num, existing, created = _open_target(ctx, url, shown)
    if existing and not replace:
        raise ConfigError(
            f"restore target {shown} is not empty ({existing} tables): restore into an empty "
            "database, or pass --replace (replace=true) to drop and recreate what the backup holds"
        )
    tool = find_pg_tool("pg_restore", server_major(version_num), ctx.config.pg_bin_dir)
    args = ["--no-owner", "--exit-on-error", f"--dbname={url.database}"]
    if created:
        args.append(f"--jobs={ctx.config.restore_jobs}")
    else:
        args.append("--single-transaction")  # all or nothing over an existing database
    if replace and existing:
        args += ["--clean", "--if-exists"]
    try:
        with spool_folder(ctx, "restore") as folder:
            path = _spooled(ctx, manifest, folder)  # every checksum checked before it starts
            tool.start([*args, str(path)], libpq_env(url)).finish(f"restoring into {shown}")
    except StewardError as exc:
        raise _restore_failed(ctx, exc, url, created=created, existing=existing) from None
    return {
        "target": shown,
        "replaced": bool(existing),
        "created": created,
        "tables": len(manifest.tables),
    }


def _restore_failed(
    ctx: BackupContext, exc: StewardError, url: URL, *, created: bool, existing: int
) -> StewardError:
    shown = _shown(url)
    if created:
        with contextlib.suppress(Exception):
            drop = "DROP DATABASE IF EXISTS {} WITH (FORCE)"
            _admin_execute(ctx, url.set(database="postgres"), str(url.database), drop)
        after = f"the database {url.database!r}, created for this restore, was dropped again"
    else:
        state = f"its {existing} tables" if existing else "it (it was empty)"
        after = (
            f"nothing was changed in {shown}: the restore ran as one transaction and was rolled "
            f"back, so {state} are exactly as before"
        )
    return type(exc)(f"{str(exc).rstrip('.')}. {after[0].upper()}{after[1:]}")


def _spooled(ctx: BackupContext, manifest: Manifest, folder: Path) -> Path:
    if not manifest.objects[0]["name"].startswith(DIR_PREFIX):
        path = folder / "database.pgdump"
        with spool_file(path) as handle:
            download_object(ctx, manifest, manifest.objects[0], handle)
        return path
    for record in manifest.objects:
        name = record["name"].removeprefix(DIR_PREFIX).removesuffix(".age")
        with spool_file(folder / name) as handle:
            download_object(ctx, manifest, record, handle)
    return folder


def verify_postgres(ctx: BackupContext, manifest: Manifest) -> list[str]:
    """Restore into a scratch database, compare with the manifest; the differences found."""
    admin_url = postgres_url(
        ctx.config.verify_url.get_secret_value() or ctx.settings.database_url,
        what="backup.verify_url (or database.url)",
    )
    name = f"{ctx.config.scratch_prefix}{secrets.token_hex(6)}"
    scratch_url = admin_url.set(database=name)
    _admin_execute(ctx, admin_url, name, "CREATE DATABASE {}")
    try:
        version_num, _ = _inspect(ctx, scratch_url, _shown(scratch_url))
        tool = find_pg_tool("pg_restore", server_major(version_num), ctx.config.pg_bin_dir)
        try:
            _restore_scratch(ctx, manifest, tool, scratch_url)
        except (ConfigError, SourceUnavailable):
            raise
        except StewardError as exc:  # the checksum matched, yet the dump does not load
            return [str(exc)]
        scratch = _engine(ctx, scratch_url)
        try:
            with scratch.connect() as conn:
                methods = {name: t.get("method", "") for name, t in manifest.tables.items()}
                restored = pg_fingerprint(conn, methods)
        finally:
            scratch.dispose()
        return compare_fingerprints(manifest.tables, restored)
    finally:
        with contextlib.suppress(Exception):
            _admin_execute(ctx, admin_url, name, "DROP DATABASE IF EXISTS {} WITH (FORCE)")


def _restore_scratch(ctx: BackupContext, manifest: Manifest, tool: PgTool, url: URL) -> None:
    """Restore into the scratch database: from the spool with ``--jobs`` (tables and indexes
    load side by side, as a plain ``pg_restore --jobs`` does), except an encrypted custom-format
    dump, whose plain bytes are streamed into one ``pg_restore``'s standard input instead of
    touching a disk (the store holds an unencrypted dump's plain bytes anyway)."""
    args = ["--no-owner", "--exit-on-error", f"--dbname={url.database}"]
    what = f"restoring backup {manifest.id} into a scratch database"
    if manifest.objects[0]["name"].startswith(DIR_PREFIX) or not manifest.encrypted:
        with spool_folder(ctx, "verify") as folder:
            path = _spooled(ctx, manifest, folder)  # every checksum checked on the way
            jobs = f"--jobs={ctx.config.restore_jobs}"
            tool.start([*args, jobs, str(path)], libpq_env(url)).finish(what)
        return
    running = tool.start(["--format=custom", *args], libpq_env(url), stdin=subprocess.PIPE)
    try:
        stream = open_object(ctx, manifest, manifest.objects[0])
        try:
            _feed(stream, running.stdin)
        finally:
            stream.close()
    except BaseException:
        running.kill()
        raise
    running.finish(what)


def _feed(stream: IO[bytes], sink: IO[bytes]) -> None:
    """Copy ``stream`` into ``sink`` (pg_restore's stdin). When pg_restore stops early, the rest
    is still read: reaching the end checks the SHA-256, so damage is named as the cause."""
    try:
        while chunk := stream.read(1 << 20):
            sink.write(chunk)
    except BrokenPipeError:
        while stream.read(1 << 20):
            pass
    finally:
        with contextlib.suppress(BrokenPipeError):
            sink.close()


def _open_target(ctx: BackupContext, url: URL, shown: str) -> tuple[int, int, bool]:
    """Version number and table count of the target, created first when it does not exist."""
    try:
        return (*_inspect(ctx, url, shown), False)
    except ConfigError as exc:
        if f'database "{url.database}" does not exist' not in str(exc):
            raise
    maintenance = url.set(database="postgres")
    _admin_execute(ctx, maintenance, str(url.database), "CREATE DATABASE {}", hint=_CREATE_HINT)
    return (*_inspect(ctx, url, shown), True)


_CREATE_HINT = "it does not exist and could not be created: create it by hand, or check that URL"
_CONNECT_HINT = "check that URL and that its server is up"


def _inspect(ctx: BackupContext, url: URL, shown: str) -> tuple[int, int]:
    """The server's version number and how many user tables the database holds."""
    engine = _engine(ctx, url)
    try:
        with _blamed(shown, _CONNECT_HINT), engine.connect() as conn:
            version_num = int(conn.execute(sa.text("SHOW server_version_num")).scalar_one())
            return version_num, len(pg_table_names(conn))
    finally:
        engine.dispose()


def _admin_execute(
    ctx: BackupContext, via: URL, name: str, template: str, *, hint: str = _CONNECT_HINT
) -> None:
    """Run ``template`` with database ``name`` quoted in, over a connection to ``via``."""
    engine = _engine(ctx, via)
    try:
        with (
            _blamed(f"{_shown(via.set(database=name))}", hint),
            engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn,
        ):
            quoted = conn.dialect.identifier_preparer.quote(name)
            conn.execute(sa.text(template.format(quoted)))
    finally:
        engine.dispose()


@contextlib.contextmanager
def _blamed(shown: str, hint: str) -> Iterator[None]:
    """Driver failures name the URL that failed (a restore target, not database.url)."""
    try:
        yield
    except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
        cause = str(exc.orig or exc).strip().splitlines()[0]
        raise ConfigError(f"{shown}: {_server_says(cause)}; {hint}") from None
    except StewardError as exc:  # the engine's own translation, which blames database.url
        if "database.url" not in str(exc):
            raise
        cause = str(exc).split("; check ")[0].split("; create it")[0]
        raise ConfigError(f"{cause}; {hint}") from None


def _server_says(text: str) -> str:
    return text.split("FATAL:")[-1].strip()


def _engine(ctx: BackupContext, url: URL) -> Engine:
    return create_sql_engine(ctx.settings, url=url.render_as_string(hide_password=False))


def _shown(url: URL) -> str:
    return mask_url(url.render_as_string(hide_password=False))


def postgres_url(raw: str, *, what: str) -> URL:
    """``raw`` as a PostgreSQL URL with a database name; ConfigError naming ``what`` otherwise."""
    try:
        url = make_url(raw)
    except Exception:
        raise ConfigError(f"{what}: {mask_url(raw)!r} is not a database URL") from None
    if url.get_backend_name() != "postgresql" or not url.database:
        raise ConfigError(
            f"{what}: {mask_url(raw)!r}: accepted a PostgreSQL URL with a database name, "
            "e.g. postgresql://user@host:5432/restored"
        )
    return url.set(drivername="postgresql+psycopg")
