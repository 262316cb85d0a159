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
from ._driver import send, send_async, skip, start
from ._fields import get, jsonable, sampling_attributes
from ._genai_read import ContentAccumulator, embed_result_from, model_name, result_from

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
        self.capture = recorder.options.captures_content

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
