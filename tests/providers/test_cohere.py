"""The cohere SDK (v2 chat, chat streams, embed), driven over loopback HTTP against the Cohere emulator."""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cohere
import httpx
import pytest
from cohere.core.http_response import AsyncHttpResponse, HttpResponse
from cohere.v2 import raw_client
from genai_prices import Usage as GenaiUsage
from genai_prices import calc_price
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

import otel_llm_usage
from emulators import CohereEmulator, CohereReply
from emulators.cohere import TEMPLATE_TOKENS
from otel_llm_usage import semconv as sc
from otel_llm_usage._guard import reported_sites
from otel_llm_usage.context import in_llm_call
from otel_llm_usage.providers import cohere as provider
from otel_llm_usage.usage import TokenUsage, as_count
from tests.conftest import semconv_text

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MODEL = "command-a-03-2025"
API_KEY = "co-test-secret-key-0123456789"
QUESTION = "What is the capital of France?"
MSGS: list[Any] = [{"role": "user", "content": QUESTION}]
# One stream of the default reply: message-start, content-start, 3 content-delta, content-end, message-end.
EVENTS = 7


@pytest.fixture(scope="module")
def _server() -> Iterator[CohereEmulator]:
    with CohereEmulator() as server:
        yield server


@pytest.fixture
def emu(_server: CohereEmulator) -> CohereEmulator:
    _server.reset()
    return _server


def without_retries(make: Any, **kw: Any) -> Any:
    """A client that sends each call once (releases before 7 take no `max_retries` and some retry)."""
    if "max_retries" in inspect.signature(make).parameters:
        return make(api_key=API_KEY, max_retries=0, **kw)
    made = make(api_key=API_KEY, **kw)
    http = made._client_wrapper.httpx_client
    if hasattr(http, "base_max_retries"):
        http.base_max_retries = 0
    return made


def client(emu: CohereEmulator, **kw: Any) -> cohere.ClientV2:
    made: cohere.ClientV2 = without_retries(cohere.ClientV2, base_url=emu.base_url, **kw)
    return made


def aclient(emu: CohereEmulator, **kw: Any) -> cohere.AsyncClientV2:
    made: cohere.AsyncClientV2 = without_retries(cohere.AsyncClientV2, base_url=emu.base_url, **kw)
    return made


def chat(c: Any, **kw: Any) -> Any:
    return c.chat(**{"model": MODEL, "messages": MSGS, **kw})


def stream(c: Any, **kw: Any) -> Any:
    return c.chat_stream(**{"model": MODEL, "messages": MSGS, **kw})


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def by_start(spans: list[Any]) -> list[Any]:
    return sorted(spans, key=lambda s: s.start_time)


def cohere_price(model: str, input_tokens: int, output_tokens: int = 0) -> float:
    usage = GenaiUsage(input_tokens=input_tokens, output_tokens=output_tokens)
    return float(calc_price(usage, model, provider_id="cohere").total_price)


def dumps(events: list[Any]) -> list[Any]:
    return [event.dict() for event in events]


def test_provider_is_registered() -> None:
    from otel_llm_usage.registry import PROVIDERS

    assert PROVIDERS.get("cohere") == "otel_llm_usage.providers.cohere"
    assert provider.LIBRARY == "cohere"


# --- pure extraction ---------------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(), st.text(max_size=8)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
count_keys = st.sampled_from(["input_tokens", "output_tokens", "search_units", "images", "image_tokens"])
units = st.one_of(json_values, st.dictionaries(count_keys, json_values, max_size=4))
usage_payloads = st.dictionaries(
    st.sampled_from(["billed_units", "tokens", "cached_tokens", "api_version", "warnings"]), units, max_size=5
)


def _readable(value: object) -> bool:
    return as_count(value) > 0 or (value == 0 and not isinstance(value, bool))


def _counts(raw: object) -> dict[str, Any]:
    return raw if isinstance(raw, dict) else {}


@settings(max_examples=300, deadline=None)
@given(usage_payloads)
def test_usage_extraction_never_raises_and_keeps_the_invariants(payload: dict[str, Any]) -> None:
    ledger = provider.usage_from(payload)
    billed, tokens = _counts(payload.get("billed_units")), _counts(payload.get("tokens"))
    chosen = None
    for candidate in (billed, tokens):
        if _readable(candidate.get("input_tokens")) or _readable(candidate.get("output_tokens")):
            chosen = candidate
            break
    if chosen is None:
        assert ledger is None
        return
    assert ledger is not None and ledger.valid()
    assert ledger.input == as_count(chosen.get("input_tokens"))
    assert ledger.output == as_count(chosen.get("output_tokens"))
    # Cohere bills no cache, reasoning or audio bucket separately: nothing lands in the subsets.
    assert ledger == TokenUsage(input=ledger.input, output=ledger.output)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["id", "finish_reason", "message", "usage", "meta"]), json_values))
def test_result_extraction_never_raises(payload: dict[str, Any]) -> None:
    for result in (provider.result_from(payload, True), provider.embed_result_from(payload)):
        assert result.usage is None or result.usage.valid()


def test_usage_prefers_billed_units_over_processed_tokens() -> None:
    usage = {
        "billed_units": {"input_tokens": 50.0, "output_tokens": 26.0},
        "tokens": {"input_tokens": 793.0, "output_tokens": 61.0},
        "cached_tokens": 176.0,
    }
    assert provider.usage_from(usage) == TokenUsage(input=50, output=26)
    assert provider.usage_from({"tokens": {"input_tokens": 12, "output_tokens": 3}}) == TokenUsage(12, 3)
    assert provider.usage_from({"billed_units": {}, "tokens": {"input_tokens": 12}}) == TokenUsage(12, 0)
    assert provider.usage_from({"billed_units": {"input_tokens": 0, "output_tokens": 0}}) == TokenUsage()
    assert provider.usage_from({"billed_units": {"search_units": 1}}) is None
    assert provider.usage_from({"cached_tokens": 10}) is None
    assert provider.usage_from(None) is None


def test_finish_reason_text() -> None:
    assert provider.finish_reason_text("COMPLETE") == "complete"
    assert provider.finish_reason_text("MAX_TOKENS") == "max_tokens"
    assert provider.finish_reason_text("") is None
    assert provider.finish_reason_text(None) is None


def test_platform_clients_are_recognised_and_not_recorded(emu: CohereEmulator) -> None:
    aws = {"aws_access_key": "AKIAEXAMPLE", "aws_secret_key": "secret", "aws_region": "us-east-1"}
    bedrock = cohere.BedrockClientV2(**aws)
    sagemaker = cohere.SagemakerClientV2(**aws)
    for platform in (bedrock, sagemaker):
        assert provider.is_platform_client(platform._raw_client)
        assert (
            provider.describe_request(platform._raw_client, {"model": MODEL}, sc.OP_CHAT, False, False, {})
            is None
        )
    plain = client(emu)
    assert not provider.is_platform_client(plain._raw_client)
    req = provider.describe_request(plain._raw_client, {"model": MODEL}, sc.OP_CHAT, False, False, {})
    assert req is not None and req.provider == "cohere"


# --- exact tokens and cost ---------------------------------------------------------------------


def test_golden_cost_command_a_from_billed_units(telemetry: Any, emu: CohereEmulator) -> None:
    emu.push(CohereReply(billed_input_tokens=1_200, billed_output_tokens=350, cached_tokens=400, id="c-1"))
    response = chat(client(emu), max_tokens=500, temperature=0.3)
    assert response.usage.tokens.input_tokens == 1_200 + TEMPLATE_TOKENS  # what the model processed

    span = telemetry.one_llm_span()
    a = attrs(span)
    assert span.name == f"chat {MODEL}" and span.kind is SpanKind.CLIENT
    assert a[sc.OPERATION_NAME] == "chat" and a[sc.PROVIDER_NAME] == "cohere"
    assert a[sc.REQUEST_MODEL] == MODEL and sc.RESPONSE_MODEL not in a  # v2 responses name no model
    assert a[sc.RESPONSE_ID] == "c-1"
    assert a[sc.RESPONSE_FINISH_REASONS] == ("complete",)
    assert a[sc.REQUEST_MAX_TOKENS] == 500 and a[sc.REQUEST_TEMPERATURE] == 0.3
    assert a[sc.REQUEST_STREAM] is False
    assert a[sc.SERVER_ADDRESS] == "127.0.0.1" and a[sc.SERVER_PORT] == emu.port
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (1_200, 350)
    assert sc.USAGE_CACHE_READ_INPUT_TOKENS not in a and sc.USAGE_REASONING_OUTPUT_TOKENS not in a
    assert a[sc.USAGE_SOURCE] == "provider" and a[sc.COST_SOURCE] == "price_table"
    # command-a-03-2025: $2.50 / M input, $10 / M output: 1,200 x 2.5e-6 + 350 x 10e-6 = 0.003 + 0.0035
    assert a[sc.USAGE_COST] == pytest.approx(0.0065, abs=1e-12)
    assert a[sc.USAGE_COST] == pytest.approx(cohere_price(MODEL, 1_200, 350), abs=1e-12)
    assert a[sc.COST_INPUT_USD] == pytest.approx(0.003, abs=1e-12)
    assert a[sc.COST_OUTPUT_USD] == pytest.approx(0.0035, abs=1e-12)
    assert span.status.status_code is not StatusCode.ERROR

    assert telemetry.total(sc.METRIC_COST) == pytest.approx(0.0065, abs=1e-12)
    assert telemetry.total(sc.METRIC_TOKENS, llm_usage__token__type="input") == 1_200
    assert telemetry.total(sc.METRIC_TOKENS, llm_usage__token__type="output") == 350
    assert telemetry.total(sc.METRIC_TOKEN_USAGE, gen_ai__token__type="input") == 1_200
    (duration,) = telemetry.points(sc.METRIC_OPERATION_DURATION)
    assert duration.count == 1 and sc.ERROR_TYPE not in duration.attributes


async def test_golden_cost_command_r7b_async_stream(telemetry: Any, emu: CohereEmulator) -> None:
    model = "command-r7b-12-2024"
    emu.push(CohereReply(billed_input_tokens=20_000, billed_output_tokens=1_000, chunks=4, id="s-1"))
    events = [event async for event in stream(aclient(emu), model=model)]
    assert [e.type for e in events][-1] == "message-end"
    a = attrs(telemetry.one_llm_span())
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (20_000, 1_000)
    assert a[sc.RESPONSE_ID] == "s-1" and a[sc.REQUEST_STREAM] is True
    # command-r7b-12-2024: $0.0375 / M input, $0.15 / M output: 0.00075 + 0.00015
    assert a[sc.USAGE_COST] == pytest.approx(0.0009, abs=1e-12)
    assert a[sc.USAGE_COST] == pytest.approx(cohere_price(model, 20_000, 1_000), abs=1e-12)
    assert a[sc.STREAM_CHUNKS] == len(events) == 8 and sc.STREAM_INCOMPLETE not in a


def test_command_r_plus_and_processed_tokens_when_nothing_is_billed(
    telemetry: Any, emu: CohereEmulator
) -> None:
    emu.push(
        CohereReply(billed_input_tokens=4_000, billed_output_tokens=2_000),
        CohereReply(raw_usage={"tokens": {"input_tokens": 90, "output_tokens": 12}}),
    )
    c = client(emu)
    chat(c, model="command-r-plus-08-2024")
    chat(c, model="command-r-plus-08-2024")
    billed, processed = by_start(telemetry.llm_spans())
    # command-r-plus-08-2024: $2.50 / M input, $10 / M output: 0.01 + 0.02
    assert attrs(billed)[sc.USAGE_COST] == pytest.approx(0.03, abs=1e-12)
    assert attrs(billed)[sc.USAGE_COST] == pytest.approx(cohere_price("command-r-plus-08-2024", 4_000, 2_000))
    assert (attrs(processed)[sc.USAGE_INPUT_TOKENS], attrs(processed)[sc.USAGE_OUTPUT_TOKENS]) == (90, 12)


def test_unknown_model_is_unpriced_never_zero(telemetry: Any, emu: CohereEmulator) -> None:
    emu.push(CohereReply(billed_input_tokens=10, billed_output_tokens=5))
    chat(client(emu), model="my-fine-tuned-command")
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_INPUT_TOKENS] == 10 and sc.USAGE_COST not in a
    assert telemetry.total(sc.METRIC_UNPRICED) == 1
    assert telemetry.total(sc.METRIC_COST) == 0


def test_missing_usage_is_marked_not_invented(telemetry: Any, emu: CohereEmulator) -> None:
    emu.push(CohereReply(omit_usage=True), CohereReply(omit_usage=True))
    c = client(emu)
    chat(c)
    list(stream(c))
    for span in telemetry.llm_spans():
        a = attrs(span)
        assert a[sc.USAGE_SOURCE] == "missing"
        assert sc.USAGE_INPUT_TOKENS not in a and sc.USAGE_COST not in a
    assert telemetry.total(sc.METRIC_UNPRICED) == 0


def test_malformed_usage_never_breaks_the_call(telemetry: Any, emu: CohereEmulator) -> None:
    emu.push(
        CohereReply(raw_usage={"billed_units": {"input_tokens": "twelve", "output_tokens": None}}),
        CohereReply(raw_usage={"billed_units": {"input_tokens": "12", "output_tokens": -3}}),
        CohereReply(raw_usage={"billed_units": {"input_tokens": 7.0, "output_tokens": 2.5}, "tokens": "x"}),
    )
    c = client(emu)
    responses = [chat(c) for _ in range(3)]
    assert all(r.message.content[0].text for r in responses)
    unreadable, coerced, partial = (attrs(s) for s in by_start(telemetry.llm_spans()))
    assert unreadable[sc.USAGE_SOURCE] == "missing" and sc.USAGE_INPUT_TOKENS not in unreadable
    # the SDK's model turns "12" into 12.0; a negative count is not read
    assert (coerced[sc.USAGE_INPUT_TOKENS], coerced[sc.USAGE_OUTPUT_TOKENS]) == (12, 0)
    assert (partial[sc.USAGE_INPUT_TOKENS], partial[sc.USAGE_OUTPUT_TOKENS]) == (7, 0)


# --- streams -----------------------------------------------------------------------------------


def test_stream_exhaustion_and_caller_sees_identical_events(
    instrument_with: Any, emu: CohereEmulator
) -> None:
    reply = CohereReply(billed_input_tokens=300, billed_output_tokens=40, chunks=3, id="m-1")
    c = client(emu)
    emu.push(reply)
    plain_stream = stream(c)
    plain = list(plain_stream)

    t = instrument_with()
    emu.push(reply)
    events = stream(c)
    assert inspect.isgenerator(events) and type(events) is type(plain_stream)
    seen = list(events)
    assert dumps(seen) == dumps(plain)
    assert [type(e) for e in seen] == [type(e) for e in plain]

    span = t.one_llm_span()
    a = attrs(span)
    assert span.name == f"chat {MODEL}"
    assert a[sc.REQUEST_STREAM] is True and a[sc.RESPONSE_ID] == "m-1"
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (300, 40)
    assert a[sc.RESPONSE_FINISH_REASONS] == ("complete",)
    assert a[sc.STREAM_CHUNKS] == EVENTS and sc.STREAM_INCOMPLETE not in a
    assert a[sc.RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert a[sc.USAGE_COST] == pytest.approx(cohere_price(MODEL, 300, 40), abs=1e-12)
    (ttfc,) = t.points(sc.METRIC_TIME_TO_FIRST_CHUNK)
    assert ttfc.count == 1


def test_stream_with_tool_calls(telemetry: Any, emu: CohereEmulator) -> None:
    emu.push(
        CohereReply(
            tool_calls=[{"name": "get_weather", "arguments": '{"city": "Paris"}'}],
            billed_input_tokens=80,
            billed_output_tokens=20,
            chunks=2,
        )
    )
    types = [e.type for e in stream(client(emu))]
    assert types == ["message-start", "tool-plan-delta", "tool-plan-delta", "tool-call-start",
                     "tool-call-delta", "tool-call-end", "message-end"]  # fmt: skip
    a = attrs(telemetry.one_llm_span())
    assert a[sc.RESPONSE_FINISH_REASONS] == ("tool_call",)
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (80, 20)
    assert a[sc.STREAM_CHUNKS] == 7


def test_stream_break_ends_the_span_when_the_generator_is_dropped(
    telemetry: Any, emu: CohereEmulator
) -> None:
    emu.push(CohereReply(chunks=6))
    for _ in stream(client(emu)):
        break
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == 1
    assert a[sc.USAGE_SOURCE] == "missing" and sc.ERROR_TYPE not in a


def test_stream_break_then_close_ends_once(telemetry: Any, emu: CohereEmulator) -> None:
    emu.push(CohereReply(chunks=6))
    events = stream(client(emu))
    for _ in events:
        break
    assert telemetry.llm_spans() == []
    events.close()
    events.close()
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == 1


def test_stream_garbage_collected_ends_span(telemetry: Any, emu: CohereEmulator) -> None:
    emu.push(CohereReply(chunks=6))
    events = stream(client(emu))
    next(events)
    next(events)
    assert telemetry.llm_spans() == []
    del events
    gc.collect()
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == 2


def _drain(events: Any) -> tuple[list[Any], BaseException | None]:
    got: list[Any] = []
    try:
        for event in events:
            got.append(event)
    except Exception as exc:
        return got, exc
    return got, None


def test_stream_cut_midway_records_error_and_reraises_unchanged(
    instrument_with: Any, emu: CohereEmulator
) -> None:
    c = client(emu)
    reply = CohereReply(chunks=6, cut_after=3)
    emu.push(reply)
    plain, plain_error = _drain(stream(c))

    t = instrument_with()
    emu.push(reply)
    got, error = _drain(stream(c))
    assert plain_error is not None and error is not None
    assert type(error) is type(plain_error) and str(error) == str(plain_error)
    assert dumps(got) != [] and len(got) == len(plain) == 3

    span = t.one_llm_span()
    a = attrs(span)
    assert a[sc.ERROR_TYPE] == type(error).__qualname__ == "RemoteProtocolError"
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == 3
    assert a[sc.USAGE_SOURCE] == "missing"
    assert span.status.status_code is StatusCode.ERROR


def test_stream_cut_after_message_end_keeps_the_usage(telemetry: Any, emu: CohereEmulator) -> None:
    emu.push(CohereReply(billed_input_tokens=70, billed_output_tokens=9, cut_after=EVENTS))
    got, error = _drain(stream(client(emu)))
    assert isinstance(error, httpx.RemoteProtocolError) and got[-1].type == "message-end"
    a = attrs(telemetry.one_llm_span())
    assert a[sc.ERROR_TYPE] == "RemoteProtocolError"
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (70, 9)
    assert a[sc.USAGE_COST] == pytest.approx(cohere_price(MODEL, 70, 9), abs=1e-12)


def test_consumer_exception_inside_loop_propagates(telemetry: Any, emu: CohereEmulator) -> None:
    emu.push(CohereReply(chunks=5))
    events = stream(client(emu))
    with pytest.raises(KeyError):
        for _ in events:
            raise KeyError("consumer bug")
    events.close()
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_INCOMPLETE] is True and sc.ERROR_TYPE not in a


async def test_async_chat_and_stream_break_then_aclose(telemetry: Any, emu: CohereEmulator) -> None:
    c = aclient(emu)
    emu.push(CohereReply(billed_input_tokens=11, billed_output_tokens=3), CohereReply(chunks=5))
    response = await chat(c)
    assert response.finish_reason == "COMPLETE"
    events = stream(c)
    assert inspect.isasyncgen(events)
    async for _ in events:
        break
    assert len(telemetry.llm_spans()) == 1
    await events.aclose()
    await events.aclose()
    plain, streamed = by_start(telemetry.llm_spans())
    assert (attrs(plain)[sc.USAGE_INPUT_TOKENS], attrs(plain)[sc.REQUEST_STREAM]) == (11, False)
    assert attrs(streamed)[sc.STREAM_INCOMPLETE] is True and attrs(streamed)[sc.STREAM_CHUNKS] == 1


class _EndSignal(SpanProcessor):
    """Sets an asyncio event (from whichever thread ends a span) when an LLM span ends."""

    def __init__(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        self.loop = loop
        self.event = event

    def on_end(self, span: Any) -> None:
        if (span.attributes or {}).get(sc.LLM_CALL_MARK):
            self.loop.call_soon_threadsafe(self.event.set)


async def test_async_stream_abandoned_ends_when_the_loop_finalises_it(
    telemetry: Any, emu: CohereEmulator
) -> None:
    ended = asyncio.Event()
    telemetry.tracer_provider.add_span_processor(_EndSignal(asyncio.get_running_loop(), ended))
    emu.push(CohereReply(chunks=6))
    events = stream(aclient(emu))
    await events.__anext__()
    del events
    gc.collect()
    await asyncio.wait_for(ended.wait(), timeout=30)
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == 1


async def test_async_stream_cancellation(telemetry: Any, emu: CohereEmulator) -> None:
    gate = threading.Event()
    emu.push(CohereReply(chunks=5, gate=gate, gate_after=1))
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in stream(aclient(emu)):
            first.set()

    task = asyncio.create_task(consume())
    try:
        await asyncio.wait({task, asyncio.ensure_future(first.wait())}, return_when=asyncio.FIRST_COMPLETED)
        assert not task.done(), task
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        gate.set()
    a = attrs(telemetry.one_llm_span())
    assert a[sc.ERROR_TYPE] == "CancelledError"
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == 1


async def test_async_stream_cut_midway(telemetry: Any, emu: CohereEmulator) -> None:
    emu.push(CohereReply(chunks=5, cut_after=2))
    got: list[Any] = []
    with pytest.raises(httpx.RemoteProtocolError):
        async for event in stream(aclient(emu)):
            got.append(event)
    assert len(got) == 2
    a = attrs(telemetry.one_llm_span())
    assert a[sc.ERROR_TYPE] == "RemoteProtocolError"
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == 2


# --- raw responses and other entry points ------------------------------------------------------


def test_with_raw_response_chat_and_stream(telemetry: Any, emu: CohereEmulator) -> None:
    c = client(emu)
    emu.push(CohereReply(billed_input_tokens=5, billed_output_tokens=2), CohereReply(chunks=3))
    raw = c.with_raw_response.chat(model=MODEL, messages=MSGS)
    assert type(raw) is HttpResponse and raw.headers["content-type"] == "application/json"
    assert raw.data.usage.billed_units.input_tokens == 5

    with c.with_raw_response.chat_stream(model=MODEL, messages=MSGS) as response:
        assert isinstance(response, HttpResponse)
        assert response.headers["content-type"].startswith("text/event-stream")
        assert [e.type for e in response.data][-1] == "message-end"
    plain, streamed = by_start(telemetry.llm_spans())
    assert attrs(plain)[sc.USAGE_INPUT_TOKENS] == 5
    assert attrs(streamed)[sc.STREAM_CHUNKS] == 7 and sc.STREAM_INCOMPLETE not in attrs(streamed)


def test_raw_stream_closed_or_left_early(telemetry: Any, emu: CohereEmulator) -> None:
    c = client(emu)
    emu.push(CohereReply(chunks=5), CohereReply(chunks=5))
    with c.with_raw_response.chat_stream(model=MODEL, messages=MSGS) as response:
        events = response.data
        next(events)
        events.close()
        assert attrs(telemetry.one_llm_span())[sc.STREAM_INCOMPLETE] is True
    telemetry.exporter.clear()
    with c.with_raw_response.chat_stream(model=MODEL, messages=MSGS) as response:
        next(iter(response.data))
        assert telemetry.llm_spans() == []
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == 1


async def test_async_with_raw_response(telemetry: Any, emu: CohereEmulator) -> None:
    c = aclient(emu)
    emu.push(CohereReply(billed_input_tokens=8), CohereReply(chunks=2))
    raw = await c.with_raw_response.chat(model=MODEL, messages=MSGS)
    assert type(raw) is AsyncHttpResponse
    async with c.with_raw_response.chat_stream(model=MODEL, messages=MSGS) as response:
        assert isinstance(response, AsyncHttpResponse)
        assert len([e async for e in response.data]) == 6
    spans = by_start(telemetry.llm_spans())
    assert [attrs(s)[sc.REQUEST_STREAM] for s in spans] == [False, True]
    assert attrs(spans[0])[sc.USAGE_INPUT_TOKENS] == 8


def test_v2_of_the_v1_client_is_recorded(telemetry: Any, emu: CohereEmulator) -> None:
    emu.push(CohereReply(billed_input_tokens=21), CohereReply(chunks=2))
    v1 = without_retries(cohere.Client, base_url=emu.base_url)
    chat(v1.v2)
    list(stream(v1.v2))
    spans = by_start(telemetry.llm_spans())
    assert [attrs(s)[sc.REQUEST_STREAM] for s in spans] == [False, True]
    assert attrs(spans[0])[sc.USAGE_INPUT_TOKENS] == 21


def test_client_built_before_instrument_is_recorded(emu: CohereEmulator) -> None:
    from tests.conftest import make_telemetry

    c = client(emu)  # its `chat` and `chat_stream` were bound onto the instance at construction
    t = make_telemetry()
    try:
        chat(c)
        list(stream(c))
    finally:
        otel_llm_usage.uninstrument()
    assert len(t.llm_spans()) == 2


def test_embed_golden_cost(telemetry: Any, emu: CohereEmulator) -> None:
    emu.push(CohereReply(billed_input_tokens=2_500))
    response = client(emu).embed(
        model="embed-v4.0", texts=["a", "b"], input_type="search_document", embedding_types=["float"]
    )
    assert response.embeddings.float_ is not None and len(response.embeddings.float_) == 2
    span = telemetry.one_llm_span()
    a = attrs(span)
    assert span.name == "embeddings embed-v4.0" and a[sc.OPERATION_NAME] == "embeddings"
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (2_500, 0)
    assert a[sc.RESPONSE_ID] == response.id
    # embed-v4.0: $0.12 / M input tokens
    assert a[sc.USAGE_COST] == pytest.approx(0.0003, abs=1e-12)
    assert a[sc.USAGE_COST] == pytest.approx(cohere_price("embed-v4.0", 2_500), abs=1e-12)


async def test_async_embed(telemetry: Any, emu: CohereEmulator) -> None:
    emu.push(CohereReply(billed_input_tokens=40))
    await aclient(emu).embed(
        model="embed-v4.0", texts=["x"], input_type="search_query", embedding_types=["int8"]
    )
    a = attrs(telemetry.one_llm_span())
    assert a[sc.OPERATION_NAME] == "embeddings" and a[sc.USAGE_INPUT_TOKENS] == 40


# --- errors ------------------------------------------------------------------------------------

ERRORS = [
    (400, cohere.BadRequestError),
    (401, cohere.UnauthorizedError),
    (422, cohere.UnprocessableEntityError),
    (429, cohere.TooManyRequestsError),
    (500, cohere.InternalServerError),
]


@pytest.mark.parametrize(("status", "exc_type"), ERRORS)
def test_http_errors_recorded_and_reraised_unchanged(
    instrument_with: Any, emu: CohereEmulator, status: int, exc_type: type[Exception]
) -> None:
    c = client(emu)
    emu.push(CohereReply(status=status, message="boom"))
    with pytest.raises(exc_type) as plain:
        chat(c)
    t = instrument_with()
    emu.push(CohereReply(status=status, message="boom"))
    with pytest.raises(exc_type) as caught:
        chat(c)
    assert type(caught.value) is type(plain.value)
    assert caught.value.status_code == status and caught.value.body == {
        "id": caught.value.body["id"],
        "message": "boom",
    }
    span = t.one_llm_span()
    assert attrs(span)[sc.ERROR_TYPE] == exc_type.__qualname__
    assert span.status.status_code is StatusCode.ERROR
    (point,) = t.points(sc.METRIC_OPERATION_DURATION)
    assert point.attributes[sc.ERROR_TYPE] == exc_type.__qualname__


@pytest.mark.parametrize(("status", "exc_type"), [ERRORS[3], ERRORS[4]])
async def test_stream_and_async_errors_reraised(
    telemetry: Any, emu: CohereEmulator, status: int, exc_type: type[Exception]
) -> None:
    emu.push(*[CohereReply(status=status) for _ in range(4)])
    with pytest.raises(exc_type):
        list(stream(client(emu)))
    with pytest.raises(exc_type):
        await chat(aclient(emu))
    with pytest.raises(exc_type):
        async for _ in stream(aclient(emu)):
            pass
    with pytest.raises(exc_type):
        await aclient(emu).embed(model="embed-v4.0", texts=["x"], input_type="search_query")
    spans = by_start(telemetry.llm_spans())
    assert len(spans) == 4
    assert {attrs(s)[sc.ERROR_TYPE] for s in spans} == {exc_type.__qualname__}
    assert [attrs(s)[sc.REQUEST_STREAM] for s in spans] == [True, False, True, False]
    assert all(s.status.status_code is StatusCode.ERROR for s in spans)


def test_retries_are_one_call_with_one_span(telemetry: Any, emu: CohereEmulator) -> None:
    emu.push(CohereReply(status=429, headers={"retry-after-ms": "1"}), CohereReply(billed_input_tokens=9))
    try:
        chat(client(emu), request_options={"max_retries": 1})
    except cohere.TooManyRequestsError:
        # 5.x before the 7.x retry logic sends the call once whatever `max_retries` says
        assert "max_retries" not in inspect.signature(cohere.ClientV2).parameters
        assert emu.served.requests == 1
        assert attrs(telemetry.one_llm_span())[sc.ERROR_TYPE] == "TooManyRequestsError"
        return
    assert emu.served.requests == 2
    a = attrs(telemetry.one_llm_span())
    assert sc.ERROR_TYPE not in a and a[sc.USAGE_INPUT_TOKENS] == 9


# --- privacy -----------------------------------------------------------------------------------


def test_no_content_and_no_secrets_by_default(telemetry: Any, emu: CohereEmulator) -> None:
    emu.push(CohereReply(text="The capital is Paris."), CohereReply(text="Paris again.", chunks=2))
    c = client(emu)
    chat(c)
    list(stream(c))
    assert emu.requests[0].headers["authorization"] == f"Bearer {API_KEY}"
    for span in telemetry.spans():
        a = attrs(span)
        assert sc.INPUT_MESSAGES not in a and sc.OUTPUT_MESSAGES not in a
        blob = json.dumps(a, default=str)
        assert API_KEY not in blob and "capital" not in blob and "Paris" not in blob


def test_content_capture_opt_in(instrument_with: Any, emu: CohereEmulator) -> None:
    t = instrument_with(capture_content=True)
    emu.push(CohereReply(text="Paris."), CohereReply(text="Paris, of course.", chunks=3))
    c = client(emu)
    system = {"role": "system", "content": "You are terse."}
    chat(c, messages=[system, *MSGS])
    list(stream(c, messages=[cohere.UserChatMessageV2(content=QUESTION)]))
    plain, streamed = by_start(t.llm_spans())
    question = semconv_text("user", QUESTION)
    assert json.loads(attrs(plain)[sc.INPUT_MESSAGES]) == [semconv_text("system", "You are terse."), question]
    assert json.loads(attrs(plain)[sc.OUTPUT_MESSAGES]) == [
        semconv_text("assistant", "Paris.", finish_reason="complete")
    ]
    assert json.loads(attrs(streamed)[sc.INPUT_MESSAGES]) == [question]
    assert json.loads(attrs(streamed)[sc.OUTPUT_MESSAGES]) == [
        semconv_text("assistant", "Paris, of course.", finish_reason="complete")
    ]
    assert API_KEY not in json.dumps(attrs(plain), default=str)


# --- lifecycle ---------------------------------------------------------------------------------


def _methods() -> list[Any]:
    return [
        getattr(raw_client, attr.split(".")[0]).__dict__[attr.split(".")[1]] for _, attr in provider.TARGETS
    ]


def test_uninstrument_restores_every_patched_method(emu: CohereEmulator) -> None:
    from tests.conftest import make_telemetry

    originals = _methods()
    t = make_telemetry()
    try:
        assert all(now is not before for now, before in zip(_methods(), originals, strict=True))
    finally:
        otel_llm_usage.uninstrument()
    assert all(now is before for now, before in zip(_methods(), originals, strict=True))
    chat(client(emu))
    list(stream(client(emu)))
    assert t.spans() == []


def test_providers_option_narrows(instrument_with: Any, emu: CohereEmulator) -> None:
    originals = _methods()
    t = instrument_with(providers=["openai"])
    assert all(now is before for now, before in zip(_methods(), originals, strict=True))
    chat(client(emu))
    assert t.llm_spans() == []


def test_instrument_twice_records_one_span_per_call(telemetry: Any, emu: CohereEmulator) -> None:
    otel_llm_usage.instrument()
    chat(client(emu))
    assert len(telemetry.llm_spans()) == 1


def test_endpoints_option_names_the_provider(instrument_with: Any, emu: CohereEmulator) -> None:
    t = instrument_with(endpoints={"127.0.0.1": "cohere-gateway"})
    chat(client(emu))
    assert attrs(t.one_llm_span())[sc.PROVIDER_NAME] == "cohere-gateway"


def test_no_client_imported_until_the_application_imports_it() -> None:
    script = textwrap.dedent(
        """
        import sys
        import otel_llm_usage
        otel_llm_usage.instrument(providers=["cohere"])
        assert "cohere" not in sys.modules, "instrument() imported cohere"
        import cohere
        from cohere.v2.raw_client import RawV2Client
        assert hasattr(RawV2Client.__dict__["chat"], "__wrapped__"), "not patched on import"
        otel_llm_usage.uninstrument()
        assert not hasattr(RawV2Client.__dict__["chat"], "__wrapped__"), "not restored"
        print("ok")
        """
    )
    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=root, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# --- never break the app, count once -----------------------------------------------------------


def test_internal_failure_never_reaches_the_caller(
    telemetry: Any, emu: CohereEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("extractor bug")

    monkeypatch.setattr(provider, "result_from", broken)
    monkeypatch.setattr(provider.ChatStreamAccumulator, "add", broken)
    c = client(emu)
    assert chat(c).message.content[0].text
    assert [e.type for e in stream(c)][-1] == "message-end"
    assert len(telemetry.llm_spans()) == 2
    assert {"cohere.result", "stream.chunk"} <= reported_sites()


def test_budget_exceeded_propagates_before_the_request(telemetry: Any, emu: CohereEmulator) -> None:
    from otel_llm_usage import BudgetExceeded
    from tests.conftest import RefuseEveryCall

    telemetry.instrumentor.recorder.add_listener(RefuseEveryCall())
    c = client(emu)
    with pytest.raises(BudgetExceeded):
        chat(c)
    with pytest.raises(BudgetExceeded):
        list(stream(c))
    with pytest.raises(BudgetExceeded):
        c.embed(model="embed-v4.0", texts=["x"], input_type="search_query")
    assert emu.requests == []
    assert telemetry.llm_spans() == []


def test_nested_instrumented_call_records_once(telemetry: Any, emu: CohereEmulator) -> None:
    token = in_llm_call.set(True)
    try:
        c = client(emu)
        chat(c)
        list(stream(c))
    finally:
        in_llm_call.reset(token)
    assert telemetry.llm_spans() == []
    assert len(emu.requests) == 2


def test_llm_span_is_current_while_the_request_is_sent(telemetry: Any, emu: CohereEmulator) -> None:
    current: list[Any] = []

    def hook(_request: Any) -> None:
        current.append(trace.get_current_span().get_span_context().span_id)

    c = client(emu, httpx_client=httpx.Client(event_hooks={"request": [hook]}))
    tracer = telemetry.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("handler") as parent:
        chat(c)
        for _ in stream(c):
            assert trace.get_current_span() is parent  # the caller's context between events
    spans = by_start(telemetry.llm_spans())
    assert current == [s.context.span_id for s in spans]
    assert all(s.parent is not None and s.parent.span_id == parent.get_span_context().span_id for s in spans)
