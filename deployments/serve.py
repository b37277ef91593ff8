"""Serve every Steward deployment from one process: ``python deployments/serve.py``.

``deployments/prefect.yaml`` is the single source of truth: the deployments served here are the
ones ``prefect deploy --all`` registers, with the same names, schedules, parameters, tags and
concurrency limits. Each flow is loaded from its entrypoint (a path relative to the repository
root, which is made importable so the script runs from anywhere), turned into a
``RunnerDeployment`` with ``flow.to_deployment(...)``, and all of them are served together with
``prefect.serve``. Work-pool settings in the file are ignored: serving runs the flows here.

Served deployments are named ``<name>-served`` (``archive-to-s3/archive-to-s3-served``): a
server can hold both these and the ``prefect deploy`` ones (which run on the work pool), and a
run of one never lands on the other's runner (a name clash made served runs crash at ``…/None``).
Stopping serve (Ctrl-C) pauses every deployment it served; they resume when serve starts again.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
PREFECT_FILE = Path(__file__).resolve().parent / "prefect.yaml"

if str(REPO_ROOT) not in sys.path:  # `python deployments/serve.py` puts deployments/ first
    sys.path.insert(0, str(REPO_ROOT))

from steward.errors import ConfigError  # noqa: E402  (needs the repository root on sys.path)

__all__ = ["SERVED_SUFFIX", "build_deployments", "load_deployment_specs", "main"]

SERVED_SUFFIX = "-served"


def load_deployment_specs(path: Path = PREFECT_FILE) -> list[dict[str, Any]]:
    """The ``deployments:`` entries of a prefect.yaml, ``{{ $ENV }}`` placeholders resolved."""
    import yaml
    from prefect.utilities.templating import apply_values

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the deployments file ({exc})") from None
    specs = document.get("deployments") if isinstance(document, dict) else None
    if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
        raise ConfigError(f"{path}: expected a `deployments:` list of mappings")
    for spec in specs:
        if not spec.get("name") or not spec.get("entrypoint"):
            raise ConfigError(f"{path}: every deployment needs a name and an entrypoint: {spec}")
    return [apply_values(spec, os.environ, remove_notset=False) for spec in specs]


def build_deployments(path: Path = PREFECT_FILE) -> list[Any]:
    """One ``RunnerDeployment`` per entry of the deployments file (nothing is registered yet)."""
    from prefect.flows import load_flow_from_entrypoint

    deployments = []
    for spec in load_deployment_specs(path):
        file_part, _, function = spec["entrypoint"].rpartition(":")
        entrypoint = f"{REPO_ROOT / file_part}:{function}"
        flow = load_flow_from_entrypoint(entrypoint, use_placeholder_flow=False)
        deployments.append(
            flow.to_deployment(
                name=f"{spec['name']}{SERVED_SUFFIX}",
                description=spec.get("description"),
                tags=list(spec.get("tags") or []),
                parameters=dict(spec.get("parameters") or {}),
                schedules=[_schedule(spec["name"], s) for s in spec.get("schedules") or []],
                concurrency_limit=_concurrency_limit(spec.get("concurrency_limit")),
                paused=spec.get("paused"),
                version=spec.get("version"),
            )
        )
    return deployments


def _concurrency_limit(spec: int | dict[str, Any] | None) -> Any:
    """A prefect.yaml ``concurrency_limit`` (a number, or limit + collision_strategy)."""
    if not isinstance(spec, dict):
        return spec
    from prefect.client.schemas.objects import ConcurrencyLimitConfig

    return ConcurrencyLimitConfig(**spec)


def _schedule(deployment: str, spec: dict[str, Any]) -> Any:
    """A prefect.yaml schedule entry (cron, interval or rrule + options) as a Schedule."""
    from prefect.schedules import Cron, Interval, RRule

    options = {
        key: spec[key]
        for key in ("timezone", "active", "parameters", "slug")
        if spec.get(key) is not None
    }
    if spec.get("cron"):
        return Cron(spec["cron"], day_or=spec.get("day_or", True), **options)
    if spec.get("interval"):
        anchor = spec.get("anchor_date")
        anchor_date = dt.datetime.fromisoformat(anchor) if isinstance(anchor, str) else anchor
        return Interval(spec["interval"], anchor_date=anchor_date, **options)
    if spec.get("rrule"):
        return RRule(spec["rrule"], **options)
    raise ConfigError(
        f"deployments/prefect.yaml: deployment {deployment!r} has a schedule without cron, "
        f"interval or rrule: {spec}"
    )


def main() -> None:
    """Serve all deployments until interrupted (Ctrl-C pauses every served deployment)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect import serve

    serve(*build_deployments())


if __name__ == "__main__":
    main()
