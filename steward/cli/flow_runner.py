"""Run a catalogued flow in this process, from ``key=value`` parameters.

The command modules (``run``, ``demo``, ``migrate``, ``outbox``...) all import this module; it
imports none of them.
"""

from __future__ import annotations

import json
import os
from typing import Any

import typer

from steward.catalog import load_flow

__all__ = ["parse_params", "run_flow"]


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``k=v`` pairs into a dict; values are JSON when they parse, strings otherwise."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--param {pair!r}: expected key=value")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def run_flow(name: str, params: dict[str, Any]) -> Any:
    """Run a catalogued flow in this process and return its summary."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    flow = load_flow(name)
    return flow(**_bind_params(flow, params))


def _bind_params(flow: Any, params: dict[str, Any]) -> dict[str, Any]:
    # Flows take one pydantic parameters model named `params`; accept its fields flat too.
    import inspect

    signature = inspect.signature(flow.fn)
    if list(signature.parameters) == ["params"] and "params" not in params:
        model = signature.parameters["params"].annotation
        if isinstance(model, str):
            model = flow.fn.__globals__[model]
        return {"params": model(**params)}
    return params
