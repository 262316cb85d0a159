"""16.8: tables keyed by names from the outside world stay at their cap; totals stay exact.

Ten thousand distinct `run()` names and ten thousand distinct response models, through the public
API and (for the models) the real openai SDK against the emulator: each table keeps its cap of
rows of their own, the rest is summed into the `_other` row, and no call is lost from any total.
"""

from __future__ import annotations

from typing import Any

import openai

import otel_llm_usage
from emulators import Reply
from otel_llm_usage._bounded import OVERFLOW_KEY
from otel_llm_usage.rollup.ledgers import MAX_AGENTS
from otel_llm_usage.summary import UsageRow
from otel_llm_usage.usage import MAX_MODELS, Usage

N = 10_000
MSGS = [{"role": "user", "content": "Hi"}]


def _sums(rows: tuple[UsageRow, ...]) -> tuple[int, int, int, float]:
    return (
        sum(r.requests for r in rows),
        sum(r.input_tokens for r in rows),
        sum(r.output_tokens for r in rows),
        sum(r.cost_usd for r in rows),
    )


def test_ten_thousand_run_names_keep_the_agent_table_at_its_cap(telemetry: Any) -> None:
    for i in range(N):
        with otel_llm_usage.run(f"job-{i}"):
            # 0.25 USD: a sum of quarters is exact in floating point, so totals can be compared exactly
            otel_llm_usage.record_call(
                model="house-model", provider="openai", input_tokens=i, output_tokens=1, cost_usd=0.25
            )
    summary = otel_llm_usage.usage_summary()
    by_agent = {r.name: r for r in summary.by_agent}
    assert len(by_agent) == MAX_AGENTS + 1
    other = by_agent[OVERFLOW_KEY]
    assert other.requests == N - MAX_AGENTS  # every call of a name that found no room
    assert by_agent["job-0"].requests == 1 and by_agent[f"job-{MAX_AGENTS - 1}"].requests == 1
    assert f"job-{MAX_AGENTS}" not in by_agent
    served = (N, sum(range(N)), N, 0.25 * N)
    assert (summary.total.requests, summary.total.input_tokens) == served[:2]
    assert (summary.total.output_tokens, summary.total.cost_usd) == served[2:]
    assert _sums(summary.by_agent) == served  # every call in exactly one agent row


def test_ten_thousand_response_models_keep_every_model_table_at_its_cap(
    telemetry: Any, openai_emulator: Any
) -> None:
    client = openai.OpenAI(base_url=openai_emulator.base_url, api_key="k", max_retries=0)
    with otel_llm_usage.session("s-1"), otel_llm_usage.run("bulk") as r:
        for i in range(N):
            # request and response name the same new model, whichever one a ledger keys its rows by
            openai_emulator.push(Reply(prompt_tokens=10 + i % 7, completion_tokens=3, model=f"m-{i}"))
            client.chat.completions.create(model=f"m-{i}", messages=MSGS)
        run_usage = r.usage.snapshot()
    served = openai_emulator.served
    assert served.requests == N
    summary = otel_llm_usage.usage_summary()
    assert (summary.total.requests, summary.total.input_tokens, summary.total.output_tokens) == (
        N,
        served.prompt_tokens,
        served.completion_tokens,
    )
    assert summary.total.unpriced_requests == N
    assert len(summary.by_model) == MAX_MODELS + 1
    by_model = {row.name: row for row in summary.by_model}
    assert by_model[OVERFLOW_KEY].requests == N - MAX_MODELS
    assert by_model[OVERFLOW_KEY].folded_models > 0
    assert _sums(summary.by_model)[:3] == (N, served.prompt_tokens, served.completion_tokens)

    session_usage = otel_llm_usage.session_usage("s-1")
    assert session_usage is not None
    for usage in (run_usage, session_usage):
        _check_ledger(usage, served.prompt_tokens, served.completion_tokens)


def _check_ledger(usage: Usage, prompt: int, completion: int) -> None:
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (N, prompt, completion)
    assert len(usage.by_model) == MAX_MODELS + 1
    assert usage.by_model[OVERFLOW_KEY].requests == N - MAX_MODELS
    assert sum(u.requests for u in usage.by_model.values()) == N
    assert sum(u.input_tokens for u in usage.by_model.values()) == prompt
