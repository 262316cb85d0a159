"""boto3's `bedrock-runtime` client: Converse, ConverseStream, InvokeModel, InvokeModelWithResponseStream.

One hook, on `botocore.client.BaseClient._make_api_call(operation_name, api_params)`: every method of
every boto3 / botocore client is generated to call it, and it returns the parsed response. botocore is
patched rather than boto3 because clients are botocore's classes (boto3 only builds them) and because
importing boto3 imports botocore, so the lazy patch also happens for applications that import boto3.
Only the four inference operations of the `bedrock-runtime` service are recorded; any other call of any
service is passed on after one membership test on the operation name.

Usage, in the ledger's terms (input inclusive of cache):

- Converse / ConverseStream (`usage`, in a stream the `metadata` event's): `inputTokens` excludes cache
  reads and writes, which come as `cacheReadInputTokens` and `cacheWriteInputTokens`, the latter split
  by time to live in `cacheDetails`.
- InvokeModel: Anthropic bodies carry the Messages API usage (read with the Anthropic provider's
  extractor); for every other family Bedrock's `x-amzn-bedrock-input-token-count` /
  `-output-token-count` (and cache read / write) response headers, or failing those the family's body
  counts (Nova `usage`, Llama `prompt_token_count` / `generation_token_count`). The body is read here
  and the caller handed an equivalent fresh `StreamingBody` of the same bytes.
- InvokeModelWithResponseStream: Anthropic's `message_start` / `message_delta` usage, else the last
  chunk's `amazon-bedrock-invocationMetrics`, else the family's own counts.

Streams come back as a botocore `EventStream` inside the response dict (`stream` or `body`); that entry
is replaced by a proxy of it, so the caller iterates (and closes) it unchanged and its span ends once.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from .. import semconv as sc
from ..config import Options
from ..recorder import CallRequest, LLMCall, Recorder
from ..streams import Accumulator, SyncStreamProxy
from ._bedrock_read import (
    ConverseStreamAccumulator,
    InvokeStreamAccumulator,
    converse_result,
    foundation_model,
    invoke_result,
)
from ._driver import Args, CallHooks, Kwargs, Plan
from ._fields import get, sampling_attributes

LIBRARY = "botocore"
TARGET = ("botocore.client", "BaseClient._make_api_call")

SERVICE = "bedrock-runtime"
PROVIDER_BEDROCK = "aws.bedrock"
CONVERSE = "Converse"
CONVERSE_STREAM = "ConverseStream"
INVOKE = "InvokeModel"
INVOKE_STREAM = "InvokeModelWithResponseStream"
OPERATIONS = frozenset((CONVERSE, CONVERSE_STREAM, INVOKE, INVOKE_STREAM))
STREAMING = frozenset((CONVERSE_STREAM, INVOKE_STREAM))

# --- the request -----------------------------------------------------------------------------


def invoke_body(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The InvokeModel request body as JSON, when the caller gave it as bytes or text (not a file)."""
    body = params.get("body")
    if not isinstance(body, bytes | bytearray | str):
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _messages(system: Any, messages: Any) -> list[Any] | None:
    if not isinstance(messages, list):
        return None
    head = [{"role": "system", "content": system}] if isinstance(system, str | list) and system else []
    return [*head, *messages]


def describe_request(
    operation: str, params: Mapping[str, Any], capture_content: bool, provider: str = PROVIDER_BEDROCK
) -> CallRequest:
    model = params.get("modelId")
    req = CallRequest(
        operation=sc.OP_CHAT,
        provider=provider,
        model=model if isinstance(model, str) and model else None,
        stream=operation in STREAMING,
    )
    if operation in (CONVERSE, CONVERSE_STREAM):
        config = params.get("inferenceConfig")
        if isinstance(config, Mapping):
            req.attributes = sampling_attributes(config.get("maxTokens"), config.get("temperature"))
        if capture_content:
            req.input_messages = _messages(params.get("system"), params.get("messages"))
        return req
    body = invoke_body(params)
    if body is None:
        return req
    config = body.get("inferenceConfig")  # Nova
    if isinstance(config, Mapping):
        req.attributes = sampling_attributes(config.get("maxTokens"), config.get("temperature"))
    else:  # Anthropic `max_tokens`, Llama `max_gen_len`
        max_tokens = body.get("max_tokens", body.get("max_gen_len"))
        req.attributes = sampling_attributes(max_tokens, body.get("temperature"))
    if capture_content:
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            req.input_messages = [{"role": "user", "content": prompt}]
        else:
            req.input_messages = _messages(body.get("system"), body.get("messages"))
    return req


def _endpoint(client: Any) -> tuple[str | None, int | None]:
    url = getattr(getattr(client, "meta", None), "endpoint_url", None)
    if not isinstance(url, str):
        return None, None
    parts = urlsplit(url)
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def _service_name(client: Any) -> Any:
    return getattr(getattr(getattr(client, "meta", None), "service_model", None), "service_name", None)


# --- hooks -----------------------------------------------------------------------------------


def build_wrappers(recorder: Recorder, options: Options) -> dict[tuple[str, str], Callable[..., Any]]:
    hooks = BedrockHooks(recorder, options.endpoints)

    def make_api_call(wrapped: Callable[..., Any], instance: Any, args: Args, kwargs: Kwargs) -> Any:
        operation = args[0] if args else kwargs.get("operation_name")
        if operation.__class__ is not str or operation not in OPERATIONS:
            return wrapped(*args, **kwargs)
        return hooks.sync_call(wrapped, instance, args, kwargs)

    return {TARGET: make_api_call}


class EventStreamProxy(SyncStreamProxy):
    """A botocore `EventStream`: iterable (its `__iter__` is a generator) but not an iterator itself."""

    def __init__(self, wrapped: Any, call: LLMCall, acc: Accumulator) -> None:
        super().__init__(wrapped, call, acc)
        self._self_next = iter(wrapped).__next__

    def __enter__(self) -> EventStreamProxy:
        # An EventStream is no context manager: `with` fails as it would without the proxy.
        if not hasattr(type(self.__wrapped__), "__enter__"):
            name = type(self.__wrapped__).__name__
            raise TypeError(f"{name!r} object does not support the context manager protocol")
        return super().__enter__()  # type: ignore[return-value]


class _FailedRead(io.RawIOBase):
    """The body of a response whose reading failed: reading it again raises the same error."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self._error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise self._error

    def read(self, size: int | None = -1) -> bytes:
        raise self._error


def _streaming_body_class() -> Any:
    from botocore.response import StreamingBody  # type: ignore[import-untyped]

    return StreamingBody


class BedrockHooks(CallHooks):
    """The wrapper installed on botocore, bound to one recorder and its options."""

    site = "bedrock"

    def __init__(self, recorder: Recorder, endpoints: Mapping[str, str]) -> None:
        self.rec = recorder
        self.endpoints = endpoints
        self.capture = recorder.options.captures_content
        self._price_models: dict[tuple[str, str], str | None] = {}

    def begin(self, instance: Any, args: Args, kwargs: Kwargs) -> tuple[Plan | None, Args, Kwargs]:
        if _service_name(instance) != SERVICE:
            return None, args, kwargs
        operation = args[0] if args else kwargs["operation_name"]
        params = args[1] if len(args) > 1 else kwargs.get("api_params")
        if not isinstance(params, Mapping):
            return None, args, kwargs
        host, port = _endpoint(instance)
        provider = self.endpoints.get(host, PROVIDER_BEDROCK) if host else PROVIDER_BEDROCK
        req = describe_request(operation, params, self.capture, provider)
        req.server_address, req.server_port = host, port
        return Plan(self.rec.start(req), operation, req.stream), args, kwargs

    def price_model(self, provider: str, model: str | None) -> str | None:
        """The model id to price a call by when the one the caller sent has no price, else None.

        genai-prices knows Bedrock's ids with their cross-region profile prefixes (a `global.` profile
        has a price of its own); an id it does not know, such as a profile of a model it lists only
        without one, is priced as the foundation model (`apac.x.y-v1:0` -> `x.y-v1:0`). Overrides win.
        """
        if not model:
            return None
        key = (provider, model)
        if key in self._price_models:
            return self._price_models[key]
        base = foundation_model(model)
        found = None
        pricer = self.rec.pricer
        if base != model and not pricer.knows(provider, model) and pricer.knows(provider, base):
            found = base
        if len(self._price_models) >= 1024:  # bounded: model ids come from the application
            self._price_models.clear()
        self._price_models[key] = found
        return found

    def handle(self, plan: Plan, result: Any, is_async: bool) -> Any:
        call = plan.call
        if not isinstance(result, dict):
            call.finish(None)
            return result
        price_model = self.price_model(call.req.provider, call.req.model)
        if plan.kind == CONVERSE:
            call.finish(converse_result(result, self.capture, price_model))
        elif plan.kind == CONVERSE_STREAM:
            acc = ConverseStreamAccumulator(self.capture, price_model)
            self._wrap_stream(call, result, "stream", acc)
        elif plan.kind == INVOKE_STREAM:
            self._wrap_stream(call, result, "body", InvokeStreamAccumulator(self.capture, price_model))
        else:
            self._finish_invoke(call, result, price_model)
        return result

    @staticmethod
    def _wrap_stream(call: LLMCall, result: dict[str, Any], key: str, acc: Accumulator) -> None:
        stream = result.get(key)
        if stream is None:
            call.finish(None)
            return
        result[key] = EventStreamProxy(stream, call, acc)

    def _finish_invoke(self, call: LLMCall, result: dict[str, Any], price_model: str | None) -> None:
        """End an InvokeModel call, reading its one-shot JSON body and handing the caller a fresh one."""
        headers = get(result.get("ResponseMetadata"), "HTTPHeaders")
        body = result.get("body")
        content_type = result.get("contentType")
        parsed: Any = None
        streaming_body = _streaming_body_class()
        if isinstance(content_type, str) and "json" in content_type and isinstance(body, streaming_body):
            try:
                data = body.read()
            except Exception as exc:  # the caller's own read would have raised it: it still does
                result["body"] = streaming_body(_FailedRead(exc), None)
                call.fail(exc)
                return
            except BaseException as exc:
                call.fail(exc)
                raise
            result["body"] = streaming_body(io.BytesIO(data), len(data))
            try:
                parsed = json.loads(data)
            except ValueError:
                parsed = None
        call.finish(invoke_result(parsed, headers, self.capture, price_model))
