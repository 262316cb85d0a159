"""Console mode: one line per LLM call through the `otel_llm_usage.console` logger, the usage
summary table at exit, nothing at all when off."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

import otel_llm_usage
from emulators import OpenAIEmulator, Reply
from otel_llm_usage import console
from otel_llm_usage.listener import EndedCall
from otel_llm_usage.usage import TokenUsage
from tests.conftest import Telemetry, make_telemetry

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 120


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def lines() -> Iterator[Lines]:
    """The console logger with a handler of the test's own: console mode must add none."""
    logger = logging.getLogger(console.LOGGER_NAME)
    handler = Lines()
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    console.disable()


def ended(**fields: Any) -> EndedCall:
    base: dict[str, Any] = dict(
        model="gpt-4o-mini",
        usage=TokenUsage(input=1200, output=300, cache_read=1024, reasoning=64),
        cost_usd=0.0002832,
        error=False,
        start_ns=1_000_000_000,
        end_ns=3_500_000_000,
        first_output_ns=None,
        context_utilization=None,
        agent=None,
        session_id=None,
        attributes={"gen_ai.provider.name": "openai", "gen_ai.operation.name": "chat"},
    )
    base.update(fields)
    return EndedCall(**base)


def test_the_line_of_a_priced_call() -> None:
    assert console.line(ended(agent="planner", session_id="conv-42"), "plan") == (
        "otel-llm-usage: openai chat gpt-4o-mini | in 1200 (cached 1024) · out 300 (reasoning 64)"
        " | $0.0002832 | 2.50 s | run plan, agent planner, session conv-42"
    )


def test_the_line_of_a_stream_an_unpriced_call_a_call_without_usage_and_an_error() -> None:
    stream_attrs = {
        "gen_ai.provider.name": "openai",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.stream": True,
    }
    stream = console.line(ended(attributes=stream_attrs, first_output_ns=1_120_000_000), None)
    assert stream.endswith("| 2.50 s (first chunk 120 ms)")
    assert "| unpriced |" in console.line(ended(cost_usd=None), None)
    bare = console.line(ended(usage=None, cost_usd=None, error=True, end_ns=1_000_000_000), None)
    assert bare == "otel-llm-usage: openai chat gpt-4o-mini | no usage | 0 ms | error"


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0, "$0"), (0.0000072, "$0.0000072"), (0.0125, "$0.0125"), (1.5, "$1.50"), (12.345, "$12.35")],
)
def test_costs_keep_the_digits_that_matter(value: float, text: str) -> None:
    assert console.usd(value) == text


def call(emu: OpenAIEmulator, stream: bool = False) -> None:
    emu.push(Reply(prompt_tokens=1000, completion_tokens=500, cached_tokens=200))
    client = openai.OpenAI(base_url=emu.base_url, api_key="k", max_retries=0)
    if stream:
        for _ in client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        ):
            pass
    else:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


def test_one_line_per_call_through_the_logger(lines: Lines, openai_emulator: OpenAIEmulator) -> None:
    t = make_telemetry(console=True)
    try:
        logger = logging.getLogger(console.LOGGER_NAME)
        assert logger.handlers == [lines] and logger.propagate  # the application's handler is kept
        with otel_llm_usage.session("conv-1"), otel_llm_usage.run("answer", agent="helper"):
            call(openai_emulator)
        call(openai_emulator, stream=True)
    finally:
        otel_llm_usage.uninstrument()
    cost = (t.llm_spans()[0].attributes or {})["gen_ai.usage.cost"]
    assert len(lines.lines) == 2, lines.lines
    first, second = lines.lines
    assert first.startswith("otel-llm-usage: openai chat gpt-4o-mini")
    assert "in 1000 (cached 200) · out 500 (reasoning 0)" in first
    assert f"| {console.usd(cost)} |" in first
    assert first.endswith("| run answer, agent helper, session conv-1")
    assert "(first chunk " in second and "run " not in second


def test_off_by_default_costs_nothing(
    lines: Lines, openai_emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_LLM_USAGE_CONSOLE", raising=False)
    t = make_telemetry()
    try:
        assert not any(isinstance(x, console.ConsoleListener) for x in t.instrumentor.recorder.listeners)
        call(openai_emulator)
    finally:
        otel_llm_usage.uninstrument()
    assert lines.lines == []


def test_the_environment_switches_it_on_and_instrument_again_switches_it(
    lines: Lines, openai_emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_LLM_USAGE_CONSOLE", "1")
    t: Telemetry = make_telemetry()
    try:
        call(openai_emulator)
        otel_llm_usage.instrument(console=False)
        assert not any(isinstance(x, console.ConsoleListener) for x in t.instrumentor.recorder.listeners)
        call(openai_emulator)
        otel_llm_usage.instrument(console=True)
        call(openai_emulator)
    finally:
        otel_llm_usage.uninstrument()
    assert len(lines.lines) == 2, lines.lines
    assert otel_llm_usage.usage_summary().total.requests == 0  # uninstrumented: nothing held


SCRIPT = textwrap.dedent(
    """
    import logging, os, sys
    import openai
    import otel_llm_usage
    from emulators import OpenAIEmulator, Reply

    if os.environ.get("ROOT_HANDLER"):
        logging.basicConfig(level=logging.INFO)  # the application's own root handler
    otel_llm_usage.instrument(**({"console": True} if os.environ.get("IN_CODE") else {}))
    with OpenAIEmulator() as emu:
        client = openai.OpenAI(base_url=emu.base_url, api_key="k", max_retries=0)
        hi = [{"role": "user", "content": "hi"}]
        for _ in range(int(os.environ["CALLS"])):
            emu.push(Reply(prompt_tokens=1000, completion_tokens=500))
            with otel_llm_usage.session("s-1"):
                client.chat.completions.create(model="gpt-4o-mini", messages=hi)
    """
)


def run_script(tmp_path: Path, **env: str) -> str:
    script = tmp_path / "app.py"
    script.write_text(SCRIPT)
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    base["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, str(script)],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == ""
    return done.stderr


@pytest.mark.parametrize("root_handler", ["", "1"])
def test_stderr_gets_each_call_once_and_the_table_once_at_exit(tmp_path: Path, root_handler: str) -> None:
    err = run_script(tmp_path, CALLS="2", IN_CODE="1", ROOT_HANDLER=root_handler)
    calls = [x for x in err.splitlines() if "openai chat gpt-4o-mini" in x]
    assert len(calls) == 2, err  # no second copy through the root logger's handler
    assert all("| $0.00045 |" in x and x.endswith("session s-1") for x in calls), err  # 1000 + 500 tokens
    assert err.count("usage of this process") == 1, err
    table = err.split("usage of this process", 1)[1]
    assert "requests" in table and "cost_usd" in table and "s-1" in table
    total = next(x for x in table.splitlines() if x.split()[:1] == ["total"] and len(x.split()) > 2)
    assert [cell.replace(",", "") for cell in total.split()[1:4]] == ["2", "2000", "1000"], table


def test_the_environment_form_and_no_table_without_calls(tmp_path: Path) -> None:
    err = run_script(tmp_path, CALLS="1", OTEL_LLM_USAGE_CONSOLE="1")
    assert "| $0.00045 |" in err and "usage of this process" in err, err
    quiet = run_script(tmp_path, CALLS="0", OTEL_LLM_USAGE_CONSOLE="1")
    assert quiet == "", quiet
