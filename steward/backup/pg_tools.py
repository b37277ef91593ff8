"""Running ``pg_dump`` / ``pg_restore``: the client matching the server, and libpq settings.

The connection reaches the tools through libpq environment variables (``PGHOST``,
``PGPASSWORD``...), never through the command line, where any user of the machine could read
a password in the process list. Error output is kept in a temporary file (no pipe to drain)
and quoted in errors; libpq never prints passwords there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import IO, Any

from sqlalchemy.engine import URL, make_url

from steward.errors import ConfigError, SourceUnavailable, StewardError

__all__ = ["PgTool", "find_pg_tool", "libpq_env", "server_major"]

_LOST = re.compile(
    r"terminating connection|server closed the connection|could not connect|connection to "
    r"server .* failed|shutting down|connection refused|no connection to the server",
    re.IGNORECASE,
)
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")
_LIBPQ_QUERY = {"sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT"}


def server_major(version_num: int) -> int:
    """Major version from ``server_version_num`` (150020 -> 15)."""
    return version_num // 10000


def libpq_env(url: str | URL) -> dict[str, str]:
    """The process environment plus libpq variables for ``url`` (password included, not argv)."""
    parsed = make_url(url) if isinstance(url, str) else url
    env = dict(os.environ)  # PGPASSWORD / ~/.pgpass still apply when the URL has no password
    values = {
        "PGHOST": parsed.host,
        "PGPORT": str(parsed.port) if parsed.port else None,
        "PGUSER": parsed.username,
        "PGPASSWORD": parsed.password,
        "PGDATABASE": parsed.database,
        "PGAPPNAME": "steward-backup",
    }
    for name, variable in _LIBPQ_QUERY.items():
        raw = parsed.query.get(name)
        values[variable] = raw if isinstance(raw, str) else None
    env.update({key: str(value) for key, value in values.items() if value})
    return env


class PgTool:
    """One PostgreSQL client program at a known path."""

    def __init__(self, path: str, name: str) -> None:
        self.path = path
        self.name = name

    def start(self, args: list[str], env: dict[str, str], **kwargs: Any) -> _Running:
        errors = tempfile.TemporaryFile()  # closed by _Running
        process = subprocess.Popen(
            [self.path, *args], env=env, stderr=errors, start_new_session=False, **kwargs
        )
        return _Running(self.name, process, errors)


class _Running:
    """A started tool: wait for it and turn a failure into an error quoting its stderr."""

    def __init__(self, name: str, process: subprocess.Popen[bytes], errors: IO[bytes]) -> None:
        self.name = name
        self.process = process
        self._errors = errors

    @property
    def stdout(self) -> IO[bytes]:
        assert self.process.stdout is not None
        return self.process.stdout

    @property
    def stdin(self) -> IO[bytes]:
        assert self.process.stdin is not None
        return self.process.stdin

    def finish(self, what: str) -> None:
        """Wait; raise StewardError naming ``what`` and the tool's own words when it failed."""
        code = self.process.wait()
        self._errors.seek(0)
        text = self._errors.read().decode("utf-8", "replace").strip()
        self._errors.close()
        if code != 0:
            tail = " | ".join(text.splitlines()[-5:]) or "no error output"
            if _LOST.search(text):  # the server, not the data: transient, exit code 2
                raise SourceUnavailable(
                    f"{self.name} lost the database while {what}: {tail}; nothing was kept: "
                    "run again once the server is up"
                )
            raise StewardError(f"{self.name} failed while {what} (exit code {code}): {tail}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._errors.close()


def find_pg_tool(name: str, major: int, configured: Path | None) -> PgTool:
    """``pg_dump`` / ``pg_restore`` whose major version is at least the server's ``major``."""
    candidates = [str(configured / name)] if configured else []
    candidates.append(f"/usr/lib/postgresql/{major}/bin/{name}")
    found = shutil.which(name)
    if found:
        candidates.append(found)
    seen: list[str] = []
    for path in candidates:
        version = _tool_major(path)
        if version is None:
            continue
        if version >= major:
            return PgTool(path, name)
        seen.append(f"{path} is version {version}")
    package = f"postgresql-client-{major}"
    what = "; ".join(seen) if seen else "none found"
    raise ConfigError(
        f"{name} for PostgreSQL {major} is needed ({what}): install the Debian package "
        f"{package!r} (`make services` does) or point backup.pg_bin_dir at its bin folder"
    )


def _tool_major(path: str) -> int | None:
    if not os.access(path, os.X_OK):
        return None
    try:
        output = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except OSError:
        return None
    match = _VERSION.search(output)
    return int(match.group(1)) if match else None
