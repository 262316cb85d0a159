"""What every SDK generated from the Stainless template (openai, anthropic, groq, ...) hands back.

Their hooks sit on `SyncAPIClient.request` / `AsyncAPIClient.request`, through which every entry
point passes (`create`, `parse`, the `stream()` helpers, `with_raw_response`,
`with_streaming_response`), and they return one of the same few classes: a model object, a
`Stream` / `AsyncStream`, an `APIResponse` / `AsyncAPIResponse` or (openai) a `LegacyAPIResponse`.
`StainlessHooks.handle` turns each into what the caller gets, ending the call now or when the
stream or raw response ends. A provider module supplies `begin` (describe and start the call),
`extract` (a response object or its JSON body, and whether content is captured -> `CallResult`)
and `accumulator` (its stream reader).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any, NamedTuple

from ..recorder import CallResult, LLMCall
from ..streams import (
    Accumulator,
    AsyncRawResponseProxy,
    AsyncStreamProxy,
    RawResponseProxy,
    SyncStreamProxy,
)
from ._driver import CallHooks, Plan
from ._fields import json_body


class SdkClasses(NamedTuple):
    stream: type[Any]
    async_stream: type[Any]
    api_response: type[Any]
    async_api_response: type[Any]
    legacy_response: type[Any] | None  # openai's `with_raw_response` objects; others return APIResponse
    model: type[Any]  # what a plain call returns: checked first, as the common case


@functools.cache
def sdk_classes(library: str) -> SdkClasses:
    """The stream and raw-response classes of a Stainless-generated SDK, looked up once it is in use."""
    sdk = importlib.import_module(library)
    response = importlib.import_module(f"{library}._response")
    try:
        legacy: type[Any] | None = importlib.import_module(f"{library}._legacy_response").LegacyAPIResponse
    except ImportError:
        legacy = None
    models = importlib.import_module(f"{library}._models")
    return SdkClasses(
        sdk.Stream, sdk.AsyncStream, response.APIResponse, response.AsyncAPIResponse, legacy, models.BaseModel
    )


class StainlessHooks(CallHooks):
    """`handle` for a Stainless SDK named by `library`; subclasses add `begin`, `extract`, `accumulator`."""

    library = ""
    capture = False
    # A staticmethod of the provider's pure `result_from`: called without a frame of ours in between.
    extract: Callable[[Any, bool], CallResult]

    def accumulator(self, call: LLMCall, kind: str) -> Accumulator:
        raise NotImplementedError

    def handle(self, plan: Plan, result: Any, is_async: bool) -> Any:
        call, kind = plan.call, plan.kind
        sdk = sdk_classes(self.library)
        if isinstance(result, sdk.model):
            call.finish(self.extract(result, self.capture))
            return result
        if isinstance(result, sdk.stream):
            return SyncStreamProxy(result, call, self.accumulator(call, kind))
        if isinstance(result, sdk.async_stream):
            return AsyncStreamProxy(result, call, self.accumulator(call, kind))
        if sdk.legacy_response is not None and isinstance(result, sdk.legacy_response):
            if not getattr(result, "_stream", False):
                call.finish(self.extract(result.parse(), self.capture))  # parse() caches: no double work
                return result
            return self._raw(RawResponseProxy, result, call, kind)
        if isinstance(result, sdk.api_response | sdk.async_api_response):
            # A plain `with_raw_response` body is read already; a streaming one is read later.
            body = None if call.req.stream else json_body(result.http_response)
            if body is not None:
                call.finish(self.extract(body, self.capture))
                return result
            proxy = AsyncRawResponseProxy if isinstance(result, sdk.async_api_response) else RawResponseProxy
            return self._raw(proxy, result, call, kind)
        call.finish(self.extract(result, self.capture))
        return result

    def _raw(self, proxy: type[RawResponseProxy], raw: Any, call: LLMCall, kind: str) -> Any:
        wrap = functools.partial(self.wrap_parsed, call, kind)
        return proxy(raw, self.site, wrap, functools.partial(self.finish_raw, call))

    def wrap_parsed(self, call: LLMCall, kind: str, parsed: Any) -> Any:
        """What a raw response's `parse()` gives the caller: a stream proxy, or the object, call ended."""
        sdk = sdk_classes(self.library)
        if isinstance(parsed, sdk.stream):
            return SyncStreamProxy(parsed, call, self.accumulator(call, kind))
        if isinstance(parsed, sdk.async_stream):
            return AsyncStreamProxy(parsed, call, self.accumulator(call, kind))
        call.finish(self.extract(parsed, self.capture))
        return parsed

    def finish_raw(self, call: LLMCall, raw: Any) -> None:
        """End a raw response's call: from its body if the caller read it, else as incomplete."""
        if call.done:
            return
        body = None if call.req.stream else json_body(getattr(raw, "http_response", None))
        if body is not None:
            call.finish(self.extract(body, self.capture))
        else:
            call.finish(None, incomplete=True)
