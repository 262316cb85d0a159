"""Loopback emulator of the Mistral AI API (``api.mistral.ai``).

Serves ``POST /v1/chat/completions``, ``/v1/fim/completions``, ``/v1/agents/completions`` (JSON, or
server-sent events with ``"stream": true``) and ``/v1/embeddings`` in the wire shapes the API sends:
compact JSON; a stream opens with a ``role`` delta, its last chunk carries the finish reason and the
``usage`` together, and ``data: [DONE]`` closes it. Errors carry the API's bodies per status
(``{"object": "error", ...}`` for 400, 422 and 429, the gateway's ``{"message": "Unauthorized", ...}``
for 401, ``{"detail": ...}`` for 500), so the SDK raises its own exception classes.

Replies are scripted with :class:`MistralReply`; with nothing scripted a deterministic default answer
is sent.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from ._server import Exchange, RecordedRequest, ScriptedEmulator, iter_pieces
from ._server import compact_json as _compact
from ._server import raw_count as _count

__all__ = ["MistralEmulator", "MistralReply", "MistralServedTotals", "RecordedRequest"]

DEFAULT_TEXT = "This is a deterministic reply from the Mistral emulator."
DEFAULT_AGENT_MODEL = "mistral-large-latest"
DEFAULT_EMBEDDING_DIMENSIONS = 8

_Kind = Literal["chat", "fim", "agents", "embeddings"]
_ROUTES: dict[str, _Kind] = {
    "/v1/chat/completions": "chat",
    "/v1/fim/completions": "fim",
    "/v1/agents/completions": "agents",
    "/v1/embeddings": "embeddings",
}
CacheField = Literal["prompt_tokens_details", "num_cached_tokens"]


@dataclass
class MistralReply:
    """One scripted answer. Every field has a default, so ``MistralReply()`` is a plain successful reply.

    ``prompt_tokens`` includes ``cached_tokens``, which the usage reports as
    ``prompt_tokens_details.cached_tokens`` (or the older top-level ``num_cached_tokens``, per
    ``cache_field``) when non-zero. ``prompt_tokens`` defaults to an estimate from the request,
    ``completion_tokens`` to the text's word count. ``model`` defaults to the request's (an agent's
    to ``DEFAULT_AGENT_MODEL``). ``raw_usage`` replaces the usage object verbatim; ``omit_usage``
    leaves it out.

    ``status`` >= 400 sends the API's error body for that status; ``message``, ``error_type`` and
    ``error_code`` replace its fields, ``raw_error`` the whole body.

    Streams split ``text`` into ``chunks`` content chunks after the opening ``role`` chunk.
    ``cut_after`` drops the connection after that many SSE events (``[DONE]`` included) without the
    terminating chunk; ``gate`` holds the stream before event ``gate_after`` until it is set.
    ``delay_s`` is waited before answering, ``chunk_delay_s`` between events.
    """

    status: int = 200
    text: str | None = None
    model: str | None = None
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0
    cache_field: CacheField = "prompt_tokens_details"
    omit_usage: bool = False
    raw_usage: dict[str, Any] | None = None
    chunks: int = 3
    cut_after: int | None = None
    gate: threading.Event | None = None
    gate_after: int = 1
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    id: str | None = None
    message: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    raw_error: dict[str, Any] | None = None
    headers: dict[str, str] | None = None


@dataclass
class MistralServedTotals:
    """Usage the emulator put on the wire, summed over the responses it sent.

    ``requests`` counts replies to the four model endpoints (errors included). Tokens are added once
    the usage-bearing body or stream chunk has been written, so a stream cut before its last chunk
    adds nothing. For ``raw_usage`` only well-formed non-negative integers are summed.
    """

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


@dataclass(frozen=True)
class _Tally:
    prompt: int = 0
    completion: int = 0
    cached: int = 0


@dataclass(frozen=True)
class _Call:
    kind: _Kind
    body: dict[str, Any]
    model: str
    reply: MistralReply
    text: str
    prompt: int
    completion: int
    id: str
    created: int


def _send(exchange: Exchange, status: int, payload: object, headers: Mapping[str, str]) -> bool:
    return exchange.send_bytes(status, _compact(payload).encode("utf-8"), "application/json", headers)


def _tally_from_raw(raw: Mapping[str, Any]) -> _Tally:
    cached = 0
    for key in ("prompt_tokens_details", "prompt_token_details"):
        details = raw.get(key)
        if isinstance(details, Mapping):
            cached = cached or _count(details.get("cached_tokens"))
    return _Tally(
        prompt=_count(raw.get("prompt_tokens")),
        completion=_count(raw.get("completion_tokens")),
        cached=cached or _count(raw.get("num_cached_tokens")),
    )


def _error_body(status: int, reply: MistralReply, call_model: str, prompt: int) -> dict[str, Any]:
    """The body the API sends for ``status``: its own ``object: error`` shape where it has one."""
    if reply.raw_error is not None:
        return reply.raw_error
    if status == 401:
        return {"message": reply.message or "Unauthorized", "request_id": secrets.token_hex(16)}
    if status == 500:
        return {"detail": reply.message or "Internal Server Error"}
    message: Any
    if status == 400:
        message = (
            f"Prompt contains {prompt} tokens and 0 draft tokens, too large for model with 32768 maximum "
            "context length"
        )
        type_, code = "invalid_request_message_error", None
    elif status == 422:
        message = {
            "detail": [
                {
                    "type": "extra_forbidden",
                    "loc": ["body", "max_completion_tokens"],
                    "msg": "Extra inputs are not permitted",
                    "input": 64,
                }
            ]
        }
        type_, code = "invalid_request_message_error", None
    elif status == 429:
        message, type_, code = "Rate limit exceeded", "rate_limited", "1300"
    else:
        message, type_, code = f"Service unavailable for model {call_model}", "service_unavailable", None
    return _api_error(
        reply.message if reply.message is not None else message,
        reply.error_type or type_,
        reply.error_code if reply.error_code is not None else code,
    )


def _api_error(message: object, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"object": "error", "message": message, "type": type_, "param": None, "code": code}


def _embedding(seed: object, size: int) -> list[float]:
    """A deterministic unit vector for ``seed``, float32-exact like the API's values."""
    digest = b""
    counter = 0
    text = json.dumps(seed, sort_keys=True, default=str)
    while len(digest) < size:
        digest += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    values = [byte / 127.5 - 1.0 for byte in digest[:size]]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return list(struct.unpack(f"<{size}f", struct.pack(f"<{size}f", *(v / norm for v in values))))


class MistralEmulator(ScriptedEmulator[MistralReply, MistralServedTotals]):
    """Mistral-compatible HTTP server on ``127.0.0.1`` for tests and demos.

    ``server_url`` is what ``Mistral(server_url=...)`` takes. Requests need a bearer token (any will
    do; without one the gateway's 401 is sent). Each well-formed request to a model endpoint
    consumes one :class:`MistralReply` pushed with :meth:`push`, or a default one when none is queued.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(MistralServedTotals, host, port)

    @property
    def server_url(self) -> str:
        return self.url

    def _add(self, tally: _Tally | None = None, *, request: bool = False, sign: int = 1) -> None:
        with self._served_lock:
            served = self._served
            served.requests += int(request)
            if tally is not None:
                served.prompt_tokens += sign * tally.prompt
                served.completion_tokens += sign * tally.completion
                served.cached_tokens += sign * tally.cached

    def _count_usage(self, tally: _Tally, sign: int) -> None:
        self._add(tally, sign=sign)

    def handle(self, exchange: Exchange) -> None:
        request = exchange.request
        headers = {"mistral-correlation-id": secrets.token_hex(16)}
        kind = _ROUTES.get(request.path.rstrip("/")) if request.method == "POST" else None
        if kind is None:
            _send(exchange, 404, {"detail": "Not Found"}, headers)
            return
        if not request.headers.get("authorization", "").startswith("Bearer "):
            body = {"message": "Unauthorized", "request_id": secrets.token_hex(16)}
            _send(exchange, 401, body, headers)
            return
        payload = request.json
        if not isinstance(payload, dict):
            detail = [{"type": "json_invalid", "loc": ["body"], "msg": "JSON decode error", "input": {}}]
            _send(exchange, 422, _api_error({"detail": detail}, "invalid_request_message_error"), headers)
            return
        self._answer(exchange, kind, payload, self._replies.pop() or MistralReply(), headers)

    def _answer(
        self,
        exchange: Exchange,
        kind: _Kind,
        body: dict[str, Any],
        reply: MistralReply,
        headers: dict[str, str],
    ) -> None:
        if not exchange.sleep(reply.delay_s):
            exchange.abort()
            return
        headers.update(reply.headers or {})
        self._add(request=True)
        call = _make_call(kind, body, reply)
        if reply.status >= 400:
            error = _error_body(reply.status, reply, call.model, call.prompt)
            _send(exchange, reply.status, error, headers)
            return
        if body.get("stream") is True and kind != "embeddings":
            self._stream(exchange, call, headers)
            return
        payload, tally = _json_body(call)
        self._send_counted(tally, partial(_send, exchange, 200, payload, headers))

    def _stream(self, exchange: Exchange, call: _Call, headers: dict[str, str]) -> None:
        reply = call.reply
        if not exchange.start_stream(200, headers=headers):
            return
        events = _stream_events(call)
        limit = len(events) if reply.cut_after is None else max(0, min(reply.cut_after, len(events)))
        for index, (data, tally) in enumerate(events[:limit]):
            if reply.gate is not None and index == reply.gate_after and not _wait(exchange, reply.gate):
                return
            if index and not exchange.sleep(reply.chunk_delay_s):
                exchange.abort()
                return
            if not self._send_counted(tally, partial(exchange.write_sse, data)):
                return
        if reply.cut_after is not None:
            exchange.abort()
            return
        exchange.end_stream()


def _wait(exchange: Exchange, gate: threading.Event) -> bool:
    while not gate.wait(0.05):
        if not exchange.sleep(0):
            exchange.abort()
            return False
    return True


def _estimate(source: object) -> int:
    return 8 + len(json.dumps(source, default=str)) // 4


def _make_call(kind: _Kind, body: dict[str, Any], reply: MistralReply) -> _Call:
    text = DEFAULT_TEXT if reply.text is None else reply.text
    requested = body.get("model")
    model = reply.model or (requested if isinstance(requested, str) and requested else DEFAULT_AGENT_MODEL)
    if reply.prompt_tokens is not None:
        prompt = reply.prompt_tokens
    else:
        source = body.get("input") if kind == "embeddings" else body.get("messages") or body.get("prompt")
        prompt = max(_estimate(source or ""), reply.cached_tokens)
    if kind == "embeddings":
        completion = 0
    elif reply.completion_tokens is not None:
        completion = reply.completion_tokens
    else:
        completion = max(1, len(text.split()))
    return _Call(
        kind=kind,
        body=body,
        model=model,
        reply=reply,
        text=text,
        prompt=prompt,
        completion=completion,
        id=reply.id or secrets.token_hex(16),
        created=int(time.time()),
    )


def _usage(call: _Call) -> tuple[dict[str, Any], _Tally] | None:
    reply = call.reply
    if reply.omit_usage:
        return None
    if reply.raw_usage is not None:
        return reply.raw_usage, _tally_from_raw(reply.raw_usage)
    usage: dict[str, Any] = {
        "prompt_tokens": call.prompt,
        "total_tokens": call.prompt + call.completion,
        "completion_tokens": call.completion,
    }
    if reply.cached_tokens:
        if reply.cache_field == "num_cached_tokens":
            usage["num_cached_tokens"] = reply.cached_tokens
        else:
            usage["prompt_tokens_details"] = {"cached_tokens": reply.cached_tokens}
    return usage, _Tally(call.prompt, call.completion, reply.cached_tokens)


def _json_body(call: _Call) -> tuple[dict[str, Any], _Tally | None]:
    usage = _usage(call)
    if call.kind == "embeddings":
        inputs = call.body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        size = call.body.get("output_dimension")
        dimensions = size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None
        size = dimensions or DEFAULT_EMBEDDING_DIMENSIONS
        data = [
            {"object": "embedding", "embedding": _embedding(item, size), "index": index}
            for index, item in enumerate(items)
        ]
        payload: dict[str, Any] = {"id": call.id, "object": "list", "data": data, "model": call.model}
    else:
        message = {"role": "assistant", "tool_calls": None, "content": call.text}
        choice = {"index": 0, "message": message, "finish_reason": call.reply.finish_reason}
        payload = {"id": call.id, "object": "chat.completion", "model": call.model, "created": call.created}
        payload["choices"] = [choice]
    if usage is None:
        return payload, None
    payload["usage"] = usage[0]
    return payload, usage[1]


def _stream_events(call: _Call) -> list[tuple[str, _Tally | None]]:
    """The SSE ``data`` payloads of a stream, each with the usage it carries."""
    head = {"id": call.id, "object": "chat.completion.chunk", "created": call.created, "model": call.model}
    opening = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    events: list[tuple[str, _Tally | None]] = [(_compact({**head, "choices": [opening]}), None)]
    pieces = list(iter_pieces(call.text, call.reply.chunks))
    usage = _usage(call)
    for position, piece in enumerate(pieces):
        last = position == len(pieces) - 1
        choice = {
            "index": 0,
            "delta": {"content": piece},
            "finish_reason": call.reply.finish_reason if last else None,
        }
        chunk: dict[str, Any] = {**head, "choices": [choice]}
        tally = None
        if last and usage is not None:
            chunk["usage"], tally = usage
        events.append((_compact(chunk), tally))
    events.append(("[DONE]", None))
    return events
