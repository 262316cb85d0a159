"""`opentelemetry-instrument` with bad settings: warnings, defaults, and the loader goes on.

OpenTelemetry's loader re-raises an instrumentor's exception and skips every instrumentor after
it, so the test registers a probe instrumentor after ours (in the same distribution's entry points,
which keeps their order) and checks that it ran, next to the user's call being recorded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

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

PROBE = textwrap.dedent(
    """
    import os
    from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

    class AfterProbe(BaseInstrumentor):
        def instrumentation_dependencies(self):
            return ()

        def _instrument(self, **kwargs):
            with open(os.environ["PROBE_MARKER"], "w") as f:
                f.write("ran")

        def _uninstrument(self, **kwargs):
            pass
    """
)


def _fake_distribution(root: Path) -> None:
    """Our entry point, then the probe's, in one distribution found before the installed one."""
    (root / "after_probe.py").write_text(PROBE)
    info = root / "otel_llm_usage-0.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: otel-llm-usage\nVersion: 0.0.0\n")
    (info / "entry_points.txt").write_text(
        "[opentelemetry_instrumentor]\n"
        "otel_llm_usage = otel_llm_usage.instrumentor:LLMUsageInstrumentor\n"
        "zz_after_probe = after_probe:AfterProbe\n"
    )


def run_instrumented(tmp_path: Path, **env: str) -> tuple[list[dict[str, Any]], str, bool]:
    """Run the app under opentelemetry-instrument: (spans, stderr, whether the probe ran)."""
    probe_root = tmp_path / "probe"
    probe_root.mkdir()
    _fake_distribution(probe_root)
    app = tmp_path / "app.py"
    app.write_text(APP)
    marker = tmp_path / "probe-ran"
    launcher = Path(sys.executable).with_name("opentelemetry-instrument")
    full_env = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        # The official openai instrumentation (installed for the coexistence tests) stays out of
        # these runs: they are about this package's own configuration.
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "openai",
        "PYTHONPATH": os.pathsep.join([str(probe_root), str(REPO)]),
        "PROBE_MARKER": str(marker),
        **env,
    }
    done = subprocess.run(
        [str(launcher), sys.executable, str(app)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    spans = []
    decoder = json.JSONDecoder()
    text = done.stdout.strip()
    while text:
        obj, end = decoder.raw_decode(text)
        spans.append(obj)
        text = text[end:].strip()
    return spans, done.stderr, marker.exists()


def test_bad_settings_warn_apply_defaults_and_later_instrumentors_run(tmp_path: Path) -> None:
    spans, stderr, probe_ran = run_instrumented(
        tmp_path,
        OTEL_LLM_USAGE_STREAM_USAGE="auto",
        OTEL_LLM_USAGE_PROVIDERS="openai,gemini",
        OTEL_LLM_USAGE_ROLLUPS="enabled",
        OTEL_LLM_USAGE_MAX_SESSIONS="lots",
        OTEL_LLM_USAGE_SESSION_IDLE_SECONDS="0.5",
        OTEL_LLM_USAGE_BUDGETS='[{"scope": "run", "max_cost_usd": "half"}]',
    )
    assert probe_ran, stderr
    for variable, value in (
        ("OTEL_LLM_USAGE_STREAM_USAGE", "'auto'"),
        ("OTEL_LLM_USAGE_PROVIDERS", "'openai,gemini'"),
        ("OTEL_LLM_USAGE_ROLLUPS", "'enabled'"),
        ("OTEL_LLM_USAGE_MAX_SESSIONS", "'lots'"),
        ("OTEL_LLM_USAGE_BUDGETS", "max_cost_usd"),
    ):
        lines = [line for line in stderr.splitlines() if variable in line]
        assert len(lines) == 1 and value in lines[0] and "default" in lines[0], stderr
    assert "SESSION_IDLE_SECONDS" not in stderr  # 0.5 is a valid float
    assert "Traceback" not in stderr
    (llm,) = [s for s in spans if s["attributes"].get("llm_usage.call")]
    assert llm["attributes"]["gen_ai.usage.cost"] == 0.00725  # the default: every provider patched


def test_disabled_instrumentations_variable_is_honoured(tmp_path: Path) -> None:
    spans, stderr, probe_ran = run_instrumented(
        tmp_path, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="otel_llm_usage"
    )
    assert probe_ran, stderr
    assert not [s for s in spans if s["attributes"].get("llm_usage.call")]


def test_good_settings_from_the_environment_apply(tmp_path: Path) -> None:
    spans, stderr, probe_ran = run_instrumented(
        tmp_path,
        OTEL_LLM_USAGE_PRICES='{"gpt-4o": {"input": 1, "output": 2}}',
        OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="SPAN_ONLY",
        OTEL_SEMCONV_STABILITY_OPT_IN="gen_ai_latest_experimental",
    )
    assert probe_ran and "otel-llm-usage" not in stderr, stderr
    (llm,) = [s for s in spans if s["attributes"].get("llm_usage.call")]
    assert llm["attributes"]["gen_ai.usage.cost"] == 0.002  # 1000 * $1/M + 500 * $2/M
    assert json.loads(llm["attributes"]["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "hi"}]}
    ]
