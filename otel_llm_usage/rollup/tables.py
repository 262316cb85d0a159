"""Process-wide ledgers keyed by a name from the outside world (agents, tenants).

A tenant or agent name comes from users' traffic: ten thousand distinct names must not make ten
thousand rows. Past `limit` rows, a new name is summed into one overflow row (`OTHER_ROW`), and
`folded` counts the calls that went there, so a reader can tell how much of a total was not kept
apart.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from ..usage import OTHER_ROW, Usage

if TYPE_CHECKING:
    from .budgets import Budget

V = TypeVar("V")

MAX_AGENTS = 1000
MAX_TENANTS = 10_000


class CappedTable(Generic[V]):
    """name -> row, at most `limit` rows of their own plus the overflow row. Thread-safe."""

    __slots__ = ("_factory", "_limit", "_lock", "_rows", "folded")

    def __init__(self, limit: int, factory: Callable[[], V]) -> None:
        self._limit = limit
        self._factory = factory
        self._rows: dict[str, V] = {}
        self._lock = threading.Lock()
        self.folded = 0

    def row(self, name: str) -> V:
        """The row of `name`, made if there is room; else the overflow row."""
        found = self._rows.get(name)  # a dict read is atomic: the common case takes no lock
        if found is not None:
            return found
        with self._lock:
            rows = self._rows
            found = rows.get(name)
            if found is not None:
                return found
            if len(rows) - (OTHER_ROW in rows) >= self._limit or name == OTHER_ROW:
                self.folded += 1
                name = OTHER_ROW
                found = rows.get(name)
                if found is not None:
                    return found
            new = rows[name] = self._factory()
            return new

    def get(self, name: str) -> V | None:
        """The row holding `name`'s totals without making one: its own, the overflow row once
        the table is full, else None."""
        found = self._rows.get(name)
        if found is None and len(self._rows) - (OTHER_ROW in self._rows) >= self._limit:
            return self._rows.get(OTHER_ROW)
        return found

    def items(self) -> list[tuple[str, V]]:
        with self._lock:
            return list(self._rows.items())

    def clear(self) -> None:
        with self._lock:
            self._rows = {}
            self.folded = 0


class TenantLedger:
    """A tenant's totals, and the tenant budgets already reported exceeded for it."""

    __slots__ = ("exceeded", "usage")

    def __init__(self) -> None:
        self.usage = Usage()
        self.exceeded: set[Budget] | None = None


def usages(table: CappedTable[Usage]) -> dict[str, Usage]:
    return {name: u.snapshot() for name, u in table.items()}
