"""The anthropic SDK (2.x), driven over loopback HTTP against the Anthropic emulator."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import threading
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import pytest
from genai_prices import Usage as GenaiUsage
from genai_prices import calc_price
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import BaseModel

import otel_llm_usage
from emulators import AnthropicEmulator, AnthropicReply
from otel_llm_usage import semconv as sc
from otel_llm_usage._guard import reported_sites
from otel_llm_usage.config import Options
from otel_llm_usage.context import in_llm_call
from otel_llm_usage.providers import anthropic as provider
from tests.conftest import semconv_text

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MODEL = "claude-sonnet-4-5"
MSGS: list[Any] = [{"role": "user", "content": "What is the capital of France?"}]
API_KEY = "sk-ant-test-secret-key-0123456789"
BEDROCK_MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"
VERTEX_MODEL = "claude-sonnet-4-5@20250929"
SDK_SCOPE = "com.anthropic.sdk.python"
GOLDEN = {"input_tokens": 300, "cache_read_input_tokens": 5000, "output_tokens": 400}


@pytest.fixture(scope="module")
def _server() -> Iterator[AnthropicEmulator]:
    with AnthropicEmulator() as server:
        yield server


@pytest.fixture
def emu(_server: AnthropicEmulator) -> AnthropicEmulator:
    _server.reset()
    return _server


@pytest.fixture
def global_tracer_provider() -> Iterator[Any]:
    """Make a tracer provider the global one (so the SDK traces its calls), then restore the old one."""
    saved = (trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE)

    def install(tracer_provider: Any) -> None:
        trace._TRACER_PROVIDER_SET_ONCE = trace.Once()
        trace.set_tracer_provider(tracer_provider)

    yield install
    trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = saved


def client(emu: AnthropicEmulator, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=emu.base_url, api_key=API_KEY, max_retries=0, **kw)


def aclient(emu: AnthropicEmulator, **kw: Any) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=emu.base_url, api_key=API_KEY, max_retries=0, **kw)


def bedrock(emu: AnthropicEmulator) -> anthropic.AnthropicBedrock:
    return anthropic.AnthropicBedrock(
        base_url=emu.base_url,
        aws_access_key="AKIAEXAMPLE",
        aws_secret_key="s",
        aws_region="us-east-1",
        max_retries=0,
    )


def vertex(emu: AnthropicEmulator) -> anthropic.AnthropicVertex:
    return anthropic.AnthropicVertex(
        base_url=emu.vertex_base_url, region="us-east5", project_id="proj", access_token="tok", max_retries=0
    )


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def sdk_spans(t: Any) -> list[Any]:
    return [s for s in t.spans() if s.instrumentation_scope.name == SDK_SCOPE]


def create(c: anthropic.Anthropic, **kw: Any) -> Any:
    return c.messages.create(**{"model": MODEL, "max_tokens": 64, "messages": MSGS, **kw})


def test_provider_is_registered() -> None:
    from otel_llm_usage.registry import PROVIDERS

    assert PROVIDERS.get("anthropic") == "otel_llm_usage.providers.anthropic"
    assert "anthropic_native_spans" in {f.name for f in dataclasses.fields(Options)}
    assert Options().anthropic_native_spans == "suppress"


# --- exact tokens and cost ---------------------------------------------------------------------


def test_golden_cost_with_5_minute_cache_writes(telemetry: Any, emu: AnthropicEmulator) -> None:
    emu.push(AnthropicReply(**GOLDEN, cache_5m_input_tokens=1000, model="claude-sonnet-4-5-20250929"))
    message = create(client(emu), max_tokens=50)
    assert message.usage.input_tokens == 300

    span = telemetry.one_llm_span()
    a = attrs(span)
    assert span.name == "chat claude-sonnet-4-5"
    assert span.kind is SpanKind.CLIENT
    assert a[sc.OPERATION_NAME] == "chat"
    assert a[sc.PROVIDER_NAME] == "anthropic"
    assert a[sc.REQUEST_MODEL] == MODEL
    assert a[sc.RESPONSE_MODEL] == "claude-sonnet-4-5-20250929"
    assert a[sc.RESPONSE_ID] == message.id
    assert a[sc.RESPONSE_FINISH_REASONS] == ("end_turn",)
    assert a[sc.REQUEST_MAX_TOKENS] == 50
    assert a[sc.REQUEST_STREAM] is False
    assert a[sc.SERVER_ADDRESS] == "127.0.0.1" and a[sc.SERVER_PORT] == emu.port
    assert a[sc.USAGE_INPUT_TOKENS] == 6300
    assert a[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 5000
    assert a[sc.USAGE_CACHE_CREATION_INPUT_TOKENS] == 1000
    assert sc.USAGE_CACHE_CREATION_1H_INPUT_TOKENS not in a
    assert a[sc.USAGE_OUTPUT_TOKENS] == 400
    assert a[sc.USAGE_SOURCE] == "provider"
    assert a[sc.USAGE_COST] == pytest.approx(0.01215, abs=1e-12)
    assert a[sc.COST_SOURCE] == "price_table"
    assert a[sc.COST_INPUT_USD] == pytest.approx(300 * 3e-6, abs=1e-12)
    assert a[sc.COST_CACHE_READ_USD] == pytest.approx(5000 * 0.3e-6, abs=1e-12)
    assert a[sc.COST_CACHE_WRITE_USD] == pytest.approx(1000 * 3.75e-6, abs=1e-12)
    assert a[sc.COST_OUTPUT_USD] == pytest.approx(400 * 15e-6, abs=1e-12)
    assert span.status.status_code is not StatusCode.ERROR


async def test_golden_cost_with_1_hour_cache_writes(telemetry: Any, emu: AnthropicEmulator) -> None:
    emu.push(AnthropicReply(**GOLDEN, cache_1h_input_tokens=1000))
    async with aclient(emu) as c:
        await c.messages.create(model=MODEL, max_tokens=64, messages=MSGS)
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_CACHE_CREATION_INPUT_TOKENS] == 1000
    assert a[sc.USAGE_CACHE_CREATION_1H_INPUT_TOKENS] == 1000
    assert a[sc.USAGE_COST] == pytest.approx(0.0144, abs=1e-12)


def test_long_context_input_is_priced_at_the_long_context_rate(
    telemetry: Any, emu: AnthropicEmulator
) -> None:
    emu.push(AnthropicReply(input_tokens=250_000, output_tokens=400))
    create(client(emu))
    expected = float(
        calc_price(
            GenaiUsage(input_tokens=250_000, output_tokens=400), MODEL, provider_id="anthropic"
        ).total_price
    )
    # What the same tokens would cost at the base rate, from a request below the long-context threshold.
    small = calc_price(GenaiUsage(input_tokens=100_000, output_tokens=400), MODEL, provider_id="anthropic")
    base_rate = float(small.input_price) * 2.5 + float(small.output_price)
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_INPUT_TOKENS] == 250_000
    assert a[sc.USAGE_COST] == pytest.approx(expected, abs=1e-12)
    assert a[sc.USAGE_COST] != pytest.approx(base_rate, abs=1e-9)


def test_every_ledger_bucket_in_spans_and_metrics(telemetry: Any, emu: AnthropicEmulator) -> None:
    emu.push(
        AnthropicReply(
            input_tokens=100,
            cache_read_input_tokens=40,
            cache_5m_input_tokens=20,
            cache_1h_input_tokens=10,
            output_tokens=70,
            thinking_tokens=50,
        )
    )
    create(client(emu))
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_INPUT_TOKENS] == 170
    assert a[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 40
    assert a[sc.USAGE_CACHE_CREATION_INPUT_TOKENS] == 30
    assert a[sc.USAGE_CACHE_CREATION_1H_INPUT_TOKENS] == 10
    assert a[sc.USAGE_OUTPUT_TOKENS] == 70
    assert a[sc.USAGE_REASONING_OUTPUT_TOKENS] == 50
    tokens = {p.attributes[sc.LLM_TOKEN_TYPE]: p.value for p in telemetry.points(sc.METRIC_TOKENS)}
    assert tokens == {"input": 170, "output": 70, "cache_read": 40, "cache_write": 30, "reasoning": 50}
    by_type = {p.attributes[sc.TOKEN_TYPE]: p.sum for p in telemetry.points(sc.METRIC_TOKEN_USAGE)}
    assert by_type == {"input": 170, "output": 70}
    assert telemetry.total(sc.METRIC_COST, gen_ai__provider__name="anthropic") == pytest.approx(
        a[sc.USAGE_COST]
    )


def test_compaction_iterations_are_billed_on_top_of_the_top_level_usage(
    telemetry: Any, emu: AnthropicEmulator
) -> None:
    raw = {
        "input_tokens": 23_000,
        "output_tokens": 1_000,
        "iterations": [
            {
                "type": "compaction",
                "input_tokens": 180_000,
                "output_tokens": 3_500,
                "cache_read_input_tokens": 0,
            },
            {"type": "message", "input_tokens": 23_000, "output_tokens": 1_000},
        ],
    }
    emu.push(AnthropicReply(raw_usage=raw))
    client(emu).beta.messages.create(model=MODEL, max_tokens=64, messages=MSGS)
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_INPUT_TOKENS] == 203_000
    assert a[sc.USAGE_OUTPUT_TOKENS] == 4_500


def test_missing_usage_is_marked_not_invented(telemetry: Any, emu: AnthropicEmulator) -> None:
    emu.push(AnthropicReply(omit_usage=True))
    create(client(emu))
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_SOURCE] == "missing"
    assert sc.USAGE_INPUT_TOKENS not in a and sc.USAGE_COST not in a


def test_malformed_usage_never_breaks_the_call(telemetry: Any, emu: AnthropicEmulator) -> None:
    emu.push(
        AnthropicReply(
            raw_usage={"input_tokens": "lots", "output_tokens": -4, "cache_read_input_tokens": 1.5}
        )
    )
    message = create(client(emu))
    assert message.content
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_INPUT_TOKENS] == 0 and a[sc.USAGE_OUTPUT_TOKENS] == 0


# --- streams -----------------------------------------------------------------------------------


def test_stream_takes_input_from_message_start_and_output_from_message_delta(
    telemetry: Any, emu: AnthropicEmulator
) -> None:
    emu.push(AnthropicReply(**GOLDEN, cache_5m_input_tokens=1000, usage_in_message_delta=False, chunks=4))
    events = list(create(client(emu), stream=True))
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.usage.input_tokens is None  # the older wire shape: output only in message_delta
    a = attrs(telemetry.one_llm_span())
    assert a[sc.REQUEST_STREAM] is True
    assert a[sc.USAGE_INPUT_TOKENS] == 6300 and a[sc.USAGE_OUTPUT_TOKENS] == 400
    assert a[sc.USAGE_COST] == pytest.approx(0.01215, abs=1e-12)
    assert a[sc.RESPONSE_FINISH_REASONS] == ("end_turn",)
    assert a[sc.RESPONSE_ID] == events[0].message.id
    assert a[sc.STREAM_CHUNKS] == len(events)
    assert sc.STREAM_INCOMPLETE not in a
    assert a[sc.RESPONSE_TIME_TO_FIRST_CHUNK] > 0


def test_stream_prefers_counts_repeated_in_message_delta(telemetry: Any, emu: AnthropicEmulator) -> None:
    start = {
        "input_tokens": 10,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 1000,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 1000},
        "output_tokens": 1,
    }
    emu.push(AnthropicReply(**GOLDEN, cache_1h_input_tokens=1000, start_raw_usage=start))
    list(create(client(emu), stream=True))
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_INPUT_TOKENS] == 6300
    assert a[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 5000
    assert a[sc.USAGE_CACHE_CREATION_1H_INPUT_TOKENS] == 1000
    assert a[sc.USAGE_COST] == pytest.approx(0.0144, abs=1e-12)


def test_stream_helper_sync(telemetry: Any, emu: AnthropicEmulator) -> None:
    emu.push(
        AnthropicReply(text="Paris is the capital.", input_tokens=25, output_tokens=6, stop_reason="end_turn")
    )
    c = client(emu)
    with c.messages.stream(model=MODEL, max_tokens=64, messages=MSGS) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Paris is the capital."
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_INPUT_TOKENS] == final.usage.input_tokens == 25
    assert a[sc.USAGE_OUTPUT_TOKENS] == final.usage.output_tokens == 6
    assert a[sc.RESPONSE_ID] == final.id
    assert a[sc.REQUEST_STREAM] is True
    assert sc.STREAM_INCOMPLETE not in a


async def test_stream_helper_async(telemetry: Any, emu: AnthropicEmulator) -> None:
    emu.push(AnthropicReply(text="alpha beta", input_tokens=25, output_tokens=6))
    async with aclient(emu) as c, c.messages.stream(model=MODEL, max_tokens=64, messages=MSGS) as stream:
        pieces = [piece async for piece in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(pieces) == "alpha beta"
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_INPUT_TOKENS] == final.usage.input_tokens == 25
    assert sc.STREAM_INCOMPLETE not in a


async def test_async_create_and_stream(telemetry: Any, emu: AnthropicEmulator) -> None:
    emu.push(
        AnthropicReply(input_tokens=30, output_tokens=6), AnthropicReply(input_tokens=40, output_tokens=7)
    )
    async with aclient(emu) as c:
        await c.messages.create(model=MODEL, max_tokens=64, messages=MSGS)
        stream = await c.messages.create(model=MODEL, max_tokens=64, messages=MSGS, stream=True)
        events = [event async for event in stream]
    assert events[-1].type == "message_stop"
    first, second = sorted(telemetry.llm_spans(), key=lambda s: s.start_time)
    assert attrs(first)[sc.USAGE_INPUT_TOKENS] == 30 and attrs(first)[sc.REQUEST_STREAM] is False
    assert attrs(second)[sc.USAGE_INPUT_TOKENS] == 40 and attrs(second)[sc.REQUEST_STREAM] is True


def test_beta_messages_create_and_stream(telemetry: Any, emu: AnthropicEmulator) -> None:
    emu.push(
        AnthropicReply(input_tokens=11, output_tokens=2), AnthropicReply(input_tokens=12, output_tokens=3)
    )
    c = client(emu)
    c.beta.messages.create(model=MODEL, max_tokens=64, messages=MSGS, betas=["context-management-2025-06-27"])
    with c.beta.messages.stream(model=MODEL, max_tokens=64, messages=MSGS) as stream:
        final = stream.get_final_message()
    assert final.usage.input_tokens == 12
    spans = sorted(telemetry.llm_spans(), key=lambda s: s.start_time)
    assert [attrs(s)[sc.USAGE_INPUT_TOKENS] for s in spans] == [11, 12]
    assert [attrs(s)[sc.REQUEST_STREAM] for s in spans] == [False, True]


def test_stream_break_then_close_ends_once_incomplete(telemetry: Any, emu: AnthropicEmulator) -> None:
    emu.push(AnthropicReply(input_tokens=80, chunks=10))
    stream = create(client(emu), stream=True)
    for _ in stream:
        break
    assert telemetry.llm_spans() == []
    stream.close()
    stream.close()
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == 1
    assert a[sc.USAGE_INPUT_TOKENS] == 80  # message_start's counts survive a stream cut short


def test_stream_helper_with_exit_early(telemetry: Any, emu: AnthropicEmulator) -> None:
    emu.push(AnthropicReply(chunks=10))
    with client(emu).messages.stream(model=MODEL, max_tokens=64, messages=MSGS) as stream:
        next(iter(stream))
        assert telemetry.llm_spans() == []
    assert attrs(telemetry.one_llm_span())[sc.STREAM_INCOMPLETE] is True


def test_stream_garbage_collected_ends_span(telemetry: Any, emu: AnthropicEmulator) -> None:
    emu.push(AnthropicReply(chunks=10))
    stream = create(client(emu), stream=True)
    next(iter(stream))
    assert telemetry.llm_spans() == []
    del stream
    gc.collect()
    assert attrs(telemetry.one_llm_span())[sc.STREAM_INCOMPLETE] is True


def test_stream_cut_midway_records_error_and_reraises(telemetry: Any, emu: AnthropicEmulator) -> None:
    emu.push(AnthropicReply(chunks=10, cut_after=4, input_tokens=50))
    got = []
    with pytest.raises(Exception) as caught:  # whatever the SDK raises for a broken body, unchanged
        for event in create(client(emu), stream=True):
            got.append(event)
    assert 0 < len(got) <= 4
    span = telemetry.one_llm_span()
    a = attrs(span)
    assert a[sc.ERROR_TYPE] == type(caught.value).__qualname__
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == len(got)
    assert a[sc.USAGE_INPUT_TOKENS] == 50
    assert span.status.status_code is StatusCode.ERROR


def test_error_event_mid_stream_is_recorded_and_reraised(telemetry: Any, emu: AnthropicEmulator) -> None:
    emu.push(AnthropicReply(chunks=5, error_after=4, input_tokens=50))
    with pytest.raises(anthropic.APIStatusError) as caught:
        list(create(client(emu), stream=True))
    assert isinstance(caught.value.body, dict) and caught.value.body["error"]["type"] == "overloaded_error"
    a = attrs(telemetry.one_llm_span())
    assert a[sc.ERROR_TYPE] == "APIStatusError"
    assert a[sc.STREAM_INCOMPLETE] is True
    assert a[sc.USAGE_INPUT_TOKENS] == 50


def test_consumer_exception_inside_loop_propagates(telemetry: Any, emu: AnthropicEmulator) -> None:
    emu.push(AnthropicReply(chunks=5))
    stream = create(client(emu), stream=True)
    with pytest.raises(KeyError):
        for _ in stream:
            raise KeyError("consumer bug")
    stream.close()
    assert attrs(telemetry.one_llm_span())[sc.STREAM_INCOMPLETE] is True


async def test_async_stream_cancellation(telemetry: Any, emu: AnthropicEmulator) -> None:
    gate = threading.Event()
    emu.push(AnthropicReply(chunks=5, gate=gate, gate_after=2))
    first = asyncio.Event()
    async with aclient(emu) as c:

        async def consume() -> None:
            stream = await c.messages.create(model=MODEL, max_tokens=64, messages=MSGS, stream=True)
            async for _ in stream:
                first.set()

        task = asyncio.create_task(consume())
        await first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.set()
    a = attrs(telemetry.one_llm_span())
    assert a[sc.ERROR_TYPE] == "CancelledError"
    assert a[sc.STREAM_INCOMPLETE] is True


async def test_async_stream_async_with_and_close(telemetry: Any, emu: AnthropicEmulator) -> None:
    emu.push(AnthropicReply(chunks=8), AnthropicReply(chunks=8))
    async with aclient(emu) as c:
        async with await c.messages.create(model=MODEL, max_tokens=64, messages=MSGS, stream=True) as stream:
            async for _ in stream:
                break
        assert attrs(telemetry.one_llm_span())[sc.STREAM_INCOMPLETE] is True
        telemetry.exporter.clear()
        stream = await c.messages.create(model=MODEL, max_tokens=64, messages=MSGS, stream=True)
        await stream.close()
    assert len(telemetry.llm_spans()) == 1


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_cls"), [(429, anthropic.RateLimitError), (529, anthropic.OverloadedError)]
)
def test_http_errors_recorded_and_reraised_unchanged(
    instrument_with: Any, emu: AnthropicEmulator, status: int, error_cls: type[anthropic.APIStatusError]
) -> None:
    emu.push(AnthropicReply(status=status))
    with pytest.raises(error_cls) as plain:
        create(client(emu))
    t = instrument_with()
    emu.push(AnthropicReply(status=status))
    with pytest.raises(error_cls) as instrumented:
        create(client(emu))
    assert type(instrumented.value) is type(plain.value)
    assert instrumented.value.status_code == plain.value.status_code == status
    assert isinstance(instrumented.value.body, dict) and isinstance(plain.value.body, dict)
    assert instrumented.value.body["error"] == plain.value.body["error"]
    span = t.one_llm_span()
    a = attrs(span)
    assert a[sc.ERROR_TYPE] == error_cls.__qualname__
    assert a[sc.USAGE_SOURCE] == "missing"
    assert span.status.status_code is StatusCode.ERROR
    durations = t.points(sc.METRIC_OPERATION_DURATION)
    assert [p.attributes[sc.ERROR_TYPE] for p in durations] == [error_cls.__qualname__]


async def test_async_http_error_reraised(telemetry: Any, emu: AnthropicEmulator) -> None:
    emu.push(AnthropicReply(status=529))
    async with aclient(emu) as c:
        with pytest.raises(anthropic.OverloadedError):
            await c.messages.create(model=MODEL, max_tokens=64, messages=MSGS, stream=True)
    assert attrs(telemetry.one_llm_span())[sc.ERROR_TYPE] == "OverloadedError"


def test_retries_are_one_call_with_one_span(telemetry: Any, emu: AnthropicEmulator) -> None:
    emu.push(AnthropicReply(status=529, headers={"retry-after-ms": "1"}), AnthropicReply(input_tokens=9))
    c = anthropic.Anthropic(base_url=emu.base_url, api_key=API_KEY, max_retries=1)
    create(c)
    assert emu.served.requests == 2
    a = attrs(telemetry.one_llm_span())
    assert sc.ERROR_TYPE not in a and a[sc.USAGE_INPUT_TOKENS] == 9


# --- the caller sees exactly what the SDK returns ----------------------------------------------


def _run_everything(emu: AnthropicEmulator) -> list[Any]:
    """Every kind of call, with the replies fixed, returning what the caller saw."""
    seen: list[Any] = []
    c = client(emu)
    emu.push(AnthropicReply(id="msg_a", text="one two three", chunks=3, input_tokens=5, output_tokens=3))
    message = create(c)
    seen.append((type(message).__name__, message.to_dict()))
    emu.push(AnthropicReply(id="msg_b", text="one two three", chunks=3, input_tokens=5, output_tokens=3))
    stream = create(c, stream=True)
    seen.append(isinstance(stream, anthropic.Stream))
    seen.append([event.to_dict() for event in stream])
    emu.push(AnthropicReply(id="msg_c", text="one two three", chunks=3, input_tokens=5, output_tokens=3))
    with c.messages.stream(model=MODEL, max_tokens=64, messages=MSGS) as helper:
        seen.append([event.to_dict() for event in helper])
        seen.append(helper.get_final_message().to_dict())
    emu.push(AnthropicReply(id="msg_d", text="one two three", chunks=3, input_tokens=5, output_tokens=3))
    raw = c.messages.with_raw_response.create(model=MODEL, max_tokens=64, messages=MSGS)
    seen.append((raw.status_code, raw.parse().to_dict()))
    return seen


def test_caller_sees_identical_results_with_and_without_instrumentation(
    instrument_with: Any, emu: AnthropicEmulator
) -> None:
    plain = _run_everything(emu)
    t = instrument_with()
    instrumented = _run_everything(emu)
    assert instrumented == plain
    assert len(t.llm_spans()) == 4


def test_no_content_and_no_secrets_by_default(telemetry: Any, emu: AnthropicEmulator) -> None:
    emu.push(AnthropicReply(text="The capital is Paris."))
    create(client(emu), system="You are terse.")
    for span in telemetry.spans():
        a = attrs(span)
        assert sc.INPUT_MESSAGES not in a and sc.OUTPUT_MESSAGES not in a
        blob = repr(a)
        assert (
            API_KEY not in blob
            and "Paris" not in blob
            and "capital of France" not in blob
            and "terse" not in blob
        )


def test_content_capture_opt_in(instrument_with: Any, emu: AnthropicEmulator) -> None:
    t = instrument_with(capture_content=True)
    emu.push(AnthropicReply(text="The capital is Paris."), AnthropicReply(text="Streamed Paris.", chunks=3))
    c = client(emu)
    create(c, system="You are terse.")
    list(create(c, stream=True))
    first, second = sorted(t.llm_spans(), key=lambda s: s.start_time)
    sent = json.loads(attrs(first)[sc.INPUT_MESSAGES])
    question = semconv_text("user", "What is the capital of France?")
    assert sent == [semconv_text("system", "You are terse."), question]
    assert json.loads(attrs(second)[sc.INPUT_MESSAGES]) == [question]  # no empty system message
    assert "The capital is Paris." in attrs(first)[sc.OUTPUT_MESSAGES]
    assert "Streamed Paris." in attrs(second)[sc.OUTPUT_MESSAGES]


# --- what is and is not a recorded call --------------------------------------------------------


async def test_count_tokens_is_not_recorded(telemetry: Any, emu: AnthropicEmulator) -> None:
    assert client(emu).messages.count_tokens(model=MODEL, messages=MSGS).input_tokens > 0
    async with aclient(emu) as c:
        assert (await c.messages.count_tokens(model=MODEL, messages=MSGS)).input_tokens > 0
    assert client(emu).beta.messages.count_tokens(model=MODEL, messages=MSGS).input_tokens > 0
    assert emu.served.count_tokens_requests == 3
    assert telemetry.llm_spans() == []
    assert telemetry.points(sc.METRIC_OPERATION_DURATION) == []


def test_with_raw_and_streaming_response(telemetry: Any, emu: AnthropicEmulator) -> None:
    c = client(emu)
    emu.push(AnthropicReply(input_tokens=1, output_tokens=1))
    raw = c.messages.with_raw_response.create(model=MODEL, max_tokens=64, messages=MSGS)
    assert len(telemetry.llm_spans()) == 1  # the body was read: recorded without waiting for parse()
    assert raw.parse().usage.input_tokens == 1

    emu.push(AnthropicReply(input_tokens=2, output_tokens=2))
    with c.messages.with_streaming_response.create(model=MODEL, max_tokens=64, messages=MSGS) as response:
        assert response.parse().usage.input_tokens == 2

    emu.push(AnthropicReply(input_tokens=3, output_tokens=3))
    with c.messages.with_streaming_response.create(model=MODEL, max_tokens=64, messages=MSGS) as response:
        assert response.json()["usage"]["input_tokens"] == 3  # read without parse(): usage from the body

    emu.push(AnthropicReply(input_tokens=4, output_tokens=4))
    with c.messages.with_streaming_response.create(
        model=MODEL, max_tokens=64, messages=MSGS, stream=True
    ) as response:
        events = list(response.parse())
    assert events[-1].type == "message_stop"

    emu.push(AnthropicReply(input_tokens=5, output_tokens=5))
    raw_stream = c.messages.with_raw_response.create(model=MODEL, max_tokens=64, messages=MSGS, stream=True)
    assert [e.type for e in raw_stream.parse()][-1] == "message_stop"

    spans = sorted(telemetry.llm_spans(), key=lambda s: s.start_time)
    assert [attrs(s)[sc.USAGE_INPUT_TOKENS] for s in spans] == [1, 2, 3, 4, 5]
    assert all(sc.STREAM_INCOMPLETE not in attrs(s) for s in spans)


async def test_async_with_streaming_response(telemetry: Any, emu: AnthropicEmulator) -> None:
    emu.push(AnthropicReply(input_tokens=2, output_tokens=2), AnthropicReply(input_tokens=3, output_tokens=3))
    async with aclient(emu) as c:
        async with c.messages.with_streaming_response.create(
            model=MODEL, max_tokens=64, messages=MSGS
        ) as resp:
            assert (await resp.parse()).usage.input_tokens == 2
        async with c.messages.with_streaming_response.create(
            model=MODEL, max_tokens=64, messages=MSGS, stream=True
        ) as resp:
            events = [e async for e in await resp.parse()]
    assert events[-1].type == "message_stop"
    assert sorted(attrs(s)[sc.USAGE_INPUT_TOKENS] for s in telemetry.llm_spans()) == [2, 3]


class City(BaseModel):
    name: str


def test_parse_with_output_format(telemetry: Any, emu: AnthropicEmulator) -> None:
    emu.push(AnthropicReply(text='{"name": "Paris"}', input_tokens=14, output_tokens=5))
    parsed = client(emu).messages.parse(model=MODEL, max_tokens=64, messages=MSGS, output_format=City)
    assert parsed.parsed_output == City(name="Paris")
    assert attrs(telemetry.one_llm_span())[sc.USAGE_INPUT_TOKENS] == 14


def test_bedrock_client_provider_name_and_price(telemetry: Any, emu: AnthropicEmulator) -> None:
    c = bedrock(emu)
    emu.push(AnthropicReply(**GOLDEN), AnthropicReply(**GOLDEN))
    c.messages.create(model=BEDROCK_MODEL, max_tokens=64, messages=MSGS)
    events = list(c.messages.create(model=BEDROCK_MODEL, max_tokens=64, messages=MSGS, stream=True))
    assert events[-1].type == "message_stop"
    assert [r.path for r in emu.requests] == [
        f"/model/{BEDROCK_MODEL}/invoke",
        f"/model/{BEDROCK_MODEL}/invoke-with-response-stream",
    ]
    spans = sorted(telemetry.llm_spans(), key=lambda s: s.start_time)
    assert len(spans) == 2
    for span in spans:
        a = attrs(span)
        assert a[sc.PROVIDER_NAME] == "aws.bedrock"
        assert a[sc.REQUEST_MODEL] == BEDROCK_MODEL
        assert a[sc.RESPONSE_MODEL] == "claude-sonnet-4-5-20250929"
        assert a[sc.USAGE_INPUT_TOKENS] == 5300 and a[sc.USAGE_OUTPUT_TOKENS] == 400
        assert a[sc.USAGE_COST] > 0
    assert [attrs(s)[sc.REQUEST_STREAM] for s in spans] == [False, True]


async def test_vertex_clients_provider_name(telemetry: Any, emu: AnthropicEmulator) -> None:
    emu.push(AnthropicReply(**GOLDEN), AnthropicReply(**GOLDEN), AnthropicReply(**GOLDEN))
    c = vertex(emu)
    c.messages.create(model=VERTEX_MODEL, max_tokens=64, messages=MSGS)
    list(c.messages.create(model=VERTEX_MODEL, max_tokens=64, messages=MSGS, stream=True))
    ac = anthropic.AsyncAnthropicVertex(
        base_url=emu.vertex_base_url, region="us-east5", project_id="proj", access_token="tok", max_retries=0
    )
    await ac.messages.create(model=VERTEX_MODEL, max_tokens=64, messages=MSGS)
    assert c.messages.count_tokens(model=VERTEX_MODEL, messages=MSGS).input_tokens > 0
    spans = telemetry.llm_spans()
    assert len(spans) == 3
    for span in spans:
        a = attrs(span)
        assert a[sc.PROVIDER_NAME] == "gcp.vertex_ai"
        assert a[sc.REQUEST_MODEL] == VERTEX_MODEL
        assert a[sc.USAGE_COST] == pytest.approx(300 * 3e-6 + 5000 * 0.3e-6 + 400 * 15e-6, abs=1e-12)


def test_endpoints_option_names_the_provider(instrument_with: Any, emu: AnthropicEmulator) -> None:
    t = instrument_with(endpoints={"127.0.0.1": "my_gateway"})
    create(client(emu))
    assert attrs(t.one_llm_span())[sc.PROVIDER_NAME] == "my_gateway"


# --- the SDK's own OpenTelemetry spans ---------------------------------------------------------


def test_sdk_traces_its_calls_when_a_global_provider_is_set(
    emu: AnthropicEmulator, global_tracer_provider: Any
) -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    global_tracer_provider(tracer_provider)
    create(client(emu))
    (span,) = exporter.get_finished_spans()
    assert span.name == "anthropic.messages.create" and span.instrumentation_scope.name == SDK_SCOPE


def test_sdk_spans_suppressed_by_default_one_span_per_call(
    telemetry: Any, emu: AnthropicEmulator, global_tracer_provider: Any
) -> None:
    global_tracer_provider(telemetry.tracer_provider)
    c = client(emu)
    create(c)
    list(create(c, stream=True))
    with c.messages.stream(model=MODEL, max_tokens=64, messages=MSGS) as stream:
        stream.get_final_message()
    c.beta.messages.create(model=MODEL, max_tokens=64, messages=MSGS)
    c.messages.count_tokens(model=MODEL, messages=MSGS)

    ours = sorted(telemetry.llm_spans(), key=lambda s: s.start_time)
    assert len(ours) == 4
    assert [s.name for s in sdk_spans(telemetry)] == ["anthropic.messages.count_tokens"]
    # The SDK still propagates the trace context, now our span's.
    sent = [r.headers.get("traceparent") for r in emu.requests if r.path == "/v1/messages"]
    assert sent == [
        f"00-{s.context.trace_id:032x}-{s.context.span_id:016x}-{s.context.trace_flags:02x}" for s in ours
    ]


async def test_sdk_spans_suppressed_for_async_calls(
    telemetry: Any, emu: AnthropicEmulator, global_tracer_provider: Any
) -> None:
    global_tracer_provider(telemetry.tracer_provider)
    async with aclient(emu) as c:
        await c.messages.create(model=MODEL, max_tokens=64, messages=MSGS)
        async with c.messages.stream(model=MODEL, max_tokens=64, messages=MSGS) as stream:
            await stream.get_final_message()
    assert len(telemetry.llm_spans()) == 2
    assert sdk_spans(telemetry) == []


def test_sdk_spans_kept_as_children_when_asked(
    instrument_with: Any, emu: AnthropicEmulator, global_tracer_provider: Any
) -> None:
    t = instrument_with(anthropic_native_spans="keep")
    global_tracer_provider(t.tracer_provider)
    c = client(emu)
    create(c)
    list(create(c, stream=True))
    ours = sorted(t.llm_spans(), key=lambda s: s.start_time)
    theirs = sorted(sdk_spans(t), key=lambda s: s.start_time)
    assert len(ours) == 2 and len(theirs) == 2
    for parent, child in zip(ours, theirs, strict=True):
        assert child.name == "anthropic.messages.create"
        assert child.parent is not None and child.parent.span_id == parent.context.span_id
        assert sc.LLM_CALL_MARK not in attrs(child)


def test_native_spans_option_is_validated() -> None:
    with pytest.raises(ValueError, match="anthropic_native_spans"):
        otel_llm_usage.instrument(anthropic_native_spans="drop")
    otel_llm_usage.uninstrument()


def test_sdk_tracing_disabled_by_the_client_still_one_span(
    telemetry: Any, emu: AnthropicEmulator, global_tracer_provider: Any
) -> None:
    global_tracer_provider(telemetry.tracer_provider)
    create(client(emu, open_telemetry=False))
    telemetry.one_llm_span()
    assert sdk_spans(telemetry) == []
    assert "traceparent" not in emu.requests[-1].headers


def test_uninstrument_gives_the_sdk_its_spans_back(
    instrument_with: Any, emu: AnthropicEmulator, global_tracer_provider: Any
) -> None:
    t = instrument_with()
    global_tracer_provider(t.tracer_provider)
    c = client(emu)
    create(c)
    assert len(t.llm_spans()) == 1 and sdk_spans(t) == []
    otel_llm_usage.uninstrument()
    create(c)
    assert len(t.llm_spans()) == 1
    assert [s.name for s in sdk_spans(t)] == ["anthropic.messages.create"]


# --- never break the app, count once -----------------------------------------------------------


def test_internal_failure_never_reaches_the_caller(
    telemetry: Any, emu: AnthropicEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("extractor bug")

    monkeypatch.setattr(provider.AnthropicHooks, "extract", staticmethod(broken))
    monkeypatch.setattr(provider.MessageStreamAccumulator, "add", broken)
    c = client(emu)
    assert create(c).content
    assert [e.type for e in create(c, stream=True)][-1] == "message_stop"
    assert len(telemetry.llm_spans()) == 2
    assert {"anthropic.result", "stream.chunk"} <= reported_sites()


def test_budget_exceeded_propagates_before_the_request(telemetry: Any, emu: AnthropicEmulator) -> None:
    from otel_llm_usage import BudgetExceeded
    from tests.conftest import RefuseEveryCall

    telemetry.instrumentor.recorder.add_listener(RefuseEveryCall())
    with pytest.raises(BudgetExceeded):
        create(client(emu))
    assert emu.requests == []


def test_nested_instrumented_call_records_once(telemetry: Any, emu: AnthropicEmulator) -> None:
    token = in_llm_call.set(True)
    try:
        create(client(emu))
    finally:
        in_llm_call.reset(token)
    assert telemetry.llm_spans() == []


def test_llm_span_is_current_while_the_request_is_sent(telemetry: Any, emu: AnthropicEmulator) -> None:
    current: list[Any] = []

    def hook(_request: Any) -> None:
        current.append(trace.get_current_span().get_span_context())

    http = httpx2.Client(event_hooks={"request": [hook]})
    create(client(emu, http_client=http))
    span = telemetry.one_llm_span()
    assert [c.span_id for c in current] == [span.context.span_id]


# --- pure extraction ---------------------------------------------------------------------------


def test_usage_from_dicts_and_edge_cases() -> None:
    assert provider.usage_from(None) is None
    assert provider.usage_from({}) is None
    usage = provider.usage_from(
        {
            "input_tokens": 3,
            "cache_read_input_tokens": 4,
            "cache_creation": {"ephemeral_5m_input_tokens": 5, "ephemeral_1h_input_tokens": 6},
            "output_tokens": 7,
            "output_tokens_details": {"thinking_tokens": 9},
        }
    )
    assert usage is not None
    assert (usage.input, usage.cache_read, usage.cache_write, usage.cache_write_1h) == (18, 4, 11, 6)
    assert (usage.output, usage.reasoning) == (7, 7)  # reasoning is cut to fit inside output
    assert usage.valid()


def test_merged_stream_usage_prefers_message_delta() -> None:
    start = {
        "input_tokens": 1,
        "cache_read_input_tokens": 2,
        "cache_creation": {"ephemeral_1h_input_tokens": 3},
    }
    delta = {"input_tokens": 10, "output_tokens": 20, "cache_read_input_tokens": None}
    merged = provider.merged_stream_usage(start, delta)
    assert merged == {
        "input_tokens": 10,
        "cache_read_input_tokens": 2,
        "cache_creation": {"ephemeral_1h_input_tokens": 3},
        "output_tokens": 20,
    }
    assert provider.merged_stream_usage(None, None) is None


def test_provider_for_client_by_class() -> None:
    assert provider.provider_for_client(anthropic.Anthropic(api_key="k")) == "anthropic"
    b = anthropic.AnthropicBedrock(aws_access_key="a", aws_secret_key="b", aws_region="us-east-1")
    assert provider.provider_for_client(b) == "aws.bedrock"
    v = anthropic.AsyncAnthropicVertex(region="us-east5", project_id="p", access_token="t")
    assert provider.provider_for_client(v) == "gcp.vertex_ai"


@pytest.mark.parametrize(
    "profile",
    ["global.anthropic.claude-sonnet-4-5-20250929-v1:0", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"],
)
def test_bedrock_profile_is_priced_as_the_profile_not_the_bare_model(
    telemetry: Any, emu: AnthropicEmulator, profile: str
) -> None:
    # The body names the bare model; a global profile costs less than a regional one, so the price
    # must follow the id the call ran under.
    emu.push(AnthropicReply(**GOLDEN))
    bedrock(emu).messages.create(model=profile, max_tokens=64, messages=MSGS)
    a = attrs(telemetry.one_llm_span())
    assert a[sc.RESPONSE_MODEL] == "claude-sonnet-4-5-20250929"
    usage = GenaiUsage(
        input_tokens=a[sc.USAGE_INPUT_TOKENS],
        output_tokens=a[sc.USAGE_OUTPUT_TOKENS],
        cache_read_tokens=a.get(sc.USAGE_CACHE_READ_INPUT_TOKENS, 0),
        cache_write_tokens=a.get(sc.USAGE_CACHE_CREATION_INPUT_TOKENS, 0),
    )
    expected = calc_price(usage, model_ref=profile, provider_id="aws")
    assert a[sc.USAGE_COST] == float(expected.total_price)
    bare = calc_price(usage, model_ref="claude-sonnet-4-5-20250929", provider_id="aws")
    assert (a[sc.USAGE_COST] == float(bare.total_price)) == profile.startswith("us.")
