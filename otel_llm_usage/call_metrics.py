"""The per-call metric instruments: GenAI histograms and the observable token and cost counters."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from functools import partial

from opentelemetry import metrics

from . import semconv as sc
from .counters import CallCounters


class CallInstruments:
    def __init__(
        self,
        meter: metrics.Meter,
        meter_provider: metrics.MeterProvider | None,
        counters: CallCounters | None = None,
    ) -> None:
        self.token_usage = meter.create_histogram(
            sc.METRIC_TOKEN_USAGE, sc.UNIT_TOKEN, "Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=list(sc.TOKEN_BUCKETS),
        )  # fmt: skip
        self.duration = meter.create_histogram(
            sc.METRIC_OPERATION_DURATION, sc.UNIT_SECONDS, "GenAI operation duration.",
            explicit_bucket_boundaries_advisory=list(sc.DURATION_BUCKETS),
        )  # fmt: skip
        self.ttfc = meter.create_histogram(
            sc.METRIC_TIME_TO_FIRST_CHUNK, sc.UNIT_SECONDS,
            "Time from the start of a streamed call to the first chunk delivered to the caller.",
            explicit_bucket_boundaries_advisory=list(sc.TIME_TO_FIRST_CHUNK_BUCKETS),
        )  # fmt: skip
        self.tpoc = meter.create_histogram(
            sc.METRIC_TIME_PER_OUTPUT_CHUNK, sc.UNIT_SECONDS,
            "Mean time between consecutive chunks of a streamed call, after the first.",
            explicit_bucket_boundaries_advisory=list(sc.TIME_PER_CHUNK_BUCKETS),
        )  # fmt: skip
        self.utilization = meter.create_histogram(
            sc.METRIC_CONTEXT_UTILIZATION, "1", "Input tokens as a share of the model's context window.",
            explicit_bucket_boundaries_advisory=list(sc.UTILIZATION_BUCKETS),
        )  # fmt: skip
        # `counters`: the sums so far, observed on this provider too (a meter provider taken later)
        self.counters = _counters_for(meter_provider, meter, counters)


# One registration of the observable counters per MeterProvider, shared by every Recorder made on
# it: the SDK keeps calling only the first registration's callbacks for a name, so a Recorder of a
# later `instrument()` adds to the same sums, and the counters keep moving.
_counters_by_provider: weakref.WeakKeyDictionary[object, CallCounters] = weakref.WeakKeyDictionary()


def _counters_for(
    meter_provider: metrics.MeterProvider | None, meter: metrics.Meter, carried: CallCounters | None
) -> CallCounters:
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    try:
        counters = _counters_by_provider.get(provider)
    except TypeError:  # a provider that cannot be weakly referenced: register on it every time
        counters = None
    if counters is not None:
        return counters
    counters = carried if carried is not None else CallCounters()
    meter.create_observable_counter(
        sc.METRIC_TOKENS, [partial(_observe_tokens, counters)], sc.UNIT_TOKEN, "Tokens by disjoint bucket."
    )
    meter.create_observable_counter(
        sc.METRIC_COST, [partial(_observe_cost, counters)], sc.UNIT_USD, "Cost of LLM calls in US dollars."
    )
    meter.create_observable_counter(
        sc.METRIC_UNPRICED,
        [partial(_observe_unpriced, counters)],
        sc.UNIT_REQUEST,
        "LLM calls with usage but no known price.",
    )
    meter.create_observable_counter(
        sc.METRIC_USAGE_MISSING,
        [partial(_observe_usage_missing, counters)],
        sc.UNIT_REQUEST,
        "LLM calls that ended without error and without usage: tokens and cost unknown.",
    )
    try:
        _counters_by_provider[provider] = counters
    except TypeError:
        pass
    return counters


def _observe_tokens(
    counters: CallCounters, options: metrics.CallbackOptions
) -> Iterator[metrics.Observation]:
    for s in counters.series():
        attrs = s.attributes
        yield metrics.Observation(s.input, {**attrs, sc.LLM_TOKEN_TYPE: "input"})
        yield metrics.Observation(s.output, {**attrs, sc.LLM_TOKEN_TYPE: "output"})
        yield metrics.Observation(s.cache_read, {**attrs, sc.LLM_TOKEN_TYPE: "cache_read"})
        if s.cache_write:
            yield metrics.Observation(s.cache_write, {**attrs, sc.LLM_TOKEN_TYPE: "cache_write"})
        if s.reasoning:
            yield metrics.Observation(s.reasoning, {**attrs, sc.LLM_TOKEN_TYPE: "reasoning"})
        if s.audio_input:
            yield metrics.Observation(s.audio_input, {**attrs, sc.LLM_TOKEN_TYPE: "audio_input"})
        if s.audio_output:
            yield metrics.Observation(s.audio_output, {**attrs, sc.LLM_TOKEN_TYPE: "audio_output"})


def _observe_cost(counters: CallCounters, options: metrics.CallbackOptions) -> Iterator[metrics.Observation]:
    for s in counters.series():
        if s.cost is not None:
            yield metrics.Observation(s.cost, s.attributes)


def _observe_unpriced(
    counters: CallCounters, options: metrics.CallbackOptions
) -> Iterator[metrics.Observation]:
    for s in counters.series():
        if s.unpriced:
            yield metrics.Observation(s.unpriced, s.attributes)


def _observe_usage_missing(
    counters: CallCounters, options: metrics.CallbackOptions
) -> Iterator[metrics.Observation]:
    for attrs, calls in counters.missing():
        yield metrics.Observation(calls, attrs)
