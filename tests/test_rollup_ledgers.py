"""The rollup's ledgers and budgets, fed plain call records: no LLM client, no tracer, no emulator."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_llm_usage import Budget, BudgetExceeded
from otel_llm_usage import semconv as sc
from otel_llm_usage.config import Options
from otel_llm_usage.context import Attribution, current_attribution
from otel_llm_usage.listener import EndedCall
from otel_llm_usage.recorder import CallRequest
from otel_llm_usage.rollup import Rollup, Run
from otel_llm_usage.usage import TokenUsage

MS = 1_000_000  # ns


def ended(
    input_tokens: int,
    output_tokens: int,
    cost: float | None,
    *,
    start_ms: int = 0,
    end_ms: int = 10,
    first_ms: int | None = None,
    agent: str | None = None,
    session_id: str | None = None,
    error: bool = False,
    utilization: float | None = None,
) -> EndedCall:
    return EndedCall(
        model="m-1",
        usage=TokenUsage(input=input_tokens, output=output_tokens),
        cost_usd=cost,
        error=error,
        start_ns=start_ms * MS,
        end_ns=end_ms * MS,
        first_output_ns=first_ms * MS if first_ms is not None else None,
        context_utilization=utilization,
        agent=agent,
        session_id=session_id,
        attributes={},
    )


def make(**options: Any) -> tuple[Rollup, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    return Rollup(Options(**options), MeterProvider(metric_readers=[reader])), reader


def metric_points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    out: list[Any] = []
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == name:
                    out.extend(m.data.data_points)
    return out


@contextmanager
def inside(run: Run | None = None, session_id: str | None = None) -> Iterator[None]:
    token = current_attribution.set(Attribution(session_id=session_id, run=run))
    try:
        yield
    finally:
        current_attribution.reset(token)


def call(rollup: Rollup, record: EndedCall, *, check_budgets: bool = True) -> dict[str, Any]:
    """One call through the listener, as the recorder makes it: the attributes it started with."""
    attrs: dict[str, Any] = {}
    state = rollup.call_starting(CallRequest("chat", "test", "m-1"), attrs, check_budgets)
    rollup.call_ended(record, state)
    return attrs


def test_a_call_counts_once_in_every_run_above_it_and_in_its_session_agent_and_process() -> None:
    rollup, _ = make()
    outer = Run("outer", "planner", run_id="r1", session_id="s1")
    inner = Run("inner", "coder", run_id="r2", session_id="s1", parent=outer)
    with inside(outer):
        attrs = call(rollup, ended(100, 10, 0.5))
    assert attrs == {sc.SESSION_ID: "s1", sc.CONVERSATION_ID: "s1", sc.AGENT_NAME: "planner"}
    with inside(inner):
        call(rollup, ended(1000, 100, 0.25))
    assert (outer.usage.requests, outer.usage.input_tokens, outer.usage.cost_usd) == (2, 1100, 0.75)
    assert (inner.usage.requests, inner.usage.output_tokens) == (1, 100)
    session = rollup.session_usage("s1")
    assert session is not None and (session.requests, session.cost_usd) == (2, 0.75)
    summary = rollup.summary()
    assert summary.total.requests == 2 and summary.total.input_tokens == 1100
    assert {r.name: r.requests for r in summary.by_agent} == {"planner": 1, "coder": 1}


def test_a_call_after_its_run_ended_counts_in_the_session_and_as_late() -> None:
    rollup, reader = make()
    r = Run("r", "agent-a", run_id="r1", session_id="s-late")
    with inside(r):
        state = rollup.call_starting(CallRequest("chat", "test", "m-1"), {}, True)
    rollup.close_run(r, 1.0, None)
    rollup.call_ended(ended(5, 5, 0.1), state)
    assert r.closed and r.usage.requests == 0
    session = rollup.session_usage("s-late")
    assert session is not None and session.requests == 1
    (late,) = metric_points(reader, sc.METRIC_LATE_SPANS)
    assert (late.value, dict(late.attributes)) == (1, {sc.AGENT_NAME: "agent-a"})


def test_run_latency_is_the_union_of_its_calls_and_its_first_output() -> None:
    rollup, reader = make()
    r = Run("r", "a", run_id="r1")
    t0_ms = r.start_ns // MS
    with inside(r):
        call(rollup, ended(1, 1, 0.0, start_ms=t0_ms + 10, end_ms=t0_ms + 30, first_ms=t0_ms + 12))
        call(rollup, ended(1, 1, 0.0, start_ms=t0_ms + 20, end_ms=t0_ms + 40, utilization=0.5))
        call(rollup, ended(1, 1, 0.0, start_ms=t0_ms + 100, end_ms=t0_ms + 110, utilization=0.25))
    written: dict[str, Any] = {}
    rollup.close_run(r, 2.0, written.update)
    assert written[sc.RUN_LLM_DURATION] == pytest.approx(0.040)  # [10, 40] and [100, 110]
    assert written[sc.RUN_TIME_TO_FIRST_TOKEN] == pytest.approx(0.012, abs=1e-3)
    assert written[sc.RUN_MAX_CONTEXT_UTILIZATION] == 0.5
    assert (written[sc.RUN_REQUESTS], written[sc.RUN_INPUT_TOKENS]) == (3, 3)
    (duration,) = metric_points(reader, sc.METRIC_RUN_DURATION)
    assert duration.sum == 2.0
    rollup.close_run(r, 2.0, written.update)  # a second close records nothing
    (requests,) = metric_points(reader, sc.METRIC_RUN_REQUESTS)
    assert requests.count == 1


def test_a_spent_raise_budget_refuses_the_next_call_and_a_warn_budget_reports_once() -> None:
    seen: list[dict[str, Any]] = []
    rollup, _ = make(
        budgets=(Budget(1.0, scope="session", action="warn"), Budget(2.0, scope="process", action="raise")),
        budget_callback=seen.append,
    )
    with inside(session_id="s-b"):
        call(rollup, ended(1, 1, 1.5, session_id="s-b"))
        call(rollup, ended(1, 1, 0.25, session_id="s-b"))
        assert [(i["scope"], i["key"], i["spent_usd"]) for i in seen] == [("session", "s-b", 1.5)]
        call(rollup, ended(1, 1, 0.5, session_id="s-b"))  # process now at 2.25 > 2.0
        with pytest.raises(BudgetExceeded) as refused:
            call(rollup, ended(1, 1, 0.1, session_id="s-b"))
        assert (refused.value.scope, refused.value.spent_usd) == ("process", 2.25)
        call(rollup, ended(1, 1, 0.1, session_id="s-b"), check_budgets=False)  # a recorded call
    assert rollup.summary().total.requests == 4
    assert [i["scope"] for i in seen] == ["session", "process"]


def test_a_run_budget_limits_only_its_agent() -> None:
    rollup, _ = make(budgets=(Budget(0.5, action="raise", agent="a"),))
    a, b = Run("a", "a", run_id="ra"), Run("b", "b", run_id="rb")
    with inside(a):
        call(rollup, ended(1, 1, 1.0))
        with pytest.raises(BudgetExceeded):
            call(rollup, ended(1, 1, 1.0))
    with inside(b):
        call(rollup, ended(1, 1, 1.0))
        call(rollup, ended(1, 1, 1.0))
    assert (a.usage.requests, b.usage.requests) == (1, 2)


def test_sessions_beyond_the_bound_are_evicted_and_recorded_once() -> None:
    rollup, reader = make(max_sessions=2)
    for sid in ("s1", "s2", "s3"):
        call(rollup, ended(10, 1, 0.1, session_id=sid))
    assert rollup.session_usage("s1") is None
    assert {r.name for r in rollup.summary().by_session} == {"s2", "s3"}
    (requests,) = metric_points(reader, sc.METRIC_SESSION_REQUESTS)
    assert (requests.count, requests.sum) == (1, 1)
    rollup.stop()
    (requests,) = metric_points(reader, sc.METRIC_SESSION_REQUESTS)
    assert (requests.count, requests.sum) == (3, 3)
    call(rollup, ended(10, 1, 0.1, session_id="s4"))  # stopped: nothing counts
    assert rollup.summary().total.requests == 3


def test_a_session_expiring_while_the_budget_gauges_are_read_records_its_histograms() -> None:
    """The gauges' callback drops idle sessions as every read does, recording their histograms from
    inside a metric collection, which must neither deadlock nor lose them."""
    now = [0.0]
    reader = InMemoryMetricReader()
    options = Options(budgets=(Budget(max_cost_usd=1.0, scope="session"),), session_idle_seconds=60.0)
    rollup = Rollup(options, MeterProvider(metric_readers=[reader]), clock=lambda: now[0])
    with inside(session_id="idle"):
        call(rollup, ended(10, 1, 0.25, session_id="idle"))
    (spent,) = metric_points(reader, sc.METRIC_BUDGET_SPENT)
    assert spent.value == 0.25
    now[0] = 61.0
    data = reader.get_metrics_data()
    names = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    (spent,) = names[sc.METRIC_BUDGET_SPENT].data.data_points
    assert spent.value == 0.0, "the expired session no longer counts"
    (cost,) = metric_points(reader, sc.METRIC_SESSION_COST)
    assert (cost.count, cost.sum) == (1, 0.25)
