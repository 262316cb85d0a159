"""The mistralai SDK (1.x, and 2.x/3.x under `mistralai.client`): chat, FIM, agents and embeddings.

The hooks sit on the SDK's resource methods: `Chat.complete` / `stream`, `Fim.complete` / `stream`,
`Agents.complete` / `stream` (each with its `_async` twin) and `Embeddings.create` / `create_async`.
Each of them sends exactly one request (the SDK's retries included) and takes only keyword
arguments, so the model and messages are read as the caller gave them, the parsed response or the
`EventStream` / `EventStreamAsync` the caller iterates is what the method returns, and the SDK's
own exceptions (`SDKError`, `HTTPValidationError`) pass through it. The `parse` helpers call
`complete` / `stream` and so are recorded once. `BaseSDK.do_request` was the alternative: it sees
every operation, but only the raw HTTP response, before the SDK builds the stream or raises its
error, so reading a call there would mean decoding the body a second time.

From 2.0 `mistralai` is a namespace package, whose import fires no post-import hook: the
instrumentor then waits for `mistralai.client`, where the SDK lives. 1.x keeps it in `mistralai`.

The SDK traces its own calls only when the application turns its telemetry on (`MISTRAL_SDK_TELEMETRY`
or `configure_telemetry`); its span then nests under the call's span.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from .. import semconv as sc
from ..config import Options
from ..recorder import CallRequest, CallResult, Recorder
from ..streams import AsyncStreamProxy, SyncStreamProxy
from ..usage import TokenUsage, as_count
from ._driver import Args, CallHooks, Kwargs, Plan
from ._fields import get, get_str, jsonable, sampling_attributes

PROVIDER = "mistral_ai"


def sdk_package() -> str:
    """Where the SDK's resources live, found without importing it: a regular `mistralai` package
    is 1.x, a namespace one (or none) is 2.x and later."""
    try:
        spec = importlib.util.find_spec("mistralai")
    except (ImportError, ValueError):
        return "mistralai.client"
    return "mistralai" if spec is not None and spec.origin is not None else "mistralai.client"


LIBRARY = sdk_package()

# (module, class, operation, {method: streams}); each method also has its `_async` twin.
RESOURCES: tuple[tuple[str, str, str, dict[str, bool]], ...] = (
    ("chat", "Chat", sc.OP_CHAT, {"complete": False, "stream": True}),
    ("fim", "Fim", sc.OP_TEXT_COMPLETION, {"complete": False, "stream": True}),
    ("agents", "Agents", sc.OP_CHAT, {"complete": False, "stream": True}),
    ("embeddings", "Embeddings", sc.OP_EMBEDDINGS, {"create": False}),
)


# --- pure extraction -------------------------------------------------------------------------


def _readable(value: object) -> bool:
    return as_count(value) > 0 or (value == 0 and not isinstance(value, bool))


def cached_tokens(usage: Any) -> int:
    """Prompt tokens read from the prompt cache (billed at a tenth of the input price).

    The API reports them as `prompt_tokens_details.cached_tokens`; some responses spell the
    details `prompt_token_details`, and older ones give a top-level `num_cached_tokens`.
    """
    for details in ("prompt_tokens_details", "prompt_token_details"):
        count = as_count(get(get(usage, details), "cached_tokens"))
        if count:
            return count
    return as_count(get(usage, "num_cached_tokens"))


def usage_from(usage: Any) -> TokenUsage | None:
    """Normalise a Mistral `UsageInfo` (or its JSON) into the ledger.

    `prompt_tokens` includes the cached prompt tokens; `completion_tokens` includes any thinking
    of reasoning models, which the API does not count separately. Embeddings report only
    `prompt_tokens`.
    """
    if usage is None:
        return None
    prompt = get(usage, "prompt_tokens")
    completion = get(usage, "completion_tokens")
    if not _readable(prompt) and not _readable(completion):
        return None
    return TokenUsage.normalised(
        input=as_count(prompt), output=as_count(completion), cache_read=cached_tokens(usage)
    )


def _text(value: Any) -> str | None:
    """A finish reason as text, from a plain string or an enum member."""
    raw = getattr(value, "value", value)
    return raw if isinstance(raw, str) and raw else None


def content_text(content: Any) -> str | None:
    """The text of a message's content: a string, or the `text` chunks of a list (thinking left out)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return None
    parts = [get(chunk, "text") for chunk in content if get(chunk, "type") == "text"]
    return "".join(p for p in parts if isinstance(p, str))


def result_from(response: Any, capture_content: bool = False) -> CallResult:
    """Read a `ChatCompletionResponse`, `FIMCompletionResponse` or `EmbeddingResponse` (or its JSON)."""
    reasons: list[str] = []
    output: list[dict[str, Any]] | None = [] if capture_content else None
    choices = get(response, "choices")
    if isinstance(choices, list):
        for choice in choices:
            reason = _text(get(choice, "finish_reason"))
            if reason:
                reasons.append(reason)
            if output is not None:
                content = content_text(get(get(choice, "message"), "content"))
                output.append({"role": "assistant", "content": content, "finish_reason": reason})
    return CallResult(
        response_model=get_str(response, "model"),
        response_id=get_str(response, "id"),
        finish_reasons=reasons or None,
        usage=usage_from(get(response, "usage")),
        output_messages=output or None,
    )


class ChunkAccumulator:
    """`CompletionEvent`s of a stream: the last chunk carries the finish reason and the usage."""

    __slots__ = ("complete", "id", "model", "reasons", "text", "usage")

    def __init__(self, capture_content: bool) -> None:
        self.complete = False
        self.id: str | None = None
        self.model: str | None = None
        self.reasons: dict[int, str] | None = None
        self.usage: Any = None
        self.text: list[str] | None = [] if capture_content else None

    def add(self, event: Any) -> bool:
        chunk = getattr(event, "data", None)
        if chunk is None:
            return False
        if self.id is None:
            self.id = getattr(chunk, "id", None)
            self.model = getattr(chunk, "model", None)
        choices = chunk.choices
        if choices:
            for position, choice in enumerate(choices):
                index = choice.index
                if not isinstance(index, int):
                    index = position
                reason = choice.finish_reason
                if reason is not None:
                    if self.reasons is None:
                        self.reasons = {}
                    self.reasons[index] = _text(reason) or ""
                if self.text is not None and index == 0:
                    piece = content_text(getattr(choice.delta, "content", None))
                    if piece:
                        self.text.append(piece)
        usage = chunk.usage
        if usage is not None:
            self.usage = usage
            self.complete = True
        return False

    def result(self) -> CallResult:
        reasons = [r for _, r in sorted(self.reasons.items()) if r] if self.reasons else None
        output = None
        if self.text is not None:
            output = [{"role": "assistant", "content": "".join(self.text)}]
        return CallResult(
            response_model=self.model if isinstance(self.model, str) and self.model else None,
            response_id=self.id if isinstance(self.id, str) and self.id else None,
            finish_reasons=reasons or None,
            usage=usage_from(self.usage),
            output_messages=output,
        )


# --- request description ---------------------------------------------------------------------


def _request_attributes(kwargs: Kwargs) -> dict[str, Any] | None:
    attrs = sampling_attributes(kwargs.get("max_tokens"), kwargs.get("temperature")) or {}
    agent_id = kwargs.get("agent_id")
    if isinstance(agent_id, str) and agent_id:
        attrs[sc.AGENT_ID] = agent_id
    return attrs or None


def input_content(kwargs: Kwargs, operation: str) -> Any:
    """What the caller sent, for content capture. Only strings and lists are read: `messages` and
    `inputs` may be one-shot iterables the SDK has yet to consume."""
    if operation == sc.OP_TEXT_COMPLETION:
        prompt, suffix = kwargs.get("prompt"), kwargs.get("suffix")
        sent = {"prompt": prompt, "suffix": suffix if isinstance(suffix, str) else None}
        return {k: v for k, v in sent.items() if v is not None} if isinstance(prompt, str) else None
    value = kwargs.get("inputs") if operation == sc.OP_EMBEDDINGS else kwargs.get("messages")
    if isinstance(value, str | list | tuple):
        return jsonable(value, by_alias=True)
    return None


def server_of(sdk: Any, server_url: Any) -> tuple[str | None, int | None]:
    """Host and port the call goes to: the method's `server_url`, else the client's server."""
    if not isinstance(server_url, str) or not server_url:
        server_url = sdk.sdk_configuration.get_server_details()[0]
    parts = urlsplit(server_url if isinstance(server_url, str) else "")
    if not parts.hostname:
        return None, None
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def describe_request(
    sdk: Any,
    kwargs: Kwargs,
    operation: str,
    stream: bool,
    capture_content: bool,
    endpoints: Mapping[str, str],
) -> CallRequest:
    host, port = server_of(sdk, kwargs.get("server_url"))
    model = kwargs.get("model")
    req = CallRequest(
        operation=operation,
        provider=endpoints.get(host, PROVIDER) if host else PROVIDER,
        model=model if isinstance(model, str) and model else None,
        stream=stream,
        server_address=host,
        server_port=port,
        attributes=_request_attributes(kwargs),
    )
    if capture_content:
        req.input_messages = input_content(kwargs, operation)
    return req


# --- hooks -----------------------------------------------------------------------------------


def targets(package: str) -> dict[tuple[str, str], tuple[str, bool, bool]]:
    """(module, "Class.method") -> (operation, streams, is async), for the resources this SDK has."""
    out: dict[tuple[str, str], tuple[str, bool, bool]] = {}
    for module, cls, operation, methods in RESOURCES:
        name = f"{package}.{module}"
        try:
            if importlib.util.find_spec(name) is None:
                continue
        except (ImportError, ValueError):  # a `mistralai.client` that is a module (0.x, 1.x), not a package
            continue
        for method, stream in methods.items():
            out[(name, f"{cls}.{method}")] = (operation, stream, False)
            out[(name, f"{cls}.{method}_async")] = (operation, stream, True)
    return out


def build_wrappers(recorder: Recorder, options: Options) -> dict[tuple[str, str], Callable[..., Any]]:
    wrappers: dict[tuple[str, str], Callable[..., Any]] = {}
    for target, (operation, stream, is_async) in targets(sdk_package()).items():
        hooks = MistralHooks(recorder, options.endpoints, operation, stream)
        wrappers[target] = hooks.async_call if is_async else hooks.sync_call
    return wrappers


class MistralHooks(CallHooks):
    """The wrapper of one resource method, bound to one recorder and its options."""

    site = "mistralai"

    def __init__(
        self, recorder: Recorder, endpoints: Mapping[str, str], operation: str, stream: bool
    ) -> None:
        self.rec = recorder
        self.endpoints = endpoints
        self.operation = operation
        self.stream = stream
        self.capture = recorder.options.captures_content

    def begin(self, instance: Any, args: Args, kwargs: Kwargs) -> tuple[Plan | None, Args, Kwargs]:
        req = describe_request(instance, kwargs, self.operation, self.stream, self.capture, self.endpoints)
        return Plan(self.rec.start(req), stream=self.stream), args, kwargs

    def handle(self, plan: Plan, result: Any, is_async: bool) -> Any:
        if plan.stream:
            proxy = AsyncStreamProxy if is_async else SyncStreamProxy
            return proxy(result, plan.call, ChunkAccumulator(self.capture))
        plan.call.finish(result_from(result, self.capture))
        return result
