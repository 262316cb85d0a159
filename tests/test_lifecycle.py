"""Lifecycle hardening of runs, sessions and the instrumentation itself: user span processors
and samplers that raise, blocks exited in another context, repeated instrument()/uninstrument()."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from opentelemetry import context as otel_context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

import otel_llm_usage
from emulators import Reply
from otel_llm_usage import semconv as sc
from otel_llm_usage._guard import reported_sites
from otel_llm_usage.rollup import RollupProcessor
from otel_llm_usage.runs import current_run, run, session, usage_summary
from tests.conftest import Telemetry

MSGS: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]


class Raising(SpanProcessor):
    """A user's span processor that fails in `on_start` and/or `on_end`."""

    def __init__(self, on_start: bool = False, on_end: bool = False) -> None:
        self.fail_start, self.fail_end = on_start, on_end
        self.ended = 0

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self.fail_start:
            raise RuntimeError("user processor broke in on_start")

    def on_end(self, span: ReadableSpan) -> None:
        self.ended += 1
        if self.fail_end:
            raise RuntimeError("user processor broke in on_end")


def telemetry_with(*processors: SpanProcessor, sampler: Sampler | None = None) -> Telemetry:
    exporter = InMemorySpanExporter()
    tp = TracerProvider(sampler=sampler) if sampler is not None else TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    for p in processors:
        tp.add_span_processor(p)
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    t = Telemetry(tp, mp, exporter, reader)
    t.instrumentor = otel_llm_usage.instrument(tracer_provider=tp, meter_provider=mp)
    return t


@pytest.fixture
def uninstrument_after() -> Iterator[None]:
    yield
    otel_llm_usage.uninstrument()


def chat(emu: Any, prompt: int = 100, completion: int = 10) -> str:
    emu.push(Reply(prompt_tokens=prompt, completion_tokens=completion))
    c = openai.OpenAI(base_url=emu.base_url, api_key="sk-test", max_retries=0)
    reply = c.chat.completions.create(model="gpt-4o", messages=MSGS)
    return reply.id


def test_a_processor_raising_in_on_end_does_not_make_us_end_the_call_span_twice(
    openai_emulator: Any, uninstrument_after: None, caplog: pytest.LogCaptureFixture
) -> None:
    broken = Raising(on_end=True)
    t = telemetry_with(broken)
    with caplog.at_level(logging.WARNING):
        assert chat(openai_emulator)
    assert "Calling end() on an ended span" not in caplog.text
    assert broken.ended == 1
    assert len(t.llm_spans()) == 1
    assert usage_summary().total.requests == 1  # the rollup still counted it
    assert "recorder.span_end" in reported_sites()


class RaisingSampler(Sampler):
    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        raise RuntimeError("user sampler broke")

    def get_description(self) -> str:
        return "raising"


class SampleOnlyCalls(Sampler):
    """Raises for run spans only, so the calls inside are still recorded."""

    def should_sample(self, parent_context: Any, trace_id: int, name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith(sc.OP_INVOKE_AGENT):
            raise RuntimeError("user sampler broke")
        return SamplingResult(Decision.RECORD_AND_SAMPLE)

    def get_description(self) -> str:
        return "raising for runs"


@pytest.mark.parametrize("where", ["on_start", "on_end", "sampler"])
def test_run_never_raises_a_users_processor_or_sampler_error(
    where: str, openai_emulator: Any, uninstrument_after: None
) -> None:
    if where == "sampler":
        t = telemetry_with(sampler=SampleOnlyCalls())
    else:
        t = telemetry_with(Raising(on_start=where == "on_start", on_end=where == "on_end"))
    with run("guarded") as r:
        assert current_run() is r
        chat(openai_emulator, 100, 10)
    assert current_run() is None
    assert r.closed and (r.usage.requests, r.usage.input_tokens) == (1, 100)
    assert usage_summary().total.requests == 1
    if where == "on_end":  # the span started: it ended once, with its totals
        (span,) = [s for s in t.spans() if s.name == f"{sc.OP_INVOKE_AGENT} guarded"]
        assert (span.attributes or {})[sc.RUN_REQUESTS] == 1


def test_run_and_session_exited_in_another_context_end_quietly(
    telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[Any] = []

    def block() -> Iterator[None]:
        with session("s-elsewhere"), run("elsewhere") as r:
            seen.append(r)
            yield

    gen = block()
    contextvars.copy_context().run(next, gen)  # entered in a copied context
    before = otel_context.get_current()
    gen.close()  # exited here, in another: the contextvar tokens cannot be reset
    assert otel_context.get_current() == before
    (r,) = seen
    assert r.closed
    (span,) = [s for s in telemetry.spans() if s.name == f"{sc.OP_INVOKE_AGENT} elsewhere"]
    assert span.end_time is not None and (span.attributes or {})[sc.RUN_REQUESTS] == 0
    assert current_run() is None


def test_repeated_instrumentation_keeps_one_active_rollup_processor(openai_emulator: Any) -> None:
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    for _ in range(6):
        otel_llm_usage.instrument(tracer_provider=tp, meter_provider=mp)
        otel_llm_usage.uninstrument()
    ours = [p for p in tp._active_span_processor._span_processors if isinstance(p, RollupProcessor)]
    assert len(ours) == 1 and ours[0].rollup is None  # one, inert
    otel_llm_usage.instrument(tracer_provider=tp, meter_provider=mp)
    try:
        assert ours[0].rollup is not None
        with run("after-cycles") as r:
            chat(openai_emulator)
        assert r.usage.requests == 1 and usage_summary().total.requests == 1
    finally:
        otel_llm_usage.uninstrument()
    assert ours[0].rollup is None


def test_counters_keep_moving_across_uninstrument_and_instrument_on_one_meter_provider(
    openai_emulator: Any,
) -> None:
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    t = Telemetry(TracerProvider(), mp, InMemorySpanExporter(), reader)
    try:
        for _ in range(3):
            otel_llm_usage.instrument(tracer_provider=t.tracer_provider, meter_provider=mp)
            chat(openai_emulator, 100, 10)
            otel_llm_usage.uninstrument()
            otel_llm_usage.instrument(tracer_provider=t.tracer_provider, meter_provider=mp)
            chat(openai_emulator, 1000, 20)
            otel_llm_usage.uninstrument()
        assert t.total(sc.METRIC_TOKENS, llm_usage__token__type="input") == 3 * 1100
        assert t.total(sc.METRIC_TOKENS, llm_usage__token__type="output") == 3 * 30
        assert t.total(sc.METRIC_COST) > 0
    finally:
        otel_llm_usage.uninstrument()


def test_uninstrument_removes_only_the_wrappers_it_installed(caplog: pytest.LogCaptureFixture) -> None:
    import wrapt
    from openai import _base_client

    owner = _base_client.SyncAPIClient
    before = dict(owner.__dict__)
    otel_llm_usage.instrument(providers=["openai"])
    try:
        ours = [name for name, value in owner.__dict__.items() if before.get(name) is not value]
        assert ours, "instrument() patched nothing on SyncAPIClient"
        name = ours[0]

        def theirs(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            return wrapped(*args, **kwargs)

        wrapt.wrap_function_wrapper(owner, name, theirs)  # another instrumentation, after ours
        outer = owner.__dict__[name]
    finally:
        with caplog.at_level(logging.WARNING):
            otel_llm_usage.uninstrument()
    try:
        assert owner.__dict__[name] is outer, "uninstrument() removed another instrumentation's wrapper"
        assert f"{name} was wrapped again" in caplog.text
        for other in ours[1:]:
            assert owner.__dict__[other] is before[other]
    finally:
        setattr(owner, name, before[name])
