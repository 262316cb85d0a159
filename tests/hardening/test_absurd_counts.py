"""A token count beyond the ceiling is read as absent: no absurd cost, and OTLP export keeps working."""

from __future__ import annotations

import logging
from typing import Any

import openai
import pytest
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

import otel_llm_usage
from emulators import Reply
from otel_llm_usage import semconv as sc
from otel_llm_usage._guard import reported_sites
from otel_llm_usage.usage import MAX_TOKEN_COUNT, TokenUsage, as_count

MSGS = [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize("absurd", [10**30, 2**63, 2**64 + 5, MAX_TOKEN_COUNT + 1])
def test_as_count_and_normalised_read_absurd_counts_as_absent(absurd: int) -> None:
    assert as_count(absurd) == 0 and as_count(float(absurd)) == 0
    assert as_count(MAX_TOKEN_COUNT) == MAX_TOKEN_COUNT
    t = TokenUsage.normalised(input=absurd, output=5, cache_read=absurd, reasoning=absurd)
    assert t == TokenUsage(input=0, output=5) and t.valid()
    # a sum of counts each in range can pass the ceiling too
    t = TokenUsage.normalised(input=2 * MAX_TOKEN_COUNT, output=7)
    assert t.input == 0 and t.output == 7
    assert "usage.count_out_of_range" in reported_sites()  # warned (once per process)


def chat(emu: Any, usage: dict[str, Any]) -> None:
    emu.push(Reply(raw_usage=usage))
    openai.OpenAI(base_url=emu.base_url, api_key="k", max_retries=0).chat.completions.create(
        model="gpt-4o", messages=MSGS
    )


@pytest.mark.parametrize("absurd", [10**30, 2**63])
def test_an_absurd_count_from_the_wire_costs_nothing_and_never_poisons_the_export(
    telemetry: Any, openai_emulator: Any, caplog: Any, absurd: int
) -> None:
    with caplog.at_level(logging.WARNING, logger="otel_llm_usage"):
        chat(openai_emulator, {"prompt_tokens": absurd, "completion_tokens": absurd, "total_tokens": absurd})
        chat(openai_emulator, {"prompt_tokens": absurd, "completion_tokens": 20, "total_tokens": absurd})
        chat(openai_emulator, {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100})
    both, prompt_only, sane = (
        dict(s.attributes or {}) for s in sorted(telemetry.llm_spans(), key=lambda s: s.start_time or 0)
    )
    assert both[sc.USAGE_SOURCE] == "missing" and sc.USAGE_COST not in both  # nothing readable: no usage
    assert prompt_only[sc.USAGE_INPUT_TOKENS] == 0 and prompt_only[sc.USAGE_OUTPUT_TOKENS] == 20
    assert prompt_only[sc.USAGE_COST] == pytest.approx(20 * 10.0 / 1e6)  # never $1.5e23
    assert sane[sc.USAGE_COST] == pytest.approx((1000 * 2.5 + 100 * 10.0) / 1e6)
    # one warning per process, not one per call (an earlier test may have had it already)
    assert sum("read as absent" in r.getMessage() for r in caplog.records) <= 1

    assert telemetry.total(sc.METRIC_TOKENS, llm_usage__token__type="input") == 1000
    assert telemetry.total(sc.METRIC_COST) < 0.01
    metrics = telemetry.reader.get_metrics_data()
    assert metrics is not None
    encoded = encode_metrics(metrics).SerializeToString()  # raises on an int64 overflow
    assert b"llm_usage.tokens" in encoded
    spans = encode_spans(telemetry.spans()).SerializeToString()
    assert spans.count(b"gen_ai.usage.input_tokens") == 2


def test_the_ceiling_is_the_same_for_record_call(telemetry: Any) -> None:
    with pytest.raises(ValueError, match="input_tokens"):
        otel_llm_usage.record_call(model="gpt-4o", provider="openai", input_tokens=10**30, output_tokens=1)
    assert telemetry.spans() == []
