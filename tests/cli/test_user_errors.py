"""Every user error the hostile-input trial found is one clear line on stderr and exit code 2
(no traceback), run as a user runs Steward: the console script in a subprocess."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import roles as role_fixtures

roles_db = role_fixtures.roles_db  # every job's role on a demo database (module-scoped)

STEWARD = str(Path(sys.executable).with_name("steward"))
PASSWORD = "Pw-sl/ash#q?@:%-x"


def _steward(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    clean.update(STEWARD_HOME=str(tmp_path / "home"), COLUMNS="200", NO_COLOR="1", **env)
    return subprocess.run(
        [STEWARD, *args], cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=300
    )


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    return lines[0]


def test_migrate_down_to_head(tmp_path: Path) -> None:
    line = _one_error_line(_steward(tmp_path, "migrate", "--down", "--to", "head"))
    assert "--down --to head: a downgrade needs a target below the current revision" in line


def test_policy_where_of_the_wrong_type(tmp_path: Path) -> None:
    config = tmp_path / "steward.toml"
    config.write_text("[[archive.policies]]\ntable = 'users'\nwhere = {status = [1, 2]}\n")

    line = _one_error_line(_steward(tmp_path, "archive", "--dry-run"))

    assert "archive.policies.0.where.status" in line


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        (f"postgresql+psycopg://app:{PASSWORD}@db:abc/shop", "port 'abc'"),
        (f"postgresql://app:{PASSWORD}@db:70000/shop", "port '70000'"),
    ],
)
def test_database_url_with_a_bad_port(tmp_path: Path, url: str, fragment: str) -> None:
    line = _one_error_line(_steward(tmp_path, "migrate", "--status", STEWARD_DATABASE__URL=url))
    assert "database.url" in line and fragment in line and "app:***@db" in line


def test_read_only_sqlite_file(tmp_path: Path) -> None:
    database = tmp_path / "app.db"
    sqlite3.connect(database).execute("CREATE TABLE users (id INTEGER)").connection.close()

    result = _steward(
        tmp_path,
        "demo-data",
        "--replace",
        STEWARD_DATABASE__URL=f"sqlite:///file:{database}?mode=ro&uri=true",
    )

    line = _one_error_line(result)
    assert "cannot be written" in line or "create the example schema first" in line


def test_wrong_database_credentials_say_authentication_failed(tmp_path: Path, pg_url: str) -> None:
    host_and_db = pg_url.split("@", 1)[1]
    url = f"postgresql+psycopg://steward_nobody:{PASSWORD}@{host_and_db}"

    result = _steward(
        tmp_path,
        "migrate",
        "--status",
        STEWARD_DATABASE__URL=url,
        STEWARD_MIGRATIONS__ALEMBIC="example",
    )
    line = _one_error_line(result)

    assert "authentication failed" in line and "steward_nobody" in line
    assert "unreachable" not in line


def test_misspelt_environment_section(tmp_path: Path) -> None:
    result = _steward(
        tmp_path, "config", "show", STEWARD_DATABSE__URL=f"postgresql://app:{PASSWORD}@db/x"
    )

    line = _one_error_line(result)
    assert "STEWARD_DATABSE__URL" in line and "did you mean 'STEWARD_DATABASE__URL'?" in line


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("STEWARD_DATABSE__URI", "STEWARD_DATABASE__URL"),
        ("STEWARD_OBJETS__SECRET_ACCESS_KEY", "STEWARD_OBJECTS__SECRET_ACCESS_KEY"),
        ("STEWARD_DATABSE", "STEWARD_DATABASE"),
    ],
)
def test_misspelt_environment_variable_suggests_the_whole_name(
    tmp_path: Path, name: str, meant: str
) -> None:
    line = _one_error_line(_steward(tmp_path, "config", "show", **{name: PASSWORD}))
    assert f"{name}: not a Steward setting; did you mean {meant!r}?" in line


@pytest.mark.usefixtures("prefect_harness")
def test_policy_where_value_that_does_not_fit_its_column(
    tmp_path: Path, make_pg_database: Any
) -> None:
    from prefect.settings import PREFECT_API_URL

    env = {
        "STEWARD_DATABASE__URL": make_pg_database(),
        "STEWARD_MIGRATIONS__ALEMBIC": "example",
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
    }
    for args in (["install"], ["migrate"], ["demo-data", "--rows", "300"]):
        done = _steward(tmp_path, *args, **env)
        assert done.returncode == 0, done.stderr
    (tmp_path / "steward.toml").write_text(
        "[[archive.policies]]\ntable = 'orders'\nretention_days = 1\nwhere = {status = 5}\n"
    )

    line = _one_error_line(_steward(tmp_path, "archive", "--dry-run", **env))

    assert "the database refused a value: operator does not exist" in line
    assert "archive.policies[].where" in line


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("nosuchcmd",), "No such command 'nosuchcmd' (see `steward --help`)"),
        (("archive", "--nosuch"), "No such option: --nosuch (see `steward archive --help`)"),
    ],
)
def test_unknown_command_or_option(tmp_path: Path, args: tuple[str, ...], fragment: str) -> None:
    # typer >= 0.2x carries its own click: its usage errors used to end in a traceback, exit 1.
    assert fragment in _one_error_line(_steward(tmp_path, *args))


@pytest.mark.parametrize("args", [(), ("outbox",)])
def test_a_bare_command_group_prints_its_help(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = _steward(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "Commands" in result.stdout + result.stderr and "status" in result.stdout + result.stderr


# A job run under a role that lacks what it needs: one line naming the role, the privilege,
# the object and the job, exit 2, and nothing changed. (section, job) = which flow URL is set
# to which job's role; database.url is a role that may only connect.
PRIVILEGE_CASES = [
    (["archive", "-t", "users"], ("archive", "validator"),
     "lacks DELETE on public.users (archive policy users); INSERT on "
     "steward.steward_archive_manifest (archive bookkeeping); UPDATE on "),
    (["outbox", "relay"], ("outbox", "validator"),
     "lacks UPDATE on public.outbox (outbox relay); nothing was changed"),
    (["outbox", "cleanup"], ("outbox", "warmer"),
     "lacks SELECT on public.outbox (outbox cleanup); DELETE on public.outbox (outbox cleanup)"),
    (["cache", "warm", "--warmer", "product-detail"], ("cache", "relay"),
     "lacks SELECT on table products; grant it to the role of this job"),
]  # fmt: skip


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize(("args", "flow", "fragment"), PRIVILEGE_CASES)
def test_missing_privilege_is_one_line_and_changes_nothing(
    tmp_path: Path, roles_db: Any, redis_url: str, args: list[str], flow: Any, fragment: str
) -> None:
    from prefect.settings import PREFECT_API_URL

    section, job = flow
    env = {f"STEWARD_{key.upper()}": value for key, value in roles_db.env(**{section: job}).items()}
    env.update(
        STEWARD_CACHE__URL=redis_url,
        STEWARD_MIGRATIONS__ALEMBIC="example",
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
    )
    before = _row_counts(roles_db.owner_url)

    line = _one_error_line(_steward(tmp_path, *args, **env))

    assert f"error: role {roles_db.roles[job]} {fragment}" in line
    assert _row_counts(roles_db.owner_url) == before


def _row_counts(url: str) -> dict[str, Any]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                "users": conn.execute(sa.text("SELECT count(*) FROM users")).scalar_one(),
                "orders": conn.execute(sa.text("SELECT count(*) FROM orders")).scalar_one(),
                "outbox": conn.execute(
                    sa.text("SELECT status, count(*) FROM outbox GROUP BY status ORDER BY 1")
                ).all(),
            }
    finally:
        engine.dispose()
