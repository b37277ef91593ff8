"""``[[cache.invalidations]]`` applied to events: which keys go, which warmers rerun, which streams.

:func:`plan_actions` turns ``(aggregate_type, message)`` pairs into :class:`Actions` (logical
keys and patterns per namespace, warmer names). :class:`KeyDeleter` carries out the deletions:
each key with its cache-aside lease in one ``UNLINK`` (so a fill that was loading meanwhile
cannot write its value back), each pattern by SCAN + UNLINK of the keys and of their leases.
:func:`watched_streams` lists the outbox streams the rules listen to.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import redis

from steward.cache.keyspace import KeySpace, glob_escape
from steward.outbox import StreamMessage
from steward.settings import InvalidationRule

__all__ = ["Actions", "Deleted", "KeyDeleter", "plan_actions", "watched_streams"]

_GLOB = re.compile(r"[*?\[]")


@dataclass
class Actions:
    """What a batch of events asks for: logical keys / patterns per namespace, warmers."""

    keys: set[tuple[str | None, str]] = field(default_factory=set)
    patterns: set[tuple[str | None, str]] = field(default_factory=set)
    warmers: set[str] = field(default_factory=set)
    matched: int = 0
    unmatched: int = 0


@dataclass
class Deleted:
    """Keys removed by one :meth:`KeyDeleter.delete` (leases not counted)."""

    keys: int = 0
    pattern_keys: int = 0


class _Rule:
    def __init__(self, rule: InvalidationRule) -> None:
        self.rule = rule
        self.events = re.compile("|".join(fnmatch.translate(p) for p in rule.events))

    def matches(self, name: str) -> bool:
        return self.events.match(name) is not None


def plan_actions(
    rules: Iterable[InvalidationRule], messages: Iterable[tuple[str, StreamMessage]]
) -> Actions:
    """The cache changes ``(aggregate_type, message)`` pairs ask for under ``rules``."""
    compiled = [_Rule(rule) for rule in rules]
    actions = Actions()
    for aggregate_type, message in messages:
        values = {
            "aggregate_id": message.aggregate_id,
            "aggregate_type": aggregate_type,
            "event_type": message.event_type,
            "event_id": message.event_id,
        }
        hits = [c.rule for c in compiled if c.matches(f"{aggregate_type}.{message.event_type}")]
        actions.matched += bool(hits)
        actions.unmatched += not hits
        for rule in hits:
            actions.keys.update((rule.namespace, t.format(**values)) for t in rule.delete_keys)
            if rule.patterns:  # values are literal text inside a glob
                escaped = {name: glob_escape(value) for name, value in values.items()}
                actions.patterns.update(
                    (rule.namespace, t.format(**escaped)) for t in rule.patterns
                )
            actions.warmers.update(rule.warmers)
    return actions


def watched_streams(
    rules: Iterable[InvalidationRule], client: redis.Redis, stream_prefix: str
) -> list[str]:
    """Streams of the aggregate types the rules name (every existing one for wildcards)."""
    literal, wildcard = set(), False
    for rule in rules:
        for pattern in rule.events:
            aggregate = pattern.split(".", 1)[0]
            wildcard = wildcard or bool(_GLOB.search(aggregate))
            literal.add(aggregate)
    found = set()
    if wildcard:
        match = glob_escape(stream_prefix) + "*"
        found = {k.decode() for k in client.scan_iter(match=match, _type="STREAM")}
    named = {stream_prefix + a for a in literal if not _GLOB.search(a)}
    return sorted(named | found)


class KeyDeleter:
    """Deletes what :class:`Actions` name, resolving versioned namespaces' current generation."""

    def __init__(self, keyspace: KeySpace) -> None:
        self.keyspace = keyspace

    def delete(self, actions: Actions) -> Deleted:
        """UNLINK the keys (leases first), then SCAN + UNLINK the patterns (leases first).

        A lease removed before its key means no fill can land between the two deletes.
        """
        deleted = Deleted()
        generations = self._generations(actions)
        leases, values = [], []
        for namespace, logical in actions.keys:
            leases.append(self.keyspace.lease_key(logical, namespace))
            full = self._full(namespace, logical, generations)
            if full is not None:  # None: never warmed, but a fill may be loading anyway
                values.append(full)
        deleted.keys = self.keyspace.unlink_in_order(leases, values)
        for namespace, pattern in actions.patterns:
            lease_glob = glob_escape(self.keyspace.lease_key("", namespace)) + pattern
            self.keyspace.unlink_matching(lease_glob)
            full = self._full(namespace, pattern, generations, glob=True)
            if full is not None:
                deleted.pattern_keys += self.keyspace.unlink_matching(full)
        return deleted

    def _generations(self, actions: Actions) -> dict[str, int | None]:
        spaces = {ns for ns, _ in actions.keys | actions.patterns if ns is not None}
        return {ns: self.keyspace.current_generation(ns) for ns in spaces}

    def _full(
        self,
        namespace: str | None,
        logical: str,
        generations: dict[str, int | None],
        *,
        glob: bool = False,
    ) -> str | None:
        if namespace is None:
            prefix = self.keyspace.prefix
        else:
            generation = generations.get(namespace)
            if generation is None:
                return None  # never warmed: nothing to invalidate
            prefix = self.keyspace.generation_prefix(namespace, generation)
        return (glob_escape(prefix) if glob else prefix) + logical
