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
from collections.abc import Callable, Mapping
from typing import Any

from .. import semconv as sc
from ..config import Options
from ..recorder import CallRequest, CallResult, LLMCall, Recorder
from ..streams import Accumulator
from ..usage import TokenUsage, as_count
from ._driver import Args, Kwargs, Plan, replace_arg
from ._fields import as_cost, fields, get, get_str, sampling_attributes
from ._stainless import StainlessHooks
from ._stream_usage import RefusingEndpoints, Resendable, ResendingHooks, endpoint_of

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

# gen_ai.provider.name -> the field under which its stream chunks carry usage when `usage` is
# absent: Groq sends `x_groq.usage` in its last chunk whether or not the caller asked for usage,
# so its streams have usage with the request unchanged, whichever SDK (groq's or openai's) reads them.
VENDOR_STREAM_USAGE = {"groq": "x_groq"}

# How a stream's chunks are read: chat/legacy chunks (optionally hiding the usage-only chunk we
# asked for) or responses-API events.
CHUNKS = "chunks"
CHUNKS_HIDING_USAGE = "chunks_hiding_usage"
RESPONSES = "responses"


def provider_for_host(host: str, azure: bool, endpoints: dict[str, str]) -> str:
    if host in endpoints:
        return endpoints[host]
    if azure or host.endswith(".openai.azure.com") or host.endswith(".cognitiveservices.azure.com"):
        return sc.PROVIDER_AZURE_OPENAI
    return KNOWN_HOSTS.get(host, sc.PROVIDER_OPENAI)


def wants_stream_usage(mode: str, host: str, provider: str) -> bool:
    """Whether to add `stream_options.include_usage` to a streamed call that did not set it.

    "always" asks every endpoint (one that refuses it gets the request again without it: see
    `OpenAIHooks`); "known" asks only OpenAI and Azure OpenAI. A provider that sends usage in its
    own field unasked (`VENDOR_STREAM_USAGE`) is never asked: its chunks stay as they are.
    """
    if provider in VENDOR_STREAM_USAGE:
        return False
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
# Each set of hooks has its own, made with the `endpoints` option it reads.
EndpointCache = dict[int, tuple[Any, str, int, str]]


def _endpoint(
    client: Any, endpoints: dict[str, str], provider: str | None, cache: EndpointCache
) -> tuple[str, int, str]:
    # The field behind the `base_url` property: openai 3.x's property imports a module on every read,
    # which cost more than the rest of describing the request.
    url = getattr(client, "__dict__", {}).get("_base_url") or client.base_url
    cached = cache.get(id(client))
    if cached is not None and cached[0] is url:
        return cached[1], cached[2], cached[3]
    host = url.host or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    if provider is None:
        provider = provider_for_host(host, _is_azure(client), endpoints)
    else:
        provider = endpoints.get(host, provider)
    if len(cache) >= 256:
        cache.clear()
    cache[id(client)] = (url, host, port, provider)
    return host, port, provider


def describe_request(
    client: Any,
    options: Any,
    capture_content: bool,
    endpoints: dict[str, str],
    operations: Mapping[str, str] = OPERATIONS,
    provider: str | None = None,
    cache: EndpointCache | None = None,
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
    host, port, provider = _endpoint(client, endpoints, provider, {} if cache is None else cache)
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
                {"role": "assistant", "content": content, "finish_reason": get(choice, "finish_reason")}
            )
        return out
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


def stream_usage_of(chunk: Any, vendor_field: str | None = None) -> Any:
    """The usage a stream chunk carries: `usage`, else (if given) `<vendor_field>.usage`.

    Groq sends both in its last chunk, with the same counts, when usage was asked for: one is read.
    """
    usage = get(chunk, "usage")
    if usage is None and vendor_field is not None:
        return get(get(chunk, vendor_field), "usage")
    return usage


class ChunkAccumulator:
    """Chat and legacy completion chunks: usage arrives in the last chunk, if asked for (or, for a
    provider in `VENDOR_STREAM_USAGE`, under its own field, asked for or not)."""

    read_usage = staticmethod(usage_from)

    __slots__ = (
        "complete", "cost", "hide_usage_chunk", "id", "model", "reasons", "text", "usage", "vendor_field",
    )  # fmt: skip

    def __init__(
        self, hide_usage_chunk: bool, capture_content: bool, vendor_field: str | None = None
    ) -> None:
        self.complete = False
        self.hide_usage_chunk = hide_usage_chunk
        self.vendor_field = vendor_field
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
        if self.hide_usage_chunk:
            # A server asked for usage sends `"usage": null` in every other chunk; unasked, none.
            # Forgetting the key keeps `to_dict()` / `to_json()` what the caller would have had.
            try:
                chunk.__pydantic_fields_set__.discard("usage")
            except AttributeError:  # not a pydantic 2 model: nothing to forget
                pass
        if self.vendor_field is not None and self.usage is None:
            usage = get(get(chunk, self.vendor_field), "usage")
            if usage is not None:  # the caller did not ask for it: the chunk stays theirs
                self.usage = usage
                self.complete = True
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
    hooks = OpenAIHooks(recorder, options.stream_usage, options.endpoints)
    return {TARGETS[0]: hooks.sync_call, TARGETS[1]: hooks.async_call}


class OpenAIHooks(ResendingHooks, StainlessHooks):
    """The wrappers installed on the SDK, bound to one recorder and its options.

    A subclass serves another SDK of the same template: `library` is its package, `operations` the
    paths it records, `provider` the provider name of all its hosts (None: read from the host),
    `adds_stream_usage` whether `stream_usage` may add `stream_options` to its requests.
    """

    site = "openai"
    library = "openai"
    operations: Mapping[str, str] = OPERATIONS
    provider: str | None = None
    adds_stream_usage = True

    def __init__(self, recorder: Recorder, stream_usage: str, endpoints: dict[str, str]) -> None:
        self.rec = recorder
        self.stream_usage = stream_usage
        self.endpoints = endpoints
        self.capture = recorder.settings.capture_content
        self.cache: EndpointCache = {}
        self.refusing = RefusingEndpoints()

    def begin(self, instance: Any, args: Args, kwargs: Kwargs) -> tuple[Plan | None, Args, Kwargs]:
        options: Any = args[1] if len(args) > 1 else kwargs.get("options")
        req = describe_request(
            instance, options, self.capture, self.endpoints, self.operations, self.provider, self.cache
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
            and endpoint_of(req) not in self.refusing
        ):
            asked = replace_arg(args, kwargs, 1, "options", with_stream_usage(options))
            req.attributes = {**(req.attributes or {}), sc.STREAM_USAGE_INJECTED: True}
            plan = Resendable(self.rec.start(req), CHUNKS_HIDING_USAGE, CHUNKS, args, kwargs)
            return plan, *asked
        return Plan(self.rec.start(req), kind), args, kwargs

    extract = staticmethod(result_from)

    def accumulator(self, call: LLMCall, kind: str) -> Accumulator:
        if kind == RESPONSES:
            return ResponsesAccumulator(self.capture)
        vendor_field = VENDOR_STREAM_USAGE.get(call.req.provider)
        return ChunkAccumulator(kind == CHUNKS_HIDING_USAGE, self.capture, vendor_field)
