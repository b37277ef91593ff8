"""Ctrl-C: one line saying what state was left and how to resume, exit code 130, promptly.

Every data-moving command is safe to interrupt at any point (a rerun resumes), so on Ctrl-C the
CLI says so and exits. Normally Python raises KeyboardInterrupt, Prefect marks the interrupted
flow run Crashed and :func:`exit_interrupted` prints the line. But a main thread blocked in a
driver call, or a task still working in a runner thread, can hold the process for minutes. So
the first Ctrl-C also starts a watchdog (it learns of the signal through a wakeup file
descriptor, which works even when the main thread cannot run Python code): after a few seconds
it runs the registered clean-ups (the flow runner marks its run Crashed), prints the line and
ends the process. A second Ctrl-C ends it at once.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import NoReturn

__all__ = [
    "EXIT_INTERRUPTED",
    "exit_interrupted",
    "install_interrupt_watchdog",
    "on_abandon",
    "state_left",
]

EXIT_INTERRUPTED = 130
GRACE_SECONDS = 5.0

_GENERIC = "work finished so far is kept; run the same command again to resume"
# What each command leaves behind when interrupted, and how a rerun resumes it.
_STATE_LEFT = {
    "archive": "every row is still in the source or in a verified archive object; run "
    "`steward archive` again to finish (no duplicates)",
    "restore": "rows restored so far are kept; run the same `steward restore` again (rows "
    "already back are skipped)",
    "demo-data": "the demo tables may be partly filled; run `steward demo-data --replace` to "
    "fill them again",
    "demo": "finished steps are kept; run `steward demo` again (it refills the demo data)",
    "migrate": "each migration applies in its own transaction, so the database is at the last "
    "finished revision (`steward migrate --status`); run the command again to continue",
    "tier": "objects moved so far keep their new storage class; run `steward tier` again to "
    "move the rest",
    "outbox": "events being relayed stay claimed until their lease ends, then are delivered "
    "again (at least once); run the command again to continue",
    "run": _GENERIC,
}

_cleanups: list[Callable[[], None]] = []
_sockets: list[socket.socket] = []
_said = threading.Event()
_watchdog_started = threading.Event()


# `steward run FLOW` leaves what the command running the same flow leaves.
_COMMAND_OF_FLOW = {
    "archive-to-s3": "archive",
    "restore-archive": "restore",
    "migrate": "migrate",
    "tier-archives": "tier",
    "relay-outbox": "outbox",
}
_OPTIONS_WITH_VALUE = ("-p", "--param")


def state_left(argv: list[str]) -> str:
    """The sentence for the command named in ``argv`` (the first word that is not an option);
    for ``run FLOW``, the sentence of the command that runs that flow."""
    words = _words(argv[1:])
    command = words[0] if words else ""
    if command == "run" and len(words) > 1:
        command = _COMMAND_OF_FLOW.get(words[1], "run")
    return _STATE_LEFT.get(command, _GENERIC)


def _words(args: list[str]) -> list[str]:
    """The arguments that are not options nor the values of ``-p``."""
    words, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in _OPTIONS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            words.append(arg)
    return words


def on_abandon(cleanup: Callable[[], None]) -> None:
    """Run ``cleanup`` if the process has to be ended before the interrupt unwound it."""
    _cleanups.append(cleanup)


def _say(argv: list[str]) -> None:
    if not _said.is_set():
        _said.set()
        sys.stderr.write(f"interrupted: {state_left(argv)}\n")
        sys.stderr.flush()


def _abandon(argv: list[str]) -> None:
    for cleanup in reversed(_cleanups):  # last registered first, like atexit
        try:
            cleanup()
        except Exception:  # noqa: S110 - the process is ending; nothing else to do
            pass
    _say(argv)
    os._exit(EXIT_INTERRUPTED)


def _start_watchdog(argv: list[str]) -> None:
    if _watchdog_started.is_set():
        return
    _watchdog_started.set()
    timer = threading.Timer(GRACE_SECONDS, _abandon, args=(argv,))
    timer.daemon = True
    timer.start()


def install_interrupt_watchdog(argv: list[str]) -> None:
    """Call once from the main thread before running a command."""

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if _watchdog_started.is_set() and _said.is_set():
            os._exit(EXIT_INTERRUPTED)  # a second Ctrl-C after the line: stop now
        _start_watchdog(argv)
        raise KeyboardInterrupt

    reader, writer = socket.socketpair()
    writer.setblocking(False)
    _sockets.extend((reader, writer))  # closed when collected: keep them for the process

    def watch() -> None:
        while data := reader.recv(16):
            # A command that handles Ctrl-C itself (a relay finishing its batch) keeps its own.
            if signal.SIGINT in data and signal.getsignal(signal.SIGINT) is on_sigint:
                _start_watchdog(argv)

    signal.signal(signal.SIGINT, on_sigint)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    threading.Thread(target=watch, name="steward-interrupt-watch", daemon=True).start()


def exit_interrupted(argv: list[str]) -> NoReturn:
    """Print the one line, then exit 130 (the watchdog ends the process if exit stalls)."""
    _start_watchdog(argv)
    _say(argv)
    sys.exit(EXIT_INTERRUPTED)
