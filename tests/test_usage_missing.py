"""No silent $0: calls that end without usage are counted everywhere and named once per endpoint."""

from __future__ import annotations

import logging
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

import otel_llm_usage
from emulators import Reply
from otel_llm_usage import run, session, session_usage, usage_summary
from otel_llm_usage import semconv as sc
from tests.conftest import Telemetry

MSGS: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
HOST = "127.0.0.1"


def client(emu: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=emu.base_url, api_key="sk-test", max_retries=0)


def warnings_about_usage(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "ended without usage" in r.getMessage()]


def missing_points(t: Telemetry) -> dict[tuple[str, str, str], float]:
    return {
        (
            p.attributes[sc.PROVIDER_NAME],  # type: ignore[index]
            p.attributes[sc.REQUEST_MODEL],  # type: ignore[index]
            p.attributes[sc.SERVER_ADDRESS],  # type: ignore[index]
        ): p.value
        for p in t.points(sc.METRIC_USAGE_MISSING)
    }


def stream_chat(c: openai.OpenAI, emu: Any, reply: Reply, **kwargs: Any) -> None:
    emu.push(reply)
    for _ in c.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True, **kwargs):
        pass


def test_streams_without_usage_are_counted_in_every_total(
    instrument_with: Any, openai_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="otel_llm_usage")
    telemetry = instrument_with(stream_usage="off")
    c = client(openai_emulator)
    with session("conv-nousage"), run("streamer"):
        # Usage is not asked for, and the server sends none.
        stream_chat(c, openai_emulator, Reply(completion_tokens=7))
        stream_chat(c, openai_emulator, Reply(completion_tokens=8))
        openai_emulator.push(Reply(prompt_tokens=10, completion_tokens=2))
        c.chat.completions.create(model="gpt-4o", messages=MSGS)
        openai_emulator.push(Reply(status=500))
        with pytest.raises(openai.InternalServerError):
            c.chat.completions.create(model="gpt-4o", messages=MSGS)

    # The counter, by provider, model and endpoint host; failed calls are not "missing usage".
    assert missing_points(telemetry) == {("openai", "gpt-4o", HOST): 2}
    # Every ledger: the summary's rows, the run and the session.
    summary = usage_summary()
    assert (summary.total.requests, summary.total.usage_missing_requests, summary.total.errors) == (4, 2, 1)
    [model_row] = summary.by_model
    assert (model_row.usage_missing_requests, model_row.requests_with_usage) == (2, 1)
    assert [(r.name, r.usage_missing_requests) for r in summary.by_agent] == [("streamer", 2)]
    assert [(r.name, r.usage_missing_requests) for r in summary.by_session] == [("conv-nousage", 2)]
    s = session_usage("conv-nousage")
    assert s is not None and s.usage_missing_requests == 2
    run_span = next(a for a in map(lambda x: dict(x.attributes or {}), telemetry.spans()) if sc.RUN_ID in a)
    assert run_span[sc.RUN_USAGE_MISSING_REQUESTS] == 2
    assert run_span[sc.SESSION_USAGE_MISSING_REQUESTS] == 2
    assert run_span[sc.RUN_REQUESTS] == 4 and run_span[sc.RUN_ERRORS] == 1

    # One warning for the host, naming the cause and the remedy.
    [message] = warnings_about_usage(caplog)
    assert HOST in message and "gpt-4o" in message
    assert "sent no usage with the stream" in message
    assert "include_usage" in message and "OTEL_LLM_USAGE_STREAM_USAGE=always" in message


def test_calls_with_usage_count_nothing_missing(
    instrument_with: Any, openai_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    t = instrument_with(stream_usage="always")
    c = client(openai_emulator)
    with run("clean") as r:
        stream_chat(c, openai_emulator, Reply(prompt_tokens=5, completion_tokens=3))
        openai_emulator.push(Reply(prompt_tokens=10, completion_tokens=2))
        c.chat.completions.create(model="gpt-4o", messages=MSGS)
    assert r.usage.usage_missing_requests == 0 and r.usage.requests == 2
    assert t.points(sc.METRIC_USAGE_MISSING) == []
    assert warnings_about_usage(caplog) == []
    run_span = next(dict(s.attributes or {}) for s in t.spans() if sc.RUN_ID in (s.attributes or {}))
    assert run_span[sc.RUN_USAGE_MISSING_REQUESTS] == 0


def test_usage_asked_for_but_not_sent_names_the_server(
    instrument_with: Any, openai_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    t = instrument_with(stream_usage="always")
    stream_chat(client(openai_emulator), openai_emulator, Reply(usage_in_stream=False))
    assert missing_points(t) == {("openai", "gpt-4o", HOST): 1}
    [message] = warnings_about_usage(caplog)
    assert "did not send usage although stream_options.include_usage was requested" in message


def test_a_stream_closed_early_says_so(
    telemetry: Telemetry, openai_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    c = client(openai_emulator)
    openai_emulator.push(Reply(chunks=5))
    stream = c.chat.completions.create(
        model="gpt-4o", messages=MSGS, stream=True, stream_options={"include_usage": True}
    )
    next(iter(stream))
    stream.close()
    assert missing_points(telemetry) == {("openai", "gpt-4o", HOST): 1}
    [message] = warnings_about_usage(caplog)
    assert "closed before its end" in message


def test_a_response_without_usage_is_counted(
    telemetry: Telemetry, openai_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    c = client(openai_emulator)
    for _ in range(3):
        openai_emulator.push(Reply(omit_usage=True))
        c.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    assert missing_points(telemetry) == {("openai", "gpt-4o-mini", HOST): 3}
    span = telemetry.llm_spans()[0]
    assert (span.attributes or {})[sc.USAGE_SOURCE] == sc.USAGE_SOURCE_MISSING
    [message] = warnings_about_usage(caplog)
    assert "the response carried no usage" in message
    total = usage_summary().total
    assert (total.usage_missing_requests, total.cost_usd, total.average_cost_usd) == (3, 0.0, 0.0)


def test_record_call_without_usage_is_counted(telemetry: Telemetry, caplog: pytest.LogCaptureFixture) -> None:
    with otel_llm_usage.record_call(model="house-llm", provider="house"):
        pass
    with otel_llm_usage.record_call(model="house-llm", provider="house") as call:
        call.set_usage(input_tokens=4, output_tokens=2)
    points = {
        tuple(sorted((p.attributes or {}).items())): p.value
        for p in telemetry.points(sc.METRIC_USAGE_MISSING)
    }
    assert list(points.values()) == [1]
    [attributes] = points
    assert sc.SERVER_ADDRESS not in dict(attributes)
    total = usage_summary().total
    assert (total.requests, total.usage_missing_requests, total.requests_with_usage) == (2, 1, 1)
    [message] = warnings_about_usage(caplog)
    assert "an endpoint of unknown address" in message and "call.set_usage() was not called" in message
