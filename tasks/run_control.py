"""Prefect-side controls for flows the ``steward`` CLI runs in its own process.

``steward/`` never imports Prefect, so the CLI's flow runner loads this module by name (as the
catalog loads flows):

- :func:`watch_runs` adds an ``on_running`` hook to a flow that hands each flow run id to a
  callback (the CLI's Ctrl-C watchdog marks it Crashed if the process must be ended before
  Prefect could report the crash itself);
- :func:`mark_crashed` sets a run that is not final to Crashed;
- :func:`stop_local_api_servers` stops the temporary API server Prefect started here;
- :func:`hide_console_tracebacks` keeps the console to one line for expected errors (the run's
  log stored in Prefect keeps the traceback).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

from prefect.logging.handlers import PrefectConsoleHandler

__all__ = ["hide_console_tracebacks", "mark_crashed", "stop_local_api_servers", "watch_runs"]


def watch_runs(flow: Any, on_run: Callable[[UUID], None]) -> Any:
    """``flow`` with an extra ``on_running`` hook calling ``on_run(flow_run.id)``."""

    def hand_over(_flow: Any, flow_run: Any, _state: Any) -> None:
        on_run(flow_run.id)

    return flow.with_options(on_running=[*flow.on_running_hooks, hand_over])


def mark_crashed(flow_run_id: UUID, message: str) -> None:
    """Set the flow run to Crashed unless it already reached a final state."""
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        if run.state is None or not run.state.is_final():
            client.set_flow_run_state(flow_run_id, Crashed(message=message), force=True)


def stop_local_api_servers() -> None:
    """Stop the temporary API server(s) Prefect started in this process, if any."""
    from prefect.server.api.server import SubprocessASGIServer

    for server in list(SubprocessASGIServer._instances.values()):
        server.stop()


class _WithoutTraceback(logging.Formatter):
    """Console formatter that leaves out the traceback of expected errors."""

    def __init__(self, inner: logging.Formatter, quiet: Callable[[BaseException], bool]) -> None:
        super().__init__()
        self.inner, self.quiet = inner, quiet

    def format(self, record: logging.LogRecord) -> str:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or not self.quiet(exc):
            return self.inner.format(record)
        bare = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
        return self.inner.format(bare)


def hide_console_tracebacks(quiet: Callable[[BaseException], bool]) -> None:
    """Prefect's console handlers print errors for which ``quiet(exc)`` without a traceback."""
    loggers = [logging.getLogger(), *map(logging.getLogger, logging.root.manager.loggerDict)]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            formatter = handler.formatter
            if isinstance(handler, PrefectConsoleHandler) and not isinstance(
                formatter, _WithoutTraceback
            ):
                handler.setFormatter(_WithoutTraceback(formatter or logging.Formatter(), quiet))
