"""llm_usage.tokens / .cost / .requests.unpriced: summed in process, reported by observable counters."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider, ObservableCounter
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader

import otel_llm_usage
from otel_llm_usage import semconv as sc
from otel_llm_usage.counters import OVERFLOW_ATTRIBUTES, CallCounters
from otel_llm_usage.usage import TokenUsage

from .conftest import Telemetry

UNKNOWN_MODEL = "no-such-model-anywhere"


def by_type(t: Telemetry, **match: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for p in t.points(sc.METRIC_TOKENS):
        a = dict(p.attributes or {})
        if all(a.get(k.replace("__", ".")) == v for k, v in match.items()):
            out[a[sc.LLM_TOKEN_TYPE]] = out.get(a[sc.LLM_TOKEN_TYPE], 0) + p.value
    return out


def test_series_are_those_the_calls_touched(telemetry: Telemetry) -> None:
    otel_llm_usage.record_call(
        model="gpt-4o-mini", provider="openai", input_tokens=1_000, output_tokens=200, cache_read_tokens=600
    )
    otel_llm_usage.record_call(model=UNKNOWN_MODEL, provider="openai", input_tokens=10, output_tokens=5)

    # cache_read is always a series; cache_write and reasoning only once one call had some.
    assert by_type(telemetry, gen_ai__request__model="gpt-4o-mini") == {
        "input": 1_000, "output": 200, "cache_read": 600,
    }  # fmt: skip
    assert by_type(telemetry, gen_ai__request__model=UNKNOWN_MODEL) == {
        "input": 10,
        "output": 5,
        "cache_read": 0,
    }
    # Cost only where a call was priced, unpriced only where one was not.
    cost = {p.attributes[sc.REQUEST_MODEL]: p.value for p in telemetry.points(sc.METRIC_COST)}  # type: ignore[index]
    assert set(cost) == {"gpt-4o-mini"} and cost["gpt-4o-mini"] > 0
    unpriced = {p.attributes[sc.REQUEST_MODEL]: p.value for p in telemetry.points(sc.METRIC_UNPRICED)}  # type: ignore[index]
    assert unpriced == {UNKNOWN_MODEL: 1}
    # The same attribute set as the histograms of the same call.
    histogram = telemetry.points(sc.METRIC_OPERATION_DURATION)
    counter = telemetry.points(sc.METRIC_COST)
    assert dict(counter[0].attributes or {}) in [dict(h.attributes or {}) for h in histogram]


def test_totals_are_exact_across_threads(telemetry: Telemetry) -> None:
    threads, calls = 8, 250
    start = threading.Barrier(threads)

    def work(n: int) -> None:
        start.wait()
        for i in range(calls):
            otel_llm_usage.record_call(
                model=f"m-{i % 3}", provider="openai", input_tokens=100 + n, output_tokens=10 + i % 7,
                cache_read_tokens=n, cache_write_tokens=1, reasoning_tokens=i % 2,
                cost_usd=0.25 if i % 4 else None,
            )  # fmt: skip

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()

    totals = by_type(telemetry)
    assert totals == {
        "input": sum(calls * (100 + n) for n in range(threads)),
        "output": threads * sum(10 + i % 7 for i in range(calls)),
        "cache_read": sum(calls * n for n in range(threads)),
        "cache_write": threads * calls,
        "reasoning": threads * sum(i % 2 for i in range(calls)),
    }
    # Every summand is a multiple of 0.25, so the float sum is exact.
    assert telemetry.total(sc.METRIC_COST) == threads * sum(0.25 for i in range(calls) if i % 4)
    assert telemetry.total(sc.METRIC_UNPRICED) == threads * sum(1 for i in range(calls) if not i % 4)


def test_cumulative_and_delta_readers_both_see_the_right_values() -> None:
    cumulative = InMemoryMetricReader()
    delta = InMemoryMetricReader(preferred_temporality={ObservableCounter: AggregationTemporality.DELTA})
    mp = MeterProvider(metric_readers=[cumulative, delta])
    try:
        otel_llm_usage.instrument(meter_provider=mp)

        def collect(reader: InMemoryMetricReader) -> float:
            data = reader.get_metrics_data()
            assert data is not None
            return sum(
                p.value
                for rm in data.resource_metrics
                for sm in rm.scope_metrics
                for m in sm.metrics
                if m.name == sc.METRIC_TOKENS
                for p in m.data.data_points
                if p.attributes.get(sc.LLM_TOKEN_TYPE) == "input"
            )

        otel_llm_usage.record_call(model="gpt-4o-mini", provider="openai", input_tokens=70, output_tokens=1)
        assert (collect(cumulative), collect(delta)) == (70, 70)
        otel_llm_usage.record_call(model="gpt-4o-mini", provider="openai", input_tokens=30, output_tokens=1)
        assert (collect(cumulative), collect(delta)) == (100, 30)
        assert (collect(cumulative), collect(delta)) == (100, 0)
    finally:
        otel_llm_usage.uninstrument()


def test_attribute_sets_past_the_limit_sum_into_the_overflow_series() -> None:
    counters = CallCounters(limit=2)
    usage = TokenUsage(input=10, output=1)
    for model in ("a", "b", "c", "d", "a"):
        counters.add({"model": model}, usage, 0.5)
    rows = {tuple(sorted(s.attributes.items())): (s.input, s.cost) for s in counters.series()}
    assert rows == {
        (("model", "a"),): (20, 1.0),
        (("model", "b"),): (10, 0.5),
        tuple(OVERFLOW_ATTRIBUTES.items()): (20, 1.0),
    }


def test_unhashable_attribute_values_still_count() -> None:
    counters = CallCounters()
    counters.add({"tags": ["x", "y"]}, TokenUsage(input=3, output=1), None)
    counters.add({"tags": ["x", "y"]}, TokenUsage(input=4, output=1), None)
    [row] = list(counters.series())
    assert (dict(row.attributes), row.input, row.unpriced, row.cost) == ({"tags": ["x", "y"]}, 7, 2, None)


def test_a_call_without_usage_but_with_a_cost_counts_its_cost_only() -> None:
    counters = CallCounters()
    counters.add({"m": 1}, None, 0.125)
    [row] = list(counters.series())
    assert (row.input, row.unpriced, row.cost) == (0, 0, pytest.approx(0.125))
