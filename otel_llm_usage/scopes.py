"""Sessions and runs: what the LLM calls made inside them belong to, and what they cost.

    with session("conv-42", user_id="u-7", attributes={"tenant.id": "acme"}):
        with run("planner") as r:
            client.chat.completions.create(...)
        print(r.usage.cost_usd)

Both are plain context managers over contextvars, so they work in threads started with
`contextvars.copy_context()`, in asyncio tasks, and as a plain `with` inside async code.
"""

from __future__ import annotations

import functools
import inspect
import uuid
from collections.abc import Callable, Iterable, Mapping
from contextvars import Token
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast

from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util import types

from . import rollup
from . import semconv as sc
from ._guard import report
from .budgets import Budget
from .context import Scope, current_scope
from .recorder import SCOPE_NAME
from .rollup import Run
from .summary import UsageRow, UsageSummary
from .usage import Usage
from .version import __version__

__all__ = [
    "Run",
    "RunScope",
    "SessionScope",
    "UsageRow",
    "UsageSummary",
    "close_session",
    "current_run",
    "run",
    "session",
    "session_usage",
    "usage_summary",
]

P = ParamSpec("P")
R = TypeVar("R")

Attributes = Mapping[str, types.AttributeValue]


def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, not {value!r}")
    return value


def _budgets(budgets: Iterable[Budget]) -> tuple[Budget, ...]:
    out = tuple(budgets)
    for b in out:
        if not isinstance(b, Budget):
            raise TypeError(f"budgets must be Budget objects, not {type(b).__name__}")
    return out


def _own_entry(
    entries: list[tuple[Scope, Token[Scope], object]], current: Scope
) -> tuple[Scope, Token[Scope], object]:
    """The entry this context opened: one scope object may be entered by several tasks at once."""
    entry = next((e for e in reversed(entries) if e[0] is current), entries[-1])
    entries.remove(entry)
    return entry


class SessionScope:
    """What `session()` returns: a context manager (sync or async) that yields the session id."""

    __slots__ = ("_attributes", "_budgets", "_session_id", "_tokens", "_user_id")

    def __init__(
        self, session_id: str, user_id: str | None, budgets: tuple[Budget, ...], attributes: dict[str, Any]
    ) -> None:
        self._session_id = session_id
        self._user_id = user_id
        self._budgets = budgets
        self._attributes = attributes
        self._tokens: list[tuple[Scope, Token[Scope], object]] = []

    def __enter__(self) -> str:
        sid = self._session_id
        outer = current_scope.get_local()
        user_id = self._user_id if self._user_id is not None else outer.user_id
        attributes = {**outer.attributes, **self._attributes} if self._attributes else outer.attributes
        scope = Scope(sid, user_id, outer.agent, attributes, outer.run)
        proc = rollup.active()
        if proc is not None:
            try:
                proc.open_session(sid, user_id, attributes, self._budgets)
            except Exception as exc:
                report("scopes.session", exc)
        token = current_scope.set(scope)
        ctx_token = otel_context.attach(baggage.set_baggage(sc.SESSION_ID, sid))
        self._tokens.append((scope, token, ctx_token))
        return sid

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        entry = _own_entry(self._tokens, current_scope.get_local())
        _, token, ctx_token = entry
        try:
            otel_context.detach(ctx_token)  # type: ignore[arg-type]
        finally:
            current_scope.reset(token)

    async def __aenter__(self) -> str:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def session(
    session_id: str,
    *,
    user_id: str | None = None,
    budgets: Iterable[Budget] = (),
    attributes: Attributes | None = None,
) -> SessionScope:
    """Put every span started inside on session `session_id` (and user `user_id`).

    LLM-call and run spans get `gen_ai.conversation.id` and `session.id` (other spans
    `session.id`), plus `user.id` when given and `attributes` (e.g. `{"tenant.id": "acme"}`,
    names used as given) on run and LLM-call spans. The id also travels in W3C baggage
    (`session.id`), so a downstream service using this package joins the same session.

    Leaving the block does not close the session: a conversation spans many requests. Its
    ledger lives until `close_session()`, eviction (least recently used beyond `max_sessions`)
    or `session_idle_seconds` without calls. `budgets` limit this session's total cost (their
    `scope` and `agent` fields are not consulted).
    """
    return SessionScope(
        _check_id(session_id, "session_id"),
        _check_id(user_id, "user_id") if user_id is not None else None,
        _budgets(budgets),
        dict(attributes or {}),
    )


def _tracer() -> trace.Tracer:
    proc = rollup.active()
    if proc is not None:
        return proc.tracer
    from .instrumentor import active_instrumentor

    inst = active_instrumentor()
    if inst is not None and inst.recorder is not None:
        return inst.recorder.tracer
    return trace.get_tracer(SCOPE_NAME, __version__, schema_url=sc.SCHEMA_URL)


class _RunState:
    __slots__ = ("ctx_token", "proc", "run", "scope", "scope_token", "span")

    def __init__(
        self,
        run: Run,
        span: trace.Span,
        proc: rollup.RollupProcessor | None,
        scope: Scope,
        scope_token: Token[Scope],
        ctx_token: object,
    ) -> None:
        self.run = run
        self.scope = scope
        self.span = span
        self.proc = proc
        self.scope_token = scope_token
        self.ctx_token = ctx_token


class RunScope:
    """What `run()` returns: a context manager (sync or async) yielding the `Run`, and a decorator."""

    __slots__ = ("_agent", "_attributes", "_budgets", "_name", "_session_id", "_states")

    def __init__(
        self,
        name: str,
        agent: str | None,
        session_id: str | None,
        budgets: tuple[Budget, ...],
        attributes: dict[str, Any],
    ) -> None:
        self._name = name
        self._agent = agent
        self._session_id = session_id
        self._budgets = budgets
        self._attributes = attributes
        self._states: list[_RunState] = []

    def _fresh(self) -> RunScope:
        return RunScope(self._name, self._agent, self._session_id, self._budgets, self._attributes)

    def __enter__(self) -> Run:
        name = self._name
        agent = self._agent or name
        outer = current_scope.get()
        session_id = self._session_id or outer.session_id
        user_id = outer.user_id
        attributes = {**outer.attributes, **self._attributes} if self._attributes else outer.attributes
        run_id = uuid.uuid4().hex
        span_attrs: dict[str, Any] = {
            **attributes,
            sc.OPERATION_NAME: sc.OP_INVOKE_AGENT,
            sc.AGENT_NAME: agent,
            sc.RUN_ID: run_id,
        }
        if session_id is not None:
            span_attrs[sc.CONVERSATION_ID] = session_id
            span_attrs[sc.SESSION_ID] = session_id
        if user_id is not None:
            span_attrs[sc.USER_ID] = user_id
        ctx = otel_context.get_current()
        if self._session_id is not None and baggage.get_baggage(sc.SESSION_ID, ctx) != session_id:
            ctx = baggage.set_baggage(sc.SESSION_ID, session_id, ctx)
        proc = rollup.active()
        run: Run | None = None
        parent = current_scope.get_local().run
        if proc is not None:
            try:
                if self._session_id is not None:
                    proc.open_session(self._session_id, user_id, attributes, ())
                parent = proc.current_run()
            except Exception as exc:
                report("scopes.run", exc)
        span = _tracer().start_span(
            f"{sc.OP_INVOKE_AGENT} {name}", context=ctx, kind=SpanKind.INTERNAL, attributes=span_attrs
        )
        if proc is not None:
            try:
                run = proc.begin_run(
                    span,
                    run_id=run_id,
                    name=name,
                    agent=agent,
                    session_id=session_id,
                    budgets=self._budgets,
                    attributes=span_attrs,
                    parent=parent,
                )
            except Exception as exc:
                report("scopes.run", exc)
        if run is None:
            run = Run(name, agent, run_id=run_id, session_id=session_id, parent=parent, span=span, owned=True)
        scope = Scope(session_id, user_id, agent, attributes, run)
        scope_token = current_scope.set(scope)
        ctx_token = otel_context.attach(trace.set_span_in_context(span, ctx))
        self._states.append(_RunState(run, span, proc, scope, scope_token, ctx_token))
        return run

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        states = self._states
        current = current_scope.get_local()
        state = next((st for st in reversed(states) if st.scope is current), states[-1])
        states.remove(state)
        span = state.span
        try:
            otel_context.detach(state.ctx_token)  # type: ignore[arg-type]
        finally:
            current_scope.reset(state.scope_token)
        if exc is not None and span.is_recording():
            etype = type(exc).__qualname__
            span.set_attribute(sc.ERROR_TYPE, etype)
            span.set_status(Status(StatusCode.ERROR, str(exc)[:256] or etype))
        if state.proc is not None:
            state.proc.end_run(state.run, span)
        else:
            state.run._closed = True
            state.run._span = None
        span.end()

    async def __aenter__(self) -> Run:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate a function (sync or async): each call runs inside its own run."""
        if inspect.iscoroutinefunction(fn):
            afn = cast(Callable[..., Any], fn)

            @functools.wraps(fn)
            async def arun(*args: Any, **kwargs: Any) -> Any:
                with self._fresh():
                    return await afn(*args, **kwargs)

            return cast(Callable[P, R], arun)

        @functools.wraps(fn)
        def srun(*args: P.args, **kwargs: P.kwargs) -> R:
            with self._fresh():
                return fn(*args, **kwargs)

        return srun


def run(
    name: str,
    *,
    agent: str | None = None,
    session_id: str | None = None,
    budgets: Iterable[Budget] = (),
    attributes: Attributes | None = None,
) -> RunScope:
    """A run of agent `agent` (default `name`): an `invoke_agent {name}` span over the calls inside.

    Use as `with run(...) as r:`, `async with run(...) as r:` or as a decorator `@run("name")`
    (sync or async function; every call is a new run). `r.usage` is a live `Usage` of the LLM
    calls inside, nested runs included; the run span gets the totals (`llm_usage.run.*`) and
    the session's totals so far (`llm_usage.session.*`) when the run ends. Calls inside carry
    `gen_ai.agent.name`. `session_id` puts the run (and its calls) on that session; otherwise
    the enclosing session, if any, is used. `budgets` limit this run's cost (their `scope` and
    `agent` fields are not consulted); `attributes` go on the run span and the calls inside.
    """
    return RunScope(
        _check_id(name, "name"),
        _check_id(agent, "agent") if agent is not None else None,
        _check_id(session_id, "session_id") if session_id is not None else None,
        _budgets(budgets),
        dict(attributes or {}),
    )


def current_run() -> Run | None:
    """The innermost `run()` around the caller, or None."""
    return current_scope.get_local().run


def session_usage(session_id: str) -> Usage | None:
    """A snapshot of the session's totals while its ledger is held, else None."""
    proc = rollup.active()
    return proc.session_usage(session_id) if proc is not None else None


def close_session(session_id: str) -> bool:
    """End a session: record its `llm_usage.session.*` histograms and drop its ledger.

    Returns False when the session was not held (never seen, already closed or evicted). A
    later call on the same id starts a new ledger.
    """
    proc = rollup.active()
    return proc.close_session(session_id) if proc is not None else False


def usage_summary() -> UsageSummary:
    """Totals of this process since `instrument()`, by agent, by model and by held session."""
    proc = rollup.active()
    return proc.summary() if proc is not None else UsageSummary.empty()
