"""The google-genai SDK (`google.genai`): Gemini API and Vertex AI clients, sync and async.

The hooks sit on `Models._generate_content`, `Models._generate_content_stream` and
`Models._embed_content` (and their `AsyncModels` twins), one level below the public methods,
because each of those sends exactly one HTTP request: automatic function calling, automatic
continuation and chat sessions (`client.chats`) call them once per request, so every request is
recorded once, with its own usage, whichever public method started it.

The public `generate_content_stream` methods are wrapped too, only to end the spans of their
requests the moment the caller closes or drops the stream: the SDK's inner generators are left
suspended when its outer one closes, and async ones are finalised by the event loop some time later.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

from .. import semconv as sc
from .._finalise import arm, finalise
from .._guard import report
from .._proxy import ObjectProxy
from ..config import Options
from ..recorder import CallRequest, CallResult, LLMCall, Recorder
from ..streams import AsyncStreamProxy, SyncStreamProxy
from ..usage import TokenUsage, as_count
from ._driver import send, send_async, skip, start
from ._fields import get, get_str, jsonable, sampling_attributes

LIBRARY = "google.genai"
_MODULE = "google.genai.models"
GENERATE = (_MODULE, "Models._generate_content")
GENERATE_STREAM = (_MODULE, "Models._generate_content_stream")
EMBED = (_MODULE, "Models._embed_content")
PUBLIC_STREAM = (_MODULE, "Models.generate_content_stream")
ASYNC_GENERATE = (_MODULE, "AsyncModels._generate_content")
ASYNC_GENERATE_STREAM = (_MODULE, "AsyncModels._generate_content_stream")
ASYNC_EMBED = (_MODULE, "AsyncModels._embed_content")
ASYNC_PUBLIC_STREAM = (_MODULE, "AsyncModels.generate_content_stream")
TARGETS = (
    GENERATE,
    GENERATE_STREAM,
    EMBED,
    PUBLIC_STREAM,
    ASYNC_GENERATE,
    ASYNC_GENERATE_STREAM,
    ASYNC_EMBED,
    ASYNC_PUBLIC_STREAM,
)

PROVIDER_GEMINI = "gcp.gemini"
PROVIDER_VERTEX = "gcp.vertex_ai"

# The requests of the public stream being advanced right now register here, so that closing or
# dropping that stream can end them.
_open_requests: ContextVar[list[Any] | None] = ContextVar("otel_llm_usage_genai_stream", default=None)


# --- pure extraction -------------------------------------------------------------------------


def _field(obj: Any, snake: str, camel: str) -> Any:
    """A field of an SDK object (snake_case) or of the raw JSON (camelCase)."""
    value = get(obj, snake)
    return get(obj, camel) if value is None else value


def _enum_text(value: Any) -> str | None:
    raw = getattr(value, "value", value)
    return raw if isinstance(raw, str) and raw else None


def _readable(value: object) -> bool:
    return as_count(value) > 0 or (value == 0 and not isinstance(value, bool))


def _audio_tokens(details: Any) -> int:
    if not isinstance(details, list):
        return 0
    total = 0
    for item in details:
        if _enum_text(get(item, "modality")) == "AUDIO":
            total += as_count(_field(item, "token_count", "tokenCount"))
    return total


def usage_from(meta: Any) -> TokenUsage | None:
    """Normalise `usage_metadata` (`GenerateContentResponseUsageMetadata`, or its JSON) into the ledger.

    `prompt_token_count` includes `cached_content_token_count` and excludes tool results
    (`tool_use_prompt_token_count`), which are billed as input; `candidates_token_count` excludes
    `thoughts_token_count`, which is billed as output. Their sum is `total_token_count`.
    """
    if meta is None:
        return None
    prompt = _field(meta, "prompt_token_count", "promptTokenCount")
    candidates = _field(meta, "candidates_token_count", "candidatesTokenCount")
    thoughts = _field(meta, "thoughts_token_count", "thoughtsTokenCount")
    tool_use = _field(meta, "tool_use_prompt_token_count", "toolUsePromptTokenCount")
    if not any(_readable(v) for v in (prompt, candidates, thoughts, tool_use)):
        return None
    reasoning = as_count(thoughts)
    return TokenUsage.normalised(
        input=as_count(prompt) + as_count(tool_use),
        output=as_count(candidates) + reasoning,
        cache_read=as_count(_field(meta, "cached_content_token_count", "cachedContentTokenCount")),
        reasoning=reasoning,
        input_audio=_audio_tokens(_field(meta, "prompt_tokens_details", "promptTokensDetails"))
        + _audio_tokens(_field(meta, "tool_use_prompt_tokens_details", "toolUsePromptTokensDetails")),
        output_audio=_audio_tokens(_field(meta, "candidates_tokens_details", "candidatesTokensDetails")),
    )


def _has_counts(meta: Any) -> bool:
    return (
        get(meta, "prompt_token_count") is not None
        or get(meta, "candidates_token_count") is not None
        or get(meta, "thoughts_token_count") is not None
        or get(meta, "tool_use_prompt_token_count") is not None
    )


def finish_reason_text(reason: Any) -> str | None:
    """`FinishReason.STOP` -> "stop", `MAX_TOKENS` -> "max_tokens", like the conventions' examples."""
    text = _enum_text(reason)
    return text.lower().removeprefix("finish_reason_") if text else None


def model_name(model: object) -> str | None:
    """The model id of any name form the SDK accepts ("models/x", "publishers/google/models/x", ...)."""
    if not isinstance(model, str) or not model:
        return None
    if model.startswith(("projects/", "publishers/")) and "/models/" in model:
        return model.rsplit("/models/", 1)[1] or model
    return model.removeprefix("models/") or model


def _candidate_text(candidate: Any) -> str:
    content = get(candidate, "content")
    parts = get(content, "parts")
    if not isinstance(parts, list):
        return ""
    return "".join(
        text for part in parts if not get(part, "thought") and isinstance(text := get(part, "text"), str)
    )


def result_from(response: Any, capture_content: bool = False) -> CallResult:
    """Read a `GenerateContentResponse`, or the raw JSON of one."""
    meta = _field(response, "usage_metadata", "usageMetadata")
    candidates = get(response, "candidates")
    if meta is None and candidates is None:
        raw = _raw_body(response)
        if raw is not None:
            return result_from(raw, capture_content)
    reasons: list[str] = []
    output: list[dict[str, Any]] | None = [] if capture_content else None
    if isinstance(candidates, list):
        for candidate in candidates:
            reason = finish_reason_text(_field(candidate, "finish_reason", "finishReason"))
            if reason:
                reasons.append(reason)
            if output is not None:
                output.append(
                    {"role": "assistant", "content": _candidate_text(candidate), "finish_reason": reason}
                )
    return CallResult(
        response_model=model_name(_field(response, "model_version", "modelVersion")),
        response_id=get_str(response, "response_id") or get_str(response, "responseId"),
        finish_reasons=reasons or None,
        usage=usage_from(meta),
        output_messages=output or None,
    )


def _raw_body(response: Any) -> dict[str, Any] | None:
    """The JSON body of a response returned raw (`should_return_http_response`)."""
    body = get(get(response, "sdk_http_response"), "body")
    if not isinstance(body, str) or not body:
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON (a proxy's error page): nothing to read
        return None
    return data if isinstance(data, dict) else None


def embed_result_from(response: Any) -> CallResult:
    """Read an `EmbedContentResponse`: `usage_metadata` (Gemini API, Vertex AI embedContent), else the
    per-embedding `statistics.token_count` of Vertex AI's predict endpoint."""
    meta = get(response, "usage_metadata")
    prompt = _field(meta, "prompt_token_count", "promptTokenCount")
    usage: TokenUsage | None = None
    if _readable(prompt):
        details = _field(meta, "prompt_tokens_details", "promptTokensDetails")
        usage = TokenUsage.normalised(input=as_count(prompt), input_audio=_audio_tokens(details))
    else:
        embeddings = get(response, "embeddings")
        entries = embeddings if isinstance(embeddings, list) else ()
        counts = [get(get(e, "statistics"), "token_count") for e in entries]
        if counts and any(_readable(c) for c in counts):
            usage = TokenUsage.normalised(input=sum(as_count(c) for c in counts))
    return CallResult(usage=usage)


class ContentAccumulator:
    """Streamed `GenerateContentResponse` chunks of one request.

    Each chunk may carry `usage_metadata`; the counts are running totals of the request, so the
    last one seen wins (a chunk without counts never erases earlier ones).
    """

    __slots__ = ("complete", "id", "meta", "model", "reasons", "text")

    def __init__(self, capture_content: bool) -> None:
        self.complete = False
        self.model: str | None = None
        self.id: str | None = None
        self.meta: Any = None
        self.reasons: dict[int, str] | None = None
        self.text: list[str] | None = [] if capture_content else None

    def add(self, chunk: Any) -> bool:
        if self.model is None:
            self.model = chunk.model_version
            self.id = chunk.response_id
        meta = chunk.usage_metadata
        if meta is not None and _has_counts(meta):
            self.meta = meta
        candidates = chunk.candidates
        if candidates:
            for position, candidate in enumerate(candidates):
                reason = candidate.finish_reason
                if reason is not None:
                    if self.reasons is None:
                        self.reasons = {}
                    index = candidate.index
                    self.reasons[index if isinstance(index, int) else position] = (
                        finish_reason_text(reason) or ""
                    )
                    self.complete = True
            if self.text is not None:
                self.text.append(_candidate_text(candidates[0]))
        return False

    def result(self) -> CallResult:
        reasons = [r for _, r in sorted(self.reasons.items()) if r] if self.reasons else None
        output = None
        if self.text is not None:
            output = [{"role": "assistant", "content": "".join(self.text)}]
        return CallResult(
            response_model=model_name(self.model),
            response_id=self.id if isinstance(self.id, str) and self.id else None,
            finish_reasons=reasons or None,
            usage=usage_from(self.meta),
            output_messages=output,
        )


# --- request description ---------------------------------------------------------------------


def provider_for(api_client: Any, host: str, endpoints: dict[str, str]) -> str:
    if host in endpoints:
        return endpoints[host]
    return PROVIDER_VERTEX if getattr(api_client, "vertexai", False) else PROVIDER_GEMINI


def _base_url(api_client: Any, config: Any) -> str | None:
    url = get(get(config, "http_options"), "base_url")
    if not isinstance(url, str) or not url:
        url = get(getattr(api_client, "_http_options", None), "base_url")
    return url if isinstance(url, str) and url else None


def _request_attributes(config: Any) -> dict[str, Any] | None:
    return sampling_attributes(get(config, "max_output_tokens"), get(config, "temperature"))


def describe_request(
    models: Any,
    kwargs: dict[str, Any],
    operation: str,
    stream: bool,
    capture_content: bool,
    endpoints: dict[str, str],
) -> CallRequest:
    api_client = getattr(models, "_api_client", None)
    config = kwargs.get("config")
    host: str | None = None
    port: int | None = None
    base_url = _base_url(api_client, config)
    if base_url is not None:
        parts = urlsplit(base_url)
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
    req = CallRequest(
        operation=operation,
        provider=provider_for(api_client, host or "", endpoints),
        model=model_name(kwargs.get("model")),
        stream=stream,
        server_address=host,
        server_port=port,
        attributes=_request_attributes(config) if operation == sc.OP_GENERATE_CONTENT else None,
    )
    if capture_content:
        for key in ("contents", "content", "batch_contents"):
            if kwargs.get(key) is not None:
                req.input_messages = jsonable(kwargs[key])
                break
    return req


# --- hooks -----------------------------------------------------------------------------------


def embed_targets() -> tuple[tuple[str, str], tuple[str, str]]:
    """Where embedding requests are sent: older releases send them from `embed_content` itself."""
    from google.genai import models

    if "_embed_content" in models.Models.__dict__:
        return EMBED, ASYNC_EMBED
    return (_MODULE, "Models.embed_content"), (_MODULE, "AsyncModels.embed_content")


def build_wrappers(recorder: Recorder, options: Options) -> dict[tuple[str, str], Callable[..., Any]]:
    hooks = GenAIHooks(recorder, options.endpoints)
    embed, async_embed = embed_targets()
    return {
        GENERATE: hooks.sync_generate,
        GENERATE_STREAM: hooks.sync_stream,
        embed: hooks.sync_embed,
        PUBLIC_STREAM: hooks.sync_public_stream,
        ASYNC_GENERATE: hooks.async_generate,
        ASYNC_GENERATE_STREAM: hooks.async_stream,
        async_embed: hooks.async_embed,
        ASYNC_PUBLIC_STREAM: hooks.async_public_stream,
    }


class GenAIHooks:
    """The wrappers installed on the SDK, bound to one recorder and its options."""

    def __init__(self, recorder: Recorder, endpoints: dict[str, str]) -> None:
        self.rec = recorder
        self.endpoints = endpoints
        self.capture = recorder.settings.capture_content

    def _begin(self, models: Any, kwargs: dict[str, Any], operation: str, stream: bool) -> LLMCall | None:
        return start("google_genai", self._start, models, kwargs, operation, stream)

    def _start(self, models: Any, kwargs: dict[str, Any], operation: str, stream: bool) -> LLMCall:
        return self.rec.start(
            describe_request(models, kwargs, operation, stream, self.capture, self.endpoints)
        )

    def _finish(self, call: LLMCall, response: Any, read: Callable[[Any], CallResult]) -> None:
        try:
            result = read(response)
        except Exception as exc:
            report("google_genai.result", exc)
            result = None
        call.finish(result)

    def _read_content(self, response: Any) -> CallResult:
        return result_from(response, self.capture)

    # One request, one response.

    def _sync_call(
        self, wrapped: Any, models: Any, args: Any, kwargs: dict[str, Any], operation: str, read: Any
    ) -> Any:
        if skip():
            return wrapped(*args, **kwargs)
        call = self._begin(models, kwargs, operation, False)
        if call is None:
            return wrapped(*args, **kwargs)
        response = send(call, wrapped, args, kwargs)
        self._finish(call, response, read)
        return response

    async def _async_call(
        self, wrapped: Any, models: Any, args: Any, kwargs: dict[str, Any], operation: str, read: Any
    ) -> Any:
        if skip():
            return await wrapped(*args, **kwargs)
        call = self._begin(models, kwargs, operation, False)
        if call is None:
            return await wrapped(*args, **kwargs)
        response = await send_async(call, wrapped(*args, **kwargs))
        self._finish(call, response, read)
        return response

    def sync_generate(self, wrapped: Any, instance: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        return self._sync_call(wrapped, instance, args, kwargs, sc.OP_GENERATE_CONTENT, self._read_content)

    async def async_generate(self, wrapped: Any, instance: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        return await self._async_call(
            wrapped, instance, args, kwargs, sc.OP_GENERATE_CONTENT, self._read_content
        )

    def sync_embed(self, wrapped: Any, instance: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        return self._sync_call(wrapped, instance, args, kwargs, sc.OP_EMBEDDINGS, embed_result_from)

    async def async_embed(self, wrapped: Any, instance: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        return await self._async_call(wrapped, instance, args, kwargs, sc.OP_EMBEDDINGS, embed_result_from)

    # One streamed request.

    def sync_stream(self, wrapped: Any, instance: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        if skip():
            return wrapped(*args, **kwargs)
        call = self._begin(instance, kwargs, sc.OP_GENERATE_CONTENT, True)
        if call is None:
            return wrapped(*args, **kwargs)
        try:
            chunks = wrapped(*args, **kwargs)  # a generator: the request is sent by its first step
        except BaseException as exc:
            call.fail(exc)
            raise
        return _track(
            SyncStreamProxy(chunks, call, ContentAccumulator(self.capture), sends=True), call, chunks
        )

    async def async_stream(self, wrapped: Any, instance: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        if skip():
            return await wrapped(*args, **kwargs)
        call = self._begin(instance, kwargs, sc.OP_GENERATE_CONTENT, True)
        if call is None:
            return await wrapped(*args, **kwargs)
        chunks = await send_async(call, wrapped(*args, **kwargs))
        return _track(AsyncStreamProxy(chunks, call, ContentAccumulator(self.capture)), call, chunks)

    # The caller's stream, only for its lifetime.

    def sync_public_stream(self, wrapped: Any, instance: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        chunks = wrapped(*args, **kwargs)
        if skip():
            return chunks
        try:
            return _SyncStream(chunks)
        except Exception as exc:
            report("google_genai.stream", exc)
            return chunks

    async def async_public_stream(
        self, wrapped: Any, instance: Any, args: Any, kwargs: dict[str, Any]
    ) -> Any:
        chunks = await wrapped(*args, **kwargs)
        if skip():
            return chunks
        try:
            return _AsyncStream(chunks)
        except Exception as exc:
            report("google_genai.stream", exc)
            return chunks


def _track(request: Any, call: LLMCall, chunks: Any) -> Any:
    try:
        scope = _open_requests.get()
        if scope is not None:
            scope.append(request)
        return request
    except Exception as exc:
        report("google_genai.track", exc)
        call.finish(None)
        return chunks


class _SyncStream(ObjectProxy):
    """The generator `generate_content_stream` returned; ends its requests when it ends."""

    def __init__(self, wrapped: Any) -> None:
        super().__init__(wrapped)
        self._self_requests: list[Any] = []
        arm()

    def __iter__(self) -> _SyncStream:
        return self

    def __next__(self) -> Any:
        return self._self_step(self.__wrapped__.__next__)

    def send(self, value: Any) -> Any:
        return self._self_step(self.__wrapped__.send, value)

    def throw(self, *args: Any) -> Any:
        return self._self_step(self.__wrapped__.throw, *args)

    def _self_step(self, step: Callable[..., Any], *args: Any) -> Any:
        token = _open_requests.set(self._self_requests)
        try:
            return step(*args)
        except BaseException:
            self._self_end()
            raise
        finally:
            _open_requests.reset(token)

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            self._self_end()

    def _self_end(self) -> None:
        requests = self._self_requests
        while requests:
            requests.pop()._self_end()

    def __del__(self) -> None:
        try:
            finalise(self._self_end)
        except Exception:
            pass


class _AsyncStream(ObjectProxy):
    """The async generator `generate_content_stream` returned; ends its requests when it ends."""

    def __init__(self, wrapped: Any) -> None:
        super().__init__(wrapped)
        self._self_requests: list[Any] = []
        arm()

    def __aiter__(self) -> _AsyncStream:
        return self

    async def __anext__(self) -> Any:
        token = _open_requests.set(self._self_requests)
        try:
            return await self.__wrapped__.__anext__()
        except BaseException:
            self._self_end()
            raise
        finally:
            _open_requests.reset(token)

    async def asend(self, value: Any) -> Any:
        token = _open_requests.set(self._self_requests)
        try:
            return await self.__wrapped__.asend(value)
        except BaseException:
            self._self_end()
            raise
        finally:
            _open_requests.reset(token)

    async def athrow(self, *args: Any) -> Any:
        token = _open_requests.set(self._self_requests)
        try:
            return await self.__wrapped__.athrow(*args)
        except BaseException:
            self._self_end()
            raise
        finally:
            _open_requests.reset(token)

    async def aclose(self) -> Any:
        try:
            return await self.__wrapped__.aclose()
        finally:
            self._self_end()

    def _self_end(self) -> None:
        requests = self._self_requests
        while requests:
            requests.pop()._self_end()

    def __del__(self) -> None:
        try:
            finalise(self._self_end)
        except Exception:
            pass
