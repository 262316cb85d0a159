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
from ..recorder import CallRequest, LLMCall, Recorder
from ..streams import Accumulator
from ._driver import Args, Kwargs, Plan, replace_arg
from ._fields import sampling_attributes
from ._openai_read import VENDOR_STREAM_USAGE, ChunkAccumulator, ResponsesAccumulator, result_from
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
    `_stream_usage`); "known" asks only OpenAI and Azure OpenAI. A provider that sends usage in its
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
        self.capture = recorder.options.captures_content
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
