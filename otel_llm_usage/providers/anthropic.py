"""The anthropic SDK (2.x) and its platform clients: AnthropicBedrock, AnthropicVertex and the others.

One hook covers every entry point: `SyncAPIClient.request` / `AsyncAPIClient.request`, through which
`messages.create` (plain and `stream=True`), `messages.parse`, the `messages.stream()` helpers (they
call `create` with `stream=True` and read the returned stream), `with_raw_response`,
`with_streaming_response` and the same methods under `beta.messages` all pass. Only `POST
/v1/messages` is recorded; the platform clients rewrite that path to theirs only after this hook has
seen it. `count_tokens`, batches and every other request go through untouched.

The SDK traces its own API calls when a tracer provider is available. By default its span of a
recorded call is suppressed, so the call has one LLM span; the SDK still propagates the trace
context, now that of our span. With `anthropic_native_spans="keep"` the SDK's span is left alone and
becomes a child of ours.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import context as otel_context

from .. import semconv as sc
from .._guard import report
from ..config import Options
from ..context import without_private_baggage
from ..recorder import CallRequest, CallResult, LLMCall, Recorder
from ..streams import Accumulator
from ..usage import TokenUsage, as_count
from ._driver import Args, Kwargs, Plan, replace_arg
from ._fields import get, get_str, jsonable, sampling_attributes
from ._stainless import StainlessHooks

LIBRARY = "anthropic"
TARGETS = (
    ("anthropic._base_client", "SyncAPIClient.request"),
    ("anthropic._base_client", "AsyncAPIClient.request"),
)

MESSAGES_PATH = "/v1/messages"
PROVIDER_ANTHROPIC = "anthropic"
PROVIDER_BEDROCK = "aws.bedrock"
PROVIDER_VERTEX = "gcp.vertex_ai"

NATIVE_SPANS_SUPPRESS = "suppress"
NATIVE_SPANS_KEEP = "keep"
NATIVE_SPANS_MODES = (NATIVE_SPANS_SUPPRESS, NATIVE_SPANS_KEEP)

# Platform base classes of the SDK -> gen_ai.provider.name. Matched by name along the client's MRO so
# that the platform modules (and their optional dependencies) are never imported here.
PLATFORM_PROVIDERS = {
    "BaseBedrockClient": PROVIDER_BEDROCK,
    "BaseMantleClient": PROVIDER_BEDROCK,
    "BaseVertexClient": PROVIDER_VERTEX,
}


def provider_for_client(client: Any, endpoints: Mapping[str, str] | None = None) -> str:
    if endpoints:
        host = getattr(getattr(client, "base_url", None), "host", None)
        if isinstance(host, str) and host in endpoints:
            return endpoints[host]
    for cls in type(client).__mro__:
        provider = PLATFORM_PROVIDERS.get(cls.__name__)
        if provider is not None:
            return provider
    return PROVIDER_ANTHROPIC


def is_messages_request(options: Any) -> bool:
    method = getattr(options, "method", None)
    url = getattr(options, "url", None)
    if not isinstance(method, str) or not isinstance(url, str) or method.lower() != "post":
        return False
    return url.partition("?")[0] == MESSAGES_PATH


def _request_body(options: Any) -> dict[str, Any]:
    """The body as the SDK will send it, as far as the fields read here go (`extra_body` wins)."""
    body = options.json_data if isinstance(getattr(options, "json_data", None), dict) else {}
    extra = getattr(options, "extra_json", None)
    return {**body, **extra} if isinstance(extra, dict) and extra else body


def describe_request(
    client: Any,
    options: Any,
    stream: bool,
    capture_content: bool,
    endpoints: Mapping[str, str] | None = None,
) -> CallRequest | None:
    if not is_messages_request(options):
        return None
    body = _request_body(options)
    model = body.get("model")
    url = client.base_url
    host = url.host or ""
    req = CallRequest(
        operation=sc.OP_CHAT,
        provider=provider_for_client(client, endpoints),
        model=model if isinstance(model, str) and model else None,
        stream=stream or body.get("stream") is True,
        server_address=host or None,
        server_port=url.port or (443 if url.scheme == "https" else 80),
        attributes=sampling_attributes(body.get("max_tokens"), body.get("temperature")),
    )
    if req.provider == PROVIDER_BEDROCK:
        req.price_model = req.model  # the body names the bare model, not the profile it ran under
    messages = body.get("messages")
    # Only a list is read: `messages` may be a one-shot iterable that the SDK has yet to consume.
    if capture_content and isinstance(messages, list | tuple):
        system = body.get("system")  # an unset one is the SDK's `omit` sentinel
        head = [{"role": "system", "content": system}] if isinstance(system, str | list) else []
        req.input_messages = [*head, *messages]
    return req


# --- pure extraction -------------------------------------------------------------------------


def usage_from(usage: Any) -> TokenUsage | None:
    """Normalise an Anthropic usage object (a Message's, or a stream's merged one) into the ledger.

    Anthropic's `input_tokens` excludes the cache: the inclusive input is `input_tokens +
    cache_read_input_tokens + cache_creation_input_tokens`. Writes are split by time to live in
    `cache_creation`. `output_tokens` includes `output_tokens_details.thinking_tokens`. The beta
    usage's compaction iterations are billed but left out of the top-level counts, so they are added.
    """
    if usage is None:
        return None
    raw_input = get(usage, "input_tokens")
    raw_output = get(usage, "output_tokens")
    if raw_input is None and raw_output is None:
        return None
    cache_read = as_count(get(usage, "cache_read_input_tokens"))
    cache_write = as_count(get(usage, "cache_creation_input_tokens"))
    split = get(usage, "cache_creation")
    write_1h = as_count(get(split, "ephemeral_1h_input_tokens"))
    if not cache_write and split is not None:
        cache_write = as_count(get(split, "ephemeral_5m_input_tokens")) + write_1h
    inp = as_count(raw_input) + cache_read + cache_write
    out = as_count(raw_output)
    for entry in _compactions(usage):
        entry_read = as_count(get(entry, "cache_read_input_tokens"))
        entry_write = as_count(get(entry, "cache_creation_input_tokens"))
        inp += as_count(get(entry, "input_tokens")) + entry_read + entry_write
        out += as_count(get(entry, "output_tokens"))
        cache_read += entry_read
        cache_write += entry_write
        write_1h += as_count(get(get(entry, "cache_creation"), "ephemeral_1h_input_tokens"))
    return TokenUsage.normalised(
        input=inp,
        output=out,
        cache_read=cache_read,
        cache_write=cache_write,
        cache_write_1h=write_1h,
        reasoning=as_count(get(get(usage, "output_tokens_details"), "thinking_tokens")),
    )


def _compactions(usage: Any) -> list[Any]:
    entries = get(usage, "iterations")
    if not isinstance(entries, list):
        return []
    return [entry for entry in entries if get(entry, "type") == "compaction"]


def result_from(message: Any, capture_content: bool = False) -> CallResult:
    """Read a Message (or BetaMessage, or its decoded JSON)."""
    reason = get_str(message, "stop_reason")
    output = None
    if capture_content:
        output = [
            # the content blocks as they are (text, tool_use, thinking): content.py reads them
            {"role": "assistant", "content": jsonable(get(message, "content")), "finish_reason": reason}
        ]
    return CallResult(
        response_model=get_str(message, "model"),
        response_id=get_str(message, "id"),
        finish_reasons=[reason] if reason else None,
        usage=usage_from(get(message, "usage")),
        output_messages=output,
    )


def merged_stream_usage(start: Any, delta: Any) -> dict[str, Any] | None:
    """A stream's usage: `message_start`'s, overlaid with what `message_delta` repeats or finalises.

    `message_delta.usage.output_tokens` is cumulative and final; recent API versions also repeat the
    input and cache counts there, which then win. The time-to-live split of cache writes is only in
    `message_start`.
    """
    if start is None and delta is None:
        return None
    merged: dict[str, Any] = {}
    for key in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "cache_creation",
                "output_tokens", "output_tokens_details", "iterations"):  # fmt: skip
        value = get(delta, key)
        if value is None:
            value = get(start, key)
        if value is not None:
            merged[key] = value
    return merged


class MessageStreamAccumulator:
    """Raw Messages stream events: usage from `message_start`, finalised by `message_delta`."""

    __slots__ = ("complete", "delta_usage", "id", "model", "reason", "start_usage", "text")

    def __init__(self, capture_content: bool) -> None:
        self.complete = False
        self.model: str | None = None
        self.id: str | None = None
        self.start_usage: Any = None
        self.delta_usage: Any = None
        self.reason: str | None = None
        self.text: list[str] | None = [] if capture_content else None

    def add(self, event: Any) -> bool:
        etype = getattr(event, "type", None)
        if etype == "content_block_delta":
            if self.text is not None:
                piece = getattr(getattr(event, "delta", None), "text", None)
                if isinstance(piece, str):
                    self.text.append(piece)
        elif etype == "message_start":
            message = getattr(event, "message", None)
            self.model = get_str(message, "model")
            self.id = get_str(message, "id")
            self.start_usage = get(message, "usage")
        elif etype == "message_delta":
            self.delta_usage = getattr(event, "usage", None)
            reason = get_str(getattr(event, "delta", None), "stop_reason")
            if reason:
                self.reason = reason
        elif etype == "message_stop":
            self.complete = True
        return False

    def result(self) -> CallResult:
        output = None
        if self.text is not None:
            output = [{"role": "assistant", "content": "".join(self.text), "finish_reason": self.reason}]
        return CallResult(
            response_model=self.model,
            response_id=self.id,
            finish_reasons=[self.reason] if self.reason else None,
            usage=usage_from(merged_stream_usage(self.start_usage, self.delta_usage)),
            output_messages=output,
        )


# --- hooks -----------------------------------------------------------------------------------


def build_wrappers(recorder: Recorder, options: Options) -> dict[tuple[str, str], Callable[..., Any]]:
    # Options validates the value; anything but "keep" suppresses, the safe default.
    native = getattr(options, "anthropic_native_spans", NATIVE_SPANS_SUPPRESS)
    hooks = AnthropicHooks(recorder, native != NATIVE_SPANS_KEEP, options.endpoints)
    return {TARGETS[0]: hooks.sync_call, TARGETS[1]: hooks.async_call}


def _sdk_trace_headers(client: Any, span: Any) -> dict[str, str]:
    """The trace-context headers the SDK would have sent for its own span of the call, for ours.

    The SDK propagates only when it traces (a tracer is available and its spans are enabled) and its
    `propagation` option is on; its own helper writes the headers with the registered propagator.
    """
    if client._tracer is None or not client._open_telemetry.get("propagation", True):
        return {}
    from anthropic._tracing import trace_headers

    # Written before the call's context is current: leave the session and user ids out here too.
    token = otel_context.attach(without_private_baggage(otel_context.get_current()))
    try:
        headers: dict[str, str] = trace_headers(span)
    finally:
        otel_context.detach(token)
    return headers


def without_native_span(client: Any, options: Any, span: Any) -> Any:
    """A copy of the request options for which the SDK starts no span of its own.

    The SDK starts a call span only for options that name one; the trace context it would have
    propagated is sent as request headers instead, carrying our span.
    """
    new = copy.copy(options)
    new.span_name = None
    try:
        carrier = _sdk_trace_headers(client, span)
    except Exception as exc:
        report("anthropic.trace_headers", exc)
        carrier = {}
    if carrier:
        headers = options.headers if isinstance(options.headers, Mapping) else {}
        new.headers = {**headers, **carrier}
    return new


class AnthropicHooks(StainlessHooks):
    """The wrappers installed on the SDK, bound to one recorder and its options."""

    site = "anthropic"
    library = LIBRARY

    def __init__(self, recorder: Recorder, suppress_native: bool, endpoints: Mapping[str, str]) -> None:
        self.rec = recorder
        self.suppress_native = suppress_native
        self.endpoints = endpoints
        self.capture = recorder.options.captures_content

    def begin(self, instance: Any, args: Args, kwargs: Kwargs) -> tuple[Plan | None, Args, Kwargs]:
        options = args[1] if len(args) > 1 else kwargs.get("options")
        req = describe_request(instance, options, kwargs.get("stream") is True, self.capture, self.endpoints)
        if req is None:
            return None, args, kwargs
        call = self.rec.start(req)
        if self.suppress_native:
            try:
                args, kwargs = replace_arg(
                    args, kwargs, 1, "options", without_native_span(instance, options, call.span)
                )
            except Exception as exc:
                report("anthropic.native_span", exc)
        return Plan(call), args, kwargs

    extract = staticmethod(result_from)

    def accumulator(self, call: LLMCall, kind: str) -> Accumulator:
        return MessageStreamAccumulator(self.capture)
