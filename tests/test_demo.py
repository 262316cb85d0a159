"""`make demo` runs: the workload, its rollups, the summary and the /metrics excerpt."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.test_prometheus_endpoint import free_port


def test_demo_prints_rollups_and_serves_metrics() -> None:
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_API_KEY"))}
    out = subprocess.run(
        [sys.executable, "-m", "examples.demo", "--serve", "0", "--port", str(free_port())],
        cwd=root, env=env, capture_output=True, text=True, timeout=300, check=True,
    ).stdout  # fmt: skip
    runs = re.findall(r"run (\w+)\s+requests=(\d+)", out)
    assert [name for name, _ in runs] == ["triage", "research", "answer"] * 3
    totals = re.findall(r"session total: requests=(\d+) .* cost=\$([0-9.]+) unpriced=(\d+) errors=(\d+)", out)
    assert [(int(r), int(u), int(e)) for r, _, u, e in totals] == [(7, 1, 1), (14, 2, 2)]
    # the second session ran the same workload twice: exactly twice the first session's cost
    assert float(totals[1][1]) == 2 * float(totals[0][1])
    assert "by agent" in out and "by model" in out and "by session" in out
    assert re.search(r"llm_usage_cost_USD_total\{.*gen_ai_agent_name=\"researcher\".*\} [0-9.e-]+", out)
    assert "llm_usage_requests_unpriced_total{" in out
    assert re.search(r"llm_usage_budget_limit_USD\{.*llm_usage_budget_scope=\"process\".*\} 1\.0\b", out)
    assert re.search(r"llm_usage_budget_spent_USD\{.*gen_ai_agent_name=\"writer\".*\} 0\.0\b", out)


def test_examples_run() -> None:
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_API_KEY"))}
    for example, expected in (
        ("examples.openai_agents_example", "stream_usage='always'"),
        ("examples.agno_example", "300 + 5000 + 1000 = 6300"),
        ("examples.record_call_example", "peak context use=75%"),
        ("examples.budgets_and_calls_example", "spent $0.006000 of $0.001000"),
        ("examples.usage_summary_example", "loaded back equal: True"),
    ):
        out = subprocess.run(
            [sys.executable, "-m", example], cwd=root, env=env, capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert expected in out.stdout
