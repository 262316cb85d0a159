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

from . import active
from . import semconv as sc
from ._guard import report
from ._redact import redact
from .context import Attribution, current_attribution, propagate_session
from .rollup import Budget, Rollup, Run
from .rollup.calls import CallLog
from .summary import UsageRow, UsageSummary
from .usage import Usage
from .version import INSTRUMENTATION_NAME, __version__

__all__ = [
    "Run",
    "RunBlock",
    "SessionBlock",
    "UsageRow",
    "UsageSummary",
    "close_session",
    "current_run",
    "run",
    "session",
    "session_calls",
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
    entries: list[tuple[Attribution, Token[Attribution], object]], current: Attribution
) -> tuple[Attribution, Token[Attribution], object]:
    """The entry this context opened: one block object may be entered by several tasks at once."""
    entry = next((e for e in reversed(entries) if e[0] is current), entries[-1])
    entries.remove(entry)
    return entry


def _restore(token: Token[Attribution], ctx_token: object) -> None:
    """Undo a block's entry. Left in another context than it was entered in (an async generator
    finalised elsewhere, a generator closed by another task), neither value can be reset there:
    nothing is raised, as plain OpenTelemetry raises nothing for its spans."""
    try:
        current_attribution.reset(token)
    except ValueError:
        return
    if ctx_token is not None:  # None: the block put nothing into the context (no baggage)
        otel_context.detach(ctx_token)  # type: ignore[arg-type]


class SessionBlock:
    """What `session()` returns: a context manager (sync or async) that yields the session id."""

    __slots__ = ("_attributes", "_budgets", "_propagate", "_session_id", "_tokens", "_user_id")

    def __init__(
        self,
        session_id: str,
        user_id: str | None,
        budgets: tuple[Budget, ...],
        attributes: dict[str, Any],
        propagate: bool | None = None,
    ) -> None:
        self._propagate = propagate
        self._session_id = session_id
        self._user_id = user_id
        self._budgets = budgets
        self._attributes = attributes
        self._tokens: list[tuple[Attribution, Token[Attribution], object]] = []

    def __enter__(self) -> str:
        sid = self._session_id
        outer = current_attribution.get_local()
        user_id = self._user_id if self._user_id is not None else outer.user_id
        attributes = {**outer.attributes, **self._attributes} if self._attributes else outer.attributes
        attribution = Attribution(sid, user_id, outer.agent, attributes, outer.run)
        rollup = active.current_rollup()
        if rollup is not None:
            try:
                rollup.open_session(sid, user_id, attributes, self._budgets)
            except Exception as exc:
                report("runs.session", exc)
        token = current_attribution.set(attribution)
        ctx_token = (
            otel_context.attach(baggage.set_baggage(sc.SESSION_ID, sid))
            if propagate_session(self._propagate)
            else None
        )
        self._tokens.append((attribution, token, ctx_token))
        return sid

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        entry = _own_entry(self._tokens, current_attribution.get_local())
        _, token, ctx_token = entry
        _restore(token, ctx_token)

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
    propagate: bool | None = None,
) -> SessionBlock:
    """Put every span started inside on session `session_id` (and user `user_id`).

    LLM-call and run spans get `gen_ai.conversation.id` and `session.id` (other spans
    `session.id`), plus `user.id` when given and `attributes` (e.g. `{"tenant.id": "acme"}`,
    names used as given) on run and LLM-call spans.

    The id stays in the process unless `propagate=True` (or `OTEL_LLM_USAGE_PROPAGATE_SESSION=true`):
    then it also travels in W3C baggage (`session.id`) to the application's own services, so one
    using this package joins the same session. It never goes to an LLM provider: instrumented
    calls send their requests without session or user ids in the baggage.

    Leaving the block does not close the session: a conversation spans many requests. Its
    ledger lives until `close_session()`, eviction (least recently used beyond `max_sessions`)
    or `session_idle_seconds` without calls. `budgets` limit this session's total cost (their
    `scope` and `agent` fields are not consulted).
    """
    return SessionBlock(
        _check_id(session_id, "session_id"),
        _check_id(user_id, "user_id") if user_id is not None else None,
        _budgets(budgets),
        dict(attributes or {}),
        _check_flag(propagate, "propagate"),
    )


def _check_flag(value: object, what: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{what} must be True, False or None, not {value!r}")
    return value


def _tracer() -> trace.Tracer:
    inst = active.current()
    if inst is not None:
        return inst.recorder.tracer
    return trace.get_tracer(INSTRUMENTATION_NAME, __version__, schema_url=sc.SCHEMA_URL)


class _RunState:
    __slots__ = ("attribution", "ctx_token", "rollup", "run", "span", "token")

    def __init__(
        self,
        run: Run,
        span: trace.Span,
        rollup: Rollup | None,
        attribution: Attribution,
        token: Token[Attribution],
        ctx_token: object,
    ) -> None:
        self.run = run
        self.attribution = attribution
        self.span = span
        self.rollup = rollup
        self.token = token
        self.ctx_token = ctx_token


class RunBlock:
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

    def _fresh(self) -> RunBlock:
        return RunBlock(self._name, self._agent, self._session_id, self._budgets, self._attributes)

    def __enter__(self) -> Run:
        name = self._name
        agent = self._agent or name
        outer = current_attribution.get()
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
        propagated = baggage.get_baggage(sc.SESSION_ID, ctx)
        # The run's own session replaces one already propagated (the user opted in upstream);
        # otherwise it goes into the baggage only when the environment opts in.
        if (
            self._session_id is not None
            and propagated != session_id
            and (propagated is not None or propagate_session(None))
        ):
            ctx = baggage.set_baggage(sc.SESSION_ID, session_id, ctx)
        rollup = active.current_rollup()
        run: Run | None = None
        parent = current_attribution.get_local().run
        if rollup is not None:
            try:
                if self._session_id is not None:
                    rollup.open_session(self._session_id, user_id, attributes, ())
                parent = rollup.current_run()
            except Exception as exc:
                report("runs.run", exc)
        span: trace.Span
        try:
            span = _tracer().start_span(
                f"{sc.OP_INVOKE_AGENT} {name}", context=ctx, kind=SpanKind.INTERNAL, attributes=span_attrs
            )
        except Exception as exc:  # a user's sampler or span processor: the run goes on without a span
            report("runs.run_span", exc)
            span = trace.INVALID_SPAN
        if rollup is not None:
            try:
                run = rollup.begin_run(
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
                report("runs.run", exc)
        if run is None:
            run = Run(name, agent, run_id=run_id, session_id=session_id, parent=parent, span=span, owned=True)
        attribution = Attribution(session_id, user_id, agent, attributes, run)
        token = current_attribution.set(attribution)
        if span is not trace.INVALID_SPAN:
            ctx = trace.set_span_in_context(span, ctx)
        ctx_token = otel_context.attach(ctx)
        self._states.append(_RunState(run, span, rollup, attribution, token, ctx_token))
        return run

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        states = self._states
        current = current_attribution.get_local()
        state = next((st for st in reversed(states) if st.attribution is current), states[-1])
        states.remove(state)
        span = state.span
        _restore(state.token, state.ctx_token)
        try:
            if exc is not None and span.is_recording():
                etype = type(exc).__qualname__
                span.set_attribute(sc.ERROR_TYPE, etype)
                span.set_status(Status(StatusCode.ERROR, redact(str(exc)) or etype))
        except Exception as inner:
            report("runs.run_error", inner)
        if state.rollup is not None:
            state.rollup.end_run(state.run, span)
        else:
            state.run.close()
        try:
            span.end()
        except Exception as inner:  # a user's span processor
            report("runs.run_span_end", inner)

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
) -> RunBlock:
    """A run of agent `agent` (default `name`): an `invoke_agent {name}` span over the calls inside.

    Use as `with run(...) as r:`, `async with run(...) as r:` or as a decorator `@run("name")`
    (sync or async function; every call is a new run). `r.usage` is a live `Usage` of the LLM
    calls inside, nested runs included; the run span gets the totals (`llm_usage.run.*`) and
    the session's totals so far (`llm_usage.session.*`) when the run ends. Calls inside carry
    `gen_ai.agent.name`. `session_id` puts the run (and its calls) on that session; otherwise
    the enclosing session, if any, is used. `budgets` limit this run's cost (their `scope` and
    `agent` fields are not consulted); `attributes` go on the run span and the calls inside.
    """
    return RunBlock(
        _check_id(name, "name"),
        _check_id(agent, "agent") if agent is not None else None,
        _check_id(session_id, "session_id") if session_id is not None else None,
        _budgets(budgets),
        dict(attributes or {}),
    )


def current_run() -> Run | None:
    """The innermost `run()` around the caller, or None."""
    return current_attribution.get_local().run


def session_usage(session_id: str) -> Usage | None:
    """A snapshot of the session's totals while its ledger is held, else None."""
    rollup = active.current_rollup()
    return rollup.session_usage(session_id) if rollup is not None else None


def session_calls(session_id: str) -> CallLog | None:
    """The session's LLM calls, oldest first, while its ledger is held (else None).

    The newest `max_call_records` (an `instrument()` option, 1,000 by default) are kept; the
    result's `dropped` counts the older ones.
    """
    rollup = active.current_rollup()
    return rollup.session_calls(session_id) if rollup is not None else None


def close_session(session_id: str) -> bool:
    """End a session: record its `llm_usage.session.*` histograms and drop its ledger.

    Returns False when the session was not held (never seen, already closed or evicted). A
    later call on the same id starts a new ledger.
    """
    rollup = active.current_rollup()
    return rollup.close_session(session_id) if rollup is not None else False


def usage_summary() -> UsageSummary:
    """Totals of this process since `instrument()`, by agent, by model and by held session."""
    rollup = active.current_rollup()
    return rollup.summary() if rollup is not None else UsageSummary.empty()
