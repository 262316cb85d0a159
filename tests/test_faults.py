"""Fault cases not covered beside their feature: the caller sees exactly what it would see uninstrumented."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import otel_llm_usage
from emulators import Reply
from otel_llm_usage import semconv as sc

MSGS = [{"role": "user", "content": "hi"}]


def client(emu: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=emu.base_url, api_key="k", max_retries=0)


def test_uninstrument_while_a_stream_is_open(instrument_with: Any, openai_emulator: Any) -> None:
    t = instrument_with(stream_usage="always")
    openai_emulator.push(Reply(prompt_tokens=40, completion_tokens=8, chunks=6))
    stream = client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS, stream=True)
    first = next(iter(stream))
    otel_llm_usage.uninstrument()
    rest = list(stream)
    assert first.choices and len(rest) == 5  # the caller's stream goes on unchanged, usage chunk hidden
    (span,) = t.llm_spans()  # the call that began instrumented still ends once, with its usage
    assert span.attributes[sc.USAGE_INPUT_TOKENS] == 40
    openai_emulator.push(Reply())
    client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS)
    assert len(t.llm_spans()) == 1  # nothing recorded after uninstrument()


class _RaisingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise ConnectionError("collector unreachable")

    def shutdown(self) -> None:
        pass


def test_exporter_that_raises_never_reaches_the_caller(openai_emulator: Any) -> None:
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(_RaisingExporter()))
    otel_llm_usage.instrument(tracer_provider=tp)
    try:
        with otel_llm_usage.run("resilient") as r:
            openai_emulator.push(Reply(prompt_tokens=1000, cached_tokens=200, completion_tokens=500))
            resp = client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS)
        assert resp.usage is not None and resp.usage.prompt_tokens == 1000
        assert r.usage.cost_usd == pytest.approx(0.00725)  # rollups never depend on export
    finally:
        otel_llm_usage.uninstrument()


@pytest.mark.parametrize("status", [400, 401, 429, 500, 503])
def test_errors_identical_with_and_without_instrumentation(
    instrument_with: Any, openai_emulator: Any, status: int
) -> None:
    def attempt() -> tuple[type[BaseException], int | None, str]:
        openai_emulator.push(Reply(status=status))
        with pytest.raises(openai.APIStatusError) as caught:
            client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS)
        return type(caught.value), caught.value.status_code, caught.value.message

    plain = attempt()
    t = instrument_with()
    assert attempt() == plain
    (span,) = t.llm_spans()
    assert span.attributes[sc.ERROR_TYPE] == plain[0].__qualname__
