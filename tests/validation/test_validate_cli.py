"""``steward validate``: exit 0 when the data holds, 1 with the failures named when a critical
expectation fails, 2 with one clear line for a bad suite; ``validate list`` reads the index."""

from __future__ import annotations

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
    assert "│ 7 " in outbox and "│ 1 " in outbox  # 7 expectations, 1 of them a warning


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
