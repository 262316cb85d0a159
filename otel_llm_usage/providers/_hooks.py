"""The life of a patched call, shared by every provider's hooks.

Skip when an outer instrumented call is in flight (litellm -> openai records once), start the
call (guarded: only `BudgetExceeded` may reach the caller, by design), send it with the span
current and the nesting flag set, record a failure and re-raise it unchanged, then hand the
result to the provider, whose own errors are caught so the caller still gets its result.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from .._guard import report
from ..budgets import BudgetExceeded
from ..context import in_llm_call
from ..recorder import LLMCall

Args = tuple[Any, ...]
Kwargs = dict[str, Any]


class Plan:
    """What a provider decided for one call: the call, and how to read its stream if any."""

    __slots__ = ("call", "kind", "stream")

    def __init__(self, call: LLMCall, kind: str = "", stream: bool = False) -> None:
        self.call = call
        self.kind = kind
        self.stream = stream


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

    def _begin(self, instance: Any, args: Args, kwargs: Kwargs) -> tuple[Plan | None, Args, Kwargs]:
        try:
            return self.begin(instance, args, kwargs)
        except BudgetExceeded:
            raise
        except Exception as exc:
            report(f"{self.site}.start", exc)
            return None, args, kwargs

    def _handle(self, plan: Plan, result: Any, is_async: bool) -> Any:
        try:
            return self.handle(plan, result, is_async)
        except Exception as exc:
            report(f"{self.site}.result", exc)
            plan.call.finish(None)
            return result

    def sync_call(self, wrapped: Callable[..., Any], instance: Any, args: Args, kwargs: Kwargs) -> Any:
        if in_llm_call.get() or not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        plan, args, kwargs = self._begin(instance, args, kwargs)
        if plan is None:
            return wrapped(*args, **kwargs)
        return self._handle(plan, send(plan.call, wrapped, args, kwargs), False)

    async def async_call(self, wrapped: Callable[..., Any], instance: Any, args: Args, kwargs: Kwargs) -> Any:
        if in_llm_call.get() or not is_instrumentation_enabled():
            return await wrapped(*args, **kwargs)
        plan, args, kwargs = self._begin(instance, args, kwargs)
        if plan is None:
            return await wrapped(*args, **kwargs)
        return await self.send_awaitable(plan, wrapped(*args, **kwargs))

    async def send_awaitable(self, plan: Plan, awaitable: Awaitable[Any]) -> Any:
        return self._handle(plan, await send_async(plan.call, awaitable), True)
