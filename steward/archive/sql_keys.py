"""Keys given by an operator (command line, flow parameter) as a SQL table's key columns'
Python types: a composite key as a list or a JSON array."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from steward.errors import ConfigError

__all__ = ["coerce_value", "key_parts"]


def key_parts(value: Any, names: str) -> list[Any]:
    """A composite key's values: given as a list, or as a JSON array (``names``: its columns)."""
    if isinstance(value, list | tuple):
        return list(value)
    try:
        parts = json.loads(str(value))
    except ValueError:
        parts = None
    if not isinstance(parts, list):
        raise ConfigError(
            f"key {value!r} is not a composite key ({names}): give a JSON array, "
            'e.g. [42, "2026-01-31T00:00:00Z"]'
        )
    return parts


def coerce_value(column: sa.Column, value: Any, table: str) -> Any:
    """``value`` as ``column``'s Python type (a UUID, a timestamp or date from ISO text)."""
    python_type = column.type.python_type
    try:
        if python_type is uuid.UUID:
            return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
        if python_type in (datetime, date) and isinstance(value, str):
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if python_type is datetime else parsed.date()
        return value if isinstance(value, python_type) else python_type(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"key {value!r} is not a valid {python_type.__name__} for {table}.{column.name}"
        ) from None
