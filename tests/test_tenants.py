"""Tenants, per-agent breakdowns inside runs and sessions, and reset_usage(), through the public API
with the real openai SDK against the OpenAI emulator."""

from __future__ import annotations

import threading
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

import otel_llm_usage
from emulators import Reply
from otel_llm_usage import (
    Budget,
    BudgetExceeded,
    record_call,
    reset_usage,
    run,
    session,
    session_usage,
    usage_summary,
)
from otel_llm_usage import semconv as sc
from tests.conftest import Telemetry

MSGS: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
# gpt-4o: $2.50 per million input tokens, $10 per million output tokens.
COST_1000_100 = 1000 * 2.5e-6 + 100 * 10e-6  # 0.0035


def client(emu: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=emu.base_url, api_key="sk-test", max_retries=0)


def chat(c: openai.OpenAI, emu: Any, prompt: int = 1000, completion: int = 100) -> None:
    emu.push(Reply(prompt_tokens=prompt, completion_tokens=completion))
    c.chat.completions.create(model="gpt-4o", messages=MSGS)


def sent(emu: Any) -> int:
    return len([r for r in emu.requests if r.path.endswith("/chat/completions")])


def rows(section: tuple[Any, ...]) -> dict[str, Any]:
    return {r.name: r for r in section}


# --- 18.1 tenants ---------------------------------------------------------------------------------


def test_tenant_id_is_inherited_by_runs_and_calls(telemetry: Telemetry, openai_emulator: Any) -> None:
    c = client(openai_emulator)
    with session("conv-1", tenant_id="acme"):
        chat(c, openai_emulator, 1000)
        with run("planner") as r:
            chat(c, openai_emulator, 2000)
    with run("solo", tenant_id="globex"):
        chat(c, openai_emulator, 3000)
    chat(c, openai_emulator, 4000)  # no tenant

    by_input = {s.attributes[sc.USAGE_INPUT_TOKENS]: dict(s.attributes or {}) for s in telemetry.llm_spans()}  # type: ignore[index]
    assert by_input[1000][sc.TENANT_ID] == "acme"
    assert by_input[2000][sc.TENANT_ID] == "acme"
    assert by_input[3000][sc.TENANT_ID] == "globex"
    assert sc.TENANT_ID not in by_input[4000]
    (planner,) = [s for s in telemetry.spans() if s.name == "invoke_agent planner"]
    assert dict(planner.attributes or {})[sc.TENANT_ID] == "acme"
    assert r.usage.requests == 1

    tenants = rows(usage_summary().by_tenant)
    assert set(tenants) == {"acme", "globex"}
    assert (tenants["acme"].requests, tenants["acme"].input_tokens) == (2, 3000)
    assert tenants["acme"].cost_usd == pytest.approx(3000 * 2.5e-6 + 200 * 10e-6, abs=1e-12)
    assert (tenants["globex"].requests, tenants["globex"].input_tokens) == (1, 3000)
    # Inner blocks replace the tenant; leaving them restores the outer one.
    with session("conv-2", tenant_id="acme"):
        with run("other", tenant_id="initech"):
            chat(c, openai_emulator, 5)
        chat(c, openai_emulator, 6)
    tenants = rows(usage_summary().by_tenant)
    assert (tenants["initech"].input_tokens, tenants["acme"].input_tokens) == (5, 3006)


def test_by_provider_counts_every_call_by_its_provider(telemetry: Telemetry, openai_emulator: Any) -> None:
    c = client(openai_emulator)
    chat(c, openai_emulator)
    chat(c, openai_emulator)
    record_call(model="claude-sonnet-4-5", provider="anthropic", input_tokens=300, output_tokens=40)

    summary = usage_summary()
    providers = rows(summary.by_provider)
    assert set(providers) == {"openai", "anthropic"}
    assert (providers["openai"].requests, providers["openai"].input_tokens) == (2, 2000)
    assert providers["openai"].cost_usd == pytest.approx(2 * COST_1000_100, abs=1e-12)
    assert (providers["anthropic"].requests, providers["anthropic"].output_tokens) == (1, 40)
    assert sum(r.requests for r in summary.by_provider) == summary.total.requests == 3
    assert set(summary.to_dict()["by_provider"]) == {"openai", "anthropic"}
    assert "by provider" in str(summary) and "by tenant" not in str(summary)


def test_record_call_tenant_wins_over_the_enclosing_session(telemetry: Telemetry) -> None:
    with session("conv-r", tenant_id="acme"):
        record_call(model="gpt-4o", provider="openai", input_tokens=10, output_tokens=1, tenant_id="globex")
        with record_call(model="gpt-4o", provider="openai", tenant_id="initech") as call:
            call.set_usage(input_tokens=20, output_tokens=2)
        record_call(model="gpt-4o", provider="openai", input_tokens=30, output_tokens=3)
    tenants = rows(usage_summary().by_tenant)
    assert {t: r.input_tokens for t, r in tenants.items()} == {"globex": 10, "initech": 20, "acme": 30}
    spans = {s.attributes[sc.USAGE_INPUT_TOKENS]: s.attributes[sc.TENANT_ID] for s in telemetry.llm_spans()}  # type: ignore[index]
    assert spans == {10: "globex", 20: "initech", 30: "acme"}


def test_tenant_metric_label_is_opt_in(instrument_with: Any, openai_emulator: Any) -> None:
    t = instrument_with(metric_attributes=["tenant.id"])
    c = client(openai_emulator)
    with session("conv-m", tenant_id="acme"):
        chat(c, openai_emulator)
    with session("conv-n", tenant_id="globex"):
        chat(c, openai_emulator)
        chat(c, openai_emulator)
    assert t.total("llm_usage.cost", tenant__id="acme") == pytest.approx(COST_1000_100, abs=1e-12)
    assert t.total("llm_usage.cost", tenant__id="globex") == pytest.approx(2 * COST_1000_100, abs=1e-12)


def test_tenant_is_no_metric_label_by_default(telemetry: Telemetry, openai_emulator: Any) -> None:
    with session("conv-d", tenant_id="acme"):
        chat(client(openai_emulator), openai_emulator)
    points = telemetry.points("llm_usage.cost")
    assert points and all(sc.TENANT_ID not in dict(p.attributes or {}) for p in points)


def test_tenant_budget_gives_every_tenant_its_own_limit(instrument_with: Any, openai_emulator: Any) -> None:
    instrument_with(budgets=[Budget(max_cost_usd=0.005, scope="tenant", action="raise")])
    c = client(openai_emulator)
    # Each tenant works in several sessions: the limit is the tenant's, across them.
    with session("acme-1", tenant_id="acme"):
        chat(c, openai_emulator)  # 0.0035
    with session("acme-2", tenant_id="acme"):
        chat(c, openai_emulator)  # 0.0070: over, already sent
        with pytest.raises(BudgetExceeded) as info:
            chat(c, openai_emulator)
    assert sent(openai_emulator) == 2
    exc = info.value
    assert (exc.scope, exc.key, exc.limit_usd) == ("tenant", "acme", 0.005)
    assert exc.spent_usd == pytest.approx(2 * COST_1000_100, abs=1e-12)
    with session("globex-1", tenant_id="globex"):
        chat(c, openai_emulator)  # another tenant: its own limit, untouched
    chat(c, openai_emulator)  # no tenant: no tenant budget
    assert sent(openai_emulator) == 4
    assert rows(usage_summary().by_tenant)["acme"].requests == 2


def test_tenant_budget_for_one_named_tenant(instrument_with: Any, openai_emulator: Any) -> None:
    seen: list[dict[str, Any]] = []
    instrument_with(
        budgets=[Budget(max_cost_usd=0.001, scope="tenant", tenant="acme")], budget_callback=seen.append
    )
    c = client(openai_emulator)
    with session("g", tenant_id="globex"):
        chat(c, openai_emulator)  # over 0.001, but globex has no budget
    assert seen == []
    with session("a", tenant_id="acme"):
        chat(c, openai_emulator)
        chat(c, openai_emulator)  # a warn budget: reported once, calls go on
    assert sent(openai_emulator) == 3
    assert len(seen) == 1
    info = seen[0]
    assert (info["scope"], info["key"], info["tenant_id"], info["limit_usd"]) == (
        "tenant",
        "acme",
        "acme",
        0.001,
    )
    assert info["spent_usd"] == pytest.approx(COST_1000_100, abs=1e-12)


def test_record_call_counts_for_the_tenant_budget(instrument_with: Any, openai_emulator: Any) -> None:
    instrument_with(budgets=[Budget(max_cost_usd=0.002, scope="tenant", action="raise")])
    # Recorded first, then refused: the tenant is over its limit with this call.
    with pytest.raises(BudgetExceeded) as info:
        record_call(model="gpt-4o", provider="openai", input_tokens=1000, output_tokens=100, tenant_id="acme")
    assert (info.value.scope, info.value.key) == ("tenant", "acme")
    assert rows(usage_summary().by_tenant)["acme"].requests == 1
    with session("s", tenant_id="acme"), pytest.raises(BudgetExceeded):
        chat(client(openai_emulator), openai_emulator)
    assert sent(openai_emulator) == 0
    record_call(model="gpt-4o", provider="openai", input_tokens=100, output_tokens=10, tenant_id="globex")


def test_tenant_budgets_show_on_the_budget_gauges(instrument_with: Any, openai_emulator: Any) -> None:
    t: Telemetry = instrument_with(
        budgets=[
            Budget(max_cost_usd=0.01, scope="tenant"),
            Budget(max_cost_usd=0.004, scope="tenant", tenant="globex"),
        ]
    )
    c = client(openai_emulator)
    with session("a", tenant_id="acme"):
        chat(c, openai_emulator)
        chat(c, openai_emulator)
    with session("g", tenant_id="globex"):
        chat(c, openai_emulator)
    points = [dict(p.attributes or {}) | {"value": p.value} for p in t.points("llm_usage.budget.spent")]
    tenant_points = [p for p in points if p.get(sc.BUDGET_SCOPE) == "tenant"]
    named = [p for p in tenant_points if p.get(sc.BUDGET_TENANT_ID) == "globex"]
    every = [p for p in tenant_points if sc.BUDGET_TENANT_ID not in p]
    assert len(named) == 1 and named[0]["value"] == pytest.approx(COST_1000_100, abs=1e-12)
    # The budget of every tenant shows the tenant nearest its limit: acme, two calls.
    assert len(every) == 1 and every[0]["value"] == pytest.approx(2 * COST_1000_100, abs=1e-12)


@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (lambda: session("s", tenant_id=""), "tenant_id"),
        (lambda: session("s", tenant_id=7), "tenant_id"),
        (lambda: run("r", tenant_id=""), "tenant_id"),
        (lambda: session("s", tenant_id="a", attributes={"tenant.id": "b"}), "tenant_id"),
        (lambda: Budget(1.0, scope="tenant", tenant=""), "tenant"),
        (lambda: Budget(1.0, scope="session", tenant="acme"), "tenant"),
        (lambda: Budget(1.0, scope="tenants"), "scope"),  # type: ignore[arg-type]
    ],
)
def test_bad_tenant_arguments_raise_value_error(telemetry: Telemetry, make: Any, argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        make()


@pytest.mark.parametrize("tenant", ["", 3])
def test_record_call_with_a_bad_tenant_records_nothing(telemetry: Telemetry, tenant: Any) -> None:
    with pytest.raises(ValueError, match="tenant_id"):
        record_call(model="gpt-4o", provider="openai", input_tokens=1, output_tokens=1, tenant_id=tenant)
    with pytest.raises(ValueError, match="tenant_id"):
        record_call(model="gpt-4o", provider="openai", tenant_id=tenant)
    assert telemetry.llm_spans() == []
    assert usage_summary().total.requests == 0


def test_tenants_beyond_the_cap_share_the_overflow_row(
    monkeypatch: pytest.MonkeyPatch, instrument_with: Any
) -> None:
    import otel_llm_usage.rollup.ledgers as ledgers

    monkeypatch.setattr(ledgers, "MAX_TENANTS", 3)
    instrument_with()
    for i in range(10):
        record_call(model="gpt-4o", provider="openai", input_tokens=1, output_tokens=1, tenant_id=f"t{i}")
    record_call(model="gpt-4o", provider="openai", input_tokens=1, output_tokens=1, tenant_id="t0")
    tenants = rows(usage_summary().by_tenant)
    assert set(tenants) == {"t0", "t1", "t2", "_other"}
    assert tenants["t0"].requests == 2
    assert tenants["_other"].requests == 7
    assert sum(r.requests for r in tenants.values()) == 11


def test_tenant_totals_are_exact_under_threads(telemetry: Telemetry) -> None:
    def work(tenant: str) -> None:
        for _ in range(200):
            record_call(model="gpt-4o", provider="openai", input_tokens=10, output_tokens=1, tenant_id=tenant)

    threads = [threading.Thread(target=work, args=(f"t{i % 4}",)) for i in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    tenants = rows(usage_summary().by_tenant)
    assert {t: r.requests for t, r in tenants.items()} == {f"t{i}": 800 for i in range(4)}
    assert all(r.input_tokens == 8000 for r in tenants.values())


# --- 18.2 by_agent inside a session and a run -------------------------------------------------------


def test_session_and_run_usage_break_down_by_agent(telemetry: Telemetry, openai_emulator: Any) -> None:
    c = client(openai_emulator)
    with session("conv-a"):
        with run("planner") as planner:
            chat(c, openai_emulator, 1000, 100)
            with run("condenser") as condenser:
                chat(c, openai_emulator, 50, 5)
        with run("writer"):
            chat(c, openai_emulator, 2000, 200)
        chat(c, openai_emulator, 7, 1)  # no agent: in the totals, in no agent row
    with session("conv-b"), run("condenser"):
        chat(c, openai_emulator, 300, 30)

    u = session_usage("conv-a")
    assert u is not None
    assert set(u.by_agent) == {"planner", "condenser", "writer"}
    assert (u.by_agent["condenser"].requests, u.by_agent["condenser"].input_tokens) == (1, 50)
    assert u.by_agent["condenser"].cost_usd == pytest.approx(50 * 2.5e-6 + 5 * 10e-6, abs=1e-12)
    assert u.by_agent["writer"].output_tokens == 200
    assert u.requests == 4 and sum(a.requests for a in u.by_agent.values()) == 3
    # The process row mixes conversations; the session's own row does not.
    assert rows(usage_summary().by_agent)["condenser"].input_tokens == 350

    # A run's usage: its own agent's calls and its nested runs', each under its agent.
    assert {a: r.input_tokens for a, r in planner.usage.by_agent.items()} == {
        "planner": 1000,
        "condenser": 50,
    }
    assert set(condenser.usage.by_agent) == {"condenser"}
    assert planner.usage.to_dict()["by_agent"]["condenser"]["input_tokens"] == 50


def test_agent_rows_of_one_ledger_are_capped(telemetry: Telemetry) -> None:
    from otel_llm_usage.usage import MAX_AGENT_ROWS

    with session("many"):
        for i in range(MAX_AGENT_ROWS + 5):
            record_call(model="gpt-4o", provider="openai", input_tokens=1, output_tokens=1, agent=f"a{i}")
    u = session_usage("many")
    assert u is not None
    assert len(u.by_agent) == MAX_AGENT_ROWS + 1
    assert u.by_agent["_other"].requests == 5
    assert sum(r.requests for r in u.by_agent.values()) == u.requests


# --- 18.9 reset_usage() ------------------------------------------------------------------------------


def test_reset_usage_clears_totals_but_not_the_counters(instrument_with: Any, openai_emulator: Any) -> None:
    assert "reset_usage" in otel_llm_usage.__all__
    t: Telemetry = instrument_with(metric_attributes=["tenant.id"])
    c = client(openai_emulator)
    with session("conv-x", tenant_id="acme"), run("planner"):
        chat(c, openai_emulator)
    before = t.total("llm_usage.cost")
    assert before == pytest.approx(COST_1000_100, abs=1e-12)

    reset_usage()
    summary = usage_summary()
    assert summary.total.requests == 0 and summary.total.cost_usd == 0.0
    assert summary.by_agent == summary.by_model == summary.by_session == ()
    assert summary.by_tenant == summary.by_provider == ()
    assert session_usage("conv-x") is None
    # The exported counter stays monotonic: the calls before the reset still count.
    assert t.total("llm_usage.cost") == pytest.approx(before, abs=1e-12)

    with session("conv-x", tenant_id="acme"):
        chat(c, openai_emulator, 10, 1)
    summary = usage_summary()
    assert (summary.total.requests, summary.total.input_tokens) == (1, 10)
    assert rows(summary.by_tenant)["acme"].input_tokens == 10
    fresh = session_usage("conv-x")
    assert fresh is not None and fresh.requests == 1
    assert t.total("llm_usage.cost") == pytest.approx(before + 10 * 2.5e-6 + 10e-6, abs=1e-12)


def test_reset_usage_starts_process_budgets_again(instrument_with: Any, openai_emulator: Any) -> None:
    instrument_with(budgets=[Budget(max_cost_usd=0.005, scope="process", action="raise")])
    c = client(openai_emulator)
    chat(c, openai_emulator)
    chat(c, openai_emulator)
    with pytest.raises(BudgetExceeded):
        chat(c, openai_emulator)
    reset_usage()
    chat(c, openai_emulator)  # counted from zero again
    assert sent(openai_emulator) == 3


def test_reset_usage_keeps_an_open_runs_totals(telemetry: Telemetry, openai_emulator: Any) -> None:
    c = client(openai_emulator)
    with run("long") as r:
        chat(c, openai_emulator)
        reset_usage()
        chat(c, openai_emulator)
    assert r.usage.requests == 2
    assert usage_summary().total.requests == 1


def test_reset_usage_without_instrument_does_nothing() -> None:
    reset_usage()
    assert usage_summary().total.requests == 0


def test_breakdowns_round_trip_through_dicts(telemetry: Telemetry, openai_emulator: Any) -> None:
    from otel_llm_usage import Usage, UsageSummary

    c = client(openai_emulator)
    with session("conv-rt", tenant_id="acme"), run("planner"):
        chat(c, openai_emulator)
    record_call(model="claude-sonnet-4-5", provider="anthropic", input_tokens=3, output_tokens=1, agent="w")
    summary = usage_summary()
    assert summary.by_tenant and summary.by_provider
    assert UsageSummary.from_dict(summary.to_dict()) == summary
    u = session_usage("conv-rt")
    assert u is not None and u.by_agent
    assert Usage.from_dict(u.to_dict()) == u
