"""Where invalidation takes over from a warm: every event committed after a warm read its rows
reaches the cache.

Before a warm reads any row, :meth:`WarmWindow.open` makes sure the invalidation consumer group
exists on every stream the rules watch — created at the stream's end when missing, so the
events relayed from then on are delivered to ``invalidate-cache`` whenever it first runs — and
notes each stream's last entry. (It also records ``{prefix}started:{group}``: a watched stream
that appears later is read by the group from its start.) An event committed after the warm's
database read was relayed after that note.

A running invalidator may apply such an event *before* the warm writes the key it concerns,
which would put the old row back. So after writing (and, for a versioned namespace, flipping
the generation), :meth:`WarmWindow.close` reads the events relayed since the note and deletes
their keys and patterns again (current generation, leases too); a refresh-mode warmer the events
ask to rerun gets a rerun request (see :mod:`steward.cache.reruns`). A versioned namespace needs
no such request: a rerun started after the event takes a newer generation, and a generation
only ever replaces an older one.
"""

from __future__ import annotations

from collections.abc import Iterator

import redis

from steward.cache.keyspace import KeySpace
from steward.cache.reruns import RerunQueue, rerun_key
from steward.cache.rules import KeyDeleter, plan_actions, watched_streams
from steward.outbox import StreamMessage
from steward.settings import Settings
from steward.storage.cache import CacheClient, CommandBatch, translate_errors

__all__ = ["WarmWindow", "started_key"]

_PAGE = 1000


def started_key(prefix: str, group: str) -> str:
    """The key recording that a warm positioned ``group`` on the watched streams."""
    return f"{prefix}started:{group}"


class WarmWindow:
    """The outbox events relayed while one warm unit ran (see the module docstring)."""

    def __init__(self, settings: Settings, cache: CacheClient, refresh_warmers: set[str]) -> None:
        self.rules = list(settings.cache.invalidations)
        self.group = settings.cache.consumer_group
        self.cache = cache
        self.keyspace = KeySpace(cache.redis, cache.prefix)
        self.stream_prefix = cache.prefix + settings.outbox.stream_key_prefix
        self.refresh_warmers = refresh_warmers
        self.reruns = RerunQueue(
            cache.redis, rerun_key(cache.prefix, self.group), cache.display_url
        )
        self.positions: dict[str, str] = {}

    def open(self) -> None:
        """Create the group where missing (at the end) and note each stream's last entry."""
        if not self.rules:
            return
        client = self.cache.redis
        with translate_errors(f"positioning cache invalidation on {self.cache.display_url}"):
            for stream in watched_streams(self.rules, client, self.stream_prefix):
                try:
                    client.xgroup_create(stream, self.group, id="$", mkstream=True)
                except redis.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
                last = client.xrevrange(stream, count=1)
                self.positions[stream] = last[0][0].decode() if last else "0-0"
            client.set(started_key(self.cache.prefix, self.group), "1")

    def close(self) -> int:
        """Apply again the deletes of the events relayed since :meth:`open`; events seen."""
        if not self.rules:
            return 0
        seen = 0
        with translate_errors(f"replaying invalidations on {self.cache.display_url}"):
            streams = watched_streams(self.rules, self.cache.redis, self.stream_prefix)
            for stream in streams:
                for page in self._pages(stream, self.positions.get(stream, "0-0")):
                    seen += len(page)
                    self._apply(stream, page)
        return seen

    def _pages(self, stream: str, after: str) -> Iterator[list[StreamMessage]]:
        while True:
            raw = self.cache.redis.xrange(stream, min=f"({after}", count=_PAGE)
            if not raw:
                return
            page = [StreamMessage.parse(stream, message_id, fields) for message_id, fields in raw]
            yield page
            after = page[-1].message_id

    def _apply(self, stream: str, page: list[StreamMessage]) -> None:
        aggregate = stream[len(self.stream_prefix) :]
        actions = plan_actions(self.rules, [(aggregate, m) for m in page])
        KeyDeleter(self.keyspace).delete(actions)
        asked = actions.warmers & self.refresh_warmers
        if asked:
            commands = CommandBatch()
            self.reruns.add_requests(commands, asked)
            self.cache.send_batch(commands)
