"""`record_call()` records calls no patched library made, exactly like instrumented ones."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

import otel_llm_usage
from otel_llm_usage import semconv as sc


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_record_call_matches_an_instrumented_call(telemetry: Any) -> None:
    otel_llm_usage.record_call(
        model="gpt-4o", provider="openai", input_tokens=1000, output_tokens=500, cache_read_tokens=200,
        duration_s=1.5, agent="gateway-agent",
    )  # fmt: skip
    span = telemetry.one_llm_span()
    a = attrs(span)
    assert span.name == "chat gpt-4o" and span.kind is SpanKind.CLIENT
    assert a[sc.USAGE_INPUT_TOKENS] == 1000 and a[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 200
    assert a[sc.USAGE_COST] == pytest.approx(0.00725, abs=1e-12)
    assert a[sc.COST_SOURCE] == "price_table"
    assert a[sc.AGENT_NAME] == "gateway-agent"
    assert (span.end_time - span.start_time) / 1e9 == pytest.approx(1.5, abs=0.05)
    (duration,) = telemetry.points(sc.METRIC_OPERATION_DURATION)
    assert duration.sum == pytest.approx(1.5, abs=0.05)
    assert telemetry.total(sc.METRIC_COST, gen_ai__agent__name="gateway-agent") == pytest.approx(0.00725)


def test_record_call_with_given_cost_ttfc_and_error(telemetry: Any) -> None:
    otel_llm_usage.record_call(
        model="house-llm", provider="internal", input_tokens=10, output_tokens=5, cost_usd=0.02,
        duration_s=2.0, time_to_first_chunk_s=0.25, error_type="GatewayTimeout", operation="text_completion",
    )  # fmt: skip
    span = telemetry.one_llm_span()
    a = attrs(span)
    assert span.name == "text_completion house-llm"
    assert a[sc.USAGE_COST] == 0.02 and a[sc.COST_SOURCE] == "provider"
    assert a[sc.RESPONSE_TIME_TO_FIRST_CHUNK] == pytest.approx(0.25, abs=1e-6)
    assert a[sc.ERROR_TYPE] == "GatewayTimeout" and span.status.status_code is StatusCode.ERROR
    (ttfc,) = telemetry.points(sc.METRIC_TIME_TO_FIRST_CHUNK)
    assert ttfc.sum == pytest.approx(0.25, abs=1e-6)


def test_context_manager_times_the_block_and_marks_errors(telemetry: Any) -> None:
    with otel_llm_usage.record_call(model="gpt-4o", provider="openai") as call:
        call.set_usage(input_tokens=300, output_tokens=20)
    assert attrs(telemetry.one_llm_span())[sc.USAGE_INPUT_TOKENS] == 300
    telemetry.exporter.clear()
    with pytest.raises(TimeoutError), otel_llm_usage.record_call(model="gpt-4o", provider="openai"):
        raise TimeoutError("gateway timed out")
    a = attrs(telemetry.one_llm_span())
    assert a[sc.ERROR_TYPE] == "TimeoutError" and a[sc.USAGE_SOURCE] == "missing"


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"input_tokens": -1, "output_tokens": 1}, "input_tokens"),
        ({"input_tokens": 1.5, "output_tokens": 1}, "input_tokens"),
        ({"input_tokens": 10, "output_tokens": "3"}, "output_tokens"),
        ({"input_tokens": 10, "output_tokens": True}, "output_tokens"),
        ({"input_tokens": 10, "output_tokens": 1, "cache_read_tokens": -2}, "cache_read_tokens"),
        ({"input_tokens": 10, "output_tokens": 1, "cache_write_tokens": 1.0}, "cache_write_tokens"),
        (
            {"input_tokens": 10, "output_tokens": 1, "cache_read_tokens": 8, "cache_write_tokens": 3},
            "exceed input",
        ),
        ({"input_tokens": 10, "output_tokens": 4, "reasoning_tokens": 5}, "reasoning_tokens"),
        ({"input_tokens": 10, "output_tokens": 4, "model": ""}, "model"),
        ({"input_tokens": 10, "output_tokens": 4, "provider": ""}, "provider"),
        ({"input_tokens": 10, "output_tokens": 4, "duration_s": -1}, "duration_s"),
        (
            {"input_tokens": 10, "output_tokens": 4, "duration_s": 1, "time_to_first_chunk_s": 2},
            "time_to_first",
        ),
        ({"input_tokens": 10, "output_tokens": 4, "cost_usd": -0.5}, "cost_usd"),
        ({"input_tokens": 10}, "given together"),
    ],
)
def test_bad_input_raises_value_error_naming_it_and_records_nothing(
    telemetry: Any, kwargs: dict[str, Any], names: str
) -> None:
    call: dict[str, Any] = {"model": "gpt-4o", "provider": "openai", **kwargs}
    with pytest.raises(ValueError, match=names):
        otel_llm_usage.record_call(**call)
    assert telemetry.spans() == []


def test_set_usage_validates_too(telemetry: Any) -> None:
    with (
        pytest.raises(ValueError, match="reasoning_tokens"),
        otel_llm_usage.record_call(model="gpt-4o", provider="openai") as call,
    ):
        call.set_usage(input_tokens=5, output_tokens=1, reasoning_tokens=2)


def test_record_call_needs_instrument() -> None:
    with pytest.raises(RuntimeError, match="instrument"):
        otel_llm_usage.record_call(model="gpt-4o", provider="openai", input_tokens=1, output_tokens=1)


def test_context_window_utilisation(telemetry: Any) -> None:
    otel_llm_usage.record_call(model="gpt-4o", provider="openai", input_tokens=64_000, output_tokens=10)
    a = attrs(telemetry.one_llm_span())
    assert a[sc.CONTEXT_WINDOW] == 128_000
    assert a[sc.CONTEXT_UTILIZATION] == 0.5
    (point,) = telemetry.points(sc.METRIC_CONTEXT_UTILIZATION)
    assert point.sum == 0.5 and tuple(point.explicit_bounds) == sc.UTILIZATION_BUCKETS


def test_context_window_override_wins(instrument_with: Any) -> None:
    t = instrument_with(prices={"house-llm": {"input": 1.0, "output": 1.0, "context_window": 8000}})
    otel_llm_usage.record_call(model="house-llm", provider="internal", input_tokens=6000, output_tokens=1)
    a = attrs(t.one_llm_span())
    assert a[sc.CONTEXT_WINDOW] == 8000 and a[sc.CONTEXT_UTILIZATION] == 0.75
