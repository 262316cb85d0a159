"""Pure extraction for Amazon Bedrock: Converse and InvokeModel responses, their event streams, and
the usage AWS reports in headers and metrics, into the ledger and `CallResult`."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ..recorder import CallResult
from ..usage import TokenUsage, as_count
from ._fields import get, get_str
from .anthropic import merged_stream_usage
from .anthropic import usage_from as anthropic_usage_from

# Prefixes of cross-region inference profiles (`us.anthropic.claude-...`, `global.amazon.nova-...`).
_GEO_PREFIX = re.compile(r"^(?:us|us-gov|eu|apac|jp|au|ca|in|global)\.(?=[a-z0-9-]+\.)")


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
