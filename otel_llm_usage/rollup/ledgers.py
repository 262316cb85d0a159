"""`Rollup`: the ledgers of runs, sessions, agents and the process, fed by the recorder.

It is the recorder's call listener: before a call it finds the call's run (adding the run's
session and agent to the call's attributes) and applies budgets; when the call ends it adds the
call's tokens, cost and timing to every run above it, its session, its agent and the process.
Which run a span sits in is kept in `spans` (span id -> run), filled by `run()` and, when an SDK
tracer provider carries the `RollupProcessor`, by the spans of other instrumentations.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import metrics, trace

from .. import _fork
from .. import semconv as sc
from .._guard import report
from ..context import current_attribution
from ..summary import UsageSummary
from ..usage import Usage
from .budget_gauges import Point, collect
from .budgets import Budget, BudgetExceeded, BudgetPolicy
from .calls import CallBuffer, CallLog, record_of
from .metrics import RollupMetrics
from .run import ROOT, RUN, Run, run_totals
from .sessions import SessionLedger, Sessions, session_totals
from .tables import MAX_AGENTS, MAX_TENANTS, CappedTable, TenantLedger, usages

if TYPE_CHECKING:
    from ..config import Options
    from ..listener import EndedCall
    from ..recorder import CallRequest

MISSING: Final = object()


class Rollup:
    """Run, session, agent and process ledgers; budgets; rollup metrics. A `CallListener`."""

    def __init__(
        self,
        options: Options,
        meter_provider: metrics.MeterProvider | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = True
        self.attached_to_provider = False
        self._metric_keys = tuple(options.metric_attributes)
        self.max_call_records = options.max_call_records
        # span id -> the run (or local-root collector) the span sits in; None outside both.
        self.spans: dict[int, Run | None] = {}
        self.process = Usage()
        self.agents: CappedTable[Usage] = CappedTable(MAX_AGENTS, Usage)
        self.tenants: CappedTable[TenantLedger] = CappedTable(MAX_TENANTS, TenantLedger)
        self.metrics = RollupMetrics(meter_provider)
        self.sessions = Sessions(
            options.max_sessions, options.session_idle_seconds, clock, self.metrics.record_sessions
        )
        self.budgets = BudgetPolicy(
            tuple(options.budgets), options.budget_callback, self.sessions, self.process, self.tenants
        )
        # Open runs that a run budget limits, by id: what the budget gauges look at.
        self._budgeted_runs: dict[int, Run] = {}
        self._budgeted_lock = _fork.lock()
        self.metrics.budget_gauges.rollup = self

    def reconfigure(self, options: Options) -> None:
        """Take new options (`instrument()` again), keeping every ledger and session."""
        self._metric_keys = tuple(options.metric_attributes)
        self.max_call_records = options.max_call_records
        self.sessions.max = max(1, options.max_sessions)
        idle = options.session_idle_seconds
        self.sessions.idle = idle if idle > 0 else float("inf")
        self.budgets = self.budgets.replaced(tuple(options.budgets), options.budget_callback)

    def use_meter_provider(self, meter_provider: metrics.MeterProvider | None) -> None:
        """Record the run and session histograms on another meter provider from now on."""
        self.metrics = RollupMetrics(meter_provider)
        self.sessions.on_evict = self.metrics.record_sessions

    def stop(self) -> None:
        """Stop counting and record the histograms of the sessions still held."""
        self.enabled = False
        self.spans.clear()
        if self.metrics.budget_gauges.rollup is self:
            self.metrics.budget_gauges.rollup = None
        with self._budgeted_lock:
            self._budgeted_runs.clear()
        self.record_held_sessions()

    def record_held_sessions(self) -> None:
        self.metrics.record_sessions(self.sessions.pop_all())

    def reset(self) -> None:
        """Forget the totals of the process, its agents, tenants, providers and sessions.

        The sessions held are closed (their histograms recorded, as `close_session()` would); the
        counters the recorder exports keep counting. Open runs keep their own totals.
        """
        process = Usage()
        self.process = process
        self.budgets.reset_process(process)
        self.agents.clear()
        self.tenants.clear()
        self.record_held_sessions()

    def current_run(self) -> Run | None:
        """The run a call started now belongs to: the current span's, else the attribution's."""
        sid = trace.get_current_span().get_span_context().span_id
        if sid:
            entry = self.spans.get(sid, MISSING)
            if entry is not MISSING:
                return entry  # type: ignore[return-value]
        return current_attribution.get_local().run

    # --- the call listener -------------------------------------------------------------------------

    def call_starting(self, req: CallRequest, attributes: dict[str, Any], check_budgets: bool) -> object:
        if not self.enabled:
            return None
        run: Run | None = None
        try:
            # `current_run()`, inlined: this runs on every call
            sid = trace.get_current_span().get_span_context().span_id
            entry = self.spans.get(sid, MISSING) if sid else MISSING
            run = entry if entry is not MISSING else current_attribution.get_local().run  # type: ignore[assignment]
            if run is not None:
                _annotate(attributes, run)
        except Exception as exc:
            report("rollup.call_starting", exc)
        if check_budgets and self.budgets.active:
            refusal = None
            try:
                session_id = current_attribution.get().session_id
                if session_id is None and run is not None:
                    session_id = run.session_id
                refusal = self.budgets.refusal(run, session_id, _tenant(attributes))
            except Exception as exc:
                report("rollup.before_call", exc)
            if refusal is not None:
                raise refusal
        return run

    def call_ended(self, call: EndedCall, state: object) -> None:
        """Add one finished LLM call to its runs (`state`), session, agent and the process."""
        if not self.enabled:
            return
        try:
            run: Run | None = state  # type: ignore[assignment]
            (
                model, tokens, cost, error, start_ns, end_ns, first_ns, util, agent, sid, attrs, rm,
                _provider, _operation, _request_model, _response_id, _etype, _stream, _ctx,
            ) = call  # fmt: skip
            session_id = str(sid) if sid else None
            interval: tuple[int, int, int | None] | None = None
            if run is not None:
                if end_ns >= start_ns:
                    interval = (start_ns, end_ns, first_ns)
                if agent is None and run.kind == RUN:
                    agent = run.agent
                if session_id is None:
                    session_id = run.session_id
                elif run.kind == ROOT and run.session_id is None:
                    run.session_id = session_id
            agent_name = agent if isinstance(agent, str) and agent else None
            cap = self.max_call_records
            record = record_of(call, agent, session_id) if cap and (run is not None or session_id) else None
            late: Run | None = None
            r = run
            while r is not None:
                if not r.add_call(
                    model,
                    tokens,
                    cost,
                    error,
                    interval,
                    util,
                    rm,
                    agent_name,
                    record if r.kind == RUN else None,
                    cap,
                ):
                    late = late or r
                r = r.parent
            provider = attrs.get(sc.PROVIDER_NAME)
            self.process.add_call(model, tokens, cost, error, response_model=rm, provider=provider)
            if agent_name is not None:
                self.agents.row(agent_name).add_call(model, tokens, cost, error, response_model=rm)
            tenant_id = _tenant(attrs)
            if tenant_id is not None:
                self.tenants.row(tenant_id).usage.add_call(model, tokens, cost, error, per_model=False)
            if session_id:

                def add(s: SessionLedger) -> None:
                    s.usage.add_call(model, tokens, cost, error, response_model=rm, agent=agent_name)
                    if record is not None:
                        buf = s.calls
                        if buf is None:
                            buf = s.calls = CallBuffer(cap)
                        buf.append(record)

                self.sessions.update(session_id, lambda: self.session_metric_attrs(attrs), add)
            if late is not None:
                self.metrics.late_call(late.agent)
            if self.budgets.active:
                try:
                    self.budgets.check_crossings(run, session_id, tenant_id)
                except Exception as exc:
                    report("rollup.budget_check", exc)
        except Exception as exc:
            report("rollup.call_ended", exc)

    # --- runs --------------------------------------------------------------------------------------

    def count_run(self, session_id: str, attrs: Mapping[str, Any]) -> None:
        def count(s: SessionLedger) -> None:
            s.runs += 1

        self.sessions.update(session_id, lambda: self.session_metric_attrs(attrs), count)

    def run_metric_attrs(self, agent: str | None, attrs: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {sc.AGENT_NAME: agent} if agent else {}
        for key in self._metric_keys:
            if key in attrs and key != sc.AGENT_NAME:
                out[key] = attrs[key]
        return out

    def session_metric_attrs(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        return {key: attrs[key] for key in self._metric_keys if key in attrs}

    def close_run(
        self,
        run: Run,
        duration_s: float | None,
        write: Callable[[dict[str, Any]], Any] | None,
    ) -> None:
        """End a run: its totals written with `write` (on its span), its histograms recorded."""
        closed = run.close()
        if closed is None:
            return
        if self._budgeted_runs:
            with self._budgeted_lock:
                self._budgeted_runs.pop(id(run), None)
        snap, latency = closed
        if run.kind == ROOT and snap.requests == 0:
            return
        if write is not None:
            attrs = run_totals(snap)
            attrs.update(latency)
            if run.session_id:
                attrs.update(self.sessions.read(run.session_id, session_totals))
            write(attrs)
        if run.kind == RUN:
            mattrs = (
                run.metric_attrs if run.metric_attrs is not None else self.run_metric_attrs(run.agent, {})
            )
            self.metrics.record_run(snap, duration_s, latency.get(sc.RUN_TIME_TO_FIRST_TOKEN), mattrs)

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
        """The ledger of a `run()`: the one the processor made for its span, else a new one."""
        sid = span.get_span_context().span_id
        run = self.spans.get(sid) if sid else None
        if run is None or run.span_id != sid:
            run = Run(
                name,
                agent,
                run_id=run_id,
                session_id=session_id,
                parent=parent if parent is not None and parent.kind == RUN else None,
                span=span,
                metric_attrs=self.run_metric_attrs(agent, attributes),
            )
            if session_id:
                self.count_run(session_id, attributes)
        run.name = name
        run.run_id = run_id
        run.owned = True
        if budgets:
            run.budgets = tuple(budgets)
            self.budgets.active = True
        self.track_run(run)
        return run

    def track_run(self, run: Run) -> None:
        """Show an open run on the budget gauges while it is open, if a run budget limits it."""
        if run.kind == RUN and (run.budgets or self.budgets.run_budgets) and not run.closed:
            with self._budgeted_lock:
                self._budgeted_runs[id(run)] = run

    def budget_points(self) -> list[Point]:
        """(labels, spent, limit) of every configured budget, for the budget gauges."""
        policy = self.budgets
        with self._budgeted_lock:
            runs = list(self._budgeted_runs.values())
        held = self.sessions.held() if policy.session_budgets or policy.session_own else []
        tenants = (
            [(t, row.usage.cost_usd) for t, row in self.tenants.items()] if policy.tenant_budgets else []
        )
        return collect(policy, runs, held, self._metric_keys, tenants)

    def refusal_now(self) -> BudgetExceeded | None:
        """The `raise` budget over its limit for a call made here now, if any (`record_call()`)."""
        if not self.enabled or not self.budgets.active:
            return None
        try:
            run = self.current_run()
            attribution = current_attribution.get()
            session_id = attribution.session_id
            if session_id is None and run is not None:
                session_id = run.session_id
            return self.budgets.refusal(run, session_id, _tenant(attribution.attributes))
        except Exception as exc:
            report("rollup.refusal_now", exc)
            return None

    def end_run(self, run: Run, span: trace.Span) -> None:
        """Write the totals on a `run()` span that is still open, and record the run histograms."""
        try:
            self.close_run(run, run.elapsed(), span.set_attributes if span.is_recording() else None)
        except Exception as exc:
            report("rollup.end_run", exc)

    # --- sessions ----------------------------------------------------------------------------------

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

        def add_budgets(s: SessionLedger) -> None:
            if budgets:
                s.budgets = tuple(dict.fromkeys((*s.budgets, *budgets)))

        self.sessions.update(session_id, lambda: self.session_metric_attrs(attrs), add_budgets)
        if budgets:
            self.budgets.active = True
            self.budgets.session_own = True

    def close_session(self, session_id: str) -> bool:
        s = self.sessions.pop(session_id)
        if s is None:
            return False
        self.metrics.record_sessions([s])
        return True

    def session_calls(self, session_id: str) -> CallLog | None:
        return self.sessions.read(
            session_id,
            lambda s: None if s is None else s.calls.log() if s.calls is not None else CallLog(),
        )

    def session_usage(self, session_id: str) -> Usage | None:
        return self.sessions.read(session_id, lambda s: s.usage.snapshot() if s is not None else None)

    def summary(self) -> UsageSummary:
        process = self.process.snapshot()
        return UsageSummary.build(
            process,
            usages(self.agents),
            self.sessions.snapshots(),
            tenants={t: row.usage.snapshot() for t, row in self.tenants.items()},
            providers=process.by_provider,
        )


def _tenant(attrs: Mapping[str, Any]) -> str | None:
    tenant = attrs.get(sc.TENANT_ID)
    return tenant if isinstance(tenant, str) and tenant else None


def _annotate(attrs: dict[str, Any], run: Run) -> None:
    """The session and agent a call inherits from its run, where its own attribution named none."""
    if run.session_id and sc.SESSION_ID not in attrs:
        attrs[sc.SESSION_ID] = run.session_id
        attrs[sc.CONVERSATION_ID] = run.session_id
    if run.kind == RUN and run.agent and sc.AGENT_NAME not in attrs:
        attrs[sc.AGENT_NAME] = run.agent
