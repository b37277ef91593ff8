"""Prefect events for what operators automate on (an automation's trigger matches their names).

===================================  ===========================  ================================
event                                resource id                  payload
===================================  ===========================  ================================
``steward.backup.verified``          ``steward.backup.<id>``      source, engine, tables, rows
``steward.backup.verification-failed`` ``steward.backup.<id>``    source, problem
``steward.validation.failed``        ``steward.validation.<suite>``  suite, critical, warning,
                                                                  failures (expectation, count)
``steward.outbox.dead-letters``      ``steward.outbox.<table>``   went_dead (this run), dead (all),
                                                                  reasons
``steward.archive.rows-kept``        ``steward.archive.<table>``  kept, reason, rows_archived
===================================  ===========================  ================================

Emitted from inside the flow run, so each event is related to the run, its flow, its deployment
and its tags (``steward``): an automation can match on those too. Texts are masked (no password
of a URL ever leaves in an event). Emitting never fails a run: events are best effort, the
artifacts and the run's state stay the record.
"""

from __future__ import annotations

from typing import Any

from prefect.events import emit_event
from prefect.logging import get_logger

from steward.settings import mask_text

__all__ = ["emit_steward_event"]

_logger = get_logger("steward.events")


def emit_steward_event(event: str, kind: str, name: str, payload: dict[str, Any]) -> None:
    """Emit ``steward.<event>`` about resource ``steward.<kind>.<name>`` with ``payload``.

    Args:
        event: The event name after ``steward.``, e.g. ``backup.verified``.
        kind: The resource kind: backup, validation, outbox, archive.
        name: The resource's own name (a backup id, a suite, a table).
        payload: JSON-able details; strings are masked.
    """
    try:
        emit_event(
            event=f"steward.{event}",
            resource={
                "prefect.resource.id": f"steward.{kind}.{name}",
                "prefect.resource.name": name,
                "steward.kind": kind,
            },
            payload=_masked(payload),
        )
    except Exception as exc:  # an event is never worth a failed run
        _logger.warning("could not emit steward.%s for %s %s: %s", event, kind, name, exc)


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(item) for item in value]
    return value
