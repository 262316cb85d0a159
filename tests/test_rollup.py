"""RollupProcessor: run totals on run spans, session ledgers, late calls, the no-SDK path, bounds."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

import otel_llm_usage
from emulators import Reply
from otel_llm_usage import active
from otel_llm_usage import semconv as sc
from otel_llm_usage.runs import close_session, run, session, session_usage, usage_summary
from otel_llm_usage.usage import Usage
from tests.conftest import Telemetry

MSGS: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
RUN_KEYS = (
    sc.RUN_REQUESTS,
    sc.RUN_INPUT_TOKENS,
    sc.RUN_OUTPUT_TOKENS,
    sc.RUN_CACHE_READ_TOKENS,
    sc.RUN_CACHE_WRITE_TOKENS,
    sc.RUN_REASONING_TOKENS,
    sc.RUN_COST_USD,
    sc.RUN_UNPRICED_REQUESTS,
    sc.RUN_ERRORS,
)
# gpt-4o list prices, USD per token
IN, CACHED, OUT = 2.5e-6, 1.25e-6, 10e-6


def client(emu: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=emu.base_url, api_key="sk-test", max_retries=0)


def chat(
    c: openai.OpenAI, emu: Any, prompt: int, completion: int, cached: int = 0, model: str = "gpt-4o"
) -> None:
    emu.push(Reply(prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached))
    c.chat.completions.create(model=model, messages=MSGS)


def cost(prompt: int, completion: int, cached: int = 0) -> float:
    return (prompt - cached) * IN + cached * CACHED + completion * OUT


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def span_named(t: Telemetry, name: str) -> ReadableSpan:
    found = [s for s in t.spans() if s.name == name]
    assert len(found) == 1, [s.name for s in t.spans()]
    return found[0]


def run_totals(span: ReadableSpan) -> dict[str, Any]:
    a = attrs(span)
    return {k: a.get(k) for k in RUN_KEYS}


def usage_totals(u: Usage) -> dict[str, Any]:
    return {
        sc.RUN_REQUESTS: u.requests,
        sc.RUN_INPUT_TOKENS: u.input_tokens,
        sc.RUN_OUTPUT_TOKENS: u.output_tokens,
        sc.RUN_CACHE_READ_TOKENS: u.cache_read_tokens,
        sc.RUN_CACHE_WRITE_TOKENS: u.cache_write_tokens,
        sc.RUN_REASONING_TOKENS: u.reasoning_tokens,
        sc.RUN_COST_USD: u.cost_usd,
        sc.RUN_UNPRICED_REQUESTS: u.unpriced_requests,
        sc.RUN_ERRORS: u.errors,
    }


def hist(t: Telemetry, name: str) -> list[tuple[dict[str, Any], float, int]]:
    return [(dict(p.attributes or {}), p.sum, p.count) for p in t.points(name)]  # type: ignore[union-attr]


# --- run spans --------------------------------------------------------------------------------


def test_run_span_carries_exact_totals_and_session_totals(telemetry: Telemetry, openai_emulator: Any) -> None:
    c = client(openai_emulator)
    with session("conv-1"):
        chat(c, openai_emulator, 300, 30)  # in the session, before the run
        with run("planner") as r:
            chat(c, openai_emulator, 1000, 500, cached=200)
            chat(c, openai_emulator, 2000, 100)

    a = attrs(span_named(telemetry, "invoke_agent planner"))
    assert a[sc.RUN_REQUESTS] == 2
    assert a[sc.RUN_INPUT_TOKENS] == 3000
    assert a[sc.RUN_OUTPUT_TOKENS] == 600
    assert a[sc.RUN_CACHE_READ_TOKENS] == 200
    assert a[sc.RUN_CACHE_WRITE_TOKENS] == 0
    assert a[sc.RUN_REASONING_TOKENS] == 0
    assert a[sc.RUN_COST_USD] == pytest.approx(cost(1000, 500, 200) + cost(2000, 100), abs=1e-12)
    assert a[sc.RUN_UNPRICED_REQUESTS] == 0 and a[sc.RUN_ERRORS] == 0
    assert a[sc.SESSION_REQUESTS] == 3
    assert a[sc.SESSION_RUNS] == 1
    assert a[sc.SESSION_INPUT_TOKENS] == 3300
    assert a[sc.SESSION_OUTPUT_TOKENS] == 630
    assert a[sc.SESSION_COST_USD] == pytest.approx(
        cost(300, 30) + cost(1000, 500, 200) + cost(2000, 100), abs=1e-12
    )
    assert not any(k.startswith("gen_ai.usage.") for k in a), "rollups must not reuse gen_ai.usage.*"
    assert usage_totals(r.usage) == run_totals(span_named(telemetry, "invoke_agent planner"))


def test_nested_runs_count_each_call_once_in_every_enclosing_run(
    telemetry: Telemetry, openai_emulator: Any
) -> None:
    c = client(openai_emulator)
    with run("outer") as outer:
        chat(c, openai_emulator, 100, 10)
        with run("middle") as middle:
            chat(c, openai_emulator, 200, 20)
            with run("inner") as inner:
                chat(c, openai_emulator, 400, 40)
        chat(c, openai_emulator, 800, 80)

    assert (outer.usage.requests, outer.usage.input_tokens) == (4, 1500)
    assert (middle.usage.requests, middle.usage.input_tokens) == (2, 600)
    assert (inner.usage.requests, inner.usage.input_tokens) == (1, 400)
    for name, handle in (("outer", outer), ("middle", middle), ("inner", inner)):
        assert run_totals(span_named(telemetry, f"invoke_agent {name}")) == usage_totals(handle.usage)
    requests = {a[sc.AGENT_NAME]: s for a, s, _ in hist(telemetry, sc.METRIC_RUN_REQUESTS)}
    assert requests == {"outer": 4, "middle": 2, "inner": 1}
    summary = usage_summary()
    assert summary.total.requests == 4
    assert {r.name: r.requests for r in summary.by_agent} == {"outer": 2, "middle": 1, "inner": 1}


def test_run_histograms_units_buckets_and_one_sample_per_run(
    telemetry: Telemetry, openai_emulator: Any
) -> None:
    c = client(openai_emulator)
    for _ in range(3):
        with run("worker"):
            chat(c, openai_emulator, 1000, 100)
    expected = {
        sc.METRIC_RUN_COST: ("USD", sc.COST_BUCKETS),
        sc.METRIC_RUN_TOKENS: ("{token}", sc.TOKEN_BUCKETS),
        sc.METRIC_RUN_REQUESTS: ("{request}", sc.COUNT_BUCKETS),
        sc.METRIC_RUN_DURATION: ("s", sc.RUN_DURATION_BUCKETS),
    }
    for name, (unit, buckets) in expected.items():
        metric = telemetry.metric(name)
        assert metric.unit == unit
        (point,) = metric.data.data_points
        assert point.count == 3
        assert tuple(point.explicit_bounds) == tuple(buckets)
        assert dict(point.attributes) == {sc.AGENT_NAME: "worker"}
    assert telemetry.total(sc.METRIC_RUN_TOKENS) == 3 * 1100
    assert telemetry.total(sc.METRIC_RUN_COST) == pytest.approx(3 * cost(1000, 100), abs=1e-12)


def test_errors_and_unpriced_calls_are_counted(telemetry: Telemetry, openai_emulator: Any) -> None:
    c = client(openai_emulator)
    with run("r") as r:
        openai_emulator.push(Reply(status=500))
        with pytest.raises(openai.InternalServerError):
            c.chat.completions.create(model="gpt-4o", messages=MSGS)
        chat(c, openai_emulator, 50, 5, model="house-model-unpriced")
        chat(c, openai_emulator, 100, 10)
    a = attrs(span_named(telemetry, "invoke_agent r"))
    assert a[sc.RUN_REQUESTS] == 3
    assert a[sc.RUN_ERRORS] == 1
    assert a[sc.RUN_UNPRICED_REQUESTS] == 1
    assert a[sc.RUN_INPUT_TOKENS] == 150
    assert a[sc.RUN_COST_USD] == pytest.approx(cost(100, 10), abs=1e-12)
    assert r.usage.by_model["house-model-unpriced"].unpriced_requests == 1


# --- runs from other instrumentations and local roots ------------------------------------------


def test_foreign_invoke_agent_span_gets_totals_before_export(
    telemetry: Telemetry, openai_emulator: Any
) -> None:
    c = client(openai_emulator)
    other = telemetry.tracer_provider.get_tracer("some.agent.framework")
    run_attrs = {sc.OPERATION_NAME: sc.OP_INVOKE_AGENT, sc.AGENT_NAME: "researcher"}
    with other.start_as_current_span("invoke_agent researcher", attributes=run_attrs):
        chat(c, openai_emulator, 1000, 500, cached=200)
        with run("helper"):
            chat(c, openai_emulator, 100, 10)

    a = attrs(span_named(telemetry, "invoke_agent researcher"))
    assert a[sc.RUN_REQUESTS] == 2
    assert a[sc.RUN_INPUT_TOKENS] == 1100
    assert a[sc.RUN_CACHE_READ_TOKENS] == 200
    assert a[sc.RUN_COST_USD] == pytest.approx(cost(1000, 500, 200) + cost(100, 10), abs=1e-12)
    first = next(s for s in telemetry.llm_spans() if attrs(s)[sc.USAGE_INPUT_TOKENS] == 1000)
    assert attrs(first)[sc.AGENT_NAME] == "researcher"
    requests = {p[0][sc.AGENT_NAME]: p[1] for p in hist(telemetry, sc.METRIC_RUN_REQUESTS)}
    assert requests == {"researcher": 2, "helper": 1}


def test_calls_outside_any_run_roll_up_to_their_local_root(
    telemetry: Telemetry, openai_emulator: Any
) -> None:
    c = client(openai_emulator)
    web = telemetry.tracer_provider.get_tracer("web.framework")
    with web.start_as_current_span("GET /chat"), web.start_as_current_span("handler"):
        chat(c, openai_emulator, 100, 10)
        chat(c, openai_emulator, 200, 20)
    chat(c, openai_emulator, 400, 40)  # its own root: nothing to roll up into

    root = attrs(span_named(telemetry, "GET /chat"))
    assert root[sc.RUN_REQUESTS] == 2 and root[sc.RUN_INPUT_TOKENS] == 300
    assert sc.RUN_REQUESTS not in attrs(span_named(telemetry, "handler"))
    bare = next(s for s in telemetry.llm_spans() if attrs(s)[sc.USAGE_INPUT_TOKENS] == 400)
    assert not any(k.startswith(sc.RUN_PREFIX) for k in attrs(bare))
    assert hist(telemetry, sc.METRIC_RUN_REQUESTS) == [], "a local root is not an agent run"
    assert usage_summary().total.requests == 3


def test_spans_of_other_instrumentations_are_never_summed(telemetry: Telemetry, openai_emulator: Any) -> None:
    c = client(openai_emulator)
    other = telemetry.tracer_provider.get_tracer("another.llm.instrumentation")
    with run("r") as r:
        with other.start_as_current_span("chat gpt-4o", attributes={sc.USAGE_INPUT_TOKENS: 999_999}):
            pass
        chat(c, openai_emulator, 100, 10)
    assert r.usage.requests == 1 and r.usage.input_tokens == 100
    assert attrs(span_named(telemetry, "invoke_agent r"))[sc.RUN_INPUT_TOKENS] == 100


# --- late calls, dropped exports, no SDK ---------------------------------------------------------


def test_call_ending_after_its_run_counts_in_session_only(telemetry: Telemetry, openai_emulator: Any) -> None:
    c = client(openai_emulator)
    with session("s-late"):
        with run("streamer") as r:
            openai_emulator.push(Reply(prompt_tokens=70, completion_tokens=7))
            stream = c.chat.completions.create(
                model="gpt-4o", messages=MSGS, stream=True, stream_options={"include_usage": True}
            )
        chunks = list(stream)
    assert chunks
    assert r.usage.requests == 0
    assert attrs(span_named(telemetry, "invoke_agent streamer"))[sc.RUN_REQUESTS] == 0
    s = session_usage("s-late")
    assert s is not None and (s.requests, s.input_tokens, s.output_tokens) == (1, 70, 7)
    assert telemetry.total(sc.METRIC_LATE_SPANS, gen_ai__agent__name="streamer") == 1
    assert telemetry.metric(sc.METRIC_LATE_SPANS).unit == "{call}"


class _FailingExporter(SpanExporter):
    def __init__(self) -> None:
        self.attempts = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.attempts += 1
        raise ConnectionError("collector unreachable")


@pytest.fixture
def failing_export() -> Iterator[tuple[_FailingExporter, InMemoryMetricReader]]:
    exporter = _FailingExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    otel_llm_usage.instrument(tracer_provider=tp, meter_provider=MeterProvider(metric_readers=[reader]))
    yield exporter, reader
    otel_llm_usage.uninstrument()


def test_rollups_are_exact_when_every_export_fails(failing_export: Any, openai_emulator: Any) -> None:
    exporter, _ = failing_export
    c = client(openai_emulator)
    with session("s-drop"), run("r") as r:
        for i in range(10):
            chat(c, openai_emulator, 100 + i, 10 + i, cached=i)
    assert exporter.attempts >= 11, "the exporter was called and lost everything"
    assert r.usage.requests == 10
    assert r.usage.input_tokens == sum(100 + i for i in range(10))
    assert r.usage.output_tokens == sum(10 + i for i in range(10))
    assert r.usage.cache_read_tokens == sum(range(10))
    assert r.usage.cost_usd == pytest.approx(sum(cost(100 + i, 10 + i, i) for i in range(10)), abs=1e-12)
    s = session_usage("s-drop")
    assert s is not None and s.requests == 10 and s.cost_usd == pytest.approx(r.usage.cost_usd, abs=1e-12)


@pytest.fixture
def no_sdk_tracing() -> Iterator[Telemetry]:
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    tp: Any = trace.NoOpTracerProvider()
    t = Telemetry(tp, mp, InMemorySpanExporter(), reader)
    t.instrumentor = otel_llm_usage.instrument(tracer_provider=tp, meter_provider=mp)
    yield t
    otel_llm_usage.uninstrument()


def test_without_an_sdk_tracer_provider_rollups_still_work(
    no_sdk_tracing: Telemetry, openai_emulator: Any
) -> None:
    proc = active.current_rollup()
    assert proc is not None and not proc.attached_to_provider
    c = client(openai_emulator)
    with session("s-nosdk"), run("outer") as outer:
        chat(c, openai_emulator, 1000, 500, cached=200)
        with run("inner") as inner:
            chat(c, openai_emulator, 100, 10)
    assert (outer.usage.requests, outer.usage.input_tokens) == (2, 1100)
    assert (inner.usage.requests, inner.usage.input_tokens) == (1, 100)
    assert outer.usage.cost_usd == pytest.approx(cost(1000, 500, 200) + cost(100, 10), abs=1e-12)
    s = session_usage("s-nosdk")
    assert s is not None and s.requests == 2
    assert usage_summary().total.requests == 2
    requests = {p[0][sc.AGENT_NAME]: p[1] for p in hist(no_sdk_tracing, sc.METRIC_RUN_REQUESTS)}
    assert requests == {"outer": 2, "inner": 1}


def test_calls_the_sampler_drops_are_still_counted_once(openai_emulator: Any) -> None:
    exporter = InMemorySpanExporter()
    tp = TracerProvider(sampler=ALWAYS_OFF)
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    otel_llm_usage.instrument(tracer_provider=tp, meter_provider=MeterProvider())
    try:
        c = client(openai_emulator)
        with session("s-sampled"), run("r") as r:
            chat(c, openai_emulator, 100, 10)
            chat(c, openai_emulator, 200, 20)
        assert exporter.get_finished_spans() == ()
        assert (r.usage.requests, r.usage.input_tokens) == (2, 300)
        s = session_usage("s-sampled")
        assert s is not None and (s.requests, s.input_tokens) == (2, 300)
        assert usage_summary().total.requests == 2
    finally:
        otel_llm_usage.uninstrument()


# --- sessions: bounded, closed once ------------------------------------------------------------


def test_leaving_session_does_not_close_it_and_close_records_once(
    telemetry: Telemetry, openai_emulator: Any
) -> None:
    c = client(openai_emulator)
    with session("s-keep"), run("a"):
        chat(c, openai_emulator, 100, 10)
    with session("s-keep"), run("b"):
        chat(c, openai_emulator, 200, 20)
    s = session_usage("s-keep")
    assert s is not None and (s.requests, s.input_tokens) == (2, 300)
    assert hist(telemetry, sc.METRIC_SESSION_REQUESTS) == []

    assert close_session("s-keep") is True
    assert close_session("s-keep") is False
    assert session_usage("s-keep") is None
    assert [p[1:] for p in hist(telemetry, sc.METRIC_SESSION_REQUESTS)] == [(2, 1)]
    assert [p[1:] for p in hist(telemetry, sc.METRIC_SESSION_RUNS)] == [(2, 1)]
    assert [p[1:] for p in hist(telemetry, sc.METRIC_SESSION_TOKENS)] == [(330, 1)]
    assert telemetry.metric(sc.METRIC_SESSION_RUNS).unit == "{run}"
    (point,) = telemetry.points(sc.METRIC_SESSION_COST)
    assert point.sum == pytest.approx(cost(100, 10) + cost(200, 20), abs=1e-12)  # type: ignore[union-attr]
    assert tuple(point.explicit_bounds) == sc.COST_BUCKETS  # type: ignore[union-attr]


def test_sessions_beyond_max_are_evicted_lru_and_recorded_once(
    instrument_with: Any, openai_emulator: Any
) -> None:
    t = instrument_with(max_sessions=2)
    c = client(openai_emulator)
    for sid in ("s1", "s2"):
        with session(sid):
            chat(c, openai_emulator, 100, 10)
    with session("s1"):  # s1 is now the most recently used
        chat(c, openai_emulator, 100, 10)
    with session("s3"):
        chat(c, openai_emulator, 100, 10)
    assert session_usage("s2") is None
    assert session_usage("s1") is not None and session_usage("s3") is not None
    assert [p[1:] for p in hist(t, sc.METRIC_SESSION_REQUESTS)] == [(1, 1)]
    assert {r.name for r in usage_summary().by_session} == {"s1", "s3"}
    assert usage_summary().total.requests == 4


def test_idle_sessions_expire_lazily(instrument_with: Any, openai_emulator: Any) -> None:
    t = instrument_with(session_idle_seconds=60)
    proc = active.current_rollup()
    assert proc is not None
    now = [1000.0]
    proc.sessions.clock = lambda: now[0]
    c = client(openai_emulator)
    with session("idle"):
        chat(c, openai_emulator, 100, 10)
    now[0] += 59
    assert session_usage("idle") is not None
    now[0] += 2
    assert session_usage("idle") is None
    assert [p[1:] for p in hist(t, sc.METRIC_SESSION_REQUESTS)] == [(1, 1)]
    with session("idle"):  # the same id later starts a new ledger
        chat(c, openai_emulator, 100, 10)
    s = session_usage("idle")
    assert s is not None and s.requests == 1


def test_session_metric_labels_only_when_allowed(instrument_with: Any, openai_emulator: Any) -> None:
    t = instrument_with(metric_attributes=["tenant.id", "user.id"])
    c = client(openai_emulator)
    labels_in = {"tenant.id": "acme", "plan": "pro"}
    with session("s-labels", user_id="u-1", attributes=labels_in), run("r", attributes={"team": "search"}):
        chat(c, openai_emulator, 100, 10)
    close_session("s-labels")
    ((labels, _, _),) = hist(t, sc.METRIC_SESSION_REQUESTS)
    assert labels == {"tenant.id": "acme", "user.id": "u-1"}
    ((labels, _, _),) = hist(t, sc.METRIC_RUN_REQUESTS)
    assert labels == {sc.AGENT_NAME: "r", "tenant.id": "acme", "user.id": "u-1"}


def test_default_metric_labels_carry_no_ids(telemetry: Telemetry, openai_emulator: Any) -> None:
    c = client(openai_emulator)
    with session("s-private", user_id="u-2", attributes={"tenant.id": "acme"}), run("r"):
        chat(c, openai_emulator, 100, 10)
    close_session("s-private")
    assert [p[0] for p in hist(telemetry, sc.METRIC_SESSION_REQUESTS)] == [{}]
    assert [p[0] for p in hist(telemetry, sc.METRIC_RUN_REQUESTS)] == [{sc.AGENT_NAME: "r"}]


def test_uninstrument_records_held_sessions_and_stops_counting(openai_emulator: Any) -> None:
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    tp = TracerProvider()
    exporter = InMemorySpanExporter()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    t = Telemetry(tp, mp, exporter, reader)
    otel_llm_usage.instrument(tracer_provider=tp, meter_provider=mp)
    c = client(openai_emulator)
    with session("s-end"):
        chat(c, openai_emulator, 100, 10)
    otel_llm_usage.uninstrument()
    assert active.current_rollup() is None
    assert [p[1:] for p in hist(t, sc.METRIC_SESSION_REQUESTS)] == [(1, 1)]
    with session("s-end"), run("after"):
        chat(c, openai_emulator, 100, 10)
    assert session_usage("s-end") is None
    assert usage_summary().total.requests == 0
    assert [p[1:] for p in hist(t, sc.METRIC_SESSION_REQUESTS)] == [(1, 1)]
