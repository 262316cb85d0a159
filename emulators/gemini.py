"""Loopback emulator of the Gemini API and of Gemini on Vertex AI.

Serves, in the wire shapes Google documents:

* the Gemini API (``generativelanguage.googleapis.com``):
  ``POST /{v1beta|v1|v1alpha}/models/{model}:generateContent``, ``:streamGenerateContent`` (server-sent
  events with ``?alt=sse``, a streamed JSON array without), ``:embedContent``, ``:batchEmbedContents``
  and ``:countTokens``;
* Vertex AI (``{location}-aiplatform.googleapis.com``):
  ``POST /{v1|v1beta1}/projects/{p}/locations/{l}/publishers/{publisher}/models/{model}:{method}`` and
  the express-mode form without project and location (``/{version}/publishers/...``), for the same
  methods plus ``:predict`` (text embedding models).

Replies are scripted with :class:`GeminiReply`; with nothing scripted a deterministic default answer
is sent. Zero-valued counts are left out of ``usageMetadata``, as the protobuf JSON encoding does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal
from urllib.parse import unquote

from ._server import Exchange, RecordedRequest, ScriptedEmulator, iter_pieces
from ._server import raw_count as _count

__all__ = ["GeminiEmulator", "GeminiReply", "GeminiServedTotals", "RecordedRequest"]

DEFAULT_TEXT = "This is a deterministic reply from the Gemini emulator."
DEFAULT_EMBEDDING_DIMENSIONS = 8

_Platform = Literal["gemini", "vertex"]

_GEMINI_PATH = re.compile(
    r"^/(?P<version>v1|v1beta|v1alpha)/(?P<kind>models|tunedModels)/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)$"
)
_VERTEX_PATH = re.compile(
    r"^/(?P<version>v1|v1beta1)/(?:projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/)?"
    r"publishers/(?P<publisher>[^/]+)/models/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)$"
)
_GENERATE = frozenset({"generateContent", "streamGenerateContent"})
_EMBED = frozenset({"embedContent", "batchEmbedContents", "predict"})

# google.rpc.Code name and default message per HTTP status.
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: (
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
        "other valid authentication credential.",
    ),
    403: (
        "PERMISSION_DENIED",
        "Method doesn't allow unregistered callers (callers without established "
        "identity). Please use API Key or other form of API consumer identity to "
        "call this API.",
    ),
    404: (
        "NOT_FOUND",
        "models/{model} is not found for API version {version}, or is not supported for {method}. Call "
        "ListModels to see the list of available models and their supported methods.",
    ),
    429: (
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
    ),
    500: (
        "INTERNAL",
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    ),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "The request timed out. Please try again."),
}
_VERTEX_MESSAGES = {
    429: "Resource exhausted. Please try again later. Please refer to "
    "https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.",
    404: "Publisher Model `projects/{project}/locations/{location}/publishers/google/models/{model}` "
    "was not found or your project does not have access to it.",
}


@dataclass
class GeminiReply:
    """One scripted answer. Every field has a default, so ``GeminiReply()`` is a plain successful reply.

    ``prompt_tokens`` is ``promptTokenCount``: the whole prompt, cached content included, tool
    results excluded (those are ``tool_use_prompt_tokens``). ``candidates_tokens`` excludes thoughts.
    The audio counts are the AUDIO entries of ``promptTokensDetails`` / ``candidatesTokensDetails``.

    ``parts`` replaces the answer's content parts (a ``functionCall``, say); a stream then sends them
    in one chunk.

    Streams: the text is split into ``chunks`` chunks, the last one carrying ``finishReason``. On the
    Gemini API every chunk carries the running ``usageMetadata``; on Vertex AI only the last one does
    (``usage_on_every_chunk`` overrides either). ``raw_usage`` replaces the usage of a JSON reply or of
    a stream's last chunk, and earlier chunks then carry none. ``cut_after`` drops the connection after
    that many chunks; ``error_after`` sends an error event instead of the rest; ``gate`` holds the
    stream before chunk ``gate_after`` until it is set.
    """

    status: int = 200
    text: str | None = None
    parts: list[dict[str, Any]] | None = None
    model_version: str | None = None
    finish_reason: str = "STOP"
    prompt_tokens: int | None = None
    candidates_tokens: int | None = None
    cached_tokens: int = 0
    thoughts_tokens: int = 0
    tool_use_prompt_tokens: int = 0
    audio_prompt_tokens: int = 0
    audio_candidates_tokens: int = 0
    omit_usage: bool = False
    raw_usage: dict[str, Any] | None = None
    usage_on_every_chunk: bool | None = None
    chunks: int = 3
    cut_after: int | None = None
    error_after: int | None = None
    stream_error_code: int = 503
    gate: threading.Event | None = None
    gate_after: int = 1
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    response_id: str | None = None
    error_status: str | None = None
    message: str | None = None
    headers: dict[str, str] | None = None


@dataclass
class GeminiServedTotals:
    """Usage the emulator put on the wire, summed over the responses it sent.

    ``requests`` counts replies to generation and embedding requests (errors included);
    ``count_tokens_requests`` counts token-counting requests. A stream's running usage is counted as
    the client would end up with it: each chunk adds what it raised the totals by, and a stream cut
    short adds only what its delivered chunks said.
    """

    requests: int = 0
    count_tokens_requests: int = 0
    prompt_tokens: int = 0
    candidates_tokens: int = 0
    cached_tokens: int = 0
    thoughts_tokens: int = 0
    tool_use_prompt_tokens: int = 0


@dataclass(frozen=True)
class _Tally:
    prompt: int = 0
    candidates: int = 0
    cached: int = 0
    thoughts: int = 0
    tool_use: int = 0

    def minus(self, other: _Tally) -> _Tally:
        return _Tally(
            self.prompt - other.prompt,
            self.candidates - other.candidates,
            self.cached - other.cached,
            self.thoughts - other.thoughts,
            self.tool_use - other.tool_use,
        )


@dataclass(frozen=True)
class _Route:
    platform: _Platform
    version: str
    model: str
    method: str
    project: str | None
    location: str | None


@dataclass(frozen=True)
class _Call:
    route: _Route
    body: dict[str, Any]
    reply: GeminiReply
    text: str
    prompt: int
    candidates: int
    model_version: str
    response_id: str
    created: str


def _tally_from_raw(raw: object) -> _Tally:
    if not isinstance(raw, Mapping):
        return _Tally()
    return _Tally(
        prompt=_count(raw.get("promptTokenCount")),
        candidates=_count(raw.get("candidatesTokenCount")),
        cached=_count(raw.get("cachedContentTokenCount")),
        thoughts=_count(raw.get("thoughtsTokenCount")),
        tool_use=_count(raw.get("toolUsePromptTokenCount")),
    )


def _sse_json(payload: object) -> str:
    # The API's own spacing: a space after each colon, none after commas.
    return json.dumps(payload, separators=(",", ": "), ensure_ascii=False)


def _response_id() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(17)).decode("ascii").rstrip("=")


def _timestamp() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _estimate(source: object) -> int:
    return 8 + len(json.dumps(source, default=str)) // 4


def _modalities(text: int, audio: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if text > 0 or not audio:
        out.append({"modality": "TEXT", "tokenCount": text} if text > 0 else {"modality": "TEXT"})
    if audio > 0:
        out.append({"modality": "AUDIO", "tokenCount": audio})
    return out


def _route(path: str) -> _Route | None:
    match = _GEMINI_PATH.match(path)
    if match is not None:
        model = unquote(match.group("model"))
        if match.group("kind") == "tunedModels":
            model = f"tunedModels/{model}"
        return _Route("gemini", match.group("version"), model, match.group("method"), None, None)
    match = _VERTEX_PATH.match(path)
    if match is not None:
        return _Route(
            "vertex",
            match.group("version"),
            unquote(match.group("model")),
            match.group("method"),
            match.group("project"),
            match.group("location"),
        )
    return None


def _find_dimensions(value: object, depth: int = 0) -> int | None:
    """The first ``outputDimensionality`` in a request body, wherever the API flavour put it."""
    if depth > 4:
        return None
    if isinstance(value, Mapping):
        found = value.get("outputDimensionality")
        if isinstance(found, int) and not isinstance(found, bool) and found > 0:
            return found
        items: Any = value.values()
    elif isinstance(value, list):
        items = value
    else:
        return None
    for item in items:
        found = _find_dimensions(item, depth + 1)
        if found is not None:
            return found
    return None


def _embedding(seed: object, size: int) -> list[float]:
    """A deterministic unit vector for ``seed``."""
    text = json.dumps(seed, sort_keys=True, default=str)
    stream = b""
    counter = 0
    while len(stream) < size:
        stream += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    values = [byte / 127.5 - 1.0 for byte in stream[:size]]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    # float32 round trip, as the API's own values are.
    packed = struct.pack(f"<{size}f", *(v / norm for v in values))
    return list(struct.unpack(f"<{size}f", packed))


class GeminiEmulator(ScriptedEmulator[GeminiReply, GeminiServedTotals]):
    """Gemini-compatible HTTP server on ``127.0.0.1`` for tests and demos.

    ``base_url`` is what ``genai.Client(http_options=types.HttpOptions(base_url=...))`` takes, for
    the Gemini API and for Vertex AI alike (the SDK appends the API version and resource path). The
    Gemini API wants an ``x-goog-api-key`` header (or ``key`` query parameter); Vertex AI wants a
    bearer token, or an API key in express mode. Each generation or embedding request consumes one
    :class:`GeminiReply` pushed with :meth:`push` (a default reply when none is queued); token
    counting consumes none.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(GeminiServedTotals, host, port)

    @property
    def base_url(self) -> str:
        return self.url

    def _add(self, tally: _Tally | None = None, *, request: bool = False, count_tokens: bool = False) -> None:
        with self._served_lock:
            served = self._served
            served.requests += int(request)
            served.count_tokens_requests += int(count_tokens)
            if tally is not None:
                served.prompt_tokens += tally.prompt
                served.candidates_tokens += tally.candidates
                served.cached_tokens += tally.cached
                served.thoughts_tokens += tally.thoughts
                served.tool_use_prompt_tokens += tally.tool_use

    def _count_usage(self, tally: _Tally, sign: int) -> None:
        self._add(tally if sign > 0 else _Tally().minus(tally))

    # --- routing -----------------------------------------------------------------------------

    def handle(self, exchange: Exchange) -> None:
        request = exchange.request
        route = _route(request.path.rstrip("/")) if request.method == "POST" else None
        if route is None or not (
            route.method in _GENERATE or route.method in _EMBED or route.method == "countTokens"
        ):
            self._send_error(exchange, 404, None, f"The requested URL {request.path} was not found.")
            return
        problem = self._check_auth(request, route)
        if problem is not None:
            self._send_error(exchange, problem, route)
            return
        body = request.json
        if not isinstance(body, dict):
            self._send_error(exchange, 400, route, "Invalid JSON payload received.")
            return
        if route.method == "countTokens":
            self._count_tokens(exchange, route, body)
            return
        if route.method == "predict" and route.platform == "gemini":
            self._send_error(exchange, 404, route)
            return
        if route.method in _GENERATE and (not isinstance(body.get("contents"), list) or not body["contents"]):
            message = "* GenerateContentRequest.contents: contents is not specified"
            self._send_error(exchange, 400, route, message)
            return
        reply = self._replies.pop() or GeminiReply()
        if not exchange.sleep(reply.delay_s):
            exchange.abort()
            return
        self._add(request=True)
        headers = dict(reply.headers or {})
        if reply.status >= 400:
            self._send_error(exchange, reply.status, route, reply.message, reply.error_status, headers)
            return
        if route.method in _EMBED:
            self._embed(exchange, route, body, reply, headers)
            return
        call = _make_call(route, body, reply)
        if route.method == "streamGenerateContent":
            self._stream(exchange, call, request.query.get("alt") == "sse", headers)
            return
        payload, tally = _json_body(call)
        self._send_counted(tally, partial(exchange.send_json, 200, payload, headers))

    @staticmethod
    def _check_auth(request: RecordedRequest, route: _Route) -> int | None:
        has_key = bool(request.headers.get("x-goog-api-key") or request.query.get("key"))
        bearer = request.headers.get("authorization", "").startswith("Bearer ")
        if route.platform == "gemini":
            return None if has_key or bearer else 403
        if route.project is None:
            return None if has_key else 401
        return None if bearer else 401

    def _send_error(
        self,
        exchange: Exchange,
        status: int,
        route: _Route | None,
        message: str | None = None,
        rpc_status: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        name, default = _ERRORS.get(status, _ERRORS[500 if status >= 500 else 400])
        if route is not None and route.platform == "vertex":
            default = _VERTEX_MESSAGES.get(status, default)
        if message is None:
            fields = {
                "model": route.model if route else "",
                "version": route.version if route else "",
                "method": route.method if route else "",
                "project": (route.project if route else None) or "",
                "location": (route.location if route else None) or "",
            }
            message = default.format(**fields)
        error: dict[str, Any] = {"code": status, "message": message, "status": rpc_status or name}
        if status == 429 and (route is None or route.platform == "gemini"):
            error["details"] = [
                {"@type": "type.googleapis.com/google.rpc.Help",
                 "links": [{"description": "Learn more about Gemini API quotas",
                            "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"},
            ]  # fmt: skip
        exchange.send_json(status, {"error": error}, headers)

    def _count_tokens(self, exchange: Exchange, route: _Route, body: dict[str, Any]) -> None:
        self._add(count_tokens=True)
        source = body.get("contents") or body.get("generateContentRequest") or body
        total = _estimate(source)
        payload: dict[str, Any] = {"totalTokens": total}
        if route.platform == "vertex":
            payload["totalBillableCharacters"] = len(json.dumps(source, default=str))
        payload["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": total}]
        exchange.send_json(200, payload)

    # --- embeddings --------------------------------------------------------------------------

    def _embed(
        self,
        exchange: Exchange,
        route: _Route,
        body: dict[str, Any],
        reply: GeminiReply,
        headers: dict[str, str],
    ) -> None:
        size = _find_dimensions(body) or DEFAULT_EMBEDDING_DIMENSIONS
        items: list[Any]
        if route.method == "batchEmbedContents":
            requests = body.get("requests")
            items = (
                [r.get("content") for r in requests if isinstance(r, Mapping)]
                if isinstance(requests, list)
                else []
            )
        elif route.method == "predict":
            instances = body.get("instances")
            items = list(instances) if isinstance(instances, list) else []
        else:
            items = [body.get("content")]
        if reply.prompt_tokens is not None and items:
            share, rest = divmod(reply.prompt_tokens, len(items))
            counts = [share + (1 if i < rest else 0) for i in range(len(items))]
        else:
            counts = [max(1, len(json.dumps(item, default=str)) // 4) for item in items]
        prompt = sum(counts)
        payload: dict[str, Any]
        if route.method == "predict":
            predictions = []
            for item, count in zip(items, counts, strict=True):
                embedding: dict[str, Any] = {"values": _embedding(item, size)}
                if not reply.omit_usage:
                    embedding = {"statistics": {"truncated": False, "token_count": count}, **embedding}
                predictions.append({"embeddings": embedding})
            characters = sum(len(json.dumps(item, default=str)) for item in items)
            payload = {"predictions": predictions, "metadata": {"billableCharacterCount": characters}}
            tally = None if reply.omit_usage else _Tally(prompt=prompt)
            self._send_counted(tally, partial(exchange.send_json, 200, payload, headers))
            return
        vectors = [{"values": _embedding(item, size)} for item in items]
        payload = {"embedding": vectors[0]} if route.method == "embedContent" else {"embeddings": vectors}
        tally = None
        if reply.raw_usage is not None:
            payload["usageMetadata"] = reply.raw_usage
            tally = _tally_from_raw(reply.raw_usage)
        elif not reply.omit_usage:
            usage: dict[str, Any] = {"promptTokenCount": prompt}
            if route.platform == "gemini":
                usage["promptTokenDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
            else:
                usage["trafficType"] = "ON_DEMAND"
            payload["usageMetadata"] = usage
            tally = _Tally(prompt=prompt)
        if route.platform == "vertex" and route.method == "embedContent":
            payload["truncated"] = False
        self._send_counted(tally, partial(exchange.send_json, 200, payload, headers))

    # --- streams -----------------------------------------------------------------------------

    def _stream(self, exchange: Exchange, call: _Call, sse: bool, headers: dict[str, str]) -> None:
        reply = call.reply
        events = _stream_chunks(call)
        content_type = "text/event-stream" if sse else "application/json; charset=UTF-8"
        if not exchange.start_stream(200, content_type, headers):
            return
        limit = len(events)
        if reply.cut_after is not None:
            limit = max(0, min(reply.cut_after, limit))
        if reply.error_after is not None:
            limit = max(0, min(reply.error_after, limit))
        sent_any = False
        for index, (payload, tally) in enumerate(events[:limit]):
            if reply.gate is not None and index == reply.gate_after and not self._wait(exchange, reply.gate):
                return
            if index and not exchange.sleep(reply.chunk_delay_s):
                exchange.abort()
                return
            if not self._send_counted(
                tally, partial(exchange.write_chunk, _frame(payload, sse, first=not sent_any))
            ):
                return
            sent_any = True
        if reply.cut_after is not None:
            exchange.abort()
            return
        if reply.error_after is not None:
            code = reply.stream_error_code
            name, message = _ERRORS.get(code, _ERRORS[500])
            error = {"error": {"code": code, "message": reply.message or message, "status": name}}
            exchange.write_chunk(_frame(error, sse, first=not sent_any))
            sent_any = True
        if not sse:
            exchange.write_chunk(b"]" if sent_any else b"[]")
        exchange.end_stream()

    @staticmethod
    def _wait(exchange: Exchange, gate: threading.Event) -> bool:
        while not gate.wait(0.05):
            if not exchange.sleep(0):
                exchange.abort()
                return False
        return True


def _frame(payload: object, sse: bool, *, first: bool) -> bytes:
    if sse:
        return f"data: {_sse_json(payload)}\r\n\r\n".encode()
    text = json.dumps(payload, indent=2, ensure_ascii=False)
    return (("[" if first else "\n,\r\n") + text).encode()


def _make_call(route: _Route, body: dict[str, Any], reply: GeminiReply) -> _Call:
    text = DEFAULT_TEXT if reply.text is None else reply.text
    if reply.prompt_tokens is not None:
        prompt = reply.prompt_tokens
    else:
        source = [body.get("systemInstruction"), body.get("contents"), body.get("tools")]
        prompt = max(_estimate(source), reply.cached_tokens + reply.audio_prompt_tokens)
    if reply.candidates_tokens is not None:
        candidates = reply.candidates_tokens
    elif reply.parts is not None:
        candidates = max(1, len(json.dumps(reply.parts)) // 4) + reply.audio_candidates_tokens
    else:
        candidates = max(1, len(text.split())) + reply.audio_candidates_tokens
    model_version = reply.model_version or route.model
    return _Call(
        route=route,
        body=body,
        reply=reply,
        text=text,
        prompt=prompt,
        candidates=candidates,
        model_version=model_version,
        response_id=reply.response_id or _response_id(),
        created=_timestamp(),
    )


def _usage(call: _Call, candidates: int, audio_out: int) -> tuple[dict[str, Any], _Tally]:
    """``usageMetadata`` once ``candidates`` output tokens (``audio_out`` of them audio) exist."""
    reply = call.reply
    vertex = call.route.platform == "vertex"
    usage: dict[str, Any] = {}
    if call.prompt:
        usage["promptTokenCount"] = call.prompt
    if candidates:
        usage["candidatesTokenCount"] = candidates
    total = call.prompt + candidates + reply.thoughts_tokens + reply.tool_use_prompt_tokens
    if total:
        usage["totalTokenCount"] = total
    if reply.cached_tokens:
        usage["cachedContentTokenCount"] = reply.cached_tokens
    usage["promptTokensDetails"] = _modalities(
        call.prompt - reply.audio_prompt_tokens, reply.audio_prompt_tokens
    )
    if reply.cached_tokens:
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": reply.cached_tokens}]
    if candidates and (vertex or audio_out):
        usage["candidatesTokensDetails"] = _modalities(candidates - audio_out, audio_out)
    if reply.tool_use_prompt_tokens:
        usage["toolUsePromptTokenCount"] = reply.tool_use_prompt_tokens
        usage["toolUsePromptTokensDetails"] = [
            {"modality": "TEXT", "tokenCount": reply.tool_use_prompt_tokens}
        ]
    if reply.thoughts_tokens:
        usage["thoughtsTokenCount"] = reply.thoughts_tokens
    if vertex:
        usage["trafficType"] = "ON_DEMAND"
    tally = _Tally(
        call.prompt, candidates, reply.cached_tokens, reply.thoughts_tokens, reply.tool_use_prompt_tokens
    )
    return usage, tally


def _candidate(parts: list[dict[str, Any]], finish_reason: str | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
    if finish_reason is not None:
        candidate["finishReason"] = finish_reason
    candidate["index"] = 0
    return candidate


def _envelope(call: _Call, candidate: dict[str, Any], usage: dict[str, Any] | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"candidates": [candidate]}
    if usage is not None:
        payload["usageMetadata"] = usage
    payload["modelVersion"] = call.model_version
    if call.route.platform == "vertex":
        payload["createTime"] = call.created
    payload["responseId"] = call.response_id
    return payload


def _json_body(call: _Call) -> tuple[dict[str, Any], _Tally | None]:
    reply = call.reply
    usage: dict[str, Any] | None = None
    tally: _Tally | None = None
    if reply.raw_usage is not None:
        usage, tally = reply.raw_usage, _tally_from_raw(reply.raw_usage)
    elif not reply.omit_usage:
        usage, tally = _usage(call, call.candidates, reply.audio_candidates_tokens)
    parts = reply.parts if reply.parts is not None else [{"text": call.text}]
    return _envelope(call, _candidate(parts, reply.finish_reason), usage), tally


def _stream_chunks(call: _Call) -> list[tuple[dict[str, Any], _Tally | None]]:
    """The stream's chunks, each with what it adds to the served totals."""
    reply = call.reply
    pieces: list[list[dict[str, Any]]]
    if reply.parts is not None:
        pieces = [reply.parts]
    else:
        pieces = [[{"text": piece}] for piece in iter_pieces(call.text, reply.chunks)]
    last = len(pieces) - 1
    every = reply.usage_on_every_chunk
    if every is None:
        every = call.route.platform == "gemini"
    out: list[tuple[dict[str, Any], _Tally | None]] = []
    seen = _Tally()
    for index, piece in enumerate(pieces):
        final = index == last
        usage: dict[str, Any] | None = None
        tally: _Tally | None = None
        if reply.raw_usage is not None:
            if final:
                usage, tally = reply.raw_usage, _tally_from_raw(reply.raw_usage)
        elif not reply.omit_usage and (final or every):
            # Running totals: thinking and the prompt are done before the first text arrives.
            done = (index + 1) / len(pieces)
            usage, total = _usage(
                call, round(call.candidates * done), round(reply.audio_candidates_tokens * done)
            )
            tally, seen = total.minus(seen), total
        out.append((_envelope(call, _candidate(piece, reply.finish_reason if final else None), usage), tally))
    return out
