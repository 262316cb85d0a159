"""The groq SDK, driven over loopback HTTP against the Groq emulator."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import groq
import httpx
import openai
import pytest
from genai_prices import Usage as GenaiUsage
from genai_prices import calc_price
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

import otel_llm_usage
from emulators import GroqEmulator, GroqReply, OpenAIEmulator, Reply
from otel_llm_usage import semconv as sc
from otel_llm_usage._guard import reported_sites
from otel_llm_usage.context import in_llm_call
from otel_llm_usage.providers import _openai_read as openai_read
from otel_llm_usage.providers import groq as provider
from otel_llm_usage.providers import openai as openai_provider
from otel_llm_usage.usage import TokenUsage
from tests.conftest import semconv_text

MSGS: list[Any] = [{"role": "user", "content": "What is the capital of France?"}]
API_KEY = "gsk_test_secret_key_0123456789"
LLAMA = "llama-3.3-70b-versatile"
GPT_OSS = "openai/gpt-oss-120b"
# openai/gpt-oss-120b on Groq: $0.15 / M input, $0.075 / M cached input, $0.60 / M output.
# 464 uncached + 1536 cached in, 800 out (300 of them reasoning):
GPT_OSS_COST = 464 * 0.15e-6 + 1536 * 0.075e-6 + 800 * 0.60e-6  # $0.0006648
# llama-3.3-70b-versatile: $0.59 / M input, $0.79 / M output; 1000 in, 500 out:
LLAMA_COST = 1000 * 0.59e-6 + 500 * 0.79e-6  # $0.000985


@pytest.fixture(scope="module")
def _server() -> Iterator[GroqEmulator]:
    with GroqEmulator() as server:
        yield server


@pytest.fixture
def emu(_server: GroqEmulator) -> GroqEmulator:
    _server.reset()
    return _server


def client(emu: GroqEmulator, **kw: Any) -> groq.Groq:
    return groq.Groq(base_url=emu.base_url, api_key=API_KEY, max_retries=0, **kw)


def aclient(emu: GroqEmulator) -> groq.AsyncGroq:
    return groq.AsyncGroq(base_url=emu.base_url, api_key=API_KEY, max_retries=0)


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def create(c: groq.Groq, **kw: Any) -> Any:
    return c.chat.completions.create(**{"model": LLAMA, "messages": MSGS, **kw})


def by_start(spans: list[Any]) -> list[Any]:
    return sorted(spans, key=lambda s: s.start_time)


def test_provider_is_registered() -> None:
    from otel_llm_usage.registry import PROVIDERS

    assert PROVIDERS["groq"] == "otel_llm_usage.providers.groq"
    assert provider.LIBRARY == "groq"


# --- exact tokens and cost ---------------------------------------------------------------------


def test_golden_cost_with_cache_and_reasoning(telemetry: Any, emu: GroqEmulator) -> None:
    emu.push(GroqReply(prompt_tokens=2000, cached_tokens=1536, completion_tokens=800, reasoning_tokens=300))
    completion = create(client(emu), model=GPT_OSS, max_tokens=900, temperature=0.5)
    assert completion.usage.prompt_tokens == 2000

    span = telemetry.one_llm_span()
    a = attrs(span)
    assert span.name == f"chat {GPT_OSS}"
    assert span.kind is SpanKind.CLIENT
    assert a[sc.OPERATION_NAME] == "chat"
    assert a[sc.PROVIDER_NAME] == "groq"
    assert a[sc.REQUEST_MODEL] == GPT_OSS and a[sc.RESPONSE_MODEL] == GPT_OSS
    assert a[sc.RESPONSE_ID] == completion.id
    assert a[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    assert a[sc.REQUEST_MAX_TOKENS] == 900 and a[sc.REQUEST_TEMPERATURE] == 0.5
    assert a[sc.REQUEST_STREAM] is False
    assert a[sc.SERVER_ADDRESS] == "127.0.0.1" and a[sc.SERVER_PORT] == emu.port
    assert a[sc.USAGE_INPUT_TOKENS] == 2000
    assert a[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 1536
    assert sc.USAGE_CACHE_CREATION_INPUT_TOKENS not in a
    assert a[sc.USAGE_OUTPUT_TOKENS] == 800
    assert a[sc.USAGE_REASONING_OUTPUT_TOKENS] == 300
    assert a[sc.USAGE_SOURCE] == "provider"
    expected = calc_price(
        GenaiUsage(input_tokens=2000, cache_read_tokens=1536, output_tokens=800), GPT_OSS, provider_id="groq"
    )
    assert float(expected.total_price) == pytest.approx(0.0006648, abs=1e-15)
    assert a[sc.USAGE_COST] == pytest.approx(GPT_OSS_COST, abs=1e-12)
    assert a[sc.USAGE_COST] == pytest.approx(float(expected.total_price), abs=1e-12)
    assert a[sc.COST_SOURCE] == "price_table"
    assert a[sc.COST_INPUT_USD] == pytest.approx(464 * 0.15e-6, abs=1e-12)
    assert a[sc.COST_CACHE_READ_USD] == pytest.approx(1536 * 0.075e-6, abs=1e-12)
    assert a[sc.COST_OUTPUT_USD] == pytest.approx(800 * 0.60e-6, abs=1e-12)
    assert span.status.status_code is not StatusCode.ERROR
    ledger = TokenUsage(input=2000, output=800, cache_read=1536, reasoning=300)
    assert ledger.valid() and ledger.uncached_input == 464


def test_metrics_for_one_call(telemetry: Any, emu: GroqEmulator) -> None:
    emu.push(GroqReply(prompt_tokens=2000, cached_tokens=1536, completion_tokens=800, reasoning_tokens=300))
    create(client(emu), model=GPT_OSS)
    tokens = {p.attributes[sc.LLM_TOKEN_TYPE]: p.value for p in telemetry.points(sc.METRIC_TOKENS)}
    assert tokens == {"input": 2000, "output": 800, "cache_read": 1536, "reasoning": 300}
    by_type = {p.attributes[sc.TOKEN_TYPE]: p.sum for p in telemetry.points(sc.METRIC_TOKEN_USAGE)}
    assert by_type == {"input": 2000, "output": 800}
    assert telemetry.total(sc.METRIC_COST, gen_ai__provider__name="groq") == pytest.approx(GPT_OSS_COST)
    (duration,) = telemetry.points(sc.METRIC_OPERATION_DURATION)
    assert duration.attributes[sc.PROVIDER_NAME] == "groq" and duration.count == 1
    assert telemetry.points(sc.METRIC_UNPRICED) == []


def test_stream_golden_cost_from_x_groq_usage(telemetry: Any, emu: GroqEmulator) -> None:
    emu.push(GroqReply(prompt_tokens=1000, completion_tokens=500, chunks=4))
    chunks = list(create(client(emu), stream=True))
    assert chunks[-1].x_groq.usage.prompt_tokens == 1000
    assert all(chunk.usage is None for chunk in chunks)

    span = telemetry.one_llm_span()
    a = attrs(span)
    assert a[sc.REQUEST_STREAM] is True
    assert a[sc.USAGE_INPUT_TOKENS] == 1000 and a[sc.USAGE_OUTPUT_TOKENS] == 500
    expected = calc_price(GenaiUsage(input_tokens=1000, output_tokens=500), LLAMA, provider_id="groq")
    assert float(expected.total_price) == pytest.approx(0.000985, abs=1e-15)
    assert a[sc.USAGE_COST] == pytest.approx(LLAMA_COST, abs=1e-12)
    assert a[sc.USAGE_COST] == pytest.approx(float(expected.total_price), abs=1e-12)
    assert a[sc.RESPONSE_ID] == chunks[0].id
    assert a[sc.RESPONSE_MODEL] == LLAMA
    assert a[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    assert a[sc.STREAM_CHUNKS] == len(chunks) == 4 + 2
    assert sc.STREAM_INCOMPLETE not in a and sc.STREAM_USAGE_INJECTED not in a
    assert a[sc.RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    (ttfc,) = telemetry.points(sc.METRIC_TIME_TO_FIRST_CHUNK)
    assert ttfc.count == 1
    assert "stream_options" not in emu.requests[-1].json


def _chunk_view(chunks: list[Any]) -> list[Any]:
    return [c.model_dump(exclude={"created", "id", "x_groq"}) for c in chunks]


@pytest.mark.parametrize("stream_usage", ["off", "known", "always"])
def test_request_and_chunks_identical_with_and_without_instrumentation(
    instrument_with: Any, emu: GroqEmulator, stream_usage: str
) -> None:
    reply = GroqReply(prompt_tokens=40, completion_tokens=9, chunks=5, id="chatcmpl-fixed")
    emu.push(reply)
    plain = list(create(client(emu), stream=True))
    plain_body = emu.requests[-1].json

    t = instrument_with(stream_usage=stream_usage)
    emu.push(reply)
    seen = list(create(client(emu), stream=True))
    assert emu.requests[-1].json == plain_body
    assert _chunk_view(seen) == _chunk_view(plain)
    assert [c.x_groq.usage for c in seen if c.x_groq] == [c.x_groq.usage for c in plain if c.x_groq]
    assert attrs(t.one_llm_span())[sc.USAGE_INPUT_TOKENS] == 40


def test_usage_asked_with_stream_options_is_counted_once(telemetry: Any, emu: GroqEmulator) -> None:
    emu.push(GroqReply(prompt_tokens=1000, completion_tokens=500, chunks=2))
    chunks = list(create(client(emu), stream=True, extra_body={"stream_options": {"include_usage": True}}))
    last = chunks[-1]
    assert last.usage is not None and last.x_groq.usage is not None
    assert last.usage.prompt_tokens == last.x_groq.usage.prompt_tokens == 1000
    assert last.choices[0].finish_reason == "stop"
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_INPUT_TOKENS] == 1000 and a[sc.USAGE_OUTPUT_TOKENS] == 500
    assert a[sc.USAGE_COST] == pytest.approx(LLAMA_COST, abs=1e-12)
    assert a[sc.STREAM_CHUNKS] == len(chunks)


async def test_async_create_and_stream(telemetry: Any, emu: GroqEmulator) -> None:
    emu.push(
        GroqReply(prompt_tokens=2000, cached_tokens=1536, completion_tokens=800, reasoning_tokens=300),
        GroqReply(prompt_tokens=1000, completion_tokens=500, chunks=3),
    )
    async with aclient(emu) as c:
        plain = await c.chat.completions.create(model=GPT_OSS, messages=MSGS)
        stream = await c.chat.completions.create(model=LLAMA, messages=MSGS, stream=True)
        chunks = [chunk async for chunk in stream]
    assert plain.usage.completion_tokens == 800
    assert chunks[-1].x_groq.usage.completion_tokens == 500
    first, second = by_start(telemetry.llm_spans())
    assert attrs(first)[sc.REQUEST_STREAM] is False
    assert attrs(first)[sc.USAGE_COST] == pytest.approx(GPT_OSS_COST, abs=1e-12)
    assert attrs(second)[sc.REQUEST_STREAM] is True
    assert attrs(second)[sc.USAGE_COST] == pytest.approx(LLAMA_COST, abs=1e-12)
    assert attrs(second)[sc.STREAM_CHUNKS] == len(chunks)
    assert sc.STREAM_INCOMPLETE not in attrs(second)


def test_unknown_model_is_unpriced(telemetry: Any, emu: GroqEmulator) -> None:
    emu.push(
        GroqReply(prompt_tokens=10, completion_tokens=5), GroqReply(prompt_tokens=20, completion_tokens=5)
    )
    c = client(emu)
    create(c, model="house-llama-9b")
    list(create(c, model="house-llama-9b", stream=True))
    for span in telemetry.llm_spans():
        a = attrs(span)
        assert sc.USAGE_COST not in a and sc.COST_SOURCE not in a
        assert a[sc.USAGE_INPUT_TOKENS] in (10, 20)
    assert telemetry.total(sc.METRIC_UNPRICED, gen_ai__provider__name="groq") == 2
    assert telemetry.points(sc.METRIC_COST) == []


def test_missing_usage_is_marked_not_invented(telemetry: Any, emu: GroqEmulator) -> None:
    emu.push(GroqReply(omit_usage=True), GroqReply(omit_usage=True))
    c = client(emu)
    create(c)
    chunks = list(create(c, stream=True))
    assert chunks[-1].x_groq.usage is None
    for span in telemetry.llm_spans():
        a = attrs(span)
        assert a[sc.USAGE_SOURCE] == "missing"
        assert sc.USAGE_INPUT_TOKENS not in a and sc.USAGE_COST not in a
    assert telemetry.points(sc.METRIC_UNPRICED) == []


def test_malformed_usage_never_breaks_the_call(telemetry: Any, emu: GroqEmulator) -> None:
    raw = {"prompt_tokens": 12, "completion_tokens": -3, "prompt_tokens_details": {"cached_tokens": 99}}
    emu.push(GroqReply(raw_usage=raw))
    completion = create(client(emu))
    assert completion.choices[0].message.content
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_INPUT_TOKENS] == 12 and a[sc.USAGE_OUTPUT_TOKENS] == 0
    assert a[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 12  # a subset is cut to fit inside its total


# --- every way a stream ends -------------------------------------------------------------------


def test_stream_break_then_close_ends_once_incomplete(telemetry: Any, emu: GroqEmulator) -> None:
    emu.push(GroqReply(chunks=10))
    stream = create(client(emu), stream=True)
    for _ in stream:
        break
    assert telemetry.llm_spans() == []
    stream.close()
    stream.close()
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == 1
    assert a[sc.USAGE_SOURCE] == "missing"


def test_stream_with_block_exit_ends_span(telemetry: Any, emu: GroqEmulator) -> None:
    emu.push(GroqReply(chunks=10))
    with create(client(emu), stream=True) as stream:
        next(iter(stream))
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == 1


def test_stream_garbage_collected_ends_span(telemetry: Any, emu: GroqEmulator) -> None:
    emu.push(GroqReply(chunks=10))
    stream = create(client(emu), stream=True)
    next(iter(stream))
    del stream
    gc.collect()
    assert attrs(telemetry.one_llm_span())[sc.STREAM_INCOMPLETE] is True


def test_stream_cut_midway_records_error_and_reraises(telemetry: Any, emu: GroqEmulator) -> None:
    emu.push(GroqReply(chunks=10, cut_after=3))
    got: list[Any] = []
    with pytest.raises(Exception) as caught:  # whatever the SDK raises, unchanged
        for chunk in create(client(emu), stream=True):
            got.append(chunk)
    assert 0 < len(got) <= 3
    span = telemetry.one_llm_span()
    a = attrs(span)
    assert a[sc.ERROR_TYPE] == type(caught.value).__qualname__
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == len(got)
    assert a[sc.USAGE_SOURCE] == "missing"
    assert span.status.status_code is StatusCode.ERROR


def test_stream_cut_after_its_usage_keeps_the_usage(telemetry: Any, emu: GroqEmulator) -> None:
    # Events: opening chunk, 2 content chunks, closing chunk with x_groq.usage, [DONE]: cut before [DONE].
    emu.push(GroqReply(prompt_tokens=1000, completion_tokens=500, chunks=2, cut_after=4))
    got: list[Any] = []
    with pytest.raises(Exception) as caught:
        for chunk in create(client(emu), stream=True):
            got.append(chunk)
    assert got[-1].x_groq.usage is not None
    a = attrs(telemetry.one_llm_span())
    assert a[sc.ERROR_TYPE] == type(caught.value).__qualname__
    assert a[sc.USAGE_INPUT_TOKENS] == 1000 and a[sc.USAGE_OUTPUT_TOKENS] == 500
    assert a[sc.USAGE_COST] == pytest.approx(LLAMA_COST, abs=1e-12)
    assert emu.served.prompt_tokens == 1000


def test_consumer_exception_inside_loop_propagates(telemetry: Any, emu: GroqEmulator) -> None:
    emu.push(GroqReply(chunks=5))
    stream = create(client(emu), stream=True)
    with pytest.raises(KeyError, match="consumer bug"):
        for _ in stream:
            raise KeyError("consumer bug")
    stream.close()
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_INCOMPLETE] is True and sc.ERROR_TYPE not in a


async def test_async_stream_cancellation(telemetry: Any, emu: GroqEmulator) -> None:
    emu.push(GroqReply(chunks=20, chunk_delay_s=0.2))
    first = asyncio.Event()

    async def consume() -> None:
        async with aclient(emu) as c:
            stream = await c.chat.completions.create(model=LLAMA, messages=MSGS, stream=True)
            async for _ in stream:
                first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    span = telemetry.one_llm_span()
    a = attrs(span)
    assert a[sc.ERROR_TYPE] == "CancelledError"
    assert a[sc.STREAM_INCOMPLETE] is True
    assert span.status.status_code is StatusCode.ERROR


async def test_async_stream_async_with_and_close(telemetry: Any, emu: GroqEmulator) -> None:
    emu.push(GroqReply(chunks=8), GroqReply(chunks=8))
    async with aclient(emu) as c:
        async with await c.chat.completions.create(model=LLAMA, messages=MSGS, stream=True) as stream:
            async for _ in stream:
                break
        assert attrs(telemetry.one_llm_span())[sc.STREAM_INCOMPLETE] is True
        telemetry.exporter.clear()
        stream = await c.chat.completions.create(model=LLAMA, messages=MSGS, stream=True)
        await stream.close()
        await stream.close()
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == 0


# --- raw responses -----------------------------------------------------------------------------


def test_with_raw_response_and_streaming_response(telemetry: Any, emu: GroqEmulator) -> None:
    c = client(emu)
    emu.push(GroqReply(prompt_tokens=11, completion_tokens=2))
    raw = c.chat.completions.with_raw_response.create(model=LLAMA, messages=MSGS)
    assert isinstance(raw, groq.APIResponse)
    assert len(telemetry.llm_spans()) == 1  # the body was read: recorded without waiting for parse()
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.parse().usage.prompt_tokens == 11

    emu.push(GroqReply(prompt_tokens=12, completion_tokens=2, chunks=3))
    raw_stream = c.chat.completions.with_raw_response.create(model=LLAMA, messages=MSGS, stream=True)
    assert len(list(raw_stream.parse())) == 3 + 2

    emu.push(GroqReply(prompt_tokens=13, completion_tokens=2))
    with c.chat.completions.with_streaming_response.create(model=LLAMA, messages=MSGS) as resp:
        assert resp.parse().usage.prompt_tokens == 13

    emu.push(GroqReply(prompt_tokens=14, completion_tokens=2))
    with c.chat.completions.with_streaming_response.create(model=LLAMA, messages=MSGS) as resp:
        assert resp.json()["usage"]["prompt_tokens"] == 14  # read without parse(): usage from the body

    emu.push(GroqReply(prompt_tokens=15, completion_tokens=2, chunks=2))
    with c.chat.completions.with_streaming_response.create(model=LLAMA, messages=MSGS, stream=True) as resp:
        assert len(list(resp.parse())) == 2 + 2

    spans = by_start(telemetry.llm_spans())
    assert [attrs(s)[sc.USAGE_INPUT_TOKENS] for s in spans] == [11, 12, 13, 14, 15]
    assert [attrs(s)[sc.REQUEST_STREAM] for s in spans] == [False, True, False, False, True]
    assert all(sc.STREAM_INCOMPLETE not in attrs(s) for s in spans)


def test_streaming_response_closed_unread_ends_without_usage(telemetry: Any, emu: GroqEmulator) -> None:
    with client(emu).chat.completions.with_streaming_response.create(model=LLAMA, messages=MSGS) as resp:
        assert resp.status_code == 200
        assert telemetry.llm_spans() == []
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_SOURCE] == "missing" and sc.ERROR_TYPE not in a


async def test_async_raw_and_streaming_response(telemetry: Any, emu: GroqEmulator) -> None:
    emu.push(
        GroqReply(prompt_tokens=21, completion_tokens=2),
        GroqReply(prompt_tokens=22, completion_tokens=2),
        GroqReply(prompt_tokens=23, completion_tokens=2, chunks=2),
    )
    async with aclient(emu) as c:
        raw = await c.chat.completions.with_raw_response.create(model=LLAMA, messages=MSGS)
        assert isinstance(raw, groq.AsyncAPIResponse)
        assert len(telemetry.llm_spans()) == 1
        assert (await raw.parse()).usage.prompt_tokens == 21
        async with c.chat.completions.with_streaming_response.create(model=LLAMA, messages=MSGS) as resp:
            assert (await resp.json())["usage"]["prompt_tokens"] == 22
        async with c.chat.completions.with_streaming_response.create(
            model=LLAMA, messages=MSGS, stream=True
        ) as resp:
            chunks = [chunk async for chunk in await resp.parse()]
    assert chunks[-1].x_groq.usage.prompt_tokens == 23
    assert sorted(attrs(s)[sc.USAGE_INPUT_TOKENS] for s in telemetry.llm_spans()) == [21, 22, 23]


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "exc_type", "error_type"),
    [
        (400, groq.BadRequestError, "invalid_request_error"),
        (401, groq.AuthenticationError, "invalid_request_error"),
        (404, groq.NotFoundError, "invalid_request_error"),
        (429, groq.RateLimitError, "tokens"),
        (500, groq.InternalServerError, "internal_server_error"),
        (503, groq.InternalServerError, "internal_server_error"),
    ],
)
def test_provider_errors_recorded_and_reraised_unchanged(
    telemetry: Any, emu: GroqEmulator, status: int, exc_type: type[Exception], error_type: str
) -> None:
    emu.push(GroqReply(status=status))
    with pytest.raises(exc_type) as caught:
        create(client(emu))
    assert type(caught.value) is exc_type
    assert isinstance(caught.value, groq.APIStatusError)
    assert caught.value.status_code == status
    assert caught.value.body["error"]["type"] == error_type  # the body as Groq sent it, untouched
    span = telemetry.one_llm_span()
    a = attrs(span)
    assert a[sc.ERROR_TYPE] == exc_type.__qualname__
    assert a[sc.USAGE_SOURCE] == "missing"
    assert span.status.status_code is StatusCode.ERROR
    (point,) = telemetry.points(sc.METRIC_OPERATION_DURATION)
    assert point.attributes[sc.ERROR_TYPE] == exc_type.__qualname__


async def test_async_rate_limit_and_streamed_error(telemetry: Any, emu: GroqEmulator) -> None:
    emu.push(GroqReply(status=429), GroqReply(status=503))
    async with aclient(emu) as c:
        with pytest.raises(groq.RateLimitError) as caught:
            await c.chat.completions.create(model=LLAMA, messages=MSGS)
        with pytest.raises(groq.InternalServerError):
            await c.chat.completions.create(model=LLAMA, messages=MSGS, stream=True)
    assert caught.value.response.headers["retry-after"] == "3"
    assert "Rate limit reached for model" in caught.value.body["error"]["message"]
    spans = by_start(telemetry.llm_spans())
    assert [attrs(s)[sc.ERROR_TYPE] for s in spans] == ["RateLimitError", "InternalServerError"]
    assert [attrs(s)[sc.REQUEST_STREAM] for s in spans] == [False, True]


def test_internal_failure_never_reaches_the_caller(
    telemetry: Any, emu: GroqEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("extractor bug")

    monkeypatch.setattr(openai_provider.OpenAIHooks, "extract", staticmethod(broken))
    monkeypatch.setattr(openai_read.ChunkAccumulator, "add", broken)
    c = client(emu)
    assert create(c).choices[0].message.content
    chunks = list(create(c, stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len(telemetry.llm_spans()) == 2
    assert {"groq.result", "stream.chunk"} <= reported_sites()


def test_budget_exceeded_propagates_before_the_request(telemetry: Any, emu: GroqEmulator) -> None:
    from otel_llm_usage import BudgetExceeded
    from tests.conftest import RefuseEveryCall

    telemetry.instrumentor.recorder.add_listener(RefuseEveryCall())
    with pytest.raises(BudgetExceeded):
        create(client(emu))
    assert emu.requests == []


# --- privacy -----------------------------------------------------------------------------------


def test_no_content_and_no_secrets_by_default(telemetry: Any, emu: GroqEmulator) -> None:
    emu.push(GroqReply(text="The capital is Paris."), GroqReply(text="Streamed Paris.", chunks=2))
    c = client(emu, default_headers={"X-Api-Key": API_KEY})
    create(c)
    list(create(c, stream=True))
    assert emu.requests[-1].headers["authorization"] == f"Bearer {API_KEY}"
    for span in telemetry.spans():
        a = attrs(span)
        assert sc.INPUT_MESSAGES not in a and sc.OUTPUT_MESSAGES not in a
        dump = json.dumps(a, default=str)
        assert API_KEY not in dump and "Paris" not in dump and "capital" not in dump
        assert "authorization" not in dump.lower()


def test_content_capture_opt_in(instrument_with: Any, emu: GroqEmulator) -> None:
    t = instrument_with(capture_content=True)
    emu.push(GroqReply(text="The capital is Paris."), GroqReply(text="Streamed Paris.", chunks=3))
    c = client(emu)
    create(c)
    list(create(c, stream=True))
    first, second = by_start(t.llm_spans())
    question = [semconv_text("user", "What is the capital of France?")]
    assert json.loads(attrs(first)[sc.INPUT_MESSAGES]) == question
    assert json.loads(attrs(first)[sc.OUTPUT_MESSAGES]) == [
        semconv_text("assistant", "The capital is Paris.", finish_reason="stop")
    ]
    assert json.loads(attrs(second)[sc.INPUT_MESSAGES]) == question
    assert json.loads(attrs(second)[sc.OUTPUT_MESSAGES]) == [
        semconv_text("assistant", "Streamed Paris.", finish_reason="stop")
    ]
    assert API_KEY not in json.dumps([attrs(first), attrs(second)], default=str)


# --- which calls are recorded, and by whom -----------------------------------------------------


def test_other_endpoints_are_not_recorded(telemetry: Any, emu: GroqEmulator) -> None:
    models = client(emu).models.list()
    assert LLAMA in [m.id for m in models.data]
    assert telemetry.llm_spans() == []


def test_openai_hook_does_not_record_groq_calls(telemetry: Any, emu: GroqEmulator) -> None:
    import groq._base_client as groq_base
    import openai._base_client as openai_base

    assert groq_base.SyncAPIClient is not openai_base.SyncAPIClient
    emu.push(GroqReply(prompt_tokens=5, completion_tokens=1), GroqReply(prompt_tokens=6, completion_tokens=1))
    create(client(emu))
    list(create(client(emu), stream=True))
    spans = telemetry.llm_spans()
    assert len(spans) == 2
    assert {attrs(s)[sc.PROVIDER_NAME] for s in spans} == {"groq"}
    assert telemetry.total(sc.METRIC_TOKENS, gen_ai__provider__name="openai") == 0


def test_providers_narrowing(instrument_with: Any, emu: GroqEmulator) -> None:
    import groq._base_client as groq_base

    original = groq_base.SyncAPIClient.__dict__["request"]
    with OpenAIEmulator() as openai_emu:
        t = instrument_with(providers=["openai"])
        assert groq_base.SyncAPIClient.__dict__["request"] is original
        create(client(emu))
        oai = openai.OpenAI(base_url=openai_emu.base_url, api_key="sk-x", max_retries=0)
        openai_emu.push(Reply(prompt_tokens=3, completion_tokens=1))
        oai.chat.completions.create(model="gpt-4o", messages=MSGS)
        assert [attrs(s)[sc.PROVIDER_NAME] for s in t.llm_spans()] == ["openai"]
        otel_llm_usage.uninstrument()

        t = instrument_with(providers=["groq"])
        create(client(emu))
        oai.chat.completions.create(model="gpt-4o", messages=MSGS)
        assert [attrs(s)[sc.PROVIDER_NAME] for s in t.llm_spans()] == ["groq"]


def test_uninstrument_restores_the_original_methods(emu: GroqEmulator) -> None:
    import groq._base_client as groq_base

    from tests.conftest import make_telemetry

    sync_original = groq_base.SyncAPIClient.__dict__["request"]
    async_original = groq_base.AsyncAPIClient.__dict__["request"]
    t = make_telemetry()
    assert groq_base.SyncAPIClient.__dict__["request"] is not sync_original
    create(client(emu))
    assert len(t.llm_spans()) == 1
    otel_llm_usage.uninstrument()
    otel_llm_usage.uninstrument()
    assert groq_base.SyncAPIClient.__dict__["request"] is sync_original
    assert groq_base.AsyncAPIClient.__dict__["request"] is async_original
    create(client(emu))
    assert len(t.llm_spans()) == 1


LAZY_SCRIPT = """
import sys
import otel_llm_usage
import emulators
otel_llm_usage.instrument()
assert "groq" not in sys.modules, "instrumenting imported the groq SDK"
import groq
from groq._base_client import AsyncAPIClient, SyncAPIClient
assert hasattr(SyncAPIClient.__dict__["request"], "__wrapped__"), "groq not patched on import"
assert hasattr(AsyncAPIClient.__dict__["request"], "__wrapped__"), "groq not patched on import"
print("ok")
"""


def test_groq_is_imported_by_the_application_only_and_patched_then() -> None:
    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run(
        [sys.executable, "-c", LAZY_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_endpoints_option_names_the_provider(instrument_with: Any, emu: GroqEmulator) -> None:
    t = instrument_with(endpoints={"127.0.0.1": "my_gateway"})
    create(client(emu))
    a = attrs(t.one_llm_span())
    assert a[sc.PROVIDER_NAME] == "my_gateway"
    assert sc.USAGE_COST not in a  # no price table for a provider named by the user


def test_nested_instrumented_call_records_once(telemetry: Any, emu: GroqEmulator) -> None:
    token = in_llm_call.set(True)  # what an outer instrumented client (litellm) sets around its call
    try:
        create(client(emu))
    finally:
        in_llm_call.reset(token)
    assert telemetry.llm_spans() == []


def test_llm_span_is_current_while_the_request_is_sent(telemetry: Any, emu: GroqEmulator) -> None:
    current: list[Any] = []

    def hook(_request: Any) -> None:
        current.append(trace.get_current_span().get_span_context())

    with httpx.Client(event_hooks={"request": [hook]}) as http:
        create(client(emu, http_client=http))
    span = telemetry.one_llm_span()
    assert [c.span_id for c in current] == [span.context.span_id]


# --- pure extraction ---------------------------------------------------------------------------


def test_stream_usage_of_prefers_usage_then_x_groq() -> None:
    counts = {"prompt_tokens": 7, "completion_tokens": 3}
    assert openai_read.stream_usage_of({"x_groq": {"id": "req_1", "usage": counts}}, "x_groq") == counts
    assert (
        openai_read.stream_usage_of({"usage": counts, "x_groq": {"usage": {"prompt_tokens": 1}}}, "x_groq")
        == counts
    )
    assert openai_read.stream_usage_of({"x_groq": {"id": "req_1"}}, "x_groq") is None
    assert openai_read.stream_usage_of({"x_groq": None, "usage": None}, "x_groq") is None
    assert openai_read.stream_usage_of(None, "x_groq") is None
    ledger = openai_read.usage_from(
        {
            "queue_time": 0.02,
            "prompt_tokens": 4641,
            "prompt_time": 0.01,
            "completion_tokens": 1817,
            "completion_time": 5.5,
            "total_tokens": 6458,
            "total_time": 5.51,
            "prompt_tokens_details": {"cached_tokens": 4608},
            "completion_tokens_details": {"reasoning_tokens": 1200},
        }
    )
    assert ledger == TokenUsage(input=4641, output=1817, cache_read=4608, reasoning=1200)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(), st.text(max_size=8)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
usage_keys = st.sampled_from(
    ["prompt_tokens", "completion_tokens", "total_tokens", "queue_time", "prompt_time", "completion_time",
     "total_time", "prompt_tokens_details", "completion_tokens_details", "cached_tokens", "reasoning_tokens"]
)  # fmt: skip
usages = st.one_of(
    json_values,
    st.dictionaries(
        usage_keys, st.one_of(json_values, st.dictionaries(usage_keys, json_values, max_size=3)), max_size=6
    ),
)
x_groq = st.fixed_dictionaries({}, optional={"id": json_values, "usage": usages, "error": json_values})
chunks = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "model": json_values,
        "choices": json_values,
        "usage": usages,
        "x_groq": st.one_of(json_values, x_groq),
    },
)


@settings(max_examples=300, deadline=None)
@given(chunks)
def test_groq_usage_extraction_never_raises_and_keeps_the_ledger_invariants(chunk: dict[str, Any]) -> None:
    ledger = openai_read.usage_from(openai_read.stream_usage_of(chunk, "x_groq"))
    assert ledger is None or ledger.valid()
    result = openai_read.result_from(chunk)
    assert result.usage is None or result.usage.valid()


def test_openai_sdk_pointed_at_groq_reads_x_groq_usage(instrument_with: Any, emu: GroqEmulator) -> None:
    import openai

    # The openai SDK asks Groq for no stream usage, even under the default stream_usage="always":
    # Groq sends it anyway, under x_groq, and that is what gets recorded.
    t = instrument_with(endpoints={"127.0.0.1": "groq"})
    emu.push(GroqReply(prompt_tokens=1000, completion_tokens=500, chunks=3))
    c = openai.OpenAI(base_url=f"{emu.base_url}/openai/v1", api_key=API_KEY, max_retries=0)
    messages = [{"role": "user", "content": "hi"}]
    chunks = list(c.chat.completions.create(model=LLAMA, messages=messages, stream=True))
    assert chunks[-1].usage is None and "stream_options" not in emu.requests[-1].json
    a = attrs(t.one_llm_span())
    assert a[sc.PROVIDER_NAME] == "groq"
    assert a[sc.USAGE_INPUT_TOKENS] == 1000 and a[sc.USAGE_OUTPUT_TOKENS] == 500
    assert a[sc.USAGE_COST] == pytest.approx(LLAMA_COST, abs=1e-12)
    assert a[sc.STREAM_CHUNKS] == len(chunks)
