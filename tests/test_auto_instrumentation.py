"""`opentelemetry-instrument python app.py` picks the instrumentor up from its entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

APP = textwrap.dedent(
    """
    import openai
    from emulators import OpenAIEmulator, Reply

    with OpenAIEmulator() as emu:
        emu.push(Reply(prompt_tokens=1000, cached_tokens=200, completion_tokens=500))
        client = openai.OpenAI(base_url=emu.base_url, api_key="k", max_retries=0)
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    """
)


def test_zero_code_instrumentation_via_entry_point(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    launcher = Path(sys.executable).with_name("opentelemetry-instrument")
    env = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    out = subprocess.run(
        [str(launcher), sys.executable, str(app)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    spans = []
    decoder = json.JSONDecoder()
    text = out.strip()
    while text:
        obj, end = decoder.raw_decode(text)
        spans.append(obj)
        text = text[end:].strip()
    # Ours: another instrumentation of openai in the environment (openai-v2) names its span alike.
    llm = [s for s in spans if s["name"] == "chat gpt-4o" and s["attributes"].get("llm_usage.call")]
    assert len(llm) == 1
    assert llm[0]["attributes"]["gen_ai.usage.cost"] == 0.00725
    assert llm[0]["attributes"]["gen_ai.usage.cache_read.input_tokens"] == 200
