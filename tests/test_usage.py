"""Ledger invariants and the normalisation of arbitrary usage payloads."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from otel_llm_usage.providers._openai_read import usage_from
from otel_llm_usage.usage import TokenUsage, Usage, as_count

counts = st.one_of(
    st.integers(-10, 10**9), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4), st.none(),
    st.booleans(),
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.tuples(counts, counts, counts, counts, counts, counts, counts, counts))
def test_normalised_ledger_always_satisfies_invariants(values: tuple[Any, ...]) -> None:
    keys = ("input", "output", "cache_read", "cache_write", "cache_write_1h", "reasoning", "input_audio",
            "output_audio")  # fmt: skip
    ledger = TokenUsage.normalised(**{k: as_count(v) for k, v in zip(keys, values, strict=True)})
    assert ledger.valid()


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(), st.text(max_size=8)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
usage_keys = st.sampled_from(
    ["prompt_tokens", "completion_tokens", "input_tokens", "output_tokens", "prompt_tokens_details",
     "completion_tokens_details", "input_tokens_details", "output_tokens_details", "cached_tokens",
     "reasoning_tokens", "audio_tokens", "cost", "prompt_cache_hit_tokens"]
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(
    st.dictionaries(usage_keys, st.one_of(json_values, st.dictionaries(usage_keys, json_values)), max_size=8)
)
def test_openai_usage_extraction_never_raises_and_is_valid(payload: dict[str, Any]) -> None:
    ledger = usage_from(payload)
    assert ledger is None or ledger.valid()


def test_openai_usage_buckets_are_disjoint_subsets() -> None:
    ledger = usage_from(
        {
            "prompt_tokens": 1000,
            "completion_tokens": 500,
            "prompt_tokens_details": {"cached_tokens": 200, "audio_tokens": 10},
            "completion_tokens_details": {"reasoning_tokens": 300},
        }
    )
    assert ledger == TokenUsage(input=1000, output=500, cache_read=200, reasoning=300, input_audio=10)
    assert ledger.uncached_input == 800


def test_as_count() -> None:
    assert [as_count(v) for v in (5, 5.0, -1, "7", None, True, float("nan"), 2.5)] == [5, 5, 0, 0, 0, 0, 0, 0]


def test_usage_totals_add_and_break_down_by_model() -> None:
    u = Usage()
    u.add_call("gpt-4o", TokenUsage(input=10, output=5, cache_read=2), 0.5, False)
    u.add_call("gpt-4o", None, None, True)
    u.add_call("house", TokenUsage(input=1, output=1), None, False)
    assert (u.requests, u.input_tokens, u.output_tokens, u.errors, u.unpriced_requests) == (3, 11, 6, 1, 1)
    assert u.by_model["gpt-4o"].requests == 2 and u.by_model["house"].unpriced_requests == 1
    both = u + u
    assert both.requests == 6 and both.by_model["gpt-4o"].cost_usd == 1.0
    assert u.to_dict()["total_tokens"] == 17
