"""Budgets: raise before the next request is sent, warn once, span events, the callback."""

from __future__ import annotations

import logging
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from opentelemetry.sdk.trace import ReadableSpan

from emulators import Reply
from otel_llm_usage import Budget, BudgetExceeded
from otel_llm_usage._guard import reported_sites
from otel_llm_usage.runs import run, session, session_usage, usage_summary
from otel_llm_usage.semconv import BUDGET_EXCEEDED_EVENT
from tests.conftest import Telemetry

MSGS: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
CALL_COST = 1000 * 2.5e-6 + 100 * 10e-6  # 0.0035 USD per call below


def client(emu: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=emu.base_url, api_key="sk-test", max_retries=0)


def chat(c: openai.OpenAI, emu: Any) -> None:
    emu.push(Reply(prompt_tokens=1000, completion_tokens=100))
    c.chat.completions.create(model="gpt-4o", messages=MSGS)


def sent(emu: Any) -> int:
    return len([r for r in emu.requests if r.path.endswith("/chat/completions")])


def events(span: ReadableSpan) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == BUDGET_EXCEEDED_EVENT]


def span_named(t: Telemetry, name: str) -> ReadableSpan:
    (span,) = [s for s in t.spans() if s.name == name]
    return span


def test_run_budget_raises_on_the_next_call_before_it_is_sent(
    instrument_with: Any, openai_emulator: Any
) -> None:
    t = instrument_with(budgets=[Budget(max_cost_usd=0.005, scope="run", action="raise")])
    c = client(openai_emulator)
    with run("spender") as r:
        chat(c, openai_emulator)  # 0.0035: under
        chat(c, openai_emulator)  # 0.0070: over, but already sent
        with pytest.raises(BudgetExceeded) as info:
            chat(c, openai_emulator)
    assert sent(openai_emulator) == 2
    exc = info.value
    assert (exc.scope, exc.key, exc.limit_usd) == ("run", "spender", 0.005)
    assert exc.spent_usd == pytest.approx(2 * CALL_COST, abs=1e-12)
    assert r.usage.requests == 2
    assert len(t.llm_spans()) == 2, "a call refused by a budget records no LLM span"
    with run("fresh") as fresh:  # another run has its own budget
        chat(c, openai_emulator)
    assert fresh.usage.requests == 1


def test_per_run_budget_and_agent_filter(instrument_with: Any, openai_emulator: Any) -> None:
    instrument_with(budgets=[Budget(max_cost_usd=0.001, scope="run", action="raise", agent="planner")])
    c = client(openai_emulator)
    with run("helper"):  # the global budget is for planner runs only
        chat(c, openai_emulator)
        chat(c, openai_emulator)
    with run("planner"):
        chat(c, openai_emulator)
        with pytest.raises(BudgetExceeded):
            chat(c, openai_emulator)
    with run("helper", budgets=[Budget(max_cost_usd=0.003, action="raise")]):
        chat(c, openai_emulator)
        with pytest.raises(BudgetExceeded) as info:
            chat(c, openai_emulator)
    assert info.value.key == "helper" and info.value.limit_usd == 0.003


def test_enclosing_run_budget_stops_calls_in_nested_runs(instrument_with: Any, openai_emulator: Any) -> None:
    instrument_with()
    c = client(openai_emulator)
    with run("outer", budgets=[Budget(max_cost_usd=0.005, action="raise")]):
        with run("inner-1"):
            chat(c, openai_emulator)
        with run("inner-2"):
            chat(c, openai_emulator)
        with run("inner-3"), pytest.raises(BudgetExceeded) as info:
            chat(c, openai_emulator)
    assert info.value.key == "outer"
    assert sent(openai_emulator) == 2


def test_session_budget_spans_runs_and_requests(instrument_with: Any, openai_emulator: Any) -> None:
    instrument_with()
    c = client(openai_emulator)
    limit = [Budget(max_cost_usd=0.006, scope="session", action="raise")]
    with session("conv-budget", budgets=limit), run("a"):
        chat(c, openai_emulator)
    with session("conv-budget"), run("b"):  # a later request of the same conversation
        chat(c, openai_emulator)
        with pytest.raises(BudgetExceeded) as info:
            chat(c, openai_emulator)
    assert (info.value.scope, info.value.key) == ("session", "conv-budget")
    with session("conv-other"):
        chat(c, openai_emulator)
    s = session_usage("conv-budget")
    assert s is not None and s.requests == 2


def test_global_session_and_process_budgets(instrument_with: Any, openai_emulator: Any) -> None:
    instrument_with(
        budgets=[
            Budget(max_cost_usd=0.004, scope="session", action="raise"),
            Budget(max_cost_usd=0.012, scope="process", action="raise"),
        ]
    )
    c = client(openai_emulator)
    for sid in ("s1", "s2"):
        with session(sid):
            chat(c, openai_emulator)
            chat(c, openai_emulator)
            with pytest.raises(BudgetExceeded) as info:
                chat(c, openai_emulator)
            assert info.value.scope == "session"
    with session("s3"), pytest.raises(BudgetExceeded) as info:
        chat(c, openai_emulator)
    assert (info.value.scope, info.value.key) == ("process", None)
    assert usage_summary().total.requests == 4


def test_warn_logs_once_adds_a_span_event_and_never_blocks(
    instrument_with: Any, openai_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    t = instrument_with(budgets=[Budget(max_cost_usd=0.005, scope="run", action="warn")])
    c = client(openai_emulator)
    with caplog.at_level(logging.WARNING, logger="otel_llm_usage"):
        with run("chatty") as r:
            for _ in range(4):
                chat(c, openai_emulator)
        with run("chatty"):
            for _ in range(2):
                chat(c, openai_emulator)
    assert r.usage.requests == 4 and sent(openai_emulator) == 6
    warnings = [rec for rec in caplog.records if "budget exceeded" in rec.getMessage()]
    assert len(warnings) == 2, "once per run instance"
    spans = [s for s in t.spans() if s.name == "invoke_agent chatty"]
    (ev,) = events(spans[0])
    assert ev == {
        "llm_usage.budget.scope": "run",
        "llm_usage.budget.key": "chatty",
        "llm_usage.budget.limit_usd": 0.005,
        "llm_usage.budget.spent_usd": pytest.approx(2 * CALL_COST, abs=1e-12),
        "llm_usage.budget.action": "warn",
    }
    assert len(events(spans[1])) == 1


def test_session_warn_event_goes_on_the_run_span_of_the_call(
    instrument_with: Any, openai_emulator: Any
) -> None:
    t = instrument_with()
    c = client(openai_emulator)
    with session("conv-warn", budgets=[Budget(max_cost_usd=0.001, action="warn")]), run("r"):
        chat(c, openai_emulator)
        chat(c, openai_emulator)
    (ev,) = events(span_named(t, "invoke_agent r"))
    assert ev["llm_usage.budget.scope"] == "session" and ev["llm_usage.budget.key"] == "conv-warn"


def test_callback_receives_each_crossing_once(instrument_with: Any, openai_emulator: Any) -> None:
    got: list[dict[str, Any]] = []
    instrument_with(
        budgets=[
            Budget(max_cost_usd=0.004, scope="run", action="warn"),
            Budget(max_cost_usd=0.006, scope="process", action="raise"),
        ],
        budget_callback=got.append,
    )
    c = client(openai_emulator)
    with run("cb") as r:
        chat(c, openai_emulator)
        chat(c, openai_emulator)
        with pytest.raises(BudgetExceeded):
            chat(c, openai_emulator)
    assert [(g["scope"], g["action"]) for g in got] == [("run", "warn"), ("process", "raise")]
    run_info = got[0]
    assert run_info["key"] == "cb" and run_info["run_id"] == r.run_id and run_info["agent"] == "cb"
    assert run_info["limit_usd"] == 0.004
    assert run_info["spent_usd"] == pytest.approx(2 * CALL_COST, abs=1e-12)
    assert isinstance(run_info["budget"], Budget)


def test_a_failing_callback_is_logged_once_and_never_reaches_the_app(
    instrument_with: Any, openai_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    calls = []

    def broken(info: dict[str, Any]) -> None:
        calls.append(info)
        raise RuntimeError("callback bug")

    instrument_with(budgets=[Budget(max_cost_usd=0.0, scope="run", action="warn")], budget_callback=broken)
    c = client(openai_emulator)
    with caplog.at_level(logging.WARNING, logger="otel_llm_usage"):
        for name in ("x", "y"):
            with run(name) as r:
                chat(c, openai_emulator)
                chat(c, openai_emulator)
            assert r.usage.requests == 2
    assert len(calls) == 2
    errors = [rec for rec in caplog.records if rec.exc_info and "callback bug" in str(rec.exc_info[1])]
    assert len(errors) <= 1 and "budget_callback" in reported_sites()
    assert sent(openai_emulator) == 4


def test_budget_exceeded_is_raised_from_async_calls_too(instrument_with: Any, openai_emulator: Any) -> None:
    import asyncio

    instrument_with()
    ac = openai.AsyncOpenAI(base_url=openai_emulator.base_url, api_key="sk-test", max_retries=0)

    async def main() -> None:
        async with run("async-spender", budgets=[Budget(max_cost_usd=0.001, action="raise")]):
            openai_emulator.push(Reply(prompt_tokens=1000, completion_tokens=100))
            await ac.chat.completions.create(model="gpt-4o", messages=MSGS)
            with pytest.raises(BudgetExceeded):
                await ac.chat.completions.create(model="gpt-4o", messages=MSGS)

    asyncio.run(main())
    assert sent(openai_emulator) == 1
