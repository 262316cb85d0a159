"""The openai SDK (2.x on httpx, 3.x on httpx2), its Azure clients and OpenAI-compatible endpoints.

One hook covers every entry point: `SyncAPIClient.request` / `AsyncAPIClient.request`, through
which `create`, `parse`, the `stream()` helpers, `with_raw_response` and
`with_streaming_response` of chat completions, responses, embeddings and legacy completions all
pass. Only those four paths are recorded; every other request goes through untouched.

Other SDKs generated from the same Stainless template (groq) share this request pipeline; their
provider modules subclass `OpenAIHooks` and name their own package, paths and provider.
"""

from __future__ import annotations

import copy
import functools
import importlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import wrapt

from .. import semconv as sc
from .._guard import report
from ..config import Options
from ..recorder import CallRequest, CallResult, LLMCall, Recorder
from ..streams import AsyncStreamProxy, SyncStreamProxy
from ..usage import TokenUsage, as_count
from ._fields import as_cost, fields, get, get_str, json_body, jsonable, sampling_attributes
from ._hooks import Args, CallHooks, Kwargs, Plan, replace_arg

LIBRARY = "openai"
TARGETS = (
    ("openai._base_client", "SyncAPIClient.request"),
    ("openai._base_client", "AsyncAPIClient.request"),
)

OPERATIONS = {
    "/chat/completions": sc.OP_CHAT,
    "/responses": sc.OP_CHAT,
    "/embeddings": sc.OP_EMBEDDINGS,
    "/completions": sc.OP_TEXT_COMPLETION,
}

# Hosts of OpenAI-compatible APIs -> gen_ai.provider.name. Any other host keeps "openai": a
# gateway in front of OpenAI is priced as OpenAI, and a self-hosted model name matches no
# OpenAI price, so it is reported unpriced rather than at a wrong price.
KNOWN_HOSTS = {
    "api.openai.com": sc.PROVIDER_OPENAI,
    "api.deepseek.com": "deepseek",
    "api.x.ai": "x_ai",
    "openrouter.ai": "openrouter",
    "api.together.xyz": "together",
    "api.fireworks.ai": "fireworks",
    "api.groq.com": "groq",
    "api.mistral.ai": "mistral_ai",
    "generativelanguage.googleapis.com": "gcp.gemini",
    "api.perplexity.ai": "perplexity",
    "api.cerebras.ai": "cerebras",
}
STREAM_USAGE_MODES = ("off", "known", "always")

# How a stream's chunks are read: chat/legacy chunks (optionally hiding the usage-only chunk we
# asked for) or responses-API events.
CHUNKS = "chunks"
CHUNKS_HIDING_USAGE = "chunks_hiding_usage"
X_GROQ_CHUNKS = "x_groq_chunks"  # Groq's chunks: usage under `x_groq`, whichever SDK calls it
RESPONSES = "responses"


def provider_for_host(host: str, azure: bool, endpoints: dict[str, str]) -> str:
    if host in endpoints:
        return endpoints[host]
    if azure or host.endswith(".openai.azure.com") or host.endswith(".cognitiveservices.azure.com"):
        return sc.PROVIDER_AZURE_OPENAI
    return KNOWN_HOSTS.get(host, sc.PROVIDER_OPENAI)


def wants_stream_usage(mode: str, host: str, provider: str) -> bool:
    """Whether to add `stream_options.include_usage` to a streamed call that did not set it.

    "known" asks only endpoints known to accept it (OpenAI and Azure OpenAI); others may reject
    an unknown parameter.
    """
    if mode == "always":
        return True
    if mode == "known":
        return provider == sc.PROVIDER_AZURE_OPENAI or host == "api.openai.com"
    return False


def _is_azure(client: Any) -> bool:
    return any(cls.__name__ == "BaseAzureClient" for cls in type(client).__mro__)


def _request_attributes(body: dict[str, Any]) -> dict[str, Any] | None:
    max_tokens = None
    for key in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            max_tokens = value
            break
    return sampling_attributes(max_tokens, body.get("temperature"))


# id(client) -> (its base_url object, host, port, provider). The base_url object's identity tells
# a reused id or a changed base_url apart; the bound keeps apps that make a client per request small.
_endpoints: dict[int, tuple[Any, str, int, str]] = {}


def _endpoint(client: Any, endpoints: dict[str, str], provider: str | None) -> tuple[str, int, str]:
    # The field behind the `base_url` property: openai 3.x's property imports a module on every read,
    # which cost more than the rest of describing the request.
    url = getattr(client, "__dict__", {}).get("_base_url") or client.base_url
    cached = _endpoints.get(id(client))
    if cached is not None and cached[0] is url:
        return cached[1], cached[2], cached[3]
    host = url.host or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    if provider is None:
        provider = provider_for_host(host, _is_azure(client), endpoints)
    else:
        provider = endpoints.get(host, provider)
    if len(_endpoints) >= 256:
        _endpoints.clear()
    _endpoints[id(client)] = (url, host, port, provider)
    return host, port, provider


def describe_request(
    client: Any,
    options: Any,
    capture_content: bool,
    endpoints: dict[str, str],
    operations: Mapping[str, str] = OPERATIONS,
    provider: str | None = None,
) -> CallRequest | None:
    """The call a request makes, or None for a path not in `operations`.

    `provider` names the provider of every host (the `endpoints` option aside); None reads it
    from the host, as for the openai SDK, which talks to many OpenAI-compatible APIs.
    """
    operation = operations.get(getattr(options, "url", None) or "")
    if operation is None:
        return None
    body = options.json_data if isinstance(getattr(options, "json_data", None), dict) else {}
    model = body.get("model")
    host, port, provider = _endpoint(client, endpoints, provider)
    stream = body.get("stream") is True
    req = CallRequest(
        operation=operation,
        provider=provider,
        model=model if isinstance(model, str) else None,
        stream=stream,
        server_address=host or None,
        server_port=port,
        attributes=_request_attributes(body),
    )
    if capture_content:
        req.input_messages = body.get("messages") or body.get("input") or body.get("prompt")
    return req


def _has_stream_options(options: Any) -> bool:
    body = options.json_data if isinstance(options.json_data, dict) else {}
    extra = getattr(options, "extra_json", None) or {}
    return body.get("stream_options") is not None or extra.get("stream_options") is not None


def with_stream_usage(options: Any) -> Any:
    """A copy of the request options that asks for the final usage chunk."""
    new = copy.copy(options)
    new.json_data = {**options.json_data, "stream_options": {"include_usage": True}}
    return new


# --- pure extraction -------------------------------------------------------------------------


def usage_from(usage: Any) -> TokenUsage | None:
    """Normalise an OpenAI usage object (chat, legacy, embeddings or responses) into the ledger.

    Chat: `prompt_tokens` includes `prompt_tokens_details.cached_tokens`; `completion_tokens`
    includes `completion_tokens_details.reasoning_tokens`. Responses: the same with
    `input_tokens` / `output_tokens`. Compatible endpoints add `cache_write_tokens` (OpenRouter)
    or `prompt_cache_hit_tokens` (DeepSeek).
    """
    if usage is None:
        return None
    u = fields(usage)
    prompt = u.get("prompt_tokens")
    if prompt is None:
        prompt = u.get("input_tokens")
    completion = u.get("completion_tokens")
    if completion is None:
        completion = u.get("output_tokens")
    inp, out = as_count(prompt), as_count(completion)
    if inp == 0 and out == 0 and not _is_zero(prompt) and not _is_zero(completion):
        return None
    ins = fields(u.get("prompt_tokens_details") or u.get("input_tokens_details"))
    outs = fields(u.get("completion_tokens_details") or u.get("output_tokens_details"))
    cache_read = as_count(ins.get("cached_tokens")) or as_count(u.get("prompt_cache_hit_tokens"))
    cache_write = as_count(ins.get("cache_write_tokens")) or as_count(ins.get("cache_creation_tokens"))
    return TokenUsage.normalised(
        input=inp,
        output=out,
        cache_read=cache_read,
        cache_write=cache_write,
        reasoning=as_count(outs.get("reasoning_tokens")),
        input_audio=as_count(ins.get("audio_tokens")),
        output_audio=as_count(outs.get("audio_tokens")),
    )


def _is_zero(value: object) -> bool:
    return value == 0 and not isinstance(value, bool)


def _output_messages(response: Any) -> list[dict[str, Any]] | None:
    choices = get(response, "choices")
    if isinstance(choices, list):
        out = []
        for choice in choices:
            message = get(choice, "message")
            content = get(message, "content") if message is not None else get(choice, "text")
            out.append(
                {
                    "role": "assistant",
                    "content": content,
                    "tool_calls": jsonable(get(message, "tool_calls")) if message is not None else None,
                    "finish_reason": get(choice, "finish_reason"),
                }
            )
        return out
    items = get(response, "output")
    if isinstance(items, list):  # a Responses object: message items hold text, others are calls
        blocks: list[Any] = []
        for item in jsonable(items):
            inner = item.get("content") if isinstance(item, dict) and item.get("type") == "message" else None
            blocks.extend(inner if isinstance(inner, list) else [item])
        return [{"role": "assistant", "content": blocks}]
    text = get(response, "output_text")
    if isinstance(text, str):
        return [{"role": "assistant", "content": text}]
    return None


def result_from(response: Any, capture_content: bool = False) -> CallResult:
    """Read a non-streamed response (chat, legacy, embeddings or responses object)."""
    r = fields(response)
    usage = r.get("usage")
    reasons: list[str] = []
    choices = r.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            reason = get_str(choice, "finish_reason")
            if reason:
                reasons.append(reason)
    else:
        status = r.get("status")
        if isinstance(status, str) and status:
            reasons.append(status)
    model, response_id = r.get("model"), r.get("id")
    return CallResult(
        response_model=model if isinstance(model, str) and model else None,
        response_id=response_id if isinstance(response_id, str) and response_id else None,
        finish_reasons=reasons or None,
        usage=usage_from(usage),
        provider_cost=as_cost(get(usage, "cost")),
        output_messages=_output_messages(response) if capture_content else None,
    )


class ChunkAccumulator:
    """Chat and legacy completion chunks: usage arrives in the last chunk, if asked for."""

    read_usage = staticmethod(usage_from)

    __slots__ = ("complete", "cost", "hide_usage_chunk", "id", "model", "reasons", "text", "usage")

    def __init__(self, hide_usage_chunk: bool, capture_content: bool) -> None:
        self.complete = False
        self.hide_usage_chunk = hide_usage_chunk
        self.model: str | None = None
        self.id: str | None = None
        self.reasons: list[str] | None = None
        self.usage: Any = None
        self.cost: float | None = None
        self.text: list[str] | None = [] if capture_content else None

    def add(self, chunk: Any) -> bool:
        if self.model is None:
            self.model = getattr(chunk, "model", None)
            self.id = getattr(chunk, "id", None)
        choices = chunk.choices
        if choices:
            choice = choices[0]
            reason = choice.finish_reason
            if reason:
                if self.reasons is None:
                    self.reasons = []
                self.reasons.append(reason)
            if self.text is not None:
                delta = getattr(choice, "delta", None)
                piece = (
                    getattr(delta, "content", None) if delta is not None else getattr(choice, "text", None)
                )
                if piece:
                    self.text.append(piece)
        usage = chunk.usage
        if usage is not None:
            self.usage = usage
            self.complete = True
            return self.hide_usage_chunk and not choices
        return False

    def result(self) -> CallResult:
        output = None
        if self.text is not None:
            output = [{"role": "assistant", "content": "".join(self.text)}]
        return CallResult(
            response_model=self.model,
            response_id=self.id,
            finish_reasons=self.reasons,
            usage=self.read_usage(self.usage),
            provider_cost=self.cost if self.cost is not None else as_cost(get(self.usage, "cost")),
            output_messages=output,
        )


class ResponsesAccumulator:
    """Responses API events: the final `response.completed` (or `.incomplete`/`.failed`) has it all."""

    __slots__ = ("capture", "complete", "final", "first")

    _FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})

    def __init__(self, capture_content: bool) -> None:
        self.complete = False
        self.final: Any = None
        self.first: Any = None
        self.capture = capture_content

    def add(self, event: Any) -> bool:
        etype = getattr(event, "type", None)
        if etype in self._FINAL:
            self.final = getattr(event, "response", None)
            self.complete = True
        elif self.first is None and etype == "response.created":
            self.first = getattr(event, "response", None)
        return False

    def result(self) -> CallResult:
        if self.final is not None:
            return result_from(self.final, self.capture)
        return CallResult(response_model=get_str(self.first, "model"), response_id=get_str(self.first, "id"))


# --- hooks -----------------------------------------------------------------------------------


def build_wrappers(recorder: Recorder, options: Options) -> dict[tuple[str, str], Callable[..., Any]]:
    _endpoints.clear()  # the `endpoints` option may have changed
    hooks = OpenAIHooks(recorder, options.stream_usage, options.endpoints)
    return {TARGETS[0]: hooks.sync_call, TARGETS[1]: hooks.async_call}


class _SdkClasses(NamedTuple):
    stream: type[Any]
    async_stream: type[Any]
    api_response: type[Any]
    async_api_response: type[Any]
    legacy_response: type[Any] | None  # openai's `with_raw_response` objects; others return APIResponse
    model: type[Any]  # what a plain call returns: checked first, as the common case


@functools.cache
def _sdk_classes(library: str) -> _SdkClasses:
    """The stream and raw-response classes of a Stainless-generated SDK, looked up once it is in use."""
    sdk = importlib.import_module(library)
    response = importlib.import_module(f"{library}._response")
    try:
        legacy: type[Any] | None = importlib.import_module(f"{library}._legacy_response").LegacyAPIResponse
    except ImportError:
        legacy = None
    models = importlib.import_module(f"{library}._models")
    return _SdkClasses(
        sdk.Stream, sdk.AsyncStream, response.APIResponse, response.AsyncAPIResponse, legacy, models.BaseModel
    )


class OpenAIHooks(CallHooks):
    """The wrappers installed on the SDK, bound to one recorder and its options.

    A subclass serves another SDK of the same template: `library` is its package, `operations` the
    paths it records, `provider` the provider name of all its hosts (None: read from the host),
    `chunk_accumulator` how its chat chunks are read, `adds_stream_usage` whether `stream_usage`
    may add `stream_options` to its requests.
    """

    site = "openai"
    library = "openai"
    operations: Mapping[str, str] = OPERATIONS
    provider: str | None = None
    chunk_accumulator: type[ChunkAccumulator] = ChunkAccumulator
    adds_stream_usage = True

    def __init__(self, recorder: Recorder, stream_usage: str, endpoints: dict[str, str]) -> None:
        self.rec = recorder
        self.stream_usage = stream_usage
        self.endpoints = endpoints
        self.capture = recorder.settings.capture_content

    def begin(self, instance: Any, args: Args, kwargs: Kwargs) -> tuple[Plan | None, Args, Kwargs]:
        options: Any = args[1] if len(args) > 1 else kwargs.get("options")
        req = describe_request(
            instance, options, self.capture, self.endpoints, self.operations, self.provider
        )
        if req is None:
            return None, args, kwargs
        kind = RESPONSES if options.url == "/responses" else CHUNKS
        if (
            req.stream
            and kind == CHUNKS
            and self.adds_stream_usage
            and not _has_stream_options(options)
            and wants_stream_usage(self.stream_usage, req.server_address or "", req.provider)
        ):
            args, kwargs = replace_arg(args, kwargs, 1, "options", with_stream_usage(options))
            req.attributes = {**(req.attributes or {}), sc.STREAM_USAGE_INJECTED: True}
            kind = CHUNKS_HIDING_USAGE
        elif req.stream and kind == CHUNKS and req.provider == "groq":
            kind = X_GROQ_CHUNKS
        return Plan(self.rec.start(req), kind), args, kwargs

    def handle(self, plan: Plan, result: Any, is_async: bool) -> Any:
        return self._wrap_result(plan.call, result, plan.kind, is_async)

    def _wrap_result(self, call: LLMCall, result: Any, kind: str, is_async: bool) -> Any:
        sdk = _sdk_classes(self.library)
        if isinstance(result, sdk.model):
            call.finish(result_from(result, self.capture))
            return result
        if isinstance(result, sdk.stream):
            return SyncStreamProxy(result, call, self._acc(kind))
        if isinstance(result, sdk.async_stream):
            return AsyncStreamProxy(result, call, self._acc(kind))
        if sdk.legacy_response is not None and isinstance(result, sdk.legacy_response):
            if not getattr(result, "_stream", False):
                call.finish(result_from(result.parse(), self.capture))  # parse() caches: no double work
                return result
            return _RawResponseProxy(result, call, self, kind)
        if isinstance(result, sdk.api_response | sdk.async_api_response):
            # A plain `with_raw_response` body is read already (groq); a streaming one is read later.
            body = None if call.req.stream else json_body(result.http_response)
            if body is not None:
                call.finish(result_from(body, self.capture))
                return result
            if isinstance(result, sdk.async_api_response):
                return _AsyncRawResponseProxy(result, call, self, kind)
            return _RawResponseProxy(result, call, self, kind)
        call.finish(result_from(result, self.capture))
        return result

    def _acc(self, kind: str) -> Any:
        if kind == RESPONSES:
            return ResponsesAccumulator(self.capture)
        if kind == X_GROQ_CHUNKS:
            from .groq import ChunkAccumulator as XGroqChunks  # groq.py builds on this module

            return XGroqChunks(False, self.capture)
        return self.chunk_accumulator(kind == CHUNKS_HIDING_USAGE, self.capture)

    def wrap_parsed(self, call: LLMCall, parsed: Any, kind: str) -> Any:
        sdk = _sdk_classes(self.library)
        if isinstance(parsed, sdk.stream):
            return SyncStreamProxy(parsed, call, self._acc(kind))
        if isinstance(parsed, sdk.async_stream):
            return AsyncStreamProxy(parsed, call, self._acc(kind))
        call.finish(result_from(parsed, self.capture))
        return parsed

    def finish_raw(self, call: LLMCall, raw: Any) -> None:
        """End a raw response's call on close: from its body if the caller read it, else incomplete."""
        if call.done:
            return
        body = None if call.req.stream else json_body(getattr(raw, "http_response", None))
        if body is not None:
            call.finish(result_from(body, self.capture))
        else:
            call.finish(None, incomplete=True)


class _RawResponseProxy(wrapt.ObjectProxy[Any]):
    """`with_raw_response` (streamed) and `with_streaming_response`: finish on parse, else on close
    (from the body if the caller read it) or garbage collection."""

    def __init__(self, wrapped: Any, call: LLMCall, hooks: OpenAIHooks, kind: str) -> None:
        super().__init__(wrapped)
        self._self_call = call
        self._self_hooks = hooks
        self._self_kind = kind
        self._self_parsed: Any = None

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        parsed = self.__wrapped__.parse(*args, **kwargs)
        if self._self_parsed is None:
            try:
                self._self_parsed = self._self_hooks.wrap_parsed(self._self_call, parsed, self._self_kind)
            except Exception as exc:
                report(f"{self._self_hooks.site}.raw_parse", exc)
                self._self_parsed = parsed
        return self._self_parsed

    def _self_end(self) -> None:
        try:
            self._self_hooks.finish_raw(self._self_call, self.__wrapped__)
        except Exception as exc:
            report(f"{self._self_hooks.site}.raw_end", exc)
            self._self_call.finish(None, incomplete=True)

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            self._self_end()

    def __del__(self) -> None:
        try:
            self._self_end()
        except Exception:
            pass


class _AsyncRawResponseProxy(_RawResponseProxy):
    async def parse(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        parsed = await self.__wrapped__.parse(*args, **kwargs)
        if self._self_parsed is None:
            try:
                self._self_parsed = self._self_hooks.wrap_parsed(self._self_call, parsed, self._self_kind)
            except Exception as exc:
                report(f"{self._self_hooks.site}.raw_parse", exc)
                self._self_parsed = parsed
        return self._self_parsed

    async def close(self) -> Any:  # type: ignore[override]
        try:
            return await self.__wrapped__.close()
        finally:
            self._self_end()
