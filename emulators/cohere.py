"""Loopback emulator of Cohere's v2 API: chat (JSON and server-sent events) and embed.

Serves ``POST /v2/chat`` and ``POST /v2/embed`` in the wire shapes Cohere documents. A chat reply's
``usage`` carries both counts Cohere sends: ``billed_units`` (what is billed) and ``tokens`` (what
the model processed, including the prompt template Cohere adds and does not bill), plus
``cached_tokens`` when scripted. A streamed chat (``"stream": true``) is a ``text/event-stream`` of
``event: <type>`` / ``data: <json>`` frames whose JSON repeats the type: ``message-start``, then
either ``content-start``, ``content-delta``... ``content-end`` or ``tool-plan-delta`` and
``tool-call-start`` / ``tool-call-delta`` / ``tool-call-end`` per tool call, then ``message-end``
carrying ``finish_reason`` and ``usage``, and a closing ``data: [DONE]``. Errors are Cohere's
``{"id": ..., "message": ...}`` with the HTTP status the SDK maps to its exception classes.

Replies are scripted with :class:`CohereReply`; with nothing scripted a deterministic default answer
is sent.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._server import Exchange, RecordedRequest, ScriptedEmulator, iter_pieces
from ._server import compact_json as _compact
from ._server import raw_count as _count

__all__ = ["CohereEmulator", "CohereReply", "CohereServedTotals", "RecordedRequest"]

DEFAULT_TEXT = "This is a deterministic reply from the Cohere emulator."
DEFAULT_EMBEDDING_DIMENSIONS = 8
# Tokens of the chat template and safety preamble Cohere wraps around every prompt: processed by
# the model (`usage.tokens.input_tokens`) but not billed (`usage.billed_units.input_tokens`).
TEMPLATE_TOKENS = 66

_ERRORS: dict[int, str] = {
    400: "invalid request: the request body could not be parsed",
    401: "invalid api token",
    402: "Please add or update your payment method at https://dashboard.cohere.com/billing?tab=payment",
    403: "You do not have permission to access this resource.",
    404: "model '{model}' not found, make sure the correct model ID was used and that you have access to "
    "the model.",
    422: "invalid request: messages must contain at least one message",
    429: "You are using a Trial key, which is limited to 20 API calls / minute. You can continue to use the "
    "Trial key for free or upgrade to a Production key with higher rate limits at "
    "'https://dashboard.cohere.com/api-keys'. Contact us on 'https://discord.gg/XW44jPfYJu' or email us at "
    "support@cohere.com with any questions",
    498: "invalid api token",
    500: "internal server error, this has been reported to our developers. id {id}",
    503: "service unavailable",
    504: "gateway timeout",
}


@dataclass
class CohereReply:
    """One scripted answer. Every field has a default, so ``CohereReply()`` is a plain successful reply.

    ``billed_input_tokens`` / ``billed_output_tokens`` are ``usage.billed_units`` (an embedding's
    ``meta.billed_units``); ``input_tokens`` / ``output_tokens`` are ``usage.tokens``, defaulting to the
    billed input plus :data:`TEMPLATE_TOKENS` and to the billed output. ``cached_tokens`` adds
    ``usage.cached_tokens``. ``raw_usage`` replaces the usage object (an embedding's ``meta``)
    verbatim; ``omit_usage`` leaves it out.

    ``tool_calls`` (``[{"name": ..., "arguments": "<json>"}]``) answers with tool calls and
    ``tool_plan`` instead of text, finishing with ``TOOL_CALL`` unless ``finish_reason`` says otherwise.

    Streams split the text into ``chunks`` ``content-delta`` events. ``cut_after`` drops the
    connection after that many events, without the terminating chunk; ``gate`` holds the stream
    before event ``gate_after`` until it is set, so a test can act mid-stream without sleeping.
    """

    status: int = 200
    text: str | None = None
    finish_reason: str | None = None
    billed_input_tokens: int | None = None
    billed_output_tokens: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    omit_usage: bool = False
    raw_usage: dict[str, Any] | None = None
    tool_calls: list[dict[str, str]] | None = None
    tool_plan: str = "I will call the tool to answer."
    chunks: int = 3
    cut_after: int | None = None
    gate: threading.Event | None = None
    gate_after: int = 1
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    id: str | None = None
    message: str | None = None
    headers: dict[str, str] | None = None


@dataclass
class CohereServedTotals:
    """Usage the emulator put on the wire, summed over the responses it sent.

    ``requests`` counts replies to chat requests (errors included), ``embed_requests`` those to embed
    requests. Usage is counted as the body or the stream's ``message-end`` event carrying it is
    written, before the client can have read it: a stream cut before ``message-end`` adds none.
    """

    requests: int = 0
    embed_requests: int = 0
    billed_input_tokens: int = 0
    billed_output_tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0


@dataclass(frozen=True)
class _Tally:
    billed_input: int = 0
    billed_output: int = 0
    input: int = 0
    output: int = 0
    cached: int = 0


@dataclass(frozen=True)
class _Event:
    name: str
    payload: dict[str, Any]
    tally: _Tally | None = None


def _tally_from_raw(raw: object) -> _Tally:
    if not isinstance(raw, Mapping):
        return _Tally()
    billed = raw.get("billed_units")
    tokens = raw.get("tokens")
    billed = billed if isinstance(billed, Mapping) else {}
    tokens = tokens if isinstance(tokens, Mapping) else {}
    return _Tally(
        billed_input=_count(billed.get("input_tokens")),
        billed_output=_count(billed.get("output_tokens")),
        input=_count(tokens.get("input_tokens")),
        output=_count(tokens.get("output_tokens")),
        cached=_count(raw.get("cached_tokens")),
    )


def _estimate(source: object) -> int:
    return 4 + len(json.dumps(source, default=str)) // 4


def _error_body(status: int, reply: CohereReply, model: str) -> dict[str, Any]:
    request_id = str(uuid.uuid4())
    template = _ERRORS.get(status, _ERRORS[500 if status >= 500 else 400])
    message = reply.message if reply.message is not None else template.format(model=model, id=request_id)
    return {"id": request_id, "message": message}


class CohereEmulator(ScriptedEmulator[CohereReply, CohereServedTotals]):
    """Cohere-compatible HTTP server on ``127.0.0.1`` for tests and demos.

    ``base_url`` is what ``cohere.ClientV2(base_url=...)`` and ``cohere.AsyncClientV2(base_url=...)``
    take. Each chat or embed request consumes one :class:`CohereReply` pushed with :meth:`push` (a
    default reply when none is queued). Requests without a bearer token are answered 401.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(CohereServedTotals, host, port)

    @property
    def base_url(self) -> str:
        return self.url

    def _add(self, tally: _Tally | None = None, *, request: bool = False, embed: bool = False) -> None:
        with self._served_lock:
            served = self._served
            served.requests += int(request)
            served.embed_requests += int(embed)
            if tally is not None:
                served.billed_input_tokens += tally.billed_input
                served.billed_output_tokens += tally.billed_output
                served.input_tokens += tally.input
                served.output_tokens += tally.output
                served.cached_tokens += tally.cached

    # --- routing -----------------------------------------------------------------------------

    def handle(self, exchange: Exchange) -> None:
        request = exchange.request
        path = request.path.rstrip("/")
        headers = {"x-debug-trace-id": uuid.uuid4().hex}
        if request.method != "POST" or path not in ("/v2/chat", "/v2/embed"):
            exchange.send_json(
                404, {"id": str(uuid.uuid4()), "message": f"{request.path} not found"}, headers
            )
            return
        problem = self._check(request)
        if problem is not None:
            exchange.send_json(problem[0], {"id": str(uuid.uuid4()), "message": problem[1]}, headers)
            return
        reply = self._replies.pop() or CohereReply()
        if not exchange.sleep(reply.delay_s):
            exchange.abort()
            return
        headers.update(reply.headers or {})
        body: dict[str, Any] = request.json
        model = str(body.get("model"))
        if path == "/v2/embed":
            self._add(embed=True)
            if reply.status >= 400:
                exchange.send_json(
                    reply.status, _error_body(reply.status, reply, model), headers, indent=None
                )
                return
            self._embed(exchange, body, reply, headers)
            return
        self._add(request=True)
        if reply.status >= 400:
            exchange.send_json(reply.status, _error_body(reply.status, reply, model), headers, indent=None)
            return
        if body.get("stream") is True:
            self._stream(exchange, body, reply, headers)
            return
        payload, tally = _chat_body(body, reply)
        self._add(tally)
        exchange.send_json(200, payload, headers, indent=None)

    @staticmethod
    def _check(request: RecordedRequest) -> tuple[int, str] | None:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[len("Bearer ") :].strip():
            return 401, "no api key supplied"
        body = request.json
        if not isinstance(body, dict):
            return 400, "invalid request: the request body could not be parsed"
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return 400, "invalid request: model must be a non-empty string"
        if request.path.rstrip("/") == "/v2/chat" and not body.get("messages"):
            return 400, "invalid request: messages must contain at least one message"
        return None

    # --- answers -----------------------------------------------------------------------------

    def _stream(
        self, exchange: Exchange, body: dict[str, Any], reply: CohereReply, headers: dict[str, str]
    ) -> None:
        events = _stream_events(body, reply)
        if not exchange.start_stream(200, "text/event-stream", headers):
            return
        limit = len(events) if reply.cut_after is None else max(0, min(reply.cut_after, len(events)))
        for index, event in enumerate(events[:limit]):
            if reply.gate is not None and index == reply.gate_after and not self._wait(exchange, reply.gate):
                return
            if index and not exchange.sleep(reply.chunk_delay_s):
                exchange.abort()
                return
            if event.tally is not None:
                self._add(event.tally)
            if not exchange.write_sse(_compact(event.payload), event.name):
                return
        if reply.cut_after is not None:
            exchange.abort()
            return
        exchange.write_sse("[DONE]")
        exchange.end_stream()

    @staticmethod
    def _wait(exchange: Exchange, gate: threading.Event) -> bool:
        while not gate.wait(0.05):
            if not exchange.sleep(0):
                exchange.abort()
                return False
        return True

    def _embed(
        self, exchange: Exchange, body: dict[str, Any], reply: CohereReply, headers: dict[str, str]
    ) -> None:
        items = _embed_items(body)
        kinds = body.get("embedding_types")
        if not isinstance(kinds, list) or not kinds:
            kinds = ["float"]
        embeddings = {str(kind): [_embedding(str(kind), item) for item in items] for kind in kinds}
        meta: dict[str, Any] = {"api_version": {"version": "2"}}
        tally: _Tally | None = None
        if reply.raw_usage is not None:
            meta = reply.raw_usage
            tally = _tally_from_raw(meta)
        elif not reply.omit_usage:
            billed = reply.billed_input_tokens
            billed = _estimate(items) if billed is None else billed
            meta["billed_units"] = {"input_tokens": billed}
            tally = _Tally(billed_input=billed)
        payload: dict[str, Any] = {
            "id": reply.id or str(uuid.uuid4()),
            "embeddings": embeddings,
            "texts": [item for item in items if isinstance(item, str)],
            "meta": meta,
            "response_type": "embeddings_by_type",
        }
        self._add(tally)
        exchange.send_json(200, payload, headers, indent=None)


def _embed_items(body: Mapping[str, Any]) -> list[Any]:
    for key in ("texts", "inputs", "images"):
        value = body.get(key)
        if isinstance(value, list) and value:
            return value
    return []


def _embedding(kind: str, item: object) -> Any:
    digest = hashlib.sha256(json.dumps(item, sort_keys=True, default=str).encode()).digest()
    values = [round((b - 128) / 128, 6) for b in digest[:DEFAULT_EMBEDDING_DIMENSIONS]]
    if kind == "float":
        return values
    if kind == "base64":
        return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")
    if kind in ("uint8", "ubinary"):
        return list(digest[:DEFAULT_EMBEDDING_DIMENSIONS])
    return [b - 128 for b in digest[:DEFAULT_EMBEDDING_DIMENSIONS]]


def _usage(body: Mapping[str, Any], reply: CohereReply, text: str) -> tuple[dict[str, Any], _Tally] | None:
    if reply.omit_usage:
        return None
    if reply.raw_usage is not None:
        return reply.raw_usage, _tally_from_raw(reply.raw_usage)
    billed_in = reply.billed_input_tokens
    billed_in = _estimate([body.get("messages"), body.get("tools")]) if billed_in is None else billed_in
    billed_out = reply.billed_output_tokens
    billed_out = max(1, len(text.split())) if billed_out is None else billed_out
    tokens_in = billed_in + TEMPLATE_TOKENS if reply.input_tokens is None else reply.input_tokens
    tokens_out = billed_out if reply.output_tokens is None else reply.output_tokens
    usage: dict[str, Any] = {
        "billed_units": {"input_tokens": billed_in, "output_tokens": billed_out},
        "tokens": {"input_tokens": tokens_in, "output_tokens": tokens_out},
    }
    if reply.cached_tokens is not None:
        usage["cached_tokens"] = reply.cached_tokens
    return usage, _Tally(billed_in, billed_out, tokens_in, tokens_out, reply.cached_tokens or 0)


def _tool_calls(reply: CohereReply) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{call.get('name', 'tool')}_{index}{uuid.uuid4().hex[:4]}",
            "type": "function",
            "function": {"name": call.get("name", "tool"), "arguments": call.get("arguments", "{}")},
        }
        for index, call in enumerate(reply.tool_calls or ())
    ]


def _finish_reason(reply: CohereReply) -> str:
    if reply.finish_reason is not None:
        return reply.finish_reason
    return "TOOL_CALL" if reply.tool_calls else "COMPLETE"


def _chat_body(body: Mapping[str, Any], reply: CohereReply) -> tuple[dict[str, Any], _Tally | None]:
    text = DEFAULT_TEXT if reply.text is None else reply.text
    message: dict[str, Any] = {"role": "assistant"}
    if reply.tool_calls:
        message["tool_plan"] = reply.tool_plan
        message["tool_calls"] = _tool_calls(reply)
        text = reply.tool_plan
    else:
        message["content"] = [{"type": "text", "text": text}]
    payload: dict[str, Any] = {
        "id": reply.id or str(uuid.uuid4()),
        "message": message,
        "finish_reason": _finish_reason(reply),
    }
    usage = _usage(body, reply, text)
    if usage is None:
        return payload, None
    payload["usage"] = usage[0]
    return payload, usage[1]


def _stream_events(body: Mapping[str, Any], reply: CohereReply) -> list[_Event]:
    text = DEFAULT_TEXT if reply.text is None else reply.text
    start = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    events = [
        _Event(
            "message-start",
            {"id": reply.id or str(uuid.uuid4()), "type": "message-start", "delta": {"message": start}},
        )
    ]
    if reply.tool_calls:
        text = reply.tool_plan
        for piece in iter_pieces(reply.tool_plan, reply.chunks):
            plan = {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": piece}}}
            events.append(_Event("tool-plan-delta", plan))
        for index, call in enumerate(_tool_calls(reply)):
            function = call["function"]
            opened = {**call, "function": {"name": function["name"], "arguments": ""}}
            events.append(
                _Event(
                    "tool-call-start",
                    {"type": "tool-call-start", "index": index, "delta": {"message": {"tool_calls": opened}}},
                )
            )
            arguments = {"tool_calls": {"function": {"arguments": function["arguments"]}}}
            events.append(
                _Event(
                    "tool-call-delta",
                    {"type": "tool-call-delta", "index": index, "delta": {"message": arguments}},
                )
            )
            events.append(_Event("tool-call-end", {"type": "tool-call-end", "index": index}))
    else:
        opened_content = {"message": {"content": {"type": "text", "text": ""}}}
        events.append(_Event("content-start", {"type": "content-start", "index": 0, "delta": opened_content}))
        for piece in iter_pieces(text, reply.chunks):
            delta = {"message": {"content": {"text": piece}}}
            events.append(_Event("content-delta", {"type": "content-delta", "index": 0, "delta": delta}))
        events.append(_Event("content-end", {"type": "content-end", "index": 0}))
    end: dict[str, Any] = {"finish_reason": _finish_reason(reply)}
    usage = _usage(body, reply, text)
    tally = None
    if usage is not None:
        end["usage"] = usage[0]
        tally = usage[1]
    events.append(_Event("message-end", {"type": "message-end", "delta": end}, tally))
    return events
