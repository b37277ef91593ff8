"""SQL client: SQLAlchemy 2 engines for PostgreSQL (psycopg 3) and SQLite, built from settings.

Driver errors are translated here, once, by every engine's ``handle_error`` hook (so whatever
code path opens a connection gets the same translation): a server that cannot be reached (a host
that does not resolve, a refused port, a timeout, a server starting or shutting down) and a
connection lost mid-run become :class:`~steward.errors.SourceUnavailable` (transient, retried
with backoff); refused credentials become :class:`~steward.errors.AuthenticationFailed` and a
missing database or a read-only SQLite file a :class:`~steward.errors.ConfigError` (terminal:
never retried, one clear line); a statement the role may not run (SQLSTATE 42501) becomes
:class:`~steward.errors.PermissionDenied` naming the role, the privilege and the object, unless
the statement was run with the execution option ``privilege_probe=True`` (code that expects the
refusal and handles it itself). Everything else propagates as SQLAlchemy raised it.
"""

from __future__ import annotations

import random
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url

from steward.errors import (
    AuthenticationFailed,
    ConfigError,
    PermissionDenied,
    SourceUnavailable,
)
from steward.settings import Settings, mask_url
from steward.storage.steward_schema import schema_translate_map

__all__ = [
    "GRANT_HINT",
    "PRIVILEGE_PROBE",
    "SqlClient",
    "create_sql_engine",
    "dialect_name",
    "is_postgres",
    "refused_value",
    "translate_errors",
]

# SQLSTATEs of a value that does not fit its column: class 22 (data exception: "invalid input
# syntax for type integer"), 42883 (no operator for these types: varchar = integer), 42804
# (datatype mismatch). Callers that expect them (a checksum falling back) catch them first.
_VALUE_SQLSTATES = ("42883", "42804")


def refused_value(exc: BaseException) -> str | None:
    """One line for a database error caused by a configured value of the wrong type, else None."""
    orig = getattr(exc, "orig", None)
    sqlstate = str(getattr(orig, "sqlstate", None) or "")
    if not isinstance(exc, sa.exc.DBAPIError) or not (
        sqlstate.startswith("22") or sqlstate in _VALUE_SQLSTATES
    ):
        return None
    return (
        f"the database refused a value: {_first_line(orig)}; check the values in the settings "
        "(e.g. archive.policies[].where must match the column types) and the parameters"
    )


def _postgres_url(url: str) -> str:
    # Users often paste postgres:// or postgresql:// URLs; always talk through psycopg 3.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def create_sql_engine(settings: Settings, *, url: str | None = None) -> Engine:
    """Build an engine for ``url`` (default: the configured database), with pool settings."""
    raw = _postgres_url(url or settings.database_url)
    try:
        parsed = make_url(raw)
    except (sa.exc.ArgumentError, ValueError):  # their text may quote part of the password
        raise ConfigError(
            f"database.url = {mask_url(raw)!r} is not a valid URL: expected "
            "postgresql+psycopg://user:password@host:5432/database or sqlite:///path"
        ) from None
    db = settings.database
    # Steward's own tables resolve to database.schema (see steward.storage.steward_schema).
    own = {"schema_translate_map": schema_translate_map(db.schema_, parsed.get_backend_name())}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            parsed, connect_args={"timeout": db.pool_timeout}, execution_options=own
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
    else:
        connect_args: dict[str, Any] = {"connect_timeout": db.connect_timeout}
        if db.statement_timeout_ms:
            connect_args["options"] = f"-c statement_timeout={db.statement_timeout_ms}"
        engine = sa.create_engine(
            parsed,
            pool_size=db.pool_size,
            max_overflow=db.max_overflow,
            pool_timeout=db.pool_timeout,
            pool_pre_ping=True,
            connect_args=connect_args,
            execution_options=own,
        )
    event.listen(engine, "handle_error", _translate_driver_errors)
    return engine


_AUTH_FAILED = re.compile(
    r"password authentication failed|authentication failed|no password supplied|"
    r"role \"[^\"]*\" does not exist|not permitted to log in|no pg_hba\.conf entry",
    re.IGNORECASE,
)
_NO_DATABASE = re.compile(r"database \"[^\"]*\" does not exist", re.IGNORECASE)
_READ_ONLY = re.compile(r"readonly database|read-only|unable to open database file", re.I)


# SQLSTATE classes of a connection that failed or went away: 08 (connection exception), 57P
# (admin / crash shutdown, "the database system is starting up"), 53300 (too many connections).
_UNREACHABLE_SQLSTATES = ("08", "57P", "53300")


def _translate_driver_errors(context: Any) -> None:
    """``handle_error`` hook: driver errors become one clear Steward error (see the module)."""
    text = _first_line(context.original_exception)
    engine = context.engine
    where = mask_url(engine.url.render_as_string(hide_password=True)) if engine else "database"
    _refuse_terminal(text, where, engine)
    if _sqlstate(context.original_exception) == _NO_PRIVILEGE and not _probing(context):
        raise PermissionDenied(_privilege_refused(context, text)) from None
    if context.is_pre_ping:  # the pool replaces a stale connection itself: leave it be
        return
    if engine is not None and engine.dialect.name == "postgresql" and _unreachable(context):
        lost = context.connection is not None  # it was connected: lost mid-run
        raise SourceUnavailable(
            f"{where}: {'lost the database connection' if lost else 'database unreachable'} "
            f"({text}); check database.url (STEWARD_DATABASE__URL) and that the server is up"
        ) from None


_NO_PRIVILEGE = "42501"
# Execution option of a statement whose caller handles a privilege refusal itself (ANALYZE of a
# table the role does not own, dropping constraints it may not drop).
PRIVILEGE_PROBE = "privilege_probe"
_REFUSED_OBJECT = re.compile(r"permission denied for (\w+) (\S+)|must be owner of (\w+) (\S+)")


def _sqlstate(error: BaseException | None) -> str:
    return str(getattr(error, "sqlstate", None) or "")


def _probing(context: Any) -> bool:
    execution = context.execution_context
    return bool(execution is not None and execution.execution_options.get(PRIVILEGE_PROBE))


# What a refused statement's message ends with (`steward install` replaces it with its own).
GRANT_HINT = (
    "; grant it to the role of this job (`steward install --roles --print` lists every job's "
    "grants)"
)


def _privilege_refused(context: Any, text: str) -> str:
    """'role R lacks PRIV on KIND NAME (server text); ...' for a refused statement."""
    engine = context.engine
    role = (engine.url.username if engine is not None else None) or "the connecting role"
    found = _REFUSED_OBJECT.search(text)
    kind, name = (found[1] or found[3], found[2] or found[4]) if found else ("an object", "")
    privilege = _privilege_of(context.statement or "", kind, owner=bool(found and found[3]))
    said = "" if found else f" ({_server_says(text)})"
    return f"role {role} lacks {privilege} on {kind} {name}".rstrip() + said + GRANT_HINT


def _privilege_of(statement: str, kind: str, *, owner: bool) -> str:
    """The privilege a refused statement needed, from its first keyword."""
    if owner:
        return "ownership"
    words = statement.lstrip(" (\n\t").split(None, 1)
    verb = words[0].upper() if words else ""
    if kind == "schema":
        return "CREATE" if verb == "CREATE" else "USAGE"
    if kind == "sequence":  # nextval() behind a serial / identity id
        return "USAGE"
    if verb == "WITH":  # a data-modifying CTE needs the privilege of its first change
        changes = re.search(r"\b(DELETE|UPDATE|INSERT)\b", statement, re.I)
        verb = changes[1].upper() if changes else "SELECT"
    elif verb in ("EXPLAIN", "DECLARE"):  # planning or a cursor: what the query inside does
        inner = re.search(r"\b(SELECT|INSERT|UPDATE|DELETE|WITH)\b", statement, re.I)
        return _privilege_of(statement[inner.start() :], kind, owner=False) if inner else verb
    if verb == "SELECT" and re.search(r"\bFOR\s+(NO\s+KEY\s+)?UPDATE\b", statement, re.I):
        return "UPDATE (SELECT ... FOR UPDATE)"
    if verb == "COPY":
        return "INSERT" if re.search(r"\bFROM\s+STDIN\b", statement, re.I) else "SELECT"
    if verb in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "CREATE"):
        return verb
    return "a privilege"


def _unreachable(context: Any) -> bool:
    """A failed connect, or a connection that broke, rather than a refused statement."""
    error = context.original_exception
    if context.is_disconnect:
        return True
    sqlstate = str(getattr(error, "sqlstate", None) or "")
    if sqlstate.startswith(_UNREACHABLE_SQLSTATES):
        return True
    # psycopg reports a host that does not resolve, a refused port or a timeout while connecting
    # as OperationalError without a SQLSTATE: at connect time that is the server being away.
    return context.connection is None and not sqlstate and _is_operational(error)


def _is_operational(error: BaseException) -> bool:
    return type(error).__name__ == "OperationalError" or _looks_unreachable(str(error))


def _refuse_terminal(text: str, where: str, engine: Any) -> None:
    """Errors a retry cannot fix (credentials, a missing database, a read-only SQLite file)."""
    if _AUTH_FAILED.search(text):
        raise AuthenticationFailed(
            f"{where}: authentication failed ({_server_says(text)}); check the user and "
            "password in database.url (STEWARD_DATABASE__URL)"
        ) from None
    if _NO_DATABASE.search(text):
        raise ConfigError(
            f"{where}: {_server_says(text)}; create it or fix the database name in database.url"
        ) from None
    if _READ_ONLY.search(text) and engine is not None and engine.dialect.name == "sqlite":
        raise ConfigError(
            f"{where}: the SQLite database cannot be written ({text}); make the file and its "
            "folder writable, or point database.url at a writable file"
        ) from None


def _server_says(text: str) -> str:
    # psycopg: 'connection failed: connection to server at ... failed: FATAL:  <reason>'
    return re.split(r"FATAL:\s*", text)[-1].strip()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Autocommit at the driver level so SQLAlchemy's "begin" event controls transactions.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    try:
        cur.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError:
        pass  # a read-only file: reads still work; a write is refused with a clear error
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin_immediate(conn: Connection) -> None:
    # BEGIN IMMEDIATE takes the write lock up front: SQLite's stand-in for row locks.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def dialect_name(bind: Engine | Connection) -> str:
    return bind.dialect.name


def is_postgres(bind: Engine | Connection) -> bool:
    return bind.dialect.name == "postgresql"


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Turn driver connection failures into SourceUnavailable naming ``what``."""
    try:
        yield
    except sa.exc.OperationalError as exc:
        if exc.connection_invalidated or _looks_like_connect_error(exc):
            raise SourceUnavailable(
                f"{what}: database unreachable ({_first_line(exc.orig)}); "
                "check database.url and that the server is up"
            ) from None
        raise
    except sa.exc.DisconnectionError as exc:
        raise SourceUnavailable(f"{what}: database connection lost ({exc})") from None


def _looks_like_connect_error(exc: sa.exc.OperationalError) -> bool:
    return _looks_unreachable(str(exc.orig))


_UNREACHABLE_MARKERS = (
    "connection", "could not connect", "timeout", "server closed", "refused",
    "failed to resolve host", "could not translate host name", "name or service not known",
    "temporary failure in name resolution", "no route to host", "network is unreachable",
    "the database system is", "terminating connection",
)  # fmt: skip


def _looks_unreachable(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in _UNREACHABLE_MARKERS)


def _first_line(exc: BaseException | None) -> str:
    return str(exc).strip().splitlines()[0] if exc and str(exc).strip() else type(exc).__name__


class SqlClient:
    """One engine per configured database, plus connection helpers with connect retries."""

    def __init__(self, settings: Settings, *, url: str | None = None) -> None:
        self.settings = settings
        self.engine = create_sql_engine(settings, url=url)

    @property
    def is_postgres(self) -> bool:
        return is_postgres(self.engine)

    @property
    def display_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def connect(self) -> Connection:
        """A connection, retrying transient connect errors with jittered exponential backoff."""
        attempts = self.settings.database.connect_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                with translate_errors(f"connecting to {self.display_url}"):
                    return self.engine.connect()
            except SourceUnavailable:
                if attempt == attempts:
                    raise
                time.sleep(min(8.0, 0.25 * 2**attempt) * random.uniform(0.5, 1.0))
        raise AssertionError("unreachable")

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A connection inside a transaction that commits on success, rolls back on error."""
        with self.connect() as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()
