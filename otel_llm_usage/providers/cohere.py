"""The cohere SDK (5.16 and later, 6.x, 7.x): v2 chat, chat streams and embed, sync and async.

Hooked: `RawV2Client.chat`, `.chat_stream` and `.embed` and their `AsyncRawV2Client` twins
(`cohere.v2.raw_client`). Every v2 entry point sends through them: the methods of `ClientV2` and
`AsyncClientV2`, `client.v2` of the v1 clients, and `with_raw_response`. Each is one HTTP request
(retries of a plain call happen inside it, so they stay one call with one span). The v1 API
(`Client.chat`, `/v1/chat`) is not recorded.

Why there and not higher: `cohere.Client.__init__`, which `ClientV2` runs, binds `chat` and
`chat_stream` onto each instance (wrapped in its experimental-argument warning), so a patch on
`V2Client` would miss every client built before `instrument()`; the raw client is looked up on every
call. Why not lower (`cohere.core.http_client`): it carries bytes, while the raw client hands back
parsed responses and events. `chat_stream` there is a context manager whose entry sends the request:
entering it starts the span (current while the request is sent) and the event iterator it yields
(`HttpResponse.data`) is wrapped, so the span ends exactly once on exhaustion, an error while
iterating (cancellation included), `close()`/`aclose()` or leaving the context (which is how the
public `chat_stream` generator ends when closed, broken out of and closed, or collected), or
garbage collection of the iterator. An async `chat_stream` generator abandoned without `aclose()`
is closed by the event loop's async-generator finaliser, and its span ends then.

Platform clients: `BedrockClientV2`, `SagemakerClientV2` and `OciClientV2` send the same calls, but
rewrite each request in httpx event hooks into AWS's or Oracle's API, which bill them, and convert
their responses back (Bedrock's into v1 shapes, with counts from AWS headers). Their calls are not
recorded: they are recognised by those hooks and passed through untouched, never reported as `cohere`.

Usage: a v2 response carries `usage.billed_units` (what Cohere bills), `usage.tokens` (what the
model processed, including the chat template and preamble Cohere adds and does not bill) and
sometimes `usage.cached_tokens` (prompt tokens that hit Cohere's inference cache, counted over the
whole processed prompt: it can exceed the billed input). The ledger is `billed_units`: input =
`billed_units.input_tokens`, output = `billed_units.output_tokens`, so the cost is what Cohere bills
and `gen_ai.usage.input_tokens` counts the caller's input as for other providers. `tokens` is used
only when `billed_units` has no counts (a deployment that bills nothing). `cached_tokens` is not
made a cache-read bucket: it is a part of `tokens`, not of the billed input, and the price table
has no cache price for Cohere. Embeddings read `meta.billed_units.input_tokens` the same way; the
`images` and `image_tokens` counts of image embeddings are not read.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from .. import semconv as sc
from .._guard import report
from .._proxy import ObjectProxy
from ..config import Options
from ..recorder import CallRequest, CallResult, LLMCall, Recorder
from ..streams import AsyncStreamProxy, SyncStreamProxy, end
from ..usage import TokenUsage, as_count
from ._driver import Args, CallHooks, Kwargs, Plan, send, send_async, skip, start
from ._fields import get, get_str, jsonable, sampling_attributes

LIBRARY = "cohere"
_RAW = "cohere.v2.raw_client"
CHAT = (_RAW, "RawV2Client.chat")
CHAT_STREAM = (_RAW, "RawV2Client.chat_stream")
EMBED = (_RAW, "RawV2Client.embed")
ASYNC_CHAT = (_RAW, "AsyncRawV2Client.chat")
ASYNC_CHAT_STREAM = (_RAW, "AsyncRawV2Client.chat_stream")
ASYNC_EMBED = (_RAW, "AsyncRawV2Client.embed")
TARGETS = (CHAT, CHAT_STREAM, EMBED, ASYNC_CHAT, ASYNC_CHAT_STREAM, ASYNC_EMBED)

PROVIDER_COHERE = "cohere"
# Modules of the SDK whose httpx request hooks send a call to another platform's API.
PLATFORM_HOOK_MODULES = frozenset({"cohere.aws_client", "cohere.oci_client"})


# --- pure extraction -------------------------------------------------------------------------


def _readable(value: object) -> bool:
    return as_count(value) > 0 or (value == 0 and not isinstance(value, bool))


def _has_counts(units: Any) -> bool:
    return _readable(get(units, "input_tokens")) or _readable(get(units, "output_tokens"))


def usage_from(usage: Any) -> TokenUsage | None:
    """Normalise a v2 `usage` (or an embedding's `meta`), an SDK object or its JSON, into the ledger.

    `billed_units` is what Cohere bills and is the ledger; `tokens` (which also counts the prompt
    template Cohere adds) stands in only when `billed_units` has no counts. Neither has a cache or
    reasoning split that is billed differently.
    """
    if usage is None:
        return None
    units = get(usage, "billed_units")
    if not _has_counts(units):
        units = get(usage, "tokens")
        if not _has_counts(units):
            return None
    return TokenUsage.normalised(
        input=as_count(get(units, "input_tokens")), output=as_count(get(units, "output_tokens"))
    )


def finish_reason_text(reason: Any) -> str | None:
    """`COMPLETE` -> "complete", `MAX_TOKENS` -> "max_tokens", `TOOL_CALL` -> "tool_call"."""
    return reason.lower() if isinstance(reason, str) and reason else None


def _text_of(message: Any) -> str:
    content = get(message, "content")
    if not isinstance(content, list):
        return ""
    return "".join(
        text for item in content if get(item, "type") == "text" and isinstance(text := get(item, "text"), str)
    )


def result_from(response: Any, capture_content: bool = False) -> CallResult:
    """Read a `V2ChatResponse`, or its JSON."""
    reason = finish_reason_text(get(response, "finish_reason"))
    output = None
    if capture_content:
        output = [
            {"role": "assistant", "content": _text_of(get(response, "message")), "finish_reason": reason}
        ]
    return CallResult(
        response_id=get_str(response, "id"),
        finish_reasons=[reason] if reason else None,
        usage=usage_from(get(response, "usage")),
        output_messages=output,
    )


def embed_result_from(response: Any) -> CallResult:
    """Read an `EmbedByTypeResponse` (or its JSON): its usage is in `meta`."""
    return CallResult(response_id=get_str(response, "id"), usage=usage_from(get(response, "meta")))


class ChatStreamAccumulator:
    """v2 chat stream events: the id from `message-start`, finish reason and usage from `message-end`."""

    __slots__ = ("complete", "id", "reason", "text", "usage")

    def __init__(self, capture_content: bool) -> None:
        self.complete = False
        self.id: str | None = None
        self.reason: str | None = None
        self.usage: Any = None
        self.text: list[str] | None = [] if capture_content else None

    def add(self, event: Any) -> bool:
        etype = getattr(event, "type", None)
        if etype == "content-delta":
            if self.text is not None:
                piece = get(get(get(get(event, "delta"), "message"), "content"), "text")
                if isinstance(piece, str):
                    self.text.append(piece)
        elif etype == "message-start":
            self.id = get_str(event, "id")
        elif etype == "message-end":
            delta = getattr(event, "delta", None)
            self.usage = get(delta, "usage")
            self.reason = finish_reason_text(get(delta, "finish_reason"))
            self.id = self.id or get_str(event, "id")
            self.complete = True
        return False

    def result(self) -> CallResult:
        output = None
        if self.text is not None:
            output = [{"role": "assistant", "content": "".join(self.text), "finish_reason": self.reason}]
        return CallResult(
            response_id=self.id,
            finish_reasons=[self.reason] if self.reason else None,
            usage=usage_from(self.usage),
            output_messages=output,
        )


# --- request description ---------------------------------------------------------------------


def is_platform_client(raw_client: Any) -> bool:
    """Whether the client sends to Bedrock, SageMaker or OCI: the SDK installs its rewriting hooks."""
    wrapper = getattr(raw_client, "_client_wrapper", None)
    http = getattr(getattr(wrapper, "httpx_client", None), "httpx_client", None)
    hooks = getattr(http, "event_hooks", None)
    if not isinstance(hooks, Mapping):
        return False
    return any(
        getattr(hook, "__module__", None) in PLATFORM_HOOK_MODULES for hook in hooks.get("request", ())
    )


def describe_request(
    raw_client: Any,
    kwargs: Mapping[str, Any],
    operation: str,
    stream: bool,
    capture_content: bool,
    endpoints: Mapping[str, str],
) -> CallRequest | None:
    """The call a raw client is about to send, or None for a call not to record (a platform client)."""
    if is_platform_client(raw_client):
        return None
    host: str | None = None
    port: int | None = None
    base_url = raw_client._client_wrapper.get_base_url()
    if isinstance(base_url, str) and base_url:
        parts = urlsplit(base_url)
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
    model = kwargs.get("model")
    chat = operation == sc.OP_CHAT
    req = CallRequest(
        operation=operation,
        provider=endpoints.get(host or "", PROVIDER_COHERE),
        model=model if isinstance(model, str) and model else None,
        stream=stream,
        server_address=host,
        server_port=port,
        # An unset argument is the SDK's OMIT sentinel (`...`): not an int, so not read.
        attributes=sampling_attributes(kwargs.get("max_tokens"), kwargs.get("temperature")) if chat else None,
    )
    messages = kwargs.get("messages")
    # Only a list is read: anything else may be a one-shot iterable the SDK has yet to consume.
    if capture_content and chat and isinstance(messages, list | tuple):
        req.input_messages = jsonable(messages)
    return req


# --- hooks -----------------------------------------------------------------------------------


def build_wrappers(recorder: Recorder, options: Options) -> dict[tuple[str, str], Callable[..., Any]]:
    try:
        raw_client = importlib.util.find_spec(_RAW)
    except ImportError:
        raw_client = None
    if raw_client is None:
        report(
            "cohere: this release has no cohere.v2.raw_client (5.16 or later is needed)", LookupError(_RAW)
        )
        return {}
    chat = CohereHooks(recorder, options.endpoints, sc.OP_CHAT)
    embed = CohereHooks(recorder, options.endpoints, sc.OP_EMBEDDINGS)
    streams = ChatStreamHooks(recorder, options.endpoints)
    return {
        CHAT: chat.sync_call,
        CHAT_STREAM: streams.sync_chat_stream,
        EMBED: embed.sync_call,
        ASYNC_CHAT: chat.async_call,
        ASYNC_CHAT_STREAM: streams.async_chat_stream,
        ASYNC_EMBED: embed.async_call,
    }


class CohereHooks(CallHooks):
    """`chat` or `embed` of a raw client: one call, its parsed body in the returned `HttpResponse`."""

    site = "cohere"

    def __init__(self, recorder: Recorder, endpoints: Mapping[str, str], operation: str) -> None:
        self.rec = recorder
        self.endpoints = endpoints
        self.operation = operation
        self.capture = recorder.options.captures_content

    def begin(self, instance: Any, args: Args, kwargs: Kwargs) -> tuple[Plan | None, Args, Kwargs]:
        req = describe_request(instance, kwargs, self.operation, False, self.capture, self.endpoints)
        if req is None:
            return None, args, kwargs
        return Plan(self.rec.start(req)), args, kwargs

    def handle(self, plan: Plan, result: Any, is_async: bool) -> Any:
        data = getattr(result, "data", None)
        if self.operation == sc.OP_EMBEDDINGS:
            plan.call.finish(embed_result_from(data))
        else:
            plan.call.finish(result_from(data, self.capture))
        return result


class ChatStreamHooks:
    """`chat_stream` of a raw client: the context manager it returns is wrapped, nothing is sent yet."""

    def __init__(self, recorder: Recorder, endpoints: Mapping[str, str]) -> None:
        self.rec = recorder
        self.endpoints = endpoints
        self.capture = recorder.options.captures_content

    def sync_chat_stream(self, wrapped: Any, instance: Any, args: Args, kwargs: Kwargs) -> Any:
        manager = wrapped(*args, **kwargs)
        try:
            return _StreamManager(manager, self, instance, kwargs)
        except Exception as exc:
            report("cohere.stream", exc)
            return manager

    def async_chat_stream(self, wrapped: Any, instance: Any, args: Args, kwargs: Kwargs) -> Any:
        manager = wrapped(*args, **kwargs)
        try:
            return _AsyncStreamManager(manager, self, instance, kwargs)
        except Exception as exc:
            report("cohere.stream", exc)
            return manager

    def start(self, raw_client: Any, kwargs: Kwargs) -> LLMCall | None:
        """Start the call of a stream being entered, or None to pass it through untouched."""
        if skip():
            return None
        return start("cohere", self._start, raw_client, kwargs)

    def _start(self, raw_client: Any, kwargs: Kwargs) -> LLMCall | None:
        req = describe_request(raw_client, kwargs, sc.OP_CHAT, True, self.capture, self.endpoints)
        return None if req is None else self.rec.start(req)

    def wrap(self, call: LLMCall, response: Any, is_async: bool) -> tuple[Any, ChatStreamAccumulator | None]:
        """The `HttpResponse` the caller gets, its `data` (the events) read as they pass."""
        try:
            acc = ChatStreamAccumulator(self.capture)
            events = response.data
            proxy = AsyncStreamProxy(events, call, acc) if is_async else SyncStreamProxy(events, call, acc)
            return _StreamResponse(response, proxy), acc
        except Exception as exc:
            report("cohere.stream_response", exc)
            call.finish(None)
            return response, None


def _end(call: LLMCall | None, acc: ChatStreamAccumulator | None) -> None:
    """End a stream's call when its context is left, if its events have not ended it already."""
    if call is not None:
        end(call, acc)


class _StreamResponse(ObjectProxy):
    """The `HttpResponse` of a stream, whose `data` is the instrumented event iterator."""

    def __init__(self, wrapped: Any, events: Any) -> None:
        super().__init__(wrapped)
        self._self_events = events

    @property
    def data(self) -> Any:
        return self._self_events


class _ManagerProxy(ObjectProxy):
    """What the stream managers below hold: the call is started and sent when one is entered."""

    def __init__(self, wrapped: Any, hooks: ChatStreamHooks, raw_client: Any, kwargs: Kwargs) -> None:
        super().__init__(wrapped)
        self._self_hooks = hooks
        self._self_client = raw_client
        self._self_kwargs = kwargs
        self._self_call: LLMCall | None = None
        self._self_acc: ChatStreamAccumulator | None = None


class _StreamManager(_ManagerProxy):
    """The context manager `RawV2Client.chat_stream` returns: entering it sends the request."""

    def __enter__(self) -> Any:
        call = self._self_hooks.start(self._self_client, self._self_kwargs)
        if call is None:
            return self.__wrapped__.__enter__()
        self._self_call = call
        response = send(call, self.__wrapped__.__enter__, (), {})
        wrapped, self._self_acc = self._self_hooks.wrap(call, response, False)
        return wrapped

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            _end(self._self_call, self._self_acc)


class _AsyncStreamManager(_ManagerProxy):
    """The async context manager `AsyncRawV2Client.chat_stream` returns: entering it sends the request."""

    async def __aenter__(self) -> Any:
        call = self._self_hooks.start(self._self_client, self._self_kwargs)
        if call is None:
            return await self.__wrapped__.__aenter__()
        self._self_call = call
        response = await send_async(call, self.__wrapped__.__aenter__())
        wrapped, self._self_acc = self._self_hooks.wrap(call, response, True)
        return wrapped

    async def __aexit__(self, *exc_info: Any) -> Any:
        # Ended before the SDK closes the HTTP response: an abandoned stream's span need not wait for it.
        _end(self._self_call, self._self_acc)
        return await self.__wrapped__.__aexit__(*exc_info)
