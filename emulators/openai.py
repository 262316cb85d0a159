"""Loopback emulator of the OpenAI HTTP API.

Serves chat completions, responses, embeddings and legacy completions (JSON and server-sent
event streams) in the wire shapes OpenAI documents, under the OpenAI paths (``/v1/...``) and the
Azure OpenAI paths (``/openai/deployments/{deployment}/...``, ``/openai/v1/...``, ``/openai/...``).
Replies are scripted with :class:`Reply`; with nothing scripted a deterministic default answer is sent.
``stream_options`` makes it a server that accepts ``stream_options`` (OpenAI), ignores it (no usage
chunk however asked) or rejects any request carrying it, as strict OpenAI-compatible servers do.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import string
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, Literal, TypeVar

from ._server import Exchange, RecordedRequest, ScriptedEmulator, iter_pieces
from ._server import compact_json as _compact
from ._server import raw_count as _count

__all__ = ["OpenAIEmulator", "RecordedRequest", "Reply", "ServedTotals", "StreamOptionsMode"]

DEFAULT_TEXT = "This is a deterministic reply from the OpenAI emulator."
DEFAULT_EMBEDDING_DIMENSIONS = 8
SYSTEM_FINGERPRINT = "fp_e5d4c3b2a1"

_Kind = Literal["chat", "responses", "embeddings", "completions"]
StreamOptionsMode = Literal["accept", "ignore", "reject", "reject_422"]
STREAM_OPTIONS_MODES: tuple[StreamOptionsMode, ...] = ("accept", "ignore", "reject", "reject_422")
_ROUTES: dict[str, _Kind] = {
    "/chat/completions": "chat",
    "/responses": "responses",
    "/embeddings": "embeddings",
    "/completions": "completions",
}
_MODELS: tuple[tuple[str, int], ...] = (
    ("gpt-4o-mini", 1721172741),
    ("gpt-4o", 1715367049),
    ("gpt-4.1", 1744316542),
    ("o4-mini", 1744225351),
    ("gpt-3.5-turbo-instruct", 1692901427),
    ("text-embedding-3-small", 1705948997),
)
# (type, code, message) per status; the message may name the model.
_ERROR_DEFAULTS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request to the OpenAI emulator."),
    401: (
        "authentication_error",
        "invalid_api_key",
        "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
    ),
    403: ("permission_error", "permission_denied", "You are not allowed to access this resource."),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model `{model}` does not exist or you do not have access to it.",
    ),
    409: (
        "invalid_request_error",
        "conflict",
        "The request conflicts with the current state of the resource.",
    ),
    422: ("invalid_request_error", None, "The request could not be processed."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for {model} on requests per min (RPM): Limit 3, Used 3, Requested 1.",
    ),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", "bad_gateway", "Bad gateway."),
    503: ("server_error", "service_unavailable", "The server is overloaded or not ready yet."),
    504: ("server_error", "timeout", "The server timed out while processing your request."),
}


@dataclass
class Reply:
    """One scripted answer. Every field has a default, so ``Reply()`` is a plain successful reply.

    ``status`` >= 400 sends OpenAI's error body (``error_type``, ``error_code`` and ``message``
    default per status) and no ``Retry-After``. ``model`` defaults to the request's model (the
    Azure deployment when the body has none). ``prompt_tokens`` defaults to an estimate from the
    request's messages/input/prompt; ``completion_tokens`` to the text's word count plus
    ``reasoning_tokens`` and ``audio_completion_tokens``. ``cost`` adds ``usage.cost`` as OpenRouter
    does; ``raw_usage`` replaces the usage object verbatim; ``omit_usage`` leaves it out everywhere.

    Streams split ``text`` into ``chunks`` content events. ``usage_in_stream`` ``None`` follows the
    request (``stream_options.include_usage`` for chat and legacy completions; always for
    responses), ``True``/``False`` force it. ``cut_after`` drops the connection after that many SSE
    events (``data: [DONE]`` included) without the terminating chunk. ``delay_s`` is waited before
    answering, ``chunk_delay_s`` between stream events. ``created`` fixes the ``created`` timestamp
    (default: the time of the request).
    """

    status: int = 200
    text: str | None = None
    model: str | None = None
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    audio_prompt_tokens: int = 0
    audio_completion_tokens: int = 0
    cost: float | None = None
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
    created: int | None = None


@dataclass
class ServedTotals:
    """Usage the emulator put on the wire, summed over the responses it sent.

    ``requests`` counts replies sent for the model endpoints (errors included). Tokens are added
    only once the usage-bearing body or stream event has been written, so a stream cut before its
    usage event adds nothing. For ``raw_usage`` only well-formed non-negative integers are summed.
    """

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True)
class _Tally:
    prompt: int = 0
    completion: int = 0
    cached: int = 0
    reasoning: int = 0


@dataclass(frozen=True)
class _Event:
    data: str
    event: str | None = None
    tally: _Tally | None = None


@dataclass(frozen=True)
class _Call:
    kind: _Kind
    body: dict[str, Any]
    model: str
    reply: Reply
    text: str
    prompt: int
    completion: int
    created: int

    @property
    def stream_usage(self) -> bool:
        if self.reply.omit_usage:
            return False
        if self.reply.usage_in_stream is not None:
            return self.reply.usage_in_stream
        if self.kind == "responses":
            return True
        options = self.body.get("stream_options")
        return isinstance(options, dict) and options.get("include_usage") is True


def _alnum(length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _tally_from_raw(raw: object) -> _Tally:
    if not isinstance(raw, Mapping):
        return _Tally()
    prompt_details = raw.get("prompt_tokens_details", raw.get("input_tokens_details"))
    completion_details = raw.get("completion_tokens_details", raw.get("output_tokens_details"))
    return _Tally(
        prompt=_count(raw.get("prompt_tokens", raw.get("input_tokens"))),
        completion=_count(raw.get("completion_tokens", raw.get("output_tokens"))),
        cached=_count(prompt_details.get("cached_tokens")) if isinstance(prompt_details, Mapping) else 0,
        reasoning=(
            _count(completion_details.get("reasoning_tokens"))
            if isinstance(completion_details, Mapping)
            else 0
        ),
    )


def _route(path: str) -> tuple[str, str | None]:
    """Map any accepted path onto its OpenAI resource path, plus the Azure deployment if any."""
    path = path.rstrip("/") or "/"
    if path.startswith("/openai/deployments/"):
        deployment, _, rest = path[len("/openai/deployments/") :].partition("/")
        return "/" + rest, deployment or None
    for prefix in ("/openai/v1/", "/openai/", "/v1/"):
        if path.startswith(prefix):
            return path[len(prefix) - 1 :], None
    return path, None


def _error_body(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _stream_options_refusal(mode: StreamOptionsMode, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """What a strict server answers a body carrying ``stream_options``.

    ``reject``: 400 in OpenAI's error shape, as gateways that validate against a parameter list send
    it. ``reject_422``: 422 with a Pydantic ``extra_forbidden`` detail, as FastAPI servers whose
    request models forbid extra fields send it.
    """
    if mode == "reject":
        message = "Unknown parameter: 'stream_options'."
        return 400, _error_body(message, "invalid_request_error", "unknown_parameter", "stream_options")
    detail = {
        "type": "extra_forbidden",
        "loc": ["body", "stream_options"],
        "msg": "Extra inputs are not permitted",
        "input": body["stream_options"],
    }
    return 422, {"detail": [detail]}


_ReplyT = TypeVar("_ReplyT")
_TotalsT = TypeVar("_TotalsT", bound=ServedTotals)


class ChatUsageEmulator(ScriptedEmulator[_ReplyT, _TotalsT], Generic[_ReplyT, _TotalsT]):
    """The served totals of an emulator whose usage has the chat completions shape (OpenAI, Groq)."""

    def _add_request(self) -> None:
        with self._served_lock:
            self._served.requests += 1

    def _count_usage(self, tally: _Tally, sign: int) -> None:
        with self._served_lock:
            self._served.prompt_tokens += sign * tally.prompt
            self._served.completion_tokens += sign * tally.completion
            self._served.cached_tokens += sign * tally.cached
            self._served.reasoning_tokens += sign * tally.reasoning


class OpenAIEmulator(ChatUsageEmulator[Reply, ServedTotals]):
    """OpenAI-compatible HTTP server on ``127.0.0.1`` for tests and demos.

    ``base_url`` is what ``OpenAI(base_url=...)`` takes; ``azure_endpoint`` is what
    ``AzureOpenAI(azure_endpoint=...)`` takes. Each well-formed request to a model endpoint (chat,
    responses, embeddings, completions) consumes one :class:`Reply` pushed with :meth:`push`, or a
    default ``Reply()`` when none is queued; ``GET /models``, unknown paths and unparseable bodies
    are answered without consuming one.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, stream_options: StreamOptionsMode = "accept"
    ) -> None:
        if stream_options not in STREAM_OPTIONS_MODES:
            raise ValueError(f"stream_options must be one of {STREAM_OPTIONS_MODES}, not {stream_options!r}")
        super().__init__(ServedTotals, host, port)
        self.stream_options: StreamOptionsMode = stream_options

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def azure_endpoint(self) -> str:
        return self.url

    def handle(self, exchange: Exchange) -> None:
        request = exchange.request
        resource, deployment = _route(request.path)
        headers = {"x-request-id": f"req_{secrets.token_hex(16)}", "openai-version": "2020-10-01"}
        if request.method == "GET" and resource == "/models":
            data = [
                {"id": name, "object": "model", "created": ts, "owned_by": "system"} for name, ts in _MODELS
            ]
            exchange.send_json(200, {"object": "list", "data": data}, headers)
            return
        if request.method == "GET" and resource.startswith("/models/"):
            name = resource[len("/models/") :]
            created = dict(_MODELS).get(name, 1700000000)
            exchange.send_json(
                200, {"id": name, "object": "model", "created": created, "owned_by": "system"}, headers
            )
            return
        kind = _ROUTES.get(resource) if request.method == "POST" else None
        if kind is None:
            message = f"Invalid URL ({request.method} {request.path})"
            exchange.send_json(404, _error_body(message, "invalid_request_error", None), headers)
            return
        body = request.json
        if not isinstance(body, dict):
            message = (
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
                "your HTTP library correctly. The OpenAI API expects a JSON payload.)"
            )
            exchange.send_json(400, _error_body(message, "invalid_request_error", None), headers)
            return
        model = body.get("model") or deployment
        if not isinstance(model, str):
            message = "you must provide a model parameter"
            exchange.send_json(400, _error_body(message, "invalid_request_error", None), headers)
            return
        mode = self.stream_options
        if mode != "accept" and "stream_options" in body:
            if mode == "ignore":
                body = {key: value for key, value in body.items() if key != "stream_options"}
            else:  # refused before any reply is consumed, as a request validator does
                self._add_request()
                exchange.send_json(*_stream_options_refusal(mode, body), headers)
                return
        self._answer(exchange, kind, body, model, self._replies.pop() or Reply(), headers)

    def _answer(
        self,
        exchange: Exchange,
        kind: _Kind,
        body: dict[str, Any],
        model: str,
        reply: Reply,
        headers: dict[str, str],
    ) -> None:
        if not exchange.sleep(reply.delay_s):
            exchange.abort()
            return
        headers["openai-processing-ms"] = str(int(reply.delay_s * 1000))
        self._add_request()
        if reply.status >= 400:
            type_, code, message = _ERROR_DEFAULTS.get(
                reply.status,
                ("server_error", None, "The server had an error processing your request.")
                if reply.status >= 500
                else ("invalid_request_error", None, "The request was rejected."),
            )
            body_out = _error_body(
                reply.message if reply.message is not None else message.format(model=model),
                reply.error_type or type_,
                reply.error_code if reply.error_code is not None else code,
            )
            exchange.send_json(reply.status, body_out, headers)
            return
        call = _make_call(kind, body, model, reply)
        if body.get("stream") is True and kind != "embeddings":
            self._stream(exchange, _stream_events(call), reply, headers)
            return
        payload, tally = _json_body(call)
        self._send_counted(tally, lambda: exchange.send_json(reply.status, payload, headers))

    def _stream(
        self, exchange: Exchange, events: list[_Event], reply: Reply, headers: dict[str, str]
    ) -> None:
        if not exchange.start_stream(reply.status, headers=headers):
            return
        limit = len(events) if reply.cut_after is None else max(0, min(reply.cut_after, len(events)))
        for index, event in enumerate(events[:limit]):
            if index and not exchange.sleep(reply.chunk_delay_s):
                exchange.abort()
                return
            if not self._send_counted(event.tally, partial(exchange.write_sse, event.data, event.event)):
                return
        if reply.cut_after is not None:
            exchange.abort()
            return
        exchange.end_stream()


def _make_call(kind: _Kind, body: dict[str, Any], model: str, reply: Reply) -> _Call:
    text = DEFAULT_TEXT if reply.text is None else reply.text
    if reply.prompt_tokens is not None:
        prompt = reply.prompt_tokens
    else:
        source = body.get("messages") or body.get("input") or body.get("prompt") or ""
        estimate = 8 + len(json.dumps(source)) // 4
        prompt = max(estimate, reply.cached_tokens + reply.audio_prompt_tokens)
    if kind == "embeddings":
        completion = 0
    elif reply.completion_tokens is not None:
        completion = reply.completion_tokens
    else:
        completion = max(1, len(text.split())) + reply.reasoning_tokens + reply.audio_completion_tokens
    return _Call(
        kind=kind,
        body=body,
        model=reply.model or model,
        reply=reply,
        text=text,
        prompt=prompt,
        completion=completion,
        created=int(time.time()) if reply.created is None else reply.created,
    )


def _usage(call: _Call) -> tuple[object, _Tally] | None:
    reply = call.reply
    if reply.omit_usage:
        return None
    if reply.raw_usage is not None:
        return reply.raw_usage, _tally_from_raw(reply.raw_usage)
    total = call.prompt + call.completion
    tally = _Tally(call.prompt, call.completion, reply.cached_tokens, reply.reasoning_tokens)
    usage: dict[str, Any]
    if call.kind == "embeddings":
        usage = {"prompt_tokens": call.prompt, "total_tokens": call.prompt}
        tally = _Tally(prompt=call.prompt)
    elif call.kind == "responses":
        usage = {
            "input_tokens": call.prompt,
            "input_tokens_details": {"cached_tokens": reply.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": call.completion,
            "output_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
            "total_tokens": total,
        }
    else:
        usage = {"prompt_tokens": call.prompt, "completion_tokens": call.completion, "total_tokens": total}
        detailed = (
            reply.cached_tokens
            or reply.audio_prompt_tokens
            or reply.reasoning_tokens
            or reply.audio_completion_tokens
        )
        # Chat completions always itemise usage; legacy completions only do when there is detail to give.
        if call.kind == "chat" or detailed:
            usage["prompt_tokens_details"] = {
                "cached_tokens": reply.cached_tokens,
                "audio_tokens": reply.audio_prompt_tokens,
            }
            usage["completion_tokens_details"] = {
                "reasoning_tokens": reply.reasoning_tokens,
                "audio_tokens": reply.audio_completion_tokens,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            }
    if reply.cost is not None:
        usage["cost"] = reply.cost
    return usage, tally


def _json_body(call: _Call) -> tuple[dict[str, Any], _Tally | None]:
    usage = _usage(call)
    payload: dict[str, Any]
    if call.kind == "chat":
        payload = {
            "id": call.reply.id or f"chatcmpl-{_alnum(29)}",
            "object": "chat.completion",
            "created": call.created,
            "model": call.model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": call.text,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": call.reply.finish_reason,
                }
            ],
        }
        if usage is not None:
            payload["usage"] = usage[0]
        payload["service_tier"] = "default"
        payload["system_fingerprint"] = SYSTEM_FINGERPRINT
    elif call.kind == "completions":
        payload = {
            "id": call.reply.id or f"cmpl-{_alnum(29)}",
            "object": "text_completion",
            "created": call.created,
            "model": call.model,
            "choices": [
                {"text": call.text, "index": 0, "logprobs": None, "finish_reason": call.reply.finish_reason}
            ],
        }
        if usage is not None:
            payload["usage"] = usage[0]
    elif call.kind == "responses":
        response_id = call.reply.id or f"resp_{secrets.token_hex(24)}"
        message_id = f"msg_{secrets.token_hex(24)}"
        payload = _response_object(
            call, response_id, [_message_item(call, message_id, final=True)], usage, True
        )
    else:
        payload = _embeddings_body(call, usage)
    return payload, (usage[1] if usage is not None else None)


def _embeddings_body(call: _Call, usage: tuple[object, _Tally] | None) -> dict[str, Any]:
    raw_input = call.body.get("input", "")
    items: list[Any]
    if isinstance(raw_input, list) and raw_input and not all(isinstance(v, int) for v in raw_input):
        items = raw_input
    elif isinstance(raw_input, list) and not raw_input:
        items = []
    else:
        items = [raw_input]
    dimensions = call.body.get("dimensions")
    size = dimensions if isinstance(dimensions, int) and dimensions > 0 else DEFAULT_EMBEDDING_DIMENSIONS
    as_base64 = call.body.get("encoding_format") == "base64"
    data = []
    for index, item in enumerate(items):
        packed = _embedding_bytes(_compact(item), size)
        vector: object
        if as_base64:
            vector = base64.b64encode(packed).decode("ascii")
        else:
            vector = list(struct.unpack(f"<{size}f", packed))
        data.append({"object": "embedding", "index": index, "embedding": vector})
    payload: dict[str, Any] = {"object": "list", "data": data, "model": call.model}
    if usage is not None:
        payload["usage"] = usage[0]
    return payload


def _embedding_bytes(seed: str, size: int) -> bytes:
    """A deterministic unit vector for ``seed`` as little-endian float32."""
    stream = b""
    counter = 0
    while len(stream) < size:
        stream += hashlib.sha256(f"{counter}:{seed}".encode()).digest()
        counter += 1
    values = [byte / 127.5 - 1.0 for byte in stream[:size]]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return struct.pack(f"<{size}f", *(v / norm for v in values))


def _message_item(call: _Call, message_id: str, *, final: bool) -> dict[str, Any]:
    incomplete = call.reply.finish_reason in ("length", "content_filter")
    status = ("incomplete" if incomplete else "completed") if final else "in_progress"
    content = [_output_text(call.text)] if final else []
    return {"id": message_id, "type": "message", "status": status, "content": content, "role": "assistant"}


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _response_object(
    call: _Call,
    response_id: str,
    output: list[dict[str, Any]],
    usage: tuple[object, _Tally] | None,
    final: bool,
) -> dict[str, Any]:
    body = call.body
    incomplete_reason = {"length": "max_output_tokens", "content_filter": "content_filter"}.get(
        call.reply.finish_reason
    )
    status = ("incomplete" if incomplete_reason else "completed") if final else "in_progress"
    payload: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": call.created,
        "status": status,
        "background": False,
        "completed_at": call.created if status == "completed" else None,
        "error": None,
        "incomplete_details": {"reason": incomplete_reason} if final and incomplete_reason else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "model": call.model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools", []),
        "top_logprobs": body.get("top_logprobs", 0),
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": None,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }
    if final:
        if usage is None:
            del payload["usage"]
        else:
            payload["usage"] = usage[0]
    return payload


def _stream_events(call: _Call) -> list[_Event]:
    if call.kind == "responses":
        return _responses_events(call)
    return _completion_events(call)


def _completion_events(call: _Call) -> list[_Event]:
    """Chat and legacy completion chunks: content pieces, then the optional usage chunk, then [DONE]."""
    chat = call.kind == "chat"
    reply = call.reply
    if chat:
        head: dict[str, Any] = {
            "id": reply.id or f"chatcmpl-{_alnum(29)}",
            "object": "chat.completion.chunk",
            "created": call.created,
            "model": call.model,
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
    else:
        head = {
            "id": reply.id or f"cmpl-{_alnum(29)}",
            "object": "text_completion",
            "created": call.created,
            "model": call.model,
        }
    with_usage = call.stream_usage
    usage = _usage(call) if with_usage else None
    pieces = list(iter_pieces(call.text, reply.chunks))
    last = len(pieces) - 1
    events: list[_Event] = []
    for index, piece in enumerate(pieces):
        finish = reply.finish_reason if index == last else None
        choice: dict[str, Any]
        if chat:
            delta: dict[str, Any] = (
                {"role": "assistant", "content": piece, "refusal": None} if index == 0 else {"content": piece}
            )
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"text": piece, "index": 0, "logprobs": None, "finish_reason": finish}
        chunk = {**head, "choices": [choice]}
        # OpenAI only carries the usage key (null until the last chunk) when usage was asked for.
        if with_usage:
            chunk["usage"] = None
        events.append(_Event(_compact(chunk)))
    if usage is not None:
        events.append(_Event(_compact({**head, "choices": [], "usage": usage[0]}), tally=usage[1]))
    events.append(_Event("[DONE]"))
    return events


def _responses_events(call: _Call) -> list[_Event]:
    reply = call.reply
    response_id = reply.id or f"resp_{secrets.token_hex(24)}"
    message_id = f"msg_{secrets.token_hex(24)}"
    events: list[_Event] = []

    def emit(type_: str, fields: dict[str, Any], tally: _Tally | None = None) -> None:
        payload = {"type": type_, "sequence_number": len(events), **fields}
        events.append(_Event(_compact(payload), event=type_, tally=tally))

    pending = _response_object(call, response_id, [], None, final=False)
    emit("response.created", {"response": pending})
    emit("response.in_progress", {"response": pending})
    emit(
        "response.output_item.added",
        {"output_index": 0, "item": _message_item(call, message_id, final=False)},
    )
    part: dict[str, Any] = {"item_id": message_id, "output_index": 0, "content_index": 0}
    emit("response.content_part.added", {**part, "part": _output_text("")})
    for piece in iter_pieces(call.text, reply.chunks):
        emit("response.output_text.delta", {**part, "delta": piece, "logprobs": []})
    emit("response.output_text.done", {**part, "text": call.text, "logprobs": []})
    emit("response.content_part.done", {**part, "part": _output_text(call.text)})
    item = _message_item(call, message_id, final=True)
    emit("response.output_item.done", {"output_index": 0, "item": item})
    usage = _usage(call) if call.stream_usage else None
    final = _response_object(call, response_id, [item], usage, final=True)
    terminal = "response.completed" if final["status"] == "completed" else "response.incomplete"
    emit(terminal, {"response": final}, usage[1] if usage is not None else None)
    return events
