"""Compiled prices equal genai-prices' own Decimal arithmetic, for every model in its table."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from genai_prices import Usage as GenaiUsage
from genai_prices import calc_price
from genai_prices.data import providers as genai_providers
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_llm_usage.pricing import GENAI_PRICES_PROVIDER, Pricer, genai_usage_values
from otel_llm_usage.usage import TokenUsage

OUR_NAME = {genai: ours for ours, genai in GENAI_PRICES_PROVIDER.items()}


def random_ledger(rng: random.Random, max_input: int) -> TokenUsage:
    total_in = rng.randint(0, max_input)
    cache_read = rng.randint(0, total_in)
    cache_write = rng.randint(0, total_in - cache_read)
    output = rng.randint(0, 50_000)
    return TokenUsage(
        input=total_in,
        output=output,
        cache_read=cache_read,
        cache_write=cache_write,
        cache_write_1h=rng.randint(0, cache_write),
        reasoning=rng.randint(0, output),
        input_audio=rng.randint(0, total_in - cache_read - cache_write) if rng.random() < 0.2 else 0,
        output_audio=rng.randint(0, output) if rng.random() < 0.1 else 0,
    )


def expected(tokens: TokenUsage, model: str, provider_id: str) -> Decimal | None:
    try:
        return calc_price(
            GenaiUsage(**genai_usage_values(tokens)), model, provider_id=provider_id
        ).total_price
    except (LookupError, ValueError):
        return None


def test_every_table_model_matches_calc_price() -> None:
    pricer = Pricer()
    rng = random.Random(20261129)
    compared = 0
    for provider in genai_providers:
        ours = OUR_NAME.get(provider.id)
        if ours is None:
            continue
        for model in provider.models:
            for _ in range(3):
                # a quarter of the draws cross 200k input tokens, where long-context tiers start
                tokens = random_ledger(rng, 400_000 if rng.random() < 0.25 else 30_000)
                want = expected(tokens, model.id, provider.id)
                got = pricer.cost(ours, model.id, tokens)
                if want is None:
                    continue
                assert got is not None, (provider.id, model.id)
                assert got.total_usd == pytest.approx(float(want), rel=1e-12, abs=1e-12), (
                    provider.id,
                    model.id,
                )
                parts = got.input_usd + got.cache_read_usd + got.cache_write_usd + got.output_usd
                assert parts == pytest.approx(got.total_usd, rel=1e-12, abs=1e-12)
                compared += 1
    assert compared > 1000


@pytest.mark.parametrize(
    ("provider", "model", "tokens", "usd"),
    [
        ("openai", "gpt-4o", TokenUsage(input=1000, cache_read=200, output=500), 0.00725),
        ("openai", "o4-mini", TokenUsage(input=1000, output=2000, reasoning=1500), 0.0099),
        ("anthropic", "claude-sonnet-4-5",
         TokenUsage(input=6300, cache_read=5000, cache_write=1000, output=400), 0.01215),
        ("anthropic", "claude-sonnet-4-5",
         TokenUsage(input=6300, cache_read=5000, cache_write=1000, cache_write_1h=1000, output=400), 0.0144),
    ],
)  # fmt: skip
def test_golden_costs(provider: str, model: str, tokens: TokenUsage, usd: float) -> None:
    cost = Pricer().cost(provider, model, tokens)
    assert cost is not None and cost.total_usd == pytest.approx(usd, abs=1e-15)


def test_long_context_tier_for_gemini_pro() -> None:
    pricer = Pricer()
    small = pricer.cost("gcp.gemini", "gemini-2.5-pro", TokenUsage(input=100_000, output=1000))
    large = pricer.cost("gcp.gemini", "gemini-2.5-pro", TokenUsage(input=250_000, output=1000))
    assert small is not None and large is not None
    want = calc_price(
        GenaiUsage(input_tokens=250_000, output_tokens=1000), "gemini-2.5-pro", provider_id="google"
    )
    assert large.total_usd == pytest.approx(float(want.total_price), abs=1e-12)
    assert large.input_usd / 250_000 > small.input_usd / 100_000  # the upper tier's rate applies


def test_unknown_model_and_provider_have_no_cost() -> None:
    pricer = Pricer()
    assert pricer.cost("openai", "no-such-model-xyz", TokenUsage(input=1, output=1)) is None
    assert pricer.cost("vllm", "gpt-4o", TokenUsage(input=1, output=1)) is None
    assert pricer.cost("openai", None, TokenUsage(input=1, output=1)) is None


def test_override_prices_per_million_and_defaults() -> None:
    pricer = Pricer({"acme-*": {"input": 2.0, "output": 8.0, "cache_read": 0.5}})
    cost = pricer.cost(
        "openai", "acme-large", TokenUsage(input=1_000_000, cache_read=400_000, output=250_000)
    )
    assert cost is not None and cost.source == "override"
    assert cost.total_usd == pytest.approx(600_000 * 2e-6 + 400_000 * 0.5e-6 + 250_000 * 8e-6)
    with pytest.raises(ValueError, match="unknown price field"):
        Pricer({"x": {"inputs": 1.0, "output": 1.0}})


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 2_000_000),
    st.integers(0, 2_000_000),
    st.integers(0, 2_000_000),
    st.integers(0, 2_000_000),
    st.sampled_from(["gpt-4o", "gpt-4.1", "o3", "claude-sonnet-4-5", "claude-opus-4-1", "gemini-2.5-pro"]),
)
def test_compiled_price_is_calc_price_for_any_valid_ledger(
    a: int, b: int, c: int, d: int, model: str
) -> None:
    total = a + b + c
    tokens = TokenUsage(
        input=total, cache_read=b, cache_write=c, cache_write_1h=c // 3, output=d, reasoning=d // 2
    )
    provider, genai_id = (
        ("anthropic", "anthropic") if model.startswith("claude")
        else ("gcp.gemini", "google") if model.startswith("gemini") else ("openai", "openai")
    )  # fmt: skip
    want = expected(tokens, model, genai_id)
    got = Pricer().cost(provider, model, tokens)
    assert want is not None and got is not None
    assert got.total_usd == pytest.approx(float(want), rel=1e-12, abs=1e-12)
