"""The mistralai SDK, driven over loopback HTTP against the Mistral emulator.

The SDK is imported from wherever its major keeps it (`mistralai.client` from 2.0 on, `mistralai` in
1.x), so the same tests check any supported release installed.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from genai_prices import Usage as GenaiUsage
from genai_prices import calc_price
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import BaseModel

import otel_llm_usage
from emulators import MistralEmulator, MistralReply
from emulators.mistral import DEFAULT_AGENT_MODEL
from otel_llm_usage import semconv as sc
from otel_llm_usage._guard import reported_sites
from otel_llm_usage.context import in_llm_call
from otel_llm_usage.providers import mistral as provider
from tests.conftest import semconv_text

SDK = provider.sdk_package()
sdk = importlib.import_module(SDK)
Mistral = sdk.Mistral
models = importlib.import_module(f"{SDK}.models")
errors = importlib.import_module(f"{SDK}.errors") if SDK.endswith(".client") else models
eventstreaming = importlib.import_module(f"{SDK}.utils.eventstreaming")
# The HTTP library the SDK sends through: httpx2 from 3.0 on, httpx before.
HTTPX = importlib.import_module(f"{SDK}.basesdk").httpx

MODEL = "mistral-small-latest"
MSGS: list[Any] = [{"role": "user", "content": "What is the capital of France?"}]
API_KEY = "mistral-secret-key-0123456789"
UNKNOWN_MODEL = "ft:open-mistral-7b:9c2b1a3e:20240531:a1b2c3d4"
GOLDEN = {"prompt_tokens": 1000, "cached_tokens": 200, "completion_tokens": 500}
GOLDEN_SMALL_USD = 800 * 0.15e-6 + 200 * 0.015e-6 + 500 * 0.6e-6  # = 0.000423
RESOURCE_METHODS = [
    (module, cls, method)
    for module, cls in (("chat", "Chat"), ("fim", "Fim"), ("agents", "Agents"))
    for method in ("complete", "complete_async", "stream", "stream_async")
] + [("embeddings", "Embeddings", "create"), ("embeddings", "Embeddings", "create_async")]


@pytest.fixture(scope="module")
def _server() -> Iterator[MistralEmulator]:
    with MistralEmulator() as server:
        yield server


@pytest.fixture
def emu(_server: MistralEmulator) -> MistralEmulator:
    _server.reset()
    return _server


_clients: dict[int, Any] = {}


def client(emu: MistralEmulator) -> Any:
    """One sync client per emulator: the hooks live on the SDK's classes, and a client costs ~0.2 s."""
    if emu.port not in _clients:
        _clients[emu.port] = Mistral(api_key=API_KEY, server_url=emu.server_url)
    return _clients[emu.port]


def aclient(emu: MistralEmulator, **kw: Any) -> Any:
    return Mistral(api_key=API_KEY, server_url=emu.server_url, **kw)


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def chat(c: Any, **kw: Any) -> Any:
    return c.chat.complete(**{"model": MODEL, "messages": MSGS, **kw})


def stream(c: Any, **kw: Any) -> Any:
    return c.chat.stream(**{"model": MODEL, "messages": MSGS, **kw})


def genai_total(model: str, prompt: int, cached: int, completion: int) -> float:
    usage = GenaiUsage(input_tokens=prompt, cache_read_tokens=cached, output_tokens=completion)
    return float(calc_price(usage, model, provider_id="mistral").total_price)


def resource_class(module: str, cls: str) -> Any:
    return getattr(importlib.import_module(f"{SDK}.{module}"), cls)


def test_provider_is_registered_and_hooks_every_resource_method() -> None:
    from otel_llm_usage.registry import PROVIDERS

    assert PROVIDERS["mistral"] == "otel_llm_usage.providers.mistral"
    assert provider.LIBRARY == SDK
    found = provider.targets(SDK)
    assert set(found) == {(f"{SDK}.{m}", f"{c}.{name}") for m, c, name in RESOURCE_METHODS}
    assert found[(f"{SDK}.fim", "Fim.stream_async")] == (sc.OP_TEXT_COMPLETION, True, True)
    assert found[(f"{SDK}.embeddings", "Embeddings.create")] == (sc.OP_EMBEDDINGS, False, False)


# --- exact tokens and cost ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "prompt", "cached", "completion", "by_hand", "price_model"),
    [
        # Mistral Small, by its alias: $0.15 / M input, $0.015 / M cached input, $0.60 / M output.
        (MODEL, 1000, 200, 500, GOLDEN_SMALL_USD, "mistral-small-latest"),
        # Mistral Large 3 by its dated id: $0.50 / M input, $0.05 / M cached input, $1.50 / M output.
        (
            "mistral-large-2512",
            2000,
            1024,
            300,
            976 * 0.5e-6 + 1024 * 0.05e-6 + 300 * 1.5e-6,
            "mistral-large-2512",
        ),
        # The price table still maps this alias to Mistral Large 2 ($2 / $6), which has no cached-input
        # price: cached tokens are billed as input.
        ("mistral-large-latest", 1000, 200, 500, 1000 * 2e-6 + 500 * 6e-6, "mistral-large"),
    ],
)
def test_golden_cost_of_a_chat_completion(
    telemetry: Any,
    emu: MistralEmulator,
    model: str,
    prompt: int,
    cached: int,
    completion: int,
    by_hand: float,
    price_model: str,
) -> None:
    emu.push(
        MistralReply(prompt_tokens=prompt, cached_tokens=cached, completion_tokens=completion, id="cmpl-1")
    )
    response = chat(client(emu), model=model, max_tokens=50, temperature=0.2)
    assert response.usage.prompt_tokens == prompt

    span = telemetry.one_llm_span()
    a = attrs(span)
    assert span.name == f"chat {model}" and span.kind is SpanKind.CLIENT
    assert a[sc.OPERATION_NAME] == "chat" and a[sc.PROVIDER_NAME] == "mistral_ai"
    assert a[sc.REQUEST_MODEL] == model and a[sc.RESPONSE_MODEL] == model
    assert a[sc.RESPONSE_ID] == "cmpl-1" and a[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    assert a[sc.REQUEST_MAX_TOKENS] == 50 and a[sc.REQUEST_TEMPERATURE] == 0.2
    assert a[sc.REQUEST_STREAM] is False
    assert a[sc.SERVER_ADDRESS] == "127.0.0.1" and a[sc.SERVER_PORT] == emu.port
    assert a[sc.USAGE_INPUT_TOKENS] == prompt and a[sc.USAGE_OUTPUT_TOKENS] == completion
    assert a[sc.USAGE_CACHE_READ_INPUT_TOKENS] == cached
    assert sc.USAGE_CACHE_CREATION_INPUT_TOKENS not in a and sc.USAGE_REASONING_OUTPUT_TOKENS not in a
    assert a[sc.USAGE_SOURCE] == "provider" and a[sc.COST_SOURCE] == "price_table"
    assert a[sc.PRICE_MODEL] == price_model
    assert a[sc.USAGE_COST] == pytest.approx(by_hand, abs=1e-12)
    assert a[sc.USAGE_COST] == pytest.approx(genai_total(model, prompt, cached, completion), abs=1e-12)
    assert span.status.status_code is not StatusCode.ERROR


def test_golden_cost_breakdown_by_bucket(telemetry: Any, emu: MistralEmulator) -> None:
    emu.push(MistralReply(**GOLDEN))
    chat(client(emu))
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_COST] == pytest.approx(0.000423, abs=1e-12)
    assert a[sc.COST_INPUT_USD] == pytest.approx(800 * 0.15e-6, abs=1e-12)
    assert a[sc.COST_CACHE_READ_USD] == pytest.approx(200 * 0.015e-6, abs=1e-12)
    assert a[sc.COST_OUTPUT_USD] == pytest.approx(500 * 0.6e-6, abs=1e-12)
    assert a[sc.COST_CACHE_WRITE_USD] == 0.0
    tokens = {p.attributes[sc.LLM_TOKEN_TYPE]: p.value for p in telemetry.points(sc.METRIC_TOKENS)}
    assert tokens == {"input": 1000, "output": 500, "cache_read": 200}
    by_type = {p.attributes[sc.TOKEN_TYPE]: p.sum for p in telemetry.points(sc.METRIC_TOKEN_USAGE)}
    assert by_type == {"input": 1000, "output": 500}
    assert telemetry.total(sc.METRIC_COST, gen_ai__provider__name="mistral_ai") == pytest.approx(0.000423)
    assert telemetry.points(sc.METRIC_UNPRICED) == []


def test_golden_cost_of_fim_and_embeddings(telemetry: Any, emu: MistralEmulator) -> None:
    emu.push(MistralReply(prompt_tokens=1000, completion_tokens=500), MistralReply(prompt_tokens=1500))
    c = client(emu)
    c.fim.complete(model="codestral-latest", prompt="def add(a, b):", suffix="\n")
    c.embeddings.create(model="mistral-embed", inputs=["one", "two"])
    fim, embed = sorted(telemetry.llm_spans(), key=lambda s: s.start_time)
    f, e = attrs(fim), attrs(embed)
    assert fim.name == "text_completion codestral-latest" and f[sc.OPERATION_NAME] == "text_completion"
    assert f[sc.PRICE_MODEL] == "codestral"  # codestral-latest: $0.30 / M input, $0.90 / M output
    assert f[sc.USAGE_COST] == pytest.approx(1000 * 0.3e-6 + 500 * 0.9e-6, abs=1e-12)
    assert f[sc.USAGE_COST] == pytest.approx(genai_total("codestral-latest", 1000, 0, 500), abs=1e-12)
    assert embed.name == "embeddings mistral-embed" and e[sc.OPERATION_NAME] == "embeddings"
    assert e[sc.USAGE_INPUT_TOKENS] == 1500 and e[sc.USAGE_OUTPUT_TOKENS] == 0
    assert e[sc.USAGE_COST] == pytest.approx(1500 * 0.1e-6, abs=1e-12)  # mistral-embed: $0.10 / M
    assert e[sc.USAGE_COST] == pytest.approx(genai_total("mistral-embed", 1500, 0, 0), abs=1e-12)


@pytest.mark.parametrize(
    "raw_usage",
    [
        {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500, "num_cached_tokens": 200},
        {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500,
         "prompt_token_details": {"cached_tokens": 200}},
    ],
)  # fmt: skip
def test_every_cached_token_field_the_api_sends(
    telemetry: Any, emu: MistralEmulator, raw_usage: dict[str, Any]
) -> None:
    emu.push(MistralReply(raw_usage=raw_usage))
    chat(client(emu))
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 200
    assert a[sc.USAGE_COST] == pytest.approx(0.000423, abs=1e-12)


def test_unknown_model_is_unpriced_and_counted(telemetry: Any, emu: MistralEmulator) -> None:
    emu.push(MistralReply(prompt_tokens=40, completion_tokens=10))
    chat(client(emu), model=UNKNOWN_MODEL)
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_INPUT_TOKENS] == 40 and a[sc.USAGE_OUTPUT_TOKENS] == 10
    assert sc.USAGE_COST not in a and sc.COST_SOURCE not in a
    assert telemetry.total(sc.METRIC_UNPRICED, gen_ai__request__model=UNKNOWN_MODEL) == 1
    assert telemetry.points(sc.METRIC_COST) == []


# --- streams: every way out --------------------------------------------------------------------


def test_stream_to_exhaustion(telemetry: Any, emu: MistralEmulator) -> None:
    emu.push(MistralReply(**GOLDEN, chunks=4))
    events = list(stream(client(emu)))
    assert events[-1].data.usage is not None
    a = attrs(telemetry.one_llm_span())
    assert a[sc.REQUEST_STREAM] is True
    assert a[sc.USAGE_INPUT_TOKENS] == 1000 and a[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 200
    assert a[sc.USAGE_OUTPUT_TOKENS] == 500
    assert a[sc.USAGE_COST] == pytest.approx(GOLDEN_SMALL_USD, abs=1e-12)
    assert a[sc.RESPONSE_ID] == events[0].data.id and a[sc.RESPONSE_MODEL] == MODEL
    assert a[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    assert a[sc.STREAM_CHUNKS] == len(events) == 5
    assert sc.STREAM_INCOMPLETE not in a
    assert a[sc.RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert len(telemetry.points(sc.METRIC_TIME_TO_FIRST_CHUNK)) == 1


async def test_async_stream_to_exhaustion(telemetry: Any, emu: MistralEmulator) -> None:
    emu.push(MistralReply(**GOLDEN, chunks=2, finish_reason="length"))
    async with aclient(emu) as c:
        events = [e async for e in await c.chat.stream_async(model=MODEL, messages=MSGS)]
    a = attrs(telemetry.one_llm_span())
    assert len(events) == a[sc.STREAM_CHUNKS] == 3
    assert a[sc.RESPONSE_FINISH_REASONS] == ("length",)
    assert a[sc.USAGE_COST] == pytest.approx(GOLDEN_SMALL_USD, abs=1e-12)
    assert sc.STREAM_INCOMPLETE not in a


async def test_fim_and_agent_streams_sync_and_async(telemetry: Any, emu: MistralEmulator) -> None:
    emu.push(*[MistralReply(prompt_tokens=10 * (i + 1), completion_tokens=i + 1) for i in range(4)])
    c = client(emu)
    list(c.fim.stream(model="codestral-latest", prompt="x ="))
    list(c.agents.stream(agent_id="ag:sync", messages=MSGS))
    async with aclient(emu) as ac:
        [e async for e in await ac.fim.stream_async(model="codestral-latest", prompt="y =")]
        [e async for e in await ac.agents.stream_async(agent_id="ag:async", messages=MSGS)]
    spans = sorted(telemetry.llm_spans(), key=lambda s: s.start_time)
    assert [s.name for s in spans] == [
        "text_completion codestral-latest",
        "chat",
        "text_completion codestral-latest",
        "chat",
    ]
    assert [attrs(s)[sc.USAGE_INPUT_TOKENS] for s in spans] == [10, 20, 30, 40]
    assert all(attrs(s)[sc.REQUEST_STREAM] is True and sc.STREAM_INCOMPLETE not in attrs(s) for s in spans)
    agents = [attrs(s) for s in spans if s.name == "chat"]
    assert [a[sc.AGENT_ID] for a in agents] == ["ag:sync", "ag:async"]
    assert all(sc.REQUEST_MODEL not in a and a[sc.RESPONSE_MODEL] == DEFAULT_AGENT_MODEL for a in agents)
    assert all(a[sc.USAGE_COST] > 0 for a in agents)  # priced by the model the agent ran


def test_agent_completion(telemetry: Any, emu: MistralEmulator) -> None:
    emu.push(MistralReply(prompt_tokens=1000, completion_tokens=500, model="mistral-large-2512"))
    response = client(emu).agents.complete(agent_id="ag:0123", messages=MSGS, max_tokens=32)
    assert response.model == "mistral-large-2512"
    span = telemetry.one_llm_span()
    a = attrs(span)
    assert span.name == "chat" and a[sc.AGENT_ID] == "ag:0123" and a[sc.REQUEST_MAX_TOKENS] == 32
    assert a[sc.USAGE_COST] == pytest.approx(genai_total("mistral-large-2512", 1000, 0, 500), abs=1e-12)


def test_break_before_the_last_chunk_is_incomplete(telemetry: Any, emu: MistralEmulator) -> None:
    emu.push(MistralReply(**GOLDEN, chunks=6))
    events = stream(client(emu))
    for index, _ in enumerate(events):
        if index == 2:
            break
    assert telemetry.llm_spans() == []  # still open: the caller may resume
    events.close()
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == 3
    assert a[sc.USAGE_SOURCE] == "missing" and sc.USAGE_COST not in a
    assert sc.ERROR_TYPE not in a


def test_break_on_the_finish_reason_keeps_the_usage(telemetry: Any, emu: MistralEmulator) -> None:
    emu.push(MistralReply(**GOLDEN, chunks=3))
    with stream(client(emu)) as events:
        for event in events:
            if event.data.choices[0].finish_reason is not None:
                break
    a = attrs(telemetry.one_llm_span())
    assert sc.STREAM_INCOMPLETE not in a  # the last chunk was read; only [DONE] was left
    assert a[sc.USAGE_COST] == pytest.approx(GOLDEN_SMALL_USD, abs=1e-12)


def test_leaving_with_ends_the_span(telemetry: Any, emu: MistralEmulator) -> None:
    emu.push(MistralReply(chunks=8))
    with stream(client(emu)) as events:
        next(iter(events))
        assert telemetry.llm_spans() == []
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == 1


def test_garbage_collected_stream_ends_the_span(telemetry: Any, emu: MistralEmulator) -> None:
    emu.push(MistralReply(chunks=8))
    events = stream(client(emu))
    next(events)
    del events
    gc.collect()
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == 1


def test_stream_cut_mid_way_records_the_error(telemetry: Any, emu: MistralEmulator) -> None:
    emu.push(MistralReply(**GOLDEN, chunks=5, cut_after=3))
    seen = 0
    with pytest.raises(HTTPX.TransportError) as caught:
        for _ in stream(client(emu)):
            seen += 1
    span = telemetry.one_llm_span()
    a = attrs(span)
    assert seen == 3 and a[sc.STREAM_CHUNKS] == 3
    assert a[sc.ERROR_TYPE] == type(caught.value).__qualname__ and span.status.status_code is StatusCode.ERROR
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.USAGE_SOURCE] == "missing"


async def test_stream_cut_after_the_usage_chunk_keeps_the_usage(telemetry: Any, emu: MistralEmulator) -> None:
    emu.push(MistralReply(**GOLDEN, chunks=2, cut_after=3))
    async with aclient(emu) as c:
        events = await c.chat.stream_async(model=MODEL, messages=MSGS)
        with pytest.raises(HTTPX.TransportError):
            async for _ in events:
                pass
    a = attrs(telemetry.one_llm_span())
    assert sc.ERROR_TYPE in a
    assert a[sc.USAGE_INPUT_TOKENS] == 1000 and a[sc.USAGE_COST] == pytest.approx(GOLDEN_SMALL_USD, abs=1e-12)


def test_consumer_exception_inside_the_loop_propagates(telemetry: Any, emu: MistralEmulator) -> None:
    emu.push(MistralReply(chunks=5))
    events = stream(client(emu))
    with pytest.raises(KeyError):
        for _ in events:
            raise KeyError("consumer bug")
    events.close()
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_INCOMPLETE] is True and sc.ERROR_TYPE not in a


async def test_async_stream_cancellation(telemetry: Any, emu: MistralEmulator) -> None:
    gate = threading.Event()
    emu.push(MistralReply(chunks=5, gate=gate, gate_after=2))
    first = asyncio.Event()
    async with aclient(emu) as c:

        async def consume() -> None:
            async for _ in await c.chat.stream_async(model=MODEL, messages=MSGS):
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


async def test_async_with_break_and_close(telemetry: Any, emu: MistralEmulator) -> None:
    emu.push(MistralReply(chunks=8), MistralReply(chunks=8))
    async with aclient(emu) as c:
        async with await c.chat.stream_async(model=MODEL, messages=MSGS) as events:
            async for _ in events:
                break
        assert attrs(telemetry.one_llm_span())[sc.STREAM_INCOMPLETE] is True
        telemetry.exporter.clear()
        events = await c.chat.stream_async(model=MODEL, messages=MSGS)
        await events.__anext__()
        await events.close()
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == 1


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_cls"),
    [
        (400, errors.SDKError),
        (401, errors.SDKError),
        (422, errors.HTTPValidationError),
        (429, errors.SDKError),
        (500, errors.SDKError),
    ],
)
def test_http_errors_are_recorded_and_reraised_unchanged(
    instrument_with: Any, emu: MistralEmulator, status: int, error_cls: type[Exception]
) -> None:
    emu.push(MistralReply(status=status))
    with pytest.raises(error_cls) as plain:
        chat(client(emu))
    t = instrument_with()
    emu.push(MistralReply(status=status))
    with pytest.raises(error_cls) as instrumented:
        chat(client(emu))
    assert type(instrumented.value) is type(plain.value) is error_cls
    assert instrumented.value.status_code == plain.value.status_code == status  # type: ignore[attr-defined]
    body = json.loads(instrumented.value.body)  # type: ignore[attr-defined]
    assert body.keys() == json.loads(plain.value.body).keys()  # type: ignore[attr-defined]
    span = t.one_llm_span()
    a = attrs(span)
    assert a[sc.ERROR_TYPE] == error_cls.__qualname__
    assert a[sc.USAGE_SOURCE] == "missing" and sc.USAGE_COST not in a
    assert span.status.status_code is StatusCode.ERROR
    durations = t.points(sc.METRIC_OPERATION_DURATION)
    assert [p.attributes[sc.ERROR_TYPE] for p in durations] == [error_cls.__qualname__]


async def test_errors_before_a_stream_starts(telemetry: Any, emu: MistralEmulator) -> None:
    emu.push(MistralReply(status=429), MistralReply(status=422))
    with pytest.raises(errors.SDKError):
        stream(client(emu))
    async with aclient(emu) as c:
        with pytest.raises(errors.HTTPValidationError):
            await c.chat.stream_async(model=MODEL, messages=MSGS)
    types = sorted(attrs(s)[sc.ERROR_TYPE] for s in telemetry.llm_spans())
    assert types == ["HTTPValidationError", "SDKError"]


def test_retries_are_one_call_with_one_span(telemetry: Any, emu: MistralEmulator) -> None:
    retries = importlib.import_module(f"{SDK}.utils")
    config = retries.RetryConfig("backoff", retries.BackoffStrategy(1, 1, 1.0, 10_000), False)
    emu.push(MistralReply(status=429), MistralReply(prompt_tokens=9, completion_tokens=1))
    chat(client(emu), retries=config)
    assert emu.served.requests == 2
    a = attrs(telemetry.one_llm_span())
    assert sc.ERROR_TYPE not in a and a[sc.USAGE_INPUT_TOKENS] == 9


# --- content and privacy -----------------------------------------------------------------------


def test_no_content_and_no_secrets_by_default(telemetry: Any, emu: MistralEmulator) -> None:
    emu.push(MistralReply(text="The capital is Paris."), MistralReply(text="Streamed Paris."))
    c = client(emu)
    chat(c)
    list(stream(c))
    assert len(telemetry.llm_spans()) == 2
    for span in telemetry.spans():
        a = attrs(span)
        assert sc.INPUT_MESSAGES not in a and sc.OUTPUT_MESSAGES not in a
        blob = repr(a)
        assert API_KEY not in blob and "Paris" not in blob and "capital of France" not in blob


def test_content_capture_opt_in(instrument_with: Any, emu: MistralEmulator) -> None:
    t = instrument_with(capture_content=True)
    emu.push(
        MistralReply(text="The capital is Paris."),
        MistralReply(text="Streamed Paris.", chunks=3),
        MistralReply(text="return a + b"),
        MistralReply(),
    )
    c = client(emu)
    chat(c, messages=[models.SystemMessage(content="Be terse."), models.UserMessage(content="Capital?")])
    list(stream(c))
    c.fim.complete(model="codestral-latest", prompt="def add(a, b):", suffix="\n")
    c.embeddings.create(model="mistral-embed", inputs=["embed me"])
    first, second, fim, embed = (attrs(s) for s in sorted(t.llm_spans(), key=lambda s: s.start_time))
    sent = json.loads(first[sc.INPUT_MESSAGES])
    assert sent == [semconv_text("system", "Be terse."), semconv_text("user", "Capital?")]
    assert json.loads(first[sc.OUTPUT_MESSAGES]) == [
        semconv_text("assistant", "The capital is Paris.", finish_reason="stop")
    ]
    assert json.loads(second[sc.INPUT_MESSAGES]) == [semconv_text("user", "What is the capital of France?")]
    assert json.loads(second[sc.OUTPUT_MESSAGES]) == [
        semconv_text("assistant", "Streamed Paris.", finish_reason="stop")
    ]
    (fim_in,) = json.loads(fim[sc.INPUT_MESSAGES])
    assert json.loads(fim_in["parts"][0]["content"]) == {"prompt": "def add(a, b):", "suffix": "\n"}
    assert "return a + b" in fim[sc.OUTPUT_MESSAGES]
    assert json.loads(embed[sc.INPUT_MESSAGES]) == [semconv_text("user", "embed me")]
    assert API_KEY not in repr([attrs(s) for s in t.spans()])


def test_one_shot_message_iterables_are_left_to_the_sdk(instrument_with: Any, emu: MistralEmulator) -> None:
    t = instrument_with(capture_content=True)
    response = chat(client(emu), messages=(m for m in MSGS))
    assert response.choices
    assert emu.requests[-1].json["messages"] == MSGS
    assert sc.INPUT_MESSAGES not in attrs(t.one_llm_span())


# --- what is patched, and undoing it -----------------------------------------------------------


def test_providers_option_narrows(instrument_with: Any, emu: MistralEmulator) -> None:
    t = instrument_with(providers=["openai"])
    chat(client(emu))
    assert t.llm_spans() == []
    for module, cls, method in RESOURCE_METHODS:
        assert not hasattr(resource_class(module, cls).__dict__[method], "__wrapped__")


def test_uninstrument_restores_every_method_exactly() -> None:
    originals = {(m, c, n): resource_class(m, c).__dict__[n] for m, c, n in RESOURCE_METHODS}
    otel_llm_usage.instrument(tracer_provider=trace.NoOpTracerProvider())
    try:
        for (module, cls, method), original in originals.items():
            patched = resource_class(module, cls).__dict__[method]
            assert patched is not original and patched.__wrapped__ is original
    finally:
        otel_llm_usage.uninstrument()
    for (module, cls, method), original in originals.items():
        assert resource_class(module, cls).__dict__[method] is original


LAZY = textwrap.dedent(
    """
    import importlib, sys
    import otel_llm_usage
    from otel_llm_usage.providers.mistral import LIBRARY, sdk_package
    otel_llm_usage.instrument()
    # Finding `mistralai.client` imports its parent, a namespace package without code, and nothing else.
    assert not [m for m in sys.modules if m.startswith("mistralai.")], "instrument() imported the SDK"
    sdk = importlib.import_module(sdk_package())
    chat = importlib.import_module(sdk_package() + ".chat").Chat
    assert hasattr(chat.__dict__["complete"], "__wrapped__"), "not patched when the SDK was imported"
    otel_llm_usage.uninstrument()
    assert not hasattr(chat.__dict__["complete"], "__wrapped__"), "not restored"
    otel_llm_usage.instrument(providers=["openai"])
    assert not hasattr(chat.__dict__["complete"], "__wrapped__"), "providers= not respected"
    print(LIBRARY)
    """
)


def test_patched_only_once_the_application_imports_the_sdk() -> None:
    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run(
        [sys.executable, "-c", LAZY], capture_output=True, text=True, timeout=120, cwd=root, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == SDK


UNKNOWN_LAYOUT = textwrap.dedent(
    """
    import otel_llm_usage
    import mistralai  # a regular package without the resource modules, like the 0.x client
    from otel_llm_usage.providers import mistral
    assert mistral.LIBRARY == "mistralai" and mistral.targets("mistralai") == {}
    otel_llm_usage.instrument()
    otel_llm_usage.uninstrument()
    print("ok")
    """
)


def test_an_sdk_without_the_resource_modules_is_left_alone(tmp_path: Path) -> None:
    package = tmp_path / "mistralai"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "client.py").write_text("class MistralClient: ...\n")
    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run(
        [sys.executable, "-c", UNKNOWN_LAYOUT],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        env={"PYTHONPATH": f"{tmp_path}:{root}", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# --- never break the app -----------------------------------------------------------------------


class City(BaseModel):
    name: str


def _run_everything(emu: MistralEmulator) -> list[Any]:
    """Every kind of call, with the replies fixed, returning what the caller saw."""
    seen: list[Any] = []
    c = client(emu)
    reply = {"id": "fixed", "text": "one two three", "chunks": 3, "prompt_tokens": 5, "completion_tokens": 3}
    emu.push(MistralReply(**reply))
    response = chat(c)
    seen.append((type(response).__name__, response.model_dump(exclude={"created"})))
    emu.push(MistralReply(**reply))
    events = stream(c)
    seen.append(isinstance(events, eventstreaming.EventStream))
    seen.append([e.model_dump(exclude={"data": {"created"}}) for e in events])
    emu.push(MistralReply(**{**reply, "text": '{"name": "Paris"}'}))
    parsed = c.chat.parse(City, model=MODEL, messages=MSGS)
    seen.append(parsed.choices[0].message.parsed)
    emu.push(MistralReply(**reply))
    vectors = c.embeddings.create(model="mistral-embed", inputs=["x"])
    seen.append(vectors.model_dump())
    return seen


def test_caller_sees_identical_results_with_and_without_instrumentation(
    instrument_with: Any, emu: MistralEmulator
) -> None:
    plain = _run_everything(emu)
    t = instrument_with()
    instrumented = _run_everything(emu)
    assert instrumented == plain
    assert plain[1] is True and plain[3] == City(name="Paris")
    assert len(t.llm_spans()) == 4  # parse() is recorded once, through complete()


def test_internal_failure_never_reaches_the_caller(
    telemetry: Any, emu: MistralEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("extractor bug")

    monkeypatch.setattr(provider, "result_from", broken)
    monkeypatch.setattr(provider.ChunkAccumulator, "add", broken)
    c = client(emu)
    assert chat(c).choices
    assert list(stream(c))[-1].data.usage is not None
    assert len(telemetry.llm_spans()) == 2
    assert {"mistralai.result", "stream.chunk"} <= reported_sites()


def test_a_failing_request_description_lets_the_call_through(
    telemetry: Any, emu: MistralEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("describe bug")

    monkeypatch.setattr(provider, "describe_request", broken)
    assert chat(client(emu)).choices
    assert telemetry.llm_spans() == []
    assert "mistralai.start" in reported_sites()


def test_budget_exceeded_propagates_before_the_request(telemetry: Any, emu: MistralEmulator) -> None:
    from otel_llm_usage import BudgetExceeded
    from tests.conftest import RefuseEveryCall

    telemetry.instrumentor.recorder.add_listener(RefuseEveryCall())
    with pytest.raises(BudgetExceeded):
        chat(client(emu))
    assert emu.requests == []


def test_nested_instrumented_call_records_once(telemetry: Any, emu: MistralEmulator) -> None:
    token = in_llm_call.set(True)
    try:
        chat(client(emu))
    finally:
        in_llm_call.reset(token)
    assert telemetry.llm_spans() == []


def test_llm_span_is_current_while_the_request_is_sent(telemetry: Any, emu: MistralEmulator) -> None:
    current: list[Any] = []

    def hook(_request: Any) -> None:
        current.append(trace.get_current_span().get_span_context())

    c = Mistral(
        api_key=API_KEY, server_url=emu.server_url, client=HTTPX.Client(event_hooks={"request": [hook]})
    )
    chat(c)
    list(stream(c))
    spans = sorted(telemetry.llm_spans(), key=lambda s: s.start_time)
    assert [s.span_id for s in current] == [s.context.span_id for s in spans]


def test_endpoints_option_names_the_provider(instrument_with: Any, emu: MistralEmulator) -> None:
    t = instrument_with(endpoints={"127.0.0.1": "my_gateway"})
    chat(client(emu))
    assert attrs(t.one_llm_span())[sc.PROVIDER_NAME] == "my_gateway"


def test_server_url_of_the_call_wins(telemetry: Any, emu: MistralEmulator) -> None:
    c = Mistral(api_key=API_KEY, server_url="https://api.mistral.ai")
    chat(c, server_url=emu.server_url)
    a = attrs(telemetry.one_llm_span())
    assert a[sc.SERVER_ADDRESS] == "127.0.0.1" and a[sc.SERVER_PORT] == emu.port


def test_sdk_telemetry_when_turned_on_nests_under_the_call(telemetry: Any, emu: MistralEmulator) -> None:
    from mistralai.extra.observability.telemetry import configure_telemetry

    c = aclient(emu)
    assert configure_telemetry(c, provider=telemetry.tracer_provider, redaction=False)
    chat(c)
    ours = telemetry.one_llm_span()
    theirs = [
        s for s in telemetry.spans() if s is not ours and s.instrumentation_scope.name != "otel_llm_usage"
    ]
    assert len(theirs) == 1
    assert theirs[0].parent is not None and theirs[0].parent.span_id == ours.context.span_id
    assert sc.LLM_CALL_MARK not in attrs(theirs[0])


# --- pure extraction ---------------------------------------------------------------------------


def test_usage_from_edge_cases() -> None:
    assert provider.usage_from(None) is None
    assert provider.usage_from({}) is None
    assert provider.usage_from({"prompt_tokens": "12", "completion_tokens": None}) is None
    zero = provider.usage_from({"prompt_tokens": 0, "completion_tokens": 0})
    assert zero is not None and zero.total == 0
    usage = provider.usage_from(
        {"prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 64},
         "num_cached_tokens": 32}
    )  # fmt: skip
    assert usage is not None and (usage.input, usage.cache_read, usage.output) == (100, 64, 7)
    clipped = provider.usage_from({"prompt_tokens": 10, "completion_tokens": 1, "num_cached_tokens": 50})
    assert clipped is not None and clipped.cache_read == 10 and clipped.valid()
    embed = provider.usage_from(models.UsageInfo(prompt_tokens=15, total_tokens=15))
    assert embed is not None and (embed.input, embed.output) == (15, 0)


def test_content_text_reads_text_chunks_and_skips_thinking() -> None:
    content = [
        {"type": "thinking", "thinking": [{"type": "text", "text": "hidden"}]},
        {"type": "text", "text": "Hello "},
        {"type": "text", "text": "world"},
        {"type": "image_url", "image_url": "x"},
    ]
    assert provider.content_text(content) == "Hello world"
    assert provider.content_text("plain") == "plain"
    assert provider.content_text(None) is None


def test_chunk_accumulator_keeps_finish_reasons_by_choice() -> None:
    def event(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> Any:
        data: dict[str, Any] = {
            "id": "c1",
            "model": "m",
            "object": "chat.completion.chunk",
            "choices": choices,
        }
        if usage is not None:
            data["usage"] = usage
        return models.CompletionEvent.model_validate({"data": data})

    acc = provider.ChunkAccumulator(capture_content=True)
    acc.add(event([{"index": 1, "delta": {"content": "b"}, "finish_reason": "length"},
                   {"index": 0, "delta": {"content": "a"}, "finish_reason": None}]))  # fmt: skip
    text_chunks = [{"type": "text", "text": "c"}]
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    acc.add(event([{"index": 0, "delta": {"content": text_chunks}, "finish_reason": "stop"}], usage))
    result = acc.result()
    assert acc.complete and result.finish_reasons == ["stop", "length"]
    assert result.output_messages == [{"role": "assistant", "content": "ac"}]  # the first choice's
    assert result.usage is not None and result.usage.total == 5


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(), st.text(max_size=8)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
usage_keys = st.sampled_from(
    ["prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details", "prompt_token_details",
     "num_cached_tokens", "cached_tokens", "prompt_audio_seconds", "service_tier"]
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(
    st.dictionaries(usage_keys, st.one_of(json_values, st.dictionaries(usage_keys, json_values)), max_size=8)
)
def test_usage_extraction_never_raises_and_is_valid(payload: dict[str, Any]) -> None:
    ledger = provider.usage_from(payload)
    assert ledger is None or ledger.valid()


response_keys = st.sampled_from(["id", "model", "object", "usage", "choices", "data", "created"])


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(response_keys, json_values, max_size=6), st.booleans())
def test_response_extraction_never_raises(payload: dict[str, Any], capture: bool) -> None:
    result = provider.result_from(payload, capture)
    assert result.usage is None or result.usage.valid()


def test_parse_stream_is_recorded_once_as_a_stream(telemetry: Any, emu: MistralEmulator) -> None:
    emu.push(MistralReply(text='{"name": "Paris"}', prompt_tokens=14, completion_tokens=5))
    events = list(client(emu).chat.parse_stream(City, model=MODEL, messages=MSGS))
    assert "".join(e.data.choices[0].delta.content for e in events) == '{"name": "Paris"}'
    a = attrs(telemetry.one_llm_span())
    assert a[sc.REQUEST_STREAM] is True and a[sc.USAGE_INPUT_TOKENS] == 14
