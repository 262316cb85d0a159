"""Fuzzing the anthropic and google-genai extractors with arbitrary and well-formed payloads.

Arbitrary JSON-like payloads (as raw JSON, and as the SDK's own objects built from that JSON the way
each SDK builds them) must never make an extractor raise, and every ledger must satisfy the
`TokenUsage` invariants. Well-formed payloads must give exactly the ledger computed by hand from
the README's mapping (“How each library's usage fields map to the ledger”).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import pydantic
import pytest
from anthropic._models import construct_type
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types import Usage as AnthropicUsage
from google.genai import types as genai
from hypothesis import example, given, settings
from hypothesis import strategies as st

from otel_llm_usage.content import output_messages
from otel_llm_usage.providers import _genai_read as gg
from otel_llm_usage.providers import anthropic as an
from otel_llm_usage.recorder import CallResult
from otel_llm_usage.usage import TokenUsage

# google-genai warns about enum values it does not know and keeps them.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

FUZZ = settings(max_examples=200, deadline=None)
EXACT = settings(max_examples=100, deadline=None)

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(), st.text(max_size=8)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
count = st.integers(0, 10**7)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The well-typed value, or anything a JSON document could hold instead."""
    return st.one_of(strategy, json_values)


def some(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A JSON object with any subset of `fields`."""
    return st.fixed_dictionaries({}, optional=fields)


def check(ledger: TokenUsage | None) -> None:
    if ledger is None:
        return
    assert ledger.valid(), ledger
    assert min(ledger.input, ledger.output, ledger.cache_read, ledger.cache_write, ledger.reasoning) >= 0
    assert ledger.cache_read + ledger.cache_write <= ledger.input
    assert ledger.cache_write_1h <= ledger.cache_write
    assert ledger.reasoning <= ledger.output
    assert ledger.input_audio <= ledger.input and ledger.output_audio <= ledger.output


def check_result(result: CallResult) -> None:
    check(result.usage)
    assert result.response_model is None or isinstance(result.response_model, str)
    assert result.response_id is None or isinstance(result.response_id, str)
    assert result.finish_reasons is None or all(isinstance(r, str) for r in result.finish_reasons)


# --- anthropic -----------------------------------------------------------------------------------

cache_creation = some(ephemeral_5m_input_tokens=maybe(count), ephemeral_1h_input_tokens=maybe(count))
compaction = st.fixed_dictionaries(
    {"type": maybe(st.sampled_from(["compaction", "message"]))},
    optional={
        "input_tokens": maybe(count),
        "output_tokens": maybe(count),
        "cache_read_input_tokens": maybe(count),
        "cache_creation_input_tokens": maybe(count),
        "cache_creation": maybe(cache_creation),
    },
)
anthropic_usage_like = some(
    input_tokens=maybe(count),
    output_tokens=maybe(count),
    cache_read_input_tokens=maybe(count),
    cache_creation_input_tokens=maybe(count),
    cache_creation=maybe(cache_creation),
    output_tokens_details=maybe(some(thinking_tokens=maybe(count))),
    iterations=maybe(st.lists(maybe(compaction), max_size=3)),
    server_tool_use=json_values,
    service_tier=json_values,
)
content_blocks = st.lists(
    maybe(
        st.fixed_dictionaries(
            {"type": maybe(st.sampled_from(["text", "tool_use"])), "text": maybe(st.text())}
        )
    ),
    max_size=3,
)
message_like = some(
    id=json_values,
    type=maybe(st.just("message")),
    model=maybe(st.text(max_size=12)),
    role=json_values,
    content=maybe(content_blocks),
    stop_reason=maybe(st.sampled_from(["end_turn", "max_tokens", "tool_use"])),
    usage=maybe(anthropic_usage_like),
)
EVENT_TYPES = [
    "message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta",
    "message_stop", "ping",
]  # fmt: skip
event_like = some(
    type=maybe(st.sampled_from(EVENT_TYPES)),
    message=maybe(message_like),
    usage=maybe(anthropic_usage_like),
    delta=maybe(
        some(
            type=maybe(st.just("text_delta")),
            text=maybe(st.text(max_size=6)),
            stop_reason=maybe(st.sampled_from(["end_turn", "max_tokens"])),
        )
    ),
    index=json_values,
)


def sdk_event(payload: Any) -> Any:
    """What the SDK hands a stream's reader for one event's JSON (a loose construction, no validation)."""
    return construct_type(type_=RawMessageStreamEvent, value=payload)


@FUZZ
@given(st.one_of(anthropic_usage_like, json_values))
def test_anthropic_usage_never_raises_and_is_valid(payload: Any) -> None:
    check(an.usage_from(payload))
    # The SDK coerces loosely (`true` becomes 1), so its object may read differently, never invalid.
    check(an.usage_from(construct_type(type_=AnthropicUsage, value=payload)))


@FUZZ
@given(st.one_of(message_like, json_values), st.booleans())
def test_anthropic_result_never_raises_and_is_valid(payload: Any, capture: bool) -> None:
    for message in (payload, construct_type(type_=Message, value=payload)):
        result = an.result_from(message, capture)
        check_result(result)
        assert (result.output_messages is not None) == capture


@FUZZ
@given(st.lists(st.one_of(event_like, json_values), max_size=8), st.booleans())
def test_anthropic_stream_accumulator_never_raises_and_is_valid(events: list[Any], capture: bool) -> None:
    for raw in (False, True):
        acc = an.MessageStreamAccumulator(capture)
        for event in events:
            assert acc.add(event if raw else sdk_event(event)) is False
        check_result(acc.result())


@st.composite
def anthropic_usage(draw: st.DrawFn) -> tuple[dict[str, Any], TokenUsage]:
    """A well-formed usage object and its ledger, computed from the README's mapping."""
    inp, out, read = draw(count), draw(count), draw(count)
    five, hour = draw(count), draw(count)
    writes = five + hour
    form = draw(st.sampled_from(["total", "split", "both"]))  # how cache writes are reported
    thinking = draw(st.integers(0, out))
    payload: dict[str, Any] = {"input_tokens": inp, "output_tokens": out, "cache_read_input_tokens": read}
    if form != "split":
        payload["cache_creation_input_tokens"] = writes
    if form != "total":
        payload["cache_creation"] = {"ephemeral_5m_input_tokens": five, "ephemeral_1h_input_tokens": hour}
    if thinking or draw(st.booleans()):
        payload["output_tokens_details"] = {"thinking_tokens": thinking}
    expected = {
        "input": inp + read + writes,
        "output": out,
        "cache_read": read,
        "cache_write": writes,
        "cache_write_1h": hour if form != "total" else 0,
        "reasoning": thinking,
    }
    iterations = []
    for kind in draw(st.lists(st.sampled_from(["compaction", "message"]), max_size=3)):
        c_in, c_out, c_read, c_five, c_hour = (draw(count) for _ in range(5))
        iterations.append(
            {
                "type": kind,
                "input_tokens": c_in,
                "output_tokens": c_out,
                "cache_read_input_tokens": c_read,
                "cache_creation_input_tokens": c_five + c_hour,
                "cache_creation": {"ephemeral_5m_input_tokens": c_five, "ephemeral_1h_input_tokens": c_hour},
            }
        )
        if kind == "compaction":  # billed on top of the top-level counts; the others are in them
            expected["input"] += c_in + c_read + c_five + c_hour
            expected["output"] += c_out
            expected["cache_read"] += c_read
            expected["cache_write"] += c_five + c_hour
            expected["cache_write_1h"] += c_hour
    if iterations:
        payload["iterations"] = iterations
    return payload, TokenUsage(**expected)


@EXACT
@given(anthropic_usage())
def test_anthropic_well_formed_usage_maps_exactly(case: tuple[dict[str, Any], TokenUsage]) -> None:
    payload, expected = case
    assert an.usage_from(payload) == expected
    assert an.usage_from(AnthropicUsage.model_validate(payload)) == expected


@EXACT
@given(
    anthropic_usage(),
    st.sampled_from(["claude-haiku-4-5", "claude-sonnet-4-6"]),
    st.sampled_from(["end_turn", "max_tokens", "tool_use", "stop_sequence"]),
    st.lists(st.text(max_size=10), max_size=3),
    st.booleans(),
)
def test_anthropic_well_formed_message_maps_exactly(
    case: tuple[dict[str, Any], TokenUsage], model: str, reason: str, texts: list[str], capture: bool
) -> None:
    usage, expected = case
    content: list[dict[str, Any]] = [{"type": "text", "text": t} for t in texts]
    content.insert(len(content) // 2, {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}})
    body = {
        "id": "msg_01abc", "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": reason, "stop_sequence": None, "usage": usage,
    }  # fmt: skip
    want = CallResult(response_model=model, response_id="msg_01abc", finish_reasons=[reason], usage=expected)
    parts: list[dict[str, Any]] = [{"type": "text", "content": t} for t in texts]
    parts.insert(len(parts) // 2, {"type": "tool_call", "id": "toolu_1", "name": "f", "arguments": {}})
    for result in (an.result_from(body, capture), an.result_from(Message.model_validate(body), capture)):
        assert dataclasses.replace(result, output_messages=None) == want
        if capture:
            assert output_messages(result.output_messages) == [
                {"role": "assistant", "parts": parts, "finish_reason": reason}
            ]
        else:
            assert result.output_messages is None


@st.composite
def anthropic_stream(draw: st.DrawFn) -> tuple[list[dict[str, Any]], int, TokenUsage, TokenUsage, str]:
    """A well-formed event stream, the index of its `message_delta`, the ledger a reader ends with, the
    ledger of a reader cut before `message_delta`, and the stop reason."""
    inp, read, five, hour = draw(count), draw(count), draw(count), draw(count)
    start_out, final_out = draw(st.integers(0, 5)), draw(count)
    reason = draw(st.sampled_from(["end_turn", "max_tokens"]))
    start_usage = {
        "input_tokens": inp, "cache_read_input_tokens": read, "cache_creation_input_tokens": five + hour,
        "cache_creation": {"ephemeral_5m_input_tokens": five, "ephemeral_1h_input_tokens": hour},
        "output_tokens": start_out, "service_tier": "standard",
    }  # fmt: skip
    delta_usage: dict[str, Any] = {"output_tokens": final_out}
    if draw(st.booleans()):  # recent API versions repeat the input and cache counts
        delta_usage.update(
            input_tokens=inp, cache_read_input_tokens=read, cache_creation_input_tokens=five + hour
        )
    message = {
        "id": "msg_01xyz", "type": "message", "role": "assistant", "model": "claude-haiku-4-5", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": start_usage,
    }  # fmt: skip
    texts = draw(st.lists(st.text(max_size=6), min_size=1, max_size=4))
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        *(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}
            for t in texts
        ),
        {"type": "content_block_stop", "index": 0},
    ]
    delta_at = len(events)
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": None},
            "usage": delta_usage,
        }
    )
    events.append({"type": "message_stop"})
    billed = {
        "input": inp + read + five + hour,
        "cache_read": read,
        "cache_write": five + hour,
        "cache_write_1h": hour,
    }
    return (
        events,
        delta_at,
        TokenUsage(output=final_out, **billed),
        TokenUsage(output=start_out, **billed),
        reason,
    )


@EXACT
@given(anthropic_stream(), st.data())
def test_anthropic_well_formed_stream_maps_exactly(
    case: tuple[list[dict[str, Any]], int, TokenUsage, TokenUsage, str], data: st.DataObject
) -> None:
    events, delta_at, final, cut, reason = case
    acc = an.MessageStreamAccumulator(capture_content=True)
    for event in events:
        acc.add(sdk_event(event))
    result = acc.result()
    assert acc.complete and result.usage == final and result.finish_reasons == [reason]
    assert (result.response_model, result.response_id) == ("claude-haiku-4-5", "msg_01xyz")
    texts = [e["delta"]["text"] for e in events if e["type"] == "content_block_delta"]
    assert result.output_messages == [
        {"role": "assistant", "content": "".join(texts), "finish_reason": reason}
    ]
    # A stream cut short keeps the usage seen so far: message_start's until message_delta arrives.
    seen = data.draw(st.integers(0, len(events) - 1), label="events read")
    acc = an.MessageStreamAccumulator(capture_content=False)
    for event in events[:seen]:
        acc.add(sdk_event(event))
    want = None if seen == 0 else cut if seen <= delta_at else final
    assert not acc.complete and acc.result().usage == want


# --- google-genai --------------------------------------------------------------------------------

MODALITIES = ["TEXT", "AUDIO", "IMAGE", "VIDEO", "DOCUMENT"]
COUNT_FIELDS = (
    ("prompt_token_count", "promptTokenCount"),
    ("candidates_token_count", "candidatesTokenCount"),
    ("thoughts_token_count", "thoughtsTokenCount"),
    ("tool_use_prompt_token_count", "toolUsePromptTokenCount"),
    ("cached_content_token_count", "cachedContentTokenCount"),
    ("total_token_count", "totalTokenCount"),
)
DETAIL_FIELDS = (
    ("prompt_tokens_details", "promptTokensDetails"),
    ("candidates_tokens_details", "candidatesTokensDetails"),
    ("tool_use_prompt_tokens_details", "toolUsePromptTokensDetails"),
    ("cache_tokens_details", "cacheTokensDetails"),
)
signed = st.integers(-(10**6), 10**7)
modality_counts = st.lists(
    maybe(
        some(
            modality=maybe(st.sampled_from([*MODALITIES, "MODALITY_UNSPECIFIED", "NEW"])),
            token_count=maybe(signed),
            tokenCount=maybe(signed),
        )
    ),
    max_size=3,
)
genai_usage_like = some(
    **{name: maybe(signed) for pair in COUNT_FIELDS for name in pair},
    **{name: maybe(modality_counts) for pair in DETAIL_FIELDS for name in pair},
)
FINISH_REASONS = ["STOP", "MAX_TOKENS", "SAFETY", "FINISH_REASON_UNSPECIFIED", "MALFORMED_FUNCTION_CALL"]
part_like = some(text=maybe(st.text(max_size=6)), thought=maybe(st.booleans()))
candidate_like = some(
    content=maybe(some(parts=maybe(st.lists(maybe(part_like), max_size=3)), role=json_values)),
    finish_reason=maybe(st.sampled_from([*FINISH_REASONS, "NEW_REASON"])),
    finishReason=maybe(st.sampled_from(FINISH_REASONS)),
    index=maybe(st.integers(0, 3)),
)
genai_response_like = some(
    candidates=maybe(st.lists(maybe(candidate_like), max_size=3)),
    usage_metadata=maybe(genai_usage_like),
    usageMetadata=maybe(genai_usage_like),
    model_version=maybe(st.sampled_from(["gemini-2.5-flash", "models/gemini-2.5-pro", ""])),
    modelVersion=json_values,
    response_id=json_values,
    responseId=json_values,
    sdk_http_response=maybe(
        some(body=maybe(st.one_of(st.text(max_size=12), st.just('{"usageMetadata": 1}'))))
    ),
)


def genai_object(model: type[pydantic.BaseModel], payload: Any) -> Any:
    """The SDK's object for a JSON payload, or None where the SDK itself would reject the payload."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return model.model_validate(payload)
    except (pydantic.ValidationError, AttributeError, ValueError):  # the SDK's enums raise on a non-string
        return None


@FUZZ
@given(st.one_of(genai_usage_like, json_values))
def test_genai_usage_never_raises_and_is_valid(payload: Any) -> None:
    check(gg.usage_from(payload))
    meta = genai_object(genai.GenerateContentResponseUsageMetadata, payload)
    if meta is not None:
        check(gg.usage_from(meta))


@FUZZ
@given(st.one_of(genai_response_like, json_values), st.booleans())
@example({"sdk_http_response": {"body": "00"}}, False)  # a raw body that is not JSON
@example({"sdk_http_response": {"body": "[" * 100_000}}, False)  # nested past the parser's depth
def test_genai_result_never_raises_and_is_valid(payload: Any, capture: bool) -> None:
    check_result(gg.result_from(payload, capture))
    response = genai_object(genai.GenerateContentResponse, payload)
    if response is not None:
        check_result(gg.result_from(response, capture))


@FUZZ
@given(
    st.one_of(
        some(
            embeddings=maybe(
                st.lists(maybe(some(statistics=maybe(some(token_count=maybe(signed))))), max_size=3)
            ),
            usage_metadata=maybe(genai_usage_like),
        ),
        json_values,
    )
)
@example({"embeddings": 1})  # not a list
def test_genai_embed_result_never_raises_and_is_valid(payload: Any) -> None:
    check_result(gg.embed_result_from(payload))
    response = genai_object(genai.EmbedContentResponse, payload)
    if response is not None:
        check_result(gg.embed_result_from(response))


@FUZZ
@given(st.lists(genai_response_like, max_size=6), st.booleans())
def test_genai_chunk_accumulator_never_raises_and_is_valid(chunks: list[Any], capture: bool) -> None:
    acc = gg.ContentAccumulator(capture)
    for payload in chunks:
        chunk = genai_object(genai.GenerateContentResponse, payload)
        if chunk is not None:  # the SDK raises on a chunk it cannot read: it never reaches us
            assert acc.add(chunk) is False
    check_result(acc.result())


@st.composite
def genai_usage(draw: st.DrawFn) -> tuple[dict[str, Any], TokenUsage | None]:
    """A well-formed `usageMetadata` (camelCase JSON, zero counts left out as protobuf JSON does) and
    its ledger, computed from the README's mapping."""
    prompt, candidates, thoughts, tool_use = draw(count), draw(count), draw(count), draw(count)
    cached = draw(st.integers(0, prompt))
    prompt_audio, tool_audio = draw(st.integers(0, prompt)), draw(st.integers(0, tool_use))
    out_audio = draw(st.integers(0, candidates))
    present = draw(st.sets(st.sampled_from(["prompt", "candidates", "thoughts", "tool_use"])))
    values = {"prompt": prompt, "candidates": candidates, "thoughts": thoughts, "tool_use": tool_use}
    values = {k: (v if k in present else 0) for k, v in values.items()}
    if "prompt" not in present:
        cached = prompt_audio = 0
    if "tool_use" not in present:
        tool_audio = 0
    if "candidates" not in present:
        out_audio = 0
    meta: dict[str, Any] = {}
    names = {"prompt": "promptTokenCount", "candidates": "candidatesTokenCount",
             "thoughts": "thoughtsTokenCount", "tool_use": "toolUsePromptTokenCount"}  # fmt: skip
    for key in sorted(present):
        meta[names[key]] = values[key]
    if cached:
        meta["cachedContentTokenCount"] = cached
    if "prompt" in present:
        meta["promptTokensDetails"] = [
            {"modality": "TEXT", "tokenCount": values["prompt"] - prompt_audio},
            {"modality": "AUDIO", "tokenCount": prompt_audio},
        ]
    if "tool_use" in present:
        meta["toolUsePromptTokensDetails"] = [{"modality": "AUDIO", "tokenCount": tool_audio}]
    if "candidates" in present:
        meta["candidatesTokensDetails"] = [{"modality": "AUDIO", "tokenCount": out_audio}]
    meta["totalTokenCount"] = sum(values.values())
    if not present:
        return meta, None
    expected = TokenUsage(
        input=values["prompt"] + values["tool_use"],
        output=values["candidates"] + values["thoughts"],
        cache_read=cached,
        reasoning=values["thoughts"],
        input_audio=prompt_audio + tool_audio,
        output_audio=out_audio,
    )
    return meta, expected


def snake(payload: Any) -> Any:
    """The same JSON with snake_case keys, as the SDK's objects name the fields."""
    if isinstance(payload, dict):
        return {
            "".join(f"_{c.lower()}" if c.isupper() else c for c in k): snake(v) for k, v in payload.items()
        }
    if isinstance(payload, list):
        return [snake(v) for v in payload]
    return payload


@EXACT
@given(genai_usage())
def test_genai_well_formed_usage_maps_exactly(case: tuple[dict[str, Any], TokenUsage | None]) -> None:
    meta, expected = case
    assert gg.usage_from(meta) == expected
    assert gg.usage_from(snake(meta)) == expected
    assert gg.usage_from(genai.GenerateContentResponseUsageMetadata.model_validate(meta)) == expected


@EXACT
@given(
    genai_usage(),
    st.sampled_from([("gemini-2.5-flash", "gemini-2.5-flash"), ("models/gemini-2.5-pro", "gemini-2.5-pro")]),
    st.sampled_from([("STOP", "stop"), ("MAX_TOKENS", "max_tokens"), ("SAFETY", "safety")]),
    st.lists(st.text(max_size=8), max_size=3),
    st.booleans(),
)
def test_genai_well_formed_response_maps_exactly(
    case: tuple[dict[str, Any], TokenUsage | None],
    model: tuple[str, str],
    reason: tuple[str, str],
    texts: list[str],
    capture: bool,
) -> None:
    meta, expected = case
    parts: list[dict[str, Any]] = [{"text": t} for t in texts]
    parts.insert(0, {"text": "thinking it over", "thought": True})  # thoughts are not output text
    body = {
        "candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": reason[0], "index": 0}],
        "usageMetadata": meta,
        "modelVersion": model[0],
        "responseId": "resp-1",
    }
    want = CallResult(
        response_model=model[1],
        response_id="resp-1",
        finish_reasons=[reason[1]],
        usage=expected,
        output_messages=[{"role": "assistant", "content": "".join(texts), "finish_reason": reason[1]}]
        if capture
        else None,
    )
    assert gg.result_from(body, capture) == want
    assert gg.result_from(genai.GenerateContentResponse.model_validate(body), capture) == want


@EXACT
@given(st.lists(genai_usage(), min_size=1, max_size=4), st.booleans(), st.data())
def test_genai_well_formed_chunks_keep_the_last_counts(
    running: list[tuple[dict[str, Any], TokenUsage | None]], vertex: bool, data: st.DataObject
) -> None:
    """Each chunk carries the request's running totals (Vertex AI: the last chunk only); the last
    counts seen win, and a chunk without counts erases nothing."""
    chunks = []
    texts = data.draw(st.lists(st.text(max_size=5), min_size=len(running), max_size=len(running)))
    for n, ((meta, _), text) in enumerate(zip(running, texts, strict=True)):
        last = n == len(running) - 1
        chunk: dict[str, Any] = {
            "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}],
            "modelVersion": "gemini-2.5-flash",
            "responseId": "resp-2",
        }
        if last:
            chunk["candidates"][0]["finishReason"] = "STOP"
        if last or not vertex:
            chunk["usageMetadata"] = meta
        chunks.append(chunk)
    chunks.append({"modelVersion": "gemini-2.5-flash", "responseId": "resp-2"})  # no counts: ignored
    acc = gg.ContentAccumulator(capture_content=True)
    for chunk in chunks:
        acc.add(genai.GenerateContentResponse.model_validate(chunk))
    counted = [usage for _, usage in (running if not vertex else running[-1:]) if usage is not None]
    result = acc.result()
    assert result.usage == (counted[-1] if counted else None)
    assert acc.complete and result.finish_reasons == ["stop"]
    assert (result.response_model, result.response_id) == ("gemini-2.5-flash", "resp-2")
    assert result.output_messages == [{"role": "assistant", "content": "".join(texts)}]


def test_genai_regressions_found_by_fuzzing() -> None:
    # A response returned raw whose body is not JSON has nothing to read; it used to raise.
    assert gg.result_from({"sdk_http_response": {"body": "<html>Bad gateway</html>"}}) == CallResult()
    # `embeddings` that is not a list has no token counts; it used to raise.
    assert gg.embed_result_from({"embeddings": 7}) == CallResult()
    assert gg.embed_result_from({"embeddings": [{"statistics": {"token_count": 7}}]}) == CallResult(
        usage=TokenUsage(input=7)
    )
