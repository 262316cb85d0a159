"""The openai SDK (2.x and 3.x), driven over loopback HTTP against the OpenAI emulator."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from typing import Any

import openai
import pytest
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import BaseModel

import otel_llm_usage
from emulators import Reply
from otel_llm_usage import semconv as sc
from tests.conftest import semconv_text

MSGS = [{"role": "user", "content": "What is the capital of France?"}]
API_KEY = "sk-test-secret-key-0123456789"


def client(emu: Any, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=emu.base_url, api_key=API_KEY, max_retries=0, **kw)


def aclient(emu: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=emu.base_url, api_key=API_KEY, max_retries=0)


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


# --- exact tokens and cost ---------------------------------------------------------------------


def test_chat_golden_cost_and_semconv_attributes(telemetry: Any, openai_emulator: Any) -> None:
    openai_emulator.push(
        Reply(prompt_tokens=1000, cached_tokens=200, completion_tokens=500, model="gpt-4o-2024-08-06")
    )
    resp = client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS, max_tokens=50)
    assert resp.usage is not None and resp.usage.prompt_tokens == 1000

    span = telemetry.one_llm_span()
    a = attrs(span)
    assert span.name == "chat gpt-4o"
    assert span.kind is SpanKind.CLIENT
    assert a[sc.OPERATION_NAME] == "chat"
    assert a[sc.PROVIDER_NAME] == "openai"
    assert a[sc.REQUEST_MODEL] == "gpt-4o"
    assert a[sc.RESPONSE_MODEL] == "gpt-4o-2024-08-06"
    assert a[sc.RESPONSE_ID] == resp.id
    assert a[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    assert a[sc.REQUEST_MAX_TOKENS] == 50
    assert a[sc.REQUEST_STREAM] is False
    assert a[sc.SERVER_ADDRESS] == "127.0.0.1"
    assert a[sc.SERVER_PORT] == openai_emulator.port
    assert a[sc.USAGE_INPUT_TOKENS] == 1000
    assert a[sc.USAGE_OUTPUT_TOKENS] == 500
    assert a[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 200
    assert sc.USAGE_CACHE_CREATION_INPUT_TOKENS not in a
    assert a[sc.USAGE_SOURCE] == "provider"
    assert a[sc.USAGE_COST] == pytest.approx(0.00725, abs=1e-12)
    assert a[sc.COST_SOURCE] == "price_table"
    assert a[sc.COST_INPUT_USD] == pytest.approx(800 * 2.5e-6, abs=1e-12)
    assert a[sc.COST_CACHE_READ_USD] == pytest.approx(200 * 1.25e-6, abs=1e-12)
    assert a[sc.COST_OUTPUT_USD] == pytest.approx(500 * 10e-6, abs=1e-12)
    assert span.status.status_code is not StatusCode.ERROR


def test_reasoning_golden_cost_chat_and_responses(telemetry: Any, openai_emulator: Any) -> None:
    c = client(openai_emulator)
    openai_emulator.push(Reply(prompt_tokens=1000, completion_tokens=2000, reasoning_tokens=1500))
    c.chat.completions.create(model="o4-mini", messages=MSGS)
    openai_emulator.push(Reply(prompt_tokens=1000, completion_tokens=2000, reasoning_tokens=1500))
    r = c.responses.create(model="o4-mini", input="hello")
    assert r.usage is not None and r.usage.output_tokens_details.reasoning_tokens == 1500
    spans = telemetry.llm_spans()
    assert len(spans) == 2
    for span in spans:
        a = attrs(span)
        assert a[sc.USAGE_INPUT_TOKENS] == 1000
        assert a[sc.USAGE_OUTPUT_TOKENS] == 2000
        assert a[sc.USAGE_REASONING_OUTPUT_TOKENS] == 1500
        assert a[sc.USAGE_COST] == pytest.approx(0.0099, abs=1e-12)
        assert a[sc.OPERATION_NAME] == "chat"


def test_audio_tokens_are_subsets(telemetry: Any, openai_emulator: Any) -> None:
    openai_emulator.push(
        Reply(prompt_tokens=300, audio_prompt_tokens=120, completion_tokens=80, audio_completion_tokens=50)
    )
    client(openai_emulator).chat.completions.create(model="gpt-4o-audio-preview", messages=MSGS)
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_AUDIO_INPUT_TOKENS] == 120
    assert a[sc.USAGE_AUDIO_OUTPUT_TOKENS] == 50
    assert a[sc.USAGE_INPUT_TOKENS] == 300 and a[sc.USAGE_OUTPUT_TOKENS] == 80


def test_metrics_for_one_call(telemetry: Any, openai_emulator: Any) -> None:
    openai_emulator.push(Reply(prompt_tokens=1000, cached_tokens=200, completion_tokens=500, model="gpt-4o"))
    client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS)

    usage = telemetry.metric(sc.METRIC_TOKEN_USAGE)
    assert usage.unit == "{token}"
    by_type = {p.attributes[sc.TOKEN_TYPE]: p for p in usage.data.data_points}
    assert by_type["input"].sum == 1000 and by_type["output"].sum == 500
    assert tuple(by_type["input"].explicit_bounds) == sc.TOKEN_BUCKETS
    expected_labels = {
        sc.OPERATION_NAME,
        sc.PROVIDER_NAME,
        sc.REQUEST_MODEL,
        sc.RESPONSE_MODEL,
        sc.TOKEN_TYPE,
    }
    assert set(by_type["input"].attributes) == expected_labels

    duration = telemetry.metric(sc.METRIC_OPERATION_DURATION)
    assert duration.unit == "s"
    (point,) = duration.data.data_points
    assert point.count == 1 and tuple(point.explicit_bounds) == sc.DURATION_BUCKETS

    assert telemetry.total(sc.METRIC_TOKENS, llm_usage__token__type="input") == 1000
    assert telemetry.total(sc.METRIC_TOKENS, llm_usage__token__type="cache_read") == 200
    assert telemetry.total(sc.METRIC_TOKENS, llm_usage__token__type="output") == 500
    assert telemetry.metric(sc.METRIC_COST).unit == "USD"
    assert telemetry.total(sc.METRIC_COST) == pytest.approx(0.00725, abs=1e-12)
    assert telemetry.points(sc.METRIC_UNPRICED) == []
    assert telemetry.points(sc.METRIC_TIME_TO_FIRST_CHUNK) == []


def test_unknown_model_is_unpriced_never_zero(
    telemetry: Any, openai_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    c = client(openai_emulator)
    with caplog.at_level(logging.WARNING, logger="otel_llm_usage"):
        for _ in range(2):
            openai_emulator.push(Reply(prompt_tokens=10, completion_tokens=5))
            c.chat.completions.create(model="house-model-7b", messages=MSGS)
    for span in telemetry.llm_spans():
        a = attrs(span)
        assert sc.USAGE_COST not in a and sc.COST_SOURCE not in a
        assert a[sc.USAGE_INPUT_TOKENS] == 10
    assert telemetry.total(sc.METRIC_UNPRICED) == 2
    assert telemetry.points(sc.METRIC_COST) == []
    warnings = [r for r in caplog.records if "house-model-7b" in r.getMessage()]
    assert len(warnings) == 1


def test_price_overrides_exact_and_glob(instrument_with: Any, openai_emulator: Any) -> None:
    t = instrument_with(
        prices={
            "house-*": {"input": 1.0, "output": 2.0},
            "gpt-4o": otel_llm_usage.ModelPrice(input=10.0, output=20.0, cache_read=5.0),
        }
    )
    c = client(openai_emulator)
    openai_emulator.push(Reply(prompt_tokens=1_000_000, completion_tokens=500_000, model="house-model-7b"))
    c.chat.completions.create(model="house-model-7b", messages=MSGS)
    openai_emulator.push(Reply(prompt_tokens=1000, cached_tokens=400, completion_tokens=100, model="gpt-4o"))
    c.chat.completions.create(model="gpt-4o", messages=MSGS)
    house, gpt = sorted(t.llm_spans(), key=lambda s: s.start_time)
    assert attrs(house)[sc.USAGE_COST] == pytest.approx(2.0)
    assert attrs(house)[sc.COST_SOURCE] == "override"
    assert attrs(gpt)[sc.USAGE_COST] == pytest.approx((600 * 10 + 400 * 5 + 100 * 20) / 1e6)


def test_prices_file_from_environment(
    instrument_with: Any, openai_emulator: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"in-house-*": {"input": 3.0, "output": 6.0}}))
    monkeypatch.setenv("OTEL_LLM_USAGE_PRICES_FILE", str(path))
    t = instrument_with()
    openai_emulator.push(Reply(prompt_tokens=2_000_000, completion_tokens=1_000_000))
    client(openai_emulator).chat.completions.create(model="in-house-llm", messages=MSGS)
    assert attrs(t.one_llm_span())[sc.USAGE_COST] == pytest.approx(12.0)


def test_provider_reported_cost_wins(telemetry: Any, openai_emulator: Any) -> None:
    openai_emulator.push(Reply(prompt_tokens=100, completion_tokens=10, cost=0.0125, model="gpt-4o"))
    client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS)
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_COST] == 0.0125
    assert a[sc.COST_SOURCE] == "provider"
    assert a[sc.COST_PROVIDER_REPORTED_USD] == 0.0125
    assert telemetry.total(sc.METRIC_COST) == pytest.approx(0.0125)


def test_missing_usage_is_marked_not_invented(telemetry: Any, openai_emulator: Any) -> None:
    openai_emulator.push(Reply(omit_usage=True))
    client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS)
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_SOURCE] == "missing"
    assert sc.USAGE_INPUT_TOKENS not in a and sc.USAGE_COST not in a
    assert telemetry.points(sc.METRIC_TOKEN_USAGE) == []
    assert telemetry.points(sc.METRIC_UNPRICED) == []


def test_malformed_usage_never_breaks_the_call(telemetry: Any, openai_emulator: Any) -> None:
    openai_emulator.push(
        Reply(raw_usage={"prompt_tokens": "many", "completion_tokens": -4, "total_tokens": None})
    )
    resp = client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS)
    assert resp.choices[0].message.content
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_SOURCE] == "missing"


def test_embeddings_and_legacy_completions(telemetry: Any, openai_emulator: Any) -> None:
    c = client(openai_emulator)
    openai_emulator.push(Reply(prompt_tokens=12))
    c.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    openai_emulator.push(Reply(prompt_tokens=20, completion_tokens=7))
    c.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi")
    emb, comp = sorted(telemetry.llm_spans(), key=lambda s: s.start_time)
    assert emb.name == "embeddings text-embedding-3-small"
    assert attrs(emb)[sc.USAGE_INPUT_TOKENS] == 12 and attrs(emb)[sc.USAGE_OUTPUT_TOKENS] == 0
    assert attrs(emb)[sc.USAGE_COST] == pytest.approx(12 * 0.02e-6)
    assert comp.name == "text_completion gpt-3.5-turbo-instruct"
    assert attrs(comp)[sc.USAGE_INPUT_TOKENS] == 20 and attrs(comp)[sc.USAGE_OUTPUT_TOKENS] == 7
    assert attrs(comp)[sc.USAGE_COST] > 0


# --- streaming ---------------------------------------------------------------------------------


def _chunk_view(chunks: list[Any]) -> list[Any]:
    return [c.model_dump(exclude={"created", "id"}) for c in chunks]


def test_stream_usage_is_requested_and_hidden_so_caller_sees_identical_chunks(
    instrument_with: Any, openai_emulator: Any
) -> None:
    reply = Reply(prompt_tokens=1000, cached_tokens=200, completion_tokens=500, chunks=5, id="chatcmpl-fixed")
    openai_emulator.push(reply)
    plain = list(client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS, stream=True))
    assert openai_emulator.requests[-1].json.get("stream_options") is None

    t = instrument_with(stream_usage="always")
    openai_emulator.push(reply)
    seen = list(client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS, stream=True))
    assert openai_emulator.requests[-1].json["stream_options"] == {"include_usage": True}
    assert _chunk_view(seen) == _chunk_view(plain)
    assert all(chunk.usage is None for chunk in seen)

    a = attrs(t.one_llm_span())
    assert a[sc.STREAM_USAGE_INJECTED] is True
    assert a[sc.USAGE_INPUT_TOKENS] == 1000 and a[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 200
    assert a[sc.USAGE_COST] == pytest.approx(0.00725, abs=1e-12)
    assert a[sc.STREAM_CHUNKS] == len(seen)
    assert sc.STREAM_INCOMPLETE not in a


def test_stream_usage_known_asks_only_known_endpoints(instrument_with: Any, openai_emulator: Any) -> None:
    t = instrument_with(stream_usage="known")
    openai_emulator.push(Reply(chunks=2))
    list(client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS, stream=True))
    assert openai_emulator.requests[-1].json.get("stream_options") is None
    a = attrs(t.one_llm_span())
    assert a[sc.USAGE_SOURCE] == "missing" and sc.USAGE_COST not in a


def test_stream_usage_off_never_touches_request(instrument_with: Any, openai_emulator: Any) -> None:
    instrument_with(stream_usage="off")
    azure = openai.AzureOpenAI(
        azure_endpoint=openai_emulator.azure_endpoint,
        api_version="2024-10-21",
        api_key=API_KEY,
        max_retries=0,
    )
    list(azure.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True))
    assert openai_emulator.requests[-1].json.get("stream_options") is None


def test_caller_asked_usage_chunk_is_passed_through(instrument_with: Any, openai_emulator: Any) -> None:
    t = instrument_with(stream_usage="always")
    openai_emulator.push(Reply(prompt_tokens=40, completion_tokens=9, chunks=3))
    chunks = list(
        client(openai_emulator).chat.completions.create(
            model="gpt-4o", messages=MSGS, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    a = attrs(t.one_llm_span())
    assert sc.STREAM_USAGE_INJECTED not in a
    assert a[sc.USAGE_INPUT_TOKENS] == 40


def test_azure_client_provider_and_stream_usage(telemetry: Any, openai_emulator: Any) -> None:
    azure = openai.AzureOpenAI(
        azure_endpoint=openai_emulator.azure_endpoint,
        api_version="2024-10-21",
        api_key=API_KEY,
        max_retries=0,
    )
    openai_emulator.push(Reply(prompt_tokens=100, completion_tokens=10, model="gpt-4o-2024-11-20"))
    chunks = list(azure.chat.completions.create(model="my-deployment", messages=MSGS, stream=True))
    assert all(c.usage is None for c in chunks)
    request = openai_emulator.requests[-1]
    assert "/openai/deployments/my-deployment/" in request.path
    assert request.json["stream_options"] == {"include_usage": True}
    a = attrs(telemetry.one_llm_span())
    assert a[sc.PROVIDER_NAME] == "azure.ai.openai"
    assert a[sc.REQUEST_MODEL] == "my-deployment"
    assert a[sc.RESPONSE_MODEL] == "gpt-4o-2024-11-20"
    assert a[sc.USAGE_INPUT_TOKENS] == 100


@pytest.mark.parametrize(
    ("host", "azure", "provider"),
    [
        ("api.openai.com", False, "openai"),
        ("myres.openai.azure.com", False, "azure.ai.openai"),
        ("gateway.internal", True, "azure.ai.openai"),
        ("openrouter.ai", False, "openrouter"),
        ("api.deepseek.com", False, "deepseek"),
        ("localhost", False, "openai"),
    ],
)
def test_provider_from_host(host: str, azure: bool, provider: str) -> None:
    from otel_llm_usage.providers.openai import provider_for_host, wants_stream_usage

    assert provider_for_host(host, azure, {}) == provider
    assert provider_for_host(host, azure, {host: "vllm"}) == "vllm"
    assert wants_stream_usage("known", host, provider) == (
        provider == "azure.ai.openai" or host == "api.openai.com"
    )


def test_time_to_first_chunk_and_per_chunk(instrument_with: Any, openai_emulator: Any) -> None:
    t = instrument_with(stream_usage="always")
    openai_emulator.push(Reply(chunks=4, delay_s=0.05, chunk_delay_s=0.02))
    list(client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS, stream=True))
    a = attrs(t.one_llm_span())
    assert a[sc.RESPONSE_TIME_TO_FIRST_CHUNK] >= 0.05
    (ttfc,) = t.points(sc.METRIC_TIME_TO_FIRST_CHUNK)
    assert ttfc.count == 1 and ttfc.sum >= 0.05
    (tpoc,) = t.points(sc.METRIC_TIME_PER_OUTPUT_CHUNK)
    # the role and finish chunks come without the delay, so the mean gap is below it but far from 0
    assert tpoc.count == 1 and tpoc.sum >= 0.01


def test_stream_break_then_close_ends_once_incomplete(instrument_with: Any, openai_emulator: Any) -> None:
    t = instrument_with(stream_usage="always")
    openai_emulator.push(Reply(chunks=10))
    stream = client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS, stream=True)
    for _ in stream:
        break
    assert t.llm_spans() == []
    stream.close()
    stream.close()
    a = attrs(t.one_llm_span())
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == 1


def test_stream_with_block_exit_ends_span(instrument_with: Any, openai_emulator: Any) -> None:
    t = instrument_with(stream_usage="always")
    openai_emulator.push(Reply(chunks=10))
    with client(openai_emulator).chat.completions.create(
        model="gpt-4o", messages=MSGS, stream=True
    ) as stream:
        next(iter(stream))
    assert attrs(t.one_llm_span())[sc.STREAM_INCOMPLETE] is True


def test_stream_garbage_collected_ends_span(instrument_with: Any, openai_emulator: Any) -> None:
    t = instrument_with(stream_usage="always")
    openai_emulator.push(Reply(chunks=10))
    stream = client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS, stream=True)
    next(iter(stream))
    del stream
    gc.collect()
    assert attrs(t.one_llm_span())[sc.STREAM_INCOMPLETE] is True


def test_stream_cut_midway_records_error_and_reraises(instrument_with: Any, openai_emulator: Any) -> None:
    t = instrument_with(stream_usage="always")
    openai_emulator.push(Reply(chunks=10, cut_after=3))
    got = []
    with pytest.raises(Exception) as caught:  # whatever the SDK raises (httpx or openai error), unchanged
        for chunk in client(openai_emulator).chat.completions.create(
            model="gpt-4o", messages=MSGS, stream=True
        ):
            got.append(chunk)
    assert 0 < len(got) <= 3
    span = t.one_llm_span()
    a = attrs(span)
    assert a[sc.ERROR_TYPE] == type(caught.value).__qualname__
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == len(got)
    assert span.status.status_code is StatusCode.ERROR


def test_consumer_exception_inside_loop_propagates(instrument_with: Any, openai_emulator: Any) -> None:
    t = instrument_with(stream_usage="always")
    openai_emulator.push(Reply(chunks=5))
    stream = client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS, stream=True)
    with pytest.raises(KeyError):
        for _ in stream:
            raise KeyError("consumer bug")
    stream.close()
    assert len(t.llm_spans()) == 1


async def test_async_stream_exhaustion_and_cancellation(instrument_with: Any, openai_emulator: Any) -> None:
    t = instrument_with(stream_usage="always")
    c = aclient(openai_emulator)
    openai_emulator.push(Reply(prompt_tokens=30, completion_tokens=6, chunks=3))
    stream = await c.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True)
    texts = [chunk async for chunk in stream]
    assert len(texts) == 3
    assert attrs(t.one_llm_span())[sc.USAGE_INPUT_TOKENS] == 30

    t.exporter.clear()
    openai_emulator.push(Reply(chunks=20, chunk_delay_s=0.2))
    first = asyncio.Event()

    async def consume() -> None:
        s = await c.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True)
        async for _ in s:
            first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    a = attrs(t.one_llm_span())
    assert a[sc.ERROR_TYPE] == "CancelledError"
    assert a[sc.STREAM_INCOMPLETE] is True


async def test_async_stream_async_with_and_close(instrument_with: Any, openai_emulator: Any) -> None:
    t = instrument_with(stream_usage="always")
    c = aclient(openai_emulator)
    openai_emulator.push(Reply(chunks=8))
    async with await c.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True) as stream:
        async for _ in stream:
            break
    assert attrs(t.one_llm_span())[sc.STREAM_INCOMPLETE] is True
    t.exporter.clear()
    openai_emulator.push(Reply(chunks=8))
    stream = await c.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True)
    await stream.close()
    assert len(t.llm_spans()) == 1


def test_responses_stream_and_helper(telemetry: Any, openai_emulator: Any) -> None:
    c = client(openai_emulator)
    openai_emulator.push(Reply(prompt_tokens=500, cached_tokens=100, completion_tokens=60, chunks=4))
    events = list(c.responses.create(model="gpt-4o", input="hi", stream=True))
    assert events[-1].type == "response.completed"
    openai_emulator.push(Reply(prompt_tokens=50, completion_tokens=6, chunks=2))
    with c.responses.stream(model="gpt-4o", input="hi") as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert final.usage is not None and final.usage.input_tokens == 50
    first, second = sorted(telemetry.llm_spans(), key=lambda s: s.start_time)
    assert attrs(first)[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 100
    assert attrs(first)[sc.USAGE_INPUT_TOKENS] == 500
    assert attrs(second)[sc.USAGE_INPUT_TOKENS] == 50
    assert sc.STREAM_INCOMPLETE not in attrs(second)


def test_chat_stream_helper_sync_and_early_exit(instrument_with: Any, openai_emulator: Any) -> None:
    t = instrument_with(stream_usage="always")
    c = client(openai_emulator)
    openai_emulator.push(Reply(prompt_tokens=70, completion_tokens=9, chunks=3))
    with c.chat.completions.stream(model="gpt-4o", messages=MSGS) as stream:
        for _ in stream:
            pass
        assert stream.get_final_completion().choices[0].message.content
    assert attrs(t.one_llm_span())[sc.USAGE_INPUT_TOKENS] == 70
    t.exporter.clear()
    openai_emulator.push(Reply(chunks=10))
    with c.chat.completions.stream(model="gpt-4o", messages=MSGS) as stream:
        for _ in stream:
            break
    assert attrs(t.one_llm_span())[sc.STREAM_INCOMPLETE] is True


async def test_chat_stream_helper_async(instrument_with: Any, openai_emulator: Any) -> None:
    t = instrument_with(stream_usage="always")
    openai_emulator.push(Reply(prompt_tokens=33, completion_tokens=4, chunks=2))
    async with aclient(openai_emulator).chat.completions.stream(model="gpt-4o", messages=MSGS) as stream:
        async for _ in stream:
            pass
    assert attrs(t.one_llm_span())[sc.USAGE_INPUT_TOKENS] == 33


class City(BaseModel):
    name: str
    country: str


def test_parse_with_pydantic_response_format(telemetry: Any, openai_emulator: Any) -> None:
    openai_emulator.push(
        Reply(text='{"name": "Paris", "country": "France"}', prompt_tokens=90, completion_tokens=12)
    )
    parsed = client(openai_emulator).chat.completions.parse(
        model="gpt-4o", messages=MSGS, response_format=City
    )
    assert parsed.choices[0].message.parsed == City(name="Paris", country="France")
    assert attrs(telemetry.one_llm_span())[sc.USAGE_INPUT_TOKENS] == 90


def test_with_raw_response_and_streaming_response(instrument_with: Any, openai_emulator: Any) -> None:
    t = instrument_with(stream_usage="always")
    c = client(openai_emulator)
    openai_emulator.push(Reply(prompt_tokens=11, completion_tokens=2))
    raw = c.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSGS)
    assert raw.headers.get("content-type", "").startswith("application/json")
    assert raw.parse().usage.prompt_tokens == 11

    openai_emulator.push(Reply(prompt_tokens=12, completion_tokens=2, chunks=3))
    raw_stream = c.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSGS, stream=True)
    assert len(list(raw_stream.parse())) == 3

    openai_emulator.push(Reply(prompt_tokens=13, completion_tokens=2))
    with c.chat.completions.with_streaming_response.create(model="gpt-4o", messages=MSGS) as resp:
        assert resp.parse().usage.prompt_tokens == 13

    openai_emulator.push(Reply(prompt_tokens=14, completion_tokens=2, chunks=2))
    with c.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=MSGS, stream=True
    ) as resp:
        assert len(list(resp.parse())) == 2

    inputs = sorted(attrs(s)[sc.USAGE_INPUT_TOKENS] for s in t.llm_spans())
    assert inputs == [11, 12, 13, 14]


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "exc_type"),
    [(400, openai.BadRequestError), (401, openai.AuthenticationError), (429, openai.RateLimitError),
     (500, openai.InternalServerError)],
)  # fmt: skip
def test_provider_errors_recorded_and_reraised_unchanged(
    telemetry: Any, openai_emulator: Any, status: int, exc_type: type[Exception]
) -> None:
    openai_emulator.push(Reply(status=status))
    with pytest.raises(exc_type) as caught:
        client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS)
    assert type(caught.value) is exc_type
    span = telemetry.one_llm_span()
    assert attrs(span)[sc.ERROR_TYPE] == exc_type.__qualname__
    assert span.status.status_code is StatusCode.ERROR
    (point,) = telemetry.points(sc.METRIC_OPERATION_DURATION)
    assert point.attributes[sc.ERROR_TYPE] == exc_type.__qualname__


async def test_async_error_reraised(telemetry: Any, openai_emulator: Any) -> None:
    openai_emulator.push(Reply(status=429))
    with pytest.raises(openai.RateLimitError):
        await aclient(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS)
    assert attrs(telemetry.one_llm_span())[sc.ERROR_TYPE] == "RateLimitError"


def test_internal_failure_never_reaches_the_caller(
    telemetry: Any, openai_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from otel_llm_usage.pricing import Pricer

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("price table exploded")

    monkeypatch.setattr(Pricer, "cost", broken)
    openai_emulator.push(Reply(prompt_tokens=10, completion_tokens=5))
    resp = client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS)
    assert resp.usage is not None and resp.usage.prompt_tokens == 10
    assert len(telemetry.llm_spans()) == 1  # the span still ends


def test_non_llm_endpoints_are_not_recorded(telemetry: Any, openai_emulator: Any) -> None:
    models = client(openai_emulator).models.list()
    assert len(list(models)) > 0
    assert telemetry.llm_spans() == []


# --- privacy -----------------------------------------------------------------------------------


def test_no_content_and_no_secrets_by_default(telemetry: Any, openai_emulator: Any) -> None:
    openai_emulator.push(Reply(text="The capital is Paris."))
    client(openai_emulator, default_headers={"X-Api-Key": API_KEY}).chat.completions.create(
        model="gpt-4o", messages=MSGS, extra_query={"api-key": API_KEY}
    )
    a = attrs(telemetry.one_llm_span())
    assert sc.INPUT_MESSAGES not in a and sc.OUTPUT_MESSAGES not in a
    dump = json.dumps(a, default=str)
    assert API_KEY not in dump and "capital" not in dump and "Paris" not in dump
    assert "authorization" not in dump.lower() and "api-key" not in dump


def test_content_capture_opt_in_truncated(instrument_with: Any, openai_emulator: Any) -> None:
    t = instrument_with(capture_content=True, max_content_length=40)
    openai_emulator.push(Reply(text="The capital of France is Paris. " * 5))
    client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS)
    a = attrs(t.one_llm_span())
    assert a[sc.INPUT_MESSAGES].startswith('[{"role":"user","parts":[{"type":"text"')
    assert a[sc.INPUT_MESSAGES].endswith("…[truncated]")
    assert len(a[sc.OUTPUT_MESSAGES]) == 40 + len("…[truncated]")
    assert API_KEY not in json.dumps(a, default=str)


def test_content_capture_from_environment(
    instrument_with: Any, openai_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    t = instrument_with(stream_usage="always")
    openai_emulator.push(Reply(text="Paris it is", chunks=3))
    list(client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS, stream=True))
    a = attrs(t.one_llm_span())
    assert "capital of France" in a[sc.INPUT_MESSAGES]
    assert json.loads(a[sc.OUTPUT_MESSAGES]) == [
        semconv_text("assistant", "Paris it is", finish_reason="stop")
    ]


# --- lifecycle ---------------------------------------------------------------------------------


def test_instrument_is_idempotent_and_uninstrument_restores() -> None:
    from openai._base_client import AsyncAPIClient, SyncAPIClient

    from tests.conftest import make_telemetry

    original_sync = SyncAPIClient.__dict__["request"]
    original_async = AsyncAPIClient.__dict__["request"]
    t = make_telemetry()
    again = otel_llm_usage.instrument()
    assert again is t.instrumentor
    assert SyncAPIClient.__dict__["request"] is not original_sync
    otel_llm_usage.uninstrument()
    otel_llm_usage.uninstrument()
    assert SyncAPIClient.__dict__["request"] is original_sync
    assert AsyncAPIClient.__dict__["request"] is original_async


def test_instrument_twice_records_one_span_per_call(telemetry: Any, openai_emulator: Any) -> None:
    otel_llm_usage.instrument()
    client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS)
    assert len(telemetry.llm_spans()) == 1


def test_uninstrumented_client_records_nothing(openai_emulator: Any) -> None:
    from tests.conftest import make_telemetry

    t = make_telemetry()
    otel_llm_usage.uninstrument()
    client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS)
    assert t.spans() == []


def test_nested_instrumented_call_records_once(telemetry: Any, openai_emulator: Any) -> None:
    from otel_llm_usage.context import in_llm_call

    token = in_llm_call.set(True)  # what an outer instrumented client (litellm) sets around its call
    try:
        client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS)
    finally:
        in_llm_call.reset(token)
    assert telemetry.llm_spans() == []


def test_llm_span_is_current_during_the_request(telemetry: Any, openai_emulator: Any) -> None:
    from opentelemetry import trace

    tracer = telemetry.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("handler") as parent:
        client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS)
    span = telemetry.one_llm_span()
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    assert trace.get_current_span() is trace.INVALID_SPAN
