"""Loopback emulator of the Amazon Bedrock Runtime API, as boto3's ``bedrock-runtime`` client calls it.

Serves the REST-JSON operations ``POST /model/{modelId}/converse``, ``/converse-stream``, ``/invoke`` and
``/invoke-with-response-stream``. Streams are AWS event-stream framed (``:event-type``, ``:content-type``
and ``:message-type`` headers, both CRCs), so botocore parses them with its own ``EventStream``.

Converse answers any model. InvokeModel bodies are in the model family's own JSON, recognised from the
model id (foundation model, cross-region inference profile or ARN) or else from the request body:

- Anthropic Claude: the Messages API, its body and stream events the same bytes the Anthropic
  emulator serves to ``AnthropicBedrock`` (``message_stop`` carries ``amazon-bedrock-invocationMetrics``);
- Amazon Nova: ``messages-v1`` (``output.message``, ``stopReason``, ``usage.inputTokens`` ...), streamed
  as ``messageStart`` ... ``metadata`` chunks;
- Meta Llama: ``prompt`` in, ``generation`` / ``prompt_token_count`` / ``generation_token_count`` out.

InvokeModel responses carry Bedrock's ``X-Amzn-Bedrock-Input-Token-Count`` / ``-Output-Token-Count``
(and cache read / write) headers; streamed ones end with ``amazon-bedrock-invocationMetrics``. Counts
follow Bedrock: ``inputTokens`` (and every ``inputTokenCount``) excludes cache reads and writes.

Errors are Bedrock's: an ``x-amzn-ErrorType`` header naming the exception and a ``{"message": ...}``
body, or an exception message (``modelStreamErrorException``, ...) in the middle of a stream, so that
botocore raises its own ``ClientError`` subclasses. Replies are scripted with :class:`BedrockReply`; with
nothing scripted a deterministic default answer is sent.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal
from urllib.parse import unquote

from ._eventstream import CONTENT_TYPE as EVENT_STREAM
from ._eventstream import event_frame, exception_frame
from ._server import Exchange, RecordedRequest, ScriptedEmulator, iter_pieces
from .anthropic import AnthropicReply, _json_body, _make_call, _stream_events, _Tally

__all__ = ["BedrockEmulator", "BedrockReply", "BedrockServedTotals", "RecordedRequest", "model_family"]

DEFAULT_TEXT = "This is a deterministic reply from the Bedrock emulator."

Family = Literal["anthropic", "nova", "llama"]

# Bedrock's exception names per status, sent in `x-amzn-ErrorType` (service model bedrock-runtime).
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("ValidationException", "Malformed input request, please reformat your input and try again."),
    403: ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
    404: ("ResourceNotFoundException", "Could not resolve the foundation model from the model identifier."),
    408: ("ModelTimeoutException", "Model has timed out in processing the request."),
    424: ("ModelErrorException", "The model returned an error."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "The server encountered an internal error."),
    503: ("ServiceUnavailableException", "Bedrock is unable to process your request."),
}
_ERROR_HEADER = "{}:http://internal.amazon.com/coral/com.amazon.bedrock/"
_STREAM_ERRORS = {
    "modelStreamErrorException": "The model encountered an error while streaming the response.",
    "internalServerException": "The server encountered an internal error.",
    "throttlingException": "Too many tokens, please wait before trying again.",
    "serviceUnavailableException": "Bedrock is unable to process your request.",
    "validationException": "The model returned an invalid response.",
    "modelTimeoutException": "Model has timed out in processing the request.",
}
_PATH = re.compile(
    r"^/model/(?P<model>[^/]+)/(?P<op>converse|converse-stream|invoke|invoke-with-response-stream)$"
)
# Bedrock pads stream payloads with a "p" field so that frame sizes do not reveal the content.
_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"


def model_family(model_id: str, body: object = None) -> Family | None:
    """The InvokeModel body format of a model id (or profile id, or ARN), else of the request body."""
    if "anthropic." in model_id:
        return "anthropic"
    if "amazon.nova" in model_id:
        return "nova"
    if "meta.llama" in model_id:
        return "llama"
    if isinstance(body, Mapping):
        if "anthropic_version" in body:
            return "anthropic"
        if isinstance(body.get("prompt"), str):
            return "llama"
        if isinstance(body.get("messages"), list):
            return "nova"
    return None


@dataclass
class BedrockReply:
    """One scripted answer. Every field has a default, so ``BedrockReply()`` is a plain successful reply.

    ``input_tokens`` is the uncached input, as on the wire; cache reads and writes are counted apart
    (writes by time to live: ``cache_write_input_tokens`` for 5 minutes, ``cache_write_1h_input_tokens``
    for an hour). ``raw_usage`` replaces the usage object verbatim, in the operation's own shape
    (Converse ``usage``, an Anthropic or Nova body's ``usage``). ``token_headers=False`` leaves out
    InvokeModel's token-count headers.

    Streams: ``chunks`` text deltas; ``cut_after`` drops the connection after that many events;
    ``error_after`` sends a ``stream_error`` exception after that many; ``gate`` holds the stream after
    ``gate_after`` events until set, so a test can act mid-stream without sleeping. ``cut_body`` drops
    the connection halfway through a non-streamed body.
    """

    status: int = 200
    error_type: str | None = None
    message: str | None = None
    text: str | None = None
    stop_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    cache_write_1h_input_tokens: int = 0
    omit_usage: bool = False
    raw_usage: dict[str, Any] | None = None
    token_headers: bool = True
    latency_ms: int = 120
    chunks: int = 3
    cut_after: int | None = None
    error_after: int | None = None
    stream_error: str = "modelStreamErrorException"
    gate: threading.Event | None = None
    gate_after: int = 1
    cut_body: bool = False
    id: str | None = None
    headers: dict[str, str] | None = None

    @property
    def cache_write(self) -> int:
        return self.cache_write_input_tokens + self.cache_write_1h_input_tokens


@dataclass
class BedrockServedTotals:
    """Usage the emulator put on the wire, summed over the responses it sent.

    ``requests`` counts replies to inference requests (errors included). Counts are added with the
    body, header or event carrying them, before the bytes are written (and taken back if the write
    fails), so a client that has a response sees it counted; a stream cut before its usage adds none.
    """

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_write_input_tokens: int = 0


@dataclass(frozen=True)
class _Answer:
    """What one successful request is answered with, before it is put in the family's shape."""

    model: str
    family: Family | None
    reply: BedrockReply
    text: str
    input_tokens: int
    output_tokens: int

    @property
    def tally(self) -> _Tally:
        reply = self.reply
        if reply.omit_usage:
            return _Tally()
        return _Tally(self.input_tokens, self.output_tokens, reply.cache_read_input_tokens, reply.cache_write)

    @property
    def latency(self) -> int:
        return self.reply.latency_ms


def _estimate_input(body: Mapping[str, Any]) -> int:
    source = [body.get("system"), body.get("messages"), body.get("prompt"), body.get("toolConfig")]
    return 8 + len(json.dumps(source, default=str)) // 4


def _compact(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _padded(payload: Mapping[str, Any]) -> bytes:
    return _compact({**payload, "p": _PADDING})


def _chunk(payload: Mapping[str, Any]) -> bytes:
    """An InvokeModelWithResponseStream ``chunk`` event: the model's JSON, base64-encoded."""
    return event_frame(
        "chunk", _compact({"bytes": base64.b64encode(_compact(payload)).decode(), "p": _PADDING})
    )


class BedrockEmulator(ScriptedEmulator[BedrockReply, BedrockServedTotals]):
    """Bedrock Runtime HTTP server on ``127.0.0.1`` for tests and demos.

    ``base_url`` is what ``boto3.client("bedrock-runtime", endpoint_url=...)`` and
    ``AnthropicBedrock(base_url=...)`` take. Each inference request consumes one :class:`BedrockReply`
    pushed with :meth:`push` (a default reply when none is queued). Requests must be signed (any
    SigV4 ``Authorization`` header is accepted).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(BedrockServedTotals, host, port)

    @property
    def base_url(self) -> str:
        return self.url

    def _add(self, tally: _Tally | None = None, *, request: bool = False, sign: int = 1) -> None:
        with self._served_lock:
            served = self._served
            served.requests += int(request)
            if tally is not None:
                served.input_tokens += sign * tally.input
                served.output_tokens += sign * tally.output
                served.cache_read_input_tokens += sign * tally.cache_read
                served.cache_write_input_tokens += sign * tally.cache_write

    def _count_usage(self, tally: _Tally, sign: int) -> None:
        self._add(tally, sign=sign)

    # --- routing -----------------------------------------------------------------------------

    def handle(self, exchange: Exchange) -> None:
        request = exchange.request
        headers = {"x-amzn-RequestId": str(uuid.uuid4())}
        route = _PATH.match(request.path)
        if request.method != "POST" or route is None:
            headers["x-amzn-ErrorType"] = _ERROR_HEADER.format("UnknownOperationException")
            exchange.send_json(404, {"message": "Unknown operation"}, headers)
            return
        if not request.headers.get("authorization", "").startswith("AWS4-HMAC-SHA256"):
            headers["x-amzn-ErrorType"] = _ERROR_HEADER.format("MissingAuthenticationTokenException")
            exchange.send_json(403, {"message": "Missing Authentication Token"}, headers)
            return
        model, op = unquote(route.group("model")), route.group("op")
        body = request.json
        family = model_family(model, body)
        problem = self._check(op, body, family)
        if problem is not None:
            headers["x-amzn-ErrorType"] = _ERROR_HEADER.format("ValidationException")
            exchange.send_json(400, {"message": problem}, headers)
            return
        reply = self._replies.pop() or BedrockReply()
        headers.update(reply.headers or {})
        self._add(request=True)
        if reply.status >= 400:
            name, message = _ERRORS.get(reply.status, _ERRORS[500 if reply.status >= 500 else 400])
            headers["x-amzn-ErrorType"] = _ERROR_HEADER.format(reply.error_type or name)
            exchange.send_json(reply.status, {"message": reply.message or message}, headers)
            return
        answer = _answer(model, family, body, reply)
        if op == "converse":
            self._send_counted(
                answer.tally, partial(exchange.send_json, 200, _converse_body(answer), headers)
            )
        elif op == "converse-stream":
            self._stream(exchange, answer, _converse_events(answer), headers)
        elif op == "invoke":
            self._invoke(exchange, answer, body, headers)
        else:
            headers["X-Amzn-Bedrock-Content-Type"] = "application/json"
            self._stream(exchange, answer, _invoke_events(answer, body), headers)

    @staticmethod
    def _check(op: str, body: object, family: Family | None) -> str | None:
        if not isinstance(body, dict):
            return "Malformed input request, please reformat your input and try again."
        if op.startswith("converse"):
            if not isinstance(body.get("messages"), list):
                return "The messages field is required."
            return None
        if family is None:
            return "The provided model identifier is invalid."
        if family == "anthropic" and not isinstance(body.get("anthropic_version"), str):
            return "Malformed input request: #: required key [anthropic_version] not found"
        if family == "llama" and not isinstance(body.get("prompt"), str):
            return "Malformed input request: #: required key [prompt] not found"
        if family == "nova" and not isinstance(body.get("messages"), list):
            return "Malformed input request: #: required key [messages] not found"
        return None

    # --- answers -----------------------------------------------------------------------------

    def _invoke(
        self, exchange: Exchange, answer: _Answer, body: dict[str, Any], headers: dict[str, str]
    ) -> None:
        payload, tally = _invoke_body(answer, body)
        if answer.reply.token_headers and tally is not None:
            headers["X-Amzn-Bedrock-Input-Token-Count"] = str(tally.input)
            headers["X-Amzn-Bedrock-Output-Token-Count"] = str(tally.output)
            if tally.cache_read or tally.cache_write:
                headers["X-Amzn-Bedrock-Cache-Read-Input-Token-Count"] = str(tally.cache_read)
                headers["X-Amzn-Bedrock-Cache-Write-Input-Token-Count"] = str(tally.cache_write)
        headers["X-Amzn-Bedrock-Invocation-Latency"] = str(answer.latency)
        data = _compact(payload)
        if answer.reply.cut_body:
            if exchange.start_stream(200, "application/json", headers):
                exchange.write_chunk(data[: len(data) // 2])
            exchange.abort()
            return
        self._send_counted(tally, partial(exchange.send_bytes, 200, data, "application/json", headers))

    def _stream(
        self,
        exchange: Exchange,
        answer: _Answer,
        events: list[tuple[bytes, _Tally | None]],
        headers: dict[str, str],
    ) -> None:
        reply = answer.reply
        if not exchange.start_stream(200, EVENT_STREAM, headers):
            return
        limit = len(events)
        for cut in (reply.cut_after, reply.error_after):
            if cut is not None:
                limit = max(0, min(cut, limit))
        for index, (frame, tally) in enumerate(events[:limit]):
            if reply.gate is not None and index == reply.gate_after and not self._wait(exchange, reply.gate):
                return
            if not self._send_counted(tally, partial(exchange.write_chunk, frame)):
                return
        if reply.cut_after is not None:
            exchange.abort()
            return
        if reply.error_after is not None:
            kind = reply.stream_error
            error: dict[str, Any] = {"message": reply.message or _STREAM_ERRORS.get(kind, kind)}
            if kind == "modelStreamErrorException":
                error.update(originalStatusCode=500, originalMessage="Internal server error")
            exchange.write_chunk(exception_frame(kind, _compact(error)))
        exchange.end_stream()

    @staticmethod
    def _wait(exchange: Exchange, gate: threading.Event) -> bool:
        while not gate.wait(0.05):
            if not exchange.sleep(0):
                exchange.abort()
                return False
        return True


def _answer(model: str, family: Family | None, body: dict[str, Any], reply: BedrockReply) -> _Answer:
    text = DEFAULT_TEXT if reply.text is None else reply.text
    input_tokens = reply.input_tokens if reply.input_tokens is not None else _estimate_input(body)
    output_tokens = reply.output_tokens if reply.output_tokens is not None else max(1, len(text.split()))
    return _Answer(model, family, reply, text, input_tokens, output_tokens)


def _converse_usage(answer: _Answer) -> dict[str, Any]:
    reply = answer.reply
    if reply.raw_usage is not None:
        return reply.raw_usage
    read, write = reply.cache_read_input_tokens, reply.cache_write
    usage: dict[str, Any] = {
        "inputTokens": answer.input_tokens,
        "outputTokens": answer.output_tokens,
        # Bedrock's total counts the cache too: it is the sum of the three input counts and the output.
        "totalTokens": answer.input_tokens + answer.output_tokens + read + write,
    }
    if read or write:
        usage["cacheReadInputTokens"] = read
        usage["cacheWriteInputTokens"] = write
    details = [
        {"ttl": ttl, "inputTokens": count}
        for ttl, count in (("1h", reply.cache_write_1h_input_tokens), ("5m", reply.cache_write_input_tokens))
        if count
    ]
    if details:
        usage["cacheDetails"] = details
    return usage


def _converse_body(answer: _Answer) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "output": {"message": {"role": "assistant", "content": [{"text": answer.text}]}},
        "stopReason": answer.reply.stop_reason or "end_turn",
        "metrics": {"latencyMs": answer.latency},
    }
    if not answer.reply.omit_usage:
        payload["usage"] = _converse_usage(answer)
    return payload


def _converse_events(answer: _Answer) -> list[tuple[bytes, _Tally | None]]:
    """messageStart, text deltas (a text block has no contentBlockStart), messageStop, then metadata."""
    reply = answer.reply
    events: list[tuple[bytes, _Tally | None]] = [
        (event_frame("messageStart", _padded({"role": "assistant"})), None)
    ]
    for piece in iter_pieces(answer.text, reply.chunks):
        delta = {"contentBlockIndex": 0, "delta": {"text": piece}}
        events.append((event_frame("contentBlockDelta", _padded(delta)), None))
    events.append((event_frame("contentBlockStop", _padded({"contentBlockIndex": 0})), None))
    stop = {"stopReason": reply.stop_reason or "end_turn"}
    events.append((event_frame("messageStop", _padded(stop)), None))
    metadata: dict[str, Any] = {"metrics": {"latencyMs": answer.latency}}
    tally = None
    if not reply.omit_usage:
        metadata["usage"] = _converse_usage(answer)
        tally = answer.tally
    events.append((event_frame("metadata", _padded(metadata)), tally))
    return events


def _invocation_metrics(answer: _Answer) -> dict[str, Any]:
    tally = answer.tally
    metrics: dict[str, Any] = {
        "inputTokenCount": tally.input,
        "outputTokenCount": tally.output,
        "invocationLatency": answer.latency,
        "firstByteLatency": answer.latency // 2,
    }
    if tally.cache_read or tally.cache_write:
        metrics["cacheReadInputTokenCount"] = tally.cache_read
        metrics["cacheWriteInputTokenCount"] = tally.cache_write
    return metrics


def _anthropic_reply(answer: _Answer) -> AnthropicReply:
    reply = answer.reply
    return AnthropicReply(
        text=answer.text,
        stop_reason=reply.stop_reason or "end_turn",
        input_tokens=answer.input_tokens,
        output_tokens=answer.output_tokens,
        cache_read_input_tokens=reply.cache_read_input_tokens,
        cache_5m_input_tokens=reply.cache_write_input_tokens,
        cache_1h_input_tokens=reply.cache_write_1h_input_tokens,
        omit_usage=reply.omit_usage,
        raw_usage=reply.raw_usage,
        chunks=reply.chunks,
        id=reply.id,
    )


def _nova_usage(answer: _Answer) -> dict[str, Any]:
    reply = answer.reply
    if reply.raw_usage is not None:
        return reply.raw_usage
    tally = answer.tally
    return {
        "inputTokens": tally.input,
        "outputTokens": tally.output,
        "totalTokens": tally.input + tally.output + tally.cache_read + tally.cache_write,
        "cacheReadInputTokenCount": tally.cache_read,
        "cacheWriteInputTokenCount": tally.cache_write,
    }


def _invoke_body(answer: _Answer, body: dict[str, Any]) -> tuple[dict[str, Any], _Tally | None]:
    reply = answer.reply
    tally = None if reply.omit_usage else answer.tally
    if answer.family == "anthropic":
        payload, anthropic_tally = _json_body(
            _make_call("bedrock", body, answer.model, _anthropic_reply(answer))
        )
        return payload, anthropic_tally
    if answer.family == "llama":
        llama: dict[str, Any] = {"generation": answer.text, "stop_reason": reply.stop_reason or "stop"}
        if tally is not None:
            llama.update(prompt_token_count=tally.input, generation_token_count=tally.output)
        return llama, tally
    nova: dict[str, Any] = {
        "output": {"message": {"content": [{"text": answer.text}], "role": "assistant"}},
        "stopReason": reply.stop_reason or "end_turn",
    }
    if tally is not None:
        nova["usage"] = _nova_usage(answer)
    return nova, tally


def _invoke_events(answer: _Answer, body: dict[str, Any]) -> list[tuple[bytes, _Tally | None]]:
    reply = answer.reply
    tally = None if reply.omit_usage else answer.tally
    if answer.family == "anthropic":
        call = _make_call("bedrock", body, answer.model, _anthropic_reply(answer))
        return [(_chunk(event.payload), event.tally) for event in _stream_events(call)]
    pieces = list(iter_pieces(answer.text, reply.chunks))
    if answer.family == "llama":
        events = []
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            chunk: dict[str, Any] = {
                "generation": piece,
                "prompt_token_count": None,
                "generation_token_count": None,
                "stop_reason": (reply.stop_reason or "stop") if last else None,
            }
            if tally is not None:
                # The prompt's count comes with the first chunk; the generated count is running.
                if index == 0:
                    chunk["prompt_token_count"] = tally.input
                chunk["generation_token_count"] = tally.output * (index + 1) // len(pieces)
                if last:
                    chunk["amazon-bedrock-invocationMetrics"] = _invocation_metrics(answer)
            events.append((_chunk(chunk), tally if tally is not None and last else None))
        return events
    nova: list[tuple[bytes, _Tally | None]] = [(_chunk({"messageStart": {"role": "assistant"}}), None)]
    for piece in pieces:
        nova.append((_chunk({"contentBlockDelta": {"delta": {"text": piece}, "contentBlockIndex": 0}}), None))
    nova.append((_chunk({"contentBlockStop": {"contentBlockIndex": 0}}), None))
    nova.append((_chunk({"messageStop": {"stopReason": reply.stop_reason or "end_turn"}}), None))
    if tally is not None:
        metadata = {
            "metadata": {"usage": _nova_usage(answer), "metrics": {}, "trace": {}},
            "amazon-bedrock-invocationMetrics": _invocation_metrics(answer),
        }
        nova.append((_chunk(metadata), tally))
    return nova
