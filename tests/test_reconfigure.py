"""`instrument()` again reconfigures in place: new options from the next call, every total kept."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import openai
import pytest

import otel_llm_usage
from emulators import OpenAIEmulator, Reply
from otel_llm_usage import Budget, BudgetExceeded
from tests.conftest import Telemetry, make_telemetry

LOGGER = "otel_llm_usage.instrumentor"
# USD per million tokens: 1000 input and 500 output tokens cost 1000 * 2 + 500 * 4 = $0.004
OVERRIDE = {"gpt-4o-mini": {"input": 2.0, "output": 4.0}}


@pytest.fixture
def t() -> Iterator[Telemetry]:
    yield make_telemetry()
    otel_llm_usage.uninstrument()


def call(emu: OpenAIEmulator, **reply: Any) -> Any:
    emu.push(Reply(prompt_tokens=1000, completion_tokens=500, **reply))
    client = openai.OpenAI(base_url=emu.base_url, api_key="k", max_retries=0)
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "secret prompt"}]
    )


def reconfigure_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and "reconfigured" in r.getMessage()]


def test_new_prices_apply_from_the_next_call_and_totals_continue(
    t: Telemetry, openai_emulator: OpenAIEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    call(openai_emulator)
    first = t.one_llm_span().attributes or {}
    built_in = first["gen_ai.usage.cost"]
    assert built_in != pytest.approx(0.004)
    recorder = t.instrumentor.recorder

    with caplog.at_level(logging.INFO, logger=LOGGER):
        again = otel_llm_usage.instrument(prices=OVERRIDE)
    assert again is t.instrumentor and again.recorder is recorder  # reconfigured, not rebuilt
    lines = reconfigure_lines(caplog)
    assert len(lines) == 1 and "prices=1 override(s): gpt-4o-mini" in lines[0], lines

    call(openai_emulator)
    second = t.llm_spans()[-1].attributes or {}
    assert second["gen_ai.usage.cost"] == pytest.approx(0.004)
    summary = otel_llm_usage.usage_summary()
    assert summary.total.requests == 2
    assert summary.total.input_tokens == 2000
    assert summary.total.cost_usd == pytest.approx(built_in + 0.004)
    assert t.total("llm_usage.cost") == pytest.approx(built_in + 0.004)


def test_the_same_options_or_none_change_nothing_and_log_nothing(
    t: Telemetry, openai_emulator: OpenAIEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    otel_llm_usage.instrument(prices=OVERRIDE)
    options = t.instrumentor.options
    with caplog.at_level(logging.INFO, logger="otel_llm_usage"):
        otel_llm_usage.instrument()
        otel_llm_usage.instrument(prices=OVERRIDE)
        otel_llm_usage.instrument(tracer_provider=t.tracer_provider, meter_provider=t.meter_provider)
    assert t.instrumentor.options is options
    assert not [r for r in caplog.records if r.name.startswith("otel_llm_usage")]
    call(openai_emulator)  # the override given earlier still applies: none did not mean "defaults"
    assert (t.one_llm_span().attributes or {})["gen_ai.usage.cost"] == pytest.approx(0.004)


def test_capture_and_budgets_take_effect_and_ledgers_are_kept(
    t: Telemetry, openai_emulator: OpenAIEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    with otel_llm_usage.session("conv-1"):
        call(openai_emulator)
    assert "gen_ai.input.messages" not in (t.one_llm_span().attributes or {})

    budget = Budget(max_cost_usd=0.0, scope="process", action="raise")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        otel_llm_usage.instrument(capture_content=True, budgets=[budget])
    (line,) = reconfigure_lines(caplog)
    assert "capture_content='SPAN_ONLY'" in line and "budgets=[process $0 raise]" in line
    assert "secret prompt" not in line

    with otel_llm_usage.session("conv-1"), pytest.raises(BudgetExceeded):
        call(openai_emulator)  # the process has spent more than $0 already: refused before sending
    assert len(openai_emulator.requests) == 1
    assert otel_llm_usage.session_usage("conv-1").requests == 1  # the session was kept

    otel_llm_usage.instrument(budgets=[])
    with otel_llm_usage.session("conv-1"):
        call(openai_emulator)
    assert "secret prompt" in str((t.llm_spans()[-1].attributes or {})["gen_ai.input.messages"])
    assert otel_llm_usage.session_usage("conv-1").requests == 2
    assert otel_llm_usage.usage_summary().total.requests == 2


def test_a_provider_list_re_patches_the_clients(t: Telemetry, openai_emulator: OpenAIEmulator) -> None:
    call(openai_emulator)
    otel_llm_usage.instrument(providers=["anthropic"])
    call(openai_emulator)
    assert len(t.llm_spans()) == 1  # openai is no longer patched
    otel_llm_usage.instrument(providers=["openai"])
    call(openai_emulator)
    assert len(t.llm_spans()) == 2
    assert otel_llm_usage.usage_summary().total.requests == 2


def test_rollups_switched_off_and_on(t: Telemetry, openai_emulator: OpenAIEmulator) -> None:
    otel_llm_usage.instrument(rollups=False)
    assert otel_llm_usage.usage_summary().total.requests == 0
    call(openai_emulator)
    assert (t.one_llm_span().attributes or {})["gen_ai.usage.cost"] > 0  # calls are still recorded
    otel_llm_usage.instrument(rollups=True)
    call(openai_emulator)
    assert otel_llm_usage.usage_summary().total.requests == 1


def test_a_bad_value_raises_and_changes_nothing(t: Telemetry, openai_emulator: OpenAIEmulator) -> None:
    options = t.instrumentor.options
    with pytest.raises(ValueError, match="stream_usage"):
        otel_llm_usage.instrument(stream_usage="sometimes")
    with pytest.raises(ValueError, match="provider"):
        otel_llm_usage.instrument(providers=["nope"])
    assert t.instrumentor.options is options
    call(openai_emulator)
    assert len(t.llm_spans()) == 1


def test_another_tracer_provider_is_refused_with_a_warning(
    t: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        otel_llm_usage.instrument(tracer_provider=TracerProvider())
    assert any(
        "tracer_provider" in r.getMessage() and "uninstrument()" in r.getMessage() for r in caplog.records
    )


def test_uninstrument_then_instrument_starts_afresh(openai_emulator: OpenAIEmulator) -> None:
    t = make_telemetry(prices=OVERRIDE)
    try:
        call(openai_emulator)
        otel_llm_usage.uninstrument()
        t = make_telemetry()  # no override: the built-in price again
        call(openai_emulator)
        cost = (t.one_llm_span().attributes or {})["gen_ai.usage.cost"]
        assert cost != pytest.approx(0.004)
        assert otel_llm_usage.usage_summary().total.requests == 1
    finally:
        otel_llm_usage.uninstrument()


def test_event_capture_and_a_logger_provider_given_later(
    t: Telemetry, openai_emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    from otel_llm_usage import content

    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    call(openai_emulator)
    try:
        otel_llm_usage.instrument(capture_content="EVENT_ONLY", logger_provider=provider)
        call(openai_emulator)
    finally:
        content.use_logger_provider(None)
    assert len(exporter.get_finished_logs()) == 1  # the second call's details event only
    assert all("gen_ai.input.messages" not in (s.attributes or {}) for s in t.llm_spans())
    assert otel_llm_usage.usage_summary().total.requests == 2
