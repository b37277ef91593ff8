"""When a task is retried: only after a transient Steward error (``retry_condition_fn``), and
only while the ``task_retries`` setting is on."""

from __future__ import annotations

from typing import Any

from steward.errors import is_transient
from steward.settings import get_settings

__all__ = ["retry_transient"]


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only when the task failed with a transient Steward error (and retries are on)."""
    exc = state.result(raise_on_failure=False)  # the task's own exception on a failed state
    return isinstance(exc, BaseException) and is_transient(exc) and get_settings().task_retries
