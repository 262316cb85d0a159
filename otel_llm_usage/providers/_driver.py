"""The life of a patched call, the one driver of every provider's hooks.

Skip when an outer instrumented call is in flight (litellm -> openai records once: `skip`), start
the call (guarded: only `BudgetExceeded` may reach the caller, by design: `start`), send it with
the span current and the nesting flag set, record a failure and re-raise it unchanged (`send`),
then hand the result to the provider, whose own errors are caught so the caller still gets its
result. `CallHooks` is that sequence for a hook that sends one request and returns its response;
hooks of another shape (a stream opened in several steps) use the same functions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from .._finalise import drain, pending
from .._guard import report
from ..budgets import BudgetExceeded
from ..context import in_llm_call
from ..recorder import LLMCall

T = TypeVar("T")
Args = tuple[Any, ...]
Kwargs = dict[str, Any]


class Plan:
    """What a provider decided for one call: the call, and how to read its stream if any."""

    __slots__ = ("call", "kind", "stream")

    def __init__(self, call: LLMCall, kind: str = "", stream: bool = False) -> None:
        self.call = call
        self.kind = kind
        self.stream = stream


def skip() -> bool:
    """Whether to pass a call through untouched: an outer instrumented call records it, or the
    application suppressed instrumentation (`suppress_instrumentation()`).

    Also the moment to end calls whose streams the cycle collector freed (see `_finalise`): this
    thread holds no lock of the package here.
    """
    if pending:
        drain()
    return in_llm_call.get() or not is_instrumentation_enabled()


def start(site: str, begin: Callable[..., T], *args: Any) -> T | None:
    """`begin(*args)` (which describes and starts a call), or None if it failed: the failure is
    logged once and the call goes through unrecorded. A budget's refusal reaches the caller."""
    try:
        return begin(*args)
    except BudgetExceeded:
        raise
    except Exception as exc:
        report(f"{site}.start", exc)
        return None


def replace_arg(args: Args, kwargs: Kwargs, index: int, name: str, value: Any) -> tuple[Args, Kwargs]:
    """The call's arguments with one argument (given by position or by keyword) replaced."""
    if len(args) > index:
        return (*args[:index], value, *args[index + 1 :]), kwargs
    return args, {**kwargs, name: value}


def send(call: LLMCall, wrapped: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
    """Send a started call with its span current and inner clients silent; record a failure."""
    token = in_llm_call.set(True)
    call.activate()
    try:
        return wrapped(*args, **kwargs)
    except BaseException as exc:
        call.fail(exc)
        raise
    finally:
        call.deactivate()
        in_llm_call.reset(token)


async def send_async(call: LLMCall, awaitable: Awaitable[Any]) -> Any:
    """`send` for a coroutine: the same, around awaiting it."""
    token = in_llm_call.set(True)
    call.activate()
    try:
        return await awaitable
    except BaseException as exc:
        call.fail(exc)
        raise
    finally:
        call.deactivate()
        in_llm_call.reset(token)


class CallHooks:
    """Subclasses implement `begin` (describe and start, or None to pass through) and `handle`."""

    site = "provider"

    def begin(self, instance: Any, args: Args, kwargs: Kwargs) -> tuple[Plan | None, Args, Kwargs]:
        raise NotImplementedError

    def handle(self, plan: Plan, result: Any, is_async: bool) -> Any:
        raise NotImplementedError

    def _handle(self, plan: Plan, result: Any, is_async: bool) -> Any:
        try:
            return self.handle(plan, result, is_async)
        except Exception as exc:
            report(f"{self.site}.result", exc)
            plan.call.finish(None)
            return result

    # `skip()` and `start()` written out: this is the path of every openai, anthropic, groq, mistral,
    # litellm, bedrock and cohere call, where two more Python calls are a measurable share of the cost.
    def sync_call(self, wrapped: Callable[..., Any], instance: Any, args: Args, kwargs: Kwargs) -> Any:
        if pending:
            drain()
        if in_llm_call.get() or not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        try:
            plan, args, kwargs = self.begin(instance, args, kwargs)
        except BudgetExceeded:
            raise
        except Exception as exc:
            report(f"{self.site}.start", exc)
            plan = None
        if plan is None:
            return wrapped(*args, **kwargs)
        return self._handle(plan, self.send_plan(plan, wrapped, args, kwargs), False)

    async def async_call(self, wrapped: Callable[..., Any], instance: Any, args: Args, kwargs: Kwargs) -> Any:
        if pending:
            drain()
        if in_llm_call.get() or not is_instrumentation_enabled():
            return await wrapped(*args, **kwargs)
        try:
            plan, args, kwargs = self.begin(instance, args, kwargs)
        except BudgetExceeded:
            raise
        except Exception as exc:
            report(f"{self.site}.start", exc)
            plan = None
        if plan is None:
            return await wrapped(*args, **kwargs)
        return self._handle(plan, await self.send_plan_async(plan, wrapped, args, kwargs), True)

    # How a started call is sent: overridden where a request may be sent again (`_stream_usage`).
    def send_plan(self, plan: Plan, wrapped: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
        return send(plan.call, wrapped, args, kwargs)

    async def send_plan_async(
        self, plan: Plan, wrapped: Callable[..., Any], args: Args, kwargs: Kwargs
    ) -> Any:
        return await send_async(plan.call, wrapped(*args, **kwargs))

    async def send_awaitable(self, plan: Plan, awaitable: Awaitable[Any]) -> Any:
        return self._handle(plan, await send_async(plan.call, awaitable), True)
