"""benchmarks/compare.py: its attribute capture and its reading of the spans, on this package alone.

The capture runs as compare.py runs it, as a worker process of its own (it sets the global
providers), here in the test environment instead of a `.bench-venvs/` one; no peer is installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from genai_prices import Usage as GenaiUsage
from genai_prices import calc_price

from benchmarks import compare, overhead

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Golden costs, by hand from the published per-million prices.
# gpt-4o-mini: (1200 - 1024) x $0.15 + 1024 x $0.075 + 300 x $0.60 = $283.2 per million calls.
OPENAI_COST = 0.0002832
# claude-sonnet-4-5: 200 x $3 + 500 x $3.75 (5-minute write) + 1000 x $0.30 + 300 x $15.
ANTHROPIC_COST = 0.007275


@pytest.fixture(scope="module")
def captured() -> dict[str, Any]:
    env = {**compare.worker_env(), "PYTHONPATH": ROOT}
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "compare.py")]
    command += ["--worker", "otel-llm-usage", "--phase", "capture", "--chunks", "50"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith(overhead.REPLY_PREFIX)]
    assert len(lines) == 1, done.stdout
    reply = lines[0][len(overhead.REPLY_PREFIX) :]
    assert reply.startswith("result ")
    result: dict[str, Any] = json.loads(reply[len("result ") :])
    return result


def test_the_expected_costs_are_the_golden_figures_and_genai_prices() -> None:
    assert compare.EXPECTED["openai"]["cost"] == pytest.approx(OPENAI_COST, abs=1e-15)
    assert compare.EXPECTED["anthropic"]["cost"] == pytest.approx(ANTHROPIC_COST, abs=1e-15)
    openai_price = calc_price(
        GenaiUsage(input_tokens=1200, cache_read_tokens=1024, output_tokens=300),
        "gpt-4o-mini",
        provider_id="openai",
    )
    anthropic_price = calc_price(
        GenaiUsage(input_tokens=1700, cache_read_tokens=1000, cache_write_tokens=500, output_tokens=300),
        "claude-sonnet-4-5",
        provider_id="anthropic",
    )
    assert float(openai_price.total_price) == pytest.approx(OPENAI_COST, abs=1e-12)
    assert float(anthropic_price.total_price) == pytest.approx(ANTHROPIC_COST, abs=1e-12)


def test_the_fixed_responses_carry_the_usage_the_expectations_are_made_from() -> None:
    openai_usage = json.loads(overhead.chat_completion_body())["usage"]
    assert openai_usage["prompt_tokens"] == compare.EXPECTED["openai"]["input"]
    assert openai_usage["completion_tokens"] == compare.EXPECTED["openai"]["output"]
    assert openai_usage["prompt_tokens_details"]["cached_tokens"] == compare.EXPECTED["openai"]["cache_read"]
    assert (
        openai_usage["completion_tokens_details"]["reasoning_tokens"]
        == compare.EXPECTED["openai"]["reasoning"]
    )
    usage = json.loads(compare.anthropic_message_body())["usage"]
    inclusive = (
        usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"]
    )
    assert inclusive == compare.EXPECTED["anthropic"]["input"] == 1700
    events = compare.anthropic_sse_body(50).decode().split("\n\n")
    assert len([e for e in events if e.startswith("event: ")]) == 51


def test_one_span_per_call_and_the_sdk_span_of_anthropic_is_suppressed(captured: dict[str, Any]) -> None:
    for kind in compare.KINDS:
        spans = captured["spans"][kind]
        assert [s["kind"] for s in spans] == ["CLIENT"], (kind, spans)
        assert spans[0]["scope"] == "otel_llm_usage"
        assert spans[0]["attributes"]["llm_usage.call"] is True
    assert captured["spans"]["openai_call"][0]["name"] == "chat gpt-4o-mini"
    assert captured["spans"]["anthropic_stream"][0]["name"] == "chat claude-sonnet-4-5"
    assert captured["versions"]["openai"].startswith("3.")
    assert "llm_usage.cost" in captured["metrics"]
    assert "gen_ai.client.token.usage" in captured["metrics"]


@pytest.mark.parametrize("kind", compare.KINDS)
def test_every_usage_attribute_is_found_and_right(captured: dict[str, Any], kind: str) -> None:
    sdk = kind.split("_")[0]
    found = compare.findings(sdk, captured["spans"][kind])
    names = {c: {f["name"]: f["value"] for f in found[c] if f["ok"]} for c in compare.CONCEPTS}
    wrong = {c: [f for f in found[c] if not f["ok"]] for c in compare.CONCEPTS}
    expected = compare.EXPECTED[sdk]
    assert names["input"] == {"gen_ai.usage.input_tokens": expected["input"]}
    assert names["output"] == {"gen_ai.usage.output_tokens": expected["output"]}
    assert names["cache_read"] == {"gen_ai.usage.cache_read.input_tokens": expected["cache_read"]}
    if sdk == "openai":
        assert names["reasoning"] == {"gen_ai.usage.reasoning.output_tokens": 64}
        cost = OPENAI_COST
    else:
        assert names["cache_write"] == {"gen_ai.usage.cache_creation.input_tokens": 500}
        cost = ANTHROPIC_COST
    assert names["cost"] == {"gen_ai.usage.cost": pytest.approx(cost, abs=1e-12)}
    # The per-bucket costs are found as cost attributes too, and are not the total.
    assert {f["name"] for f in wrong["cost"]} >= {"llm_usage.cost.input_usd", "llm_usage.cost.output_usd"}
    assert not [f for c in compare.CONCEPTS if c != "cost" for f in wrong[c]], wrong
    if kind.endswith("stream"):
        (ttfc,) = found["ttfc"]
        assert ttfc["name"] == "gen_ai.response.time_to_first_chunk"
        assert ttfc["ok"] and ttfc["note"] == "s"
        assert 0 < ttfc["value"] <= captured["spans"][kind][0]["duration_s"]
    else:
        assert found["ttfc"] == []


def test_the_markdown_table_marks_every_cell_right(captured: dict[str, Any]) -> None:
    captures = {"otel-llm-usage": captured}
    openai_table = compare.attributes_markdown(captures, "openai")
    anthropic_table = compare.attributes_markdown(captures, "anthropic")
    for table in (openai_table, anthropic_table):
        rows = table.splitlines()[2:]
        assert len(rows) == 2  # the call and the stream
        assert "✗" not in table and "—" not in table
    # call: input, output, cache read, reasoning, cost; stream: the same and time to first chunk
    assert [r.count("✓") for r in openai_table.splitlines()[2:]] == [5, 6]
    assert [r.count("✓") for r in anthropic_table.splitlines()[2:]] == [5, 6]
    assert "`gen_ai.usage.cost` = 0.0002832 ✓" in openai_table
    assert "`gen_ai.usage.cost` = 0.0072750 ✓" in anthropic_table


def test_attribute_names_of_the_peers_are_read_as_the_right_concepts() -> None:
    cases = {
        "gen_ai.usage.input_tokens": "input",
        "gen_ai.usage.prompt_tokens": "input",
        "llm.token_count.prompt": "input",
        "llm.token_count.completion": "output",
        "gen_ai.usage.cache_read_input_tokens": "cache_read",
        "llm.token_count.prompt_details.cache_read": "cache_read",
        "gen_ai.usage.cache_creation_input_tokens": "cache_write",
        "llm.token_count.completion_details.reasoning": "reasoning",
        "gen_ai.usage.reasoning_tokens": "reasoning",
        "gen_ai.usage.cost": "cost",
        "gen_ai.server.time_to_first_token": "ttfc",
        "llm.usage.total_tokens": None,
        "gen_ai.request.max_tokens": None,
        "llm.token_count.prompt_details.audio": None,
        "llm_usage.price.model": None,
    }
    assert {name: compare.concept_of(name) for name in cases} == cases
    assert compare.judge("anthropic", "input", 200, 0.01) == (
        False,
        "expected 1700: uncached input only (Anthropic's raw input_tokens)",
    )
    assert compare.judge("openai", "ttfc", 4.0, 0.01) == (True, "ms")
    assert compare.judge("openai", "ttfc", 40.0, 0.01)[0] is False
