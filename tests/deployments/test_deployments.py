"""deployments/prefect.yaml agrees with the flow catalog, is valid for `prefect deploy`, and
deployments/serve.py builds one runner deployment per entry from it."""

from __future__ import annotations

import importlib.util
import re
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prefect import Flow
from prefect.cli.deploy._models import PrefectYamlModel
from prefect.client.schemas.schedules import CronSchedule
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.templating import find_placeholders

from steward.catalog import FLOWS
from steward.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
PREFECT_FILE = REPO / "deployments" / "prefect.yaml"


def _load_serve() -> ModuleType:
    # By file path, as `python deployments/serve.py` runs it (tests/deployments must not shadow).
    spec = importlib.util.spec_from_file_location(
        "steward_serve_under_test", REPO / "deployments" / "serve.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return yaml.safe_load(PREFECT_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def serve() -> ModuleType:
    return _load_serve()


def _module_entrypoint(file_entrypoint: str) -> str:
    path, _, function = file_entrypoint.rpartition(":")
    return f"{path.removesuffix('.py').replace('/', '.')}:{function}"


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value)]
    return [node] if isinstance(node, str) else []


def test_prefect_yaml_is_valid_for_prefect_deploy(document: dict[str, Any]) -> None:
    model = PrefectYamlModel.model_validate(document)  # what `prefect deploy` validates with

    assert [d.name for d in model.deployments] == [d["name"] for d in document["deployments"]]
    assert len({d.name for d in model.deployments}) == len(model.deployments)
    for deployment in model.deployments:
        # `prefect deploy --all` ignores --pool: each entry must name its work pool itself.
        assert deployment.work_pool and deployment.work_pool.name, deployment.name
    # Every {{ ... }} must be one prefect understands (it has no filters such as `default`).
    for text in _strings(document):
        assert text.count("{{") == len(find_placeholders(text)), text
    # No pull step that needs a variable: `prefect deploy` records the checkout itself.
    assert "pull" not in document
    assert not [text for text in _strings(document) if "{{" in text]


def test_every_catalog_flow_has_a_deployment_and_entrypoints_load(
    document: dict[str, Any],
) -> None:
    deployments = {_module_entrypoint(d["entrypoint"]): d for d in document["deployments"]}
    catalog = {entry.entrypoint: entry for entry in FLOWS.values()}
    assert set(deployments) == set(catalog)

    for entrypoint, deployment in deployments.items():
        file_path, _, function = deployment["entrypoint"].rpartition(":")
        assert (REPO / file_path).is_file(), deployment["entrypoint"]
        flow = load_flow_from_entrypoint(
            f"{REPO / file_path}:{function}", use_placeholder_flow=False
        )
        assert isinstance(flow, Flow)
        assert flow.name == catalog[entrypoint].name


LONG_RUNNING = {"relay-outbox", "invalidate-cache"}
SKIPPABLE = {"check-health"}


def test_overlaps_queue_or_are_dropped_and_services_hold_no_lease(
    document: dict[str, Any],
) -> None:
    for entry in document["deployments"]:
        limit = entry.get("concurrency_limit")
        if entry["name"] in LONG_RUNNING:
            # A deployment limit is a lease renewed with the server: a server restart ends the
            # run. These two are safe side by side and must outlive a restart.
            assert limit is None, entry["name"]
            assert entry["parameters"] == {"forever": True, "max_seconds": 3540}, entry["name"]
            assert [s["cron"] for s in entry["schedules"]] == ["0 * * * *"], entry["name"]
        elif entry["name"] in SKIPPABLE:
            assert limit == {"limit": 1, "collision_strategy": "CANCEL_NEW"}, entry["name"]
        else:
            assert limit == 1, entry["name"]  # ENQUEUE: asked-for work waits its turn


def test_every_schedule_parses(document: dict[str, Any]) -> None:
    for deployment in document["deployments"]:
        for schedule in deployment.get("schedules") or []:
            assert schedule.get("cron"), f"{deployment['name']}: only cron schedules are used"
            CronSchedule(cron=schedule["cron"], timezone=schedule.get("timezone"))


def test_serve_builds_one_runner_deployment_per_entry(
    document: dict[str, Any], serve: ModuleType
) -> None:
    built = serve.build_deployments()

    # Distinct from the `prefect deploy` names: both can live on one server without clashing.
    assert [d.name for d in built] == [
        f"{entry['name']}-served" for entry in document["deployments"]
    ]
    for deployment, entry in zip(built, document["deployments"], strict=True):
        assert type(deployment).__name__ == "RunnerDeployment"
        assert deployment.flow_name == FLOWS[deployment.flow_name].name
        assert deployment.entrypoint.endswith(entry["entrypoint"])
        limit = entry.get("concurrency_limit")
        if isinstance(limit, dict):
            assert deployment.concurrency_limit == limit["limit"]
            assert deployment.concurrency_options.collision_strategy == limit["collision_strategy"]
        else:
            assert deployment.concurrency_limit == limit
        assert deployment.tags == entry["tags"]
        assert deployment.parameters == (entry.get("parameters") or {})
        crons = [s.schedule.cron for s in deployment.schedules]
        assert crons == [s["cron"] for s in entry.get("schedules") or []]


def _write_flow_project(tmp_path: Path, deployments_yaml: str) -> Path:
    (tmp_path / "sample_flow.py").write_text(
        textwrap.dedent(
            """
            from prefect import flow

            @flow(name="sample-flow")
            def sample(size: int = 1) -> dict:
                return {"size": size}
            """
        )
    )
    path = tmp_path / "prefect.yaml"
    path.write_text(
        textwrap.dedent(deployments_yaml).replace("FLOW", str(tmp_path / "sample_flow.py"))
    )
    return path


def test_serve_translates_every_schedule_kind_and_option(
    tmp_path: Path, serve: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAMPLE_SIZE_FROM_ENV", "5")
    path = _write_flow_project(
        tmp_path,
        """
        deployments:
          - name: nightly
            entrypoint: FLOW:sample
            tags: [a, b]
            concurrency_limit: 1
            parameters: {size: "{{ $SAMPLE_SIZE_FROM_ENV }}"}
            schedules:
              - {cron: "30 2 * * *", timezone: Europe/Berlin}
              - {interval: 60, active: false}
              - {rrule: "FREQ=WEEKLY;BYDAY=MO"}
          - name: on-demand
            entrypoint: FLOW:sample
        """,
    )

    nightly, on_demand = serve.build_deployments(path)

    assert (nightly.name, on_demand.name) == ("nightly-served", "on-demand-served")
    assert nightly.flow_name == "sample-flow" and nightly.concurrency_limit == 1
    assert nightly.parameters == {"size": "5"}
    cron, interval, rrule = (s.schedule for s in nightly.schedules)
    assert (cron.cron, cron.timezone) == ("30 2 * * *", "Europe/Berlin")
    assert interval.interval.total_seconds() == 60 and nightly.schedules[1].active is False
    assert rrule.rrule.endswith("FREQ=WEEKLY;BYDAY=MO")
    assert on_demand.schedules == [] and on_demand.concurrency_limit is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("deployments: {name: x}", "expected a `deployments:` list"),
        ("deployments:\n  - {name: x}", "needs a name and an entrypoint"),
        (
            "deployments:\n  - {name: x, entrypoint: 'FLOW:sample', schedules: [{timezone: UTC}]}",
            "without cron, interval or rrule",
        ),
    ],
)
def test_serve_names_what_is_wrong_in_the_file(
    tmp_path: Path, serve: ModuleType, body: str, message: str
) -> None:
    path = _write_flow_project(tmp_path, body)

    with pytest.raises(ConfigError, match=re.escape(message)):
        serve.build_deployments(path)


@pytest.mark.parametrize(
    ("flow_name", "parameters", "reason"),
    [
        ("check-health", {"timeout_seconds": 0}, "less than the minimum of 0.1"),
        ("relay-outbox", {"batch_size": -5}, "less than the minimum of 1"),
        ("validate-data", {"fail_on": "sometimes"}, "'sometimes' is not one of"),
        ("nightly", {"skip": ["warm-cahce"]}, "'warm-cahce' is not one of"),
        ("cleanup-outbox", {"older_than_days": -1}, "less than the minimum of 0"),
        ("invalidate-cache", {"max_events": 0}, "less than the minimum of 1"),
        ("backup-databases", {"sources": ["databse"]}, "'databse' is not one of"),
    ],
)
def test_the_parameter_schema_a_server_enforces_refuses_bad_values(
    flow_name: str, parameters: dict[str, Any], reason: str
) -> None:
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools.validation import ValidationError, validate

    from steward.catalog import load_flow

    schema = parameter_schema(load_flow(flow_name).fn).model_dump_for_openapi()
    with pytest.raises(ValidationError, match=reason):  # what the server runs at run creation
        validate(parameters, schema, raise_on_error=True)
    validate({}, schema, raise_on_error=True)  # the defaults pass
