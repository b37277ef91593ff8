"""What a health check returns: one :class:`ComponentHealth` per store, gathered in a
:class:`HealthReport`.

A component is ``up`` (reached, with its latency and stats), ``down`` (not reached; ``error``
says why and what to check) or ``not configured`` (optional stores such as MongoDB). Stats that
a backend cannot give are absent, never invented.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from steward.errors import StewardError

__all__ = ["DOWN", "NOT_CONFIGURED", "UP", "ComponentHealth", "HealthReport", "probe"]

Status = Literal["up", "down", "not configured"]
UP: Status = "up"
DOWN: Status = "down"
NOT_CONFIGURED: Status = "not configured"


@dataclass
class ComponentHealth:
    """Reachability, latency and stats of one store (``target`` is a masked URL)."""

    name: str
    status: Status
    target: str
    latency_ms: float | None = None
    error: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def down(self) -> bool:
        return self.status == DOWN

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class HealthReport:
    """Every component checked at ``checked_at``; ``ok`` when none is down."""

    components: list[ComponentHealth]
    checked_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    elapsed_ms: float = 0.0

    @property
    def ok(self) -> bool:
        """No store down, and nothing failing that breaks a promise (WAL archiving)."""
        return not any(c.down for c in self.components) and not self.failing

    @property
    def failing(self) -> list[str]:
        """Problems of stores that are up which fail the check (e.g. WAL archiving failing)."""
        return [line for c in self.components for line in c.stats.get("failing", [])]

    @property
    def down(self) -> list[ComponentHealth]:
        return [c for c in self.components if c.down]

    @property
    def attention(self) -> list[str]:
        """Problems of stores that are up: tomorrow's slowdowns (stale statistics, dead
        tuples, wraparound...), each a line naming what and what to do."""
        return [line for c in self.components for line in c.stats.get("attention", [])]

    def component(self, name: str) -> ComponentHealth | None:
        return next((c for c in self.components if c.name == name), None)

    def headline(self) -> str:
        """One line: all up, or which components are down and why."""
        if self.ok:
            up = [c.name for c in self.components if c.status == UP]
            return f"all up: {', '.join(up)}"
        return "; ".join([f"{c.name} DOWN ({c.error})" for c in self.down] + self.failing)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked_at": self.checked_at,
            "elapsed_ms": self.elapsed_ms,
            "headline": self.headline(),
            "attention": self.attention,
            "components": {c.name: c.to_dict() for c in self.components},
        }


def probe(
    name: str,
    target: str,
    reach: Callable[[], Any],
    errors: tuple[type[BaseException], ...],
    *,
    hint: str,
) -> tuple[ComponentHealth, Any]:
    """Call ``reach`` once, timing it; ``errors`` it raises mean the component is down.

    ``hint`` (what to check) follows a raw driver error; a Steward error already says it.
    """
    started = time.perf_counter()
    try:
        handle = reach()
    except errors as exc:
        error = _one_line(exc) if isinstance(exc, StewardError) else f"{_one_line(exc)}; {hint}"
        return ComponentHealth(name, DOWN, target, error=error), None
    latency = round((time.perf_counter() - started) * 1000, 2)
    return ComponentHealth(name, UP, target, latency_ms=latency), handle


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
