"""boto3's `bedrock-runtime` client: Converse, ConverseStream, InvokeModel, InvokeModelWithResponseStream.

One hook, on `botocore.client.BaseClient._make_api_call(operation_name, api_params)`: every method of
every boto3 / botocore client is generated to call it, and it returns the parsed response. botocore is
patched rather than boto3 because clients are botocore's classes (boto3 only builds them) and because
importing boto3 imports botocore, so the lazy patch also happens for applications that import boto3.
Only the four inference operations of the `bedrock-runtime` service are recorded; any other call of any
service is passed on after one membership test on the operation name.

Usage, in the ledger's terms (input inclusive of cache):

- Converse / ConverseStream (`usage`, in a stream the `metadata` event's): `inputTokens` excludes cache
  reads and writes, which come as `cacheReadInputTokens` and `cacheWriteInputTokens`, the latter split
  by time to live in `cacheDetails`.
- InvokeModel: Anthropic bodies carry the Messages API usage (read with the Anthropic provider's
  extractor); for every other family Bedrock's `x-amzn-bedrock-input-token-count` /
  `-output-token-count` (and cache read / write) response headers, or failing those the family's body
  counts (Nova `usage`, Llama `prompt_token_count` / `generation_token_count`). The body is read here
  and the caller handed an equivalent fresh `StreamingBody` of the same bytes.
- InvokeModelWithResponseStream: Anthropic's `message_start` / `message_delta` usage, else the last
  chunk's `amazon-bedrock-invocationMetrics`, else the family's own counts.

Streams come back as a botocore `EventStream` inside the response dict (`stream` or `body`); that entry
is replaced by a proxy of it, so the caller iterates (and closes) it unchanged and its span ends once.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from .. import semconv as sc
from ..config import Options
from ..recorder import CallRequest, CallResult, LLMCall, Recorder
from ..streams import Accumulator, SyncStreamProxy
from ..usage import TokenUsage, as_count
from ._driver import Args, CallHooks, Kwargs, Plan
from ._fields import get, get_str, sampling_attributes
from .anthropic import merged_stream_usage
from .anthropic import usage_from as anthropic_usage_from

LIBRARY = "botocore"
TARGET = ("botocore.client", "BaseClient._make_api_call")

SERVICE = "bedrock-runtime"
PROVIDER_BEDROCK = "aws.bedrock"
CONVERSE = "Converse"
CONVERSE_STREAM = "ConverseStream"
INVOKE = "InvokeModel"
INVOKE_STREAM = "InvokeModelWithResponseStream"
OPERATIONS = frozenset((CONVERSE, CONVERSE_STREAM, INVOKE, INVOKE_STREAM))
STREAMING = frozenset((CONVERSE_STREAM, INVOKE_STREAM))

# Prefixes of cross-region inference profiles (`us.anthropic.claude-...`, `global.amazon.nova-...`).
_GEO_PREFIX = re.compile(r"^(?:us|us-gov|eu|apac|jp|au|ca|in|global)\.(?=[a-z0-9-]+\.)")


# --- pure extraction -------------------------------------------------------------------------


def foundation_model(model_id: str) -> str:
    """The model id without an ARN's resource path or a cross-region inference profile's prefix."""
    resource = model_id.rsplit("/", 1)[-1] if model_id.startswith("arn:") else model_id
    return _GEO_PREFIX.sub("", resource, count=1)


def _ttl_writes(details: Any, ttl: str) -> int:
    if not isinstance(details, list):
        return 0
    return sum(as_count(get(entry, "inputTokens")) for entry in details if get(entry, "ttl") == ttl)


def usage_from(usage: Any) -> TokenUsage | None:
    """Normalise Bedrock's `TokenUsage` (Converse), or a Nova InvokeModel body's usage, into the ledger.

    `inputTokens` excludes the cache: the inclusive input is `inputTokens + cacheReadInputTokens +
    cacheWriteInputTokens` (Nova's InvokeModel bodies name them `...InputTokenCount`). One-hour writes
    are those of `cacheDetails` with `ttl` "1h"; without a total, the details are the writes.
    """
    if usage is None:
        return None
    raw_input = get(usage, "inputTokens")
    raw_output = get(usage, "outputTokens")
    if raw_input is None and raw_output is None:
        return None
    read = as_count(get(usage, "cacheReadInputTokens")) or as_count(get(usage, "cacheReadInputTokenCount"))
    write = as_count(get(usage, "cacheWriteInputTokens")) or as_count(get(usage, "cacheWriteInputTokenCount"))
    details = get(usage, "cacheDetails")
    write_1h = _ttl_writes(details, "1h")
    if not write:
        write = write_1h + _ttl_writes(details, "5m")
    return TokenUsage.normalised(
        input=as_count(raw_input) + read + write,
        output=as_count(raw_output),
        cache_read=read,
        cache_write=write,
        cache_write_1h=write_1h,
    )


def metrics_usage(metrics: Any) -> TokenUsage | None:
    """The ledger from `amazon-bedrock-invocationMetrics` (whose `inputTokenCount` excludes the cache)."""
    if metrics is None:
        return None
    raw_input = get(metrics, "inputTokenCount")
    raw_output = get(metrics, "outputTokenCount")
    if raw_input is None and raw_output is None:
        return None
    read = as_count(get(metrics, "cacheReadInputTokenCount"))
    write = as_count(get(metrics, "cacheWriteInputTokenCount"))
    return TokenUsage.normalised(
        input=as_count(raw_input) + read + write,
        output=as_count(raw_output),
        cache_read=read,
        cache_write=write,
    )


def _header_count(headers: Mapping[str, Any], name: str) -> int | None:
    value = headers.get(name)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def header_usage(headers: Any) -> TokenUsage | None:
    """The ledger from InvokeModel's `x-amzn-bedrock-*-token-count` headers (input excludes the cache)."""
    if not isinstance(headers, Mapping):
        return None
    raw_input = _header_count(headers, "x-amzn-bedrock-input-token-count")
    raw_output = _header_count(headers, "x-amzn-bedrock-output-token-count")
    if raw_input is None and raw_output is None:
        return None
    read = _header_count(headers, "x-amzn-bedrock-cache-read-input-token-count") or 0
    write = _header_count(headers, "x-amzn-bedrock-cache-write-input-token-count") or 0
    return TokenUsage.normalised(
        input=(raw_input or 0) + read + write, output=raw_output or 0, cache_read=read, cache_write=write
    )


def llama_usage(body: Any) -> TokenUsage | None:
    prompt = get(body, "prompt_token_count")
    generated = get(body, "generation_token_count")
    if prompt is None and generated is None:
        return None
    return TokenUsage.normalised(input=as_count(prompt), output=as_count(generated))


def _texts(blocks: Any) -> list[str]:
    if not isinstance(blocks, list):
        return []
    texts = [get(block, "text") for block in blocks if get(block, "type") in (None, "text")]
    return [text for text in texts if isinstance(text, str)]


def _output(text: str | None, reason: str | None) -> list[dict[str, Any]]:
    return [{"role": "assistant", "content": text, "finish_reason": reason}]


def converse_result(
    response: Any, capture_content: bool = False, price_model: str | None = None
) -> CallResult:
    """Read a Converse response (the dict boto3 returns)."""
    reason = get_str(response, "stopReason")
    output = None
    if capture_content:
        content = get(get(get(response, "output"), "message"), "content")
        output = _output("".join(_texts(content)), reason)
    return CallResult(
        response_model=price_model,
        finish_reasons=[reason] if reason else None,
        usage=usage_from(get(response, "usage")),
        output_messages=output,
    )


def body_usage(body: Any, headers: Any) -> TokenUsage | None:
    """An InvokeModel call's usage: an Anthropic body's, else the headers', else the family's body counts."""
    usage = anthropic_usage_from(get(body, "usage"))
    if usage is not None:
        return usage
    return header_usage(headers) or usage_from(get(body, "usage")) or llama_usage(body)


def _body_text(body: Any) -> str | None:
    content = get(body, "content")
    if isinstance(content, list):  # Anthropic
        return "".join(_texts(content))
    message = get(get(body, "output"), "message")
    if message is not None:  # Nova
        return "".join(_texts(get(message, "content")))
    generation = get(body, "generation")  # Llama
    return generation if isinstance(generation, str) else None


def invoke_result(
    body: Any, headers: Any, capture_content: bool = False, price_model: str | None = None
) -> CallResult:
    """Read an InvokeModel response: its decoded JSON body (any model family) and its HTTP headers."""
    reason = get_str(body, "stop_reason") or get_str(body, "stopReason")
    return CallResult(
        response_model=price_model,
        response_id=get_str(body, "id"),
        finish_reasons=[reason] if reason else None,
        usage=body_usage(body, headers),
        output_messages=_output(_body_text(body), reason) if capture_content else None,
    )


def _worth_decoding(chunk: bytes) -> bool:
    """Whether a stream chunk may hold usage, invocation metrics, Llama's counts or Nova's stop reason.

    Without content capture only these chunks are decoded: text deltas pass by a substring test.
    """
    return b"usage" in chunk or b"Metrics" in chunk or b"token_count" in chunk or b"topReason" in chunk


class ConverseStreamAccumulator:
    """ConverseStream events: the stop reason from `messageStop`, usage from the final `metadata`."""

    __slots__ = ("complete", "price_model", "reason", "text", "usage")

    def __init__(self, capture_content: bool, price_model: str | None = None) -> None:
        self.complete = False
        self.price_model = price_model
        self.reason: str | None = None
        self.usage: Any = None
        self.text: list[str] | None = [] if capture_content else None

    def add(self, event: Any) -> bool:
        if not isinstance(event, dict):
            return False
        delta = event.get("contentBlockDelta")
        if delta is not None:
            if self.text is not None:
                piece = get(get(delta, "delta"), "text")
                if isinstance(piece, str):
                    self.text.append(piece)
            return False
        stop = event.get("messageStop")
        if stop is not None:
            self.reason = get_str(stop, "stopReason")
            return False
        metadata = event.get("metadata")
        if metadata is not None:
            self.usage = get(metadata, "usage")
            self.complete = True
        return False

    def result(self) -> CallResult:
        output = _output("".join(self.text), self.reason) if self.text is not None else None
        return CallResult(
            response_model=self.price_model,
            finish_reasons=[self.reason] if self.reason else None,
            usage=usage_from(self.usage),
            output_messages=output,
        )


class InvokeStreamAccumulator:
    """InvokeModelWithResponseStream chunks, whatever the model family.

    Each event is `{"chunk": {"bytes": <the model's JSON>}}`. Anthropic's Messages events give the
    usage (`message_start`, finalised by `message_delta`); the last chunk of every family carries
    Bedrock's `amazon-bedrock-invocationMetrics`; Nova's `metadata` and Llama's counts are the rest.
    """

    __slots__ = (
        "complete",
        "delta_usage",
        "family_usage",
        "id",
        "metrics",
        "price_model",
        "reason",
        "start_usage",
        "text",
    )

    def __init__(self, capture_content: bool, price_model: str | None = None) -> None:
        self.complete = False
        self.price_model = price_model
        self.id: str | None = None
        self.reason: str | None = None
        self.start_usage: Any = None
        self.delta_usage: Any = None
        self.metrics: Any = None
        self.family_usage: TokenUsage | None = None
        self.text: list[str] | None = [] if capture_content else None

    def add(self, event: Any) -> bool:
        data = get(get(event, "chunk"), "bytes")
        if not isinstance(data, bytes):
            return False
        if self.text is None and not _worth_decoding(data):
            return False
        try:
            payload = json.loads(data)
        except ValueError:
            return False
        if isinstance(payload, dict):
            self.read(payload)
        return False

    def read(self, chunk: dict[str, Any]) -> None:
        metrics = chunk.get("amazon-bedrock-invocationMetrics")
        if metrics is not None:
            self.metrics = metrics
            self.complete = True
        kind = chunk.get("type")
        if isinstance(kind, str):
            self._anthropic(kind, chunk)
        elif "generation" in chunk:
            self._llama(chunk)
        else:
            self._nova(chunk)

    def _anthropic(self, kind: str, chunk: dict[str, Any]) -> None:
        if kind == "content_block_delta":
            piece = get(chunk.get("delta"), "text")
            if self.text is not None and isinstance(piece, str):
                self.text.append(piece)
        elif kind == "message_start":
            message = chunk.get("message")
            self.id = get_str(message, "id")
            self.start_usage = get(message, "usage")
        elif kind == "message_delta":
            self.delta_usage = chunk.get("usage")
            self.reason = get_str(chunk.get("delta"), "stop_reason") or self.reason
        elif kind == "message_stop":
            self.complete = True

    def _llama(self, chunk: dict[str, Any]) -> None:
        piece = chunk.get("generation")
        if self.text is not None and isinstance(piece, str):
            self.text.append(piece)
        usage = llama_usage(chunk)
        if usage is not None:
            # The prompt's count comes with the first chunk only; the generated count is running.
            previous = self.family_usage.input if self.family_usage is not None else 0
            self.family_usage = TokenUsage.normalised(input=usage.input or previous, output=usage.output)
        self.reason = get_str(chunk, "stop_reason") or self.reason

    def _nova(self, chunk: dict[str, Any]) -> None:
        delta = chunk.get("contentBlockDelta")
        if delta is not None:
            piece = get(get(delta, "delta"), "text")
            if self.text is not None and isinstance(piece, str):
                self.text.append(piece)
            return
        stop = chunk.get("messageStop")
        if stop is not None:
            self.reason = get_str(stop, "stopReason") or self.reason
        metadata = chunk.get("metadata")
        if metadata is not None:
            self.family_usage = usage_from(get(metadata, "usage")) or self.family_usage

    def result(self) -> CallResult:
        usage = anthropic_usage_from(merged_stream_usage(self.start_usage, self.delta_usage))
        if usage is None:
            usage = metrics_usage(self.metrics) or self.family_usage
        output = _output("".join(self.text), self.reason) if self.text is not None else None
        return CallResult(
            response_model=self.price_model,
            response_id=self.id,
            finish_reasons=[self.reason] if self.reason else None,
            usage=usage,
            output_messages=output,
        )


# --- the request -----------------------------------------------------------------------------


def invoke_body(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The InvokeModel request body as JSON, when the caller gave it as bytes or text (not a file)."""
    body = params.get("body")
    if not isinstance(body, bytes | bytearray | str):
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _messages(system: Any, messages: Any) -> list[Any] | None:
    if not isinstance(messages, list):
        return None
    head = [{"role": "system", "content": system}] if isinstance(system, str | list) and system else []
    return [*head, *messages]


def describe_request(
    operation: str, params: Mapping[str, Any], capture_content: bool, provider: str = PROVIDER_BEDROCK
) -> CallRequest:
    model = params.get("modelId")
    req = CallRequest(
        operation=sc.OP_CHAT,
        provider=provider,
        model=model if isinstance(model, str) and model else None,
        stream=operation in STREAMING,
    )
    if operation in (CONVERSE, CONVERSE_STREAM):
        config = params.get("inferenceConfig")
        if isinstance(config, Mapping):
            req.attributes = sampling_attributes(config.get("maxTokens"), config.get("temperature"))
        if capture_content:
            req.input_messages = _messages(params.get("system"), params.get("messages"))
        return req
    body = invoke_body(params)
    if body is None:
        return req
    config = body.get("inferenceConfig")  # Nova
    if isinstance(config, Mapping):
        req.attributes = sampling_attributes(config.get("maxTokens"), config.get("temperature"))
    else:  # Anthropic `max_tokens`, Llama `max_gen_len`
        max_tokens = body.get("max_tokens", body.get("max_gen_len"))
        req.attributes = sampling_attributes(max_tokens, body.get("temperature"))
    if capture_content:
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            req.input_messages = [{"role": "user", "content": prompt}]
        else:
            req.input_messages = _messages(body.get("system"), body.get("messages"))
    return req


def _endpoint(client: Any) -> tuple[str | None, int | None]:
    url = getattr(getattr(client, "meta", None), "endpoint_url", None)
    if not isinstance(url, str):
        return None, None
    parts = urlsplit(url)
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def _service_name(client: Any) -> Any:
    return getattr(getattr(getattr(client, "meta", None), "service_model", None), "service_name", None)


# --- hooks -----------------------------------------------------------------------------------


def build_wrappers(recorder: Recorder, options: Options) -> dict[tuple[str, str], Callable[..., Any]]:
    hooks = BedrockHooks(recorder, options.endpoints)

    def make_api_call(wrapped: Callable[..., Any], instance: Any, args: Args, kwargs: Kwargs) -> Any:
        operation = args[0] if args else kwargs.get("operation_name")
        if operation.__class__ is not str or operation not in OPERATIONS:
            return wrapped(*args, **kwargs)
        return hooks.sync_call(wrapped, instance, args, kwargs)

    return {TARGET: make_api_call}


class EventStreamProxy(SyncStreamProxy):
    """A botocore `EventStream`: iterable (its `__iter__` is a generator) but not an iterator itself."""

    def __init__(self, wrapped: Any, call: LLMCall, acc: Accumulator) -> None:
        super().__init__(wrapped, call, acc)
        self._self_next = iter(wrapped).__next__

    def __enter__(self) -> EventStreamProxy:
        # An EventStream is no context manager: `with` fails as it would without the proxy.
        if not hasattr(type(self.__wrapped__), "__enter__"):
            name = type(self.__wrapped__).__name__
            raise TypeError(f"{name!r} object does not support the context manager protocol")
        return super().__enter__()  # type: ignore[return-value]


class _FailedRead(io.RawIOBase):
    """The body of a response whose reading failed: reading it again raises the same error."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self._error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise self._error

    def read(self, size: int | None = -1) -> bytes:
        raise self._error


def _streaming_body_class() -> Any:
    from botocore.response import StreamingBody  # type: ignore[import-untyped]

    return StreamingBody


class BedrockHooks(CallHooks):
    """The wrapper installed on botocore, bound to one recorder and its options."""

    site = "bedrock"

    def __init__(self, recorder: Recorder, endpoints: Mapping[str, str]) -> None:
        self.rec = recorder
        self.endpoints = endpoints
        self.capture = recorder.settings.capture_content
        self._price_models: dict[tuple[str, str], str | None] = {}

    def begin(self, instance: Any, args: Args, kwargs: Kwargs) -> tuple[Plan | None, Args, Kwargs]:
        if _service_name(instance) != SERVICE:
            return None, args, kwargs
        operation = args[0] if args else kwargs["operation_name"]
        params = args[1] if len(args) > 1 else kwargs.get("api_params")
        if not isinstance(params, Mapping):
            return None, args, kwargs
        host, port = _endpoint(instance)
        provider = self.endpoints.get(host, PROVIDER_BEDROCK) if host else PROVIDER_BEDROCK
        req = describe_request(operation, params, self.capture, provider)
        req.server_address, req.server_port = host, port
        return Plan(self.rec.start(req), operation, req.stream), args, kwargs

    def price_model(self, provider: str, model: str | None) -> str | None:
        """The model id to price a call by when the one the caller sent has no price, else None.

        genai-prices knows Bedrock's ids with their cross-region profile prefixes (a `global.` profile
        has a price of its own); an id it does not know, such as a profile of a model it lists only
        without one, is priced as the foundation model (`apac.x.y-v1:0` -> `x.y-v1:0`). Overrides win.
        """
        if not model:
            return None
        key = (provider, model)
        if key in self._price_models:
            return self._price_models[key]
        base = foundation_model(model)
        found = None
        pricer = self.rec.pricer
        if base != model and not pricer.knows(provider, model) and pricer.knows(provider, base):
            found = base
        if len(self._price_models) >= 1024:  # bounded: model ids come from the application
            self._price_models.clear()
        self._price_models[key] = found
        return found

    def handle(self, plan: Plan, result: Any, is_async: bool) -> Any:
        call = plan.call
        if not isinstance(result, dict):
            call.finish(None)
            return result
        price_model = self.price_model(call.req.provider, call.req.model)
        if plan.kind == CONVERSE:
            call.finish(converse_result(result, self.capture, price_model))
        elif plan.kind == CONVERSE_STREAM:
            acc = ConverseStreamAccumulator(self.capture, price_model)
            self._wrap_stream(call, result, "stream", acc)
        elif plan.kind == INVOKE_STREAM:
            self._wrap_stream(call, result, "body", InvokeStreamAccumulator(self.capture, price_model))
        else:
            self._finish_invoke(call, result, price_model)
        return result

    @staticmethod
    def _wrap_stream(call: LLMCall, result: dict[str, Any], key: str, acc: Accumulator) -> None:
        stream = result.get(key)
        if stream is None:
            call.finish(None)
            return
        result[key] = EventStreamProxy(stream, call, acc)

    def _finish_invoke(self, call: LLMCall, result: dict[str, Any], price_model: str | None) -> None:
        """End an InvokeModel call, reading its one-shot JSON body and handing the caller a fresh one."""
        headers = get(result.get("ResponseMetadata"), "HTTPHeaders")
        body = result.get("body")
        content_type = result.get("contentType")
        parsed: Any = None
        streaming_body = _streaming_body_class()
        if isinstance(content_type, str) and "json" in content_type and isinstance(body, streaming_body):
            try:
                data = body.read()
            except Exception as exc:  # the caller's own read would have raised it: it still does
                result["body"] = streaming_body(_FailedRead(exc), None)
                call.fail(exc)
                return
            except BaseException as exc:
                call.fail(exc)
                raise
            result["body"] = streaming_body(io.BytesIO(data), len(data))
            try:
                parsed = json.loads(data)
            except ValueError:
                parsed = None
        call.finish(invoke_result(parsed, headers, self.capture, price_model))
