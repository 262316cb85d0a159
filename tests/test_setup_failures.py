"""Set-up problems that must not stop the application: a taken port, a missing extra, an old client."""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_llm_usage
from emulators import AnthropicEmulator, AnthropicReply, Reply
from otel_llm_usage import _envparse, _supported
from otel_llm_usage.exporters import MissingExtraError
from otel_llm_usage.instrumentor import active_instrumentor

PIP = 'pip install "otel-llm-usage[prometheus]"'
MSGS = [{"role": "user", "content": "hi"}]


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(_envparse, "_warned", set())
    monkeypatch.delenv("OTEL_LLM_USAGE_PROMETHEUS_PORT", raising=False)
    yield
    otel_llm_usage.uninstrument()


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    return tp, exporter


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        yield sock.getsockname()[1]


def openai_call(emu: Any) -> None:
    emu.push(Reply(prompt_tokens=10, completion_tokens=5))
    openai.OpenAI(base_url=emu.base_url, api_key="k", max_retries=0).chat.completions.create(
        model="gpt-4o", messages=MSGS
    )


def llm_spans(exporter: InMemorySpanExporter) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if (s.attributes or {}).get("llm_usage.call")]


def test_taken_prometheus_port_warns_and_the_app_goes_on(
    spans: Any, taken_port: int, openai_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    tp, exporter = spans
    otel_llm_usage.instrument(tracer_provider=tp, prometheus_port=taken_port)
    openai_call(openai_emulator)
    assert len(llm_spans(exporter)) == 1
    (message,) = [r.getMessage() for r in caplog.records if "Prometheus" in r.getMessage()]
    assert str(taken_port) in message


def test_missing_prometheus_extra_raises_from_code(spans: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.prometheus", None)
    with pytest.raises(MissingExtraError, match=PIP.replace("[", r"\[").replace("]", r"\]")):
        otel_llm_usage.instrument(tracer_provider=spans[0], prometheus_port=9464)
    assert active_instrumentor() is None


def test_missing_prometheus_extra_warns_from_the_environment(
    spans: Any, monkeypatch: pytest.MonkeyPatch, openai_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    tp, exporter = spans
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.prometheus", None)
    monkeypatch.setenv("OTEL_LLM_USAGE_PROMETHEUS_PORT", "9464")
    otel_llm_usage.instrument(tracer_provider=tp)
    openai_call(openai_emulator)
    assert len(llm_spans(exporter)) == 1
    (message,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "OTEL_LLM_USAGE_PROMETHEUS_PORT" in message and PIP in message


def test_client_older_than_supported_is_skipped_alone(
    spans: Any, monkeypatch: pytest.MonkeyPatch, openai_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    tp, exporter = spans
    # Raise the floor above the installed release, as an old installation would look.
    monkeypatch.setitem(_supported.SUPPORTED, "openai", ("openai", ">=999"))
    otel_llm_usage.instrument(tracer_provider=tp)
    openai_call(openai_emulator)
    with AnthropicEmulator() as emu:
        emu.push(AnthropicReply(text="ok"))
        anthropic.Anthropic(base_url=emu.base_url, api_key="k", max_retries=0).messages.create(
            model="claude-sonnet-4-5", max_tokens=10, messages=MSGS
        )
    assert [s.attributes["gen_ai.provider.name"] for s in llm_spans(exporter)] == ["anthropic"]
    (message,) = [r.getMessage() for r in caplog.records if "openai" in r.getMessage()]
    assert 'pip install "openai>=999"' in message


def test_instrumentation_dependencies_block_nothing() -> None:
    # Every client is optional: BaseInstrumentor must find no conflict even with none installed.
    assert otel_llm_usage.LLMUsageInstrumentor().instrumentation_dependencies() == ()


def test_bad_prices_file_warns_and_calls_are_still_recorded(
    spans: Any,
    monkeypatch: pytest.MonkeyPatch,
    openai_emulator: Any,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Any,
) -> None:
    tp, exporter = spans
    path = tmp_path / "prices.json"
    path.write_text('{"gpt-4o": {"input": "cheap"}}')
    monkeypatch.setenv("OTEL_LLM_USAGE_PRICES_FILE", str(path))
    otel_llm_usage.instrument(tracer_provider=tp)
    openai_call(openai_emulator)
    (span,) = llm_spans(exporter)
    assert span.attributes["gen_ai.usage.cost"] == pytest.approx((10 * 2.5 + 5 * 10) / 1e6)  # genai-prices
    (message,) = [r.getMessage() for r in caplog.records if "OTEL_LLM_USAGE_PRICES_FILE" in r.getMessage()]
    assert str(path) in message
