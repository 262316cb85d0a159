"""The google-genai SDK (Gemini API and Vertex AI), driven over loopback HTTP against the Gemini emulator."""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import threading
import weakref
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Literal

import google.auth.credentials
import pytest
from genai_prices import Usage as GenaiUsage
from genai_prices import calc_price
from google import genai
from google.genai import errors, types
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.trace import SpanKind, StatusCode

import otel_llm_usage
from emulators import GeminiEmulator, GeminiReply
from otel_llm_usage import semconv as sc
from otel_llm_usage.usage import as_count
from tests.conftest import semconv_text

Platform = Literal["gemini", "vertex", "express"]
API_KEY = "AIza-test-secret-key-0123456789"
QUESTION = "What is the capital of France?"


class StaticToken(google.auth.credentials.Credentials):
    """Vertex AI credentials that never leave the process."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.token = "ya29.test-token"

    def refresh(self, request: Any) -> None:
        self.token = "ya29.test-token"


_clients: dict[tuple[int, Platform], genai.Client] = {}
# Releases before 3.x bind their async client to the first event loop that uses it.
_loop_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[int, Platform], genai.Client]
] = weakref.WeakKeyDictionary()


def client(emu: GeminiEmulator, platform: Platform = "gemini") -> genai.Client:
    """One client per emulator, platform and event loop (building one loads TLS trust stores); retries off."""
    try:
        cache = _loop_clients.setdefault(asyncio.get_running_loop(), {})
    except RuntimeError:
        cache = _clients
    key = (emu.port, platform)
    if key not in cache:
        options = types.HttpOptions(base_url=emu.base_url, retry_options=types.HttpRetryOptions(attempts=1))
        if platform == "vertex":
            cache[key] = genai.Client(
                vertexai=True,
                project="proj",
                location="us-central1",
                credentials=StaticToken(),
                http_options=options,
            )
        elif platform == "express":
            cache[key] = genai.Client(vertexai=True, api_key=API_KEY, http_options=options)
        else:
            cache[key] = genai.Client(api_key=API_KEY, http_options=options)
    return cache[key]


@pytest.fixture(scope="module")
def _gemini_emulator() -> Iterator[GeminiEmulator]:
    with GeminiEmulator() as emu:
        yield emu
    _clients.clear()


@pytest.fixture
def gemini(_gemini_emulator: GeminiEmulator) -> GeminiEmulator:
    _gemini_emulator.reset()
    return _gemini_emulator


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def by_start(spans: list[Any]) -> list[Any]:
    return sorted(spans, key=lambda s: s.start_time)


def google_price(model: str, **usage: int) -> float:
    price: Decimal = calc_price(GenaiUsage(**usage), model, provider_id="google").total_price
    return float(price)


def test_provider_is_registered() -> None:
    from otel_llm_usage.providers import google_genai
    from otel_llm_usage.registry import PROVIDERS

    assert PROVIDERS.get("google_genai") == "otel_llm_usage.providers.google_genai"
    assert google_genai.LIBRARY == "google.genai"


counts = st.one_of(
    st.none(), st.integers(-5, 10**7), st.floats(allow_nan=True), st.text(max_size=3), st.booleans()
)
details = st.lists(
    st.fixed_dictionaries({"modality": st.sampled_from(["TEXT", "AUDIO", "IMAGE", 7]), "tokenCount": counts}),
    max_size=3,
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "promptTokenCount": counts,
            "candidatesTokenCount": counts,
            "cachedContentTokenCount": counts,
            "thoughtsTokenCount": counts,
            "toolUsePromptTokenCount": counts,
            "promptTokensDetails": details,
            "candidatesTokensDetails": details,
            "toolUsePromptTokensDetails": st.one_of(details, st.text(max_size=2)),
        },
    )
)
def test_usage_from_any_json_keeps_the_invariants(raw: dict[str, Any]) -> None:
    from otel_llm_usage.providers._genai_read import usage_from

    usage = usage_from(raw)
    if usage is not None:
        assert usage.valid()
        thoughts = as_count(raw.get("thoughtsTokenCount"))
        assert usage.reasoning == thoughts
        assert usage.output == as_count(raw.get("candidatesTokenCount")) + thoughts
        assert usage.input == as_count(raw.get("promptTokenCount")) + as_count(
            raw.get("toolUsePromptTokenCount")
        )
    else:
        keys = ("promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount", "toolUsePromptTokenCount")
        assert all(as_count(raw.get(key)) == 0 for key in keys)


@pytest.mark.parametrize(
    ("given_name", "expected"),
    [
        ("gemini-2.5-pro", "gemini-2.5-pro"),
        ("models/gemini-2.5-pro", "gemini-2.5-pro"),
        ("publishers/google/models/gemini-2.5-pro", "gemini-2.5-pro"),
        ("projects/p/locations/l/publishers/google/models/gemini-2.5-pro", "gemini-2.5-pro"),
        ("tunedModels/abc123", "tunedModels/abc123"),
        ("projects/p/locations/l/endpoints/123", "projects/p/locations/l/endpoints/123"),
        ("", None),
    ],
)
def test_model_name_forms(given_name: str, expected: str | None) -> None:
    from otel_llm_usage.providers._genai_read import model_name

    assert model_name(given_name) == expected


def test_finish_reason_text() -> None:
    from otel_llm_usage.providers._genai_read import finish_reason_text

    assert finish_reason_text(types.FinishReason.MAX_TOKENS) == "max_tokens"
    assert finish_reason_text("FINISH_REASON_UNSPECIFIED") == "unspecified"
    assert finish_reason_text(None) is None


# --- exact tokens and cost ---------------------------------------------------------------------


def test_golden_long_context_price_and_semconv_attributes(telemetry: Any, gemini: GeminiEmulator) -> None:
    gemini.push(GeminiReply(prompt_tokens=250_000, candidates_tokens=2_000, model_version="gemini-2.5-pro"))
    response = client(gemini).models.generate_content(
        model="gemini-2.5-pro",
        contents=QUESTION,
        config=types.GenerateContentConfig(max_output_tokens=4096, temperature=0.25),
    )
    assert response.usage_metadata is not None and response.usage_metadata.prompt_token_count == 250_000

    expected = google_price("gemini-2.5-pro", input_tokens=250_000, output_tokens=2_000)
    base = calc_price(
        GenaiUsage(input_tokens=100_000, output_tokens=2_000), "gemini-2.5-pro", provider_id="google"
    )
    base_rate_price = float(base.input_price) * 2.5 + float(base.output_price)
    assert expected > base_rate_price

    span = telemetry.one_llm_span()
    a = attrs(span)
    assert span.name == "generate_content gemini-2.5-pro"
    assert span.kind is SpanKind.CLIENT
    assert a[sc.OPERATION_NAME] == "generate_content"
    assert a[sc.PROVIDER_NAME] == "gcp.gemini"
    assert a[sc.REQUEST_MODEL] == "gemini-2.5-pro"
    assert a[sc.RESPONSE_MODEL] == "gemini-2.5-pro"
    assert a[sc.RESPONSE_ID] == response.response_id
    assert a[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    assert a[sc.REQUEST_MAX_TOKENS] == 4096
    assert a[sc.REQUEST_TEMPERATURE] == 0.25
    assert a[sc.REQUEST_STREAM] is False
    assert (a[sc.SERVER_ADDRESS], a[sc.SERVER_PORT]) == ("127.0.0.1", gemini.port)
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (250_000, 2_000)
    assert a[sc.USAGE_SOURCE] == "provider"
    assert a[sc.COST_SOURCE] == "price_table"
    assert a[sc.USAGE_COST] == pytest.approx(expected, abs=1e-12)
    assert span.status.status_code is not StatusCode.ERROR


def test_thinking_tokens_are_output_and_reasoning(telemetry: Any, gemini: GeminiEmulator) -> None:
    gemini.push(GeminiReply(prompt_tokens=1_000, candidates_tokens=500, thoughts_tokens=1_500))
    response = client(gemini).models.generate_content(model="gemini-2.5-flash", contents=QUESTION)
    assert response.usage_metadata is not None and response.usage_metadata.thoughts_token_count == 1_500

    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_INPUT_TOKENS] == 1_000
    assert a[sc.USAGE_OUTPUT_TOKENS] == 2_000
    assert a[sc.USAGE_REASONING_OUTPUT_TOKENS] == 1_500
    thinking_priced = google_price("gemini-2.5-flash", input_tokens=1_000, output_tokens=2_000)
    assert a[sc.USAGE_COST] == pytest.approx(thinking_priced, abs=1e-12)
    assert a[sc.USAGE_COST] > google_price("gemini-2.5-flash", input_tokens=1_000, output_tokens=500)
    assert telemetry.total(sc.METRIC_TOKENS, llm_usage__token__type="reasoning") == 1_500
    assert telemetry.total(sc.METRIC_TOKENS, llm_usage__token__type="output") == 2_000


def test_cached_content_and_tool_use_prompt(telemetry: Any, gemini: GeminiEmulator) -> None:
    gemini.push(
        GeminiReply(prompt_tokens=1_000, cached_tokens=400, tool_use_prompt_tokens=200, candidates_tokens=300)
    )
    client(gemini).models.generate_content(model="gemini-2.5-flash", contents=QUESTION)

    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_INPUT_TOKENS] == 1_200  # tool results are billed as input
    assert a[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 400  # already inside promptTokenCount
    assert a[sc.USAGE_OUTPUT_TOKENS] == 300
    assert sc.USAGE_CACHE_CREATION_INPUT_TOKENS not in a and sc.USAGE_REASONING_OUTPUT_TOKENS not in a
    expected = google_price("gemini-2.5-flash", input_tokens=1_200, cache_read_tokens=400, output_tokens=300)
    assert a[sc.USAGE_COST] == pytest.approx(expected, abs=1e-12)
    assert telemetry.total(sc.METRIC_TOKENS, llm_usage__token__type="cache_read") == 400


def test_audio_modalities_are_subsets(telemetry: Any, gemini: GeminiEmulator) -> None:
    gemini.push(
        GeminiReply(
            prompt_tokens=1_000, audio_prompt_tokens=300, candidates_tokens=200, audio_candidates_tokens=50
        )
    )
    client(gemini).models.generate_content(model="gemini-2.5-flash", contents=QUESTION)

    a = attrs(telemetry.one_llm_span())
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_AUDIO_INPUT_TOKENS]) == (1_000, 300)
    assert (a[sc.USAGE_OUTPUT_TOKENS], a[sc.USAGE_AUDIO_OUTPUT_TOKENS]) == (200, 50)
    expected = google_price(
        "gemini-2.5-flash",
        input_tokens=1_000,
        input_audio_tokens=300,
        output_tokens=200,
        output_audio_tokens=50,
    )
    assert a[sc.USAGE_COST] == pytest.approx(expected, abs=1e-12)


def test_metrics_for_one_call(telemetry: Any, gemini: GeminiEmulator) -> None:
    gemini.push(GeminiReply(prompt_tokens=1_000, candidates_tokens=100))
    client(gemini).models.generate_content(model="gemini-2.5-flash", contents=QUESTION)

    by_type = {p.attributes[sc.TOKEN_TYPE]: p for p in telemetry.points(sc.METRIC_TOKEN_USAGE)}
    assert (by_type["input"].sum, by_type["output"].sum) == (1_000, 100)
    assert by_type["input"].attributes[sc.PROVIDER_NAME] == "gcp.gemini"
    assert by_type["input"].attributes[sc.OPERATION_NAME] == "generate_content"
    expected = google_price("gemini-2.5-flash", input_tokens=1_000, output_tokens=100)
    assert telemetry.total(sc.METRIC_COST) == pytest.approx(expected, abs=1e-12)
    assert telemetry.points(sc.METRIC_TIME_TO_FIRST_CHUNK) == []


def test_missing_usage_is_marked_not_invented(telemetry: Any, gemini: GeminiEmulator) -> None:
    gemini.push(GeminiReply(omit_usage=True))
    client(gemini).models.generate_content(model="gemini-2.5-flash", contents=QUESTION)
    a = attrs(telemetry.one_llm_span())
    assert a[sc.USAGE_SOURCE] == "missing"
    assert sc.USAGE_INPUT_TOKENS not in a and sc.USAGE_COST not in a
    assert telemetry.points(sc.METRIC_TOKEN_USAGE) == []


def test_suppressed_instrumentation_records_nothing(telemetry: Any, gemini: GeminiEmulator) -> None:
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    gemini.push(GeminiReply(prompt_tokens=9), GeminiReply(prompt_tokens=9, chunks=3))
    with suppress_instrumentation():
        client(gemini).models.generate_content(model="gemini-2.5-flash", contents=QUESTION)
        chunks = list(
            client(gemini).models.generate_content_stream(model="gemini-2.5-flash", contents=QUESTION)
        )
    assert len(chunks) == 3
    assert telemetry.llm_spans() == [] and telemetry.points(sc.METRIC_TOKEN_USAGE) == []


def test_no_candidates_count_is_zero_output_not_missing(telemetry: Any, gemini: GeminiEmulator) -> None:
    gemini.push(GeminiReply(text="", prompt_tokens=9, candidates_tokens=0, finish_reason="SAFETY"))
    client(gemini).models.generate_content(model="gemini-2.5-flash", contents=QUESTION)
    a = attrs(telemetry.one_llm_span())
    assert (a[sc.USAGE_SOURCE], a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == ("provider", 9, 0)
    assert a[sc.RESPONSE_FINISH_REASONS] == ("safety",)


def test_malformed_usage_never_breaks_the_call(telemetry: Any, gemini: GeminiEmulator) -> None:
    gemini.push(GeminiReply(raw_usage={"promptTokenCount": 12.0, "candidatesTokenCount": -4}))
    response = client(gemini).models.generate_content(model="gemini-2.5-flash", contents=QUESTION)
    assert response.usage_metadata is not None and response.usage_metadata.candidates_token_count == -4
    a = attrs(telemetry.one_llm_span())
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (12, 0)


def test_raw_http_response_config(telemetry: Any, gemini: GeminiEmulator) -> None:
    gemini.push(GeminiReply(prompt_tokens=77, candidates_tokens=7, model_version="gemini-2.5-flash-001"))
    response = client(gemini).models.generate_content(
        model="gemini-2.5-flash",
        contents=QUESTION,
        config=types.GenerateContentConfig(should_return_http_response=True),
    )
    assert response.usage_metadata is None and response.sdk_http_response is not None
    a = attrs(telemetry.one_llm_span())
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (77, 7)
    assert a[sc.RESPONSE_MODEL] == "gemini-2.5-flash-001"


async def test_async_generate(telemetry: Any, gemini: GeminiEmulator) -> None:
    gemini.push(GeminiReply(prompt_tokens=40, candidates_tokens=4, thoughts_tokens=6))
    response = await client(gemini).aio.models.generate_content(model="gemini-2.5-flash", contents=QUESTION)
    assert response.text
    a = attrs(telemetry.one_llm_span())
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS], a[sc.USAGE_REASONING_OUTPUT_TOKENS]) == (
        40,
        10,
        6,
    )
    assert a[sc.REQUEST_STREAM] is False


# --- Vertex AI ---------------------------------------------------------------------------------


@pytest.mark.parametrize("platform", ["vertex", "express"])
def test_vertex_provider_name_and_model_forms(
    telemetry: Any, gemini: GeminiEmulator, platform: Platform
) -> None:
    gemini.push(GeminiReply(prompt_tokens=250_000, candidates_tokens=10), GeminiReply(prompt_tokens=5))
    c = client(gemini, platform)
    c.models.generate_content(model="gemini-2.5-pro", contents=QUESTION)
    c.models.generate_content(model="publishers/google/models/gemini-2.5-flash", contents=QUESTION)

    pro, flash = by_start(telemetry.llm_spans())
    assert attrs(pro)[sc.PROVIDER_NAME] == "gcp.vertex_ai"
    assert attrs(pro)[sc.USAGE_COST] == pytest.approx(
        google_price("gemini-2.5-pro", input_tokens=250_000, output_tokens=10), abs=1e-12
    )
    assert attrs(flash)[sc.REQUEST_MODEL] == "gemini-2.5-flash"
    assert flash.name == "generate_content gemini-2.5-flash"
    assert gemini.requests[-1].path.endswith("/publishers/google/models/gemini-2.5-flash:generateContent")


def test_endpoints_option_names_the_provider(instrument_with: Any, gemini: GeminiEmulator) -> None:
    t = instrument_with(endpoints={"127.0.0.1": "corp_gateway"})
    client(gemini).models.generate_content(model="gemini-2.5-flash", contents=QUESTION)
    assert attrs(t.one_llm_span())[sc.PROVIDER_NAME] == "corp_gateway"


def test_vertex_stream_usage_from_the_last_chunk(telemetry: Any, gemini: GeminiEmulator) -> None:
    gemini.push(GeminiReply(prompt_tokens=300, candidates_tokens=30, thoughts_tokens=10, chunks=4))
    chunks = list(
        client(gemini, "vertex").models.generate_content_stream(model="gemini-2.5-flash", contents=QUESTION)
    )
    assert [c.usage_metadata is None for c in chunks] == [True, True, True, False]
    a = attrs(telemetry.one_llm_span())
    assert a[sc.PROVIDER_NAME] == "gcp.vertex_ai"
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS], a[sc.USAGE_REASONING_OUTPUT_TOKENS]) == (
        300,
        40,
        10,
    )
    assert a[sc.STREAM_CHUNKS] == 4 and sc.STREAM_INCOMPLETE not in a


# --- streaming ---------------------------------------------------------------------------------


def _view(chunks: list[Any]) -> list[Any]:
    return [c.model_dump(exclude={"sdk_http_response"}) for c in chunks]


def test_stream_exhaustion_and_caller_sees_identical_chunks(
    instrument_with: Any, gemini: GeminiEmulator
) -> None:
    reply = GeminiReply(
        prompt_tokens=1_000, candidates_tokens=80, thoughts_tokens=20, chunks=5, response_id="r-1"
    )
    c = client(gemini)
    gemini.push(reply)
    plain_stream = c.models.generate_content_stream(model="gemini-2.5-flash", contents=QUESTION)
    plain_type = type(plain_stream)
    plain = list(plain_stream)

    t = instrument_with()
    gemini.push(reply)
    stream = c.models.generate_content_stream(model="gemini-2.5-flash", contents=QUESTION)
    assert inspect.isgenerator(stream) and isinstance(stream, plain_type)
    seen = list(stream)
    assert _view(seen) == _view(plain)

    span = t.one_llm_span()
    a = attrs(span)
    assert span.name == "generate_content gemini-2.5-flash"
    assert a[sc.REQUEST_STREAM] is True
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (1_000, 100)
    assert a[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    assert a[sc.RESPONSE_ID] == "r-1"
    assert a[sc.STREAM_CHUNKS] == 5 and sc.STREAM_INCOMPLETE not in a
    assert a[sc.RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert a[sc.USAGE_COST] == pytest.approx(
        google_price("gemini-2.5-flash", input_tokens=1_000, output_tokens=100), abs=1e-12
    )
    (ttfc,) = t.points(sc.METRIC_TIME_TO_FIRST_CHUNK)
    assert ttfc.count == 1


def test_stream_break_then_close_ends_once_with_running_usage(telemetry: Any, gemini: GeminiEmulator) -> None:
    gemini.push(GeminiReply(prompt_tokens=100, candidates_tokens=40, chunks=4))
    stream: Any = client(gemini).models.generate_content_stream(model="gemini-2.5-flash", contents=QUESTION)
    for _ in stream:
        break
    assert telemetry.llm_spans() == []
    stream.close()
    stream.close()
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == 1
    # the Gemini API repeats running totals on every chunk: the first one's are what was used so far
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (100, 10)
    assert sc.ERROR_TYPE not in a


def test_stream_garbage_collected_ends_span(telemetry: Any, gemini: GeminiEmulator) -> None:
    gemini.push(GeminiReply(chunks=6))
    stream: Any = client(gemini).models.generate_content_stream(model="gemini-2.5-flash", contents=QUESTION)
    next(stream)
    assert telemetry.llm_spans() == []
    del stream
    gc.collect()
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == 1


def _drain(stream: Any) -> tuple[list[Any], BaseException | None]:
    got: list[Any] = []
    try:
        for chunk in stream:
            got.append(chunk)
    except Exception as exc:
        return got, exc
    return got, None


def test_stream_cut_midway_records_error_and_reraises_unchanged(
    instrument_with: Any, gemini: GeminiEmulator
) -> None:
    c = client(gemini)
    reply = GeminiReply(prompt_tokens=60, candidates_tokens=30, chunks=6, cut_after=2)
    gemini.push(reply)
    plain_chunks, plain_error = _drain(
        c.models.generate_content_stream(model="gemini-2.5-flash", contents=QUESTION)
    )

    t = instrument_with()
    gemini.push(reply)
    got, error = _drain(c.models.generate_content_stream(model="gemini-2.5-flash", contents=QUESTION))
    assert plain_error is not None and error is not None
    assert type(error) is type(plain_error) and str(error) == str(plain_error)
    assert len(got) == len(plain_chunks) == 2

    span = t.one_llm_span()
    a = attrs(span)
    assert a[sc.ERROR_TYPE] == type(error).__qualname__
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == 2
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (60, 10)
    assert span.status.status_code is StatusCode.ERROR


def test_stream_error_event_is_recorded(instrument_with: Any, gemini: GeminiEmulator) -> None:
    c = client(gemini)
    reply = GeminiReply(chunks=4, error_after=1, stream_error_code=503)
    gemini.push(reply)
    plain, plain_error = _drain(c.models.generate_content_stream(model="gemini-2.5-flash", contents=QUESTION))

    t = instrument_with()
    gemini.push(reply)
    got, error = _drain(c.models.generate_content_stream(model="gemini-2.5-flash", contents=QUESTION))
    assert type(error) is type(plain_error) and len(got) == len(plain)
    a = attrs(t.one_llm_span())
    if isinstance(plain_error, errors.ServerError):  # google-genai 2.x and later raise on an error event
        assert a[sc.ERROR_TYPE] == "ServerError"
        assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == 1
    else:
        assert sc.ERROR_TYPE not in a and a[sc.STREAM_CHUNKS] == len(got)


def test_consumer_exception_inside_loop_propagates(telemetry: Any, gemini: GeminiEmulator) -> None:
    gemini.push(GeminiReply(chunks=5))
    stream: Any = client(gemini).models.generate_content_stream(model="gemini-2.5-flash", contents=QUESTION)
    with pytest.raises(KeyError):
        for _ in stream:
            raise KeyError("consumer bug")
    stream.close()
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_INCOMPLETE] is True and sc.ERROR_TYPE not in a


async def test_async_stream_exhaustion_break_and_garbage_collection(
    telemetry: Any, gemini: GeminiEmulator
) -> None:
    c = client(gemini)
    gemini.push(GeminiReply(prompt_tokens=30, candidates_tokens=6, chunks=3))
    stream: Any = await c.aio.models.generate_content_stream(model="gemini-2.5-flash", contents=QUESTION)
    assert inspect.isasyncgen(stream)
    assert len([chunk async for chunk in stream]) == 3
    a = attrs(telemetry.one_llm_span())
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (30, 6)
    assert sc.STREAM_INCOMPLETE not in a

    telemetry.exporter.clear()
    gemini.push(GeminiReply(chunks=8))
    stream = await c.aio.models.generate_content_stream(model="gemini-2.5-flash", contents=QUESTION)
    async for _ in stream:
        break
    assert telemetry.llm_spans() == []
    await stream.aclose()
    await stream.aclose()
    a = attrs(telemetry.one_llm_span())
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == 1

    telemetry.exporter.clear()
    gemini.push(GeminiReply(chunks=8))
    stream = await c.aio.models.generate_content_stream(model="gemini-2.5-flash", contents=QUESTION)
    await stream.__anext__()
    del stream
    gc.collect()
    assert attrs(telemetry.one_llm_span())[sc.STREAM_INCOMPLETE] is True


async def test_async_stream_cancellation(telemetry: Any, gemini: GeminiEmulator) -> None:
    gate = threading.Event()
    gemini.push(GeminiReply(chunks=5, gate=gate, gate_after=1))
    first = asyncio.Event()

    async def consume() -> None:
        stream = await client(gemini).aio.models.generate_content_stream(
            model="gemini-2.5-flash", contents=QUESTION
        )
        async for _ in stream:
            first.set()

    task = asyncio.create_task(consume())
    try:
        await asyncio.wait({task, asyncio.ensure_future(first.wait())}, return_when=asyncio.FIRST_COMPLETED)
        assert not task.done(), task  # a consumer that failed before its first chunk
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        gate.set()
    a = attrs(telemetry.one_llm_span())
    assert a[sc.ERROR_TYPE] == "CancelledError"
    assert a[sc.STREAM_INCOMPLETE] is True and a[sc.STREAM_CHUNKS] == 1


async def test_async_stream_cut_midway(telemetry: Any, gemini: GeminiEmulator) -> None:
    gemini.push(GeminiReply(chunks=5, cut_after=2))
    got: list[Any] = []
    with pytest.raises(Exception) as caught:
        async for chunk in await client(gemini).aio.models.generate_content_stream(
            model="gemini-2.5-flash", contents=QUESTION
        ):
            got.append(chunk)
    assert len(got) == 2
    a = attrs(telemetry.one_llm_span())
    assert a[sc.ERROR_TYPE] == type(caught.value).__qualname__
    assert a[sc.STREAM_INCOMPLETE] is True


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "exc_type"), [(429, errors.ClientError), (500, errors.ServerError)])
def test_http_errors_recorded_and_reraised_unchanged(
    telemetry: Any, gemini: GeminiEmulator, status: int, exc_type: type[errors.APIError]
) -> None:
    gemini.push(GeminiReply(status=status))
    with pytest.raises(exc_type) as caught:
        client(gemini).models.generate_content(model="gemini-2.5-flash", contents=QUESTION)
    assert type(caught.value) is exc_type and caught.value.code == status
    span = telemetry.one_llm_span()
    assert attrs(span)[sc.ERROR_TYPE] == exc_type.__qualname__
    assert span.status.status_code is StatusCode.ERROR
    (point,) = telemetry.points(sc.METRIC_OPERATION_DURATION)
    assert point.attributes[sc.ERROR_TYPE] == exc_type.__qualname__


@pytest.mark.parametrize(("status", "exc_type"), [(429, errors.ClientError), (500, errors.ServerError)])
async def test_async_and_stream_errors_reraised(
    telemetry: Any, gemini: GeminiEmulator, status: int, exc_type: type[errors.APIError]
) -> None:
    c = client(gemini)
    gemini.push(GeminiReply(status=status), GeminiReply(status=status), GeminiReply(status=status))
    with pytest.raises(exc_type):
        await c.aio.models.generate_content(model="gemini-2.5-flash", contents=QUESTION)
    with pytest.raises(exc_type):
        async for _ in await c.aio.models.generate_content_stream(
            model="gemini-2.5-flash", contents=QUESTION
        ):
            pass
    with pytest.raises(exc_type):
        list(c.models.generate_content_stream(model="gemini-2.5-flash", contents=QUESTION))
    spans = telemetry.llm_spans()
    assert len(spans) == 3
    assert {attrs(s)[sc.ERROR_TYPE] for s in spans} == {exc_type.__qualname__}
    assert [attrs(s)[sc.REQUEST_STREAM] for s in by_start(spans)] == [False, True, True]


def test_internal_failure_never_reaches_the_caller(
    telemetry: Any, gemini: GeminiEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from otel_llm_usage.pricing import Pricer

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("price table exploded")

    monkeypatch.setattr(Pricer, "cost", broken)
    gemini.push(GeminiReply(prompt_tokens=10), GeminiReply(chunks=2))
    c = client(gemini)
    assert c.models.generate_content(model="gemini-2.5-flash", contents=QUESTION).text
    assert len(list(c.models.generate_content_stream(model="gemini-2.5-flash", contents=QUESTION))) == 2
    assert len(telemetry.llm_spans()) == 2


async def test_budget_raises_before_the_request_is_sent(instrument_with: Any, gemini: GeminiEmulator) -> None:
    from otel_llm_usage import Budget, BudgetExceeded
    from otel_llm_usage.runs import run

    t = instrument_with(budgets=[Budget(max_cost_usd=0.001, scope="run", action="raise")])
    c = client(gemini)
    with run("spender"):
        gemini.push(GeminiReply(prompt_tokens=10_000, candidates_tokens=1_000))
        c.models.generate_content(model="gemini-2.5-flash", contents=QUESTION)
        with pytest.raises(BudgetExceeded):
            c.models.generate_content(model="gemini-2.5-flash", contents=QUESTION)
        with pytest.raises(BudgetExceeded):
            list(c.models.generate_content_stream(model="gemini-2.5-flash", contents=QUESTION))
        with pytest.raises(BudgetExceeded):
            async for _ in await c.aio.models.generate_content_stream(
                model="gemini-2.5-flash", contents=QUESTION
            ):
                pass
    assert gemini.served.requests == 1
    assert len(t.llm_spans()) == 1


# --- chat sessions, automatic function calling, embeddings --------------------------------------


def test_chat_session_records_each_message_once(telemetry: Any, gemini: GeminiEmulator) -> None:
    gemini.push(
        GeminiReply(prompt_tokens=11, text="Paris."),
        GeminiReply(prompt_tokens=22, text="About two million."),
        GeminiReply(prompt_tokens=33, chunks=3),
    )
    chat = client(gemini).chats.create(model="gemini-2.5-flash")
    assert chat.send_message(QUESTION).text == "Paris."
    assert chat.send_message("And its population?").text == "About two million."
    assert len(list(chat.send_message_stream("Thanks!"))) == 3

    spans = by_start(telemetry.llm_spans())
    assert [attrs(s)[sc.USAGE_INPUT_TOKENS] for s in spans] == [11, 22, 33]
    assert [attrs(s)[sc.REQUEST_STREAM] for s in spans] == [False, False, True]
    assert len(gemini.requests[-1].json["contents"]) == 5  # the history still reaches the model


async def test_async_chat_session_records_each_message_once(telemetry: Any, gemini: GeminiEmulator) -> None:
    gemini.push(GeminiReply(prompt_tokens=11), GeminiReply(prompt_tokens=22, chunks=2))
    chat = client(gemini).aio.chats.create(model="gemini-2.5-flash")
    await chat.send_message(QUESTION)
    async for _ in await chat.send_message_stream("More?"):
        pass
    spans = by_start(telemetry.llm_spans())
    assert [attrs(s)[sc.USAGE_INPUT_TOKENS] for s in spans] == [11, 22]


def test_automatic_function_calling_records_every_request(telemetry: Any, gemini: GeminiEmulator) -> None:
    def get_weather(city: str) -> str:
        """Weather in a city."""
        return "sunny"

    gemini.push(
        GeminiReply(
            prompt_tokens=50, parts=[{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]
        ),
        GeminiReply(prompt_tokens=70, candidates_tokens=9, text="It is sunny."),
    )
    response = client(gemini).models.generate_content(
        model="gemini-2.5-flash", contents=QUESTION, config=types.GenerateContentConfig(tools=[get_weather])
    )
    assert response.text == "It is sunny."
    spans = by_start(telemetry.llm_spans())
    assert [attrs(s)[sc.USAGE_INPUT_TOKENS] for s in spans] == [50, 70]
    served = gemini.served
    assert telemetry.total(sc.METRIC_TOKENS, llm_usage__token__type="input") == served.prompt_tokens
    assert telemetry.total(sc.METRIC_TOKENS, llm_usage__token__type="output") == served.candidates_tokens


def test_embed_content(telemetry: Any, gemini: GeminiEmulator) -> None:
    gemini.push(GeminiReply(prompt_tokens=12))
    response = client(gemini).models.embed_content(model="gemini-embedding-001", contents=["a", "b"])
    assert response.embeddings is not None and len(response.embeddings) == 2
    span = telemetry.one_llm_span()
    a = attrs(span)
    assert span.name == "embeddings gemini-embedding-001"
    assert a[sc.OPERATION_NAME] == "embeddings"
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (12, 0)
    assert a[sc.USAGE_COST] == pytest.approx(google_price("gemini-embedding-001", input_tokens=12), abs=1e-15)


async def test_vertex_embeddings_predict_and_embed_content(telemetry: Any, gemini: GeminiEmulator) -> None:
    c = client(gemini, "vertex")
    gemini.push(GeminiReply(prompt_tokens=9), GeminiReply(prompt_tokens=4))
    predicted = await c.aio.models.embed_content(model="text-embedding-005", contents=["a", "b"])
    assert predicted.embeddings is not None
    c.models.embed_content(model="gemini-embedding-001", contents="a")
    predict_span, embed_span = by_start(telemetry.llm_spans())
    assert attrs(predict_span)[sc.USAGE_INPUT_TOKENS] == 9  # summed per-embedding statistics
    assert attrs(embed_span)[sc.USAGE_INPUT_TOKENS] == 4
    assert {attrs(s)[sc.PROVIDER_NAME] for s in (predict_span, embed_span)} == {"gcp.vertex_ai"}


# --- privacy -----------------------------------------------------------------------------------


def test_no_content_and_no_secrets_by_default(telemetry: Any, gemini: GeminiEmulator) -> None:
    gemini.push(GeminiReply(text="The capital is Paris."), GeminiReply(text="Paris again.", chunks=2))
    c = client(gemini)
    c.models.generate_content(model="gemini-2.5-flash", contents=QUESTION)
    list(c.models.generate_content_stream(model="gemini-2.5-flash", contents=QUESTION))
    for span in telemetry.llm_spans():
        a = attrs(span)
        assert sc.INPUT_MESSAGES not in a and sc.OUTPUT_MESSAGES not in a
        dump = json.dumps(a, default=str)
        assert API_KEY not in dump and "capital" not in dump and "Paris" not in dump


def test_content_capture_opt_in(instrument_with: Any, gemini: GeminiEmulator) -> None:
    t = instrument_with(capture_content=True)
    gemini.push(GeminiReply(text="Paris."), GeminiReply(text="Paris, of course.", chunks=3))
    c = client(gemini)
    c.models.generate_content(model="gemini-2.5-flash", contents=QUESTION)
    list(c.models.generate_content_stream(model="gemini-2.5-flash", contents=QUESTION))
    plain, streamed = by_start(t.llm_spans())
    assert json.loads(attrs(plain)[sc.INPUT_MESSAGES]) == [semconv_text("user", QUESTION)]
    assert json.loads(attrs(plain)[sc.OUTPUT_MESSAGES]) == [
        semconv_text("assistant", "Paris.", finish_reason="stop")
    ]
    assert json.loads(attrs(streamed)[sc.OUTPUT_MESSAGES]) == [
        semconv_text("assistant", "Paris, of course.", finish_reason="stop")
    ]
    assert API_KEY not in json.dumps(attrs(plain), default=str)


# --- lifecycle ---------------------------------------------------------------------------------


def test_uninstrument_restores_every_patched_method() -> None:
    from google.genai import models

    from otel_llm_usage.providers.google_genai import ASYNC_EMBED, EMBED, TARGETS, embed_targets
    from tests.conftest import make_telemetry

    targets = [t for t in TARGETS if t not in (EMBED, ASYNC_EMBED)] + list(embed_targets())

    def current() -> list[Any]:
        return [getattr(models, attr.split(".")[0]).__dict__[attr.split(".")[1]] for _, attr in targets]

    originals = current()
    make_telemetry()
    try:
        assert all(now is not before for now, before in zip(current(), originals, strict=True))
    finally:
        otel_llm_usage.uninstrument()
    assert all(now is before for now, before in zip(current(), originals, strict=True))


def test_instrument_twice_records_one_span_per_call(telemetry: Any, gemini: GeminiEmulator) -> None:
    otel_llm_usage.instrument()
    client(gemini).models.generate_content(model="gemini-2.5-flash", contents=QUESTION)
    assert len(telemetry.llm_spans()) == 1


def test_uninstrumented_client_records_nothing(gemini: GeminiEmulator) -> None:
    from tests.conftest import make_telemetry

    t = make_telemetry()
    otel_llm_usage.uninstrument()
    client(gemini).models.generate_content(model="gemini-2.5-flash", contents=QUESTION)
    assert t.spans() == []


def test_nested_instrumented_call_records_once(telemetry: Any, gemini: GeminiEmulator) -> None:
    from otel_llm_usage.context import in_llm_call

    token = in_llm_call.set(True)  # what an outer instrumented client sets around its call
    try:
        c = client(gemini)
        c.models.generate_content(model="gemini-2.5-flash", contents=QUESTION)
        list(c.models.generate_content_stream(model="gemini-2.5-flash", contents=QUESTION))
    finally:
        in_llm_call.reset(token)
    assert telemetry.llm_spans() == []


def test_llm_span_is_the_parent_context_and_is_restored(telemetry: Any, gemini: GeminiEmulator) -> None:
    from opentelemetry import trace

    tracer = telemetry.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("handler") as parent:
        c = client(gemini)
        c.models.generate_content(model="gemini-2.5-flash", contents=QUESTION)
        for _ in c.models.generate_content_stream(model="gemini-2.5-flash", contents=QUESTION):
            assert trace.get_current_span() is parent  # the caller's context between chunks
    for span in telemetry.llm_spans():
        assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    assert trace.get_current_span() is trace.INVALID_SPAN
