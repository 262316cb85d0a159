"""`Run`: the live ledger of one run, and the interval maths of its latency."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import trace

from .. import _fork
from .. import semconv as sc
from ..usage import TokenUsage, Usage
from .calls import CallBuffer, CallLog, CallRecord

if TYPE_CHECKING:
    from .budgets import Budget

RUN: Final = "run"
ROOT: Final = "root"  # a local root span that is not a run: collects the calls made outside any run


class Run:
    """One run: an agent invocation, or the calls under a local root span outside any run.

    `usage` is live: it counts every LLM call beneath the run, calls of nested runs included, each
    once. A call that ends after the run ended is not added (it still counts in its session).
    """

    __slots__ = (
        "_calls",
        "_closed",
        "_first_out_ns",
        "_intervals",
        "_lock",
        "_max_util",
        "_span",
        "_t0",
        "_t0_ns",
        "agent",
        "budgets",
        "exceeded",
        "kind",
        "metric_attrs",
        "name",
        "owned",
        "parent",
        "run_id",
        "session_id",
        "span_id",
        "usage",
    )

    def __init__(
        self,
        name: str,
        agent: str | None,
        *,
        run_id: str,
        session_id: str | None = None,
        parent: Run | None = None,
        kind: str = RUN,
        span: trace.Span | None = None,
        span_id: int = 0,
        owned: bool = False,
        metric_attrs: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.agent = agent
        self.run_id = run_id
        self.session_id = session_id
        self.parent = parent
        self.kind = kind
        self.usage = Usage()
        self.span_id = span_id  # of the span this run was made for (0: none)
        self.owned = owned  # opened by `run()`, which ends it; else ended with its span
        self.metric_attrs = metric_attrs
        self.budgets: tuple[Budget, ...] = ()  # the run's own, from `run(budgets=...)`
        self.exceeded: set[Budget] | None = None  # budgets already reported exceeded here
        self._span = span
        self._closed = False
        self._lock = _fork.lock()
        self._t0 = time.perf_counter()
        self._t0_ns = time.time_ns()
        self._first_out_ns: int | None = None
        self._intervals: list[tuple[int, int]] = []
        self._max_util: float | None = None
        self._calls: CallBuffer | None = None

    @property
    def calls(self) -> CallLog:
        """The run's LLM calls, nested runs' included, oldest first: the newest `max_call_records`
        (an `instrument()` option, 1,000 by default); `calls.dropped` counts the older ones."""
        with self._lock:
            buf = self._calls
            return buf.log() if buf is not None else CallLog()

    @property
    def calls_dropped(self) -> int:
        """Calls of this run no longer in `calls` (beyond the cap)."""
        buf = self._calls
        return buf.dropped if buf is not None else 0

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def span(self) -> trace.Span | None:
        """The run's span while the run is open."""
        return self._span

    @property
    def start_ns(self) -> int:
        """When the run started, wall clock."""
        return self._t0_ns

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self._t0

    def add_call(
        self,
        model: str,
        tokens: TokenUsage | None,
        cost: float | None,
        error: bool,
        interval: tuple[int, int, int | None] | None,
        utilization: float | None,
        response_model: str | None = None,
        record: CallRecord | None = None,
        cap: int = 0,
    ) -> bool:
        """Count one finished call; False (nothing counted) if the run has already ended.

        `interval` is the call's (start, end, first output) in wall-clock ns; `record` its entry,
        kept among the newest `cap`.
        """
        with self._lock:
            if self._closed:
                return False
            self.usage.add_call(model, tokens, cost, error, response_model=response_model)
            if record is not None:
                buf = self._calls
                if buf is None:
                    buf = self._calls = CallBuffer(cap)
                buf.append(record)
            if interval is not None:
                start, end, first = interval
                self._intervals.append((start, end))
                if first is not None and (self._first_out_ns is None or first < self._first_out_ns):
                    self._first_out_ns = first
            if utilization is not None and (self._max_util is None or utilization > self._max_util):
                self._max_util = utilization
            return True

    def close(self) -> tuple[Usage, dict[str, float]] | None:
        """End the run: its final totals and latency attributes, or None if it had ended already."""
        with self._lock:
            if self._closed:
                return None
            self._closed = True
            snap = self.usage.snapshot()
            latency = self._latency()
        self._span = None
        return snap, latency

    def _latency(self) -> dict[str, float]:
        """Time to first token and the time at least one call was in flight (the union of calls)."""
        out: dict[str, float] = {}
        if self._first_out_ns is not None:
            out[sc.RUN_TIME_TO_FIRST_TOKEN] = max(self._first_out_ns - self._t0_ns, 0) / 1e9
        if self._intervals:
            out[sc.RUN_LLM_DURATION] = busy_ns(self._intervals) / 1e9
        if self._max_util is not None:
            out[sc.RUN_MAX_CONTEXT_UTILIZATION] = self._max_util
        return out

    def __repr__(self) -> str:
        u = self.usage
        return (
            f"Run(name={self.name!r}, run_id={self.run_id!r}, session_id={self.session_id!r}, "
            f"requests={u.requests}, cost_usd={u.cost_usd:.6f}, closed={self._closed})"
        )


def busy_ns(intervals: list[tuple[int, int]]) -> int:
    """The length of the union of [start, end] intervals."""
    busy, cur_start, cur_end = 0, -1, -1
    for start, end in sorted(intervals):
        if start > cur_end:
            busy += cur_end - cur_start if cur_end >= 0 else 0
            cur_start, cur_end = start, end
        elif end > cur_end:
            cur_end = end
    return busy + cur_end - cur_start


def run_totals(u: Usage) -> dict[str, Any]:
    """The `llm_usage.run.*` attributes of a run's final totals."""
    return {
        sc.RUN_REQUESTS: u.requests,
        sc.RUN_INPUT_TOKENS: u.input_tokens,
        sc.RUN_OUTPUT_TOKENS: u.output_tokens,
        sc.RUN_CACHE_READ_TOKENS: u.cache_read_tokens,
        sc.RUN_CACHE_WRITE_TOKENS: u.cache_write_tokens,
        sc.RUN_REASONING_TOKENS: u.reasoning_tokens,
        sc.RUN_COST_USD: u.cost_usd,
        sc.RUN_UNPRICED_REQUESTS: u.unpriced_requests,
        sc.RUN_ERRORS: u.errors,
        sc.RUN_USAGE_MISSING_REQUESTS: u.usage_missing_requests,
        **audio_totals(u, sc.RUN_AUDIO_INPUT_TOKENS, sc.RUN_AUDIO_OUTPUT_TOKENS),
    }


def audio_totals(u: Usage, input_key: str, output_key: str) -> dict[str, Any]:
    """Audio token totals, only where there were some."""
    out: dict[str, Any] = {}
    if u.audio_input_tokens:
        out[input_key] = u.audio_input_tokens
    if u.audio_output_tokens:
        out[output_key] = u.audio_output_tokens
    return out
