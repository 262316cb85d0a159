"""The run and session histograms, and the late-call counter."""

from __future__ import annotations

from typing import Any

from opentelemetry import metrics

from .. import semconv as sc
from .._guard import report
from ..usage import Usage
from ..version import INSTRUMENTATION_NAME, __version__
from .budget_gauges import gauge_source
from .sessions import SessionLedger


class RollupMetrics:
    def __init__(self, meter_provider: metrics.MeterProvider | None) -> None:
        meter = metrics.get_meter(INSTRUMENTATION_NAME, __version__, meter_provider, schema_url=sc.SCHEMA_URL)
        count = list(sc.COUNT_BUCKETS)
        self._run_cost = meter.create_histogram(
            sc.METRIC_RUN_COST, sc.UNIT_USD, "Cost of the LLM calls of one run.",
            explicit_bucket_boundaries_advisory=list(sc.COST_BUCKETS),
        )  # fmt: skip
        self._run_tokens = meter.create_histogram(
            sc.METRIC_RUN_TOKENS, sc.UNIT_TOKEN, "Input plus output tokens of the LLM calls of one run.",
            explicit_bucket_boundaries_advisory=list(sc.TOKEN_BUCKETS),
        )  # fmt: skip
        self._run_requests = meter.create_histogram(
            sc.METRIC_RUN_REQUESTS, sc.UNIT_REQUEST, "LLM calls of one run.",
            explicit_bucket_boundaries_advisory=count,
        )  # fmt: skip
        self._run_duration = meter.create_histogram(
            sc.METRIC_RUN_DURATION, sc.UNIT_SECONDS, "Duration of one run.",
            explicit_bucket_boundaries_advisory=list(sc.RUN_DURATION_BUCKETS),
        )  # fmt: skip
        self._run_ttft = meter.create_histogram(
            sc.METRIC_RUN_TIME_TO_FIRST_TOKEN, sc.UNIT_SECONDS,
            "Time from the start of a run to its first LLM output (first chunk, or end of a plain call).",
            explicit_bucket_boundaries_advisory=list(sc.TIME_TO_FIRST_CHUNK_BUCKETS),
        )  # fmt: skip
        self._session_cost = meter.create_histogram(
            sc.METRIC_SESSION_COST, sc.UNIT_USD, "Cost of the LLM calls of one closed session.",
            explicit_bucket_boundaries_advisory=list(sc.COST_BUCKETS),
        )  # fmt: skip
        self._session_tokens = meter.create_histogram(
            sc.METRIC_SESSION_TOKENS, sc.UNIT_TOKEN, "Input plus output tokens of one closed session.",
            explicit_bucket_boundaries_advisory=list(sc.TOKEN_BUCKETS),
        )  # fmt: skip
        self._session_requests = meter.create_histogram(
            sc.METRIC_SESSION_REQUESTS, sc.UNIT_REQUEST, "LLM calls of one closed session.",
            explicit_bucket_boundaries_advisory=count,
        )  # fmt: skip
        self._session_runs = meter.create_histogram(
            sc.METRIC_SESSION_RUNS, sc.UNIT_RUN, "Runs of one closed session.",
            explicit_bucket_boundaries_advisory=count,
        )  # fmt: skip
        self._late = meter.create_counter(
            sc.METRIC_LATE_SPANS, sc.UNIT_CALL, "LLM calls that ended after their run had ended."
        )
        self.budget_gauges = gauge_source(meter, meter_provider)

    def record_run(
        self, usage: Usage, duration_s: float | None, ttft_s: float | None, attrs: dict[str, Any]
    ) -> None:
        self._run_cost.record(usage.cost_usd, attrs)
        self._run_tokens.record(usage.input_tokens + usage.output_tokens, attrs)
        self._run_requests.record(usage.requests, attrs)
        if duration_s is not None:
            self._run_duration.record(duration_s, attrs)
        if ttft_s is not None:
            self._run_ttft.record(ttft_s, attrs)

    def record_sessions(self, sessions: list[SessionLedger]) -> None:
        for s in sessions:
            try:
                u, attrs = s.usage, s.metric_attrs
                self._session_cost.record(u.cost_usd, attrs)
                self._session_tokens.record(u.input_tokens + u.output_tokens, attrs)
                self._session_requests.record(u.requests, attrs)
                self._session_runs.record(s.runs, attrs)
            except Exception as exc:
                report("rollup.session_histograms", exc)

    def late_call(self, agent: str | None) -> None:
        self._late.add(1, {sc.AGENT_NAME: agent} if agent else {})
