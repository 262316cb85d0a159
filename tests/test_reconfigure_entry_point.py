"""Under `opentelemetry-instrument`, options given later in code take effect (issue: they were
silently ignored because the entry point had instrumented first with the defaults)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

APP = textwrap.dedent(
    """
    import json, logging, sys
    import openai
    import otel_llm_usage
    from otel_llm_usage.instrumentor import active_instrumentor
    from emulators import OpenAIEmulator, Reply

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    before = active_instrumentor() is not None
    otel_llm_usage.instrument(
        prices={"gpt-4o-mini": {"input": 2.0, "output": 4.0}},
        budgets=[otel_llm_usage.Budget(max_cost_usd=0.001, scope="process", action="raise")],
    )
    with OpenAIEmulator() as emu:
        client = openai.OpenAI(base_url=emu.base_url, api_key="k", max_retries=0)
        for _ in range(2):
            emu.push(Reply(prompt_tokens=1000, completion_tokens=500))
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
            refused = False
        except otel_llm_usage.BudgetExceeded:
            refused = True
        sent = len(emu.requests)
    total = otel_llm_usage.usage_summary().total
    result = {"before": before, "refused": refused, "sent": sent, "cost": total.cost_usd}
    print("RESULT " + json.dumps(result), file=sys.stderr)
    """
)


def test_options_in_code_reconfigure_what_the_entry_point_started(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    launcher = Path(sys.executable).with_name("opentelemetry-instrument")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        PYTHONPATH=str(ROOT),
    )
    done = subprocess.run(
        [str(launcher), sys.executable, str(app)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("RESULT ")]
    result = json.loads(line.removeprefix("RESULT "))
    assert result["before"] is True, "the entry point had not instrumented"
    assert result["cost"] == 0.004, "the override price was not used"  # 1000 * $2/M + 500 * $4/M
    assert result["refused"] is True and result["sent"] == 1, "the budget did not refuse the second call"
    changed = [x for x in done.stderr.splitlines() if "otel-llm-usage: reconfigured" in x]
    assert len(changed) == 1, done.stderr[-3000:]
    assert "prices=1 override(s): gpt-4o-mini" in changed[0]
    assert "budgets=[process $0.001 raise]" in changed[0]
