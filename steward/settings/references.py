"""Secret settings that name a Prefect Secret block: ``database.url = "prefect-secret:NAME"``.

Credentials then live in the Prefect server, not in every worker's environment or steward.toml.
Any secret setting (a ``SecretStr`` field: database.url, cache.url, documents.url,
backup.age_identity, ...) may hold such a reference; it is replaced by the block's value when the
settings are loaded, i.e. when the flow run (or command) first needs them, before the field's own
checks run. The value is a ``SecretStr`` like any other secret: masked in ``steward config show``,
logs, artifacts and errors.

Steward's core never imports Prefect: the resolver is registered by ``tasks.secrets``, loaded
here by name the first time a reference is met (as the catalog loads flows).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import BaseModel, SecretStr

from steward.errors import ConfigError

__all__ = ["SECRET_BLOCK_PREFIX", "register_secret_resolver", "resolve_secret_references"]

SECRET_BLOCK_PREFIX = "prefect-secret:"
RESOLVER_MODULE = "tasks.secrets"

_resolvers: list[Callable[[str], str]] = []


def register_secret_resolver(resolver: Callable[[str], str]) -> None:
    """Use ``resolver(block_name) -> value`` for references (LookupError: no such block)."""
    _resolvers[:] = [resolver]


def resolve_secret_references(model: type[BaseModel], data: Any) -> Any:
    """``data`` (the raw settings input) with every secret field's reference resolved."""
    if not isinstance(data, dict):
        return data
    for path in _secret_paths(model):
        parent: Any = data
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        raw = parent.get(path[-1])
        text = raw.get_secret_value() if isinstance(raw, SecretStr) else raw
        if isinstance(text, str) and text.startswith(SECRET_BLOCK_PREFIX):
            parent[path[-1]] = _resolve(".".join(path), text.removeprefix(SECRET_BLOCK_PREFIX))
    return data


def _secret_paths(
    model: type[BaseModel], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if annotation is SecretStr:
            yield (*prefix, name)
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _secret_paths(annotation, (*prefix, name))


def _resolve(path: str, name: str) -> str:
    shown = f"{path} = '{SECRET_BLOCK_PREFIX}{name}'"
    if not name.strip():
        raise ConfigError(f"{shown}: name the Secret block after the colon")
    if not _resolvers:
        try:
            importlib.import_module(RESOLVER_MODULE)  # registers the Prefect resolver
        except ImportError as exc:
            raise ConfigError(f"{shown}: Prefect Secret blocks need Prefect ({exc})") from None
    try:
        return _resolvers[0](name)
    except LookupError as exc:
        raise ConfigError(f"{shown}: {exc}") from None
