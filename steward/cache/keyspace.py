"""Where Steward's cache keys live, versioned generations, and deletion by SCAN + UNLINK.

Layout under ``cache.key_prefix`` (``steward:`` by default)::

    {prefix}{key}                        refresh-mode keys (product:42)
    {prefix}{namespace}:v{n}:{key}       versioned keys, generation n
    {prefix}{namespace}:current          "v{n}": the generation readers use
    {prefix}{namespace}:generation       counter handing out generation numbers
    {prefix}stats:{namespace}            hash: hits, misses (cache-aside counters)
    {prefix}lock:{key}                   a cache-aside fill's lease (versioned: lock:{ns}:{key})

A generation becomes visible in one step (a script that moves ``current`` forward only), so a
reader never sees a half-written one. Old generations are removed with SCAN + UNLINK in
batches, never KEYS.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

import redis

from steward.cache.shapes import READ_VERSIONED, Shape
from steward.storage.cache import BulkSender, CommandBatch

__all__ = ["KeySpace", "glob_escape", "parse_generation"]

# Moves {ns}:current to ARGV[1] ("v<n>") unless it already names a newer generation.
# Returns {1, previous} when it moved, {0, current} when a newer generation was current.
_FLIP = """
local current = redis.call('GET', KEYS[1])
if current and tonumber(string.sub(current, 2)) >= tonumber(string.sub(ARGV[1], 2)) then
  return {0, current}
end
redis.call('SET', KEYS[1], ARGV[1])
return {1, current or ''}
"""


_GENERATION = re.compile(r"^v(\d+)$")


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a Redis glob (``*?[]\\`` escaped)."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def parse_generation(text: str | bytes | None) -> int | None:
    """``"v12"`` -> 12; None for anything else."""
    if isinstance(text, bytes):
        text = text.decode()
    match = _GENERATION.match(text or "")
    return int(match.group(1)) if match else None


class KeySpace:
    """Key names and generation bookkeeping for one Redis client and key prefix."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._flip = client.register_script(_FLIP)
        self._read = client.register_script(READ_VERSIONED)

    def key(self, logical: str) -> str:
        return self.prefix + logical

    def current_key(self, namespace: str) -> str:
        return f"{self.prefix}{namespace}:current"

    def generation_prefix(self, namespace: str, generation: int) -> str:
        return f"{self.prefix}{namespace}:v{generation}:"

    def lease_key(self, logical: str, namespace: str | None = None) -> str:
        """The lease (stampede lock) of a cache-aside fill of ``logical``."""
        return f"{self.prefix}lock:{namespace + ':' if namespace else ''}{logical}"

    def stats_key(self, namespace: str) -> str:
        return f"{self.prefix}stats:{namespace}"

    def current_generation(self, namespace: str) -> int | None:
        return parse_generation(self.client.get(self.current_key(namespace)))

    def next_generation(self, namespace: str) -> int:
        """A generation number no other warm of ``namespace`` has used."""
        return int(self.client.incr(f"{self.prefix}{namespace}:generation"))

    def flip(self, namespace: str, generation: int) -> tuple[bool, int | None]:
        """Make ``generation`` current (atomically); returns (moved, previous generation)."""
        moved, other = self._flip(keys=[self.current_key(namespace)], args=[f"v{generation}"])
        return bool(moved), parse_generation(other)

    def read_versioned(
        self, namespace: str, key: str, shape: Shape = "json"
    ) -> tuple[int | None, Any]:
        """(current generation, raw read of ``key`` in it as ``shape``), in one step."""
        current, value = self._read(
            keys=[self.current_key(namespace)], args=[f"{self.prefix}{namespace}:", key, shape]
        )
        return parse_generation(current), value or None

    def resolve(self, logical: str, namespace: str | None) -> str | None:
        """The full key of ``logical``: in ``namespace``'s current generation when given."""
        if namespace is None:
            return self.key(logical)
        generation = self.current_generation(namespace)
        if generation is None:
            return None
        return self.generation_prefix(namespace, generation) + logical

    def scan(self, match: str, *, count: int = 1000, limit: int | None = None) -> Iterator[bytes]:
        """Keys matching ``match`` (a full-key glob), by SCAN; stops after ``limit`` keys."""
        seen = 0
        for key in self.client.scan_iter(match=match, count=count):
            yield key
            seen += 1
            if limit is not None and seen >= limit:
                return

    def count_matching(self, match: str, *, count: int = 1000) -> int:
        """How many keys match ``match`` (a full SCAN, no key is held)."""
        return sum(1 for _ in self.scan(match, count=count))

    def unlink_matching(self, match: str, *, batch: int = 1000) -> int:
        """UNLINK every key matching ``match`` in batches (SCAN, never KEYS); how many."""
        return self.unlink(self.scan(match, count=batch), batch=batch)

    def unlink(self, keys: Iterable[Any], *, batch: int = 1000) -> int:
        removed, chunk = 0, []
        for key in keys:
            chunk.append(key)
            if len(chunk) >= batch:
                removed += int(self.client.unlink(*chunk))
                chunk = []
        if chunk:
            removed += int(self.client.unlink(*chunk))
        return removed

    def unlink_in_order(self, first: list[str], then: list[str], *, batch: int = 1000) -> int:
        """UNLINK every key of ``first``, then every key of ``then``, in one write (Redis runs a
        connection's commands in order); how many keys of ``then`` existed."""
        if not first and not then:
            return 0
        commands = CommandBatch()
        for start in range(0, len(first), batch):
            commands.add(b"UNLINK", *(k.encode() for k in first[start : start + batch]))
        skip = commands.count
        for start in range(0, len(then), batch):
            commands.add(b"UNLINK", *(k.encode() for k in then[start : start + batch]))
        sender = BulkSender(self.client)
        try:
            sender.send(commands)
            replies = sender.flush()
        finally:
            sender.close()
        return sum(int(n) for n in replies[skip:])

    def remove_old_generations(self, namespace: str, current: int) -> int:
        """UNLINK every generation of ``namespace`` older than ``current``; keys removed."""
        pattern = glob_escape(f"{self.prefix}{namespace}:") + "v*:*"
        cut = len(f"{self.prefix}{namespace}:")

        def older() -> Iterator[bytes]:
            for key in self.scan(pattern):
                generation = parse_generation(key[cut:].split(b":", 1)[0])
                if generation is not None and generation < current:
                    yield key

        return self.unlink(older())

    def remove_generation(self, namespace: str, generation: int) -> int:
        """UNLINK one generation (a failed warm's partial one)."""
        return self.unlink_matching(
            glob_escape(self.generation_prefix(namespace, generation)) + "*"
        )
