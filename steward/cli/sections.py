"""Concern-specific command groups. Each entry is ``register(app)`` from its own module."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from steward.cli import (
    archive,
    backup,
    cache,
    data,
    health,
    init,
    install,
    migrate,
    outbox,
    tiering,
    validate,
)

SUBCOMMANDS: list[Callable[[Any], None]] = [
    migrate.register,
    data.register,
    tiering.register,
    outbox.register,
    archive.register,
    backup.register,
    health.register,
    validate.register,
    cache.register,
    init.register,
    install.register,
]
