"""Session ledgers: a store bounded in number (least recently used out) and in idle time."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _fork
from .. import semconv as sc
from ..usage import Usage
from .calls import CallBuffer
from .run import audio_totals

if TYPE_CHECKING:
    from .budgets import Budget

_T = TypeVar("_T")


class SessionLedger:
    __slots__ = ("budgets", "calls", "exceeded", "last_seen", "metric_attrs", "runs", "session_id", "usage")

    def __init__(self, session_id: str, metric_attrs: dict[str, Any], now: float) -> None:
        self.session_id = session_id
        self.usage = Usage()
        self.runs = 0
        self.last_seen = now
        self.metric_attrs = metric_attrs
        self.budgets: tuple[Budget, ...] = ()
        self.exceeded: set[Budget] | None = None  # budgets already reported exceeded here
        self.calls: CallBuffer | None = None  # made with the session's first call entry


class Sessions:
    """Session ledgers, least recently used first; bounded in number and idle time.

    Every access first drops the sessions idle for longer than the timeout. They are at the front
    of the LRU order, so the check costs O(1) plus O(1) per session dropped. `on_evict` gets the
    ledgers dropped, outside the lock.
    """

    def __init__(
        self,
        max_sessions: int,
        idle_seconds: float,
        clock: Callable[[], float],
        on_evict: Callable[[list[SessionLedger]], None],
    ) -> None:
        self.lock = _fork.lock()
        self.items: OrderedDict[str, SessionLedger] = OrderedDict()
        self.max = max(1, max_sessions)
        self.idle = idle_seconds if idle_seconds > 0 else float("inf")
        self.clock = clock
        self.on_evict = on_evict

    def _expire_locked(self, now: float, out: list[SessionLedger]) -> None:
        items = self.items
        while items:
            oldest = next(iter(items.values()))
            if now - oldest.last_seen <= self.idle:
                return
            items.popitem(last=False)
            out.append(oldest)

    def _touch_locked(
        self,
        session_id: str,
        now: float,
        metric_attrs: Callable[[], dict[str, Any]],
        out: list[SessionLedger],
    ) -> SessionLedger:
        items = self.items
        s = items.get(session_id)
        if s is None:
            s = items[session_id] = SessionLedger(session_id, metric_attrs(), now)
            while len(items) > self.max:
                out.append(items.popitem(last=False)[1])
        else:
            items.move_to_end(session_id)
            s.last_seen = now
        return s

    def update(
        self,
        session_id: str,
        metric_attrs: Callable[[], dict[str, Any]],
        fn: Callable[[SessionLedger], _T],
    ) -> _T:
        """`fn` applied to the session's ledger (created if needed), under the store lock."""
        evicted: list[SessionLedger] = []
        try:
            with self.lock:
                now = self.clock()
                self._expire_locked(now, evicted)
                return fn(self._touch_locked(session_id, now, metric_attrs, evicted))
        finally:
            if evicted:
                self.on_evict(evicted)

    def read(self, session_id: str, fn: Callable[[SessionLedger | None], _T]) -> _T:
        """`fn` applied to the session's ledger if held (None if not), without renewing it."""
        evicted: list[SessionLedger] = []
        try:
            with self.lock:
                self._expire_locked(self.clock(), evicted)
                return fn(self.items.get(session_id))
        finally:
            if evicted:
                self.on_evict(evicted)

    def pop(self, session_id: str) -> SessionLedger | None:
        with self.lock:
            return self.items.pop(session_id, None)

    def pop_all(self) -> list[SessionLedger]:
        with self.lock:
            out = list(self.items.values())
            self.items.clear()
            return out

    def held(self) -> list[SessionLedger]:
        """The ledgers held now, the idle ones dropped first."""
        evicted: list[SessionLedger] = []
        try:
            with self.lock:
                self._expire_locked(self.clock(), evicted)
                return list(self.items.values())
        finally:
            if evicted:
                self.on_evict(evicted)

    def snapshots(self) -> dict[str, Usage]:
        evicted: list[SessionLedger] = []
        try:
            with self.lock:
                self._expire_locked(self.clock(), evicted)
                return {sid: s.usage.snapshot() for sid, s in self.items.items()}
        finally:
            if evicted:
                self.on_evict(evicted)


def session_totals(s: SessionLedger | None) -> dict[str, Any]:
    """The `llm_usage.session.*` attributes of a session's totals so far."""
    if s is None:
        return {}
    u = s.usage
    return {
        sc.SESSION_REQUESTS: u.requests,
        sc.SESSION_RUNS: s.runs,
        sc.SESSION_COST_USD: u.cost_usd,
        sc.SESSION_INPUT_TOKENS: u.input_tokens,
        sc.SESSION_OUTPUT_TOKENS: u.output_tokens,
        sc.SESSION_USAGE_MISSING_REQUESTS: u.usage_missing_requests,
        **audio_totals(u, sc.SESSION_AUDIO_INPUT_TOKENS, sc.SESSION_AUDIO_OUTPUT_TOKENS),
    }
