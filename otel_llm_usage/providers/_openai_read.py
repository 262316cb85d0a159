"""Pure extraction for the openai SDK and OpenAI-compatible APIs: chat, legacy completion,
embeddings and responses objects (or their JSON), and their stream chunks and events, into the
ledger and `CallResult`."""

from __future__ import annotations

from typing import Any

from ..recorder import CallResult
from ..usage import TokenUsage, as_count
from ._fields import as_cost, fields, get, get_str, jsonable

# gen_ai.provider.name -> the field under which its stream chunks carry usage when `usage` is
# absent: Groq sends `x_groq.usage` in its last chunk whether or not the caller asked for usage,
# so its streams have usage with the request unchanged, whichever SDK (groq's or openai's) reads them.
VENDOR_STREAM_USAGE = {"groq": "x_groq"}


def usage_from(usage: Any) -> TokenUsage | None:
    """Normalise an OpenAI usage object (chat, legacy, embeddings or responses) into the ledger.

    Chat: `prompt_tokens` includes `prompt_tokens_details.cached_tokens`; `completion_tokens`
    includes `completion_tokens_details.reasoning_tokens`. Responses: the same with
    `input_tokens` / `output_tokens`. Compatible endpoints add `cache_write_tokens` (OpenRouter)
    or `prompt_cache_hit_tokens` (DeepSeek).
    """
    if usage is None:
        return None
    u = fields(usage)
    prompt = u.get("prompt_tokens")
    if prompt is None:
        prompt = u.get("input_tokens")
    completion = u.get("completion_tokens")
    if completion is None:
        completion = u.get("output_tokens")
    inp, out = as_count(prompt), as_count(completion)
    if inp == 0 and out == 0 and not _is_zero(prompt) and not _is_zero(completion):
        return None
    ins = fields(u.get("prompt_tokens_details") or u.get("input_tokens_details"))
    outs = fields(u.get("completion_tokens_details") or u.get("output_tokens_details"))
    cache_read = as_count(ins.get("cached_tokens")) or as_count(u.get("prompt_cache_hit_tokens"))
    cache_write = as_count(ins.get("cache_write_tokens")) or as_count(ins.get("cache_creation_tokens"))
    return TokenUsage.normalised(
        input=inp,
        output=out,
        cache_read=cache_read,
        cache_write=cache_write,
        reasoning=as_count(outs.get("reasoning_tokens")),
        input_audio=as_count(ins.get("audio_tokens")),
        output_audio=as_count(outs.get("audio_tokens")),
    )


def _is_zero(value: object) -> bool:
    return value == 0 and not isinstance(value, bool)


def _output_messages(response: Any) -> list[dict[str, Any]] | None:
    choices = get(response, "choices")
    if isinstance(choices, list):
        out = []
        for choice in choices:
            message = get(choice, "message")
            content = get(message, "content") if message is not None else get(choice, "text")
            out.append(
                {
                    "role": "assistant",
                    "content": content,
                    "tool_calls": jsonable(get(message, "tool_calls")) if message is not None else None,
                    "finish_reason": get(choice, "finish_reason"),
                }
            )
        return out
    items = get(response, "output")
    if isinstance(items, list):  # a Responses object: message items hold text, others are calls
        blocks: list[Any] = []
        for item in jsonable(items):
            inner = item.get("content") if isinstance(item, dict) and item.get("type") == "message" else None
            blocks.extend(inner if isinstance(inner, list) else [item])
        return [{"role": "assistant", "content": blocks}]
    text = get(response, "output_text")
    if isinstance(text, str):
        return [{"role": "assistant", "content": text}]
    return None


def result_from(response: Any, capture_content: bool = False) -> CallResult:
    """Read a non-streamed response (chat, legacy, embeddings or responses object)."""
    r = fields(response)
    usage = r.get("usage")
    reasons: list[str] = []
    choices = r.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            reason = get_str(choice, "finish_reason")
            if reason:
                reasons.append(reason)
    else:
        status = r.get("status")
        if isinstance(status, str) and status:
            reasons.append(status)
    model, response_id = r.get("model"), r.get("id")
    return CallResult(
        response_model=model if isinstance(model, str) and model else None,
        response_id=response_id if isinstance(response_id, str) and response_id else None,
        finish_reasons=reasons or None,
        usage=usage_from(usage),
        provider_cost=as_cost(get(usage, "cost")),
        output_messages=_output_messages(response) if capture_content else None,
    )


def stream_usage_of(chunk: Any, vendor_field: str | None = None) -> Any:
    """The usage a stream chunk carries: `usage`, else (if given) `<vendor_field>.usage`.

    Groq sends both in its last chunk, with the same counts, when usage was asked for: one is read.
    """
    usage = get(chunk, "usage")
    if usage is None and vendor_field is not None:
        return get(get(chunk, vendor_field), "usage")
    return usage


class ChunkAccumulator:
    """Chat and legacy completion chunks: usage arrives in the last chunk, if asked for (or, for a
    provider in `VENDOR_STREAM_USAGE`, under its own field, asked for or not)."""

    read_usage = staticmethod(usage_from)

    __slots__ = (
        "complete", "cost", "hide_usage_chunk", "id", "model", "reasons", "text", "usage", "vendor_field",
    )  # fmt: skip

    def __init__(
        self, hide_usage_chunk: bool, capture_content: bool, vendor_field: str | None = None
    ) -> None:
        self.complete = False
        self.hide_usage_chunk = hide_usage_chunk
        self.vendor_field = vendor_field
        self.model: str | None = None
        self.id: str | None = None
        self.reasons: list[str] | None = None
        self.usage: Any = None
        self.cost: float | None = None
        self.text: list[str] | None = [] if capture_content else None

    def add(self, chunk: Any) -> bool:
        if self.model is None:
            self.model = getattr(chunk, "model", None)
            self.id = getattr(chunk, "id", None)
        choices = chunk.choices
        if choices:
            choice = choices[0]
            reason = choice.finish_reason
            if reason:
                if self.reasons is None:
                    self.reasons = []
                self.reasons.append(reason)
            if self.text is not None:
                delta = getattr(choice, "delta", None)
                piece = (
                    getattr(delta, "content", None) if delta is not None else getattr(choice, "text", None)
                )
                if piece:
                    self.text.append(piece)
        usage = chunk.usage
        if usage is not None:
            self.usage = usage
            self.complete = True
            return self.hide_usage_chunk and not choices
        if self.hide_usage_chunk:
            # A server asked for usage sends `"usage": null` in every other chunk; unasked, none.
            # Forgetting the key keeps `to_dict()` / `to_json()` what the caller would have had.
            try:
                chunk.__pydantic_fields_set__.discard("usage")
            except AttributeError:  # not a pydantic 2 model: nothing to forget
                pass
        if self.vendor_field is not None and self.usage is None:
            usage = get(get(chunk, self.vendor_field), "usage")
            if usage is not None:  # the caller did not ask for it: the chunk stays theirs
                self.usage = usage
                self.complete = True
        return False

    def result(self) -> CallResult:
        output = None
        if self.text is not None:
            output = [{"role": "assistant", "content": "".join(self.text)}]
        return CallResult(
            response_model=self.model,
            response_id=self.id,
            finish_reasons=self.reasons,
            usage=self.read_usage(self.usage),
            provider_cost=self.cost if self.cost is not None else as_cost(get(self.usage, "cost")),
            output_messages=output,
        )


class ResponsesAccumulator:
    """Responses API events: the final `response.completed` (or `.incomplete`/`.failed`) has it all."""

    __slots__ = ("capture", "complete", "final", "first")

    _FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})

    def __init__(self, capture_content: bool) -> None:
        self.complete = False
        self.final: Any = None
        self.first: Any = None
        self.capture = capture_content

    def add(self, event: Any) -> bool:
        etype = getattr(event, "type", None)
        if etype in self._FINAL:
            self.final = getattr(event, "response", None)
            self.complete = True
        elif self.first is None and etype == "response.created":
            self.first = getattr(event, "response", None)
        return False

    def result(self) -> CallResult:
        if self.final is not None:
            return result_from(self.final, self.capture)
        return CallResult(response_model=get_str(self.first, "model"), response_id=get_str(self.first, "id"))
