"""`record_call()` refuses what would poison the telemetry, naming the argument, and records nothing."""

from __future__ import annotations

from typing import Any

import pytest

import otel_llm_usage
from otel_llm_usage import Budget, BudgetExceeded
from otel_llm_usage.context import current_attribution
from otel_llm_usage.usage import MAX_TOKEN_COUNT

BASE = {"model": "gpt-4o", "provider": "openai", "input_tokens": 10, "output_tokens": 4}


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"cost_usd": float("inf")}, "cost_usd"),
        ({"cost_usd": float("nan")}, "cost_usd"),
        ({"cost_usd": 10**400}, "cost_usd"),
        ({"duration_s": 1e10}, "duration_s"),
        ({"duration_s": float("inf")}, "duration_s"),
        ({"duration_s": float("nan")}, "duration_s"),
        ({"duration_s": 10**400}, "duration_s"),
        ({"duration_s": 1.0, "time_to_first_chunk_s": float("inf")}, "time_to_first_chunk_s"),
        ({"input_tokens": MAX_TOKEN_COUNT + 1}, "input_tokens"),
        ({"output_tokens": 2**63}, "output_tokens"),
        ({"input_tokens": 10**30, "cache_read_tokens": 10**30}, "input_tokens"),
        ({"attributes": {"llm_usage.call": False}}, "llm_usage.call"),
        ({"attributes": {"gen_ai.usage.input_tokens": 5}}, "gen_ai.usage.input_tokens"),
        ({"attributes": {"gen_ai.request.model": "other"}}, "gen_ai.request.model"),
        ({"attributes": {"gen_ai.agent.name": "other"}}, "gen_ai.agent.name"),
        ({"attributes": {"": 1}}, "attributes"),
        ({"attributes": {"batch.size": 2**64}}, "batch.size"),
        ({"attributes": {"batch.sizes": [1, -(2**63) - 1]}}, "batch.sizes"),
    ],
)
def test_poisoning_input_is_refused_naming_it(telemetry: Any, kwargs: dict[str, Any], names: str) -> None:
    with pytest.raises(ValueError, match=names):
        otel_llm_usage.record_call(**{**BASE, **kwargs})
    assert telemetry.spans() == []
    assert telemetry.points("llm_usage.cost") == []


def test_the_ceiling_itself_and_user_attributes_are_accepted(telemetry: Any) -> None:
    otel_llm_usage.record_call(
        model="house-model",
        provider="openai",
        input_tokens=MAX_TOKEN_COUNT,
        output_tokens=0,
        duration_s=3600.0,
        attributes={"tenant.id": "acme"},
    )
    a = dict(telemetry.one_llm_span().attributes or {})
    assert a["gen_ai.usage.input_tokens"] == MAX_TOKEN_COUNT and a["tenant.id"] == "acme"


def test_a_refused_record_call_leaves_no_agent_set(instrument_with: Any) -> None:
    telemetry = instrument_with(budgets=[Budget(0.0, scope="process", action="raise")])
    with pytest.raises(BudgetExceeded):  # recorded, spending past the $0 limit, then raised
        otel_llm_usage.record_call(**{**BASE, "cost_usd": 0.01})
    before = current_attribution.get()
    with (
        pytest.raises(BudgetExceeded),
        otel_llm_usage.record_call(model="gpt-4o", provider="openai", agent="intruder"),
    ):
        pass  # pragma: no cover - refused in __enter__
    assert current_attribution.get() == before and current_attribution.get().agent is None
    with pytest.raises(BudgetExceeded):  # recorded first, and not as "intruder"
        otel_llm_usage.record_call(**BASE)
    last = max(telemetry.llm_spans(), key=lambda s: s.start_time or 0)
    assert "gen_ai.agent.name" not in (last.attributes or {})
