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
from urllib.parse import urlsplit

from .. import semconv as sc
from ..config import Options
from ..context import in_llm_call
from ..recorder import CallRequest, CallResult, Recorder
from ..streams import AsyncStreamProxy, SyncStreamProxy
from ..usage import TokenUsage, as_count
from . import _openai_read as openai_read
from . import openai as openai_provider
from ._driver import Args, Kwargs, Plan, replace_arg
from ._fields import as_cost, get, get_str
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

# litellm provider -> gen_ai.provider.name. Other providers keep litellm's name.
PROVIDER_NAMES = {
    "openai": sc.PROVIDER_OPENAI,
    "text-completion-openai": sc.PROVIDER_OPENAI,
    "azure": sc.PROVIDER_AZURE_OPENAI,
    "azure_text": sc.PROVIDER_AZURE_OPENAI,
    "azure_ai": "azure.ai.inference",
    "anthropic": "anthropic",
    "anthropic_text": "anthropic",
    "bedrock": "aws.bedrock",
    "vertex_ai": "gcp.vertex_ai",
    "vertex_ai_beta": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "mistral": "mistral_ai",
    "codestral": "mistral_ai",
    "text-completion-codestral": "mistral_ai",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "groq": "groq",
    "deepseek": "deepseek",
    "openrouter": "openrouter",
    "xai": "x_ai",
    "perplexity": "perplexity",
    "together_ai": "together",
    "fireworks_ai": "fireworks",
    "cerebras": "cerebras",
    "watsonx": "ibm.watsonx.ai",
    "watsonx_text": "ibm.watsonx.ai",
}
# Bedrock model names may carry litellm's route ("bedrock/converse/<model id>").
BEDROCK_ROUTES = ("converse/", "invoke/")

# Providers for which litellm reads `stream_options` itself and never sends it to the server.
STREAM_USAGE_HANDLED_BY_LITELLM = frozenset({"anthropic"})
OFFICIAL_OPENAI_HOSTS = frozenset({"api.openai.com"})

STREAM_CHUNKS = "chunks"
STREAM_CHUNKS_HIDING_USAGE = "chunks_hiding_usage"
STREAM_RESPONSES = "responses"

_RESOLVED_MAX = 1024


def provider_name(litellm_provider: str) -> str:
    return PROVIDER_NAMES.get(litellm_provider, litellm_provider)


def wants_stream_usage(mode: str, litellm_provider: str, host: str | None) -> bool:
    """Whether to ask for the final usage chunk of a stream whose caller did not.

    "known" asks only where that cannot be rejected: providers whose `stream_options` litellm
    consumes itself, and OpenAI and Azure OpenAI at their own hosts (an OpenAI-compatible server
    behind a custom `api_base` may refuse unknown parameters).
    """
    if mode == "always":
        return True
    if mode != "known":
        return False
    if litellm_provider in STREAM_USAGE_HANDLED_BY_LITELLM:
        return True
    if litellm_provider == "openai":
        return host is None or host in OFFICIAL_OPENAI_HOSTS
    if litellm_provider == "azure":
        return host is not None and (
            host.endswith(".openai.azure.com") or host.endswith(".cognitiveservices.azure.com")
        )
    return False


# --- pure extraction -------------------------------------------------------------------------


def usage_from(usage: Any) -> TokenUsage | None:
    """Normalise litellm's OpenAI-shaped `Usage` into the ledger.

    litellm reports every provider in OpenAI's shape: `prompt_tokens` includes cached input and,
    for Anthropic, also cache writes (litellm adds Anthropic's `cache_read_input_tokens` and
    `cache_creation_input_tokens` to `input_tokens`), so cache reads and writes are subsets of it:
    `prompt_tokens_details.cached_tokens` and `.cache_creation_tokens` (or `.cache_write_tokens`),
    with the raw Anthropic fields as a fallback. The 1-hour share of cache writes is in
    `prompt_tokens_details.cache_creation_token_details.ephemeral_1h_input_tokens`.
    """
    base = openai_read.usage_from(usage)
    if base is None:
        return None
    details = get(usage, "prompt_tokens_details") or get(usage, "input_tokens_details")
    cache_read = base.cache_read or as_count(get(usage, "cache_read_input_tokens"))
    cache_write = base.cache_write or as_count(get(usage, "cache_creation_input_tokens"))
    one_hour = as_count(get(get(details, "cache_creation_token_details"), "ephemeral_1h_input_tokens"))
    if cache_read == base.cache_read and cache_write == base.cache_write and not one_hour:
        return base
    return TokenUsage.normalised(
        input=base.input,
        output=base.output,
        cache_read=cache_read,
        cache_write=cache_write,
        cache_write_1h=one_hour,
        reasoning=base.reasoning,
        input_audio=base.input_audio,
        output_audio=base.output_audio,
    )


def hidden_cost(obj: Any) -> float | None:
    """The cost litellm computed for a finished response (`_hidden_params["response_cost"]`)."""
    hidden = getattr(obj, "_hidden_params", None)
    return as_cost(hidden.get("response_cost")) if isinstance(hidden, dict) else None


def _response_model(response: Any) -> str | None:
    hidden = getattr(response, "_hidden_params", None)
    if isinstance(hidden, dict):
        model = hidden.get("provider_response_model")
        if isinstance(model, str) and model:
            return model
    return get_str(response, "model")


def result_from(response: Any, capture_content: bool = False) -> CallResult:
    """Read a non-streamed litellm response: `ModelResponse`, `EmbeddingResponse` or responses API."""
    result = openai_read.result_from(response, capture_content)
    usage_obj = get(response, "usage")
    result.usage = usage_from(usage_obj)
    result.response_model = _response_model(response)
    cost = hidden_cost(response)
    result.provider_cost = cost if cost is not None else as_cost(get(usage_obj, "cost"))
    return result


class ChunkAccumulator(openai_read.ChunkAccumulator):
    """litellm chat chunks: usage (with litellm's cost) arrives in a last chunk without choices.

    litellm's chunks have no `usage` attribute until then, so every read is a `getattr`.
    """

    __slots__ = ()
    read_usage = staticmethod(usage_from)

    def add(self, chunk: Any) -> bool:
        if self.model is None:
            self.model = getattr(chunk, "model", None)
            self.id = getattr(chunk, "id", None)
        choices = getattr(chunk, "choices", None)
        if choices:
            choice = choices[0]
            reason = getattr(choice, "finish_reason", None)
            if reason:
                if self.reasons is None:
                    self.reasons = []
                self.reasons.append(reason)
            if self.text is not None:
                piece = getattr(getattr(choice, "delta", None), "content", None)
                if piece:
                    self.text.append(piece)
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self.usage = usage
            self.complete = True
            cost = as_cost(get(usage, "cost"))
            self.cost = cost if cost is not None else hidden_cost(chunk)
            return self.hide_usage_chunk and _carries_nothing(choices)
        return False


# What a chat chunk can carry for the caller besides usage.
_DELTA_FIELDS = (
    "content",
    "role",
    "tool_calls",
    "function_call",
    "reasoning_content",
    "thinking_blocks",
    "audio",
)


def _carries_nothing(choices: Any) -> bool:
    """Whether a usage chunk is only that: no choices, or (litellm < 1.110) one empty choice."""
    for choice in choices or ():
        if getattr(choice, "finish_reason", None) is not None:
            return False
        delta = getattr(choice, "delta", None)
        if any(getattr(delta, name, None) for name in _DELTA_FIELDS):
            return False
    return True


class ResponsesAccumulator(openai_read.ResponsesAccumulator):
    """Responses API events: the final `response.completed` carries usage and litellm's cost."""

    __slots__ = ()

    def result(self) -> CallResult:
        if self.final is not None:
            return result_from(self.final, self.capture)
        return super().result()


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


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _field(call_args: tuple[Any, ...], call_kwargs: Mapping[str, Any], name: str, position: int) -> Any:
    if name in call_kwargs:
        return call_kwargs[name]
    return call_args[position] if len(call_args) > position else None


def _server(api_base: str | None) -> tuple[str | None, int | None]:
    if not api_base:
        return None, None
    try:
        parts = urlsplit(api_base)
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80 if parts.scheme == "http" else None)
    except ValueError:
        return None, None
    return host or None, port if host else None


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
        self.capture = recorder.settings.capture_content
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
        model = _field(call_args, call_kwargs, "model", model_pos)
        if not isinstance(model, str) or not model:
            return None, args, kwargs
        api_base = _text(call_kwargs.get("api_base")) or _text(call_kwargs.get("base_url"))
        name, litellm_provider, resolved_base = self.resolve(
            model, _text(call_kwargs.get("custom_llm_provider")), api_base
        )
        if litellm_provider == "bedrock":
            for prefix in BEDROCK_ROUTES:
                if name.startswith(prefix):
                    name = name[len(prefix) :]
        host, port = _server(resolved_base)
        stream = route != EMBEDDINGS and call_kwargs.get("stream") is True
        body = call_kwargs if isinstance(call_kwargs, dict) else dict(call_kwargs)
        req = CallRequest(
            operation=OPERATIONS[route],
            provider=self.endpoints.get(host or "") or provider_name(litellm_provider),
            model=name,
            stream=stream,
            server_address=host,
            server_port=port,
            attributes=openai_provider._request_attributes(body),
        )
        if self.capture:
            req.input_messages = _field(call_args, call_kwargs, input_name, input_pos)
        kind = STREAM_RESPONSES if route == RESPONSES else STREAM_CHUNKS
        if (
            stream
            and route == CHAT
            and call_kwargs.get("stream_options") is None
            and wants_stream_usage(self.stream_usage, litellm_provider, _server(api_base)[0])
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
        call.finish(result_from(result, self.capture))
        return result

    def _acc(self, kind: str) -> Any:
        if kind == STREAM_RESPONSES:
            return ResponsesAccumulator(self.capture)
        return ChunkAccumulator(kind == STREAM_CHUNKS_HIDING_USAGE, self.capture)


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
