"""litellm, driven over loopback HTTP against the OpenAI and Anthropic emulators."""

from __future__ import annotations

import asyncio
import gc
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

# litellm fetches its model price map from the internet at import unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

litellm = pytest.importorskip("litellm")

# Taken before instrument() runs, as the OpenHands SDK does: these references must be recorded too.
from litellm import acompletion as early_acompletion  # noqa: E402
from litellm import completion as early_completion  # noqa: E402
from litellm.integrations.custom_logger import CustomLogger  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

import otel_llm_usage  # noqa: E402
from emulators import AnthropicEmulator, AnthropicReply, Reply  # noqa: E402
from otel_llm_usage import semconv as sc  # noqa: E402
from otel_llm_usage._guard import reported_sites  # noqa: E402
from otel_llm_usage.context import in_llm_call  # noqa: E402
from otel_llm_usage.providers import _litellm_read as read  # noqa: E402
from otel_llm_usage.providers import litellm as provider  # noqa: E402
from tests.conftest import semconv_text  # noqa: E402

litellm.suppress_debug_info = True  # litellm prints help banners on every error

MSGS = [{"role": "user", "content": "What is the capital of France?"}]
KEY = "sk-test-secret-key-0123456789"
OPENAI_SDK_AGENT = "OpenAI/Python"


@pytest.fixture(scope="module")
def _anthropic_server() -> Iterator[AnthropicEmulator]:
    with AnthropicEmulator() as emu:
        yield emu


@pytest.fixture
def anthropic_emulator(_anthropic_server: AnthropicEmulator) -> AnthropicEmulator:
    _anthropic_server.reset()
    return _anthropic_server


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def chat(emu: Any, **kw: Any) -> Any:
    """A litellm chat call to the OpenAI emulator, through the openai SDK."""
    kw.setdefault("model", "openai/gpt-4o")
    return litellm.completion(messages=MSGS, api_base=emu.base_url, api_key=KEY, max_retries=0, **kw)


async def achat(emu: Any, **kw: Any) -> Any:
    kw.setdefault("model", "openai/gpt-4o")
    return await litellm.acompletion(messages=MSGS, api_base=emu.base_url, api_key=KEY, max_retries=0, **kw)


def claude(emu: AnthropicEmulator, **kw: Any) -> Any:
    return litellm.completion(
        model="anthropic/claude-sonnet-4-5", messages=MSGS, api_base=emu.base_url, api_key=KEY, **kw
    )


def sent_by_openai_sdk(emu: Any) -> bool:
    return all(OPENAI_SDK_AGENT in r.headers.get("user-agent", "") for r in emu.requests)


GPT4O = Reply(prompt_tokens=1000, cached_tokens=200, completion_tokens=500, model="gpt-4o-2024-08-06")
GPT4O_COST = 0.00725  # 800 x $2.5/M + 200 x $1.25/M + 500 x $10/M


def assert_gpt4o_ledger(a: dict[str, Any]) -> None:
    assert a[sc.PROVIDER_NAME] == "openai"
    assert a[sc.REQUEST_MODEL] == "gpt-4o"
    assert a[sc.USAGE_INPUT_TOKENS] == 1000
    assert a[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 200
    assert a[sc.USAGE_OUTPUT_TOKENS] == 500
    assert a[sc.USAGE_SOURCE] == "provider"
    assert a[sc.USAGE_COST] == pytest.approx(GPT4O_COST, abs=1e-12)
    assert a[sc.COST_SOURCE] == "provider"


# --- chat completions through the openai SDK ----------------------------------------------------


def test_completion_records_one_span_with_exact_ledger_and_litellm_cost(
    telemetry: Any, openai_emulator: Any
) -> None:
    openai_emulator.push(GPT4O)
    resp = chat(openai_emulator, max_tokens=50, temperature=0.2)

    span = telemetry.one_llm_span()  # litellm's only: the openai SDK call beneath records nothing
    assert sent_by_openai_sdk(openai_emulator) and len(openai_emulator.requests) == 1
    a = attrs(span)
    assert span.name == "chat gpt-4o"
    assert span.kind is SpanKind.CLIENT
    assert a[sc.OPERATION_NAME] == "chat"
    assert_gpt4o_ledger(a)
    assert a[sc.RESPONSE_MODEL] == "gpt-4o-2024-08-06"
    assert a[sc.RESPONSE_ID] == resp.id
    assert a[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    assert a[sc.REQUEST_STREAM] is False
    assert a[sc.REQUEST_MAX_TOKENS] == 50
    assert a[sc.REQUEST_TEMPERATURE] == 0.2
    assert a[sc.SERVER_ADDRESS] == "127.0.0.1"
    assert a[sc.SERVER_PORT] == openai_emulator.port
    assert a[sc.USAGE_COST] == resp._hidden_params["response_cost"]
    assert a[sc.COST_PROVIDER_REPORTED_USD] == resp._hidden_params["response_cost"]
    assert a[sc.COST_INPUT_USD] == pytest.approx(800 * 2.5e-6, abs=1e-12)  # price table alongside
    assert a[sc.COST_OUTPUT_USD] == pytest.approx(500 * 10e-6, abs=1e-12)
    assert span.status.status_code is not StatusCode.ERROR
    assert telemetry.total(sc.METRIC_COST) == pytest.approx(GPT4O_COST, abs=1e-12)
    assert telemetry.total(sc.METRIC_TOKENS, llm_usage__token__type="cache_read") == 200


async def test_acompletion_records_one_span(telemetry: Any, openai_emulator: Any) -> None:
    openai_emulator.push(GPT4O)
    resp = await achat(openai_emulator)
    a = attrs(telemetry.one_llm_span())
    assert sent_by_openai_sdk(openai_emulator)
    assert_gpt4o_ledger(a)
    assert a[sc.RESPONSE_ID] == resp.id


def test_reasoning_tokens_are_part_of_output(telemetry: Any, openai_emulator: Any) -> None:
    openai_emulator.push(Reply(prompt_tokens=1000, completion_tokens=2000, reasoning_tokens=1500))
    chat(openai_emulator, model="o4-mini")
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_OUTPUT_TOKENS] == 2000
    assert a[sc.USAGE_REASONING_OUTPUT_TOKENS] == 1500
    assert a[sc.USAGE_COST] == pytest.approx(0.0099, abs=1e-12)


def test_litellm_cost_wins_and_price_table_cost_stays_alongside(telemetry: Any, openai_emulator: Any) -> None:
    openai_emulator.push(Reply(prompt_tokens=1000, completion_tokens=500, model="gpt-4o"))
    resp = chat(openai_emulator, input_cost_per_token=1e-6, output_cost_per_token=2e-6)
    assert resp._hidden_params["response_cost"] == pytest.approx(0.002)
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_COST] == pytest.approx(0.002)
    assert a[sc.COST_SOURCE] == "provider"
    assert a[sc.COST_PROVIDER_REPORTED_USD] == pytest.approx(0.002)
    assert a[sc.COST_INPUT_USD] == pytest.approx(1000 * 2.5e-6, abs=1e-12)
    assert a[sc.COST_OUTPUT_USD] == pytest.approx(500 * 10e-6, abs=1e-12)
    assert telemetry.total(sc.METRIC_COST) == pytest.approx(0.002)


def test_model_unknown_to_litellm_and_price_table_is_unpriced(telemetry: Any, openai_emulator: Any) -> None:
    openai_emulator.push(Reply(prompt_tokens=10, completion_tokens=5))
    chat(openai_emulator, model="openai/house-model-7b")
    a = attrs(telemetry.one_llm_span())
    assert a[sc.REQUEST_MODEL] == "house-model-7b"
    assert a[sc.USAGE_INPUT_TOKENS] == 10
    assert sc.USAGE_COST not in a and sc.COST_SOURCE not in a
    assert telemetry.total(sc.METRIC_UNPRICED) == 1


# --- streams ------------------------------------------------------------------------------------


def test_stream_ends_its_span_when_read_to_the_end(telemetry: Any, openai_emulator: Any) -> None:
    openai_emulator.push(Reply(prompt_tokens=100, completion_tokens=50, chunks=4))
    stream = chat(openai_emulator, stream=True, stream_options={"include_usage": True})
    assert telemetry.llm_spans() == []  # the span lasts as long as the stream
    chunks = list(stream)
    assert chunks[-1].usage.prompt_tokens == 100  # the caller asked for usage: it sees it
    a = attrs(telemetry.one_llm_span())
    assert sent_by_openai_sdk(openai_emulator)
    assert a[sc.REQUEST_STREAM] is True
    assert a[sc.USAGE_INPUT_TOKENS] == 100 and a[sc.USAGE_OUTPUT_TOKENS] == 50
    assert a[sc.USAGE_COST] == pytest.approx(chunks[-1].usage.cost)
    assert a[sc.COST_SOURCE] == "provider"
    assert a[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    assert a[sc.STREAM_CHUNKS] == len(chunks)
    assert sc.STREAM_INCOMPLETE not in a and sc.STREAM_USAGE_INJECTED not in a
    assert a[sc.RESPONSE_TIME_TO_FIRST_CHUNK] > 0


async def test_async_stream(telemetry: Any, openai_emulator: Any) -> None:
    openai_emulator.push(Reply(prompt_tokens=100, completion_tokens=50, chunks=4))
    stream = await achat(openai_emulator, stream=True, stream_options={"include_usage": True})
    assert telemetry.llm_spans() == []
    chunks = [chunk async for chunk in stream]
    a = attrs(telemetry.one_llm_span())
    assert sent_by_openai_sdk(openai_emulator)
    assert a[sc.REQUEST_STREAM] is True
    assert a[sc.USAGE_INPUT_TOKENS] == 100 and a[sc.USAGE_OUTPUT_TOKENS] == 50
    assert a[sc.STREAM_CHUNKS] == len(chunks)


async def test_import_time_reference_async_stream(telemetry: Any, openai_emulator: Any) -> None:
    openai_emulator.push(Reply(prompt_tokens=70, completion_tokens=20))
    stream = await early_acompletion(
        model="gpt-4o",
        messages=MSGS,
        api_base=openai_emulator.base_url,
        api_key=KEY,
        max_retries=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    async for _ in stream:
        pass
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_INPUT_TOKENS] == 70 and a[sc.USAGE_OUTPUT_TOKENS] == 20


def _chunk_view(chunks: list[Any]) -> list[Any]:
    return [c.model_dump(exclude={"id", "created"}) for c in chunks]


def test_stream_usage_is_requested_and_hidden_so_caller_sees_identical_chunks(
    instrument_with: Any, openai_emulator: Any
) -> None:
    reply = Reply(prompt_tokens=1000, cached_tokens=200, completion_tokens=500, chunks=5, model="gpt-4o")
    openai_emulator.push(reply)
    plain = list(chat(openai_emulator, stream=True))
    assert openai_emulator.requests[-1].json.get("stream_options") is None

    t = instrument_with(stream_usage="always")
    openai_emulator.push(reply)
    seen = list(chat(openai_emulator, stream=True))
    assert openai_emulator.requests[-1].json["stream_options"] == {"include_usage": True}
    assert _chunk_view(seen) == _chunk_view(plain)
    a = attrs(t.one_llm_span())
    assert a[sc.STREAM_USAGE_INJECTED] is True
    assert a[sc.USAGE_INPUT_TOKENS] == 1000 and a[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 200
    assert a[sc.COST_SOURCE] == "provider"  # litellm's cost, read from the hidden usage chunk
    assert a[sc.USAGE_COST] == a[sc.COST_PROVIDER_REPORTED_USD]
    parts = (sc.COST_INPUT_USD, sc.COST_CACHE_READ_USD, sc.COST_OUTPUT_USD)
    assert sum(a[k] for k in parts) == pytest.approx(GPT4O_COST, abs=1e-12)
    assert a[sc.STREAM_CHUNKS] == len(seen)


def test_stream_to_custom_openai_endpoint_under_known_is_not_altered_and_usage_is_missing(
    instrument_with: Any, openai_emulator: Any
) -> None:
    t = instrument_with(stream_usage="known")
    openai_emulator.push(Reply(prompt_tokens=100, completion_tokens=50))
    list(chat(openai_emulator, stream=True))
    assert openai_emulator.requests[-1].json.get("stream_options") is None
    a = attrs(t.one_llm_span())
    assert a[sc.USAGE_SOURCE] == "missing"
    assert sc.USAGE_INPUT_TOKENS not in a and sc.USAGE_COST not in a
    assert sc.STREAM_INCOMPLETE not in a


def test_stream_dropped_early_ends_once_as_incomplete(telemetry: Any, openai_emulator: Any) -> None:
    openai_emulator.push(Reply(prompt_tokens=100, completion_tokens=50, chunks=5))
    stream = chat(openai_emulator, stream=True, stream_options={"include_usage": True})
    next(stream)
    del stream
    gc.collect()
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_INCOMPLETE] is True
    assert a[sc.STREAM_CHUNKS] == 1


def test_stream_cut_by_the_server_records_the_error(telemetry: Any, openai_emulator: Any) -> None:
    openai_emulator.push(Reply(prompt_tokens=100, completion_tokens=50, chunks=5, cut_after=2))
    stream = chat(openai_emulator, stream=True, stream_options={"include_usage": True})
    with pytest.raises(Exception) as raised:
        for _ in stream:
            pass
    span = telemetry.one_llm_span()
    a = attrs(span)
    assert a[sc.ERROR_TYPE] == type(raised.value).__qualname__
    assert a[sc.STREAM_INCOMPLETE] is True
    assert span.status.status_code is StatusCode.ERROR


# --- embeddings and responses -------------------------------------------------------------------


def test_embedding_and_aembedding(telemetry: Any, openai_emulator: Any) -> None:
    openai_emulator.push(Reply(prompt_tokens=12), Reply(prompt_tokens=30))
    resp = litellm.embedding(
        model="text-embedding-3-small", input=["a", "b"], api_base=openai_emulator.base_url, api_key=KEY
    )
    asyncio.run(
        litellm.aembedding(
            model="text-embedding-3-small", input=["c"], api_base=openai_emulator.base_url, api_key=KEY
        )
    )
    sync_span, async_span = sorted(telemetry.llm_spans(), key=lambda s: s.start_time)
    assert sent_by_openai_sdk(openai_emulator)
    for span, tokens in ((sync_span, 12), (async_span, 30)):
        a = attrs(span)
        assert span.name == "embeddings text-embedding-3-small"
        assert a[sc.OPERATION_NAME] == "embeddings"
        assert a[sc.PROVIDER_NAME] == "openai"
        assert a[sc.REQUEST_STREAM] is False
        assert a[sc.USAGE_INPUT_TOKENS] == tokens and a[sc.USAGE_OUTPUT_TOKENS] == 0
        assert a[sc.USAGE_COST] == pytest.approx(tokens * 0.02e-6)
        assert a[sc.COST_SOURCE] == "provider"
    assert attrs(sync_span)[sc.USAGE_COST] == resp._hidden_params["response_cost"]


def test_responses_sync_async_and_streamed(telemetry: Any, openai_emulator: Any) -> None:
    reply = Reply(prompt_tokens=1000, cached_tokens=200, completion_tokens=500, model="gpt-4o")
    openai_emulator.push(reply, reply, reply, reply)
    base = {"model": "openai/gpt-4o", "input": "hello", "api_base": openai_emulator.base_url, "api_key": KEY}
    resp = litellm.responses(**base)
    asyncio.run(litellm.aresponses(**base))
    events = list(litellm.responses(**base, stream=True))

    async def astream() -> int:
        return len([e async for e in await litellm.aresponses(**base, stream=True)])

    async_events = asyncio.run(astream())
    spans = sorted(telemetry.llm_spans(), key=lambda s: s.start_time)
    assert len(spans) == 4 and len(openai_emulator.requests) == 4
    parts = (sc.COST_INPUT_USD, sc.COST_CACHE_READ_USD, sc.COST_OUTPUT_USD)
    for span, streamed in zip(spans, (False, False, True, True), strict=True):
        a = attrs(span)
        assert span.name == "chat gpt-4o"
        assert a[sc.REQUEST_STREAM] is streamed
        assert a[sc.RESPONSE_FINISH_REASONS] == ("completed",)
        assert a[sc.PROVIDER_NAME] == "openai" and a[sc.REQUEST_MODEL] == "gpt-4o"
        assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_CACHE_READ_INPUT_TOKENS]) == (1000, 200)
        assert a[sc.USAGE_OUTPUT_TOKENS] == 500
        assert sum(a[k] for k in parts) == pytest.approx(GPT4O_COST, abs=1e-12)  # the price table
        assert a[sc.COST_SOURCE] == "provider"
    # litellm's own figure is the cost, whatever it is (litellm 1.105 leaves output out of it)
    assert attrs(spans[0])[sc.USAGE_COST] == resp._hidden_params["response_cost"]
    assert attrs(spans[0])[sc.RESPONSE_ID] == resp.id
    assert attrs(spans[2])[sc.STREAM_CHUNKS] == len(events)
    assert attrs(spans[3])[sc.STREAM_CHUNKS] == async_events


# --- Anthropic-backed calls ---------------------------------------------------------------------

# claude-sonnet-4-5: 300 uncached + 1000 cache write + 5000 cache read in, 400 out.
CLAUDE_5M = 0.01215
CLAUDE_1H = 0.0144


@pytest.mark.parametrize(
    ("reply", "one_hour", "golden"),
    [
        (AnthropicReply(cache_creation_input_tokens=1000), 0, CLAUDE_5M),
        (AnthropicReply(cache_1h_input_tokens=1000), 1000, CLAUDE_1H),
    ],
    ids=["5m-writes", "1h-writes"],
)
def test_anthropic_ledger_counts_cache_once(
    telemetry: Any, anthropic_emulator: AnthropicEmulator, reply: AnthropicReply, one_hour: int, golden: float
) -> None:
    reply.input_tokens, reply.cache_read_input_tokens, reply.output_tokens = 300, 5000, 400
    reply.model = "claude-sonnet-4-5-20250929"
    anthropic_emulator.push(reply)
    resp = claude(anthropic_emulator)
    # litellm's prompt_tokens already holds Anthropic's cache reads and writes
    assert resp.usage.prompt_tokens == 6300

    span = telemetry.one_llm_span()
    a = attrs(span)
    assert span.name == "chat claude-sonnet-4-5"
    assert a[sc.PROVIDER_NAME] == "anthropic"
    assert a[sc.REQUEST_MODEL] == "claude-sonnet-4-5"
    assert a[sc.RESPONSE_MODEL] == "claude-sonnet-4-5-20250929"
    assert a[sc.USAGE_INPUT_TOKENS] == 300 + 1000 + 5000
    assert a[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 5000
    assert a[sc.USAGE_CACHE_CREATION_INPUT_TOKENS] == 1000
    assert a.get(sc.USAGE_CACHE_CREATION_1H_INPUT_TOKENS, 0) == one_hour
    assert a[sc.USAGE_OUTPUT_TOKENS] == 400
    assert a[sc.USAGE_COST] == pytest.approx(golden, abs=1e-12)
    assert a[sc.COST_SOURCE] == "provider"
    # litellm's cost and the price table agree, bucket by bucket
    parts = (sc.COST_INPUT_USD, sc.COST_CACHE_READ_USD, sc.COST_CACHE_WRITE_USD, sc.COST_OUTPUT_USD)
    assert sum(a[k] for k in parts) == pytest.approx(golden, abs=1e-12)
    assert telemetry.total(sc.METRIC_TOKENS, llm_usage__token__type="input") == 6300


def test_anthropic_stream_usage_is_requested_and_hidden(
    instrument_with: Any, anthropic_emulator: AnthropicEmulator
) -> None:
    reply = AnthropicReply(
        input_tokens=300, cache_creation_input_tokens=1000, cache_read_input_tokens=5000, output_tokens=400
    )
    anthropic_emulator.push(reply)
    plain = list(claude(anthropic_emulator, stream=True))

    t = instrument_with(stream_usage="known")  # "known" asks litellm for Anthropic's usage
    anthropic_emulator.push(reply)
    seen = list(claude(anthropic_emulator, stream=True))
    assert "stream_options" not in anthropic_emulator.requests[-1].json  # litellm keeps it to itself
    assert _chunk_view(seen) == _chunk_view(plain)
    a = attrs(t.one_llm_span())
    assert a[sc.REQUEST_STREAM] is True
    assert a[sc.STREAM_USAGE_INJECTED] is True
    assert a[sc.USAGE_INPUT_TOKENS] == 6300
    assert a[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 5000
    assert a[sc.USAGE_CACHE_CREATION_INPUT_TOKENS] == 1000
    assert a[sc.USAGE_OUTPUT_TOKENS] == 400
    assert a[sc.USAGE_COST] == pytest.approx(CLAUDE_5M, abs=1e-12)


class _Probe(CustomLogger):  # type: ignore[misc]
    """Called by litellm in the caller's thread just before it sends the provider request."""

    def __init__(self) -> None:
        super().__init__()
        self.in_call: list[bool] = []

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        self.in_call.append(in_llm_call.get())


def test_inner_clients_are_silenced_while_litellm_sends_and_streams(
    telemetry: Any, anthropic_emulator: AnthropicEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = _Probe()
    monkeypatch.setattr(litellm, "callbacks", [probe])
    claude(anthropic_emulator)
    assert in_llm_call.get() is False  # nothing leaks into the caller's context
    stream = claude(anthropic_emulator, stream=True)
    for _ in stream:
        assert in_llm_call.get() is False  # the caller's loop body is not inside the call
    assert probe.in_call == [True, True]
    assert len(telemetry.llm_spans()) == 2


def test_bedrock_provider_and_model_without_route_prefix(
    telemetry: Any, anthropic_emulator: AnthropicEmulator
) -> None:
    anthropic_emulator.push(
        AnthropicReply(
            input_tokens=300,
            cache_creation_input_tokens=1000,
            cache_read_input_tokens=5000,
            output_tokens=400,
        )
    )
    resp = litellm.completion(
        model="bedrock/invoke/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        messages=MSGS,
        api_base=anthropic_emulator.base_url,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="not-a-secret",
        aws_region_name="us-east-1",
    )
    assert anthropic_emulator.requests[-1].path.endswith("/invoke")
    a = attrs(telemetry.one_llm_span())
    assert a[sc.PROVIDER_NAME] == "aws.bedrock"
    assert a[sc.REQUEST_MODEL] == "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert a[sc.USAGE_INPUT_TOKENS] == 6300 and a[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 5000
    assert a[sc.USAGE_COST] == resp._hidden_params["response_cost"]


# --- provider of the real backend ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "extra", "provider_name", "request_model"),
    [
        ("groq/llama-3.1-8b-instant", {}, "groq", "llama-3.1-8b-instant"),
        ("deepseek/deepseek-chat", {}, "deepseek", "deepseek-chat"),
        ("azure/my-deployment", {"api_version": "2024-10-21"}, "azure.ai.openai", "my-deployment"),
        ("gpt-4o", {"custom_llm_provider": "openai"}, "openai", "gpt-4o"),
    ],
)
def test_provider_is_the_backend_litellm_resolved(
    telemetry: Any,
    openai_emulator: Any,
    model: str,
    extra: dict[str, Any],
    provider_name: str,
    request_model: str,
) -> None:
    openai_emulator.push(Reply(prompt_tokens=40, completion_tokens=10))
    base = openai_emulator.azure_endpoint if model.startswith("azure/") else openai_emulator.base_url
    litellm.completion(model=model, messages=MSGS, api_base=base, api_key=KEY, **extra)
    a = attrs(telemetry.one_llm_span())  # azure goes through the openai SDK, still one span
    assert a[sc.PROVIDER_NAME] == provider_name
    assert a[sc.REQUEST_MODEL] == request_model
    assert a[sc.USAGE_INPUT_TOKENS] == 40 and a[sc.USAGE_OUTPUT_TOKENS] == 10


def test_litellm_provider_names_map_to_semconv() -> None:
    expected = {
        "openai": "openai",
        "anthropic": "anthropic",
        "bedrock": "aws.bedrock",
        "vertex_ai": "gcp.vertex_ai",
        "gemini": "gcp.gemini",
        "azure": "azure.ai.openai",
        "mistral": "mistral_ai",
        "cohere_chat": "cohere",
        "groq": "groq",
        "deepseek": "deepseek",
        "openrouter": "openrouter",
        "xai": "x_ai",
        "together_ai": "together",
        "ollama": "ollama",
    }
    assert {name: read.provider_name(name) for name in expected} == expected


def test_usage_from_raw_anthropic_fields_and_details() -> None:
    only_top_level = {
        "prompt_tokens": 6300,
        "completion_tokens": 400,
        "cache_read_input_tokens": 5000,
        "cache_creation_input_tokens": 1000,
    }
    t = read.usage_from(only_top_level)
    assert t is not None
    assert (t.input, t.cache_read, t.cache_write, t.output) == (6300, 5000, 1000, 400)
    detailed = {
        "prompt_tokens": 6300,
        "completion_tokens": 400,
        "prompt_tokens_details": {
            "cached_tokens": 5000,
            "cache_creation_tokens": 1000,
            "cache_creation_token_details": {"ephemeral_1h_input_tokens": 250},
        },
        "cache_read_input_tokens": 5000,
        "cache_creation_input_tokens": 1000,
    }
    t = read.usage_from(detailed)
    assert t is not None and t.valid()
    assert (t.input, t.cache_read, t.cache_write, t.cache_write_1h) == (6300, 5000, 1000, 250)
    assert read.usage_from(None) is None


# --- import order, nesting, context -------------------------------------------------------------


def test_reference_taken_before_instrument_is_recorded(telemetry: Any, openai_emulator: Any) -> None:
    assert early_completion is litellm.completion  # no module attribute was replaced
    openai_emulator.push(GPT4O)
    early_completion(
        model="gpt-4o", messages=MSGS, api_base=openai_emulator.base_url, api_key=KEY, max_retries=0
    )
    assert_gpt4o_ledger(attrs(telemetry.one_llm_span()))


def test_uninstrument_restores_litellm(telemetry: Any, openai_emulator: Any) -> None:
    from litellm.rust_bridge.dispatch import PublicDispatch

    assert type(PublicDispatch.__dict__["run"]).__name__ == "FunctionWrapper"
    otel_llm_usage.uninstrument()
    assert type(PublicDispatch.__dict__["run"]).__name__ == "function"
    assert type(PublicDispatch.__dict__["arun"]).__name__ == "function"
    early_completion(model="gpt-4o", messages=MSGS, api_base=openai_emulator.base_url, api_key=KEY)
    assert telemetry.llm_spans() == []


def test_direct_openai_sdk_call_still_records_beside_litellm(telemetry: Any, openai_emulator: Any) -> None:
    import openai

    chat(openai_emulator)
    openai.OpenAI(base_url=openai_emulator.base_url, api_key=KEY, max_retries=0).chat.completions.create(
        model="gpt-4o", messages=MSGS
    )
    assert len(telemetry.llm_spans()) == 2  # the openai hook is live: only litellm's inner call is silent


def test_span_is_a_child_of_the_callers_span(telemetry: Any, openai_emulator: Any) -> None:
    tracer = telemetry.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("agent step") as parent:
        chat(openai_emulator)
    span = telemetry.one_llm_span()
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    assert span.context.trace_id == parent.get_span_context().trace_id


# --- errors -------------------------------------------------------------------------------------


def test_rate_limit_is_reraised_unchanged_and_recorded(telemetry: Any, openai_emulator: Any) -> None:
    openai_emulator.push(Reply(status=429))
    with pytest.raises(litellm.RateLimitError) as raised:
        chat(openai_emulator)
    assert type(raised.value) is litellm.RateLimitError
    span = telemetry.one_llm_span()
    a = attrs(span)
    assert a[sc.ERROR_TYPE] == "RateLimitError"
    assert span.status.status_code is StatusCode.ERROR
    assert a[sc.USAGE_SOURCE] == "missing"
    points = telemetry.points(sc.METRIC_OPERATION_DURATION)
    assert [p.attributes[sc.ERROR_TYPE] for p in points] == ["RateLimitError"]


async def test_async_and_anthropic_errors_are_recorded(
    telemetry: Any, openai_emulator: Any, anthropic_emulator: AnthropicEmulator
) -> None:
    openai_emulator.push(Reply(status=429))
    with pytest.raises(litellm.RateLimitError):
        await achat(openai_emulator)
    anthropic_emulator.push(AnthropicReply(status=529))
    with pytest.raises(litellm.InternalServerError) as raised:
        await litellm.acompletion(
            model="anthropic/claude-sonnet-4-5",
            messages=MSGS,
            api_base=anthropic_emulator.base_url,
            api_key=KEY,
        )
    first, second = sorted(telemetry.llm_spans(), key=lambda s: s.start_time)
    assert attrs(first)[sc.ERROR_TYPE] == "RateLimitError"
    assert attrs(second)[sc.ERROR_TYPE] == type(raised.value).__qualname__
    assert attrs(second)[sc.PROVIDER_NAME] == "anthropic"


def test_budget_is_enforced_before_litellm_sends(instrument_with: Any, openai_emulator: Any) -> None:
    instrument_with(budgets=[otel_llm_usage.Budget(0.001, scope="process", action="raise")])
    openai_emulator.push(GPT4O)
    chat(openai_emulator)  # the span ends with the call, so its cost counts at once
    with pytest.raises(otel_llm_usage.BudgetExceeded):
        early_completion(model="gpt-4o", messages=MSGS, api_base=openai_emulator.base_url, api_key=KEY)
    assert len(openai_emulator.requests) == 1


def test_instrumentation_failure_never_breaks_the_call(
    telemetry: Any, openai_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(provider.LiteLLMHooks, "begin", broken)
    openai_emulator.push(GPT4O)
    resp = chat(openai_emulator)
    assert resp.usage.prompt_tokens == 1000
    assert "litellm.start" in reported_sites()
    # the openai SDK call beneath is then the outermost instrumented one: counted once, by it
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_INPUT_TOKENS] == 1000
    assert a[sc.COST_SOURCE] == "price_table"


# --- content --------------------------------------------------------------------------------------


def test_no_content_by_default(telemetry: Any, openai_emulator: Any) -> None:
    chat(openai_emulator)
    a = attrs(telemetry.one_llm_span())
    assert sc.INPUT_MESSAGES not in a and sc.OUTPUT_MESSAGES not in a
    assert KEY not in json.dumps(a, default=str)


def test_content_when_enabled(instrument_with: Any, openai_emulator: Any) -> None:
    t = instrument_with(capture_content=True)
    openai_emulator.push(Reply(text="Paris."))
    chat(openai_emulator)
    openai_emulator.push(Reply(text="Paris, again."))
    list(chat(openai_emulator, stream=True))
    plain, streamed = (attrs(s) for s in sorted(t.llm_spans(), key=lambda s: s.start_time))
    assert json.loads(plain[sc.INPUT_MESSAGES]) == [semconv_text("user", "What is the capital of France?")]
    assert json.loads(plain[sc.OUTPUT_MESSAGES]) == [
        semconv_text("assistant", "Paris.", finish_reason="stop")
    ]
    assert json.loads(streamed[sc.OUTPUT_MESSAGES]) == [
        semconv_text("assistant", "Paris, again.", finish_reason="stop")
    ]
    assert KEY not in json.dumps(plain, default=str)
