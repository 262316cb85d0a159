"""usage_summary(): honest averages, one row per requested model, per-call figures, round trips, caps."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionMessageParam

import otel_llm_usage
from emulators import Reply
from otel_llm_usage import Usage, UsageRow, UsageSummary, run, session, session_usage, usage_summary
from otel_llm_usage.usage import MAX_MODELS, OVERFLOW_ROW, TokenUsage
from tests.conftest import Telemetry

MSGS: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
DATED = "o4-mini-2025-04-16"
# o4-mini: USD per token, input and output (reasoning is billed as output)
IN, OUT = 1.1e-6, 4.4e-6


def client(emu: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=emu.base_url, api_key="sk-test", max_retries=0)


def writer_workload(c: openai.OpenAI, emu: Any) -> float:
    """Three priced o4-mini calls (answered by the dated model), one failed call, one without usage,
    and an unpriced call; returns the cost of the priced ones."""
    cost = 0.0
    with session("conv-honest"), run("writer"):
        for prompt, completion in ((1000, 500), (2000, 800), (3000, 1200)):
            emu.push(Reply(prompt_tokens=prompt, completion_tokens=completion, model=DATED))
            c.chat.completions.create(model="o4-mini", messages=MSGS)
            cost += prompt * IN + completion * OUT
        emu.push(Reply(status=429))
        with pytest.raises(openai.RateLimitError):
            c.chat.completions.create(model="o4-mini", messages=MSGS)
        emu.push(Reply(omit_usage=True, model=DATED))
        c.chat.completions.create(model="o4-mini", messages=MSGS)
        emu.push(Reply(prompt_tokens=100, completion_tokens=100))
        c.chat.completions.create(model="house-model", messages=MSGS)
    return cost


def test_average_is_over_priced_calls_and_one_model_is_one_row(
    telemetry: Telemetry, openai_emulator: Any
) -> None:
    cost = writer_workload(client(openai_emulator), openai_emulator)
    summary = usage_summary()

    # One row per model the caller asked for, failed calls and dated answers included.
    assert [r.name for r in summary.by_model] == ["o4-mini", "house-model"]
    row = summary.by_model[0]
    assert row.response_models == (DATED,)
    assert (row.requests, row.priced_requests, row.errors, row.usage_missing_requests) == (5, 3, 1, 1)
    assert (row.unpriced_requests, row.requests_with_usage) == (0, 3)
    assert row.cost_usd == pytest.approx(cost, abs=1e-12)
    # The old average divided by requests - unpriced = 5 and understated the cost per call.
    assert row.average_cost_usd == pytest.approx(cost / 3, abs=1e-12)
    assert row.input_tokens_per_call == 2000 and row.output_tokens_per_call == pytest.approx(2500 / 3)
    assert row.tokens_per_call == pytest.approx((6000 + 2500) / 3)
    assert row.cost_per_1k_output_tokens == pytest.approx(cost / 2500 * 1000)

    house = summary.by_model[1]
    assert (house.unpriced_requests, house.priced_requests, house.cost_usd) == (1, 0, 0.0)
    assert (house.average_cost_usd, house.cost_per_1k_output_tokens, house.tokens_per_call) == (0.0, 0.0, 200)

    # The total's average leaves the unpriced call out; its per-call figures keep it in.
    total = summary.total
    assert (total.requests, total.priced_requests, total.unpriced_requests) == (6, 3, 1)
    assert (total.errors, total.usage_missing_requests, total.requests_with_usage) == (1, 1, 4)
    assert total.average_cost_usd == pytest.approx(cost / 3, abs=1e-12)
    assert total.tokens_per_call == pytest.approx((6100 + 2600) / 4)
    assert total.cost_per_1k_output_tokens == pytest.approx(cost / 2500 * 1000)

    # The same breakdown in the run's and the session's ledgers.
    s = session_usage("conv-honest")
    assert s is not None and set(s.by_model) == {"o4-mini", "house-model"}
    assert s.by_model["o4-mini"].response_models == (DATED,)
    assert s.average_cost_usd == pytest.approx(cost / 3, abs=1e-12)
    [agent] = summary.by_agent
    assert (agent.name, agent.requests, agent.usage_missing_requests) == ("writer", 6, 1)


def test_table_shows_response_models_and_the_new_columns(telemetry: Telemetry, openai_emulator: Any) -> None:
    writer_workload(client(openai_emulator), openai_emulator)
    lines = str(usage_summary()).splitlines()
    header = lines[0].split()
    assert header == [
        "requests", "input", "output", "cache_read", "cache_write", "reasoning", "cost_usd",
        "avg_cost_usd", "usd/1k_out", "tok/call", "out/total", "unpriced", "no_usage", "errors",
    ]  # fmt: skip
    assert "audio_in" not in header  # only when some call had audio tokens
    row = next(line for line in lines if line.strip().startswith(f"o4-mini ({DATED})"))
    cells = dict(zip(header, row.split()[-len(header) :], strict=True))
    assert (cells["requests"], cells["no_usage"], cells["errors"], cells["unpriced"]) == ("5", "1", "1", "0")
    assert cells["tok/call"] == "2,833.3"


def test_summary_round_trips_through_dict_and_json(telemetry: Telemetry, openai_emulator: Any) -> None:
    c = client(openai_emulator)
    writer_workload(c, openai_emulator)
    with run("listener"):
        openai_emulator.push(Reply(prompt_tokens=40, completion_tokens=9, audio_prompt_tokens=25))
        c.chat.completions.create(model="gpt-4o-audio-preview", messages=MSGS)
    summary = usage_summary()
    assert summary.by_agent and summary.by_session and summary.total.audio_input_tokens == 25

    data = summary.to_dict()
    assert UsageSummary.from_dict(data) == summary
    assert UsageSummary.from_dict(json.loads(json.dumps(data))) == summary
    assert data["by_model"]["o4-mini"]["response_models"] == [DATED]
    assert data["by_model"]["o4-mini"]["usage_missing_requests"] == 1
    assert data["total"]["total_tokens"] == summary.total.total_tokens
    # A changed figure makes them differ: the comparison is of every field.
    changed = json.loads(json.dumps(data))
    changed["by_model"]["o4-mini"]["errors"] = 2
    assert UsageSummary.from_dict(changed) != summary
    assert UsageSummary.from_dict(UsageSummary.empty().to_dict()) == UsageSummary.empty()
    row = summary.by_model[0]
    assert UsageRow.from_dict(row.to_dict()) == row


def test_model_rows_are_capped_with_an_other_row(telemetry: Telemetry) -> None:
    extra = 5
    names = [f"house-{i}" for i in range(MAX_MODELS + extra)]
    with run("many-models") as r:
        for name in names:
            otel_llm_usage.record_call(model=name, provider="house", input_tokens=3, output_tokens=1)
        # a folded name seen again is not folded twice
        otel_llm_usage.record_call(model=names[-1], provider="house", input_tokens=3, output_tokens=1)

    summary = usage_summary()
    for rows in (dict(r.usage.by_model), {row.name: row for row in summary.by_model}):
        assert len(rows) == MAX_MODELS + 1
        other = rows[OVERFLOW_ROW]
        assert (other.folded_models, other.requests, other.input_tokens) == (
            extra,
            extra + 1,
            3 * (extra + 1),
        )
        assert other.response_models == ()
        assert names[0] in rows and names[-1] not in rows
    calls = len(names) + 1
    assert (summary.total.requests, summary.total.input_tokens, summary.total.unpriced_requests) == (
        calls, 3 * calls, calls,
    )  # fmt: skip
    assert f"{OVERFLOW_ROW} (5 models)" in summary.table(max_rows=None)

    # Adding two ledgers keeps the cap: the second one's new models are folded in as well.
    both = r.usage + r.usage
    assert len(both.by_model) == MAX_MODELS + 1
    assert both.by_model[OVERFLOW_ROW].requests == 2 * (extra + 1)
    merged = r.usage + Usage(by_model={"late-model": Usage(requests=1)})
    assert "late-model" not in merged.by_model
    assert merged.by_model[OVERFLOW_ROW].folded_models == extra + 1


def test_usage_from_dict_round_trips() -> None:
    u = Usage()
    u.add_call("gpt-4o", TokenUsage(input=10, output=5, input_audio=2), 0.5, False, response_model="gpt-4o-x")
    u.add_call("gpt-4o", None, None, False)
    u.add_call("gpt-4o", None, None, True)
    again = Usage.from_dict(json.loads(json.dumps(u.to_dict())))
    assert again == u.snapshot()
    assert (again.usage_missing_requests, again.errors, again.priced_requests) == (1, 1, 1)
    assert again.by_model["gpt-4o"].response_models == ("gpt-4o-x",)


calls = st.lists(
    st.tuples(
        st.sampled_from(["gpt-4o", "o4-mini", "house"]),
        st.one_of(st.none(), st.sampled_from(["gpt-4o-2024-08-06", "o4-mini-2025-04-16"])),
        st.one_of(
            st.none(),
            st.builds(
                lambda i, o, a, b: TokenUsage.normalised(input=i, output=o, input_audio=a, output_audio=b),
                st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6),
            ),
        ),
        st.one_of(st.none(), st.sampled_from([0.0, 0.125, 0.5, 2.0])),
        st.booleans(),
    ),
    max_size=40,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(calls)
def test_every_call_is_one_kind_and_rows_add_up_to_the_total(batch: list[Any]) -> None:
    u = Usage()
    for model, response_model, tokens, cost, error in batch:
        u.add_call(model, tokens, cost, error, response_model=response_model)
    kinds = u.priced_requests + u.unpriced_requests + u.usage_missing_requests + u.errors_without_usage
    assert kinds == u.requests == len(batch)
    assert u.usage_missing_requests == sum(1 for _, _, t, _, e in batch if t is None and not e)
    assert u.priced_cost_usd == sum(c for _, _, t, c, _ in batch if t is not None and c is not None)
    rows = list(u.by_model.values())
    for name in ("requests", "input_tokens", "output_tokens", "audio_input_tokens", "audio_output_tokens",
                 "usage_missing_requests", "errors", "unpriced_requests", "cost_usd"):  # fmt: skip
        assert getattr(u, name) == sum(getattr(r, name) for r in rows), name
    for name, row in u.by_model.items():
        expected = {rm for m, rm, *_ in batch if m == name and rm is not None}
        assert set(row.response_models) == expected
    assert Usage.from_dict(json.loads(json.dumps(u.to_dict()))) == u.snapshot()
    assert (u + Usage()).to_dict() == u.to_dict()
