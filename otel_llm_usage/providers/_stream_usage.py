"""Asking any OpenAI-compatible server for a stream's usage without ever breaking the call.

A stream asked for `stream_options.include_usage` ends with a usage-only chunk, the only way most
compatible servers report a stream's tokens. Most accept it (OpenAI, Azure OpenAI, vLLM, llama.cpp,
Ollama, LM Studio); a few ignore it; some strict ones refuse any body carrying it: a gateway that
checks parameters against a list (400 `Unknown parameter: 'stream_options'`, code
`unknown_parameter`), a FastAPI server whose request model forbids extra fields (422
`extra_forbidden` at `["body", "stream_options"]`), a Rust server (422 `unknown field
`stream_options``). The hooks that add it resend a refused request once without it and remember
the endpoint, so the caller only ever sees the answer to their own request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _fork
from .. import semconv as sc
from .._guard import report
from ..recorder import CallRequest, LLMCall
from ._driver import Args, CallHooks, Kwargs, Plan, send, send_async

REFUSAL_STATUSES = frozenset({400, 422})
# What a refusal of the parameter says: its name, or a complaint about a field the server does not
# know. A refusal of something else the caller sent matches only the second kind; the resend then
# gets the same refusal, which the caller sees as they would have without this package.
REFUSAL_WORDS = (
    "stream_options",
    "include_usage",
    "unknown field",
    "unknown parameter",
    "unrecognized",
    "extra_forbidden",
    "extra inputs",
    "extra fields",
    "additional properties",
)
MAX_ENDPOINTS = 1024


def refuses_stream_options(exc: BaseException) -> bool:
    """Whether an SDK's error is a server refusing `stream_options` (openai's `APIStatusError`,
    litellm's exceptions: both carry `status_code` and the server's message)."""
    try:
        if getattr(exc, "status_code", None) not in REFUSAL_STATUSES:
            return False
        text = f"{exc} {getattr(exc, 'body', '')}".lower()
        return any(word in text for word in REFUSAL_WORDS)
    except Exception as inner:
        report("stream_usage.refusal", inner)
        return False


def _mark_resent(plan: Resendable) -> None:
    """The span of a call whose request was refused and sent again without `stream_options`."""
    plan.kind = plan.plain_kind  # no usage chunk comes now: nothing to hide
    try:
        plan.call.span.set_attributes({sc.STREAM_USAGE_INJECTED: False, sc.STREAM_USAGE_RETRIED: True})
    except Exception as exc:
        report("stream_usage.mark", exc)


class RefusingEndpoints:
    """Endpoints (host, port) that refused `stream_options`: their streams are sent unchanged.

    Bounded: past `MAX_ENDPOINTS` the oldest is forgotten (and asked once more, some day).
    """

    def __init__(self, limit: int = MAX_ENDPOINTS) -> None:
        self._seen: dict[tuple[str | None, int | None], None] = {}
        self._limit = limit
        self._lock = _fork.lock()

    def __contains__(self, endpoint: tuple[str | None, int | None]) -> bool:
        return endpoint in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, endpoint: tuple[str | None, int | None]) -> None:
        with self._lock:
            if endpoint in self._seen:
                return
            if len(self._seen) >= self._limit:
                del self._seen[next(iter(self._seen))]
            self._seen[endpoint] = None


class Resendable(Plan):
    """A plan whose request asks for stream usage. `args`/`kwargs` are the caller's own, sent instead
    if the server refuses `stream_options`; the stream is then read as `plain_kind`."""

    __slots__ = ("args", "kwargs", "plain_kind")

    def __init__(self, call: LLMCall, kind: str, plain_kind: str, args: Args, kwargs: Kwargs) -> None:
        super().__init__(call, kind)
        self.plain_kind = plain_kind
        self.args = args
        self.kwargs = kwargs


def endpoint_of(req: CallRequest) -> tuple[str | None, int | None]:
    """Where a call goes, as remembered: host and port (the provider's name when no host is known)."""
    return req.server_address or req.provider, req.server_port


def _remember(plan: Resendable, refusing: RefusingEndpoints) -> None:
    """The resend without `stream_options` worked: that was the refusal; ask there no more."""
    try:
        refusing.add(endpoint_of(plan.call.req))
    except Exception as exc:
        report("stream_usage.remember", exc)


def send_resending(
    plan: Resendable, refusing: RefusingEndpoints, wrapped: Callable[..., Any], args: Args, kwargs: Kwargs
) -> Any:
    """The driver's `send` of a request asking for stream usage: if the server refuses it, the
    caller's own request is sent instead, within the same call and span."""

    def attempt(*args: Any, **kwargs: Any) -> Any:
        try:
            return wrapped(*args, **kwargs)
        except Exception as exc:
            if not refuses_stream_options(exc):
                raise
        # Outside the `except`: an error of the resend is the caller's own, with no chained refusal.
        _mark_resent(plan)
        result = wrapped(*plan.args, **plan.kwargs)
        _remember(plan, refusing)
        return result

    return send(plan.call, attempt, args, kwargs)


async def send_resending_async(
    plan: Resendable, refusing: RefusingEndpoints, wrapped: Callable[..., Any], args: Args, kwargs: Kwargs
) -> Any:
    """`send_resending` for a coroutine function."""

    async def attempt() -> Any:
        try:
            return await wrapped(*args, **kwargs)
        except Exception as exc:
            if not refuses_stream_options(exc):
                raise
        _mark_resent(plan)
        result = await wrapped(*plan.args, **plan.kwargs)
        _remember(plan, refusing)
        return result

    return await send_async(plan.call, attempt())


class ResendingHooks(CallHooks):
    """The driver's sequence, with a request that `begin` planned as `Resendable` sent by
    `send_resending`. Subclasses set `refusing` and leave out of their plans the endpoints in it."""

    refusing: RefusingEndpoints

    def send_plan(self, plan: Plan, wrapped: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
        if type(plan) is Resendable:
            return send_resending(plan, self.refusing, wrapped, args, kwargs)
        return super().send_plan(plan, wrapped, args, kwargs)

    async def send_plan_async(
        self, plan: Plan, wrapped: Callable[..., Any], args: Args, kwargs: Kwargs
    ) -> Any:
        if type(plan) is Resendable:
            return await send_resending_async(plan, self.refusing, wrapped, args, kwargs)
        return await super().send_plan_async(plan, wrapped, args, kwargs)
