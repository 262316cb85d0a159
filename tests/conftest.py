"""Shared fixtures: an instrumented SDK pipeline with in-memory exporters, and the emulators."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_llm_usage

# litellm otherwise fetches its model cost map from the network when imported.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@dataclass
class Telemetry:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    instrumentor: Any = None
    _points: dict[str, list[Any]] = field(default_factory=dict)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def llm_spans(self) -> list[ReadableSpan]:
        return [s for s in self.spans() if (s.attributes or {}).get("llm_usage.call")]

    def one_llm_span(self) -> ReadableSpan:
        spans = self.llm_spans()
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]

    def metric(self, name: str) -> Any:
        """The metric's definition (unit, data) from a fresh collection, or None."""
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == name:
                        return m
        return None

    def points(self, name: str) -> list[NumberDataPoint | HistogramDataPoint]:
        m = self.metric(name)
        return list(m.data.data_points) if m is not None else []

    def total(self, name: str, **attrs: Any) -> float:
        """Sum of a counter (or of a histogram's sums) over points whose attributes match."""
        out = 0.0
        for p in self.points(name):
            a = dict(p.attributes or {})
            if all(a.get(k.replace("__", ".")) == v for k, v in attrs.items()):
                out += p.sum if isinstance(p, HistogramDataPoint) else p.value
        return out


def make_telemetry(**options: Any) -> Telemetry:
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    t = Telemetry(tp, mp, exporter, reader)
    t.instrumentor = otel_llm_usage.instrument(tracer_provider=tp, meter_provider=mp, **options)
    return t


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    t = make_telemetry()
    yield t
    otel_llm_usage.uninstrument()


@pytest.fixture
def instrument_with() -> Iterator[Any]:
    """Instrument with options chosen by the test: `t = instrument_with(stream_usage="always")`."""

    def start(**options: Any) -> Telemetry:
        return make_telemetry(**options)

    yield start
    otel_llm_usage.uninstrument()


@pytest.fixture(scope="session")
def _openai_emulator() -> Iterator[Any]:
    from emulators import OpenAIEmulator

    with OpenAIEmulator() as emu:
        yield emu


@pytest.fixture
def openai_emulator(_openai_emulator: Any) -> Any:
    _openai_emulator.reset()
    return _openai_emulator


def semconv_text(role: str, *texts: str, finish_reason: str | None = None) -> dict[str, Any]:
    """A captured message in the semantic conventions' shape, with text parts only."""
    message: dict[str, Any] = {"role": role, "parts": [{"type": "text", "content": t} for t in texts]}
    if finish_reason is not None:
        message["finish_reason"] = finish_reason
    return message


class RefuseEveryCall:
    """A call listener that refuses every call, as a spent `raise` budget does."""

    def call_starting(self, req: Any, attributes: dict[str, Any], check_budgets: bool) -> object:
        from otel_llm_usage import BudgetExceeded

        raise BudgetExceeded("process", None, 1.0, 2.0)

    def call_ended(self, call: Any, state: object) -> None:
        raise AssertionError("a refused call never ends")
