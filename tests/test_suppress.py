"""OpenTelemetry's `suppress_instrumentation()`: a call inside it makes no span, no metric, no total."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation

import otel_llm_usage
from emulators import AnthropicEmulator, AnthropicReply, Reply
from otel_llm_usage import semconv as sc
from tests.conftest import Telemetry

MSGS = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def anthropic_emu() -> Iterator[AnthropicEmulator]:
    with AnthropicEmulator() as server:
        yield server


def calls(openai_emu: Any, anthropic_emu: AnthropicEmulator) -> None:
    """One call of each kind: openai sync, streamed and async; anthropic; record_call both ways."""
    openai_emu.push(Reply(prompt_tokens=10, completion_tokens=5))
    openai_emu.push(Reply(prompt_tokens=10, completion_tokens=5, chunks=3))
    openai_emu.push(Reply(prompt_tokens=10, completion_tokens=5))
    anthropic_emu.push(AnthropicReply(text="Paris."))
    oc = openai.OpenAI(base_url=openai_emu.base_url, api_key="k", max_retries=0)
    oc.chat.completions.create(model="gpt-4o", messages=MSGS)
    stream = oc.chat.completions.create(
        model="gpt-4o", messages=MSGS, stream=True, stream_options={"include_usage": True}
    )
    assert len(list(stream)) >= 3

    async def async_call() -> None:
        ac = openai.AsyncOpenAI(base_url=openai_emu.base_url, api_key="k", max_retries=0)
        await ac.chat.completions.create(model="gpt-4o", messages=MSGS)

    asyncio.run(async_call())
    anthropic.Anthropic(base_url=anthropic_emu.base_url, api_key="k", max_retries=0).messages.create(
        model="claude-sonnet-4-5", max_tokens=50, messages=MSGS
    )
    otel_llm_usage.record_call(model="gpt-4o", provider="openai", input_tokens=100, output_tokens=10)
    with otel_llm_usage.record_call(model="gpt-4o", provider="openai") as call:
        call.set_usage(input_tokens=100, output_tokens=10)


def test_suppressed_calls_leave_no_trace(
    telemetry: Telemetry, openai_emulator: Any, anthropic_emu: AnthropicEmulator
) -> None:
    anthropic_emu.reset()
    with otel_llm_usage.run("suppressed") as run_, suppress_instrumentation():
        calls(openai_emulator, anthropic_emu)
    assert telemetry.llm_spans() == []
    assert telemetry.total(sc.METRIC_TOKENS) == 0
    assert telemetry.points(sc.METRIC_TOKEN_USAGE) == []
    assert telemetry.points(sc.METRIC_OPERATION_DURATION) == []
    assert otel_llm_usage.usage_summary().total.requests == 0
    assert run_.usage.requests == 0
    assert openai_emulator.served.requests == 3  # the calls themselves went through unchanged

    # The same calls outside the switch are all recorded: the check above is not vacuous.
    calls(openai_emulator, anthropic_emu)
    assert len(telemetry.llm_spans()) == 6
    assert otel_llm_usage.usage_summary().total.requests == 6
    assert telemetry.total(sc.METRIC_TOKENS, llm_usage__token__type="input") > 0
