"""Process-wide ledgers keyed by a name from the outside world (agents, tenants).

A tenant or agent name comes from users' traffic: ten thousand distinct names must not make ten
thousand rows. Past the limit, a new name is summed into one overflow row (`_other`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from .. import _fork
from .._bounded import BoundedTable
from ..usage import OTHER_ROW, Usage

if TYPE_CHECKING:
    from .budgets import Budget

V = TypeVar("V")

MAX_AGENTS = 1000
MAX_TENANTS = 10_000


class CappedTable(Generic[V]):
    """A `BoundedTable` (at most `limit` rows of their own plus the overflow row) with a lock of its
    own: rows are read without it, made under it."""

    __slots__ = ("_limit", "_lock", "_table")

    def __init__(self, limit: int, factory: Callable[[], V]) -> None:
        self._limit = limit
        self._table: BoundedTable[str, V] = BoundedTable(limit, factory, OTHER_ROW)
        self._lock = _fork.lock()

    def row(self, name: str) -> V:
        """The row of `name`, made if there is room; else the overflow row."""
        found = self._table.get(name)  # a dict read: the common case takes no lock
        if found is not None:
            return found
        with self._lock:
            return self._table.row(name)

    def get(self, name: str) -> V | None:
        """The row holding `name`'s totals without making one: its own, the overflow row once the
        table is full, else None."""
        table = self._table
        found = table.get(name)
        if found is None and len(table) >= self._limit:
            return table.overflow
        return found

    @property
    def folded(self) -> int:
        """Lookups of names that found no room."""
        return self._table.folded

    def items(self) -> list[tuple[str, V]]:
        with self._lock:
            return list(self._table.items())

    def clear(self) -> None:
        with self._lock:
            self._table.clear()


class TenantLedger:
    """A tenant's totals, and the tenant budgets already reported exceeded for it."""

    __slots__ = ("exceeded", "usage")

    def __init__(self) -> None:
        self.usage = Usage()
        self.exceeded: set[Budget] | None = None


def usages(table: CappedTable[Usage]) -> dict[str, Usage]:
    return {name: u.snapshot() for name, u in table.items()}
