"""``steward validate``: exit 0 when the data holds, 1 with the failures named when a critical
expectation fails, 2 with one clear line for a bad suite; ``validate list`` reads the index."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa
import typer
from typer.testing import CliRunner

from steward.cli import validate
from tests.validation.conftest import connect

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    app.command("noop")(lambda: None)
    validate.register(app)
    return app


@sqlite_only
def test_list_shows_every_suite_with_its_target(app, app_settings) -> None:
    app_settings(rows=0)
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["validate", "list"])
    assert result.exit_code == 0, result.output
    assert "product_reviews" in result.output and "mongo" in result.output
    outbox = next(line for line in result.output.splitlines() if "│ outbox " in line)
    assert "│ 15 " in outbox and "│ 2 " in outbox  # 15 expectations, 2 of them warnings


@sqlite_only
@pytest.mark.usefixtures("prefect_harness")
def test_validate_exits_0_when_clean_and_1_naming_the_failure(app, app_settings) -> None:
    settings = app_settings()
    args = ["validate", "--suite", "orders", "--suite", "prices", "--scrub", "0"]
    clean = CliRunner(env={"COLUMNS": "200"}).invoke(app, args)
    assert clean.exit_code == 0, clean.output
    assert "critical failures 0" in clean.output
    with connect(settings) as conn:
        conn.execute(sa.text("UPDATE orders SET total = total * 2 WHERE id = 4"))
    broken = CliRunner(env={"COLUMNS": "200"}).invoke(app, args)
    assert broken.exit_code == 1, broken.output
    assert "critical: orders / total_equals_items: 1 unexpected" in broken.output
    assert "'id': 4" in broken.output
    assert "validation failed:" in broken.output


def test_a_bad_suite_is_one_line_and_exit_2(tmp_path) -> None:
    (tmp_path / "index.json").write_text('{"suites": [')
    env = {
        **os.environ,
        "STEWARD_HOME": str(tmp_path / "home"),
        "STEWARD_VALIDATION__EXPECTATIONS_DIR": str(tmp_path),
    }
    steward = os.path.join(os.path.dirname(sys.executable), "steward")
    done = subprocess.run(
        [steward, "validate", "list"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    output = (done.stdout + done.stderr).strip()
    assert output.startswith("error:") and "index.json: malformed JSON" in output
    assert "Traceback" not in output


def steward_env(tmp_path, **extra: str) -> dict[str, str]:
    """The CLI's environment: its own home, no Prefect server configured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "STEWARD_"))}
    env.update(STEWARD_HOME=str(tmp_path / "home"), PREFECT_HOME=str(tmp_path / "prefect"))
    env.update(extra)
    return env


# Runs the CLI in a process that reports, at exit, whether Prefect or GX were imported.
PROBE = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('imported:', sorted(m for m in ('prefect', "
    "'great_expectations') if m in sys.modules)))\n"
    "from steward.cli.main import main\n"
    "sys.argv = ['steward', *sys.argv[1:]]\n"
    "main()\n"
)


def probe(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_check_reports_every_problem_without_the_database(tmp_path, suites_dir) -> None:
    def edit(name: str, change) -> None:
        path = suites_dir / f"{name}.json"
        data = json.loads(path.read_text())
        change(data["expectations"])
        path.write_text(json.dumps(data))

    edit("orders", lambda items: items[2]["kwargs"].update(colum="status", value_sett=["x"]))
    edit("orders", lambda items: items[3]["kwargs"].update(mostly=7))
    edit("users", lambda items: items[0].update(type="expect_column_values_to_be_uniqe"))
    edit(
        "prices",
        lambda items: items[4]["kwargs"].update(unexpected_rows_query="DELETE FROM prices"),
    )
    edit("inventory", lambda items: items[4]["kwargs"].update(
        unexpected_rows_query="SELECT 1 FROM {batch} WHERE on_hand > {nope}"))  # fmt: skip
    env = steward_env(
        tmp_path,
        STEWARD_VALIDATION__EXPECTATIONS_DIR=str(suites_dir),
        STEWARD_DATABASE__URL="postgresql+psycopg://nobody@127.0.0.1:1/nowhere",  # never reached
    )
    done = probe(["validate", "check"], env)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output
    assert "6 problems in the suites" in output
    assert (
        "expectation 'status_in_set': unknown argument 'colum' (did you mean 'column'?)" in output
    )
    assert "unknown argument 'value_sett' (did you mean 'value_set'?)" in output
    assert "expectation 'total_not_negative': mostly must be a number from 0 to 1, got 7" in output
    assert "unknown expectation type 'expect_column_values_to_be_uniqe' (did you mean " in output
    assert "expectation 'one_price_in_force': custom SQL must be a SELECT" in output
    assert "unknown query parameter {nope}" in output
    listed = probe(["validate", "list"], env)  # list checks the same things
    assert listed.returncode == 2 and "6 problems in the suites" in listed.stdout + listed.stderr


def test_check_of_the_shipped_suites_imports_neither_prefect_nor_gx(tmp_path) -> None:
    done = probe(["validate", "check"], steward_env(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no problems found" in done.stdout
    assert "imported: []" in done.stdout


@sqlite_only
def test_validate_without_a_prefect_server_runs_in_this_process(app_settings, tmp_path) -> None:
    settings = app_settings()
    env = steward_env(tmp_path, STEWARD_HOME=str(settings.home))
    args = ["validate", "--suite", "orders", "--suite", "order_items", "--scrub", "0"]
    clean = probe(args, env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "critical failures 0" in clean.stdout
    assert "imported: []" in clean.stdout  # no temporary Prefect server, no GX import
    with connect(settings) as conn:
        conn.execute(sa.text("UPDATE orders SET total = total * 2 WHERE id = 6"))
    broken = probe([*args, "--docs"], env)
    output = broken.stdout + broken.stderr
    assert broken.returncode == 1, output
    assert "critical: orders / total_equals_items: 1 unexpected" in output
    assert "Data Docs, orders: file://" in output


@sqlite_only
def test_init_then_validate_passes_and_a_break_is_caught(app_settings, tmp_path) -> None:
    settings = app_settings()
    env = steward_env(tmp_path, STEWARD_HOME=str(settings.home))
    drafted = tmp_path / "drafted"
    init = subprocess.run(
        [steward_bin(), "validate", "init", "--output", str(drafted)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert init.returncode == 0, init.stdout + init.stderr
    assert (drafted / "index.json").is_file() and (drafted / "orders.json").is_file()
    env["STEWARD_VALIDATION__EXPECTATIONS_DIR"] = str(drafted)
    again = subprocess.run(
        [steward_bin(), "validate", "init", "--output", str(drafted)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert again.returncode == 2 and "already exist; pass --force" in again.stdout + again.stderr
    clean = probe(["validate", "--scrub", "0"], env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    with connect(settings) as conn:  # the application deletes order 9 but forgets who and why
        conn.execute(
            sa.text(
                "UPDATE orders SET deleted_at = CURRENT_TIMESTAMP, "
                "updated_at = CURRENT_TIMESTAMP WHERE id = 9"
            )
        )
    broken = probe(["validate", "--suite", "orders", "--scrub", "0"], env)
    assert broken.returncode == 1
    assert "orders: checked updated_at ≥ " in broken.stdout  # incremental: the changed rows
    assert "orders / soft_delete_consistent: 1 unexpected; sample [{'id': 9," in broken.stdout


def steward_bin() -> str:
    return os.path.join(os.path.dirname(sys.executable), "steward")
