"""Run-level latency (time to first token, LLM busy time) and context-window utilisation."""

from __future__ import annotations

import contextvars
import threading
from typing import Any

import openai
import pytest

import otel_llm_usage
from emulators import Reply
from otel_llm_usage import semconv as sc

MSGS = [{"role": "user", "content": "hi"}]


def run_span(t: Any, name: str) -> dict[str, Any]:
    (span,) = [s for s in t.spans() if s.name == f"invoke_agent {name}"]
    a = dict(span.attributes or {})
    a["_duration_s"] = (span.end_time - span.start_time) / 1e9
    return a


def client(emu: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=emu.base_url, api_key="k", max_retries=0)


def test_plain_call_first_token_is_its_end(telemetry: Any, openai_emulator: Any) -> None:
    with otel_llm_usage.run("plain"):
        openai_emulator.push(Reply(delay_s=0.1))
        client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS)
    a = run_span(telemetry, "plain")
    (call,) = telemetry.llm_spans()
    call_end_offset = (call.end_time - call.start_time) / 1e9
    assert 0.1 <= a[sc.RUN_TIME_TO_FIRST_TOKEN] <= a["_duration_s"]
    assert a[sc.RUN_TIME_TO_FIRST_TOKEN] >= call_end_offset  # reached only when the call ended
    assert a[sc.RUN_LLM_DURATION] == pytest.approx(call_end_offset, abs=1e-6)
    (point,) = telemetry.points(sc.METRIC_RUN_TIME_TO_FIRST_TOKEN)
    assert point.count == 1 and point.sum == pytest.approx(a[sc.RUN_TIME_TO_FIRST_TOKEN])


def test_streamed_call_first_token_is_its_first_chunk(instrument_with: Any, openai_emulator: Any) -> None:
    t = instrument_with(stream_usage="always")
    with otel_llm_usage.run("streamer"):
        openai_emulator.push(Reply(delay_s=0.05, chunks=5, chunk_delay_s=0.05))
        for _ in client(openai_emulator).chat.completions.create(model="gpt-4o", messages=MSGS, stream=True):
            pass
    a = run_span(t, "streamer")
    (call,) = t.llm_spans()
    ttfc = (call.attributes or {})[sc.RESPONSE_TIME_TO_FIRST_CHUNK]
    assert ttfc >= 0.05
    # the run's first output is the call's first chunk: the call started after the run did
    assert ttfc <= a[sc.RUN_TIME_TO_FIRST_TOKEN] < a["_duration_s"]
    assert a[sc.RUN_LLM_DURATION] == pytest.approx((call.end_time - call.start_time) / 1e9, abs=1e-6)


def test_parallel_calls_never_exceed_the_run(telemetry: Any, openai_emulator: Any) -> None:
    c = client(openai_emulator)
    with otel_llm_usage.run("fanout"):
        openai_emulator.push(Reply(delay_s=0.3), Reply(delay_s=0.3), Reply(delay_s=0.3))
        barrier = threading.Barrier(3)

        def call() -> None:
            barrier.wait()
            c.chat.completions.create(model="gpt-4o", messages=MSGS)

        threads = [threading.Thread(target=contextvars.copy_context().run, args=(call,)) for _ in range(3)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    a = run_span(telemetry, "fanout")
    calls = telemetry.llm_spans()
    assert len(calls) == 3
    summed = sum((s.end_time - s.start_time) / 1e9 for s in calls)
    union_start = min(s.start_time for s in calls)
    union_end = max(s.end_time for s in calls)
    assert a[sc.RUN_LLM_DURATION] <= (union_end - union_start) / 1e9 + 1e-9
    assert a[sc.RUN_LLM_DURATION] < summed
    assert a[sc.RUN_LLM_DURATION] <= a["_duration_s"]


def test_run_without_calls_has_no_latency(telemetry: Any) -> None:
    with otel_llm_usage.run("idle"):
        pass
    a = run_span(telemetry, "idle")
    assert sc.RUN_TIME_TO_FIRST_TOKEN not in a and sc.RUN_LLM_DURATION not in a
    assert telemetry.points(sc.METRIC_RUN_TIME_TO_FIRST_TOKEN) == []


def test_max_context_utilization(telemetry: Any) -> None:
    with otel_llm_usage.run("reader"):
        otel_llm_usage.record_call(model="gpt-4o", provider="openai", input_tokens=32_000, output_tokens=1)
        otel_llm_usage.record_call(model="gpt-4o", provider="openai", input_tokens=96_000, output_tokens=1)
        otel_llm_usage.record_call(model="gpt-4o", provider="openai", input_tokens=64_000, output_tokens=1)
    assert run_span(telemetry, "reader")[sc.RUN_MAX_CONTEXT_UTILIZATION] == 0.75


def test_record_call_counts_in_run_session_and_summary(telemetry: Any) -> None:
    with otel_llm_usage.session("s-manual"), otel_llm_usage.run("gateway", agent="gw") as r:
        otel_llm_usage.record_call(model="gpt-4o", provider="openai", input_tokens=1000, output_tokens=500,
                                   cache_read_tokens=200)  # fmt: skip
    assert r.usage.requests == 1 and r.usage.cost_usd == pytest.approx(0.00725)
    s = otel_llm_usage.session_usage("s-manual")
    assert s is not None and s.cost_usd == pytest.approx(0.00725)
    summary = otel_llm_usage.usage_summary().to_dict()
    assert "gw" in str(summary) and "s-manual" in str(summary)
