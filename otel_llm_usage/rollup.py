"""Run and session rollups: the LLM calls beneath a run, a session's running totals, budgets.

`RollupProcessor` is a span processor. It tracks, for every open span, the run it sits in (from
the parent span id, so runs of other instrumentations count too) and adds each finished LLM-call
span (`llm_usage.call = True`) to its runs, its session, its agent and the process. Ledgers are
fed from span ends, never from export, so a dropping exporter cannot make them wrong.

The recorder's own LLM-call spans take a shorter path: the recorder's tracer (`_LedgerTracer`)
finds the call's run when it starts, and the span wrapper it hands out (`_CallSpan`) feeds the
ledgers when the call ends, from the plain attribute dict the recorder wrote. The processor's
`on_start` and `on_end` skip those spans, so each call is counted exactly once, and counted even
when no SDK tracer provider carries this processor or the sampler dropped the span. LLM-call spans
of other origins (marked `llm_usage.call` but not started by the recorder) go through `on_end`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import SpanKind
from opentelemetry.util import types

from . import semconv as sc
from ._guard import report
from .budgets import Budget, BudgetExceeded
from .context import current_scope
from .recorder import SCOPE_NAME, LedgerSpan
from .semconv import (
    BUDGET_ACTION,
    BUDGET_EXCEEDED_EVENT,
    BUDGET_KEY,
    BUDGET_LIMIT_USD,
    BUDGET_SCOPE,
    BUDGET_SPENT_USD,
)
from .usage import TokenUsage, Usage, as_count
from .version import __version__

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import Span as SDKSpan

    from .config import Options
    from .recorder import CallRequest, Recorder
    from .summary import UsageSummary

log = logging.getLogger("otel_llm_usage")


RUN: Final = "run"
ROOT: Final = "root"  # a local root span that is not a run: collects the calls made outside any run

_MISSING: Final = object()

# True while the recorder's tracer starts an LLM-call span: `_CallSpan` counts that call, so the
# processor's `on_start` leaves it alone.
_starting_call: ContextVar[bool] = ContextVar("otel_llm_usage_starting_call", default=False)
_T = TypeVar("_T")


class Run:
    """One run: an agent invocation, or the calls under a local root span outside any run.

    `usage` is live: it counts every LLM call beneath the run, calls of nested runs included, each
    once. A call that ends after the run ended is not added (it still counts in its session).
    """

    __slots__ = (
        "_budgets",
        "_closed",
        "_exceeded",
        "_first_out_ns",
        "_intervals",
        "_lock",
        "_max_util",
        "_metric_attrs",
        "_owned",
        "_span",
        "_span_id",
        "_t0",
        "_t0_ns",
        "agent",
        "kind",
        "name",
        "parent",
        "run_id",
        "session_id",
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
        self._span = span
        self._span_id = span_id
        self._owned = owned
        self._closed = False
        self._lock = threading.Lock()
        self._budgets: tuple[Budget, ...] = ()
        self._exceeded: set[Budget] | None = None
        self._metric_attrs = metric_attrs
        self._t0 = time.perf_counter()
        self._t0_ns = time.time_ns()
        self._first_out_ns: int | None = None
        self._intervals: list[tuple[int, int]] = []
        self._max_util: float | None = None

    def _note(self, timing: tuple[int, int, int | None] | None, util: float | None) -> None:
        """Latency and context facts of one call (caller holds the lock)."""
        if timing is not None:
            start, end, first = timing
            self._intervals.append((start, end))
            if first is not None and (self._first_out_ns is None or first < self._first_out_ns):
                self._first_out_ns = first
        if util is not None and (self._max_util is None or util > self._max_util):
            self._max_util = util

    def _latency(self) -> dict[str, float]:
        """Time to first token and the time at least one call was in flight (the union of calls)."""
        out: dict[str, float] = {}
        if self._first_out_ns is not None:
            out[sc.RUN_TIME_TO_FIRST_TOKEN] = max(self._first_out_ns - self._t0_ns, 0) / 1e9
        if self._intervals:
            busy, cur_start, cur_end = 0, -1, -1
            for start, end in sorted(self._intervals):
                if start > cur_end:
                    busy += cur_end - cur_start if cur_end >= 0 else 0
                    cur_start, cur_end = start, end
                elif end > cur_end:
                    cur_end = end
            busy += cur_end - cur_start
            out[sc.RUN_LLM_DURATION] = busy / 1e9
        if self._max_util is not None:
            out[sc.RUN_MAX_CONTEXT_UTILIZATION] = self._max_util
        return out

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def span(self) -> trace.Span | None:
        """The run's span while the run is open."""
        return self._span

    def __repr__(self) -> str:
        u = self.usage
        return (
            f"Run(name={self.name!r}, run_id={self.run_id!r}, session_id={self.session_id!r}, "
            f"requests={u.requests}, cost_usd={u.cost_usd:.6f}, closed={self._closed})"
        )


class _Session:
    __slots__ = ("budgets", "exceeded", "last_seen", "metric_attrs", "runs", "session_id", "usage")

    def __init__(self, session_id: str, metric_attrs: dict[str, Any], now: float) -> None:
        self.session_id = session_id
        self.usage = Usage()
        self.runs = 0
        self.last_seen = now
        self.metric_attrs = metric_attrs
        self.budgets: tuple[Budget, ...] = ()
        self.exceeded: set[Budget] | None = None


class _Sessions:
    """Session ledgers, least recently used first; bounded in number and idle time.

    Every access first drops the sessions idle for longer than the timeout. They are at the front
    of the LRU order, so the check costs O(1) plus O(1) per session dropped.
    """

    def __init__(
        self,
        max_sessions: int,
        idle_seconds: float,
        clock: Callable[[], float],
        on_evict: Callable[[list[_Session]], None],
    ) -> None:
        self.lock = threading.Lock()
        self.items: OrderedDict[str, _Session] = OrderedDict()
        self.max = max(1, max_sessions)
        self.idle = idle_seconds if idle_seconds > 0 else float("inf")
        self.clock = clock
        self.on_evict = on_evict

    def _expire_locked(self, now: float, out: list[_Session]) -> None:
        items = self.items
        while items:
            oldest = next(iter(items.values()))
            if now - oldest.last_seen <= self.idle:
                return
            items.popitem(last=False)
            out.append(oldest)

    def _touch_locked(
        self, session_id: str, now: float, metric_attrs: Callable[[], dict[str, Any]], out: list[_Session]
    ) -> _Session:
        items = self.items
        s = items.get(session_id)
        if s is None:
            s = items[session_id] = _Session(session_id, metric_attrs(), now)
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
        fn: Callable[[_Session], _T],
    ) -> _T:
        """`fn` applied to the session's ledger (created if needed), under the store lock."""
        evicted: list[_Session] = []
        try:
            with self.lock:
                now = self.clock()
                self._expire_locked(now, evicted)
                return fn(self._touch_locked(session_id, now, metric_attrs, evicted))
        finally:
            if evicted:
                self.on_evict(evicted)

    def read(self, session_id: str, fn: Callable[[_Session | None], _T]) -> _T:
        """`fn` applied to the session's ledger if held (None if not), without renewing it."""
        evicted: list[_Session] = []
        try:
            with self.lock:
                self._expire_locked(self.clock(), evicted)
                return fn(self.items.get(session_id))
        finally:
            if evicted:
                self.on_evict(evicted)

    def pop(self, session_id: str) -> _Session | None:
        with self.lock:
            return self.items.pop(session_id, None)

    def pop_all(self) -> list[_Session]:
        with self.lock:
            out = list(self.items.values())
            self.items.clear()
            return out

    def snapshots(self) -> dict[str, Usage]:
        evicted: list[_Session] = []
        try:
            with self.lock:
                self._expire_locked(self.clock(), evicted)
                return {sid: s.usage.snapshot() for sid, s in self.items.items()}
        finally:
            if evicted:
                self.on_evict(evicted)


def _call_ledger(
    attrs: Mapping[str, Any], ledger: tuple[TokenUsage | None, float | None] | None = None
) -> tuple[str, TokenUsage | None, float | None, bool]:
    """(model, tokens, cost, error) of one LLM-call span, from the attributes the recorder wrote
    or, for tokens and cost, the ledger it handed over."""
    model = attrs.get(sc.RESPONSE_MODEL) or attrs.get(sc.REQUEST_MODEL) or "unknown"
    if ledger is not None:
        return str(model), ledger[0], ledger[1], sc.ERROR_TYPE in attrs
    tokens: TokenUsage | None = None
    if attrs.get(sc.USAGE_SOURCE) != sc.USAGE_SOURCE_MISSING and (
        sc.USAGE_INPUT_TOKENS in attrs or sc.USAGE_OUTPUT_TOKENS in attrs
    ):
        tokens = TokenUsage.normalised(
            input=as_count(attrs.get(sc.USAGE_INPUT_TOKENS)),
            output=as_count(attrs.get(sc.USAGE_OUTPUT_TOKENS)),
            cache_read=as_count(attrs.get(sc.USAGE_CACHE_READ_INPUT_TOKENS, 0)),
            cache_write=as_count(attrs.get(sc.USAGE_CACHE_CREATION_INPUT_TOKENS, 0)),
            reasoning=as_count(attrs.get(sc.USAGE_REASONING_OUTPUT_TOKENS, 0)),
        )
    raw_cost = attrs.get(sc.USAGE_COST)
    cost = float(raw_cost) if isinstance(raw_cost, int | float) and not isinstance(raw_cost, bool) else None
    return str(model), tokens, cost, sc.ERROR_TYPE in attrs


def _call_timing(
    attrs: Mapping[str, Any], start_ns: int | None, end_ns: int | None, error: bool
) -> tuple[int, int, int | None] | None:
    """(start, end, first output) of a call in ns; first output is its first chunk, or its end."""
    if start_ns is None or end_ns is None or end_ns < start_ns:
        return None
    ttfc = attrs.get(sc.RESPONSE_TIME_TO_FIRST_CHUNK)
    if isinstance(ttfc, int | float) and not isinstance(ttfc, bool):
        return start_ns, end_ns, start_ns + int(ttfc * 1e9)
    if attrs.get(sc.REQUEST_STREAM) is True or error:
        return start_ns, end_ns, None
    return start_ns, end_ns, end_ns


def _run_totals(u: Usage) -> dict[str, types.AttributeValue]:
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
    }


def _session_totals(s: _Session | None) -> dict[str, types.AttributeValue]:
    if s is None:
        return {}
    u = s.usage
    return {
        sc.SESSION_REQUESTS: u.requests,
        sc.SESSION_RUNS: s.runs,
        sc.SESSION_COST_USD: u.cost_usd,
        sc.SESSION_INPUT_TOKENS: u.input_tokens,
        sc.SESSION_OUTPUT_TOKENS: u.output_tokens,
    }


def _write_after_end(span: Any, attrs: Mapping[str, types.AttributeValue]) -> bool:
    """Add attributes to an SDK span between its end and its export (`_on_ending`).

    The SDK freezes a span's attributes before it calls `_on_ending`; this reopens them for the
    one write. It relies on SDK internals and does nothing when they are not there.
    """
    bounded = getattr(span, "_attributes", None)
    lock = getattr(span, "_lock", None)
    if (
        bounded is None
        or lock is None
        or not hasattr(bounded, "_immutable")
        or not hasattr(bounded, "_set_items")
    ):
        return False
    with lock:
        frozen = bounded._immutable
        bounded._immutable = False
        try:
            bounded._set_items(attrs)
        finally:
            bounded._immutable = frozen
    return True


class RollupProcessor(SpanProcessor):
    """Run, session, agent and process ledgers fed by LLM-call spans; budgets; rollup metrics."""

    def __init__(
        self,
        options: Options,
        meter_provider: metrics.MeterProvider | None = None,
        tracer: trace.Tracer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self.tracer = (
            tracer
            if tracer is not None
            else trace.get_tracer(SCOPE_NAME, __version__, schema_url=sc.SCHEMA_URL)
        )
        self.enabled = True
        self.attached_to_provider = False
        self._metric_keys = tuple(options.metric_attributes)
        # span id -> the run (or local-root collector) the span sits in; None outside both.
        self._open: dict[int, Run | None] = {}
        self.process = Usage()
        self._agents: dict[str, Usage] = {}
        self._agents_lock = threading.Lock()
        self._sessions = _Sessions(
            options.max_sessions, options.session_idle_seconds, clock, self._record_sessions
        )
        self._run_budgets = tuple(b for b in options.budgets if b.scope == "run")
        self._session_budgets = tuple(b for b in options.budgets if b.scope == "session")
        self._process_budgets = tuple(b for b in options.budgets if b.scope == "process")
        self._budgeted = bool(options.budgets)
        self._process_exceeded: set[Budget] = set()
        self._budget_lock = threading.Lock()
        self._callback: Callable[[dict[str, Any]], Any] | None = options.budget_callback
        self._recorder: Recorder | None = None
        self._recorder_tracer: trace.Tracer | None = None

        meter = metrics.get_meter(SCOPE_NAME, __version__, meter_provider, schema_url=sc.SCHEMA_URL)
        count = list(sc.COUNT_BUCKETS)
        self._run_cost = meter.create_histogram(
            sc.METRIC_RUN_COST, sc.UNIT_USD, "Cost of the LLM calls of one run.",
            explicit_bucket_boundaries_advisory=list(sc.COST_BUCKETS),
        )  # fmt: skip
        self._run_tokens = meter.create_histogram(
            sc.METRIC_RUN_TOKENS, sc.UNIT_TOKEN, "Input plus output tokens of the LLM calls of one run.",
            explicit_bucket_boundaries_advisory=list(sc.TOKEN_BUCKETS),
        )  # fmt: skip
        self._run_requests = meter.create_histogram(
            sc.METRIC_RUN_REQUESTS, sc.UNIT_REQUEST, "LLM calls of one run.",
            explicit_bucket_boundaries_advisory=count,
        )  # fmt: skip
        self._run_duration = meter.create_histogram(
            sc.METRIC_RUN_DURATION, sc.UNIT_SECONDS, "Duration of one run.",
            explicit_bucket_boundaries_advisory=list(sc.RUN_DURATION_BUCKETS),
        )  # fmt: skip
        self._run_ttft = meter.create_histogram(
            sc.METRIC_RUN_TIME_TO_FIRST_TOKEN, sc.UNIT_SECONDS,
            "Time from the start of a run to its first LLM output (first chunk, or end of a plain call).",
            explicit_bucket_boundaries_advisory=list(sc.TIME_TO_FIRST_CHUNK_BUCKETS),
        )  # fmt: skip
        self._session_cost = meter.create_histogram(
            sc.METRIC_SESSION_COST, sc.UNIT_USD, "Cost of the LLM calls of one closed session.",
            explicit_bucket_boundaries_advisory=list(sc.COST_BUCKETS),
        )  # fmt: skip
        self._session_tokens = meter.create_histogram(
            sc.METRIC_SESSION_TOKENS, sc.UNIT_TOKEN, "Input plus output tokens of one closed session.",
            explicit_bucket_boundaries_advisory=list(sc.TOKEN_BUCKETS),
        )  # fmt: skip
        self._session_requests = meter.create_histogram(
            sc.METRIC_SESSION_REQUESTS, sc.UNIT_REQUEST, "LLM calls of one closed session.",
            explicit_bucket_boundaries_advisory=count,
        )  # fmt: skip
        self._session_runs = meter.create_histogram(
            sc.METRIC_SESSION_RUNS, sc.UNIT_RUN, "Runs of one closed session.",
            explicit_bucket_boundaries_advisory=count,
        )  # fmt: skip
        self._late = meter.create_counter(
            sc.METRIC_LATE_SPANS, sc.UNIT_CALL, "LLM calls that ended after their run had ended."
        )

    # --- wiring ----------------------------------------------------------------------------------

    def attach(self, recorder: Recorder) -> None:
        """Hook the recorder: budgets before each call, and the direct path for untracked spans."""
        self._recorder = recorder
        self._recorder_tracer = recorder.tracer
        self.tracer = recorder.tracer
        recorder.tracer = _LedgerTracer(recorder.tracer, self)
        recorder.before_call.append(self._before_call)

    def shutdown_rollups(self) -> None:
        """Stop counting, unhook the recorder and record the histograms of the sessions still held."""
        global _active
        self.enabled = False
        rec = self._recorder
        if rec is not None:
            if self._recorder_tracer is not None:
                rec.tracer = self._recorder_tracer
            try:
                rec.before_call.remove(self._before_call)
            except ValueError:
                pass
            self._recorder = None
        if _active is self:
            _active = None
        self._open.clear()
        self._record_sessions(self._sessions.pop_all())

    def shutdown(self) -> None:
        self._record_sessions(self._sessions.pop_all())

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def current_run(self) -> Run | None:
        """The run a call started now belongs to: the current span's, else the scope's."""
        sid = trace.get_current_span().get_span_context().span_id
        if sid:
            entry = self._open.get(sid, _MISSING)
            if entry is not _MISSING:
                return entry  # type: ignore[return-value]
        return current_scope.get_local().run

    # --- span processor --------------------------------------------------------------------------

    def on_start(self, span: SDKSpan, parent_context: otel_context.Context | None = None) -> None:
        if not self.enabled or _starting_call.get():
            return
        try:
            self._on_start(span)
        except Exception as exc:
            report("rollup.on_start", exc)

    def _on_start(self, span: SDKSpan) -> None:
        sid = span.get_span_context().span_id
        parent = span.parent
        entry: Any = _MISSING
        if parent is not None and not parent.is_remote:
            entry = self._open.get(parent.span_id, _MISSING)
        attrs = span.attributes or {}
        is_llm = attrs.get(sc.LLM_CALL_MARK) is True
        is_run = not is_llm and attrs.get(sc.OPERATION_NAME) == sc.OP_INVOKE_AGENT
        if entry is _MISSING:
            entry = (
                None
                if is_llm or is_run
                else Run(span.name, None, run_id="", kind=ROOT, span=span, span_id=sid)
            )
        run: Run | None = entry
        scope = current_scope.get()
        session_id = scope.session_id
        if session_id is None and run is not None:
            session_id = run.session_id
        if is_run:
            own = attrs.get(sc.SESSION_ID) or attrs.get(sc.CONVERSATION_ID)
            if isinstance(own, str) and own:
                session_id = own
            agent = attrs.get(sc.AGENT_NAME)
            if not isinstance(agent, str) or not agent:
                name = span.name
                agent = (
                    name[len(sc.OP_INVOKE_AGENT) + 1 :] if name.startswith(sc.OP_INVOKE_AGENT + " ") else name
                )
            parent_run = run if run is not None and run.kind == RUN else None
            run = Run(
                agent,
                agent,
                run_id=f"{sid:016x}",
                session_id=session_id,
                parent=parent_run,
                span=span,
                span_id=sid,
                metric_attrs=self._run_metric_attrs(agent, attrs),
            )
            if run.session_id:
                self._count_run(run.session_id, attrs)
        self._open[sid] = run
        if session_id and sc.SESSION_ID not in attrs:
            extra: dict[str, types.AttributeValue] = {sc.SESSION_ID: session_id}
            if is_llm or is_run:
                extra[sc.CONVERSATION_ID] = session_id
            if scope.user_id is not None and sc.USER_ID not in attrs:
                extra[sc.USER_ID] = scope.user_id
            span.set_attributes(extra)
        if is_llm and run is not None and run.kind == RUN and sc.AGENT_NAME not in attrs and run.agent:
            span.set_attribute(sc.AGENT_NAME, run.agent)

    def _on_ending(self, span: SDKSpan) -> None:
        if not self.enabled:
            return
        try:
            sid = span.get_span_context().span_id
            run = self._open.get(sid)
            if run is None or run._span_id != sid or run._owned or run._closed:
                return
            start, end = span.start_time, span.end_time
            duration = (end - start) / 1e9 if start is not None and end is not None else None
            self._close(run, duration, lambda attrs: _write_after_end(span, attrs))
        except Exception as exc:
            report("rollup.on_ending", exc)

    def on_end(self, span: ReadableSpan) -> None:
        if not self.enabled:
            return
        try:
            ctx = span.context
            if ctx is None:
                return
            sid = ctx.span_id
            entry = self._open.pop(sid, _MISSING)
            if entry is _MISSING:
                return
            attrs = span.attributes or {}
            if attrs.get(sc.LLM_CALL_MARK) is True:
                self.account(attrs, entry, span.start_time, span.end_time)  # type: ignore[arg-type]
            elif isinstance(entry, Run) and entry._span_id == sid and not entry._closed:
                start, end = span.start_time, span.end_time
                duration = (end - start) / 1e9 if start is not None and end is not None else None
                self._close(entry, duration, None)
        except Exception as exc:
            report("rollup.on_end", exc)

    # --- ledgers ---------------------------------------------------------------------------------

    def account(
        self,
        attrs: Mapping[str, Any],
        run: Run | None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        ledger: tuple[TokenUsage | None, float | None] | None = None,
    ) -> None:
        """Add one finished LLM call to its runs, session, agent and the process. `ledger` is the
        call's (tokens, cost) as the recorder computed them; without it they are read from `attrs`."""
        model, tokens, cost, error = _call_ledger(attrs, ledger)
        agent = attrs.get(sc.AGENT_NAME)
        session_id = attrs.get(sc.SESSION_ID) or attrs.get(sc.CONVERSATION_ID)
        if run is not None:
            timing = _call_timing(attrs, start_ns, end_ns, error)
            raw_util = attrs.get(sc.CONTEXT_UTILIZATION)
            util = (
                float(raw_util)
                if isinstance(raw_util, int | float) and not isinstance(raw_util, bool)
                else None
            )
            if agent is None and run.kind == RUN:
                agent = run.agent
            if session_id is None:
                session_id = run.session_id
            elif run.kind == ROOT and run.session_id is None:
                run.session_id = str(session_id)
        late: Run | None = None
        r = run
        while r is not None:
            with r._lock:
                if r._closed:
                    late = late or r
                else:
                    r.usage.add_call(model, tokens, cost, error)
                    r._note(timing, util)
            r = r.parent
        self.process.add_call(model, tokens, cost, error)
        if isinstance(agent, str) and agent:
            self._agent_usage(agent).add_call(model, tokens, cost, error)
        if session_id:
            self._sessions.update(
                str(session_id),
                lambda: self._session_metric_attrs(attrs),
                lambda s: s.usage.add_call(model, tokens, cost, error),
            )
        if late is not None:
            self._late.add(1, {sc.AGENT_NAME: late.agent} if late.agent else {})
        if self._budgeted:
            self._check_crossings(run, str(session_id) if session_id else None)

    def _agent_usage(self, agent: str) -> Usage:
        u = self._agents.get(agent)
        if u is None:
            with self._agents_lock:
                u = self._agents.setdefault(agent, Usage())
        return u

    def _count_run(self, session_id: str, attrs: Mapping[str, Any]) -> None:
        def count(s: _Session) -> None:
            s.runs += 1

        self._sessions.update(session_id, lambda: self._session_metric_attrs(attrs), count)

    def _run_metric_attrs(self, agent: str | None, attrs: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {sc.AGENT_NAME: agent} if agent else {}
        for key in self._metric_keys:
            if key in attrs and key != sc.AGENT_NAME:
                out[key] = attrs[key]
        return out

    def _session_metric_attrs(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        return {key: attrs[key] for key in self._metric_keys if key in attrs}

    def _close(
        self,
        run: Run,
        duration_s: float | None,
        write: Callable[[dict[str, types.AttributeValue]], Any] | None,
    ) -> None:
        with run._lock:
            if run._closed:
                return
            run._closed = True
            snap = run.usage.snapshot()
            latency = run._latency()
        run._span = None
        if run.kind == ROOT and snap.requests == 0:
            return
        if write is not None:
            attrs = _run_totals(snap)
            attrs.update(latency)
            if run.session_id:
                attrs.update(self._sessions.read(run.session_id, _session_totals))
            write(attrs)
        if run.kind == RUN:
            mattrs = (
                run._metric_attrs if run._metric_attrs is not None else self._run_metric_attrs(run.agent, {})
            )
            self._run_cost.record(snap.cost_usd, mattrs)
            self._run_tokens.record(snap.input_tokens + snap.output_tokens, mattrs)
            self._run_requests.record(snap.requests, mattrs)
            if duration_s is not None:
                self._run_duration.record(duration_s, mattrs)
            ttft = latency.get(sc.RUN_TIME_TO_FIRST_TOKEN)
            if ttft is not None:
                self._run_ttft.record(ttft, mattrs)

    def _record_sessions(self, sessions: list[_Session]) -> None:
        for s in sessions:
            try:
                u, attrs = s.usage, s.metric_attrs
                self._session_cost.record(u.cost_usd, attrs)
                self._session_tokens.record(u.input_tokens + u.output_tokens, attrs)
                self._session_requests.record(u.requests, attrs)
                self._session_runs.record(s.runs, attrs)
            except Exception as exc:
                report("rollup.session_histograms", exc)

    # --- runs and sessions opened by scopes.py ---------------------------------------------------

    def begin_run(
        self,
        span: trace.Span,
        *,
        run_id: str,
        name: str,
        agent: str,
        session_id: str | None,
        budgets: Sequence[Budget],
        attributes: Mapping[str, Any],
        parent: Run | None,
    ) -> Run:
        """The ledger of a `run()`: the one `on_start` made for its span, else a new one."""
        sid = span.get_span_context().span_id
        run = self._open.get(sid) if sid else None
        if run is None or run._span_id != sid:
            run = Run(
                name,
                agent,
                run_id=run_id,
                session_id=session_id,
                parent=parent if parent is not None and parent.kind == RUN else None,
                span=span,
                metric_attrs=self._run_metric_attrs(agent, attributes),
            )
            if session_id:
                self._count_run(session_id, attributes)
        run.name = name
        run.run_id = run_id
        run._owned = True
        if budgets:
            run._budgets = tuple(budgets)
            self._budgeted = True
        return run

    def end_run(self, run: Run, span: trace.Span) -> None:
        """Write the totals on a `run()` span that is still open, and record the run histograms."""
        try:
            duration = time.perf_counter() - run._t0
            self._close(run, duration, span.set_attributes if span.is_recording() else None)
        except Exception as exc:
            report("rollup.end_run", exc)

    def open_session(
        self,
        session_id: str,
        user_id: str | None,
        attributes: Mapping[str, Any],
        budgets: Sequence[Budget],
    ) -> None:
        attrs: dict[str, Any] = {**attributes, sc.SESSION_ID: session_id, sc.CONVERSATION_ID: session_id}
        if user_id is not None:
            attrs[sc.USER_ID] = user_id

        def add_budgets(s: _Session) -> None:
            if budgets:
                s.budgets = tuple(dict.fromkeys((*s.budgets, *budgets)))

        self._sessions.update(session_id, lambda: self._session_metric_attrs(attrs), add_budgets)
        if budgets:
            self._budgeted = True

    def close_session(self, session_id: str) -> bool:
        s = self._sessions.pop(session_id)
        if s is None:
            return False
        self._record_sessions([s])
        return True

    def session_usage(self, session_id: str) -> Usage | None:
        return self._sessions.read(session_id, lambda s: s.usage.snapshot() if s is not None else None)

    def summary(self) -> UsageSummary:
        from .summary import UsageSummary

        with self._agents_lock:
            agents = dict(self._agents)
        return UsageSummary.build(
            self.process.snapshot(),
            {a: u.snapshot() for a, u in agents.items()},
            self._sessions.snapshots(),
        )

    # --- budgets ---------------------------------------------------------------------------------

    def _run_budgets_of(self, run: Run) -> list[Budget]:
        out = [b for b in self._run_budgets if b.agent is None or b.agent == run.agent]
        out.extend(run._budgets)
        return out

    def _limits(
        self, run: Run | None, session_id: str | None
    ) -> list[tuple[str, str | None, Budget, float, Any]]:
        """(scope, key, budget, spent, holder) for every budget that applies to a call here."""
        out: list[tuple[str, str | None, Budget, float, Any]] = []
        r = run
        while r is not None:
            if r.kind == RUN:
                budgets = self._run_budgets_of(r)
                if budgets:
                    spent = r.usage.cost_usd
                    out.extend(("run", r.name, b, spent, r) for b in budgets)
            r = r.parent
        if session_id is not None:
            held = self._sessions.read(session_id, lambda s: s)
            if held is not None:
                spent = held.usage.cost_usd
                out.extend(
                    ("session", session_id, b, spent, held) for b in (*self._session_budgets, *held.budgets)
                )
        if self._process_budgets:
            spent = self.process.cost_usd
            out.extend(("process", None, b, spent, self) for b in self._process_budgets)
        return out

    def _before_call(self, req: CallRequest) -> None:
        if not self._budgeted or not self.enabled:
            return
        error: BudgetExceeded | None = None
        try:
            run = self.current_run()
            session_id = current_scope.get().session_id
            if session_id is None and run is not None:
                session_id = run.session_id
            for scope, key, budget, spent, _ in self._limits(run, session_id):
                if budget.action == "raise" and spent > budget.max_cost_usd:
                    error = BudgetExceeded(scope, key, budget.max_cost_usd, spent)
                    break
        except Exception as exc:
            report("rollup.before_call", exc)
            return
        if error is not None:
            raise error

    def _check_crossings(self, run: Run | None, session_id: str | None) -> None:
        try:
            crossed = []
            for scope, key, budget, spent, holder in self._limits(run, session_id):
                if spent > budget.max_cost_usd and self._mark(holder, budget):
                    crossed.append((scope, key, budget, spent, holder))
            for item in crossed:
                self._notify(*item, call_run=run)
        except Exception as exc:
            report("rollup.budget_check", exc)

    def _mark(self, holder: Any, budget: Budget) -> bool:
        """True the first time `budget` is found exceeded for this run, session or process."""
        with self._budget_lock:
            seen = self._process_exceeded if holder is self else self._exceeded_set(holder)
            if budget in seen:
                return False
            seen.add(budget)
            return True

    @staticmethod
    def _exceeded_set(holder: Run | _Session) -> set[Budget]:
        if isinstance(holder, _Session):
            if holder.exceeded is None:
                holder.exceeded = set()
            return holder.exceeded
        if holder._exceeded is None:
            holder._exceeded = set()
        return holder._exceeded

    def _notify(
        self, scope: str, key: str | None, budget: Budget, spent: float, holder: Any, call_run: Run | None
    ) -> None:
        info: dict[str, Any] = {
            "scope": scope,
            "key": key,
            "limit_usd": budget.max_cost_usd,
            "spent_usd": spent,
            "action": budget.action,
            "budget": budget,
            "run_id": holder.run_id if isinstance(holder, Run) else None,
            "agent": holder.agent if isinstance(holder, Run) else None,
            "session_id": key if scope == "session" else None,
        }
        event: dict[str, types.AttributeValue] = {
            BUDGET_SCOPE: scope,
            BUDGET_LIMIT_USD: budget.max_cost_usd,
            BUDGET_SPENT_USD: spent,
            BUDGET_ACTION: budget.action,
        }
        if key is not None:
            event[BUDGET_KEY] = key
        span = self._event_span(holder if isinstance(holder, Run) else call_run)
        if span is not None:
            span.add_event(BUDGET_EXCEEDED_EVENT, event)
        if budget.action == "warn":
            where = f"{scope} {key!r}" if key else scope
            log.warning(
                "otel-llm-usage: LLM budget exceeded for %s: spent $%.6f of $%.6f",
                where,
                spent,
                budget.max_cost_usd,
            )
        if self._callback is not None:
            try:
                self._callback(info)
            except Exception as exc:
                report("budget_callback", exc)

    @staticmethod
    def _event_span(run: Run | None) -> trace.Span | None:
        r = run
        while r is not None:
            span = r._span
            if span is not None and span.is_recording():
                return span
            r = r.parent
        current = trace.get_current_span()
        return current if current.is_recording() else None


class _CallSpan(LedgerSpan):
    """The recorder's LLM-call span: its end feeds the ledgers from the attributes and the ledger
    the recorder set."""

    __slots__ = ("_attrs", "_done", "_ledger", "_proc", "_run", "_sid", "_span", "_start_ns")

    def __init__(
        self,
        span: trace.Span,
        attrs: dict[str, Any],
        proc: RollupProcessor,
        run: Run | None,
        start_ns: int | None,
    ) -> None:
        self._span = span
        self._attrs = attrs
        self._proc = proc
        self._run = run
        self._done = False
        self._ledger: tuple[TokenUsage | None, float | None] | None = None
        self._start_ns = start_ns if start_ns is not None else time.time_ns()
        # Spans started beneath the call (an HTTP client's) sit in the call's run.
        self._sid = span.get_span_context().span_id
        if self._sid:
            proc._open[self._sid] = run

    def end(self, end_time: int | None = None) -> None:
        proc = self._proc
        if self._sid:
            proc._open.pop(self._sid, None)
        try:
            self._span.end(end_time)
        finally:
            if not self._done:
                self._done = True
                if proc.enabled:
                    try:
                        # The SDK span's own times, so run latencies match the exported spans.
                        span = self._span
                        start_ns = getattr(span, "start_time", None) or self._start_ns
                        end_ns = getattr(span, "end_time", None) or end_time or time.time_ns()
                        proc.account(self._attrs, self._run, start_ns, end_ns, self._ledger)
                    except Exception as exc:
                        report("rollup.call_span", exc)

    def take_ledger(self, usage: TokenUsage | None, cost: float | None) -> None:
        self._ledger = (usage, cost)

    def get_span_context(self) -> trace.SpanContext:
        return self._span.get_span_context()

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        self._attrs.update(attributes)
        self._span.set_attributes(attributes)

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        self._attrs[key] = value
        self._span.set_attribute(key, value)

    def add_event(self, name: str, attributes: types.Attributes = None, timestamp: int | None = None) -> None:
        self._span.add_event(name, attributes, timestamp)

    def add_link(self, context: trace.SpanContext, attributes: types.Attributes = None) -> None:
        self._span.add_link(context, attributes)

    def update_name(self, name: str) -> None:
        self._span.update_name(name)

    def is_recording(self) -> bool:
        return self._span.is_recording()

    def set_status(self, status: trace.Status | trace.StatusCode, description: str | None = None) -> None:
        self._span.set_status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        self._span.record_exception(exception, attributes, timestamp, escaped)


def _annotate(attrs: dict[str, Any], run: Run) -> None:
    """The session and agent a call inherits from its run, where its own scope named none."""
    if run.session_id and sc.SESSION_ID not in attrs:
        attrs[sc.SESSION_ID] = run.session_id
        attrs[sc.CONVERSATION_ID] = run.session_id
    if run.kind == RUN and run.agent and sc.AGENT_NAME not in attrs:
        attrs[sc.AGENT_NAME] = run.agent


class _LedgerTracer(trace.Tracer):
    """The recorder's tracer: LLM-call spans come out as `_CallSpan`s, placed in their run."""

    def __init__(self, inner: trace.Tracer, proc: RollupProcessor) -> None:
        self._inner = inner
        self._proc = proc

    def start_span(
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[trace.Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        proc = self._proc
        if not attributes or attributes.get(sc.LLM_CALL_MARK) is not True or not proc.enabled:
            return self._inner.start_span(
                name, context, kind, attributes, links, start_time, record_exception, set_status_on_exception
            )
        attrs = dict(attributes)
        run: Run | None = None
        try:
            run = proc.current_run()
            if run is not None:
                _annotate(attrs, run)
        except Exception as exc:
            report("rollup.start_span", exc)
        token = _starting_call.set(True)
        try:
            span = self._inner.start_span(
                name, context, kind, attrs, links, start_time, record_exception, set_status_on_exception
            )
        finally:
            _starting_call.reset(token)
        try:
            return _CallSpan(span, attrs, proc, run, start_time)
        except Exception as exc:
            report("rollup.start_span", exc)
            return span

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[trace.Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        span = self.start_span(
            name, context, kind, attributes, links, start_time, record_exception, set_status_on_exception
        )
        with trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current


_active: RollupProcessor | None = None


def active() -> RollupProcessor | None:
    """The processor of the current `instrument()`, or None when rollups are off."""
    return _active


def install_rollups(
    recorder: Recorder,
    options: Options,
    tracer_provider: trace.TracerProvider | None,
    meter_provider: metrics.MeterProvider | None,
) -> RollupProcessor:
    """Create the processor, add it to the SDK tracer provider (given, else global) and hook the recorder.

    Without an SDK provider the processor is attached to no provider and every call takes the
    direct path: rollups stay exact, but runs of other instrumentations are not seen.
    """
    global _active
    proc = RollupProcessor(options, meter_provider)
    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    add = getattr(provider, "add_span_processor", None)
    if callable(add):
        add(proc)
        proc.attached_to_provider = True
    proc.attach(recorder)
    _active = proc
    return proc
