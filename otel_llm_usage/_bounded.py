"""In-process tables keyed by names from the outside world, capped like the SDK caps metric series.

A model, agent or tenant name comes from a response, a framework or the user's traffic: ten
thousand distinct names must not make ten thousand rows. Past `limit` rows, every new name is
folded into one overflow row (`OVERFLOW_KEY`), and `folded` counts the lookups that went there, so
a reader can tell how much of a total belongs to names that were not kept apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

OVERFLOW_KEY = "_other"


class BoundedTable(Generic[K, V]):
    """A dict of at most `limit` rows plus one overflow row, created on first need.

    Not thread-safe by itself: callers already hold the lock that guards the values they update.
    """

    __slots__ = ("_factory", "_limit", "_rows", "folded", "get", "overflow", "overflow_key")

    def __init__(self, limit: int, factory: Callable[[], V], overflow_key: K) -> None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, not {limit!r}")
        self._limit = limit
        self._factory = factory
        self._rows: dict[K, V] = {}
        self.overflow_key = overflow_key
        self.overflow: V | None = None
        self.folded = 0  # lookups of names that found no room, summed into the overflow row
        # The row of a key if it has one of its own, without creating it: the dict's own `get`,
        # so the lookup on a call's path costs no more than a plain dict's.
        self.get: Callable[[K], V | None] = self._rows.get

    def row(self, key: K) -> V:
        """The row of `key`, created if there is room; otherwise the overflow row."""
        found = self._rows.get(key)
        if found is not None:
            return found
        if len(self._rows) < self._limit and key != self.overflow_key:
            new = self._rows[key] = self._factory()
            return new
        self.folded += 1
        if self.overflow is None:
            self.overflow = self._factory()
        return self.overflow

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def __len__(self) -> int:
        """Rows of their own, the overflow row not included."""
        return len(self._rows)

    def items(self) -> Iterator[tuple[K, V]]:
        """Every row, the overflow row last (under `overflow_key`) when anything was folded."""
        yield from self._rows.items()
        if self.overflow is not None:
            yield self.overflow_key, self.overflow

    def clear(self) -> None:
        self._rows.clear()
        self.overflow = None
        self.folded = 0
