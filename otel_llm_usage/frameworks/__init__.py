"""Run and session spans for agent frameworks.

Each module here patches one framework's run entry points so that every run becomes a run span
(`invoke_agent {name}`, made by `runs.run`, so the rollup totals it) and the
framework's conversation id names its session. The LLM calls inside are recorded by the provider
hooks (openai, anthropic) as everywhere else; these modules never record a call, so no call is
counted twice however the framework reaches the model.

A module is registered like a provider (in `registry.FRAMEWORKS`): it names the library it needs
(`LIBRARY`) and builds its wrappers with `build_wrappers(recorder, options) -> {(module,
"Class.method"): wrapper}`. Nothing here imports a framework; the instrumentor imports it only when
it is installed.

Streamed runs outlive the call that starts them: the framework hands back an iterator (Agno) or a
result fed by a background task (OpenAI Agents SDK), and the model is called while the caller
consumes it. Such a run is entered in a context of its own (`DetachedRun`): the framework's work
runs in that context, so the run is current for every call it makes, while the caller's context
stays as it was; the run ends once, when the stream is exhausted, fails, is closed or cancelled,
or is garbage-collected.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any, Protocol, TypeGuard, TypeVar

from opentelemetry.trace import Status, StatusCode

from .. import _fork
from .. import semconv as sc
from .._finalise import arm, finalise
from .._guard import report
from .._proxy import ObjectProxy
from .._redact import redact
from ..rollup import Run

__all__ = [
    "AsyncRunStream",
    "DetachedRun",
    "RunEntry",
    "SyncRunStream",
    "in_run",
    "in_run_async",
    "is_id",
]

T = TypeVar("T")


def is_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value)


class _Block(Protocol):
    def __enter__(self) -> Any: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Any: ...


class RunEntry:
    """`session()` / `run()` blocks entered and left as one, never raising into the framework.

    `run` is the `Run` of the run block once entered (None if entering failed). `run_id` replaces
    the id `run()` draws, for frameworks that have run ids of their own.
    """

    __slots__ = ("_blocks", "_entered", "_run_id", "run")

    def __init__(self, *blocks: _Block, run_id: str | None = None) -> None:
        self._blocks = blocks
        self._run_id = run_id
        self._entered: list[_Block] = []
        self.run: Run | None = None

    def enter(self) -> bool:
        try:
            for block in self._blocks:
                value = block.__enter__()
                self._entered.append(block)
                if isinstance(value, Run):
                    self.run = value
            if self._run_id is not None and self.run is not None:
                self.run.run_id = self._run_id
                span = self.run.span
                if span is not None:
                    span.set_attribute(sc.RUN_ID, self._run_id)
        except Exception as exc:
            report("frameworks.enter", exc)
            self.exit(None)
            return False
        return True

    def mark_failed(self, error_type: str, message: str | None = None) -> None:
        """A run the framework reports as failed without raising: its span says so."""
        span = self.run.span if self.run is not None else None
        if span is None or not span.is_recording():
            return
        try:
            span.set_attribute(sc.ERROR_TYPE, error_type)
            span.set_status(Status(StatusCode.ERROR, redact(message or error_type)))
        except Exception as exc:
            report("frameworks.mark_failed", exc)

    def exit(self, exc: BaseException | None) -> None:
        tb = exc.__traceback__ if exc is not None else None
        while self._entered:
            block = self._entered.pop()
            try:
                block.__exit__(type(exc) if exc is not None else None, exc, tb)
            except Exception as inner:
                report("frameworks.exit", inner)


Observe = Callable[[RunEntry, Any], None]


def _observe(observe: Observe | None, entry: RunEntry, item: Any) -> None:
    if observe is not None:
        try:
            observe(entry, item)
        except Exception as exc:
            report("frameworks.observe", exc)


def in_run(
    entry: RunEntry, fn: Callable[..., T], *args: Any, observe: Observe | None = None, **kwargs: Any
) -> T:
    """`fn(*args, **kwargs)` inside `entry`, in the caller's context; plain call if entering fails.

    `observe(entry, result)` sees the result before the run ends.
    """
    if not entry.enter():
        return fn(*args, **kwargs)
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:
        entry.exit(exc)
        raise
    _observe(observe, entry, result)
    entry.exit(None)
    return result


async def in_run_async(entry: RunEntry, awaitable: Any, observe: Observe | None = None) -> Any:
    """Await `awaitable` inside `entry` (entered in the awaiting task's context)."""
    if not entry.enter():
        return await awaitable
    try:
        result = await awaitable
    except BaseException as exc:
        entry.exit(exc)
        raise
    _observe(observe, entry, result)
    entry.exit(None)
    return result


class DetachedRun:
    """A `RunEntry` entered in a copy of the caller's context, for runs that outlive their call.

    `call` runs framework code in that context; `end` leaves the run exactly once, from any thread.
    """

    __slots__ = ("_ctx", "_done", "_entry", "_lock")

    def __init__(self, entry: RunEntry) -> None:
        self._ctx = contextvars.copy_context()
        self._entry = entry
        self._lock = _fork.lock()
        self._done = False

    @classmethod
    def start(cls, entry: RunEntry) -> DetachedRun | None:
        detached = cls(entry)
        return detached if detached._ctx.run(entry.enter) else None

    @property
    def entry(self) -> RunEntry:
        return self._entry

    @property
    def done(self) -> bool:
        return self._done

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self._ctx.run(fn, *args, **kwargs)

    def end(self, exc: BaseException | None = None) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        try:
            self._ctx.run(self._entry.exit, exc)
        except Exception as inner:
            report("frameworks.end", inner)

    def awaiting(self, awaitable: Any) -> _InContext:
        """`awaitable`, driven so that each of its steps runs in this run's context."""
        return _InContext(self._ctx, awaitable)


class _InContext:
    """Awaits another awaitable, running each of its steps in `ctx` (same task, same loop)."""

    __slots__ = ("_awaitable", "_ctx")

    def __init__(self, ctx: contextvars.Context, awaitable: Any) -> None:
        self._ctx = ctx
        self._awaitable = awaitable

    def __await__(self) -> Generator[Any, Any, Any]:
        ctx = self._ctx
        it = self._ctx.run(self._awaitable.__await__)
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                if error is None:
                    yielded = ctx.run(it.send, value)
                else:
                    thrown, error = error, None
                    yielded = ctx.run(it.throw, thrown)
            except StopIteration as stop:
                return stop.value
            try:
                value = yield yielded
            except BaseException as exc:  # cancellation and close() go to the awaitable itself
                error, value = exc, None


def _close_run(detached: DetachedRun, close: Callable[[], Any] | None) -> None:
    try:
        # The generator's own clean-up runs in the run's context, as its body did.
        if close is not None:
            detached.call(close)
    finally:
        detached.end(None)


class SyncRunStream(ObjectProxy):
    """A framework's event iterator whose run ends when it is exhausted, fails, is closed or dropped.

    `observe(entry, item)` sees every item the caller gets.
    """

    def __init__(self, wrapped: Any, detached: DetachedRun, observe: Observe | None = None) -> None:
        super().__init__(wrapped)
        self._self_run = detached
        self._self_observe = observe
        arm()

    def __iter__(self) -> SyncRunStream:
        return self

    def __next__(self) -> Any:
        return self._step(self.__wrapped__.__next__)

    def send(self, value: Any) -> Any:
        return self._step(self.__wrapped__.send, value)

    def throw(self, *args: Any) -> Any:
        return self._step(self.__wrapped__.throw, *args)

    def _step(self, fn: Callable[..., Any], *args: Any) -> Any:
        detached = self._self_run
        try:
            item = detached.call(fn, *args)
        except StopIteration:
            detached.end(None)
            raise
        except BaseException as exc:
            detached.end(exc)
            raise
        _observe(self._self_observe, detached.entry, item)
        return item

    def close(self) -> Any:
        detached = self._self_run
        try:
            if detached.done:
                return self.__wrapped__.close()
            return detached.call(self.__wrapped__.close)
        finally:
            detached.end(None)

    def __del__(self) -> None:
        try:
            if not self._self_run.done:
                finalise(_close_run, self._self_run, getattr(self.__wrapped__, "close", None))
        except Exception:
            pass


class AsyncRunStream(ObjectProxy):
    """An async event iterator whose run ends when it is exhausted, fails, is closed or dropped."""

    def __init__(self, wrapped: Any, detached: DetachedRun, observe: Observe | None = None) -> None:
        super().__init__(wrapped)
        self._self_run = detached
        self._self_observe = observe
        arm()

    def __aiter__(self) -> AsyncRunStream:
        return self

    async def __anext__(self) -> Any:
        return await self._step(self.__wrapped__.__anext__)

    async def asend(self, value: Any) -> Any:
        return await self._step(self.__wrapped__.asend, value)

    async def athrow(self, *args: Any) -> Any:
        return await self._step(self.__wrapped__.athrow, *args)

    async def _step(self, fn: Callable[..., Any], *args: Any) -> Any:
        detached = self._self_run
        try:
            item = await detached.awaiting(detached.call(fn, *args))
        except StopAsyncIteration:
            detached.end(None)
            raise
        except BaseException as exc:
            detached.end(exc)
            raise
        _observe(self._self_observe, detached.entry, item)
        return item

    async def aclose(self) -> Any:
        detached = self._self_run
        try:
            if detached.done:
                return await self.__wrapped__.aclose()
            return await detached.awaiting(detached.call(self.__wrapped__.aclose))
        finally:
            detached.end(None)

    def __del__(self) -> None:
        # The event loop finalises the abandoned async generator itself; the run ends now.
        try:
            finalise(self._self_run.end, None)
        except Exception:
            pass
