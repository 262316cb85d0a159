"""Audio tokens past the span: ledgers, run and session totals, and llm_usage.tokens types."""

from __future__ import annotations

from typing import Any

import openai
from openai.types.chat import ChatCompletionMessageParam

from emulators import Reply
from otel_llm_usage import run, session, session_usage, usage_summary
from otel_llm_usage import semconv as sc
from tests.conftest import Telemetry

MSGS: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
MODEL = "gpt-4o-audio-preview"


def client(emu: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=emu.base_url, api_key="sk-test", max_retries=0)


def token_types(t: Telemetry) -> dict[str, float]:
    out: dict[str, float] = {}
    for p in t.points(sc.METRIC_TOKENS):
        kind = str((p.attributes or {})[sc.LLM_TOKEN_TYPE])
        out[kind] = out.get(kind, 0) + p.value
    return out


def run_span(t: Telemetry) -> dict[str, Any]:
    [attrs] = [dict(s.attributes or {}) for s in t.spans() if sc.RUN_ID in (s.attributes or {})]
    return attrs


def test_audio_tokens_reach_every_total(telemetry: Telemetry, openai_emulator: Any) -> None:
    c = client(openai_emulator)
    with session("voice-1"), run("voice") as r:
        openai_emulator.push(Reply(prompt_tokens=120, audio_prompt_tokens=100, audio_completion_tokens=60))
        c.chat.completions.create(model=MODEL, messages=MSGS)
        openai_emulator.push(Reply(prompt_tokens=50, audio_prompt_tokens=30, completion_tokens=5))
        for _ in c.chat.completions.create(
            model=MODEL, messages=MSGS, stream=True, stream_options={"include_usage": True}
        ):
            pass

    # The span, as the provider reported it.
    first = next(
        dict(s.attributes or {}) for s in telemetry.llm_spans() if not s.attributes[sc.REQUEST_STREAM]
    )  # type: ignore[index]
    assert (first[sc.USAGE_AUDIO_INPUT_TOKENS], first[sc.USAGE_AUDIO_OUTPUT_TOKENS]) == (100, 60)
    # Run.usage, session_usage() and the summary.
    s = session_usage("voice-1")
    assert s is not None
    for u in (r.usage, s, usage_summary().total, usage_summary().by_model[0]):
        assert (u.audio_input_tokens, u.audio_output_tokens) == (130, 60)
        assert u.input_tokens == 170  # audio is part of the input, as cache reads are
    # The run span's own totals and the session's totals at that moment.
    attrs = run_span(telemetry)
    assert (attrs[sc.RUN_AUDIO_INPUT_TOKENS], attrs[sc.RUN_AUDIO_OUTPUT_TOKENS]) == (130, 60)
    assert (attrs[sc.SESSION_AUDIO_INPUT_TOKENS], attrs[sc.SESSION_AUDIO_OUTPUT_TOKENS]) == (130, 60)
    # The counter types, beside input and output (which include them).
    types = token_types(telemetry)
    assert (types["audio_input"], types["audio_output"]) == (130, 60)
    assert types["input"] == 170
    # The summary table grows its audio columns.
    header = str(usage_summary()).splitlines()[0].split()
    assert header[6:8] == ["audio_in", "audio_out"]


def test_no_audio_no_audio_attributes_or_series(telemetry: Telemetry, openai_emulator: Any) -> None:
    c = client(openai_emulator)
    with session("text-1"), run("text") as r:
        openai_emulator.push(Reply(prompt_tokens=20, completion_tokens=4))
        c.chat.completions.create(model="gpt-4o", messages=MSGS)
    assert (r.usage.audio_input_tokens, r.usage.audio_output_tokens) == (0, 0)
    attrs = run_span(telemetry)
    assert not [k for k in attrs if "audio" in k]
    assert set(token_types(telemetry)) == {"input", "output", "cache_read"}
