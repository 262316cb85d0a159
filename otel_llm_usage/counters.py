"""Cumulative sums of the per-call counters, kept in process and read at each metric collection.

Every synchronous OpenTelemetry measurement copies, validates and hashes its attribute set. One call
adds to up to seven counter series (five token buckets, the cost, the unpriced count) that share
one attribute set, so the sums live here instead: one lookup and a few additions per call, under a
lock. The recorder's observable counters report them when a reader collects.

Calls that ended without usage are counted apart (`add_missing`), by the same attributes plus the
endpoint's `server.address`: they are rare, and the host is what names the server that sends none.

The number of attribute sets is bounded as the SDK bounds a metric stream: past `limit`, new sets
are summed into the one overflow series the OpenTelemetry specification names.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping
from typing import Any

from . import _fork
from .semconv import SERVER_ADDRESS
from .usage import TokenUsage

OVERFLOW_ATTRIBUTES: Mapping[str, Any] = {"otel.metric.overflow": True}
DEFAULT_LIMIT = 2000  # the SDK's default cardinality limit per metric stream

Key = frozenset[tuple[str, Any]]


class Sums:
    """One attribute set's totals. cache_write, reasoning and the audio buckets exist as series once
    one was non-zero; cost once a call was priced; unpriced once a call was not."""

    __slots__ = (
        "attributes",
        "audio_input",
        "audio_output",
        "cache_read",
        "cache_write",
        "cost",
        "input",
        "output",
        "reasoning",
        "unpriced",
    )

    def __init__(self, attributes: Mapping[str, Any]) -> None:
        self.attributes = attributes
        self.input = 0
        self.output = 0
        self.cache_read = 0
        self.cache_write = 0
        self.reasoning = 0
        self.audio_input = 0
        self.audio_output = 0
        self.cost: float | None = None
        self.unpriced = 0


class CallCounters:
    __slots__ = ("__weakref__", "_limit", "_lock", "_missing", "_overflow", "_series")

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self._limit = limit
        self._lock = _fork.lock()
        self._series: dict[Key, Sums] = {}
        self._overflow: Sums | None = None
        self._missing: dict[Key, list[Any]] = {}  # key -> [attributes, calls]
        _instances.add(self)

    def _restart(self) -> None:
        """In a forked child: its own calls only, from zero (see `_restart_in_child`)."""
        self._series = {}
        self._overflow = None
        self._missing = {}

    def add(self, attributes: Mapping[str, Any], usage: TokenUsage | None, cost: float | None) -> None:
        """One call's usage and cost. A call with usage but no cost counts as unpriced."""
        try:  # inline rather than _key(): this runs for every call
            key = frozenset(attributes.items())
        except TypeError:
            key = _key(attributes)
        with self._lock:
            sums = self._series.get(key) or self._new(key, attributes)
            if usage is not None:
                sums.input += usage.input
                sums.output += usage.output
                sums.cache_read += usage.cache_read
                sums.cache_write += usage.cache_write
                sums.reasoning += usage.reasoning
                if usage.input_audio or usage.output_audio:
                    sums.audio_input += usage.input_audio
                    sums.audio_output += usage.output_audio
                if cost is None:
                    sums.unpriced += 1
            if cost is not None:
                sums.cost = cost if sums.cost is None else sums.cost + cost

    def _new(self, key: Key, attributes: Mapping[str, Any]) -> Sums:
        if len(self._series) < self._limit:
            sums = self._series[key] = Sums(dict(attributes))
            return sums
        if self._overflow is None:
            self._overflow = Sums(OVERFLOW_ATTRIBUTES)
        return self._overflow

    def add_missing(self, attributes: Mapping[str, Any], server_address: str | None) -> None:
        """One call that ended, without error, and without usage."""
        attrs = {**attributes, SERVER_ADDRESS: server_address} if server_address else dict(attributes)
        key = _key(attrs)
        with self._lock:
            entry = self._missing.get(key)
            if entry is None:
                if len(self._missing) >= self._limit:
                    attrs, key = dict(OVERFLOW_ATTRIBUTES), _key(OVERFLOW_ATTRIBUTES)
                    entry = self._missing.get(key)
                if entry is None:
                    entry = self._missing[key] = [attrs, 0]
            entry[1] += 1

    def missing(self) -> list[tuple[Mapping[str, Any], int]]:
        """(attributes, calls without usage) of every series, copied."""
        with self._lock:
            return [(attrs, n) for attrs, n in self._missing.values()]

    def series(self) -> Iterator[Sums]:
        """A consistent copy of every attribute set's sums."""
        with self._lock:
            rows = list(self._series.values())
            if self._overflow is not None:
                rows.append(self._overflow)
            copies = [_copy(s) for s in rows]
        return iter(copies)


def _key(attributes: Mapping[str, Any]) -> Key:
    try:
        return frozenset(attributes.items())
    except TypeError:  # a list among the user's metric attributes
        return frozenset((k, tuple(v) if isinstance(v, list) else v) for k, v in attributes.items())


# A forked child is a process of its own, with its own `process.pid` resource (the SDK resets it), so
# its counters start from zero: carrying the parent's sums over would count every call the parent
# made before the fork once more per child.
_instances: weakref.WeakSet[CallCounters] = weakref.WeakSet()


def _restart_in_child() -> None:
    for counters in list(_instances):
        counters._restart()


_fork.on_fork_in_child(_restart_in_child)


def _copy(s: Sums) -> Sums:
    c = Sums(s.attributes)
    c.input, c.output, c.cache_read, c.cache_write = s.input, s.output, s.cache_read, s.cache_write
    c.reasoning, c.cost, c.unpriced = s.reasoning, s.cost, s.unpriced
    c.audio_input, c.audio_output = s.audio_input, s.audio_output
    return c
