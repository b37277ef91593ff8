"""A locked partition's ``COPY … TO STDOUT`` as a byte stream, with no Python work per row.

PostgreSQL sends COPY data as one protocol message per row, and a Python client pays for each
(psycopg's ``Copy.read()`` spends five Python calls on one; even libpq's ``PQgetCopyData``
called from Python costs about a microsecond a row, more than Arrow's parse and the Parquet
encode of the row together, and it holds the GIL). So the COPY runs in ``psql``, PostgreSQL's
own client, whose standard output Arrow reads in large blocks — the baseline's own tool.

``psql`` opens a session of its own: the caller holds a SHARE lock on the partition in its
transaction, so no write can reach the table until that transaction ends, and ``psql``'s
snapshot (taken after the lock was granted) holds every row the table will hold when it is
dropped. The query names the table with its schema, as the caller's session resolves it. The
session's connection parameters are the caller's own (psycopg's ``info.get_parameters()``); the
password goes through ``PGPASSWORD``, never the command line. Where no ``psql`` is found, the
rows are taken from the caller's own session through libpq (:class:`_LibpqStream`).
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.pq import ExecStatus
from sqlalchemy.engine import Connection

from steward.errors import SourceUnavailable, StewardError

__all__ = ["copy_csv", "find_psql"]

# Connection parameters every supported libpq knows (psycopg's own libpq may be newer than
# psql's and report parameters psql would refuse, such as sslcertmode).
_KNOWN = {
    "host", "hostaddr", "port", "dbname", "user", "passfile", "service", "options",
    "connect_timeout", "sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "gssencmode",
    "krbsrvname", "target_session_attrs", "keepalives", "keepalives_idle",
}  # fmt: skip


def find_psql(conn: Connection, configured: Path | None) -> str | None:
    """``psql`` from ``configured`` (backup.pg_bin_dir), the server's major version's folder,
    or PATH; None when there is none (or the driver is not psycopg)."""
    driver = getattr(conn.connection, "driver_connection", None)
    if not isinstance(driver, psycopg.Connection):
        return None
    major = driver.info.server_version // 10000
    candidates = [configured / "psql"] if configured else []
    candidates.append(Path(f"/usr/lib/postgresql/{major}/bin/psql"))
    found = shutil.which("psql")
    candidates += [Path(found)] if found else []
    return next((str(path) for path in candidates if os.access(path, os.X_OK)), None)


@contextlib.contextmanager
def copy_csv(conn: Connection, statement: str, psql: str | None) -> Iterator[BinaryIO]:
    """The output of ``statement`` (a ``COPY … TO STDOUT``), read to its end by the caller."""
    driver: Any = conn.connection.driver_connection
    if psql is None:
        with driver.cursor() as cursor, cursor.copy(statement):
            yield cast(BinaryIO, _LibpqStream(cursor.connection.pgconn))
        return
    with _psql(driver, psql, statement) as stream:
        yield stream


@contextlib.contextmanager
def _psql(driver: psycopg.Connection[Any], psql: str, statement: str) -> Iterator[BinaryIO]:
    env = {**os.environ, "PGCLIENTENCODING": "UTF8", "PGAPPNAME": "steward-archive"}
    if driver.info.password:
        env["PGPASSWORD"] = driver.info.password
    used = driver.info.get_parameters()  # no password in it
    target = make_conninfo(**{key: value for key, value in used.items() if key in _KNOWN})
    # -X: no psqlrc; -w: never prompt for a password; -q: nothing but the rows on stdout.
    command = [psql, "-X", "-q", "-w", "-v", "ON_ERROR_STOP=1", "-d", target, "-c", statement]
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=errors)
        assert process.stdout is not None
        try:
            yield cast(BinaryIO, process.stdout)
        except BaseException:
            if process.poll():  # psql failed first: its reason, not the reader's
                _failed(errors, process.returncode)
            process.kill()
            process.wait()
            raise
        finally:
            process.stdout.close()
        if process.wait():
            _failed(errors, process.returncode)


def _failed(errors: IO[bytes], code: int) -> None:
    errors.seek(0)
    lines = errors.read().decode("utf-8", "replace").strip().splitlines()
    message = f"psql failed copying the partition (exit code {code}): "
    message += " | ".join(lines[-3:]) or "no error output"
    if code == 2:  # psql: the connection to the server was lost or could not be made
        raise SourceUnavailable(f"{message}; nothing was dropped, run again")
    raise StewardError(f"{message}; nothing was dropped")


class _LibpqStream(io.RawIOBase):
    """The COPY's rows in the caller's session, taken straight from libpq (psycopg's public
    ``pq`` layer, a few calls a row instead of psycopg's per-row generators); each read fills
    the reader's whole buffer. The COPY's closing result is consumed at its end, so psycopg
    finds the connection as after ``Copy.read()`` returned the last row; on an error
    psycopg's ``copy`` block cancels the COPY and drains the rest as usual."""

    def __init__(self, pgconn: Any) -> None:
        self._pgconn = pgconn
        self._left: Any = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        size, filled, chunk = len(view), 0, self._left
        receive = self._pgconn.get_copy_data
        while True:
            length = len(chunk)
            if filled + length > size:
                view[filled:] = chunk[: size - filled]
                self._left = chunk[size - filled :]
                return size
            view[filled : filled + length] = chunk
            filled += length
            if self._done:
                self._left = b""
                return filled
            length, chunk = receive(1)  # 1: never block holding the GIL
            if length == 0:
                self._wait()
            elif length < 0:
                self._finish()

    def _wait(self) -> None:
        select.select([self._pgconn.socket], [], [])  # releases the GIL while PostgreSQL works
        self._pgconn.consume_input()

    def _finish(self) -> None:
        """The COPY's closing result (libpq's ``PQgetResult`` after the last row)."""
        self._done = True
        while True:
            while self._pgconn.is_busy():
                self._wait()
            result = self._pgconn.get_result()
            if result is None:
                return
            if result.status != ExecStatus.COMMAND_OK:
                message = (result.error_message or b"").decode("utf-8", "replace")
                raise psycopg.DatabaseError(f"COPY of the partition failed: {message}")
