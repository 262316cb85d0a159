"""litellm: `completion`, `acompletion`, `embedding`, `aembedding`, `responses`, `aresponses`.

Every public entry point of litellm (1.103 and later) hands its call to a `PublicDispatch` object,
whose `run` / `arun` method is looked up on the class at each call. Hooking those two methods
records calls made through any reference to litellm's functions, including one taken with
`from litellm import completion` before `instrument()` ran (the OpenHands SDK keeps such
references), and covers both litellm's Python path and its native one.

The span is the outermost one: `in_llm_call` is set while litellm works, and while a stream is
read, so the openai SDK (or any other instrumented client) that litellm calls underneath records
nothing. Tokens come from litellm's OpenAI-shaped `Usage`; the cost litellm computed itself
(`_hidden_params["response_cost"]`, or `usage.cost` in a stream) is the call's cost, with the
price-table cost alongside.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any

from .. import semconv as sc
from ..config import Options
from ..context import in_llm_call
from ..recorder import CallRequest, Recorder
from ..streams import AsyncStreamProxy, SyncStreamProxy
from . import _litellm_read as read
from . import openai as openai_provider
from ._driver import Args, Kwargs, Plan, replace_arg
from ._stream_usage import RefusingEndpoints, Resendable, ResendingHooks, endpoint_of

log = logging.getLogger(__name__)

LIBRARY = "litellm"
DISPATCH_MODULE = "litellm.rust_bridge.dispatch"
TARGETS = (
    (DISPATCH_MODULE, "PublicDispatch.run"),
    (DISPATCH_MODULE, "PublicDispatch.arun"),
)

CHAT = "chat_completions"
EMBEDDINGS = "embeddings"
RESPONSES = "responses"
OPERATIONS = {CHAT: sc.OP_CHAT, EMBEDDINGS: sc.OP_EMBEDDINGS, RESPONSES: sc.OP_CHAT}
# Where the model and the input sit among positional arguments: completion(model, messages),
# embedding(model, input), responses(input, model).
POSITIONS = {CHAT: (0, 1, "messages"), EMBEDDINGS: (0, 1, "input"), RESPONSES: (1, 0, "input")}

STREAM_CHUNKS = "chunks"
STREAM_CHUNKS_HIDING_USAGE = "chunks_hiding_usage"
STREAM_RESPONSES = "responses"

_RESOLVED_MAX = 1024


# --- requests --------------------------------------------------------------------------------


class _Resolver:
    """litellm's own provider resolution, cached: it costs tens to hundreds of microseconds."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str | None, str | None], tuple[str, str, str | None]] = {}

    def __call__(
        self, model: str, custom_provider: str | None, api_base: str | None
    ) -> tuple[str, str, str | None]:
        key = (model, custom_provider, api_base)
        found = self._cache.get(key)
        if found is None:
            found = self._resolve(model, custom_provider, api_base)
            if len(self._cache) >= _RESOLVED_MAX:
                self._cache.clear()
            self._cache[key] = found
        return found

    @staticmethod
    def _resolve(
        model: str, custom_provider: str | None, api_base: str | None
    ) -> tuple[str, str, str | None]:
        try:
            litellm: Any = importlib.import_module("litellm")
            name, provider, _, base = litellm.get_llm_provider(
                model=model, custom_llm_provider=custom_provider, api_base=api_base
            )
            if isinstance(name, str) and isinstance(provider, str) and provider:
                return name, provider, base if isinstance(base, str) and base else api_base
        except Exception:
            pass  # litellm raises the same error to the caller when it makes the call
        prefix, sep, rest = model.partition("/")
        if custom_provider:
            return model, custom_provider, api_base
        if sep:
            return rest, prefix, api_base
        return model, LIBRARY, api_base


# --- hooks -----------------------------------------------------------------------------------


_warned_unsupported = False


def build_wrappers(recorder: Recorder, options: Options) -> dict[tuple[str, str], Callable[..., Any]]:
    global _warned_unsupported
    try:
        dispatch = importlib.import_module(DISPATCH_MODULE)
        owner = dispatch.PublicDispatch
        supported = callable(owner.__dict__.get("run")) and callable(owner.__dict__.get("arun"))
    except Exception:
        supported = False
    if not supported:
        if not _warned_unsupported:
            _warned_unsupported = True
            log.warning(
                "otel-llm-usage: this litellm has no dispatch layer (litellm < 1.103); its calls are not "
                "recorded as litellm calls (calls it makes through the openai SDK still are)"
            )
        return {}
    hooks = LiteLLMHooks(recorder, options.stream_usage, options.endpoints)
    return {TARGETS[0]: hooks.sync_call, TARGETS[1]: hooks.async_call}


class LiteLLMHooks(ResendingHooks):
    """The wrappers installed on litellm's dispatch, bound to one recorder and its options."""

    site = "litellm"

    def __init__(self, recorder: Recorder, stream_usage: str, endpoints: dict[str, str]) -> None:
        self.rec = recorder
        self.stream_usage = stream_usage
        self.endpoints = endpoints
        self.capture = recorder.options.captures_content
        self.resolve = _Resolver()
        self.refusing = RefusingEndpoints()

    # `PublicDispatch.run(self, args, kwargs, *, python, binding, native, rules=None)`: `args` and
    # `kwargs` are those of the caller's litellm function.
    def begin(self, instance: Any, args: Args, kwargs: Kwargs) -> tuple[Plan | None, Args, Kwargs]:
        route = getattr(getattr(instance, "route", None), "value", None)
        if not isinstance(route, str) or route not in OPERATIONS:
            return None, args, kwargs
        call_args = args[0] if args else kwargs.get("args", ())
        call_kwargs = args[1] if len(args) > 1 else kwargs.get("kwargs", {})
        if not isinstance(call_args, tuple) or not isinstance(call_kwargs, Mapping):
            return None, args, kwargs
        model_pos, input_pos, input_name = POSITIONS[route]
        model = read.call_arg(call_args, call_kwargs, "model", model_pos)
        if not isinstance(model, str) or not model:
            return None, args, kwargs
        api_base = read.nonempty(call_kwargs.get("api_base")) or read.nonempty(call_kwargs.get("base_url"))
        name, litellm_provider, resolved_base = self.resolve(
            model, read.nonempty(call_kwargs.get("custom_llm_provider")), api_base
        )
        if litellm_provider == "bedrock":
            for prefix in read.BEDROCK_ROUTES:
                if name.startswith(prefix):
                    name = name[len(prefix) :]
        host, port = read.server_of(resolved_base)
        stream = route != EMBEDDINGS and call_kwargs.get("stream") is True
        body = call_kwargs if isinstance(call_kwargs, dict) else dict(call_kwargs)
        req = CallRequest(
            operation=OPERATIONS[route],
            provider=self.endpoints.get(host or "") or read.provider_name(litellm_provider),
            model=name,
            stream=stream,
            server_address=host,
            server_port=port,
            attributes=openai_provider._request_attributes(body),
        )
        if self.capture:
            req.input_messages = read.call_arg(call_args, call_kwargs, input_name, input_pos)
        kind = STREAM_RESPONSES if route == RESPONSES else STREAM_CHUNKS
        if (
            stream
            and route == CHAT
            and call_kwargs.get("stream_options") is None
            and read.wants_stream_usage(self.stream_usage, litellm_provider, read.server_of(api_base)[0])
            and endpoint_of(req) not in self.refusing
        ):
            new_kwargs = {**call_kwargs, "stream_options": {"include_usage": True}}
            asked = replace_arg(args, kwargs, 1, "kwargs", new_kwargs)
            req.attributes = {**(req.attributes or {}), sc.STREAM_USAGE_INJECTED: True}
            plan = Resendable(self.rec.start(req), STREAM_CHUNKS_HIDING_USAGE, STREAM_CHUNKS, args, kwargs)
            plan.stream = True
            return plan, *asked
        call = self.rec.start(req)  # BudgetExceeded propagates by design
        return Plan(call, kind, stream), args, kwargs

    def handle(self, plan: Plan, result: Any, is_async: bool) -> Any:
        call = plan.call
        if not is_async and inspect.isawaitable(result):
            # `completion(..., acompletion=True)` on litellm versions that hand back a coroutine
            return self.send_awaitable(plan, result)
        if plan.stream:
            if is_async and hasattr(result, "__anext__"):
                return _AsyncStream(result, call, self._acc(plan.kind))
            if not is_async and hasattr(result, "__next__"):
                return _SyncStream(result, call, self._acc(plan.kind))
        call.finish(read.result_from(result, self.capture))
        return result

    def _acc(self, kind: str) -> Any:
        if kind == STREAM_RESPONSES:
            return read.ResponsesAccumulator(self.capture)
        return read.ChunkAccumulator(kind == STREAM_CHUNKS_HIDING_USAGE, self.capture)


# litellm may send its request only when the stream is first read, or again mid-stream to continue
# a cut one: the stream is read inside the call too, so inner clients stay silent.
class _SyncStream(SyncStreamProxy):
    def __next__(self) -> Any:
        token = in_llm_call.set(True)
        try:
            return super().__next__()
        finally:
            in_llm_call.reset(token)


class _AsyncStream(AsyncStreamProxy):
    async def __anext__(self) -> Any:
        token = in_llm_call.set(True)
        try:
            return await super().__anext__()
        finally:
            in_llm_call.reset(token)
