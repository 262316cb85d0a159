"""Per-call entries: `Run.calls` and `session_calls()`, each entry checked against the call's span."""

from __future__ import annotations

import json
import logging
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan

import otel_llm_usage
from emulators import Reply
from otel_llm_usage import CallLog, CallRecord, TokenUsage, record_call, run, session, session_calls
from otel_llm_usage import semconv as sc
from tests.conftest import Telemetry

MSGS: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]


def client(emu: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=emu.base_url, api_key="sk-test", max_retries=0)


def chat(c: openai.OpenAI, emu: Any, model: str = "gpt-4o", **reply: Any) -> None:
    emu.push(Reply(**reply))
    c.chat.completions.create(model=model, messages=MSGS)


def span_of(t: Telemetry, record: CallRecord) -> ReadableSpan:
    (span,) = [
        s for s in t.llm_spans() if s.context is not None and f"{s.context.span_id:016x}" == record.span_id
    ]
    return span


def assert_matches_span(t: Telemetry, record: CallRecord) -> None:
    span = span_of(t, record)
    a: dict[str, Any] = dict(span.attributes or {})
    assert record.trace_id == f"{span.context.trace_id:032x}"  # type: ignore[union-attr]
    assert record.provider == a[sc.PROVIDER_NAME] and record.operation == a[sc.OPERATION_NAME]
    assert record.request_model == a[sc.REQUEST_MODEL]
    assert record.response_model == a.get(sc.RESPONSE_MODEL)
    assert record.response_id == a.get(sc.RESPONSE_ID)
    assert record.cost_usd == a.get(sc.USAGE_COST)
    assert record.error_type == a.get(sc.ERROR_TYPE)
    if record.usage is None:
        assert a[sc.USAGE_SOURCE] == sc.USAGE_SOURCE_MISSING
    else:
        assert (record.usage.input, record.usage.output) == (
            a[sc.USAGE_INPUT_TOKENS],
            a[sc.USAGE_OUTPUT_TOKENS],
        )
        assert record.usage.cache_read == a.get(sc.USAGE_CACHE_READ_INPUT_TOKENS, 0)
        assert record.usage.reasoning == a.get(sc.USAGE_REASONING_OUTPUT_TOKENS, 0)
    assert (record.start_time_ns, record.end_time_ns) == (span.start_time, span.end_time)
    assert record.duration_s == (span.end_time - span.start_time) / 1e9  # type: ignore[operator]
    if sc.RESPONSE_TIME_TO_FIRST_CHUNK in a:
        assert record.time_to_first_chunk_s == pytest.approx(a[sc.RESPONSE_TIME_TO_FIRST_CHUNK], abs=2e-6)
    else:
        assert record.time_to_first_chunk_s is None


def test_a_runs_calls_are_entries_matching_their_spans(telemetry: Telemetry, openai_emulator: Any) -> None:
    c = client(openai_emulator)
    with session("conv-1"), run("planner", agent="plan") as r:
        chat(
            c,
            openai_emulator,
            prompt_tokens=1000,
            completion_tokens=100,
            cached_tokens=200,
            reasoning_tokens=30,
        )
        stream = c.chat.completions.create(
            model="gpt-4o-mini", messages=MSGS, stream=True, stream_options={"include_usage": True}
        )
        for _ in stream:
            pass
        chat(c, openai_emulator, model="house-llm", prompt_tokens=10, completion_tokens=5)  # unpriced
        chat(c, openai_emulator, omit_usage=True)  # no usage reported
        with pytest.raises(openai.RateLimitError):
            chat(c, openai_emulator, status=429)
    calls = r.calls
    assert isinstance(calls, CallLog) and len(calls) == 5 and calls.dropped == 0 == r.calls_dropped
    first, streamed, unpriced, missing, failed = calls
    assert first.usage == TokenUsage(input=1000, output=100, cache_read=200, reasoning=30)
    assert first.cost_usd == pytest.approx(800 * 2.5e-6 + 200 * 1.25e-6 + 100 * 10e-6, abs=1e-12)
    assert (first.agent, first.session_id, first.model) == ("plan", "conv-1", "gpt-4o")
    assert first.time_to_first_chunk_s is None
    assert (
        streamed.time_to_first_chunk_s is not None
        and 0 < streamed.time_to_first_chunk_s <= streamed.duration_s
    )
    assert unpriced.cost_usd is None and unpriced.usage is not None
    assert missing.usage is None and missing.cost_usd is None
    assert failed.error_type == "RateLimitError" and failed.response_id is None
    for record in calls:
        assert_matches_span(telemetry, record)
    assert sum(x.cost_usd or 0.0 for x in calls) == pytest.approx(r.usage.cost_usd, abs=1e-15)
    assert [x.span_id for x in calls] == [x.span_id for x in session_calls("conv-1") or ()]
    as_dict = json.loads(json.dumps(first.to_dict()))
    assert as_dict["usage"]["cache_read"] == 200 and as_dict["span_id"] == first.span_id
    assert as_dict["duration_s"] == first.duration_s


def test_nested_runs_and_the_session_share_entries(telemetry: Telemetry, openai_emulator: Any) -> None:
    c = client(openai_emulator)
    with session("conv-2"):
        with run("outer") as outer:
            chat(c, openai_emulator)
            with run("inner") as inner:
                chat(c, openai_emulator)
        with run("later") as later:
            chat(c, openai_emulator)
    chat(c, openai_emulator)  # outside any run and session: no entry anywhere
    assert [x.agent for x in outer.calls] == ["outer", "inner"]
    assert [x.agent for x in inner.calls] == ["inner"]
    assert inner.calls[0] == outer.calls[1]
    log = session_calls("conv-2")
    assert log is not None and [x.agent for x in log] == ["outer", "inner", "later"]
    assert log[2] == later.calls[0]
    assert session_calls("never-seen") is None
    otel_llm_usage.close_session("conv-2")
    assert session_calls("conv-2") is None


def test_record_call_entries(telemetry: Telemetry) -> None:
    with run("manual") as r:
        record_call(
            model="house-llm",
            provider="house",
            input_tokens=50,
            output_tokens=20,
            duration_s=2.0,
            time_to_first_chunk_s=0.5,
            cost_usd=0.25,
            error_type="Timeout",
        )
    (entry,) = r.calls
    assert (entry.provider, entry.request_model, entry.cost_usd, entry.error_type) == (
        "house",
        "house-llm",
        0.25,
        "Timeout",
    )
    assert entry.duration_s == pytest.approx(2.0, abs=1e-6)
    assert entry.time_to_first_chunk_s == pytest.approx(0.5, abs=1e-6)
    assert_matches_span(telemetry, entry)


def test_the_newest_entries_are_kept_and_the_dropped_counted(instrument_with: Any) -> None:
    instrument_with(max_call_records=100)
    with session("long"), run("long") as r:
        for i in range(1, 2501):
            record_call(model="m", provider="p", input_tokens=i, output_tokens=1)
    for log in (r.calls, session_calls("long")):
        assert log is not None and len(log) == 100 and log.dropped == 2400
        assert [x.usage.input for x in log if x.usage] == list(range(2401, 2501))
    assert r.calls_dropped == 2400
    assert r.usage.requests == 2500, "totals count every call, kept or not"


def test_zero_keeps_no_entries(instrument_with: Any) -> None:
    instrument_with(max_call_records=0)
    with session("none"), run("none") as r:
        record_call(model="m", provider="p", input_tokens=1, output_tokens=1)
    assert r.calls == () and r.calls.dropped == 0 and r.usage.requests == 1
    assert session_calls("none") == ()


@pytest.mark.parametrize("bad", [-1, 1.5, "ten", True])
def test_a_bad_cap_in_code_is_a_value_error_naming_it(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_call_records"):
        otel_llm_usage.instrument(max_call_records=bad)
    assert otel_llm_usage.LLMUsageInstrumentor().is_instrumented_by_opentelemetry is False


def test_the_cap_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, instrument_with: Any, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_LLM_USAGE_MAX_CALL_RECORDS", "2")
    instrument_with()
    with run("env") as r:
        for _ in range(3):
            record_call(model="m", provider="p", input_tokens=1, output_tokens=1)
    assert (len(r.calls), r.calls.dropped) == (2, 1)
    otel_llm_usage.uninstrument()
    monkeypatch.setenv("OTEL_LLM_USAGE_MAX_CALL_RECORDS", "lots")
    with caplog.at_level(logging.WARNING, logger="otel_llm_usage"):
        instrument_with()
    (warning,) = [rec for rec in caplog.records if "OTEL_LLM_USAGE_MAX_CALL_RECORDS" in rec.getMessage()]
    assert "'lots'" in warning.getMessage() and "1000" in warning.getMessage()
    with run("default") as r:
        record_call(model="m", provider="p", input_tokens=1, output_tokens=1)
    assert len(r.calls) == 1


def test_without_an_sdk_tracer_entries_have_no_span_ids(openai_emulator: Any) -> None:
    otel_llm_usage.instrument(tracer_provider=trace.NoOpTracerProvider())
    try:
        with run("no-sdk") as r:
            chat(client(openai_emulator), openai_emulator, prompt_tokens=10, completion_tokens=2)
        (entry,) = r.calls
        assert entry.span_id is None and entry.trace_id is None
        assert entry.usage == TokenUsage(input=10, output=2) and entry.response_id
    finally:
        otel_llm_usage.uninstrument()
