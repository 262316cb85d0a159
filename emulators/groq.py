"""Loopback emulator of Groq's chat completions API (``POST /openai/v1/chat/completions``).

Serves JSON and server-sent event streams in the shapes Groq sends, and ``GET /openai/v1/models``.
Replies are scripted with :class:`GroqReply`; with nothing scripted a deterministic default answer
is sent.

It is not an extension of the OpenAI emulator, because Groq's wire format differs exactly where
usage is read: its usage object carries timings (``queue_time``, ``prompt_time``,
``completion_time``, ``total_time``) and only the details Groq reports; a stream carries its usage
in the last content chunk (the one with the finish reason) under ``x_groq.usage``, always, and
repeats it there as ``usage`` when the request sets ``stream_options.include_usage``, rather than
in an extra chunk with empty ``choices``; the first and last chunks carry ``x_groq`` with Groq's
request id; errors carry Groq's types (a rate limit is ``"type": "tokens"``) and its rate-limit
headers.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any

from ._server import Exchange, iter_pieces
from ._server import compact_json as _compact
from .openai import ChatUsageEmulator, ServedTotals, _Tally, _tally_from_raw

__all__ = ["GroqEmulator", "GroqReply", "GroqServedTotals"]

DEFAULT_TEXT = "This is a deterministic reply from the Groq emulator."
SYSTEM_FINGERPRINT = "fp_c06d5113ec"
CHAT_PATH = "/openai/v1/chat/completions"
MODELS_PATH = "/openai/v1/models"
ORGANIZATION = "org_01emulator0000000000000000"
RETRY_AFTER_S = 3
# Deterministic timings: Groq measures these on its side; only their presence matters here.
QUEUE_TIME_S = 0.0125
PROMPT_TOKENS_PER_S = 100_000
COMPLETION_TOKENS_PER_S = 500

_MODELS: tuple[tuple[str, str, int, int], ...] = (
    ("llama-3.3-70b-versatile", "Meta", 1733447754, 131072),
    ("llama-3.1-8b-instant", "Meta", 1693721698, 131072),
    ("openai/gpt-oss-120b", "OpenAI", 1754408224, 131072),
    ("openai/gpt-oss-20b", "OpenAI", 1754407957, 131072),
    ("moonshotai/kimi-k2-instruct-0905", "Moonshot AI", 1757046093, 262144),
)
_RATE_LIMIT = (
    "Rate limit reached for model `{model}` in organization `" + ORGANIZATION + "` service tier "
    "`on_demand` on tokens per minute (TPM): Limit 6000, Used 5800, Requested 500. Please try again "
    f"in {RETRY_AFTER_S}s. Need more tokens? Upgrade to Dev Tier today at "
    "https://console.groq.com/settings/billing"
)
_TOO_LARGE = (
    "Request too large for model `{model}` in organization `" + ORGANIZATION + "` service tier "
    "`on_demand` on tokens per minute (TPM): Limit 6000, Requested 9000, please reduce your message "
    "size and try again. Need more tokens? Upgrade to Dev Tier today at "
    "https://console.groq.com/settings/billing"
)
# (type, code, message) per status; the message may name the model.
_ERROR_DEFAULTS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "'messages' : minimum number of items is 1"),
    401: ("invalid_request_error", "invalid_api_key", "Invalid API Key"),
    403: ("permission_error", "permission_denied", "Access denied. Please check your network settings."),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model `{model}` does not exist or you do not have access to it.",
    ),
    413: ("tokens", "rate_limit_exceeded", _TOO_LARGE),
    422: ("invalid_request_error", None, "The request could not be processed."),
    429: ("tokens", "rate_limit_exceeded", _RATE_LIMIT),
    500: ("internal_server_error", None, "Internal Server Error"),
    502: ("internal_server_error", None, "Bad Gateway"),
    503: ("internal_server_error", "service_unavailable", "Service Unavailable"),
}


@dataclass
class GroqReply:
    """One scripted answer. Every field has a default, so ``GroqReply()`` is a plain successful reply.

    ``status`` >= 400 sends Groq's error body (``error_type``, ``error_code`` and ``message`` default
    per status; a 429 also sends ``retry-after``). ``model`` defaults to the request's model.
    ``prompt_tokens`` defaults to an estimate from the request's messages; ``completion_tokens`` to
    the text's word count plus ``reasoning_tokens``. ``cached_tokens`` adds
    ``prompt_tokens_details`` and ``reasoning_tokens`` adds ``completion_tokens_details`` (Groq
    reports a detail only where it applies); ``raw_usage`` replaces the usage object verbatim;
    ``omit_usage`` leaves it out everywhere.

    Streams split ``text`` into ``chunks`` content chunks between Groq's opening chunk (the role)
    and its closing chunk (the finish reason and ``x_groq.usage``). ``usage_in_stream`` ``None``
    repeats the usage as the closing chunk's ``usage`` when the request sets
    ``stream_options.include_usage``; ``True``/``False`` force it. ``cut_after`` drops the connection
    after that many SSE events (``data: [DONE]`` included) without the terminating chunk.
    ``delay_s`` is waited before answering, ``chunk_delay_s`` between stream events.
    """

    status: int = 200
    text: str | None = None
    model: str | None = None
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    omit_usage: bool = False
    raw_usage: dict[str, Any] | None = None
    chunks: int = 3
    cut_after: int | None = None
    usage_in_stream: bool | None = None
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    id: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    message: str | None = None


class GroqServedTotals(ServedTotals):
    """Usage the emulator put on the wire, summed over the responses it sent.

    ``requests`` counts chat completion replies sent (errors included). Tokens are added once the
    usage-bearing body or chunk has been written (a stream's usage is counted once, though it may
    appear twice in its closing chunk), so a stream cut before its closing chunk adds nothing. For
    ``raw_usage`` only well-formed non-negative integers are summed.
    """


@dataclass(frozen=True)
class _Call:
    body: dict[str, Any]
    model: str
    reply: GroqReply
    text: str
    prompt: int
    completion: int
    created: int
    completion_id: str
    request_id: str

    @property
    def usage_repeated_in_stream(self) -> bool:
        if self.reply.usage_in_stream is not None:
            return self.reply.usage_in_stream
        options = self.body.get("stream_options")
        return isinstance(options, dict) and options.get("include_usage") is True


def _error_body(message: str, type_: str, code: str | None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": type_}
    if code is not None:
        error["code"] = code
    return {"error": error}


def _rate_limit_headers() -> dict[str, str]:
    return {
        "x-ratelimit-limit-requests": "1000",
        "x-ratelimit-limit-tokens": "6000",
        "x-ratelimit-remaining-requests": "999",
        "x-ratelimit-remaining-tokens": "5500",
        "x-ratelimit-reset-requests": "1m26.4s",
        "x-ratelimit-reset-tokens": "5s",
    }


class GroqEmulator(ChatUsageEmulator[GroqReply, GroqServedTotals]):
    """Groq-compatible HTTP server on ``127.0.0.1`` for tests and demos.

    ``base_url`` is what ``Groq(base_url=...)`` takes (the SDK adds ``/openai/v1/...``). Each
    well-formed chat completion request consumes one :class:`GroqReply` pushed with :meth:`push`, or
    a default ``GroqReply()`` when none is queued; ``GET /openai/v1/models``, unknown paths and
    unparseable bodies are answered without consuming one.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(GroqServedTotals, host, port)

    @property
    def base_url(self) -> str:
        return self.url

    def handle(self, exchange: Exchange) -> None:
        request = exchange.request
        path = request.path.rstrip("/") or "/"
        request_id = f"req_{uuid.uuid4().hex[:26]}"
        headers = {"x-request-id": request_id, "x-groq-region": "emulator", **_rate_limit_headers()}
        if request.method == "GET" and path == MODELS_PATH:
            data = [
                {
                    "id": name,
                    "object": "model",
                    "created": created,
                    "owned_by": owner,
                    "active": True,
                    "context_window": window,
                    "public_apps": None,
                }
                for name, owner, created, window in _MODELS
            ]
            exchange.send_json(200, {"object": "list", "data": data}, headers)
            return
        if request.method != "POST" or path != CHAT_PATH:
            message = f"Unknown request URL: {request.method} {request.path}. Please check the URL for typos."
            exchange.send_json(404, _error_body(message, "invalid_request_error", "unknown_url"), headers)
            return
        body = request.json
        if not isinstance(body, dict):
            message = "We could not parse the JSON body of your request."
            exchange.send_json(400, _error_body(message, "invalid_request_error", None), headers)
            return
        model = body.get("model")
        if not isinstance(model, str):
            message = "'model' : property 'model' is missing"
            exchange.send_json(400, _error_body(message, "invalid_request_error", None), headers)
            return
        reply = self._replies.pop() or GroqReply()
        self._answer(exchange, body, model, reply, request_id, headers)

    def _answer(
        self,
        exchange: Exchange,
        body: dict[str, Any],
        model: str,
        reply: GroqReply,
        request_id: str,
        headers: dict[str, str],
    ) -> None:
        if not exchange.sleep(reply.delay_s):
            exchange.abort()
            return
        self._add_request()
        if reply.status >= 400:
            type_, code, message = _ERROR_DEFAULTS.get(
                reply.status,
                ("internal_server_error", None, "Internal Server Error")
                if reply.status >= 500
                else ("invalid_request_error", None, "The request was rejected."),
            )
            if reply.status == 429:
                headers = {**headers, "retry-after": str(RETRY_AFTER_S), "x-ratelimit-remaining-tokens": "0"}
            error = _error_body(
                reply.message if reply.message is not None else message.format(model=model),
                reply.error_type or type_,
                reply.error_code if reply.error_code is not None else code,
            )
            exchange.send_json(reply.status, error, headers)
            return
        call = _make_call(body, model, reply, request_id)
        if body.get("stream") is True:
            self._stream(exchange, _stream_events(call), reply, headers)
            return
        payload, tally = _json_body(call)
        self._send_counted(tally, lambda: exchange.send_json(reply.status, payload, headers, indent=None))

    def _stream(
        self,
        exchange: Exchange,
        events: list[tuple[str, _Tally | None]],
        reply: GroqReply,
        headers: dict[str, str],
    ) -> None:
        if not exchange.start_stream(reply.status, headers=headers):
            return
        limit = len(events) if reply.cut_after is None else max(0, min(reply.cut_after, len(events)))
        for index, (data, tally) in enumerate(events[:limit]):
            if index and not exchange.sleep(reply.chunk_delay_s):
                exchange.abort()
                return
            if not self._send_counted(tally, partial(exchange.write_sse, data)):
                return
        if reply.cut_after is not None:
            exchange.abort()
            return
        exchange.end_stream()


def _make_call(body: dict[str, Any], model: str, reply: GroqReply, request_id: str) -> _Call:
    text = DEFAULT_TEXT if reply.text is None else reply.text
    if reply.prompt_tokens is not None:
        prompt = reply.prompt_tokens
    else:
        prompt = max(8 + len(json.dumps(body.get("messages") or "")) // 4, reply.cached_tokens)
    if reply.completion_tokens is not None:
        completion = reply.completion_tokens
    else:
        completion = max(1, len(text.split())) + reply.reasoning_tokens
    return _Call(
        body=body,
        model=reply.model or model,
        reply=reply,
        text=text,
        prompt=prompt,
        completion=completion,
        created=int(time.time()),
        completion_id=reply.id or f"chatcmpl-{uuid.uuid4()}",
        request_id=request_id,
    )


def _usage(call: _Call) -> tuple[object, _Tally] | None:
    reply = call.reply
    if reply.omit_usage:
        return None
    if reply.raw_usage is not None:
        return reply.raw_usage, _tally_from_raw(reply.raw_usage)
    prompt_time = round(call.prompt / PROMPT_TOKENS_PER_S, 9)
    completion_time = round(call.completion / COMPLETION_TOKENS_PER_S, 9)
    usage: dict[str, Any] = {
        "queue_time": QUEUE_TIME_S,
        "prompt_tokens": call.prompt,
        "prompt_time": prompt_time,
        "completion_tokens": call.completion,
        "completion_time": completion_time,
        "total_tokens": call.prompt + call.completion,
        "total_time": round(prompt_time + completion_time, 9),
    }
    if reply.cached_tokens:
        usage["prompt_tokens_details"] = {"cached_tokens": reply.cached_tokens}
    if reply.reasoning_tokens:
        usage["completion_tokens_details"] = {"reasoning_tokens": reply.reasoning_tokens}
    return usage, _Tally(call.prompt, call.completion, reply.cached_tokens, reply.reasoning_tokens)


def _json_body(call: _Call) -> tuple[dict[str, Any], _Tally | None]:
    usage = _usage(call)
    payload: dict[str, Any] = {
        "id": call.completion_id,
        "object": "chat.completion",
        "created": call.created,
        "model": call.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": call.text},
                "logprobs": None,
                "finish_reason": call.reply.finish_reason,
            }
        ],
    }
    if usage is not None:
        payload["usage"] = usage[0]
    payload["usage_breakdown"] = None
    payload["system_fingerprint"] = SYSTEM_FINGERPRINT
    payload["x_groq"] = {"id": call.request_id, "seed": _seed(call)}
    payload["service_tier"] = "on_demand"
    return payload, (usage[1] if usage is not None else None)


def _seed(call: _Call) -> int:
    return int.from_bytes(call.request_id.encode()[-4:], "big") & 0x7FFFFFFF


def _stream_events(call: _Call) -> list[tuple[str, _Tally | None]]:
    """The opening chunk (role and ``x_groq.id``), content chunks, the closing chunk, ``[DONE]``."""
    head = {
        "id": call.completion_id,
        "object": "chat.completion.chunk",
        "created": call.created,
        "model": call.model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }

    def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _compact({**head, "choices": [choice], **extra})

    opening = chunk(
        {"role": "assistant", "content": ""}, None, x_groq={"id": call.request_id, "seed": _seed(call)}
    )
    events: list[tuple[str, _Tally | None]] = [(opening, None)]
    events += [(chunk({"content": piece}, None), None) for piece in iter_pieces(call.text, call.reply.chunks)]
    usage = _usage(call)
    x_groq: dict[str, Any] = {"id": call.request_id}
    closing: dict[str, Any] = {"x_groq": x_groq}
    if usage is not None:
        x_groq["usage"] = usage[0]
        if call.usage_repeated_in_stream:
            closing["usage"] = usage[0]
    events.append((chunk({}, call.reply.finish_reason, **closing), usage[1] if usage is not None else None))
    events.append(("[DONE]", None))
    return events
