"""Run a catalogued flow in this process, from ``key=value`` parameters.

Parameters are checked against the flow's own signature before anything runs: an unknown name
is refused with the closest valid one, and each value is validated with the parameter's type
(pydantic, with its constraints), so a bad ``-p`` is one clear :class:`ConfigError` line.
The command modules (``run``, ``demo``, ``migrate``, ``outbox``...) all import this module; it
imports none of them.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
import typing
from typing import Any

from steward.catalog import load_flow
from steward.cli.interrupts import on_abandon, state_left
from steward.errors import ConfigError, SourceUnavailable, StewardError, closest_name

__all__ = [
    "bind_params",
    "expected_error",
    "parse_params",
    "prefect_api_configured",
    "run_flow",
]


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``k=v`` pairs into a dict; values are JSON when they parse, strings otherwise."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"-p {pair!r}: expected key=value, e.g. -p dry_run=true")
        if key in params:
            raise ConfigError(f"-p {key}: given twice; give each parameter once")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


# Prefect starts a temporary API server for flows run here; its default 20 s start-up timeout is
# too short on a loaded machine. Set before Prefect is imported (a user's own value wins).
EPHEMERAL_STARTUP_TIMEOUT_S = "180"
RUN_CONTROL = "tasks.run_control"
_EPHEMERAL_TIMEOUT = "Timed out while attempting to connect to ephemeral Prefect API server"


def run_flow(name: str, params: dict[str, Any]) -> Any:
    """Run a catalogued flow in this process (parameters validated first); return its summary."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault(
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", EPHEMERAL_STARTUP_TIMEOUT_S
    )
    flow = load_flow(name)
    bound = bind_params(flow, params)
    try:
        return _prepare(flow)(**bound)
    except RuntimeError as exc:
        if _EPHEMERAL_TIMEOUT not in str(exc):
            raise
        waited = os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]
        raise SourceUnavailable(
            f"the local Prefect API server did not start within {waited} s (is the machine "
            "busy?); run the command again, raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_"
            "SECONDS, or start `prefect server start` once and set PREFECT_API_URL to it"
        ) from None


def prefect_api_configured() -> bool:
    """Whether runs go to a Prefect server: ``PREFECT_API_URL`` in the environment or in the
    active Prefect profile (read as TOML: importing Prefect costs a second or more).
    """
    if os.environ.get("PREFECT_API_URL"):
        return True
    import tomllib
    from pathlib import Path

    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect")
    path = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml")
    try:
        profiles = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return False
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active") or "ephemeral"
    profile = (profiles.get("profiles") or {}).get(active) or {}
    return bool(profile.get("PREFECT_API_URL"))


def expected_error(exc: BaseException) -> bool:
    """An error that is the user's to fix and says so in one line (no traceback needed)."""
    from steward.storage import refused_value

    return isinstance(exc, StewardError) or refused_value(exc) is not None


def _run_control() -> Any:
    # Prefect-side helpers; loaded by name because steward/ never imports Prefect (like flows).
    return importlib.import_module(RUN_CONTROL)


def _prepare(flow: Any) -> Any:
    """The flow, wired for the CLI: quiet tracebacks of Steward errors, crash report on Ctrl-C."""
    control = _run_control()
    control.hide_console_tracebacks(expected_error)

    def on_run(flow_run_id: Any) -> None:
        message = f"interrupted (Ctrl-C) in `steward`: {state_left(sys.argv)}"
        on_abandon(lambda: control.mark_crashed(flow_run_id, message))

    on_abandon(control.stop_local_api_servers)
    return control.watch_runs(flow, on_run)


def bind_params(flow: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Check ``params`` against the flow's parameters; return them validated (typed).

    Raises:
        ConfigError: an unknown parameter (with the closest valid name), or a value of the wrong
            type or out of range (naming the parameter, the value and what is accepted).
    """
    signature = inspect.signature(flow.fn)
    hints = typing.get_type_hints(flow.fn, include_extras=True)
    names = list(signature.parameters)
    bound: dict[str, Any] = {}
    for key, value in params.items():
        if key not in signature.parameters:
            raise ConfigError(_unknown(flow.name, key, names))
        bound[key] = _validate(flow.name, key, hints.get(key, Any), value)
    return bound


def _unknown(flow_name: str, key: str, names: list[str]) -> str:
    guess = closest_name(key, names)
    hint = f"did you mean {guess!r}? " if guess else ""
    return f"-p {key}: {flow_name} has no parameter {key!r}; {hint}parameters: {', '.join(names)}"


def _validate(flow_name: str, key: str, annotation: Any, value: Any) -> Any:
    from pydantic import TypeAdapter, ValidationError

    adapter: TypeAdapter[Any] = TypeAdapter(annotation)
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:  # `-p target=-1` parsed as JSON; the parameter wants the text
                return adapter.validate_python(json.dumps(value))
            except ValidationError:
                pass
        shown = value if isinstance(value, str) else json.dumps(value)
        hint = _closest_allowed(exc, annotation)
        raise ConfigError(
            f"-p {key}={shown}: {_reasons(exc)}{hint} ({flow_name} parameter)"
        ) from None


def _closest_allowed(exc: Any, annotation: Any) -> str:
    """``; did you mean 'x'?`` for a misspelt allowed value (a Literal), or nothing."""
    allowed = [value for value in _literal_values(annotation) if isinstance(value, str)]
    for err in exc.errors():
        if err["type"] == "literal_error" and isinstance(err.get("input"), str):
            guess = closest_name(err["input"], allowed, cutoff=0.4)
            if guess:
                return f"; did you mean {guess!r}?"
    return ""


def _literal_values(annotation: Any) -> list[Any]:
    """Every value a ``Literal`` anywhere inside ``annotation`` allows."""
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    return [value for arg in typing.get_args(annotation) for value in _literal_values(arg)]


def _reasons(exc: Any) -> str:
    messages = list(dict.fromkeys(str(err["msg"]) for err in exc.errors()))
    if len(messages) > 1:  # `int | None` also says "Input should be None": noise
        messages = [m for m in messages if m != "Input should be None"]
    return "; ".join(messages)
