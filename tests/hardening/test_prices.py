"""Prices the user gives are validated, can change while running, and self-hosted models stay unpriced."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import openai
import pytest

import otel_llm_usage
from emulators import Reply
from otel_llm_usage import ModelPrice
from otel_llm_usage import semconv as sc
from otel_llm_usage.pricing import CACHE_LIMIT, WARN_LIMIT, Pricer
from otel_llm_usage.usage import TokenUsage

MSGS = [{"role": "user", "content": "Hi"}]


def chat(emu: Any, model: str, prompt: int = 1000, completion: int = 100) -> None:
    emu.push(Reply(prompt_tokens=prompt, completion_tokens=completion, model=model))
    client = openai.OpenAI(base_url=emu.base_url, api_key="k", max_retries=0)
    client.chat.completions.create(model=model, messages=MSGS)


def last_cost(telemetry: Any) -> float | None:
    span = max(telemetry.llm_spans(), key=lambda s: s.start_time or 0)
    value = (span.attributes or {}).get(sc.USAGE_COST)
    return float(value) if value is not None else None


# --- 16.11: overrides validated -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "field"),
    [
        ({"input": -1.0, "output": 1.0}, "input"),
        ({"input": 1.0, "output": float("nan")}, "output"),
        ({"input": 1.0, "output": 1.0, "cache_read": float("inf")}, "cache_read"),
        ({"input": 1.0, "output": 1.0, "context_window": 0}, "context_window"),
        ({"input": "cheap", "output": 1.0}, "input"),
        ({"input": True, "output": 1.0}, "input"),
        ({"input": 1.0, "output": 10**400}, "output"),
    ],
)
def test_bad_prices_in_code_raise_naming_model_and_field(price: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"house-model.*{field}"):
        otel_llm_usage.instrument(prices={"house-model": price})
    assert otel_llm_usage.usage_summary().total.requests == 0  # nothing was instrumented
    with pytest.raises(ValueError, match=field):
        ModelPrice(**{"input": 1.0, "output": 1.0, **price})


def test_bad_entries_in_the_prices_file_warn_and_are_ignored(
    instrument_with: Any, openai_emulator: Any, tmp_path: Path, monkeypatch: Any, caplog: Any
) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "neg-model": {"input": -3.0, "output": 1.0},
                "good-model": {"input": 2.0, "output": 8.0},
                "typo-model": {"inputs": 2.0, "output": 8.0},
            }
        )
    )
    monkeypatch.setenv("OTEL_LLM_USAGE_PRICES_FILE", str(path))
    with caplog.at_level(logging.WARNING):
        telemetry = instrument_with()
    warnings = [r.getMessage() for r in caplog.records if "OTEL_LLM_USAGE_PRICES_FILE" in r.getMessage()]
    assert len(warnings) == 2
    assert any("neg-model" in w and "input" in w for w in warnings)
    assert any("typo-model" in w for w in warnings)
    chat(openai_emulator, "good-model")
    assert last_cost(telemetry) == pytest.approx((1000 * 2.0 + 100 * 8.0) / 1e6)
    chat(openai_emulator, "neg-model")
    assert last_cost(telemetry) is None  # unpriced, never a negative cost


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_an_unreadable_prices_file_is_one_warning_not_an_error(
    instrument_with: Any, tmp_path: Path, monkeypatch: Any, caplog: Any, content: str
) -> None:
    path = tmp_path / "prices.json"
    path.write_text(content)
    monkeypatch.setenv("OTEL_LLM_USAGE_PRICES_FILE", str(path))
    with caplog.at_level(logging.WARNING):
        instrument_with()
    assert sum("OTEL_LLM_USAGE_PRICES_FILE" in r.getMessage() for r in caplog.records) == 1


# --- 18.5: prices at run time -------------------------------------------------------------------


def test_set_prices_applies_from_the_next_call_and_keeps_totals(
    instrument_with: Any, openai_emulator: Any
) -> None:
    telemetry = instrument_with(prices={"house-model": {"input": 1.0, "output": 2.0}})
    chat(openai_emulator, "house-model")
    first = (1000 * 1.0 + 100 * 2.0) / 1e6
    assert last_cost(telemetry) == pytest.approx(first)

    otel_llm_usage.set_prices(
        {"house-model": {"input": 3.0, "output": 4.0}, "other-*": {"input": 1, "output": 1}}
    )
    chat(openai_emulator, "house-model")
    second = (1000 * 3.0 + 100 * 4.0) / 1e6
    assert last_cost(telemetry) == pytest.approx(second)
    chat(openai_emulator, "other-1")
    assert last_cost(telemetry) == pytest.approx(1100 / 1e6)

    assert otel_llm_usage.usage_summary().total.cost_usd == pytest.approx(first + second + 1100 / 1e6)
    assert telemetry.total(sc.METRIC_COST) == pytest.approx(first + second + 1100 / 1e6)

    otel_llm_usage.set_prices({"other-*": {"input": 5.0, "output": 5.0}}, replace=True)
    chat(openai_emulator, "house-model")
    assert last_cost(telemetry) is None  # replaced: house-model has no price any more
    chat(openai_emulator, "other-2")
    assert last_cost(telemetry) == pytest.approx(1100 * 5.0 / 1e6)


@pytest.mark.parametrize(
    ("prices", "names"),
    [
        ({"house-model": {"input": -1.0, "output": 1.0}}, "house-model.*input"),
        ({"house-model": {"input": 1.0}}, "house-model"),
        ({"": {"input": 1.0, "output": 1.0}}, "model names"),
        (["house-model"], "mapping"),
    ],
)
def test_set_prices_validates_and_changes_nothing(
    instrument_with: Any, openai_emulator: Any, prices: Any, names: str
) -> None:
    telemetry = instrument_with(prices={"house-model": {"input": 1.0, "output": 2.0}})
    with pytest.raises(ValueError, match=names):
        otel_llm_usage.set_prices(
            {"ok-model": {"input": 1.0, "output": 1.0}, **prices} if isinstance(prices, dict) else prices
        )
    chat(openai_emulator, "house-model")
    assert last_cost(telemetry) == pytest.approx((1000 * 1.0 + 100 * 2.0) / 1e6)
    chat(openai_emulator, "ok-model")
    assert last_cost(telemetry) is None  # the valid entry of a refused call was not applied either


def test_set_prices_needs_instrument() -> None:
    with pytest.raises(RuntimeError, match="instrument"):
        otel_llm_usage.set_prices({"m": {"input": 1.0, "output": 1.0}})


def test_reload_prices_rereads_the_file_and_code_prices_still_win(
    instrument_with: Any, openai_emulator: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps({"file-model": {"input": 1.0, "output": 1.0}, "both": {"input": 9, "output": 9}})
    )
    monkeypatch.setenv("OTEL_LLM_USAGE_PRICES_FILE", str(path))
    telemetry = instrument_with(prices={"both": {"input": 2.0, "output": 2.0}})
    chat(openai_emulator, "file-model")
    assert last_cost(telemetry) == pytest.approx(1100 / 1e6)
    path.write_text(
        json.dumps({"file-model": {"input": 10.0, "output": 10.0}, "both": {"input": 9, "output": 9}})
    )
    chat(openai_emulator, "file-model")
    assert last_cost(telemetry) == pytest.approx(1100 / 1e6)  # not re-read until asked
    otel_llm_usage.reload_prices()
    chat(openai_emulator, "file-model")
    assert last_cost(telemetry) == pytest.approx(1100 * 10.0 / 1e6)
    chat(openai_emulator, "both")
    assert last_cost(telemetry) == pytest.approx(1100 * 2.0 / 1e6)


# --- 16.8: the pricer's tables are bounded ------------------------------------------------------


def test_distinct_unpriced_models_make_bounded_warnings_and_cache(telemetry: Any, caplog: Any) -> None:
    n = CACHE_LIMIT + 500
    with caplog.at_level(logging.WARNING, logger="otel_llm_usage"):
        for i in range(n):
            otel_llm_usage.record_call(model=f"house-{i}", provider="openai", input_tokens=1, output_tokens=1)
    lines = [r.getMessage() for r in caplog.records if "price" in r.getMessage()]
    assert len(lines) == WARN_LIMIT + 1
    assert "more than" in lines[-1]
    pricer = telemetry.instrumentor.recorder.pricer
    assert len(pricer._cache) <= CACHE_LIMIT
    assert pricer.unpriced_folded == n - WARN_LIMIT
    assert telemetry.total(sc.METRIC_UNPRICED) == n  # every call still counted


# --- 16.12: a self-hosted model is not priced from a cloud table -------------------------------


@pytest.mark.parametrize("model", ["openai/gpt-oss-120b", "local/gpt-4o", "vllm/models/gpt-4o-mini"])
def test_routing_prefix_on_a_local_endpoint_is_unpriced(
    telemetry: Any, openai_emulator: Any, model: str
) -> None:
    chat(openai_emulator, model)
    a = dict(telemetry.one_llm_span().attributes or {})
    assert a[sc.SERVER_ADDRESS] == "127.0.0.1"
    assert sc.USAGE_COST not in a and sc.PRICE_MODEL not in a
    assert telemetry.total(sc.METRIC_UNPRICED) == 1


def test_bare_names_on_a_gateway_and_prefixes_on_the_providers_host_stay_priced(
    telemetry: Any, openai_emulator: Any
) -> None:
    chat(openai_emulator, "gpt-4o")  # a gateway in front of OpenAI: priced as OpenAI, as before
    assert last_cost(telemetry) == pytest.approx((1000 * 2.5 + 100 * 10.0) / 1e6)
    pricer = Pricer()
    tokens = TokenUsage(input=1000, output=100)
    for host in ("api.openai.com", None):
        assert pricer.cost("openai", "openai/gpt-oss-120b", tokens, host) is not None
        assert pricer.cost("openai", "local/gpt-4o", tokens, host) is not None
    assert pricer.cost("openai", "local/gpt-4o", tokens, "10.0.0.7") is None
    assert pricer.cost("openai", "local/gpt-4o", tokens, "llm.internal.example") is None
    assert pricer.cost("anthropic", "anthropic/claude-sonnet-4-5", tokens, "api.anthropic.com") is not None
    # API resource paths name the model wherever they are served
    assert pricer.cost("gcp.gemini", "models/gemini-2.5-pro", tokens, "127.0.0.1") is not None
    assert pricer.cost("gcp.vertex_ai", "publishers/google/models/gemini-2.5-pro", tokens, "::1") is not None
