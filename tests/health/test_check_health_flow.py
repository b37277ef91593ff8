"""The ``check-health`` flow: Completed with its artifacts when every store is up, Failed (so
automations can notify) naming the store when one is down, bad parameters refused."""

from __future__ import annotations

import socket

import pytest
from prefect.exceptions import ParameterTypeError

from flows.check_health import check_health
from steward.errors import SourceUnavailable
from tests.conftest import read_artifacts

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_all_up_completes_with_a_table_per_store(make_settings, pg_url, redis_url) -> None:
    make_settings(database__url=pg_url, cache__url=redis_url)

    state = check_health(return_state=True)

    assert state.is_completed()
    report = state.result()
    assert report["ok"] and report["components"]["database"]["stats"]["connections"] >= 1
    artifacts = read_artifacts(state.state_details.flow_run_id)
    assert "all up: database, cache, objects" in artifacts["health-check"]["description"]
    assert "max_connections" in artifacts["health-check-stats"]["data"]


def test_a_down_store_fails_the_run_naming_it(make_settings) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    make_settings(cache__url=f"redis://127.0.0.1:{port}/0")

    state = check_health(timeout_seconds=0.5, return_state=True)

    assert state.is_failed()
    with pytest.raises(SourceUnavailable, match="cache DOWN .*check cache.url") as raised:
        state.result()
    assert str(raised.value).count("check cache.url") == 1  # said once, not twice
    assert "cache" in read_artifacts(state.state_details.flow_run_id)["health-check"]["description"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"timeout_seconds": 0}, "timeout_seconds.*greater than or equal to 0.1"),
        ({"object_limit": 0}, "object_limit.*greater than or equal to 1"),
    ],
)
def test_bad_parameters_are_refused(make_settings, params, message) -> None:
    make_settings()

    state = check_health(**params, return_state=True)

    with pytest.raises(ParameterTypeError, match=message):
        state.result()
