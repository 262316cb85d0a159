"""Budgets you can see and trust: the budget gauges, the tightest limit refused with, record_call()."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

import otel_llm_usage
from emulators import Reply
from otel_llm_usage import Budget, BudgetExceeded, close_session, record_call, run, session, session_usage
from otel_llm_usage import semconv as sc
from tests.conftest import Telemetry, make_telemetry

MSGS: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
CALL_COST = 1000 * 2.5e-6 + 100 * 10e-6  # 0.0035 USD: one gpt-4o call of 1,000 in and 100 out
SPENT, LIMIT = sc.METRIC_BUDGET_SPENT, sc.METRIC_BUDGET_LIMIT
ALLOWED_LABELS = {sc.BUDGET_SCOPE, sc.BUDGET_ACTION, sc.AGENT_NAME, sc.BUDGET_TENANT_ID}


def client(emu: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=emu.base_url, api_key="sk-test", max_retries=0)


def chat(c: openai.OpenAI, emu: Any) -> None:
    emu.push(Reply(prompt_tokens=1000, completion_tokens=100))
    c.chat.completions.create(model="gpt-4o", messages=MSGS)


def record(n: int = 1) -> None:
    """`n` calls of CALL_COST each, recorded by hand."""
    for _ in range(n):
        record_call(model="gpt-4o", provider="openai", input_tokens=1000, output_tokens=100)


def gauges(t: Telemetry) -> dict[frozenset[tuple[str, Any]], tuple[float, float]]:
    """(spent, limit) by label set, from one collection."""
    data = t.reader.get_metrics_data()
    spent: dict[frozenset[tuple[str, Any]], float] = {}
    limit: dict[frozenset[tuple[str, Any]], float] = {}
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name in (SPENT, LIMIT):
                    assert m.unit == "USD"
                    for p in m.data.data_points:
                        (spent if m.name == SPENT else limit)[frozenset((p.attributes or {}).items())] = (
                            p.value
                        )
    assert spent.keys() == limit.keys()
    return {k: (spent[k], limit[k]) for k in spent}


def key(scope: str, action: str = "warn", **labels: str) -> frozenset[tuple[str, Any]]:
    out = {sc.BUDGET_SCOPE: scope, sc.BUDGET_ACTION: action}
    out.update({k.replace("__", "."): v for k, v in labels.items()})
    return frozenset(out.items())


def test_every_configured_budget_has_a_series_from_the_start(instrument_with: Any) -> None:
    t = instrument_with(
        budgets=[
            Budget(max_cost_usd=2.0, scope="process", action="raise"),
            Budget(max_cost_usd=0.5, scope="session"),
            Budget(max_cost_usd=0.25, scope="run", action="raise"),
            Budget(max_cost_usd=0.125, scope="run", agent="planner"),
        ]
    )
    assert gauges(t) == {
        key("process", "raise"): (0.0, 2.0),
        key("session"): (0.0, 0.5),
        key("run", "raise"): (0.0, 0.25),
        key("run", gen_ai__agent__name="planner"): (0.0, 0.125),
    }


def test_no_budget_no_series(telemetry: Telemetry) -> None:
    with run("free"):
        record()
    assert gauges(telemetry) == {}


def test_process_budget_spent_follows_every_call(instrument_with: Any, openai_emulator: Any) -> None:
    t = instrument_with(budgets=[Budget(max_cost_usd=1.0, scope="process")])
    c = client(openai_emulator)
    chat(c, openai_emulator)
    with session("s"), run("r"):
        chat(c, openai_emulator)
    assert gauges(t) == {key("process"): (pytest.approx(2 * CALL_COST, abs=1e-15), 1.0)}


def test_run_budgets_show_the_open_run_nearest_its_limit(instrument_with: Any) -> None:
    """Two runs open at once, each with its own budget: the series shows the one nearer its limit,
    by spent / limit rather than by spend; once both end it is gone, while the global run budget
    stays, at 0."""
    t = instrument_with(budgets=[Budget(max_cost_usd=0.02, scope="run")])
    both_spent = asyncio.Event()
    looked = asyncio.Event()
    spent_here: list[str] = []

    async def worker(name: str, calls: int, limit: float) -> None:
        async with run(name, agent="worker", budgets=[Budget(max_cost_usd=limit)]):
            record(calls)
            spent_here.append(name)
            if len(spent_here) == 2:
                both_spent.set()
            await looked.wait()

    async def main() -> dict[frozenset[tuple[str, Any]], tuple[float, float]]:
        tasks = [
            asyncio.create_task(worker("big", 2, 0.01)),  # 0.007 of 0.01: 70 %
            asyncio.create_task(worker("small", 1, 0.004)),  # 0.0035 of 0.004: 87.5 %
        ]
        await both_spent.wait()
        seen = gauges(t)
        looked.set()
        await asyncio.gather(*tasks)
        return seen

    seen = asyncio.run(main())
    assert seen == {
        key("run", gen_ai__agent__name="worker"): (pytest.approx(CALL_COST, abs=1e-15), 0.004),
        key("run"): (pytest.approx(2 * CALL_COST, abs=1e-15), 0.02),  # the global one: most spent
    }
    assert gauges(t) == {key("run"): (0.0, 0.02)}


def test_session_budgets_show_the_held_session_nearest_its_limit(instrument_with: Any) -> None:
    t = instrument_with(budgets=[Budget(max_cost_usd=0.01, scope="session")])
    with session("a"):
        record(2)
    with session("b", budgets=[Budget(max_cost_usd=0.005, action="raise")]):
        record(1)
    assert gauges(t) == {
        key("session"): (pytest.approx(2 * CALL_COST, abs=1e-15), 0.01),
        key("session", "raise"): (pytest.approx(CALL_COST, abs=1e-15), 0.005),
    }
    assert close_session("a") and close_session("b")
    assert gauges(t) == {key("session"): (0.0, 0.01)}


def test_no_session_or_run_id_label_unless_opted_in(instrument_with: Any) -> None:
    t = instrument_with(budgets=[Budget(max_cost_usd=1.0, scope="session"), Budget(max_cost_usd=1.0)])
    for sid in ("s1", "s2", "s3"):
        with session(sid, attributes={"tenant.id": "acme"}), run("r"):
            record()
    points = gauges(t)
    assert len(points) == 2
    for labels in points:
        assert {k for k, _ in labels} <= ALLOWED_LABELS
    otel_llm_usage.uninstrument()

    t = instrument_with(
        budgets=[Budget(max_cost_usd=1.0, scope="session")], metric_attributes=[sc.SESSION_ID, "tenant.id"]
    )
    for n, sid in enumerate(("s1", "s2"), start=1):
        with session(sid, attributes={"tenant.id": "acme"}):
            record(n)
    assert gauges(t) == {
        key("session", session__id="s1", tenant__id="acme"): (pytest.approx(CALL_COST, abs=1e-15), 1.0),
        key("session", session__id="s2", tenant__id="acme"): (pytest.approx(2 * CALL_COST, abs=1e-15), 1.0),
    }


def test_gauges_follow_reinstrumentation_on_one_meter_provider(instrument_with: Any) -> None:
    t = instrument_with(budgets=[Budget(max_cost_usd=1.0, scope="process")])
    record()
    otel_llm_usage.uninstrument()
    assert gauges(t) == {}
    otel_llm_usage.instrument(
        tracer_provider=t.tracer_provider,
        meter_provider=t.meter_provider,
        budgets=[Budget(max_cost_usd=3.0, scope="process", action="raise")],
    )
    record()
    assert gauges(t) == {key("process", "raise"): (pytest.approx(CALL_COST, abs=1e-15), 3.0)}


def test_the_tightest_crossed_limit_is_named(instrument_with: Any, openai_emulator: Any) -> None:
    """A process-wide run budget of $0.005 and a tighter per-run budget of $0.001, both crossed."""
    instrument_with(budgets=[Budget(max_cost_usd=0.005, scope="run", action="raise")])
    c = client(openai_emulator)
    with run("tight", budgets=[Budget(max_cost_usd=0.001, action="raise")]) as r:
        with pytest.raises(BudgetExceeded):
            record(1)  # 0.0035: over the per-run limit only
        with pytest.raises(BudgetExceeded) as info:
            record(1)  # 0.007: over both
        assert (info.value.scope, info.value.limit_usd) == ("run", 0.001)
        with pytest.raises(BudgetExceeded) as refused:
            chat(c, openai_emulator)
        assert refused.value.limit_usd == 0.001
        assert refused.value.spent_usd == pytest.approx(2 * CALL_COST, abs=1e-15)
    assert r.usage.requests == 2 and not openai_emulator.requests


def test_the_smallest_limit_wins_across_scopes(instrument_with: Any) -> None:
    instrument_with(
        budgets=[
            Budget(max_cost_usd=0.006, scope="run", action="raise"),
            Budget(max_cost_usd=0.002, scope="session", action="raise"),
            Budget(max_cost_usd=0.004, scope="process", action="raise"),
            Budget(max_cost_usd=0.0001, scope="run", action="warn"),  # never refuses
        ]
    )
    with session("sess"), run("r"), pytest.raises(BudgetExceeded) as info:
        try:
            record(1)
        except BudgetExceeded as first:
            assert (first.scope, first.limit_usd) == ("session", 0.002)
        record(1)  # 0.007: all three over
    assert (info.value.scope, info.value.key, info.value.limit_usd) == ("session", "sess", 0.002)


def test_record_call_records_first_then_raises(telemetry: Telemetry, openai_emulator: Any) -> None:
    limit = [Budget(max_cost_usd=0.005, scope="session", action="raise")]
    with session("tracker", budgets=limit):
        record(1)  # 0.0035: under
        with pytest.raises(BudgetExceeded) as info:
            record(1)  # 0.007: recorded, then stopped
        with pytest.raises(BudgetExceeded):
            record(1)  # still over: recorded and stopped again
        # the context-manager form is refused before the block
        with pytest.raises(BudgetExceeded), record_call(model="gpt-4o", provider="openai") as call:
            call.set_usage(input_tokens=1, output_tokens=1)
        with pytest.raises(BudgetExceeded):  # as a patched client's call is
            chat(client(openai_emulator), openai_emulator)
    assert (info.value.scope, info.value.key, info.value.limit_usd) == ("session", "tracker", 0.005)
    assert info.value.spent_usd == pytest.approx(2 * CALL_COST, abs=1e-15)
    usage = session_usage("tracker")
    assert usage is not None and usage.requests == 3, "every recorded call counts"
    assert len(telemetry.llm_spans()) == 3 and not openai_emulator.requests


def test_record_call_never_raises_for_warn_budgets_or_outside_the_scope(instrument_with: Any) -> None:
    instrument_with(
        budgets=[
            Budget(max_cost_usd=0.001, scope="process", action="warn"),
            Budget(max_cost_usd=0.001, scope="run", action="raise", agent="planner"),
        ]
    )
    record(3)
    with run("writer"):
        record(2)
    with run("planner"), pytest.raises(BudgetExceeded):
        record(1)
    assert otel_llm_usage.usage_summary().total.requests == 6


def test_each_meter_provider_has_gauges_of_its_own() -> None:
    """A later pipeline on another MeterProvider reports there; the first one's gauges go quiet."""
    first = make_telemetry(budgets=[Budget(max_cost_usd=1.0, scope="process")])
    try:
        record()
        assert gauges(first) == {key("process"): (pytest.approx(CALL_COST, abs=1e-15), 1.0)}
    finally:
        otel_llm_usage.uninstrument()
    second = make_telemetry(budgets=[Budget(max_cost_usd=2.0, scope="process")])
    try:
        assert gauges(second) == {key("process"): (0.0, 2.0)}
        assert gauges(first) == {}
    finally:
        otel_llm_usage.uninstrument()


def test_a_run_of_another_instrumentation_shows_on_the_run_budget(instrument_with: Any) -> None:
    """An `invoke_agent` span that another instrumentation (a framework's own) opens is a run too."""
    t = instrument_with(budgets=[Budget(max_cost_usd=0.01, scope="run", agent="framework-agent")])
    tracer = t.tracer_provider.get_tracer("a-framework")
    attrs = {sc.OPERATION_NAME: sc.OP_INVOKE_AGENT, sc.AGENT_NAME: "framework-agent"}
    with tracer.start_as_current_span("invoke_agent framework-agent", attributes=attrs):
        record(2)
        assert gauges(t) == {
            key("run", gen_ai__agent__name="framework-agent"): (pytest.approx(2 * CALL_COST, abs=1e-15), 0.01)
        }
    assert gauges(t) == {key("run", gen_ai__agent__name="framework-agent"): (0.0, 0.01)}
