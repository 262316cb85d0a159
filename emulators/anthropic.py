"""Loopback emulator of Anthropic's Messages API, as served by Anthropic, Amazon Bedrock and Vertex AI.

Serves ``POST /v1/messages`` (JSON and server-sent events) and ``POST /v1/messages/count_tokens`` in
the wire shapes Anthropic documents, plus the paths the SDK's platform clients call:
``AnthropicBedrock`` (``/model/{model}/invoke`` and ``/model/{model}/invoke-with-response-stream``,
whose stream is AWS event-stream framed) and ``AnthropicVertex``
(``/v1/projects/{p}/locations/{l}/publishers/anthropic/models/{model}:rawPredict`` and
``:streamRawPredict``). Replies are scripted with :class:`AnthropicReply`; with nothing scripted a
deterministic default answer is sent.

Errors use each platform's envelope: Anthropic's ``{"type": "error", "error": {...}}`` (passed through
unchanged by Vertex AI), and on Bedrock ``{"message": ...}`` with an ``x-amzn-ErrorType`` header, or an
event-stream exception frame mid-stream.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import secrets
import string
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal
from urllib.parse import unquote

from ._eventstream import event_stream_frame
from ._server import Exchange, RecordedRequest, ScriptedEmulator, iter_pieces
from ._server import compact_json as _compact
from ._server import raw_count as _count

__all__ = ["AnthropicEmulator", "AnthropicReply", "AnthropicServedTotals", "RecordedRequest"]

DEFAULT_TEXT = "This is a deterministic reply from the Anthropic emulator."

_Platform = Literal["anthropic", "bedrock", "vertex"]

# Anthropic's error `type` per status (https://docs.anthropic.com/en/api/errors).
_ERROR_TYPES: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "There was an issue with the format or content of your request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "model: {model}"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: (
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 50 input tokens per minute.",
    ),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}
# Bedrock's own error names, sent in `x-amzn-ErrorType` and as event-stream exception types.
_BEDROCK_ERRORS: dict[int, tuple[str, str]] = {
    400: ("ValidationException", "Malformed input request, please reformat your input and try again."),
    403: ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
    404: ("ResourceNotFoundException", "Could not resolve the foundation model from the model identifier."),
    408: ("ModelTimeoutException", "Model has timed out in processing the request."),
    424: ("ModelErrorException", "The model returned an error."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "The server encountered an internal error."),
    503: ("ServiceUnavailableException", "Bedrock is unable to process your request."),
}
_BEDROCK_ERROR_HEADER = "{}:http://internal.amazon.com/coral/com.amazon.bedrock/"
_STREAM_ERROR_MESSAGES = {type_: message for type_, message in _ERROR_TYPES.values()}
_BEDROCK_STREAM_ERRORS = {
    "overloaded_error": "serviceUnavailableException",
    "rate_limit_error": "throttlingException",
    "timeout_error": "modelTimeoutException",
}
_BEDROCK_PATH = re.compile(r"^/model/(?P<model>[^/]+)/(?P<op>invoke|invoke-with-response-stream)$")
_VERTEX_PATH = re.compile(
    r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/publishers/anthropic/models/"
    r"(?P<model>[^/:]+):(?P<op>rawPredict|streamRawPredict)$"
)
_BEDROCK_MODEL_ID = re.compile(r"^(?:[a-z]+\.)?anthropic\.(?P<name>.+?)(?:-v\d+(?::\d+)?)?$")


@dataclass
class AnthropicReply:
    """One scripted answer. Every field has a default, so ``AnthropicReply()`` is a plain successful reply.

    ``input_tokens`` is Anthropic's uncached input; cache reads and writes are separate counts, as on
    the wire. Cache writes are ``cache_creation_input_tokens`` in total, split into
    ``cache_5m_input_tokens`` and ``cache_1h_input_tokens``: give the total, the split, or both.

    Streams: ``chunks`` text deltas; ``cut_after`` drops the connection after that many events;
    ``error_after`` sends an ``error`` event (``stream_error_type``) after that many; ``gate`` holds
    the stream after ``gate_after`` events until the event is set, so a test can act mid-stream
    without sleeping. ``raw_usage`` replaces the body's usage (a stream's ``message_delta`` usage) and
    ``start_raw_usage`` a stream's ``message_start`` usage, verbatim.
    """

    status: int = 200
    text: str | None = None
    model: str | None = None
    stop_reason: str = "end_turn"
    stop_sequence: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int | None = None
    cache_5m_input_tokens: int | None = None
    cache_1h_input_tokens: int | None = None
    thinking_tokens: int | None = None
    web_search_requests: int = 0
    service_tier: str = "standard"
    # Recent API versions repeat the input and cache counts in `message_delta`; older ones sent only
    # the cumulative `output_tokens` there.
    usage_in_message_delta: bool = True
    start_output_tokens: int = 1
    omit_usage: bool = False
    raw_usage: dict[str, Any] | None = None
    start_raw_usage: dict[str, Any] | None = None
    chunks: int = 3
    cut_after: int | None = None
    error_after: int | None = None
    stream_error_type: str = "overloaded_error"
    gate: threading.Event | None = None
    gate_after: int = 1
    ping: bool = True
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    id: str | None = None
    error_type: str | None = None
    message: str | None = None
    headers: dict[str, str] | None = None

    def cache_split(self) -> tuple[int, int, int]:
        """(total cache writes, 5-minute writes, 1-hour writes)."""
        one_hour = self.cache_1h_input_tokens or 0
        if self.cache_creation_input_tokens is None:
            five = self.cache_5m_input_tokens or 0
            return five + one_hour, five, one_hour
        total = self.cache_creation_input_tokens
        five = self.cache_5m_input_tokens if self.cache_5m_input_tokens is not None else total - one_hour
        return total, five, one_hour


@dataclass
class AnthropicServedTotals:
    """Usage the emulator put on the wire, summed over the responses it sent.

    ``requests`` counts replies sent for message requests (errors included); ``count_tokens_requests``
    counts token-counting requests. Input and cache counts are added with the body or the
    ``message_start`` event carrying them, output with the body or ``message_delta``: a stream cut
    before ``message_delta`` adds its input but no output. Counts are added before the bytes are
    written (and taken back if the write fails), so a client that has a response sees it counted.
    """

    requests: int = 0
    count_tokens_requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


@dataclass(frozen=True)
class _Tally:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    def minus(self, other: _Tally) -> _Tally:
        return _Tally(
            self.input - other.input,
            self.output - other.output,
            self.cache_read - other.cache_read,
            self.cache_write - other.cache_write,
        )


@dataclass(frozen=True)
class _Event:
    name: str
    payload: dict[str, Any]
    tally: _Tally | None = None


@dataclass(frozen=True)
class _Call:
    platform: _Platform
    body: dict[str, Any]
    model: str
    reply: AnthropicReply
    text: str
    input_tokens: int
    output_tokens: int


def _alnum(length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _tally_from_raw(raw: object) -> _Tally:
    if not isinstance(raw, Mapping):
        return _Tally()
    return _Tally(
        input=_count(raw.get("input_tokens")),
        output=_count(raw.get("output_tokens")),
        cache_read=_count(raw.get("cache_read_input_tokens")),
        cache_write=_count(raw.get("cache_creation_input_tokens")),
    )


def _estimate_input(body: Mapping[str, Any]) -> int:
    source = [body.get("system"), body.get("messages"), body.get("tools")]
    return 8 + len(json.dumps(source, default=str)) // 4


def _request_id() -> str:
    return f"req_011C{_alnum(20)}"


def _error_body(type_: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}, "request_id": _request_id()}


def bedrock_response_model(model_id: str) -> str:
    """The model name Bedrock puts in a response for a model (or inference profile) id."""
    match = _BEDROCK_MODEL_ID.match(model_id)
    return match.group("name") if match else model_id


class AnthropicEmulator(ScriptedEmulator[AnthropicReply, AnthropicServedTotals]):
    """Anthropic-compatible HTTP server on ``127.0.0.1`` for tests and demos.

    ``base_url`` is what ``Anthropic(base_url=...)`` and ``AnthropicBedrock(base_url=...)`` take;
    ``vertex_base_url`` is what ``AnthropicVertex(base_url=...)`` takes. Each message request consumes
    one :class:`AnthropicReply` pushed with :meth:`push` (a default reply when none is queued);
    token counting consumes none.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(AnthropicServedTotals, host, port)

    @property
    def base_url(self) -> str:
        return self.url

    @property
    def vertex_base_url(self) -> str:
        return f"{self.url}/v1"

    def _add(self, tally: _Tally | None = None, *, request: bool = False, count_tokens: bool = False) -> None:
        with self._served_lock:
            served = self._served
            served.requests += int(request)
            served.count_tokens_requests += int(count_tokens)
            if tally is not None:
                served.input_tokens += tally.input
                served.output_tokens += tally.output
                served.cache_read_input_tokens += tally.cache_read
                served.cache_creation_input_tokens += tally.cache_write

    def _count_usage(self, tally: _Tally, sign: int) -> None:
        self._add(tally if sign > 0 else _Tally().minus(tally))

    # --- routing -----------------------------------------------------------------------------

    def handle(self, exchange: Exchange) -> None:
        request = exchange.request
        path = request.path.rstrip("/") or "/"
        if request.method != "POST":
            self._not_found(exchange)
            return
        if path == "/v1/messages" or path == "/v1/messages/count_tokens":
            headers = {"request-id": _request_id(), "anthropic-organization-id": str(uuid.uuid4())}
            problem = self._check_first_party(request)
            if problem is not None:
                exchange.send_json(problem[0], _error_body(*problem[1:]), headers)
                return
            body = request.json
            if path.endswith("/count_tokens"):
                self._count_tokens(exchange, body, headers)
                return
            model = body.get("model")
            if not isinstance(model, str) or not model:
                error = _error_body("invalid_request_error", "model: Field required")
                exchange.send_json(400, error, headers)
                return
            self._answer(exchange, "anthropic", body, model, body.get("stream") is True, headers)
            return
        bedrock = _BEDROCK_PATH.match(path)
        if bedrock is not None:
            headers = {"x-amzn-RequestId": str(uuid.uuid4())}
            body = request.json
            if not isinstance(body, dict) or not isinstance(body.get("anthropic_version"), str):
                headers["x-amzn-ErrorType"] = _BEDROCK_ERROR_HEADER.format("ValidationException")
                exchange.send_json(
                    400, {"message": "Malformed input request: anthropic_version is required"}, headers
                )
                return
            model = unquote(bedrock.group("model"))
            stream = bedrock.group("op") == "invoke-with-response-stream"
            self._answer(exchange, "bedrock", body, model, stream, headers)
            return
        vertex = _VERTEX_PATH.match(path)
        if vertex is not None:
            headers = {"request-id": _request_id()}
            body = request.json
            if not isinstance(body, dict) or not isinstance(body.get("anthropic_version"), str):
                exchange.send_json(
                    400, _error_body("invalid_request_error", "anthropic_version: Field required"), headers
                )
                return
            model = unquote(vertex.group("model"))
            if model == "count-tokens":
                self._count_tokens(exchange, body, headers)
                return
            stream = vertex.group("op") == "streamRawPredict" and body.get("stream") is True
            self._answer(exchange, "vertex", body, model, stream, headers)
            return
        self._not_found(exchange)

    def _not_found(self, exchange: Exchange) -> None:
        exchange.send_json(404, _error_body("not_found_error", "Not Found"), {"request-id": _request_id()})

    @staticmethod
    def _check_first_party(request: RecordedRequest) -> tuple[int, str, str] | None:
        if not request.headers.get("x-api-key") and not request.headers.get("authorization"):
            return 401, "authentication_error", "x-api-key header is required"
        if not request.headers.get("anthropic-version"):
            return 400, "invalid_request_error", "anthropic-version: header is required"
        if not isinstance(request.json, dict):
            return 400, *_ERROR_TYPES[400]
        return None

    def _count_tokens(self, exchange: Exchange, body: dict[str, Any], headers: dict[str, str]) -> None:
        self._add(count_tokens=True)
        exchange.send_json(200, {"input_tokens": _estimate_input(body)}, headers)

    # --- answers -----------------------------------------------------------------------------

    def _answer(
        self,
        exchange: Exchange,
        platform: _Platform,
        body: dict[str, Any],
        model: str,
        stream: bool,
        headers: dict[str, str],
    ) -> None:
        reply = self._replies.pop() or AnthropicReply()
        if not exchange.sleep(reply.delay_s):
            exchange.abort()
            return
        headers.update(reply.headers or {})
        self._add(request=True)
        if reply.status >= 400:
            self._send_error(exchange, platform, reply, model, headers)
            return
        call = _make_call(platform, body, model, reply)
        if stream:
            self._stream(exchange, call, headers)
            return
        payload, tally = _json_body(call)
        if platform == "bedrock" and tally is not None:
            headers["X-Amzn-Bedrock-Input-Token-Count"] = str(tally.input)
            headers["X-Amzn-Bedrock-Output-Token-Count"] = str(tally.output)
            headers["X-Amzn-Bedrock-Invocation-Latency"] = str(int(reply.delay_s * 1000))
        self._send_counted(tally, partial(exchange.send_json, 200, payload, headers))

    def _send_error(
        self,
        exchange: Exchange,
        platform: _Platform,
        reply: AnthropicReply,
        model: str,
        headers: dict[str, str],
    ) -> None:
        if platform == "bedrock":
            name, message = _BEDROCK_ERRORS.get(
                reply.status, _BEDROCK_ERRORS[500 if reply.status >= 500 else 400]
            )
            headers["x-amzn-ErrorType"] = _BEDROCK_ERROR_HEADER.format(reply.error_type or name)
            exchange.send_json(reply.status, {"message": reply.message or message}, headers)
            return
        fallback = _ERROR_TYPES[500 if reply.status >= 500 else 400]
        type_, message = _ERROR_TYPES.get(reply.status, fallback)
        text = reply.message if reply.message is not None else message.format(model=model)
        exchange.send_json(reply.status, _error_body(reply.error_type or type_, text), headers)

    def _stream(self, exchange: Exchange, call: _Call, headers: dict[str, str]) -> None:
        reply = call.reply
        events = _stream_events(call)
        bedrock = call.platform == "bedrock"
        if bedrock:
            headers["x-amzn-bedrock-content-type"] = "application/json"
            started = exchange.start_stream(200, "application/vnd.amazon.eventstream", headers)
        else:
            started = exchange.start_stream(200, headers=headers)
        if not started:
            return
        limit = len(events)
        if reply.cut_after is not None:
            limit = max(0, min(reply.cut_after, limit))
        if reply.error_after is not None:
            limit = max(0, min(reply.error_after, limit))
        for index, event in enumerate(events[:limit]):
            if reply.gate is not None and index == reply.gate_after and not self._wait(exchange, reply.gate):
                return
            if index and not exchange.sleep(reply.chunk_delay_s):
                exchange.abort()
                return
            if not self._send_counted(event.tally, partial(self._write_event, exchange, event, bedrock)):
                return
        if reply.cut_after is not None:
            exchange.abort()
            return
        if reply.error_after is not None:
            kind = reply.stream_error_type
            message = reply.message or _STREAM_ERROR_MESSAGES.get(kind, kind)
            if bedrock:
                exception = _BEDROCK_STREAM_ERRORS.get(kind, "internalServerException")
                frame_headers = {
                    ":exception-type": exception,
                    ":content-type": "application/json",
                    ":message-type": "exception",
                }
                exchange.write_chunk(
                    event_stream_frame(frame_headers, json.dumps({"message": message}).encode())
                )
            else:
                error = {"type": "error", "error": {"type": kind, "message": message}}
                exchange.write_sse(_compact(error), "error")
        exchange.end_stream()

    @staticmethod
    def _wait(exchange: Exchange, gate: threading.Event) -> bool:
        while not gate.wait(0.05):
            if not exchange.sleep(0):
                exchange.abort()
                return False
        return True

    @staticmethod
    def _write_event(exchange: Exchange, event: _Event, bedrock: bool) -> bool:
        if not bedrock:
            return exchange.write_sse(_compact(event.payload), event.name)
        encoded = base64.b64encode(_compact(event.payload).encode()).decode("ascii")
        # Bedrock pads each chunk with a "p" field so that frame sizes do not reveal the content.
        chunk = {"bytes": encoded, "p": "abcdefghijklmnop"}
        frame = event_stream_frame(
            {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"},
            _compact(chunk).encode(),
        )
        return exchange.write_chunk(frame)


def _make_call(platform: _Platform, body: dict[str, Any], model: str, reply: AnthropicReply) -> _Call:
    text = DEFAULT_TEXT if reply.text is None else reply.text
    input_tokens = reply.input_tokens if reply.input_tokens is not None else _estimate_input(body)
    output_tokens = reply.output_tokens if reply.output_tokens is not None else max(1, len(text.split()))
    if reply.model is not None:
        response_model = reply.model
    elif platform == "bedrock":
        response_model = bedrock_response_model(model)
    else:
        response_model = model.replace("@", "-")
    return _Call(platform, body, response_model, reply, text, input_tokens, output_tokens)


def _message_id(call: _Call) -> str:
    if call.reply.id is not None:
        return call.reply.id
    return f"msg_bdrk_01{_alnum(22)}" if call.platform == "bedrock" else f"msg_01{_alnum(22)}"


def _final_usage(call: _Call) -> tuple[dict[str, Any], _Tally] | None:
    reply = call.reply
    if reply.omit_usage:
        return None
    if reply.raw_usage is not None:
        return reply.raw_usage, _tally_from_raw(reply.raw_usage)
    total, five, one_hour = reply.cache_split()
    usage: dict[str, Any] = {
        "input_tokens": call.input_tokens,
        "cache_creation_input_tokens": total,
        "cache_read_input_tokens": reply.cache_read_input_tokens,
        "cache_creation": {"ephemeral_5m_input_tokens": five, "ephemeral_1h_input_tokens": one_hour},
        "output_tokens": call.output_tokens,
        "service_tier": reply.service_tier,
    }
    if reply.web_search_requests:
        usage["server_tool_use"] = {"web_search_requests": reply.web_search_requests, "web_fetch_requests": 0}
    if reply.thinking_tokens is not None:
        usage["output_tokens_details"] = {"thinking_tokens": reply.thinking_tokens}
    return usage, _Tally(call.input_tokens, call.output_tokens, reply.cache_read_input_tokens, total)


def _json_body(call: _Call) -> tuple[dict[str, Any], _Tally | None]:
    usage = _final_usage(call)
    payload: dict[str, Any] = {
        "id": _message_id(call),
        "type": "message",
        "role": "assistant",
        "model": call.model,
        "content": [{"type": "text", "text": call.text}],
        "stop_reason": call.reply.stop_reason,
        "stop_sequence": call.reply.stop_sequence,
    }
    if usage is None:
        return payload, None
    payload["usage"] = usage[0]
    return payload, usage[1]


def _start_usage(call: _Call) -> tuple[dict[str, Any], _Tally] | None:
    reply = call.reply
    if reply.omit_usage:
        return None
    if reply.start_raw_usage is not None:
        tally = _tally_from_raw(reply.start_raw_usage)
        return reply.start_raw_usage, dataclasses.replace(tally, output=0)
    total, five, one_hour = reply.cache_split()
    usage = {
        "input_tokens": call.input_tokens,
        "cache_creation_input_tokens": total,
        "cache_read_input_tokens": reply.cache_read_input_tokens,
        "cache_creation": {"ephemeral_5m_input_tokens": five, "ephemeral_1h_input_tokens": one_hour},
        "output_tokens": reply.start_output_tokens,
        "service_tier": reply.service_tier,
    }
    return usage, _Tally(call.input_tokens, 0, reply.cache_read_input_tokens, total)


def _delta_usage(call: _Call) -> tuple[dict[str, Any], _Tally, bool] | None:
    """The `message_delta` usage, its tally, and whether it repeats the input and cache counts."""
    final = _final_usage(call)
    if final is None:
        return None
    usage, tally = final
    if call.reply.raw_usage is not None:
        return dict(usage), tally, True
    if call.reply.usage_in_message_delta:
        keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens",
                "server_tool_use", "output_tokens_details")  # fmt: skip
        return {k: usage[k] for k in keys if k in usage}, tally, True
    delta: dict[str, Any] = {
        k: usage[k] for k in ("output_tokens", "server_tool_use", "output_tokens_details") if k in usage
    }
    return delta, _Tally(output=tally.output), False


def _stream_events(call: _Call) -> list[_Event]:
    """message_start, one text block (start, ping, deltas, stop), message_delta, message_stop."""
    reply = call.reply
    start = _start_usage(call)
    message: dict[str, Any] = {
        "id": _message_id(call),
        "type": "message",
        "role": "assistant",
        "model": call.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    if start is not None:
        message["usage"] = start[0]
    start_tally = start[1] if start is not None else None
    events = [_Event("message_start", {"type": "message_start", "message": message}, start_tally)]
    events.append(
        _Event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        )
    )
    if reply.ping and call.platform != "bedrock":
        events.append(_Event("ping", {"type": "ping"}))
    for piece in iter_pieces(call.text, reply.chunks):
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
        events.append(_Event("content_block_delta", delta))
    events.append(_Event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    delta_usage = _delta_usage(call)
    delta_event: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence},
    }
    delta_tally = None
    if delta_usage is not None:
        delta_event["usage"] = delta_usage[0]
        usage_tally, repeats_input = delta_usage[1], delta_usage[2]
        # The served totals hold what a client would end with: message_delta counts replace message_start's.
        delta_tally = usage_tally.minus(start[1]) if repeats_input and start is not None else usage_tally
    events.append(_Event("message_delta", delta_event, delta_tally))
    stop: dict[str, Any] = {"type": "message_stop"}
    if call.platform == "bedrock":
        final = _final_usage(call)
        tally = final[1] if final is not None else _Tally()
        metrics: dict[str, Any] = {
            "inputTokenCount": tally.input,
            "outputTokenCount": tally.output,
            "invocationLatency": int(reply.delay_s * 1000),
            "firstByteLatency": int(reply.delay_s * 1000),
        }
        if tally.cache_read or tally.cache_write:
            metrics["cacheReadInputTokenCount"] = tally.cache_read
            metrics["cacheWriteInputTokenCount"] = tally.cache_write
        stop["amazon-bedrock-invocationMetrics"] = metrics
    events.append(_Event("message_stop", stop))
    return events
