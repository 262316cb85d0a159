"""OpenHands SDK conversations as run spans and sessions, driven against the OpenAI emulator.

The OpenHands SDK needs Python 3.12 or later: this module runs in its own virtual environment
(`make test-openhands`) and is skipped wherever the SDK is not installed.

An OpenHands agent stops when the model answers with a message and no tool call (its `finish` tool
is one way, a plain reply the other): each scripted reply is a plain message, so each `run()` is
exactly one model call, and a second `send_message()` + `run()` makes a second run of the same
conversation.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

# OpenHands starts tracing of its own (Laminar) when one of these is set as its agent module is
# imported: these tests measure this package's spans alone. The subprocess test inherits this
# environment.
os.environ.pop("LMNR_PROJECT_API_KEY", None)
os.environ.pop("OTEL_ENDPOINT", None)
os.environ.pop("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None)
os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
os.environ.setdefault("OPENHANDS_SUPPRESS_BANNER", "1")

pytest.importorskip("openhands.sdk")

import litellm
import openhands.sdk.llm.llm as llm_module
import wrapt
from litellm.responses import main as litellm_responses_main
from openhands.sdk import LLM, Agent, Conversation
from openhands.sdk.context.condenser import LLMSummarizingCondenser
from openhands.sdk.conversation.impl.local_conversation import LocalConversation
from openhands.sdk.llm.llm import LLM as LLMClass
from openhands.sdk.observability import laminar
from pydantic import SecretStr

import otel_llm_usage
from emulators import OpenAIEmulator, Reply
from otel_llm_usage import semconv as sc
from otel_llm_usage.frameworks import openhands as integration
from otel_llm_usage.registry import FRAMEWORKS
from otel_llm_usage.runs import session_usage, usage_summary
from otel_llm_usage.usage import Usage
from tests.conftest import Telemetry, make_telemetry

API_KEY = "sk-test-secret-key-0123456789"
MODULE = "otel_llm_usage.frameworks.openhands"
CHAT_MODEL = "openai/gpt-4o"
RESPONSES_MODEL = "openai/gpt-5"  # OpenHands sends GPT-5 models through litellm.responses


@pytest.fixture
def telemetry(monkeypatch: pytest.MonkeyPatch) -> Iterator[Telemetry]:
    """Instrumented with the OpenHands integration registered as the instrumentor registers it."""
    assert FRAMEWORKS["openhands"] == MODULE
    yield make_telemetry()
    otel_llm_usage.uninstrument()


def push(emu: OpenAIEmulator, replies: int = 1) -> None:
    for i in range(replies):
        emu.push(
            Reply(
                text=f"Done ({i}).",
                prompt_tokens=1000 + 100 * i,
                cached_tokens=200,
                completion_tokens=500 + 10 * i,
            )
        )


def make_llm(emu: OpenAIEmulator, model: str = CHAT_MODEL, usage_id: str = "agent") -> LLM:
    return LLM(
        model=model,
        base_url=emu.base_url,
        api_key=SecretStr(API_KEY),
        usage_id=usage_id,
        num_retries=0,
    )


def conversation(emu: OpenAIEmulator, tmp_path: Path, model: str = CHAT_MODEL) -> Any:
    agent = Agent(llm=make_llm(emu, model), tools=[])
    return Conversation(agent=agent, workspace=str(tmp_path), visualizer=None)


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def run_spans(t: Telemetry) -> list[Any]:
    return [s for s in t.spans() if attrs(s).get(sc.OPERATION_NAME) == sc.OP_INVOKE_AGENT]


def assert_usage_is_openhands(ours: Usage | Any, metrics: Any) -> None:
    """Our totals (a `Usage` or a summary row) equal an OpenHands `Metrics`."""
    tokens = metrics.accumulated_token_usage
    assert ours.input_tokens == tokens.prompt_tokens
    assert ours.output_tokens == tokens.completion_tokens
    assert ours.cache_read_tokens == tokens.cache_read_tokens
    assert ours.cost_usd == pytest.approx(metrics.accumulated_cost, rel=1e-12)
    assert ours.requests == len(metrics.costs)


# The newest release verified here. `make test-openhands` installs `openhands-sdk>=` this, and this
# test fails if an environment resolved to an older one (as it did while wrapt>=2 was required).
OPENHANDS_FLOOR = (1, 58, 2)


def test_the_current_openhands_sdk_is_installed() -> None:
    installed = importlib.metadata.version("openhands-sdk")
    numbers = tuple(int(part) for part in re.findall(r"\d+", installed)[:3])
    assert numbers >= OPENHANDS_FLOOR, f"openhands-sdk {installed} is older than {OPENHANDS_FLOOR}"


def test_laminar_tracing_is_off() -> None:
    assert not laminar.should_enable_observability()
    from lmnr import Laminar

    assert not Laminar.is_initialized()


@pytest.mark.parametrize("model", [CHAT_MODEL, RESPONSES_MODEL])
def test_runs_and_session_equal_conversation_stats(
    telemetry: Telemetry, openai_emulator: OpenAIEmulator, tmp_path: Path, model: str
) -> None:
    push(openai_emulator, 2)
    conv = conversation(openai_emulator, tmp_path, model)
    sid = str(conv.id)
    for text in ("Say hello.", "Say goodbye."):
        conv.send_message(text)
        conv.run()
        assert conv.state.execution_status.value == "finished"

    stats = conv.conversation_stats
    combined = stats.get_combined_metrics()
    assert openai_emulator.served.requests == 2
    assert len(combined.costs) == 2 and combined.accumulated_cost > 0

    runs = run_spans(telemetry)
    assert [s.name for s in runs] == ["invoke_agent Agent"] * 2  # OpenHands names agents by class
    calls = telemetry.llm_spans()
    assert len(calls) == 2
    path = "/v1/responses" if model == RESPONSES_MODEL else "/v1/chat/completions"
    assert {r.path for r in openai_emulator.requests} == {path}
    for run, call in zip(runs, sorted(calls, key=lambda s: s.start_time or 0), strict=True):
        a = attrs(run)
        assert a[sc.CONVERSATION_ID] == a[sc.SESSION_ID] == sid
        assert a[sc.AGENT_NAME] == "Agent"
        assert a[sc.RUN_REQUESTS] == 1
        assert call.parent is not None and call.parent.span_id == run.context.span_id
        c = attrs(call)
        assert c[sc.SESSION_ID] == sid
        assert c[sc.AGENT_NAME] == "agent"  # the LLM's usage_id
        assert c["gen_ai.provider.name"] == "openai"

    ours = session_usage(sid)
    assert ours is not None
    assert_usage_is_openhands(ours, combined)
    by_agent = {row.name: row for row in usage_summary().by_agent}
    assert set(stats.usage_to_metrics) == {"agent"}
    assert_usage_is_openhands(by_agent["agent"], stats.usage_to_metrics["agent"])
    # Each run span carries its own call's totals.
    assert [attrs(r)[sc.RUN_INPUT_TOKENS] for r in runs] == [1000, 1100]
    assert [attrs(r)[sc.RUN_OUTPUT_TOKENS] for r in runs] == [500, 510]


@pytest.mark.parametrize("model", [CHAT_MODEL, RESPONSES_MODEL])
def test_streamed_run_equals_conversation_stats(
    telemetry: Telemetry, openai_emulator: OpenAIEmulator, tmp_path: Path, model: str
) -> None:
    """With `stream=True` and a token callback, OpenHands reads litellm's stream itself."""
    push(openai_emulator)
    tokens: list[Any] = []
    llm = make_llm(openai_emulator, model).model_copy(update={"stream": True})
    conv = Conversation(
        agent=Agent(llm=llm, tools=[]),
        workspace=str(tmp_path),
        visualizer=None,
        token_callbacks=[tokens.append],
    )
    conv.send_message("Say hello.")
    conv.run()
    assert tokens
    (run,) = run_spans(telemetry)
    call = telemetry.one_llm_span()
    assert call.parent is not None and call.parent.span_id == run.context.span_id
    ours = session_usage(str(conv.id))
    assert ours is not None
    assert_usage_is_openhands(ours, conv.conversation_stats.get_combined_metrics())


async def test_arun_is_a_run(telemetry: Telemetry, openai_emulator: OpenAIEmulator, tmp_path: Path) -> None:
    push(openai_emulator)
    conv = conversation(openai_emulator, tmp_path)
    conv.send_message("Say hello.")
    await conv.arun()
    (run,) = run_spans(telemetry)
    call = telemetry.one_llm_span()
    assert call.parent is not None and call.parent.span_id == run.context.span_id
    assert attrs(call)[sc.AGENT_NAME] == "agent"
    ours = session_usage(str(conv.id))
    assert ours is not None
    assert_usage_is_openhands(ours, conv.conversation_stats.get_combined_metrics())


def test_costs_per_usage_id(telemetry: Telemetry, openai_emulator: OpenAIEmulator, tmp_path: Path) -> None:
    """A summarizing condenser's LLM (`condenser`) next to the agent's (`agent`), as OpenHands counts them.

    `condense()` makes the condenser summarize the history outside `run()`; its call joins the
    conversation's session without a run span.
    """
    push(openai_emulator, 5)
    condenser = LLMSummarizingCondenser(
        llm=make_llm(openai_emulator, usage_id="condenser"), max_size=20, keep_first=1
    )
    agent = Agent(llm=make_llm(openai_emulator), tools=[], condenser=condenser)
    conv = Conversation(agent=agent, workspace=str(tmp_path), visualizer=None)
    for i in range(4):
        conv.send_message(f"Message {i}.")
        conv.run()
    conv.condense()

    stats = conv.conversation_stats
    assert set(stats.usage_to_metrics) == {"agent", "condenser"}
    assert len(run_spans(telemetry)) == 4
    by_agent = {row.name: row for row in usage_summary().by_agent}
    for usage_id, metrics in stats.usage_to_metrics.items():
        assert_usage_is_openhands(by_agent[usage_id], metrics)
    (condensing,) = [s for s in telemetry.llm_spans() if attrs(s)[sc.AGENT_NAME] == "condenser"]
    assert attrs(condensing)[sc.SESSION_ID] == str(conv.id)
    assert condensing.parent is None
    ours = session_usage(str(conv.id))
    assert ours is not None
    assert_usage_is_openhands(ours, stats.get_combined_metrics())


def test_ask_agent_joins_the_session(
    telemetry: Telemetry, openai_emulator: OpenAIEmulator, tmp_path: Path
) -> None:
    """`ask_agent` asks through an LLM of its own (`ask-agent-llm`), outside `run()`."""
    push(openai_emulator, 2)
    conv = conversation(openai_emulator, tmp_path)
    conv.send_message("Say hello.")
    assert conv.ask_agent("What was asked?") == "Done (0)."
    conv.run()

    stats = conv.conversation_stats
    assert set(stats.usage_to_metrics) == {"agent", "ask-agent-llm"}
    by_agent = {row.name: row for row in usage_summary().by_agent}
    for usage_id, metrics in stats.usage_to_metrics.items():
        assert_usage_is_openhands(by_agent[usage_id], metrics)
    (asked,) = [s for s in telemetry.llm_spans() if attrs(s)[sc.AGENT_NAME] == "ask-agent-llm"]
    assert attrs(asked)[sc.SESSION_ID] == str(conv.id)
    ours = session_usage(str(conv.id))
    assert ours is not None
    assert_usage_is_openhands(ours, stats.get_combined_metrics())


def test_two_conversations_are_two_sessions(
    telemetry: Telemetry, openai_emulator: OpenAIEmulator, tmp_path: Path
) -> None:
    push(openai_emulator, 2)
    convs = [conversation(openai_emulator, tmp_path / str(i)) for i in range(2)]
    for conv in convs:
        conv.send_message("Say hello.")
        conv.run()
    for conv in convs:
        ours = session_usage(str(conv.id))
        assert ours is not None
        assert_usage_is_openhands(ours, conv.conversation_stats.get_combined_metrics())


def test_failed_run_marks_the_run_and_reraises(
    telemetry: Telemetry, openai_emulator: OpenAIEmulator, tmp_path: Path
) -> None:
    openai_emulator.push(Reply(status=400))
    conv = conversation(openai_emulator, tmp_path)
    conv.send_message("Say hello.")
    with pytest.raises(Exception) as raised:
        conv.run()
    (run,) = run_spans(telemetry)
    assert run.status.status_code.name == "ERROR"
    assert attrs(run)[sc.ERROR_TYPE] == type(raised.value).__qualname__
    call = telemetry.one_llm_span()
    assert call.parent is not None and call.parent.span_id == run.context.span_id


def test_litellm_left_out_records_no_call(
    monkeypatch: pytest.MonkeyPatch, openai_emulator: OpenAIEmulator, tmp_path: Path
) -> None:
    """`providers` without litellm: runs and sessions, but no call spans, for either litellm API."""
    assert FRAMEWORKS["openhands"] == MODULE
    telemetry = make_telemetry(providers=["openhands"])
    try:
        push(openai_emulator, 2)
        for model in (CHAT_MODEL, RESPONSES_MODEL):
            conv = conversation(openai_emulator, tmp_path / model.replace("/", "-"), model)
            conv.send_message("Say hello.")
            conv.run()
        assert len(run_spans(telemetry)) == 2
        assert telemetry.llm_spans() == []
    finally:
        otel_llm_usage.uninstrument()


def test_usage_id_does_not_outlive_the_call(
    telemetry: Telemetry, openai_emulator: OpenAIEmulator, tmp_path: Path
) -> None:
    push(openai_emulator)
    llm = make_llm(openai_emulator, usage_id="solo")
    with otel_llm_usage.run("outer") as outer:
        from openhands.sdk.llm import Message, TextContent

        llm.completion([Message(role="user", content=[TextContent(text="hi")])])
        assert otel_llm_usage.current_run() is outer
    assert attrs(telemetry.one_llm_span())[sc.AGENT_NAME] == "solo"
    assert {row.name for row in usage_summary().by_agent} == {"solo"}


def test_agent_name_and_session_id_helpers(tmp_path: Path) -> None:
    class Named:
        name = "reviewer"

    class Conv:
        id = "c-1"
        agent = Named()

    assert integration.agent_name(Conv()) == "reviewer"
    assert (
        integration.agent_name(SimpleNamespace(agent=Agent(llm=LLM(model=CHAT_MODEL), tools=[]))) == "Agent"
    )
    assert integration.session_id_of(Conv()) == "c-1"
    assert integration.agent_name(object()) == "openhands"
    assert integration.session_id_of(object()) is None


def test_uninstrument_restores_openhands(telemetry: Telemetry, openai_emulator: OpenAIEmulator) -> None:
    assert hasattr(LocalConversation.__dict__["run"], "__wrapped__")
    assert hasattr(LLMClass.__dict__["responses"], "__wrapped__")
    assert isinstance(llm_module.litellm_responses, wrapt.FunctionWrapper)
    # OpenHands' chat references are litellm's public functions, which the litellm provider hooks.
    assert llm_module.litellm_completion is litellm.completion
    otel_llm_usage.uninstrument()
    patched = [
        (LocalConversation, "run"),
        (LocalConversation, "arun"),
        (LLMClass, "completion"),
        (llm_module, "litellm_responses"),
        (llm_module, "litellm_aresponses"),
    ]
    for owner, name in patched:
        # OpenHands' own decorators (functools.wraps) give its methods a __wrapped__ of their own.
        assert not isinstance(owner.__dict__[name], wrapt.FunctionWrapper), name
    assert llm_module.litellm_responses is litellm_responses_main.responses


def test_litellm_calls_recorded_when_instrumented_before_openhands_import(tmp_path: Path) -> None:
    """Calls are recorded whether `instrument()` runs before or after OpenHands is imported.

    This module imported OpenHands before instrumenting; here a fresh interpreter instruments
    first, then imports OpenHands, which takes its references to litellm's functions only then.
    """
    script = f"""
import sys
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import otel_llm_usage
from emulators import OpenAIEmulator, Reply
exporter = InMemorySpanExporter()
tp = TracerProvider()
tp.add_span_processor(SimpleSpanProcessor(exporter))
otel_llm_usage.instrument(tracer_provider=tp)
assert "openhands.sdk" not in sys.modules and "litellm" not in sys.modules
from openhands.sdk import LLM, Agent, Conversation
from pydantic import SecretStr
with OpenAIEmulator() as emu:
    emu.push(Reply(text="Done.", prompt_tokens=1000, cached_tokens=200, completion_tokens=500))
    llm = LLM(model="openai/gpt-4o", base_url=emu.base_url, api_key=SecretStr("sk-x"), num_retries=0)
    conv = Conversation(agent=Agent(llm=llm, tools=[]), workspace={str(tmp_path)!r}, visualizer=None)
    conv.send_message("Say hello.")
    conv.run()
ours = otel_llm_usage.session_usage(str(conv.id))
theirs = conv.conversation_stats.get_combined_metrics()
names = sorted(s.name for s in exporter.get_finished_spans())
print(names, ours.requests, abs(ours.cost_usd - theirs.accumulated_cost) < 1e-12)
"""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip().splitlines()[-1] == "['chat gpt-4o', 'invoke_agent Agent'] 1 True"
