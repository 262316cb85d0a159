"""Pure extraction for google-genai: `GenerateContentResponse`, its stream chunks and embeddings
(SDK objects or their raw JSON) into the ledger and `CallResult`."""

from __future__ import annotations

import json
from typing import Any

from ..recorder import CallResult
from ..usage import TokenUsage, as_count
from ._fields import get, get_str


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
