"""Why a configuration is refused, in words: key path, closest valid key, never a secret.

- :func:`describe_errors` turns pydantic's validation errors into one line per bad key. An
  unknown key names the closest valid key at the same place and never shows its value (a
  misspelt ``uri`` or ``passwd`` holds a secret); a bad value is shown masked.
- :func:`check_environment` refuses ``STEWARD_*`` variables that name no setting
  (``STEWARD_DATABSE__URL``): pydantic-settings silently ignores them.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from steward.errors import ConfigError, closest_name
from steward.settings.masking import shown_value

__all__ = ["NOT_SETTINGS", "check_environment", "describe_errors"]

ENV_PREFIX = "STEWARD_"
# Location parts pydantic adds for the member types of a union (`str`, `int`, `list[str]`...).
_UNION_MEMBER = re.compile(r"str|int|bool|float|list\[.*\]|dict\[.*\]|[a-z-]+\[.*\]|none")
# STEWARD_* variables that are not settings: the config file's path, and the test suite's
# service locations (tests/conftest.py).
NOT_SETTINGS = ("STEWARD_CONFIG", "STEWARD_TEST_")


def check_environment(root: type[BaseModel], environ: Mapping[str, str]) -> None:
    """Raise ConfigError naming every ``STEWARD_*`` variable whose section is not a setting."""
    sections = {name.upper() for name in root.model_fields}
    problems = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper.startswith(NOT_SETTINGS):
            continue
        section, *rest = upper[len(ENV_PREFIX) :].split("__")
        if section not in sections:
            guess = _env_guess(root, section, rest)
            hint = f"; did you mean {guess!r}?" if guess else ""
            problems.append(f"  {name}: not a Steward setting{hint}")
    if len(problems) == 1:
        raise ConfigError(
            f"unknown environment variable {problems[0].strip()} (value not shown); fix the "
            "name or unset it"
        )
    if problems:
        raise ConfigError(
            "unknown STEWARD_* environment variables (values not shown):\n"
            + "\n".join(problems)
            + "\n  fix the names or unset them; `steward config show` lists every setting"
        )


def describe_errors(root: type[BaseModel], exc: ValidationError) -> str:
    """One line per error: key path, masked value, what is accepted, where to set it."""
    lines: list[str] = []
    grouped: dict[str, list[Any]] = {}
    for err in exc.errors():  # a union reports one error per member: one line per key
        loc = [str(p) for p in err["loc"]]
        while loc and _UNION_MEMBER.fullmatch(loc[-1]):
            loc.pop()
        grouped.setdefault(".".join(loc), []).append(err)
    for path, errs in grouped.items():
        err = errs[0]
        loc = path.split(".") if path else []
        path = path or "(root)"
        env_name = ENV_PREFIX + "__".join(p.upper() for p in loc if not p.isdigit())
        if err["type"] == "extra_forbidden":
            valid = sorted(_fields_at(root, loc[:-1]))
            guess = _closest(loc[-1], valid) if valid else ""
            lines.append(
                f"  {path}: unknown setting (value not shown){guess}; "
                f"valid keys here: {', '.join(valid) or 'none'}"
            )
            continue
        shown = shown_value(path, err.get("input"))
        reasons = " or ".join(dict.fromkeys(str(e["msg"]) for e in errs))
        lines.append(f"  {path} = {shown}: {reasons} (set in steward.toml or {env_name})")
    if len(lines) == 1:  # one bad key: one line
        return "invalid Steward configuration: " + lines[0].strip()
    return "invalid Steward configuration:\n" + "\n".join(lines)


def _env_guess(root: type[BaseModel], section: str, rest: list[str]) -> str | None:
    """The variable a misspelt one meant, whole: ``STEWARD_DATABSE__URL`` ->
    ``STEWARD_DATABASE__URL`` (each nested key matched at its level), else its section alone."""
    first = closest_name(section, list(root.model_fields))
    if first is None:
        return None
    loc = [first]
    for part in rest:
        valid = _fields_at(root, loc)
        match = closest_name(part, valid) if valid else None
        if match is None:
            return ENV_PREFIX + loc[0].upper()
        loc.append(match)
    return ENV_PREFIX + "__".join(p.upper() for p in loc)


def _closest(name: str, candidates: list[str]) -> str:
    guess = closest_name(name, candidates)
    return f"; did you mean {guess!r}?" if guess else ""


def _fields_at(root: type[BaseModel], loc: list[str]) -> list[str]:
    """Field names of the model found by following ``loc`` from ``root`` (list indexes skipped)."""
    model: Any = root
    for part in loc:
        if part.isdigit():
            continue
        field = model.model_fields.get(part) if _is_model(model) else None
        if field is None:
            return []
        model = _model_in(field.annotation)
    return list(model.model_fields) if _is_model(model) else []


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def _model_in(annotation: Any) -> Any:
    """The BaseModel inside ``X``, ``list[X]``, ``X | None``, ``dict[str, X]``; else None."""
    if _is_model(annotation):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, dict, typing.Union, types.UnionType, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
