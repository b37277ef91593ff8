"""Warmer reruns asked for by invalidation events: recorded, coalesced, run beside the deletes.

The invalidator records a batch's rerun requests (``HINCRBY {prefix}reruns:{group} warmer 1``)
in the same write as the batch's acknowledgement, before the ``XACK``: an acknowledged event's
rerun is never lost, a crash leaves it recorded and the next run does it. Key deletes never
wait for a rerun: :class:`RerunWorker` runs them on its own thread, in *rounds*. A round takes
a snapshot of the requests, reruns every warmer named once (a versioned namespace's warmers
together), then subtracts what it took; requests that arrived meanwhile (events committed
while the round read the database) stay for the next round. However many events ask for a
warmer during a round, it reruns once more after it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from steward.errors import is_transient
from steward.outbox import backoff_delay, describe_error
from steward.storage.cache import CommandBatch, translate_errors

__all__ = ["RerunQueue", "RerunWorker", "rerun_key"]

log = logging.getLogger(__name__)

# Subtracts a round's snapshot; a warmer with nothing left asked for is removed.
_COMPLETE = """
for i = 1, #ARGV, 2 do
  if redis.call('HINCRBY', KEYS[1], ARGV[i], -tonumber(ARGV[i + 1])) <= 0 then
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return 1
"""


def rerun_key(prefix: str, group: str) -> str:
    """The hash of ``group``'s recorded warmer rerun requests (warmer -> requests)."""
    return f"{prefix}reruns:{group}"


class RerunQueue:
    """The recorded rerun requests of one consumer group: warmer -> requests outstanding."""

    def __init__(self, client: redis.Redis, key: str, display_url: str) -> None:
        self.client = client
        self.key = key
        self.display_url = display_url
        self._complete = client.register_script(_COMPLETE)

    def add_requests(self, commands: CommandBatch, warmers: set[str]) -> None:
        """Queue the requests on ``commands`` (sent with the batch's acknowledgement)."""
        for name in sorted(warmers):
            commands.add(b"HINCRBY", self.key.encode(), name.encode(), b"1")

    def snapshot(self) -> dict[str, int]:
        with translate_errors(f"reading warmer rerun requests on {self.display_url}"):
            raw = self.client.hgetall(self.key)
        return {k.decode(): int(v) for k, v in raw.items()}

    def complete(self, taken: dict[str, int]) -> None:
        if not taken:
            return
        args = [x for name, count in sorted(taken.items()) for x in (name, count)]
        with translate_errors(f"recording warmer reruns done on {self.display_url}"):
            self._complete(keys=[self.key], args=args)


class RerunWorker:
    """Runs rounds of recorded reruns on a thread until stopped; deletes never wait for it.

    ``rerun(names)`` warms the named warmers and returns keys written per warmer. The requests
    of a failed round stay recorded. Without ``keep_going`` (a one-off run) the first failure
    ends the worker and :meth:`finish` raises it; with it (long-running invalidation) a
    transient failure (Redis or the database away) is retried with jittered backoff and any
    other after ``max_backoff``, each reported through ``report``.
    """

    def __init__(
        self,
        queue: RerunQueue,
        rerun: Callable[[list[str]], dict[str, int]],
        *,
        keep_going: bool,
        report: Callable[[str], None],
        max_backoff: float = 30.0,
    ) -> None:
        self.queue = queue
        self.rerun = rerun
        self.keep_going = keep_going
        self.report = report
        self.max_backoff = max_backoff
        self.refreshed: dict[str, int] = {}
        self.error: BaseException | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._asked = 0  # wake() calls so far
        self._empty_at = -1  # the value of _asked when a look last found nothing recorded
        self._thread = threading.Thread(target=self._run, name="cache-reruns", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """New requests were recorded: start a round soon."""
        with self._lock:
            self._asked += 1
        self._wake.set()

    def idle(self) -> bool:
        """True when a look after the last :meth:`wake` found nothing recorded (or it ended)."""
        with self._lock:
            return self._empty_at == self._asked or not self._thread.is_alive()

    def finish(self) -> dict[str, int]:
        """Stop after the current round; keys written per warmer. Raises a failure it hit."""
        self.abandon()
        if self.error is not None:
            raise self.error
        return self.totals()

    def abandon(self, *, wait: bool = True) -> None:
        """Stop after the current round (what is left stays recorded for the next run)."""
        self._stop.set()
        self._wake.set()
        if wait:
            self._thread.join()

    def totals(self) -> dict[str, int]:
        with self._lock:
            return dict(self.refreshed)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._wake.clear()
            with self._lock:
                asked = self._asked
            try:
                done = self._round()
                failures = 0
            except Exception as exc:
                failures += 1
                if not self.keep_going:  # a one-off run: fail; the requests stay recorded
                    self.error = exc
                    return
                self._backoff(exc, failures)
                continue
            if not done:
                with self._lock:
                    self._empty_at = asked
                self._wake.wait(1.0)  # recorded by a warm or another invalidator? look again

    def _round(self) -> bool:
        """One round; False when nothing was recorded."""
        taken = self.queue.snapshot()
        if not taken:
            return False
        started = time.monotonic()
        written = self.rerun(sorted(taken))
        self.queue.complete(taken)
        with self._lock:
            for name, keys in written.items():
                self.refreshed[name] = self.refreshed.get(name, 0) + keys
        log.info("warmers rerun: %s in %.1f s", ", ".join(taken), time.monotonic() - started)
        return True

    def _backoff(self, exc: BaseException, failures: int) -> None:
        transient = is_transient(exc)
        delay = (
            backoff_delay(failures, base=0.5, maximum=self.max_backoff, jitter=0.5)
            if transient
            else self.max_backoff
        )
        self.report(
            f"warmer rerun failed ({describe_error(exc)}); requests kept, retry in {delay:.1f} s"
        )
        self._stop.wait(delay)
