"""Beside the official OpenTelemetry OpenAI instrumentation (opentelemetry-instrumentation-openai-v2),
both driving the real openai SDK against the emulator, in both orders of instrumentation.

"spans": two CLIENT spans per call (its, and ours beneath it), one warning naming it. "enrich":
one CLIENT span, its, carrying our exact usage and cost. In every mode the package's metrics and
rollups count each call once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import wrapt
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import otel_llm_usage
from emulators import Reply
from otel_llm_usage import coexist
from otel_llm_usage import semconv as sc
from otel_llm_usage.config import Options
from otel_llm_usage.version import INSTRUMENTATION_NAME

from .conftest import Telemetry

MSGS = [{"role": "user", "content": "What is the capital of France?"}]
# Its tracer's, or (with a current opentelemetry-util-genai) the shared GenAI handler's.
PEER_SCOPES = {"opentelemetry.instrumentation.openai_v2", "opentelemetry.util.genai.handler"}
# gpt-4o: 1000 input (200 of them cached) + 500 output (FIELD-NOTES.md)
GOLDEN = Reply(prompt_tokens=1000, cached_tokens=200, completion_tokens=500, model="gpt-4o-2024-08-06")
GOLDEN_COST = 0.00725


def client(emu: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=emu.base_url, api_key="sk-test", max_retries=0)


def aclient(emu: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=emu.base_url, api_key="sk-test", max_retries=0)


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def client_spans(t: Telemetry) -> list[Any]:
    return [s for s in t.spans() if s.kind is SpanKind.CLIENT]


def scope(span: Any) -> str:
    return str(span.instrumentation_scope.name)


def warnings_about_peer(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "otel_llm_usage" and "opentelemetry-instrumentation-openai-v2" in r.getMessage()
    ]


def token_histogram_sum(t: Telemetry) -> float:
    """gen_ai.client.token.usage summed over every scope that records it (ours and the peer's)."""
    total = 0.0
    data = t.reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == sc.METRIC_TOKEN_USAGE:
                    total += sum(p.sum for p in m.data.data_points)
    return total


def pipeline() -> Telemetry:
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    return Telemetry(tp, MeterProvider(metric_readers=[reader]), exporter, reader)


@pytest.fixture
def both() -> Iterator[Any]:
    """`both(order, **options)`: this package and the peer on one SDK pipeline, in that order."""
    coexist.reset_warnings()
    peer = OpenAIInstrumentor()

    def start(order: str, **options: Any) -> Telemetry:
        t = pipeline()

        def ours() -> None:
            t.instrumentor = otel_llm_usage.instrument(
                tracer_provider=t.tracer_provider, meter_provider=t.meter_provider, **options
            )

        def theirs() -> None:
            peer.instrument(tracer_provider=t.tracer_provider, meter_provider=t.meter_provider)

        for step in (theirs, ours) if order == "peer_first" else (ours, theirs):
            step()
        return t

    try:
        yield start
    finally:
        if peer.is_instrumented_by_opentelemetry:
            peer.uninstrument()
        otel_llm_usage.uninstrument()
        coexist.reset_warnings()


ORDERS = ["peer_first", "ours_first"]


# --- "spans": both spans, one warning ----------------------------------------------------------


@pytest.mark.parametrize("order", ORDERS)
def test_spans_mode_two_client_spans_one_warning_numbers_once(
    both: Any, openai_emulator: Any, caplog: pytest.LogCaptureFixture, order: str
) -> None:
    caplog.set_level(logging.INFO, logger="otel_llm_usage")
    t = both(order, coexist="spans")
    c = client(openai_emulator)
    for _ in range(3):
        openai_emulator.push(GOLDEN)
        resp = c.chat.completions.create(model="gpt-4o", messages=MSGS)
        assert resp.usage is not None and resp.usage.prompt_tokens == 1000

    warned = warnings_about_peer(caplog)
    assert len(warned) == 1, warned
    assert "two CLIENT spans" in warned[0] and "coexist='enrich'" in warned[0]
    assert "OTEL_LLM_USAGE_COEXIST" in warned[0]
    assert [r.levelno for r in caplog.records if r.getMessage() == warned[0]] == [logging.WARNING]

    spans = client_spans(t)
    ours = [s for s in spans if scope(s) == INSTRUMENTATION_NAME]
    theirs = {s.context.span_id for s in spans if scope(s) in PEER_SCOPES}
    assert len(spans) == 6 and len(ours) == 3 and len(theirs) == 3
    for span in ours:  # theirs wraps `Completions.create`, above our `request` hook
        assert span.parent is not None and span.parent.span_id in theirs
        a = attrs(span)
        assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (1000, 500)
        assert a[sc.USAGE_COST] == pytest.approx(GOLDEN_COST)

    assert t.total(sc.METRIC_TOKENS, llm_usage__token__type="input") == 3000
    assert t.total(sc.METRIC_TOKENS, llm_usage__token__type="output") == 1500
    assert t.total(sc.METRIC_COST) == pytest.approx(3 * GOLDEN_COST)
    total = otel_llm_usage.usage_summary().total
    assert (total.requests, total.input_tokens, total.output_tokens) == (3, 3000, 1500)
    assert total.cost_usd == pytest.approx(3 * GOLDEN_COST)


# --- "enrich": one span, theirs, with our numbers ----------------------------------------------


def assert_enriched(span: Any) -> None:
    a = attrs(span)
    assert scope(span) in PEER_SCOPES and span.kind is SpanKind.CLIENT
    assert a[sc.LLM_CALL_MARK] is True
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (1000, 500)
    assert a[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 200
    assert a[sc.USAGE_COST] == pytest.approx(GOLDEN_COST)
    assert a[sc.COST_SOURCE] == "price_table"
    assert a[sc.USAGE_SOURCE] == "provider"
    assert a[sc.COST_INPUT_USD] + a[sc.COST_CACHE_READ_USD] + a[sc.COST_OUTPUT_USD] == pytest.approx(
        GOLDEN_COST
    )
    assert a[sc.PROVIDER_NAME] == "openai"
    assert a[sc.RESPONSE_MODEL] == "gpt-4o-2024-08-06"


@pytest.mark.parametrize("order", ORDERS)
def test_enrich_mode_one_client_span_with_our_numbers(
    both: Any, openai_emulator: Any, caplog: pytest.LogCaptureFixture, order: str
) -> None:
    caplog.set_level(logging.INFO, logger="otel_llm_usage")
    t = both(order, coexist="enrich")
    c = client(openai_emulator)
    with otel_llm_usage.session("conv-7"), otel_llm_usage.run("triage") as r:
        for _ in range(2):
            openai_emulator.push(GOLDEN)
            c.chat.completions.create(model="gpt-4o", messages=MSGS)

    spans = client_spans(t)
    assert len(spans) == 2
    for span in spans:
        assert_enriched(span)
        assert attrs(span)[sc.SESSION_ID] == "conv-7"
        assert attrs(span)[sc.AGENT_NAME] == "triage"
    assert not [s for s in t.spans() if scope(s) == INSTRUMENTATION_NAME and s.kind is SpanKind.CLIENT]

    noted = warnings_about_peer(caplog)
    assert len(noted) == 1 and "coexist='enrich'" in noted[0]
    assert [r.levelno for r in caplog.records if r.getMessage() == noted[0]] == [logging.INFO]

    assert t.total(sc.METRIC_TOKENS, llm_usage__token__type="input") == 2000
    assert t.total(sc.METRIC_TOKENS, llm_usage__token__type="cache_read") == 400
    assert t.total(sc.METRIC_COST) == pytest.approx(2 * GOLDEN_COST)
    # The GenAI token histogram is the peer's alone: each call's tokens once.
    assert token_histogram_sum(t) == 2 * (1000 + 500)
    assert (r.usage.requests, r.usage.input_tokens, r.usage.output_tokens) == (2, 2000, 1000)
    assert r.usage.cost_usd == pytest.approx(2 * GOLDEN_COST)
    run_span = next(s for s in t.spans() if s.name == "invoke_agent triage")
    assert attrs(run_span)[sc.RUN_REQUESTS] == 2
    total = otel_llm_usage.usage_summary().total
    assert (total.requests, total.input_tokens) == (2, 2000)


@pytest.mark.parametrize("order", ORDERS)
def test_enrich_mode_stream_puts_usage_the_caller_never_sees_on_their_span(
    both: Any, openai_emulator: Any, order: str
) -> None:
    t = both(order, coexist="enrich", stream_usage="always")
    openai_emulator.push(GOLDEN)
    chunks = list(client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS, stream=True))
    assert openai_emulator.requests[-1].json["stream_options"] == {"include_usage": True}
    assert chunks and all(ch.usage is None for ch in chunks)  # the usage chunk we asked for stays hidden
    [span] = client_spans(t)
    assert_enriched(span)
    assert attrs(span)[sc.STREAM_CHUNKS] == len(chunks)
    assert t.total(sc.METRIC_COST) == pytest.approx(GOLDEN_COST)


@pytest.mark.parametrize("order", ORDERS)
def test_enrich_mode_async_and_embeddings(both: Any, openai_emulator: Any, order: str) -> None:
    t = both(order, coexist="enrich")
    openai_emulator.push(GOLDEN, Reply(prompt_tokens=12))

    async def calls() -> None:
        c = aclient(openai_emulator)
        await c.chat.completions.create(model="gpt-4o", messages=MSGS)
        await c.embeddings.create(model="text-embedding-3-small", input="hello")

    asyncio.run(calls())
    chat, embed = sorted(client_spans(t), key=lambda s: s.start_time or 0)
    assert_enriched(chat)
    a = attrs(embed)
    assert scope(embed) in PEER_SCOPES and a[sc.LLM_CALL_MARK] is True
    assert a[sc.OPERATION_NAME] == "embeddings" and a[sc.USAGE_INPUT_TOKENS] == 12
    assert t.total(sc.METRIC_TOKENS, llm_usage__token__type="input") == 1012
    assert otel_llm_usage.usage_summary().total.requests == 2


@pytest.mark.parametrize("order", ORDERS)
def test_enrich_mode_error_passes_through_and_counts_once(
    both: Any, openai_emulator: Any, order: str
) -> None:
    t = both(order, coexist="enrich")
    openai_emulator.push(Reply(status=429))
    with pytest.raises(openai.RateLimitError) as caught:
        client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS)
    assert caught.value.status_code == 429
    [span] = client_spans(t)
    a = attrs(span)
    # error.type is written by both; the peer's is last (and some releases write the class itself).
    assert scope(span) in PEER_SCOPES and "RateLimitError" in str(a[sc.ERROR_TYPE])
    assert a[sc.USAGE_SOURCE] == "missing"
    assert span.status.status_code.name == "ERROR"  # the peer's own status, ended once by it
    total = otel_llm_usage.usage_summary().total
    assert (total.requests, total.errors) == (1, 1)


def test_peer_is_found_by_its_instrumentor_and_its_wrappers(both: Any) -> None:
    assert coexist.active_peers("openai") == []
    both("peer_first", coexist="spans")
    [peer] = coexist.active_peers("openai")
    assert peer.distribution == "opentelemetry-instrumentation-openai-v2"
    assert any(m.startswith("opentelemetry.instrumentation.openai_v2") for m in coexist._wrappers("openai"))
    OpenAIInstrumentor().uninstrument()
    assert coexist.active_peers("openai") == []
    assert coexist.active_peers("anthropic") == []


def test_peer_span_is_no_run_of_its_own(both: Any, openai_emulator: Any) -> None:
    """A peer's CLIENT span at the root is a call, not a local root run collecting our call."""
    t = both("peer_first", coexist="spans")
    openai_emulator.push(GOLDEN)
    client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS)
    for span in t.spans():
        assert sc.RUN_REQUESTS not in attrs(span), span.name
    assert t.points(sc.METRIC_RUN_REQUESTS) == []
    assert otel_llm_usage.usage_summary().total.requests == 1


# --- the option ---------------------------------------------------------------------------------


def test_coexist_option_from_code_and_environment(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert Options.resolve({}).coexist == "spans"
    monkeypatch.setenv("OTEL_LLM_USAGE_COEXIST", " Enrich ")
    assert Options.resolve({}).coexist == "enrich"
    assert Options.resolve({"coexist": "spans"}).coexist == "spans"  # code wins
    with pytest.raises(ValueError, match="coexist"):
        Options.resolve({"coexist": "both"})
    monkeypatch.setenv("OTEL_LLM_USAGE_COEXIST", "both")
    with caplog.at_level(logging.WARNING, logger="otel_llm_usage"):
        assert Options.resolve({}).coexist == "spans"
    [warned] = [r.getMessage() for r in caplog.records]
    assert "OTEL_LLM_USAGE_COEXIST" in warned and "both" in warned and "enrich" in warned


# --- the real entry point -----------------------------------------------------------------------

APP = textwrap.dedent(
    """
    import openai
    from emulators import OpenAIEmulator, Reply

    with OpenAIEmulator() as emu:
        emu.push(Reply(prompt_tokens=1000, cached_tokens=200, completion_tokens=500))
        client = openai.OpenAI(base_url=emu.base_url, api_key="k", max_retries=0)
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    """
)


def _console_spans(out: str) -> list[dict[str, Any]]:
    spans, decoder, text = [], json.JSONDecoder(), out.strip()
    while text:
        obj, end = decoder.raw_decode(text)
        spans.append(obj)
        text = text[end:].strip()
    return spans


@pytest.mark.parametrize("mode", ["spans", "enrich"])
def test_opentelemetry_instrument_loads_both(tmp_path: Path, mode: str) -> None:
    """`opentelemetry-instrument` loads the official openai instrumentor and ours from their entry points."""
    app = tmp_path / "app.py"
    app.write_text(APP)
    env = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "",
        "OTEL_LLM_USAGE_COEXIST": mode,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
        ),
    }
    launcher = Path(sys.executable).with_name("opentelemetry-instrument")
    done = subprocess.run(
        [str(launcher), sys.executable, str(app)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    spans = [s for s in _console_spans(done.stdout) if s["kind"] == "SpanKind.CLIENT"]
    ours = [s for s in spans if s["attributes"].get("llm_usage.call")]
    assert len(ours) == 1
    assert ours[0]["attributes"]["gen_ai.usage.cost"] == 0.00725
    assert ours[0]["attributes"]["gen_ai.usage.cache_read.input_tokens"] == 200
    warned = done.stderr.count("opentelemetry-instrumentation-openai-v2) also instruments openai")
    if mode == "spans":
        assert len(spans) == 2 and warned == 1
    else:  # one span: the official instrumentation's, with our numbers on it
        assert len(spans) == 1 and warned == 0


# --- an instrumentation this package does not know ---------------------------------------------


@pytest.mark.parametrize("mode", ["spans", "enrich"])
def test_unknown_instrumentations_client_span_counts_as_a_peer(
    instrument_with: Any, openai_emulator: Any, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    """A hand-made GenAI CLIENT span around the call, from a scope of its own (not a known peer)."""
    coexist.reset_warnings()
    caplog.set_level(logging.INFO, logger="otel_llm_usage")
    t = instrument_with(coexist=mode)
    assert coexist.watching  # calls look at the current span: a known peer's module is imported here
    tracer = t.tracer_provider.get_tracer("acme.llm")
    c = client(openai_emulator)
    for _ in range(2):
        openai_emulator.push(GOLDEN)
        with tracer.start_as_current_span(
            "chat gpt-4o", kind=SpanKind.CLIENT, attributes={sc.OPERATION_NAME: "chat"}
        ):
            c.chat.completions.create(model="gpt-4o", messages=MSGS)
    theirs = [s for s in client_spans(t) if scope(s) == "acme.llm"]
    ours = [s for s in client_spans(t) if scope(s) == INSTRUMENTATION_NAME]
    named = [r for r in caplog.records if "another instrumentation (acme.llm)" in r.getMessage()]
    assert len(named) == 1
    if mode == "spans":
        assert len(theirs) == 2 and len(ours) == 2
        assert all(sc.USAGE_COST not in attrs(s) for s in theirs)
    else:
        assert len(theirs) == 2 and ours == []
        assert all(attrs(s)[sc.USAGE_COST] == pytest.approx(GOLDEN_COST) for s in theirs)
    assert t.total(sc.METRIC_COST) == pytest.approx(2 * GOLDEN_COST)
    assert otel_llm_usage.usage_summary().total.requests == 2
    coexist.reset_warnings()


# --- a wrapper that holds the method as it was before this package patched it -------------------


def test_a_subclass_wrapper_holding_the_unpatched_request_is_named(
    instrument_with: Any, openai_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """As OpenInference wraps `OpenAI.request`: done first, it captured the unpatched
    `SyncAPIClient.request`, so calls of `OpenAI` clients never reach our hook. Said, not hidden."""

    def passthrough(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return wrapped(*args, **kwargs)

    coexist.reset_warnings()
    caplog.set_level(logging.WARNING, logger="otel_llm_usage")
    wrapt.wrap_function_wrapper(openai, "OpenAI.request", passthrough)
    try:
        t = instrument_with()
        [warned] = [r.getMessage() for r in caplog.records if "OpenAI.request was wrapped" in r.getMessage()]
        assert "by tests.test_coexist" in warned and "SyncAPIClient.request" in warned
        assert "AsyncOpenAI" not in warned  # its request is not wrapped
        openai_emulator.push(GOLDEN)
        client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS)
        assert t.llm_spans() == []  # what the warning says
        asyncio.run(aclient(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS))
        assert len(t.llm_spans()) == 1  # AsyncOpenAI still reaches the hook
    finally:
        otel_llm_usage.uninstrument()
        del openai.OpenAI.request
        coexist.reset_warnings()


def test_no_bypass_is_reported_for_the_sdks_own_classes(
    instrument_with: Any, caplog: pytest.LogCaptureFixture
) -> None:
    coexist.reset_warnings()
    caplog.set_level(logging.WARNING, logger="otel_llm_usage")
    instrument_with()
    assert not [r for r in caplog.records if "was wrapped" in r.getMessage()]
