"""`instrument(prometheus_port=...)` serves /metrics with the documented Prometheus series names."""

from __future__ import annotations

import socket
import urllib.request
from typing import Any

import openai

import otel_llm_usage
from emulators import Reply


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_metrics_endpoint_series_names(openai_emulator: Any) -> None:
    port = free_port()
    otel_llm_usage.instrument(prometheus_port=port)
    try:
        openai_emulator.push(
            Reply(prompt_tokens=1000, cached_tokens=200, completion_tokens=500, model="gpt-4o")
        )
        c = openai.OpenAI(base_url=openai_emulator.base_url, api_key="k", max_retries=0)
        c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        otel_llm_usage.uninstrument()
    lines = [line for line in body.splitlines() if not line.startswith("#")]
    cost = [line for line in lines if line.startswith("llm_usage_cost_USD_total{")]
    assert len(cost) == 1 and cost[0].endswith(" 0.00725")
    assert 'gen_ai_request_model="gpt-4o"' in cost[0] and 'gen_ai_provider_name="openai"' in cost[0]
    assert any(line.startswith("gen_ai_client_operation_duration_seconds_bucket{") for line in lines)
    assert any(line.startswith("gen_ai_client_token_usage_bucket{") for line in lines)
    cache = [line for line in lines if line.startswith("llm_usage_tokens_total{") and "cache_read" in line]
    assert len(cache) == 1 and cache[0].endswith(" 200.0")


def test_a_port_given_to_instrument_again_serves_the_sums_so_far(openai_emulator: Any) -> None:
    """The zero-code path instruments first; `instrument(prometheus_port=...)` in code then serves
    /metrics, with the calls made before it counted."""
    port = free_port()
    otel_llm_usage.instrument()
    try:
        c = openai.OpenAI(base_url=openai_emulator.base_url, api_key="k", max_retries=0)
        for _ in range(2):
            openai_emulator.push(Reply(prompt_tokens=1000, completion_tokens=500, model="gpt-4o"))
        c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        otel_llm_usage.instrument(prometheus_port=port)
        c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        otel_llm_usage.uninstrument()
    lines = [line for line in body.splitlines() if not line.startswith("#")]
    # prometheus_client's registry is global: the readers of earlier tests in this process serve
    # their series too, so the one that counts both calls is looked for among them.
    cost = [line for line in lines if line.startswith("llm_usage_cost_USD_total{")]
    assert [line for line in cost if line.endswith(" 0.015")], "\n".join(cost)  # two calls of $0.0075
