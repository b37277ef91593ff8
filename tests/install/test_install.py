"""``steward install`` as an owner runs it (the console script in a subprocess) on real
PostgreSQL: Steward's schema and tables, an idempotent rerun, ``--print``, tables of earlier
versions moved with their rows, the one line a flow prints without an install, and a role with
no CREATE privilege anywhere archiving ``users`` after the install."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from steward.archive import manifest
from steward.demo import generate_demo_data
from steward.install import install, steward_tables
from steward.migrations import MigrationRunner
from steward.settings import Settings

STEWARD = str(Path(sys.executable).with_name("steward"))
TABLES = [
    "steward_archive_manifest",
    "steward_archive_parts",
    "steward_archive_partition_batches",
    "steward_archive_partitions",
    "steward_archive_restored",
    "steward_archive_runs",
]
ALL_TABLES = sorted([*TABLES, "steward_migrations"])


def _steward(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    full = {**clean, "COLUMNS": "200", "STEWARD_HOME": str(cwd / "home"), **env}
    return subprocess.run(
        [STEWARD, *args], capture_output=True, text=True, cwd=cwd, env=full, timeout=300
    )


def _psql(url: str) -> psycopg.Connection:
    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)


def _tables_in(url: str, schema: str) -> list[str]:
    with _psql(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (schema,)
        )
        return [name for (name,) in rows]


def _shop(url: str, home: Path) -> None:
    """The example schema with a little synthetic data, migrated by the owner."""
    settings = Settings(database={"url": url}, home=home, migrations={"alembic": "example"})
    runner = MigrationRunner(settings)
    runner.upgrade()
    runner.dispose()
    generate_demo_data(settings, rows=400, seed=5)


def test_install_creates_the_schema_and_tables_and_a_rerun_has_nothing_to_do(
    make_pg_database: Callable[..., str], tmp_path: Path
) -> None:
    url = make_pg_database(install=False)
    first = _steward("install", cwd=tmp_path, STEWARD_DATABASE__URL=url)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == "created schema steward"
    assert sorted(lines[1:-1]) == [f"created table steward.{name}" for name in ALL_TABLES]
    assert lines[-1] == f"installed Steward's tables in schema steward of {url.rsplit('/', 1)[1]}"
    assert _tables_in(url, "steward") == ALL_TABLES
    assert _tables_in(url, "public") == []

    again = _steward("install", cwd=tmp_path, STEWARD_DATABASE__URL=url)
    assert again.returncode == 0, again.stderr
    name = url.rsplit("/", 1)[1]
    assert again.stdout.strip() == (
        f"Steward's tables are installed in schema steward of {name}: nothing to do"
    )


def test_install_on_sqlite_keeps_the_tables_in_the_main_database(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    report = install(settings)
    assert report.actions == [f"created table {t.name}" for t in steward_tables()]
    assert install(settings).actions == []
    engine = sa.create_engine(settings.database_url)
    assert set(sa.inspect(engine).get_table_names()) == set(ALL_TABLES)
    engine.dispose()


def test_print_shows_the_sql_and_connects_to_nothing(tmp_path: Path) -> None:
    nowhere = "postgresql+psycopg://owner:secret@127.0.0.1:1/app"  # nothing listens on port 1
    shown = _steward(
        "install", "--print", cwd=tmp_path, STEWARD_DATABASE__URL=nowhere,
        STEWARD_DATABASE__SCHEMA="ops",
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    sql = shown.stdout
    assert "CREATE SCHEMA IF NOT EXISTS ops;" in sql
    for name in ALL_TABLES:
        assert f"CREATE TABLE IF NOT EXISTS ops.{name} (" in sql
    assert "CREATE INDEX IF NOT EXISTS ix_steward_archive_runs_table ON ops." in sql
    assert "secret" not in sql + shown.stderr

    sqlite = _steward("install", "--print", cwd=tmp_path)
    assert sqlite.returncode == 0, sqlite.stderr
    assert "CREATE SCHEMA" not in sqlite.stdout
    assert "CREATE TABLE IF NOT EXISTS steward_archive_manifest (" in sqlite.stdout
    assert not (tmp_path / "home" / "steward.db").exists()


def test_install_moves_tables_of_earlier_versions_with_their_rows(
    make_pg_database: Callable[..., str], tmp_path: Path
) -> None:
    url = make_pg_database(install=False)
    old = sa.MetaData()  # what earlier versions created in the application's schema
    copies = {t.name: t.to_metadata(old, schema=None) for t in steward_tables()}
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        old.create_all(conn, tables=[copies["steward_archive_runs"], copies["steward_migrations"]])
        for run in ("r1", "r2"):
            conn.execute(
                copies["steward_archive_runs"].insert().values(
                    run_id=run, source="app", table_name="users", status="complete",
                    started_at=sa.func.now(),
                )
            )  # fmt: skip
        conn.execute(
            copies["steward_migrations"].insert().values(
                revision="0001", filename="versions/0001.py", sha256="ab" * 32,
                applied_at=sa.func.now(),
            )
        )  # fmt: skip
    engine.dispose()

    moved = _steward("install", cwd=tmp_path, STEWARD_DATABASE__URL=url)
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.splitlines()[:3] == [
        "created schema steward",
        "moved table public.steward_archive_runs to steward.steward_archive_runs (2 rows)",
        "moved table public.steward_migrations to steward.steward_migrations (1 rows)",
    ]
    assert _tables_in(url, "public") == []
    assert _tables_in(url, "steward") == ALL_TABLES
    with _psql(url) as conn:
        runs = conn.execute("SELECT id, run_id FROM steward.steward_archive_runs ORDER BY id")
        assert runs.fetchall() == [(1, "r1"), (2, "r2")]
        revision = conn.execute("SELECT revision, sha256 FROM steward.steward_migrations")
        assert revision.fetchall() == [("0001", "ab" * 32)]
        # the id sequence moved along: the next run gets the next id
        new_id = conn.execute(
            "INSERT INTO steward.steward_archive_runs (run_id, source, table_name, status, "
            "started_at) VALUES ('r3', 'app', 'users', 'running', now()) RETURNING id"
        ).fetchone()
        assert new_id == (3,)


@pytest.fixture(scope="module")
def shop_without_install(
    session_pg_database: Callable[..., str], tmp_path_factory: pytest.TempPathFactory
) -> str:
    """An application database migrated and filled, without Steward's tables."""
    url = session_pg_database()
    _shop(url, tmp_path_factory.mktemp("shop-home"))
    with _psql(url) as conn:
        conn.execute("DROP SCHEMA steward CASCADE")
    return url


@pytest.mark.parametrize("command", [["archive", "-t", "users"], ["migrate"]])
def test_a_flow_without_install_stops_with_one_line(
    command: list[str], shop_without_install: str, tmp_path: Path
) -> None:
    url = shop_without_install
    with _psql(url) as conn:
        users = conn.execute("SELECT count(*) FROM users").fetchone()
    done = _steward(
        *command, cwd=tmp_path, STEWARD_DATABASE__URL=url, STEWARD_MIGRATIONS__ALEMBIC="example"
    )
    assert done.returncode == 2, done.stdout + done.stderr
    name = url.rsplit("/", 1)[1]
    expected = (
        f"error: Steward's tables are not installed in schema steward of {name} (missing steward."
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(expected), done.stderr
    assert errors[0].endswith("run `steward install` once as the schema owner")
    assert "Traceback" not in done.stderr
    assert _tables_in(url, "steward") == []  # nothing created at run time
    with _psql(url) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == users


@pytest.fixture
def archiver_role(
    make_pg_database: Callable[..., str], tmp_path: Path
) -> Iterator[tuple[str, str]]:
    """An installed, filled database and a role with exactly what archiving ``users`` needs:
    USAGE + SELECT everywhere it reads, DELETE (and UPDATE, for row locks) on users, read/write
    on Steward's tables, and CREATE nowhere. Yields (owner URL, role URL); the role is dropped
    afterwards."""
    url = make_pg_database()
    _shop(url, tmp_path / "owner-home")
    role = f"steward_test_archiver_{uuid.uuid4().hex[:8]}"
    grants = [
        f"CREATE ROLE {role} LOGIN PASSWORD 'archiver-pw'",
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
        # UPDATE: the guarded delete locks its rows (SELECT ... FOR UPDATE needs it)
        f"GRANT DELETE, UPDATE ON users TO {role}",
        f"GRANT USAGE ON SCHEMA steward TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA steward TO {role}",
        f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA steward TO {role}",
    ]  # the role name is generated above, never from input
    with _psql(url) as conn:
        for statement in grants:
            conn.execute(statement)  # type: ignore[arg-type]
    host = url.split("@", 1)[1]
    try:
        yield url, f"postgresql+psycopg://{role}:archiver-pw@{host}"
    finally:
        with _psql(url) as conn:
            conn.execute(f"DROP OWNED BY {role}")  # type: ignore[arg-type]
            conn.execute(f"DROP ROLE {role}")  # type: ignore[arg-type]


def test_a_role_without_create_archives_users_after_install(
    archiver_role: tuple[str, str], tmp_path: Path
) -> None:
    owner_url, role_url = archiver_role
    with _psql(owner_url) as conn:
        users_before = conn.execute("SELECT count(*) FROM users").fetchone()[0]  # type: ignore[index]

    done = _steward("archive", "-t", "users", cwd=tmp_path, STEWARD_DATABASE__URL=role_url)
    assert done.returncode == 0, done.stdout + done.stderr

    owner = sa.create_engine(owner_url)  # Steward's tables: schema steward, the default
    with owner.connect() as conn:
        users_after = conn.execute(sa.text("SELECT count(*) FROM users")).scalar_one()
        entries = manifest.entries(conn, table="users", states=[manifest.COMPLETE])
        runs = conn.execute(sa.select(manifest.runs_table.c.rows_archived)).scalars().all()
    owner.dispose()
    archived = sum(entry.rows for entry in entries)
    assert archived > 0 and users_before - users_after == archived
    assert runs == [archived]


def test_install_by_a_role_that_may_not_create_says_to_run_it_as_the_owner(
    make_pg_database: Callable[..., str], tmp_path: Path
) -> None:
    url = make_pg_database(install=False)
    role = f"steward_test_worker_{uuid.uuid4().hex[:8]}"  # generated here, never from input
    with _psql(url) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'worker-pw'")  # type: ignore[arg-type]
    host = url.split("@", 1)[1]
    try:
        done = _steward(
            "install", cwd=tmp_path,
            STEWARD_DATABASE__URL=f"postgresql+psycopg://{role}:worker-pw@{host}",
        )  # fmt: skip
    finally:
        with _psql(url) as conn:
            conn.execute(f"DROP OWNED BY {role}")  # type: ignore[arg-type]
            conn.execute(f"DROP ROLE {role}")  # type: ignore[arg-type]

    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"error: role {role} lacks CREATE on database"), lines[0]
    assert "run `steward install` once as the schema owner" in lines[0]
    assert "worker-pw" not in done.stdout + done.stderr
    assert _tables_in(url, "steward") == []
